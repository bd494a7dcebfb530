#!/usr/bin/env bash
# Seeds corpus/<target>/ for every fuzz target from the real test files fetched by
# scripts/fetch-test-data.sh (small files whole, large ones truncated to 64 KiB = -max_len),
# plus a synthetic MIB file (no real MIB file is in the test data). Corpora are not committed.
set -euo pipefail
cd "$(dirname "$0")"
DATA=${STEM_TEST_DATA:-../../target/test-data}
IO=$DATA/hyperspy/tests/io
MAX=65536
seed() { # seed <target> <file>...
    local t=$1; shift
    mkdir -p "corpus/$t"
    for f in "$@"; do
        [ -f "$f" ] || continue
        local name
        name=$(echo "$f" | sed 's#.*/test-data/##; s#[/ ]#_#g')
        head -c $MAX "$f" > "corpus/$t/$name"
    done
}
seed dm $(find "$IO" -iname '*.dm3' -size -70k | sort)
seed dm $(find "$IO" -iname '*.dm4' -size -70k | sort)
seed mrc "$DATA"/mrcfile-1.5.4/tests/test_data/EMD-3197.map \
    "$DATA"/mrcfile-1.5.4/tests/test_data/fei-extended.mrc \
    "$DATA"/mrcfile-1.5.4/tests/test_data/epu2.9_example.mrc
seed tiff $(find "$IO/tiff_files" -iname '*.tif*' | sort)
seed npy $(find "$DATA" -iname '*.npy' -size -70k | sort)
IFS=$'\n' seed ser $(find "$IO" -iname '*.ser' -size -70k | sort)
seed emd $(find "$IO/emd_files" -iname '*.emd' -size -70k | sort)
seed emd $(find "$IO/hdf5_files" -iname '*.h*' -size -40k | sort)
# MIB: 4 frames of 8x8 U16 and 2 frames of 4x4 U08, 384-byte headers (Merlin layout).
mkdir -p corpus/mib
mib() { # mib <depth> <w> <h> <bytes per px> <frames>
    local out=corpus/mib/synthetic_$1_$2x$3.mib
    : > "$out"
    for i in $(seq 1 "$5"); do
        printf '%-384s' "$(printf 'MQ1,%06d,00384,01,%04d,%04d,%s,   1x1,01,2020-01-02 03:04:05.000000,0.001000,0,0,0,' "$i" "$2" "$3" "$1")" \
            | tr ' ' ' ' >> "$out"
        head -c $(( $2 * $3 * $4 )) /dev/zero | tr "\0" "\7" >> "$out"
    done
}
mib U16 8 8 2 4
mib U08 4 4 1 2
for t in corpus/*; do echo "$t: $(ls "$t" | wc -l) files"; done
# Velox EDS spectrum streams and complex images: the real files are megabytes (past -max_len),
# so small synthetic Velox files written by stem-core's own test builders seed those paths.
STEM_FUZZ_SEED_DIR="$PWD/corpus/emd" cargo test -q --manifest-path ../Cargo.toml --lib \
    io::emd::tests::write_emd_fuzz_seeds -- --ignored --exact
echo "corpus/emd after the synthetic Velox seeds: $(ls corpus/emd | wc -l) files"
