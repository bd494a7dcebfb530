#!/usr/bin/env bash
# stem-learn benchmarks (issue #8), in one run:
#   1. convolution forward+backward vs candle 0.11's stock CPU conv2d on the U-Net layer shapes,
#      and the U-Net training-step cost (example bench_conv; the peer is candle itself, same
#      process, same inputs; no Python peer is installed);
#   2. training time to threshold: `stem train atoms` on the SrTiO3 recipe (the shipped bundle's
#      command), wall and CPU time, peak RSS, held-out ID-recall / ID-precision / Δd, SHA-256 of
#      the bundle (compare with stem-learn/models/README.md);
#   3. the held-out quality grid (example quality_grid): the shipped U-Net and the classical
#      baseline over lattice × pixel size × dose × scan distortion, markdown tables.
# Outputs go to bench/learn/out/ (gitignored): conv.txt, train.txt, quality_grid.md.
#
# Usage: bench/learn/run.sh [conv-repeats=3] [train-steps=300] [grid-images-per-cell=4]
# The three benchmarks took 191 s (conv ~40 s, training 122 s, grid 29 s) at a load average of
# 12-18 on the shared 2-core machine, after a 20-min stem-cli release build; expect about 2 min
# on a quiet machine with a warm target/. The grid's metrics are deterministic.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPEATS="${1:-3}"
STEPS="${2:-300}"
IMAGES="${3:-4}"
OUT=bench/learn/out
mkdir -p "$OUT"
START=$(date +%s)
echo "== $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== load: $(uptime)"
cargo build --release -p stem-learn --example bench_conv --example quality_grid
cargo build --release -p stem-cli

echo "== 1. conv2d fwd+bwd, stem-learn vs candle (batch 8), ${REPEATS} repeats"
target/release/examples/bench_conv "$REPEATS" | tee "$OUT/conv.txt"

echo "== 2. stem train atoms (SrTiO3 recipe, ${STEPS} steps, 50 training + 10 held-out samples)"
/usr/bin/time -f "time: wall %e s, user %U s, sys %S s, peak RSS %M KB" \
  target/release/stem --quiet train atoms stem-sim/examples/recipes/atom_finding_srtio3.json \
  --out "$OUT/atom-finder.safetensors" --steps "$STEPS" --limit 60 --holdout 10 2>&1 \
  | grep -E "trained|ID-recall|bundle|time:" | tee "$OUT/train.txt"
sha256sum "$OUT/atom-finder.safetensors" | tee -a "$OUT/train.txt"

echo "== 3. held-out quality grid (${IMAGES} images per cell)"
/usr/bin/time -f "time: wall %e s, user %U s, sys %S s, peak RSS %M KB" \
  target/release/examples/quality_grid --images "$IMAGES" --out "$OUT/quality_grid.md" \
  2> >(grep "time:" >&2)
echo "== load at the end: $(uptime)"
echo "== total $(( $(date +%s) - START )) s (incl. build)"
