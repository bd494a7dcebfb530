#!/usr/bin/env bash
# Out-of-core run (issue #7): a generated ~1.68 GB Poisson 4D-STEM cube (256x256 scan x 80x80
# detector, the peer-benchmarks.md §1.5 structure at 1000 e-/pattern) is written to an NPY file,
# denoised from disk by stem_tensor::stream (automatic ranks, Keenan-Kotula scaling), the output
# streamed to another NPY file, PSNR computed streamed against the regenerated clean frames.
# Peak memory: /usr/bin/time -v (includes the memory-mapped input pages) and the sampled
# anonymous / file-backed RSS printed by the example. The big files are deleted at the end.
# Usage: bash bench/tensor/run_stream.sh [SCAN] [DET] [DOSE]   (from the workspace root)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=bench/tensor/out
SCAN=${1:-256}; DET=${2:-80}; DOSE=${3:-1000}
mkdir -p "$OUT"
cargo build --release -q -p stem-tensor --example bench_stream
BIN=target/release/examples/bench_stream
echo "# machine: $(nproc) cores; $(uptime)"
"$BIN" gen "$OUT" "$SCAN" "$DET" "$DOSE"
/usr/bin/time -v "$BIN" run "$OUT" "$SCAN" "$DET" "$DOSE" 2> "$OUT/stream_time.txt"
grep -E "Elapsed|Maximum resident|Percent of CPU" "$OUT/stream_time.txt"
echo "# load after: $(uptime)"
rm -f "$OUT/stream_noisy.npy" "$OUT/stream_denoised.npy"
