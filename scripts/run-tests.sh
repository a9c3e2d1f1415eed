#!/usr/bin/env bash
# Builds every test and runs them with ctest. Usage: scripts/run-tests.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
scripts/install-deps.sh
# The cores, counted before OMP_NUM_THREADS is set below: GNU nproc reports OMP_NUM_THREADS when it is set.
cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$cores"
# ctest runs one test per core, side by side, so each test gets one OpenMP
# thread: more would oversubscribe the cores, and a tiny model's parallel loops
# then wait on descheduled threads at every barrier (CI, 2 cores: one SFT test
# took 143 s beside the others instead of 7 s alone). The tests that check
# results do not depend on the thread count set their own counts
# (tests/support/threads.hpp). Threads that do wait sleep instead of spinning.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
ctest --test-dir "$build" --output-on-failure -j "$cores"
