#!/usr/bin/env bash
# Builds and runs the flagship example, grpo_zero (R1-Zero in miniature), on its
# default settings: pretrain a small base, evaluate, GRPO, evaluate, report.
# Usage: scripts/run-example.sh [example-arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)" --target grpo_zero
./build/examples/grpo_zero "$@"
