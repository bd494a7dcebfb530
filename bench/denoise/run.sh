#!/usr/bin/env bash
# Side-by-side denoising benchmark (issue #5): stem-denoise vs scikit-image NLM and bm3d 4.0.3
# on the same 512² lattice images at 5 / 20 / 100 counts/px (peer-benchmarks.md §1.4).
# Usage: bash bench/denoise/run.sh   (from anywhere)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="$HERE/out"
mkdir -p "$OUT"
if [ ! -x "$HERE/.venv/bin/python" ]; then
  python3 -m venv "$HERE/.venv"
fi
"$HERE/.venv/bin/python" -m pip install -q "numpy<3" "scipy<2" "scikit-image==0.26.0" "bm3d==4.0.3"
# Ours: writes the inputs (clean, noisy, heavy columns), our outputs and our timings.
(cd "$ROOT" && cargo run --release -q -p stem-denoise --example bench_denoise -- "$OUT")
# Peers on the same inputs, and one table scoring everything with the same metrics.
"$HERE/.venv/bin/python" "$HERE/peer.py" "$OUT"
echo
echo "machine: $(nproc) cores; $(uptime)"
