#!/bin/sh
# How far tf32 / bf16 products move the model's log-probs, entropies and gradients, measured on the CPU:
# tests/cuda/test_transformer.cu's model and batches, transformer<float> against itself with the products'
# inputs rounded (shadow_matmul.py). Prints the figures the GPU test's reduced-precision bounds rest on.
#   tools/precision_emulation/precision_emulation.sh [build dir, default /tmp/lmrl-precision-emulation]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-/tmp/lmrl-precision-emulation}
mkdir -p "$out"
python3 "$here/shadow_matmul.py" "$out/shadow"
${CXX:-g++} -std=c++20 -O2 -I"$out/shadow" -I"$root/include" -I"$root/tests" -I/usr/include/eigen3 \
  "$here/precision_emulation.cpp" -o "$out/precision_emulation"
"$out/precision_emulation"
