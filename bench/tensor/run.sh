#!/usr/bin/env bash
# Tensor denoising benchmark: stem-tensor against tensorly 0.10.0 tucker, a numpy HOOI in the
# style of paul-voyles/tensor_svd, and hyperspy 2.5.0's Poisson-normalised PCA, on the same
# synthetic Poisson 4D-STEM cubes (64^4 at 200 / 1000 / 10000 e-/pattern, peer-benchmarks.md §1.5).
# Usage: bash bench/tensor/run.sh   (from the workspace root)
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=bench/tensor
OUT=$HERE/out
mkdir -p "$OUT"
if [ ! -x "$HERE/.venv/bin/python" ]; then
  python3 -m venv "$HERE/.venv"
  "$HERE/.venv/bin/pip" install -q numpy==2.4.6 scipy==1.17.1 tensorly==0.10.0 \
    hyperspy==2.5.0 scikit-learn==1.9.1
fi
echo "# machine: $(nproc) cores; $(uptime)"
echo "# ours (stem-tensor, Rust)"
cargo run --release -q -p stem-tensor --example bench_tensor -- "$OUT" | tee "$OUT/ours.tsv"
echo "# peers (same cubes)"
"$HERE/.venv/bin/python" "$HERE/peer.py" "$OUT" | tee "$OUT/peers.tsv"
echo "# load after: $(uptime)"
