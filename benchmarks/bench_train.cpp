// Benchmarks of the train/ layer's optimizer pieces. AdamW and clipping are
// memory-bound, so the figure to read is bytes/second against the machine's
// bandwidth (the copy yardstick below): an AdamW step reads params, grads,
// exp_avg, exp_avg_sq and writes params, exp_avg, exp_avg_sq: 7 arrays of n
// elements per step. Clipping reads the gradients once for the norm, then
// reads and writes them to scale: 3 arrays.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "lmrl/train.hpp"

namespace {

std::vector<float> filled(std::size_t n, float seed) {
  std::vector<float> v(n);
  // cheap deterministic values in [-1, 1); the content does not change the speed
  std::uint32_t state = static_cast<std::uint32_t>(seed * 1000) + 1;
  for (auto& x : v) {
    state = state * 1664525u + 1013904223u;
    x = static_cast<float>(state >> 8) / static_cast<float>(1u << 23) - 1.0f;
  }
  return v;
}

void set_bytes(benchmark::State& state, std::size_t n, int arrays) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(n) * arrays *
                          static_cast<std::int64_t>(sizeof(float)));
  state.counters["elements"] = static_cast<double>(n);
}

}  // namespace

// One AdamW step (weight decay on, one no-decay range as HF's norm/bias group).
static void BM_adamw_step(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  auto params = filled(n, 1);
  const auto grads = filled(n, 2);
  lmrl::adamw<float> opt(static_cast<lmrl::index_t>(n), {.lr = 1e-6, .weight_decay = 0.01},
                         {{0, static_cast<lmrl::index_t>(n / 100)}});
  for (auto _ : state) {
    opt.step(std::span<float>(params), std::span<const float>(grads));
    benchmark::DoNotOptimize(params.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, n, 7);
}
BENCHMARK(BM_adamw_step)->Arg(1 << 20)->Arg(10'000'000)->Arg(100'000'000)->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// clip_grad_norm_: the norm (a fixed-order double reduction) and the scale.
static void BM_clip_grad_norm(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  auto grads = filled(n, 3);
  for (auto _ : state) {
    // max_norm far above the norm: the coefficient clamps to 1 and the scale still
    // runs (as in torch), so every iteration does the same work on the same values.
    const double norm = lmrl::clip_grad_norm(std::span<float>(grads), 1e9);
    benchmark::DoNotOptimize(norm);
    benchmark::ClobberMemory();
  }
  set_bytes(state, n, 3);
}
BENCHMARK(BM_clip_grad_norm)->Arg(1 << 20)->Arg(10'000'000)->Arg(100'000'000)->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The norm alone: 1 array read.
static void BM_grad_l2_norm(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto grads = filled(n, 4);
  for (auto _ : state) benchmark::DoNotOptimize(lmrl::l2_norm(std::span<const float>(grads)));
  set_bytes(state, n, 1);
}
BENCHMARK(BM_grad_l2_norm)->Arg(1 << 20)->Arg(10'000'000)->Arg(100'000'000)->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Accumulating a micro-batch gradient: reads 2 arrays, writes 1.
static void BM_accumulate_gradients(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  auto total = filled(n, 5);
  const auto micro = filled(n, 6);
  for (auto _ : state) {
    lmrl::accumulate_gradients(std::span<float>(total), std::span<const float>(micro), 0.25f);
    benchmark::ClobberMemory();
  }
  set_bytes(state, n, 3);
}
BENCHMARK(BM_accumulate_gradients)->Arg(1 << 20)->Arg(10'000'000)->Unit(benchmark::kMillisecond)->UseRealTime();

// Yardstick: memcpy of n floats (reads 1, writes 1) — the bandwidth to compare with.
static void BM_copy_yardstick(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto from = filled(n, 7);
  std::vector<float> to(n);
  for (auto _ : state) {
    std::memcpy(to.data(), from.data(), n * sizeof(float));
    benchmark::ClobberMemory();
  }
  set_bytes(state, n, 2);
}
BENCHMARK(BM_copy_yardstick)->Arg(1 << 20)->Arg(10'000'000)->Arg(100'000'000)->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
