#!/usr/bin/env bash
# Builds grpo_zero and variant_bench and runs the algorithm-variant bench:
#   scripts/run-variant-bench.sh           the quick look (a few minutes on 2 cores)
#   scripts/run-variant-bench.sh --long    the comparison in docs/variant_bench.md (3 seeds, about 1.5 hours)
# Any other flag goes to variant_bench (and from there to every grpo_zero run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)" --target grpo_zero variant_bench
./build/examples/variant_bench "$@"
