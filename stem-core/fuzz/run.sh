#!/usr/bin/env bash
# Runs fuzz targets one after the other (never in parallel: they are CPU-bound) on the corpora
# seeded by seed.sh, with the limits recorded in README.md, and prints one summary line per
# target. Usage: ./run.sh [seconds per target] [target...]   (build first:
# cargo +nightly fuzz build -O -s none). Logs: logs/<target>.log; crashes: artifacts/<target>/.
set -uo pipefail
cd "$(dirname "$0")"
SECS=${1:-270}
shift || true
TARGETS=${*:-dm mrc tiff npy mib ser emd}
BIN=target/x86_64-unknown-linux-gnu/release
mkdir -p logs
for t in $TARGETS; do
    mkdir -p "artifacts/$t" "corpus/$t"
    start=$(date -u +%FT%TZ)
    "$BIN/$t" "corpus/$t" -max_total_time="$SECS" -max_len=65536 -rss_limit_mb=1024 \
        -timeout=10 -artifact_prefix="artifacts/$t/" -print_final_stats=1 > "logs/$t.log" 2>&1
    rc=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$')
    echo "$t start=$start exit=$rc runs=${runs:-?} corpus=$(ls "corpus/$t" | wc -l) artifacts=$(ls "artifacts/$t" | wc -l)"
done
