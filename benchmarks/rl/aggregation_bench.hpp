// Loss aggregation: the weights of each mode plus L = sum w l, on float
// batches from 64 x 128 to 1024 x 4096 (sequences x tokens).
#pragma once

#include <benchmark/benchmark.h>

#include <cstddef>
#include <vector>

#include "lmrl/rl/aggregation.hpp"
#include "lmrl/tensor/dense.hpp"

namespace lmrl_bench_aggregation {

// A right-padded mask (row i keeps a length between T/4 and T) and a loss.
inline void make_batch(lmrl::index_t B, lmrl::index_t T, lmrl::dense<float, 2>& mask, lmrl::dense<float, 2>& loss) {
  mask = lmrl::dense<float, 2>({B, T});
  loss = lmrl::dense<float, 2>({B, T});
  for (lmrl::index_t i = 0; i < B; ++i) {
    const lmrl::index_t len = T / 4 + (i * 7919) % (T - T / 4 + 1);
    for (lmrl::index_t t = 0; t < T; ++t) {
      mask(i, t) = t < len ? 1.0f : 0.0f;
      loss(i, t) = 0.001f * static_cast<float>((i * 31 + t * 17) % 1000) - 0.5f;
    }
  }
}

inline void run(benchmark::State& state, const char* name) {
  const lmrl::index_t B = state.range(0), T = state.range(1);
  lmrl::dense<float, 2> mask, loss, w({B, T});
  make_batch(B, T, mask, loss);
  const lmrl::loss_aggregation mode(name, T);
  const lmrl::batch_totals totals{2 * B, 0};
  for (auto _ : state) {
    mode.weights<float>(mask.view(), totals, w.view());
    double L = lmrl::aggregate<float>(loss.view(), w.view());
    benchmark::DoNotOptimize(L);
    benchmark::ClobberMemory();
  }
  // mask read, w written, loss and w read
  state.SetBytesProcessed(state.iterations() * B * T * static_cast<std::int64_t>(4 * sizeof(float)));
}

}  // namespace lmrl_bench_aggregation

static void BM_aggregation_token_mean(benchmark::State& s) { lmrl_bench_aggregation::run(s, "token-mean"); }
static void BM_aggregation_dapo(benchmark::State& s) { lmrl_bench_aggregation::run(s, "dapo"); }
static void BM_aggregation_token_sum(benchmark::State& s) { lmrl_bench_aggregation::run(s, "token-sum"); }
static void BM_aggregation_grpo(benchmark::State& s) { lmrl_bench_aggregation::run(s, "grpo"); }
static void BM_aggregation_luspo(benchmark::State& s) { lmrl_bench_aggregation::run(s, "luspo"); }
static void BM_aggregation_dr_grpo(benchmark::State& s) { lmrl_bench_aggregation::run(s, "dr_grpo"); }

#define LMRL_AGGREGATION_SIZES ->Args({64, 128})->Args({256, 1024})->Args({1024, 4096})
BENCHMARK(BM_aggregation_token_mean) LMRL_AGGREGATION_SIZES;
BENCHMARK(BM_aggregation_dapo) LMRL_AGGREGATION_SIZES;
BENCHMARK(BM_aggregation_token_sum) LMRL_AGGREGATION_SIZES;
BENCHMARK(BM_aggregation_grpo) LMRL_AGGREGATION_SIZES;
BENCHMARK(BM_aggregation_luspo) LMRL_AGGREGATION_SIZES;
BENCHMARK(BM_aggregation_dr_grpo) LMRL_AGGREGATION_SIZES;
#undef LMRL_AGGREGATION_SIZES
