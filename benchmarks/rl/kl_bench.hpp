// Benchmarks of the KL pieces: per-token estimators over [B x T], the exact
// full-vocabulary KL over [rows x vocab], KL in the reward and the rollout
// correction weights. Included by benchmarks/bench_rl.cpp.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "lmrl/rl/kl.hpp"
#include "lmrl/rl/kl_controller.hpp"
#include "lmrl/rl/kl_exact.hpp"
#include "lmrl/rl/rollout_correction.hpp"
#include "lmrl/tensor/dense.hpp"
#include "lmrl/tensor/span.hpp"

namespace lmrl_kl_bench {

inline void fill(lmrl::dense<float, 2>& x, std::uint64_t seed, float lo, float hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  for (lmrl::index_t k = 0; k < x.size(); ++k) x.data()[k] = dist(rng);
}

// Right-padded mask: row i keeps between T/2 and T tokens.
inline lmrl::dense<float, 2> mask(lmrl::index_t rows, lmrl::index_t cols) {
  lmrl::dense<float, 2> m({rows, cols});
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<lmrl::index_t> len(cols / 2, cols);
  for (lmrl::index_t i = 0; i < rows; ++i) {
    const lmrl::index_t n = len(rng);
    for (lmrl::index_t t = 0; t < n; ++t) m(i, t) = 1;
  }
  return m;
}

struct token_batch {
  lmrl::dense<float, 2> logp, ref, m, values, grads;
  explicit token_batch(benchmark::State& state)
      : logp({state.range(0), state.range(1)}),
        ref({state.range(0), state.range(1)}),
        m(mask(state.range(0), state.range(1))),
        values({state.range(0), state.range(1)}),
        grads({state.range(0), state.range(1)}) {
    fill(logp, 1, -4, 0);
    fill(ref, 2, -4, 0);
  }
};

inline void token_sizes(benchmark::internal::Benchmark* b) {
  b->Args({64, 128})->Args({256, 1024})->Args({1024, 4096});
}

}  // namespace lmrl_kl_bench

// Per-token k3 (verl clamps) values and gradients.
static void BM_kl_k3_per_token(benchmark::State& state) {
  lmrl_kl_bench::token_batch b(state);
  const auto k = lmrl::kl_k3::verl();
  for (auto _ : state) {
    lmrl::kl_per_token(k, b.logp, b.ref, b.m, b.values, b.grads);
    benchmark::DoNotOptimize(b.values.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * b.logp.size() * static_cast<std::int64_t>(5 * sizeof(float)));
}
BENCHMARK(BM_kl_k3_per_token)->Apply(lmrl_kl_bench::token_sizes);

// The run-time dispatched estimator ("low_var_kl+"), to see the cost of the switch.
static void BM_kl_runtime_estimator(benchmark::State& state) {
  lmrl_kl_bench::token_batch b(state);
  const auto k = lmrl::kl_estimator::from_name("low_var_kl+");
  for (auto _ : state) {
    lmrl::kl_per_token(k, b.logp, b.ref, b.m, b.values, b.grads);
    benchmark::DoNotOptimize(b.values.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * b.logp.size() * static_cast<std::int64_t>(5 * sizeof(float)));
}
BENCHMARK(BM_kl_runtime_estimator)->Apply(lmrl_kl_bench::token_sizes);

// KL in the reward: token rewards from scores and k1 (verl apply_kl_penalty).
static void BM_kl_apply_penalty(benchmark::State& state) {
  lmrl_kl_bench::token_batch b(state);
  std::vector<float> scores(static_cast<std::size_t>(state.range(0)), 1.0f);
  for (auto _ : state) {
    auto report = lmrl::apply_kl_penalty(lmrl::kl_k1{}, 0.001, scores, b.logp, b.ref, b.m, b.values);
    benchmark::DoNotOptimize(report);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * b.logp.size() * static_cast<std::int64_t>(4 * sizeof(float)));
}
BENCHMARK(BM_kl_apply_penalty)->Apply(lmrl_kl_bench::token_sizes);

// Rollout correction weights, token and sequence level.
static void BM_kl_rollout_correction(benchmark::State& state) {
  lmrl_kl_bench::token_batch b(state);
  const auto c = state.range(2) == 0 ? lmrl::rollout_correction::trl("token_truncate")
                                     : lmrl::rollout_correction::trl("sequence_mask");
  for (auto _ : state) {
    auto st = c.weights(b.logp, b.ref, b.m, b.values);
    benchmark::DoNotOptimize(st);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * b.logp.size() * static_cast<std::int64_t>(4 * sizeof(float)));
}
BENCHMARK(BM_kl_rollout_correction)
    ->Args({64, 128, 0})
    ->Args({1024, 4096, 0})
    ->Args({64, 128, 1})
    ->Args({1024, 4096, 1});

// Exact KL over the vocabulary: rows x vocab logits, with and without the gradient.
static void BM_kl_exact(benchmark::State& state) {
  const lmrl::index_t rows = state.range(0), vocab = state.range(1);
  const bool gradient = state.range(2) != 0;
  lmrl::dense<float, 2> z({rows, vocab}), w({rows, vocab}), g({rows, vocab});
  lmrl_kl_bench::fill(z, 3, -10, 10);
  lmrl_kl_bench::fill(w, 4, -10, 10);
  std::vector<float> kl(static_cast<std::size_t>(rows));
  for (auto _ : state) {
    if (gradient) {
      lmrl::exact_kl(z, w, kl, g);
    } else {
      lmrl::exact_kl(z, w, kl);
    }
    benchmark::DoNotOptimize(kl.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * rows * vocab *
                          static_cast<std::int64_t>((gradient ? 5 : 2) * sizeof(float)));
}
BENCHMARK(BM_kl_exact)->Args({64, 4096, 0})->Args({64, 32768, 0})->Args({64, 32768, 1})->Args({256, 32768, 1});
