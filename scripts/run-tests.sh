#!/usr/bin/env bash
# Builds every test and runs them with ctest. Usage: scripts/run-tests.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
scripts/install-deps.sh
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$(nproc)"
# ctest runs tests side by side and each uses OpenMP on every core: threads
# that spin while they wait (GOMP's default) starve the other test, so they sleep.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
ctest --test-dir "$build" --output-on-failure -j "$(nproc)"
