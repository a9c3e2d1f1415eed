// Benchmarks of the sample/ layer: nanoseconds per sampled token (one logits
// row of V float logits, one uniform draw) for every sampler at the vocabulary
// sizes of Llama-2 (32,000) and Qwen2.5/Qwen3 (151,936), and the Philox
// generator alone. Logits are N(0, 3^2)-like (uniform on [-5, 5]), so the
// nucleus of top-p is large: a hard case for partial sorting.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "lmrl/sample.hpp"
#include "lmrl/tensor/span.hpp"

namespace {

std::vector<float> logits(std::int64_t vocab, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-5.0f, 5.0f);
  std::vector<float> x(static_cast<std::size_t>(vocab));
  for (auto& v : x) v = dist(rng);
  return x;
}

void run(benchmark::State& state, const lmrl::sampler_config& config) {
  const std::int64_t vocab = state.range(0);
  const auto x = logits(vocab, 7);
  lmrl::sampler_scratch<float> scratch(vocab);
  const lmrl::counter_rng rng(1);
  std::uint32_t position = 0;
  for (auto _ : state) {
    const auto s = lmrl::sample_token(x, config, rng.uniform_double(0, position++), scratch);
    benchmark::DoNotOptimize(s);
  }
  state.SetItemsProcessed(state.iterations());  // items = sampled tokens
  state.SetBytesProcessed(state.iterations() * vocab * static_cast<std::int64_t>(sizeof(float)));
}

void BM_greedy(benchmark::State& state) { run(state, {.do_sample = false}); }
void BM_temperature(benchmark::State& state) { run(state, {.temperature = 0.7}); }
void BM_top_k_50(benchmark::State& state) { run(state, {.temperature = 0.7, .top_k = 50}); }
void BM_top_p_0_95(benchmark::State& state) { run(state, {.temperature = 0.6, .top_p = 0.95}); }
void BM_min_p_0_1(benchmark::State& state) { run(state, {.min_p = 0.1}); }
void BM_top_k_top_p_min_p(benchmark::State& state) {
  run(state, {.temperature = 0.8, .top_k = 50, .top_p = 0.9, .min_p = 0.05});
}

void BM_philox_uniform_double(benchmark::State& state) {
  const lmrl::counter_rng rng(1);
  std::uint32_t position = 0;
  double sum = 0;
  for (auto _ : state) sum += rng.uniform_double(3, position++);
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations());
}

}  // namespace

BENCHMARK(BM_greedy)->Arg(32000)->Arg(151936);
BENCHMARK(BM_temperature)->Arg(32000)->Arg(151936);
BENCHMARK(BM_top_k_50)->Arg(32000)->Arg(151936);
BENCHMARK(BM_top_p_0_95)->Arg(32000)->Arg(151936);
BENCHMARK(BM_min_p_0_1)->Arg(32000)->Arg(151936);
BENCHMARK(BM_top_k_top_p_min_p)->Arg(32000)->Arg(151936);
BENCHMARK(BM_philox_uniform_double);

BENCHMARK_MAIN();
