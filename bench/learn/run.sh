#!/usr/bin/env bash
# stem-learn benchmarks (issue #8): convolution forward+backward vs candle 0.11's stock CPU
# conv2d on the U-Net layer shapes, U-Net training-step cost, and a short atom-finder training
# run on the SrTiO3 recipe with held-out scores.
# The peer here is candle itself (same process, same inputs); no Python peer is installed.
#
# Usage: bench/learn/run.sh [repeats] [train-steps]
set -euo pipefail
cd "$(dirname "$0")/../.."
REPEATS="${1:-3}"
STEPS="${2:-300}"
OUT=bench/learn/out
mkdir -p "$OUT"
echo "== machine: $(nproc) cores; $(uptime)"
cargo build --release -p stem-learn --example bench_conv -p stem-cli
echo "== conv2d fwd+bwd, stem-learn vs candle (batch 8)"
target/release/examples/bench_conv "$REPEATS"
echo "== stem train atoms (SrTiO3 recipe, ${STEPS} steps)"
/usr/bin/time -v target/release/stem --quiet train atoms stem-sim/examples/recipes/atom_finding_srtio3.json \
  --out "$OUT/atom-finder.safetensors" --steps "$STEPS" --limit 60 --holdout 10 2>&1 \
  | grep -E "trained|ID-recall|bundle|Elapsed|User time|System time|Maximum resident"
sha256sum "$OUT/atom-finder.safetensors"
