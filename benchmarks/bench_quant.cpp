// Benchmarks of the quant/ layer, every format side by side:
//   BM_quantize / BM_dequantize   GB/s of float32 in (out), 1M Gaussian values; counters bits/value and the
//                                 relative RMS error of the round trip (on N(0, 0.02^2), a trained layer's scale)
//   BM_matvec                     y = W x with W held quantized (block dequantized on the fly), at the
//                                 small preset's MLP (W [1376 x 512]) and Qwen2.5-0.5B's down projection
//                                 (W [896 x 4864]); "float32" is the same loop on the float matrix, "eigen"
//                                 Eigen's GEMV (what the model runs today). Counter: weight bytes read per second.
// Run: build/benchmarks/bench_quant --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <cmath>
#include <random>
#include <vector>

#include "lmrl/quant.hpp"

namespace {

using namespace lmrl;

std::vector<float> gaussian(std::size_t n, float sd, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = d(gen);
  return v;
}

// The weight bytes one product reads, as a rate (printed with SI prefixes: 2.2G/s).
void report_weight_rate(benchmark::State& state, std::size_t bytes) {
  state.counters["weight_bytes/s"] =
      benchmark::Counter(static_cast<double>(bytes), benchmark::Counter::kIsIterationInvariantRate);
}

template <class Q>
void BM_quantize(benchmark::State& state) {
  const std::size_t n = 1 << 20;
  const auto x = gaussian(n, 0.02f, 1);
  std::vector<std::uint8_t> bytes(quantized_bytes<Q>(n));
  for (auto _ : state) {
    quantize(Q{}, x, bytes);
    benchmark::DoNotOptimize(bytes.data());
  }
  std::vector<float> back(n);
  dequantize(Q{}, bytes, back);
  double err = 0, norm = 0;
  for (std::size_t i = 0; i < n; ++i) err += (back[i] - x[i]) * (back[i] - x[i]), norm += x[i] * x[i];
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(n * 4));
  state.counters["bits/value"] = bits_per_value<Q>();
  state.counters["rel_rms_err"] = std::sqrt(err / norm);
}

template <class Q>
void BM_dequantize(benchmark::State& state) {
  const std::size_t n = 1 << 20;
  const auto x = gaussian(n, 0.02f, 1);
  std::vector<std::uint8_t> bytes(quantized_bytes<Q>(n));
  quantize(Q{}, x, bytes);
  std::vector<float> back(n);
  for (auto _ : state) {
    dequantize(Q{}, bytes, back);
    benchmark::DoNotOptimize(back.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(n * 4));
}

template <class Q>
void BM_matvec(benchmark::State& state) {
  const auto rows = static_cast<index_t>(state.range(0)), cols = static_cast<index_t>(state.range(1));
  const auto w = gaussian(static_cast<std::size_t>(rows * cols), 0.02f, 2), x = gaussian(static_cast<std::size_t>(cols), 1.0f, 3);
  const quantized_matrix<Q> qw(matrix_view<const float>(w.data(), {rows, cols}));
  std::vector<float> y(static_cast<std::size_t>(rows));
  for (auto _ : state) {
    matvec(qw, vector_view<const float>(x.data(), {cols}), vector_view<float>(y.data(), {rows}));
    benchmark::DoNotOptimize(y.data());
  }
  report_weight_rate(state, qw.bytes().size());
}

void BM_matvec_float32(benchmark::State& state) {
  const auto rows = static_cast<index_t>(state.range(0)), cols = static_cast<index_t>(state.range(1));
  const auto w = gaussian(static_cast<std::size_t>(rows * cols), 0.02f, 2), x = gaussian(static_cast<std::size_t>(cols), 1.0f, 3);
  std::vector<float> y(static_cast<std::size_t>(rows));
  for (auto _ : state) {
    for (index_t r = 0; r < rows; ++r) {
      float s = 0;
      for (index_t k = 0; k < cols; ++k) s += w[static_cast<std::size_t>(r * cols + k)] * x[static_cast<std::size_t>(k)];
      y[static_cast<std::size_t>(r)] = s;
    }
    benchmark::DoNotOptimize(y.data());
  }
  report_weight_rate(state, w.size() * 4);
}

void BM_matvec_eigen(benchmark::State& state) {
  const auto rows = state.range(0), cols = state.range(1);
  const auto w = gaussian(static_cast<std::size_t>(rows * cols), 0.02f, 2), x = gaussian(static_cast<std::size_t>(cols), 1.0f, 3);
  const Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> W(w.data(), rows, cols);
  const Eigen::Map<const Eigen::VectorXf> X(x.data(), cols);
  Eigen::VectorXf y(rows);
  for (auto _ : state) {
    y.noalias() = W * X;
    benchmark::DoNotOptimize(y.data());
  }
  report_weight_rate(state, w.size() * 4);
}

#define LMRL_QUANT_FORMATS(X) X(q8_0) X(q4_0) X(fp8_tile) X(tq2_0) X(tq1_0)
#define LMRL_CODEC(Q)                                 \
  BENCHMARK_TEMPLATE(BM_quantize, Q)->Name("quantize/" #Q); \
  BENCHMARK_TEMPLATE(BM_dequantize, Q)->Name("dequantize/" #Q);
LMRL_QUANT_FORMATS(LMRL_CODEC)

// [rows x cols]: the small preset's up projection; Qwen2.5-0.5B's down projection (K = 4864 = 19 x 256)
#define LMRL_SHAPES(b) b->Args({1376, 512})->Args({896, 4864})
#define LMRL_MATVEC(Q) LMRL_SHAPES(BENCHMARK_TEMPLATE(BM_matvec, Q)->Name("matvec/" #Q));
LMRL_QUANT_FORMATS(LMRL_MATVEC)
LMRL_SHAPES(BENCHMARK(BM_matvec_float32)->Name("matvec/float32"));
LMRL_SHAPES(BENCHMARK(BM_matvec_eigen)->Name("matvec/eigen"));

}  // namespace

BENCHMARK_MAIN();
