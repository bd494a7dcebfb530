#!/usr/bin/env bash
# stem-register benchmark: our registration and the Python peers on the same generated series
# (peer-benchmarks.md §1.6: 20 frames of 512², 10 counts/px, rigid ±12 px, row jitter, shear,
# stretch, amorphous disc). Usage: bench/register/run.sh   (from the workspace root)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=bench/register/out
VENV=bench/register/.venv
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "numpy==2.4.6" "scipy==1.17.1" "scikit-image==0.26.0" "pystackreg==0.2.8"
fi
echo "machine: $(nproc) cores; load: $(uptime)"
cargo run --release -q -p stem-register --example bench_register -- "$OUT"
"$VENV/bin/python" bench/register/peer.py "$OUT"
# the slow ground-truth scenario (full series) of the test suite
cargo test --release -q -p stem-tests --test register_nonrigid -- --ignored --nocapture 2>&1 | grep -E "scan-line|test result" || true
