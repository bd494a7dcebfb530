#!/usr/bin/env bash
# Downloads pinned PyPI artefacts that ship real microscope test files, verifies their sha256
# (scripts/test-data.sha256) and extracts the test files into a cache directory:
#   $STEM_TEST_DATA, default <repo>/target/test-data
# Layout of the cache: hyperspy/tests/io/..., atomap/tests/datasets/...,
# pixstem/tests/test_data/..., mrcfile-1.5.4/tests/test_data/...,
# hyperspy/tests/io/emd_files/fei_emd_files/ (the Velox EMD zip of the wheel, unpacked)
# The files are GPL/BSD test fixtures of those projects: they are never committed here.
# Needs python3 with pip (only `pip download`, nothing is installed). Idempotent.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${STEM_TEST_DATA:-$root/target/test-data}"
sums="$root/scripts/test-data.sha256"
mkdir -p "$dest/.downloads"
dl="$dest/.downloads"

fei="$dest/hyperspy/tests/io/emd_files/fei_emd_files"
if [ -f "$dest/.complete" ] && cmp -s "$dest/.complete" "$sums" && [ -d "$fei" ]; then
  echo "test data already in $dest"
  exit 0
fi

pip_download() {
  python3 -m pip download --no-deps --disable-pip-version-check -q -d "$dl" "$@"
}
have() { [ -f "$dl/$1" ] && (cd "$dl" && grep " $1\$" "$sums" | sha256sum -c --status -); }

have hyperspy-1.7.6-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl ||
  pip_download --only-binary=:all: --platform manylinux2014_x86_64 --python-version 3.11 \
    --implementation cp --abi cp311 hyperspy==1.7.6
have atomap-0.4.2-py3-none-any.whl || pip_download --only-binary=:all: atomap==0.4.2
have pixstem-0.4.0-py3-none-any.whl || pip_download --only-binary=:all: pixstem==0.4.0
have mrcfile-1.5.4.tar.gz || pip_download --no-binary=:all: mrcfile==1.5.4

(cd "$dl" && sha256sum -c "$sums")

python3 - "$dl" "$dest" <<'PY'
import sys, zipfile, tarfile, os
dl, dest = sys.argv[1], sys.argv[2]
def unzip(name, prefixes):
    with zipfile.ZipFile(os.path.join(dl, name)) as z:
        for m in z.namelist():
            if any(m.startswith(p) for p in prefixes) and not m.endswith(".py") and not m.endswith("/"):
                z.extract(m, dest)
unzip("hyperspy-1.7.6-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", ["hyperspy/tests/io/"])
unzip("atomap-0.4.2-py3-none-any.whl", ["atomap/tests/datasets/"])
unzip("pixstem-0.4.0-py3-none-any.whl", ["pixstem/tests/test_data/"])
with tarfile.open(os.path.join(dl, "mrcfile-1.5.4.tar.gz")) as t:
    members = [m for m in t.getmembers() if m.isfile() and m.name.startswith("mrcfile-1.5.4/tests/test_data/")]
    t.extractall(dest, members=members, filter="data")
# The Velox (FEI) EMD examples are zipped inside the wheel: unpack them beside the zip.
emd = os.path.join(dest, "hyperspy/tests/io/emd_files")
with zipfile.ZipFile(os.path.join(emd, "fei_emd_files.zip")) as z:
    z.extractall(os.path.join(emd, "fei_emd_files"))
PY
cp "$sums" "$dest/.complete"
echo "test data extracted into $dest"
