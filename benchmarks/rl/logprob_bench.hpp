// Fused log-prob / entropy vs the two-pass way (materialize the full
// log-softmax [rows x vocab], then gather), at vocabularies 32,000 and 151,936,
// with a plain copy of the same bytes as the memory-bandwidth yardstick.
// Bytes processed = bytes of logits read (twice for forward + backward, which
// also writes a gradient of that size); counter extra_bytes = memory the
// method allocates beyond inputs and outputs (0 for the fused one).
#pragma once

#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "lmrl/rl/logprob.hpp"
#include "lmrl/tensor/dense.hpp"
#include "lmrl/tensor/span.hpp"

namespace lmrl_bench_logprob {

struct problem {
  lmrl::index_t rows, vocab;
  lmrl::dense<float, 2> logits;
  std::vector<std::int32_t> ids;
  std::vector<float> logp, entropy, grad_logp, grad_entropy;
  std::vector<double> lse;
  explicit problem(const benchmark::State& state)
      : rows(state.range(0)), vocab(state.range(1)), logits({rows, vocab}), ids(rows), logp(rows), entropy(rows),
        grad_logp(rows, 1.0f), grad_entropy(rows, -0.01f), lse(rows) {
    std::uint32_t x = 12345;
    float* p = logits.data();
    for (lmrl::index_t k = 0; k < logits.size(); ++k) {
      x = x * 1664525u + 1013904223u;
      p[k] = static_cast<float>(x >> 8) * (16.0f / 16777216.0f) - 8.0f;  // uniform in [-8, 8)
    }
    for (lmrl::index_t r = 0; r < rows; ++r) ids[r] = static_cast<std::int32_t>((r * 7919) % vocab);
  }
  std::int64_t logits_bytes() const { return rows * vocab * static_cast<std::int64_t>(sizeof(float)); }
};

// The two-pass way, as a framework does it: log_softmax into a [rows x vocab]
// buffer, gather the target, entropy from the buffer.
inline void two_pass_forward(problem& P, std::vector<float>& lsm) {
  for (lmrl::index_t r = 0; r < P.rows; ++r) {
    const float* x = P.logits.view().row_data(r);
    float* y = lsm.data() + r * P.vocab;
    float m = x[0];
    for (lmrl::index_t v = 1; v < P.vocab; ++v) m = x[v] > m ? x[v] : m;
    double s = 0;
    for (lmrl::index_t v = 0; v < P.vocab; ++v) s += std::exp(x[v] - m);
    const float lse = m + static_cast<float>(std::log(s));
    for (lmrl::index_t v = 0; v < P.vocab; ++v) y[v] = x[v] - lse;
    P.logp[r] = y[P.ids[r]];
    double h = 0;
    for (lmrl::index_t v = 0; v < P.vocab; ++v) h -= std::exp(y[v]) * y[v];
    P.entropy[r] = static_cast<float>(h);
  }
}

inline void two_pass_backward(problem& P, const std::vector<float>& lsm, lmrl::dense<float, 2>& grad) {
  for (lmrl::index_t r = 0; r < P.rows; ++r) {
    const float* y = lsm.data() + r * P.vocab;
    float* g = grad.data() + r * P.vocab;
    const float a = P.grad_logp[r], b = P.grad_entropy[r], h = P.entropy[r];
    for (lmrl::index_t v = 0; v < P.vocab; ++v) {
      const float p = std::exp(y[v]);
      g[v] = -(a + b * (y[v] + h)) * p;
    }
    g[P.ids[r]] += a;
  }
}

}  // namespace lmrl_bench_logprob

static void BM_logprob_fused_forward(benchmark::State& state) {
  lmrl_bench_logprob::problem P(state);
  for (auto _ : state) {
    lmrl::logprob_forward(P.logits.view(), std::span<const std::int32_t>(P.ids), 1.0, P.logp, P.entropy, P.lse);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * P.logits_bytes());
  state.counters["extra_bytes"] = 0;
}

static void BM_logprob_two_pass_forward(benchmark::State& state) {
  lmrl_bench_logprob::problem P(state);
  for (auto _ : state) {
    std::vector<float> lsm(static_cast<std::size_t>(P.rows * P.vocab));  // allocated per step, as a framework does
    lmrl_bench_logprob::two_pass_forward(P, lsm);
    benchmark::DoNotOptimize(lsm.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * P.logits_bytes());
  state.counters["extra_bytes"] = static_cast<double>(P.logits_bytes());
}

static void BM_logprob_fused_forward_backward(benchmark::State& state) {
  lmrl_bench_logprob::problem P(state);
  lmrl::dense<float, 2> grad({P.rows, P.vocab});
  for (auto _ : state) {
    lmrl::logprob_forward(P.logits.view(), std::span<const std::int32_t>(P.ids), 1.0, P.logp, P.entropy, P.lse);
    lmrl::logprob_backward(P.logits.view(), std::span<const std::int32_t>(P.ids), 1.0, P.lse, P.entropy,
                           P.grad_logp, P.grad_entropy, grad.view());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * 2 * P.logits_bytes());
  state.counters["extra_bytes"] = 0;
}

static void BM_logprob_two_pass_forward_backward(benchmark::State& state) {
  lmrl_bench_logprob::problem P(state);
  lmrl::dense<float, 2> grad({P.rows, P.vocab});
  for (auto _ : state) {
    std::vector<float> lsm(static_cast<std::size_t>(P.rows * P.vocab));
    lmrl_bench_logprob::two_pass_forward(P, lsm);
    lmrl_bench_logprob::two_pass_backward(P, lsm, grad);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * 2 * P.logits_bytes());
  state.counters["extra_bytes"] = static_cast<double>(P.logits_bytes());
}

// The yardstick: copying the logits' bytes once (read + write).
static void BM_logprob_copy_bandwidth(benchmark::State& state) {
  lmrl_bench_logprob::problem P(state);
  std::vector<float> dst(static_cast<std::size_t>(P.rows * P.vocab));
  for (auto _ : state) {
    // Row by row, parallel over rows as the fused passes are when OpenMP is on.
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
    for (lmrl::index_t r = 0; r < P.rows; ++r)
      std::memcpy(dst.data() + r * P.vocab, P.logits.view().row_data(r),
                  static_cast<std::size_t>(P.vocab) * sizeof(float));
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * P.logits_bytes());
  state.counters["extra_bytes"] = static_cast<double>(P.logits_bytes());
}

// rows x vocab; the largest (1024 x 151,936 and 4096 x 32,000) hold about 0.6 GB
// of logits, under 2 GB with the two-pass buffer and the gradient.
#define LMRL_LOGPROB_SIZES \
  ->Args({256, 32000})->Args({4096, 32000})->Args({256, 151936})->Args({1024, 151936})->Unit(benchmark::kMillisecond)
BENCHMARK(BM_logprob_fused_forward) LMRL_LOGPROB_SIZES;
BENCHMARK(BM_logprob_two_pass_forward) LMRL_LOGPROB_SIZES;
BENCHMARK(BM_logprob_fused_forward_backward) LMRL_LOGPROB_SIZES;
BENCHMARK(BM_logprob_two_pass_forward_backward) LMRL_LOGPROB_SIZES;
BENCHMARK(BM_logprob_copy_bandwidth) LMRL_LOGPROB_SIZES;
#undef LMRL_LOGPROB_SIZES
