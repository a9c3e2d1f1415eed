#!/usr/bin/env bash
# Issue 9's GPU checks in one run, on a machine with an NVIDIA GPU: the GPU
# tests (tests/cuda), grpo_zero_cuda and r1_pipeline_cuda on a tiny budget with
# --device cuda, and bench_gpu. Every program's output goes to OUT (default
# gpu-check-out/).
#
#   scripts/gpu-check.sh [BIN [STAGES]]
#
# STAGES: a comma list of tests, smoke, r1, bench (default: all four), so that a
# device session whose calls are limited in time can run them one by one.
#
# BIN: a folder holding lmrl_tests_cuda, grpo_zero_cuda, r1_pipeline_cuda and bench_gpu already
# built (configured with -DCMAKE_CUDA_ARCHITECTURES="80;90", e.g. copied from build/tests, build/examples and
# build/benchmarks of a machine with nvcc: the GPU machine may have no network
# to install the build's dependencies). Without BIN the three are built here
# (cmake, ninja, nvcc and the Debian packages of scripts/install-deps.sh needed).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-check-out}
mkdir -p "$out"
bin=${1:-}
stages=",${2:-tests,smoke,r1,bench},"
if [ -z "$bin" ]; then
  bin=build-gpu/bin
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DLMRL_BUILD_FUZZERS=OFF > "$out/configure.txt" 2>&1 &&
    cmake --build build-gpu -j "$(nproc)" --target lmrl_tests_cuda grpo_zero_cuda r1_pipeline_cuda bench_gpu \
      > "$out/build.txt" 2>&1 ||
    { echo "gpu-check: the build failed (see $out/build.txt)"; exit 1; }
  mkdir -p "$bin"
  cp build-gpu/tests/lmrl_tests_cuda build-gpu/examples/grpo_zero_cuda build-gpu/examples/r1_pipeline_cuda \
    build-gpu/benchmarks/bench_gpu "$bin"/
fi
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
ldd "$bin/lmrl_tests_cuda" > "$out/ldd.txt" 2>&1
status=0
last_rc=0
run() {  # name timeout command...: output to $out/name.txt, a line per program here
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@" > "$out/$name.txt" 2>&1
  last_rc=$?
  echo "gpu-check: $name: exit $last_rc in $((SECONDS - start)) s ($out/$name.txt)"
  [ $last_rc -eq 0 ] || status=1
}
# Each test case in a process of its own, `limit` seconds for them all: a crash or a sticky CUDA error (an
# illegal address poisons the context for every later case) then costs one case, not the rest of the run.
# One line per case in $out/tests_cuda_cases.txt, each case's output in $out/cases/.
run_cases_alone() {
  local limit=$1 start=$SECONDS k=0 name rc
  mkdir -p "$out/cases"
  : > "$out/tests_cuda_cases.txt"
  while IFS= read -r name; do
    k=$((k + 1))
    if [ $((SECONDS - start)) -ge "$limit" ]; then
      echo "NOT RUN (time) $name" >> "$out/tests_cuda_cases.txt"
      continue
    fi
    timeout 60 "$bin/lmrl_tests_cuda" --duration=true --test-case="${name//,/\\,}" > "$out/cases/$k.txt" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then echo "passed $name" ; else echo "FAILED (exit $rc, cases/$k.txt) $name"; fi \
      >> "$out/tests_cuda_cases.txt"
  done < <("$bin/lmrl_tests_cuda" --list-test-cases | grep -v -e '^\[doctest\]' -e '^=====')
  echo "gpu-check: tests_cuda case by case: $(grep -c '^passed' "$out/tests_cuda_cases.txt") passed," \
    "$(grep -c '^FAILED' "$out/tests_cuda_cases.txt") failed, $(grep -c '^NOT RUN' "$out/tests_cuda_cases.txt")" \
    "not run ($out/tests_cuda_cases.txt)"
}
# (doctest prints each MESSAGE: the worst GPU-vs-CPU errors the tests record; --duration each case's time)
case $stages in *,tests,*)
  run tests_cuda 300 "$bin/lmrl_tests_cuda" --duration=true
  # A failed run is rerun case by case, so that one crash does not hide the other cases' results.
  [ $last_rc -eq 0 ] || run_cases_alone 240 ;;
esac
case $stages in *,smoke,*)
  for precision in fp32 bf16 fp8; do
    rm -rf "$out/grpo_zero_cuda_$precision"
    run "grpo_zero_cuda_$precision" 240 "$bin/grpo_zero_cuda" --device cuda --gpu_precision "$precision" \
      --preset tiny --operands 3 --pretrain_steps 40 --pretrain_batch_size 8 --max_steps 2 --heldout 16 \
      --eval_samples 0 --output_dir "$out/grpo_zero_cuda_$precision"
  done
  # rollouts from q4_0 integer weights into a q4_0 cache, beside fp8 products (integer products take no precision)
  rm -rf "$out/grpo_zero_cuda_q4_0"
  run grpo_zero_cuda_q4_0 240 "$bin/grpo_zero_cuda" --device cuda --gpu_precision fp8 --rollout_quant q4_0 \
    --rollout_kv_quant q4_0 --preset tiny --operands 3 --pretrain_steps 40 --pretrain_batch_size 8 --max_steps 2 \
    --heldout 16 --eval_samples 0 --output_dir "$out/grpo_zero_cuda_q4_0" ;;
esac
case $stages in *,r1,*)  # every stage of the R1 pipeline on the budget of its ctest (r1_pipeline_smoke.cmake)
  rm -rf "$out/r1_pipeline_cuda"
  read -ra r1_budget < examples/r1_pipeline_smoke_flags.txt
  run r1_pipeline_cuda 240 "$bin/r1_pipeline_cuda" --device cuda --output_dir "$out/r1_pipeline_cuda" \
    "${r1_budget[@]}" ;;
esac
case $stages in *,bench,*) run bench_gpu 420 "$bin/bench_gpu" all 3 ;; esac
exit $status
