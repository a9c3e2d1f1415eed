#!/usr/bin/env bash
# Issue 9's GPU checks in one run, on a machine with an NVIDIA GPU: the GPU
# tests (tests/cuda), grpo_zero_cuda on a tiny budget with --device cuda, and
# bench_gpu. Every program's output goes to OUT (default gpu-check-out/).
#
#   scripts/gpu-check.sh [BIN [STAGES]]
#
# STAGES: a comma list of tests, smoke, bench (default: all three), so that a
# device session whose calls are limited in time can run them one by one.
#
# BIN: a folder holding lmrl_tests_cuda, grpo_zero_cuda and bench_gpu already
# built (configured with -DCMAKE_CUDA_ARCHITECTURES="80;90", e.g. copied from build/tests, build/examples and
# build/benchmarks of a machine with nvcc: the GPU machine may have no network
# to install the build's dependencies). Without BIN the three are built here
# (cmake, ninja, nvcc and the Debian packages of scripts/install-deps.sh needed).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-check-out}
mkdir -p "$out"
bin=${1:-}
stages=",${2:-tests,smoke,bench},"
if [ -z "$bin" ]; then
  bin=build-gpu/bin
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DLMRL_BUILD_FUZZERS=OFF > "$out/configure.txt" 2>&1 &&
    cmake --build build-gpu -j "$(nproc)" --target lmrl_tests_cuda grpo_zero_cuda bench_gpu > "$out/build.txt" 2>&1 ||
    { echo "gpu-check: the build failed (see $out/build.txt)"; exit 1; }
  mkdir -p "$bin"
  cp build-gpu/tests/lmrl_tests_cuda build-gpu/examples/grpo_zero_cuda build-gpu/benchmarks/bench_gpu "$bin"/
fi
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
ldd "$bin/lmrl_tests_cuda" > "$out/ldd.txt" 2>&1
status=0
run() {  # name timeout command...: output to $out/name.txt, a line per program here
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@" > "$out/$name.txt" 2>&1
  local rc=$?
  echo "gpu-check: $name: exit $rc in $((SECONDS - start)) s ($out/$name.txt)"
  [ $rc -eq 0 ] || status=1
}
# (doctest prints each MESSAGE: the worst GPU-vs-CPU errors the tests record; --duration each case's time)
case $stages in *,tests,*) run tests_cuda 420 "$bin/lmrl_tests_cuda" --duration=true ;; esac
case $stages in *,smoke,*)
  for precision in fp32 bf16 fp8; do
    rm -rf "$out/grpo_zero_cuda_$precision"
    run "grpo_zero_cuda_$precision" 240 "$bin/grpo_zero_cuda" --device cuda --gpu_precision "$precision" \
      --preset tiny --operands 3 --pretrain_steps 40 --pretrain_batch_size 8 --max_steps 2 --heldout 16 \
      --eval_samples 0 --output_dir "$out/grpo_zero_cuda_$precision"
  done ;;
esac
case $stages in *,bench,*) run bench_gpu 420 "$bin/bench_gpu" all 3 ;; esac
exit $status
