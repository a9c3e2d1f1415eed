#!/usr/bin/env bash
# Data-parallel GRPO on this machine: grpo_zero's step time at 1, 2 and 4 MPI
# ranks (the cores shared among the ranks: OpenMP threads = cores / ranks, at
# least 1), the same global batch and seed, from one pretrained base.
# Prints medians over steps 2..STEPS of the phases and of the time in
# collectives, and the speedup over one rank.
#
#   scripts/bench-data-parallel.sh [build-dir] [steps] [extra grpo_zero flags...]
#
# Needs a build that found MPI (grpo_zero links it) and python3 for the table.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
steps=${2:-8}
shift $(( $# > 2 ? 2 : $# ))
work=${BENCH_WORK:-/tmp/lmrl_bench_dp}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive
cores=$(nproc)
mkdir -p "$work"
if [ ! -f "$work/base/config.json" ]; then
  echo "bench-data-parallel: pretraining a base once ($work/base)"
  "$build/examples/grpo_zero" --output_dir "$work/pretrain" --pretrain_steps 300 --pretrain_only 1 > "$work/pretrain.log"
  mv "$work/pretrain/base" "$work/base"
fi
common=(--base "$work/base" --max_steps "$steps" --eval_steps 0 --save_steps 0 --heldout 8 --eval_samples 0
        --logging_steps 1000 "$@")
for ranks in 1 2 4; do
  out="$work/np$ranks"
  rm -rf "$out"
  threads=$(( cores / ranks > 0 ? cores / ranks : 1 ))
  if [ "$ranks" -eq 1 ]; then
    OMP_NUM_THREADS=$threads "$build/examples/grpo_zero" --output_dir "$out" "${common[@]}" > "$out.log" 2>&1
  else
    OMP_NUM_THREADS=$threads mpiexec --oversubscribe -n "$ranks" "$build/examples/grpo_zero" --output_dir "$out" \
      "${common[@]}" > "$out.log" 2>&1
  fi
done
python3 - "$work" "$cores" <<'PY'
import json, statistics, sys
work, cores = sys.argv[1], int(sys.argv[2])
def med(rs, k): return statistics.median(r.get(k, 0.0) for r in rs)
print(f"| ranks | threads/rank | step s | generate s | train s | in collectives s | speedup | reward (step 1..last) |")
print("|---|---|---|---|---|---|---|---|")
base = None
for n in (1, 2, 4):
    rs = [json.loads(l) for l in open(f"{work}/np{n}/metrics.jsonl")]
    later = rs[1:]
    step = med(later, "time/step_s")
    base = base or step
    print(f"| {n} | {max(1, cores // n)} | {step:.2f} | {med(later, 'time/generate_s'):.2f} | {med(later, 'time/train_s'):.2f} "
          f"| {med(later, 'time/communicate_s'):.3f} | {base / step:.2f}x | {rs[0]['reward']:.4f} .. {rs[-1]['reward']:.4f} |")
PY
