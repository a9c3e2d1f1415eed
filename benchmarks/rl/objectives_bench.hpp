// Policy objectives: loss and backward over sequences x tokens (float).
#pragma once

#include <benchmark/benchmark.h>

#include <random>

#include "lmrl/rl/objectives.hpp"
#include "lmrl/tensor/dense.hpp"

namespace objectives_bench {

struct bench_batch {
  lmrl::dense<float, 2> logp, old_logp, adv, mask, g, out;
  explicit bench_batch(lmrl::index_t rows, lmrl::index_t cols)
      : logp({rows, cols}), old_logp({rows, cols}), adv({rows, cols}), mask({rows, cols}), g({rows, cols}),
        out({rows, cols}) {
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> u(-1, 1);
    std::uniform_int_distribution<lmrl::index_t> len(cols / 4, cols);
    for (lmrl::index_t i = 0; i < rows; ++i) {
      const lmrl::index_t n = len(rng);
      const float a = u(rng);
      for (lmrl::index_t t = 0; t < cols; ++t) {
        logp(i, t) = -1.5f + u(rng);
        old_logp(i, t) = logp(i, t) + 0.2f * u(rng);
        adv(i, t) = a;
        mask(i, t) = t < n ? 1.0f : 0.0f;
        g(i, t) = 1.0f / static_cast<float>(rows * cols);
      }
    }
  }
  lmrl::policy_inputs<float> inputs() const {
    lmrl::policy_inputs<float> in;
    in.logp = logp.view();
    in.old_logp = old_logp.view();
    in.advantages = adv.view();
    in.mask = mask.view();
    return in;
  }
};

template <class O>
void run_loss(benchmark::State& state, const O& objective) {
  bench_batch b(state.range(0), state.range(1));
  const auto in = b.inputs();
  for (auto _ : state) {
    auto stats = objective.loss(in, b.out.view());
    benchmark::DoNotOptimize(stats);
    benchmark::ClobberMemory();
  }
  // reads logp, old_logp, advantages, mask; writes the loss
  state.SetBytesProcessed(state.iterations() * state.range(0) * state.range(1) * 5 * int64_t(sizeof(float)));
}

template <class O>
void run_backward(benchmark::State& state, const O& objective) {
  bench_batch b(state.range(0), state.range(1));
  const auto in = b.inputs();
  const lmrl::matrix_view<const float> g = b.g.view();
  for (auto _ : state) {
    objective.backward(in, g, b.out.view());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * state.range(0) * state.range(1) * 6 * int64_t(sizeof(float)));
}

}  // namespace objectives_bench

static void BM_objective_ppo_clip_loss(benchmark::State& s) { objectives_bench::run_loss(s, lmrl::ppo_clip::verl()); }
static void BM_objective_ppo_clip_backward(benchmark::State& s) {
  objectives_bench::run_backward(s, lmrl::ppo_clip::verl());
}
static void BM_objective_gspo_loss(benchmark::State& s) { objectives_bench::run_loss(s, lmrl::gspo{}); }
static void BM_objective_gspo_backward(benchmark::State& s) { objectives_bench::run_backward(s, lmrl::gspo{}); }
static void BM_objective_gmpo_backward(benchmark::State& s) { objectives_bench::run_backward(s, lmrl::gmpo{}); }
static void BM_objective_cispo_loss(benchmark::State& s) { objectives_bench::run_loss(s, lmrl::cispo{}); }
static void BM_objective_sapo_loss(benchmark::State& s) { objectives_bench::run_loss(s, lmrl::sapo{}); }
static void BM_objective_clip_cov_loss(benchmark::State& s) { objectives_bench::run_loss(s, lmrl::clip_cov{}); }
static void BM_objective_kl_cov_loss(benchmark::State& s) { objectives_bench::run_loss(s, lmrl::kl_cov{}); }
static void BM_objective_by_name_loss(benchmark::State& s) {
  objectives_bench::run_loss(s, lmrl::make_objective("ppo"));
}

#define LMRL_OBJECTIVE_SIZES ->Args({64, 128})->Args({256, 1024})->Args({1024, 4096})->Unit(benchmark::kMicrosecond)
BENCHMARK(BM_objective_ppo_clip_loss) LMRL_OBJECTIVE_SIZES;
BENCHMARK(BM_objective_ppo_clip_backward) LMRL_OBJECTIVE_SIZES;
BENCHMARK(BM_objective_gspo_loss) LMRL_OBJECTIVE_SIZES;
BENCHMARK(BM_objective_gspo_backward) LMRL_OBJECTIVE_SIZES;
BENCHMARK(BM_objective_gmpo_backward) LMRL_OBJECTIVE_SIZES;
BENCHMARK(BM_objective_cispo_loss) LMRL_OBJECTIVE_SIZES;
BENCHMARK(BM_objective_sapo_loss) LMRL_OBJECTIVE_SIZES;
BENCHMARK(BM_objective_clip_cov_loss) LMRL_OBJECTIVE_SIZES;
BENCHMARK(BM_objective_kl_cov_loss) LMRL_OBJECTIVE_SIZES;
BENCHMARK(BM_objective_by_name_loss) LMRL_OBJECTIVE_SIZES;
#undef LMRL_OBJECTIVE_SIZES
