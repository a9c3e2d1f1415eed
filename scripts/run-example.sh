#!/usr/bin/env bash
# Builds and runs the flagship example on its default settings.
# Usage: scripts/run-example.sh [example-arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)" --target lmrl_demo
./build/examples/lmrl_demo "$@"
