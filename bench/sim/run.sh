#!/usr/bin/env bash
# stem-sim vs abTEM 1.0.11 benchmark. Usage: bench/sim/run.sh   (from the repository root)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$here/out"
mkdir -p "$out"
# Timings of an earlier (e.g. per-grid) run would be mixed into the comparison: start clean.
rm -f "$out"/ours*.json
if [ ! -x "$here/.venv/bin/python" ]; then
  python3 -m venv "$here/.venv"
  "$here/.venv/bin/pip" install -q "abtem==1.0.11" ase
fi
echo "machine: $(nproc) cores; $(uptime)"
"$here/.venv/bin/python" "$here/peer.py" gen "$out"
(cd "$root" && cargo run --release -q -p stem-sim --example bench_abtem -- "$out")
"$here/.venv/bin/python" "$here/peer.py" compare "$out"
echo "after: $(uptime)"
