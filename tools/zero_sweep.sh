#!/bin/bash
# Runs several zero_probe.py configurations at once (one GPU), logs to $OUT.
# Usage: tools/zero_sweep.sh "tag1:--flag v ..." "tag2:..." ...
# SWEEP_TIMEOUT=S (seconds, default 0 = none) stops each config after S seconds,
# so a slow sweep still leaves its logs (base results are printed before GRPO).
OUT=${OUT:-/tmp/zero_sweep}; mkdir -p "$OUT"
for spec in "$@"; do
  tag=${spec%%:*}; flags=${spec#*:}
  timeout ${SWEEP_TIMEOUT:-0} python3 tools/zero_probe.py --tag "$tag" $flags > "$OUT/$tag.log" 2>&1 &
done
wait
for f in "$OUT"/*.log; do echo "== $f"; grep -E '"phase": "(base|final)"' "$f" | tail -2; tail -2 "$f" | grep -i error; done
