// Benchmarks of the advantage estimators (included by benchmarks/bench_rl.cpp):
// GRPO, RLOO, REINFORCE++ and GAE on [sequences x tokens] batches, per-token
// output, groups of 8. Bytes processed: the per-token inputs read and the
// output written.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>

#include "lmrl/rl/advantages.hpp"
#include "lmrl/tensor.hpp"

namespace lmrl::bench_advantages {

struct batch {
  dense<float, 1> scores;
  dense<float, 2> mask, token_rewards, values, out;
  batch(index_t b, index_t t) : scores({b}), mask({b, t}), token_rewards({b, t}), values({b, t}), out({b, t}) {
    std::mt19937_64 rng(42);
    std::uniform_real_distribution<float> u(0, 1);
    std::uniform_int_distribution<index_t> len(t / 4, t);
    for (index_t i = 0; i < b; ++i) {
      scores(i) = u(rng) < 0.5f ? 1.0f : 0.0f;
      const index_t n = len(rng);
      for (index_t j = 0; j < t; ++j) {
        mask(i, j) = j < n ? 1.0f : 0.0f;
        token_rewards(i, j) = j + 1 == n ? scores(i) : 0.0f;
        values(i, j) = u(rng);
      }
    }
  }
  advantage_inputs<float> inputs() {
    advantage_inputs<float> in{scores.view(), mask.view(), 8};
    in.token_rewards = token_rewards.view();
    in.values = values.view();
    return in;
  }
};

template <class E>
void run(benchmark::State& state, const E& estimator, int per_token_inputs) {
  const index_t b = state.range(0), t = state.range(1);
  batch data(b, t);
  const auto in = data.inputs();
  for (auto _ : state) {
    benchmark::DoNotOptimize(estimator(in, data.out.view()));
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * b * t *
                          static_cast<std::int64_t>(sizeof(float)) * (per_token_inputs + 1));
}

}  // namespace lmrl::bench_advantages

static void BM_advantages_grpo(benchmark::State& state) {
  lmrl::bench_advantages::run(state, lmrl::grpo_advantage{}, 1);
}
static void BM_advantages_rloo(benchmark::State& state) {
  lmrl::bench_advantages::run(state, lmrl::rloo_advantage{}, 1);
}
static void BM_advantages_reinforce_pp(benchmark::State& state) {
  lmrl::bench_advantages::run(state, lmrl::reinforce_pp_advantage{1.0}, 2);
}
static void BM_advantages_gae(benchmark::State& state) {
  lmrl::bench_advantages::run(state, lmrl::gae_advantage{1.0, 0.95}, 3);
}

#define LMRL_ADVANTAGE_SIZES ->Args({64, 128})->Args({256, 1024})->Args({1024, 4096})->Unit(benchmark::kMicrosecond)
BENCHMARK(BM_advantages_grpo) LMRL_ADVANTAGE_SIZES;
BENCHMARK(BM_advantages_rloo) LMRL_ADVANTAGE_SIZES;
BENCHMARK(BM_advantages_reinforce_pp) LMRL_ADVANTAGE_SIZES;
BENCHMARK(BM_advantages_gae) LMRL_ADVANTAGE_SIZES;
#undef LMRL_ADVANTAGE_SIZES
