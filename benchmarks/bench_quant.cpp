// Benchmarks of the quant/ layer, every format side by side:
//   BM_quantize / BM_dequantize   GB/s of float32 in (out), 1M Gaussian values; counters bits/value and the
//                                 relative RMS error of the round trip (on N(0, 0.02^2), a trained layer's scale)
//   BM_matvec                     y = W x with W held quantized (block dequantized on the fly), at the
//                                 small preset's MLP (W [1376 x 512]) and Qwen2.5-0.5B's down projection
//                                 (W [896 x 4864]); "float32" is the same loop on the float matrix, "eigen"
//                                 Eigen's GEMV (what the model runs today). Counter: weight bytes read per second.
//   BM_int_matvec / BM_int_xwt    the integer products (int_gemm.hpp; weights q8_0, q4_0, int8_rows, q4_k,
//                                 tq2_0): activations quantized to Q8_0, integer
//                                 block dots; y = W x and Y = X W^T for n = 1, 8, 64 rows of X, at the shapes above
//                                 and Qwen2.5-0.5B's up projection [4864 x 896]. "eigen" is Eigen's float GEMM
//                                 X W^T (its GEMV for matvec), "dequant" the float path above for X W^T. The label
//                                 names the path (int_dot.hpp: avx2, avx512_vnni, ...). Counters: weight bytes
//                                 read per second, and FLOP/s counting 2 rows cols n per product.
//                                 Threads: OMP_NUM_THREADS (Eigen's GEMM follows it; its GEMV is one thread);
//                                 these report wall time (UseRealTime), as the threads share the work.
//   BM_quantize_matrix            quantizing a weight matrix (what a trainer does to its rollout weights after
//                                 every optimizer step): quantized_matrix<q8_0>, <q4_0> and int8_rows from
//                                 Qwen2.5-0.5B's up projection [4864 x 896], GB/s of float32 in, wall time, with
//                                 1 and 2 OpenMP threads ("threads:N"); "quantize()" is the serial Quantizer
//                                 path, row by row (what quantized_matrix's constructor did before it had row
//                                 quantizers and threads).
// Run: build/benchmarks/bench_quant --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "lmrl/quant.hpp"
#include "lmrl/quant/int_gemm.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

using namespace lmrl;

std::vector<float> gaussian(std::size_t n, float sd, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = d(gen);
  return v;
}

// The weight bytes one product reads, as a rate (printed with SI prefixes: 2.2G/s), and,
// when given, its floating-point (or integer multiply-add) operations.
void report_weight_rate(benchmark::State& state, std::size_t bytes, double flops = 0) {
  state.counters["weight_bytes/s"] =
      benchmark::Counter(static_cast<double>(bytes), benchmark::Counter::kIsIterationInvariantRate);
  if (flops > 0) state.counters["FLOP/s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
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

// ---- integer products (int_gemm.hpp)

int_dot_path bench_path(std::int64_t which) {  // 0: avx2 where the CPU has it, 1: the best path
  const auto paths = supported_int_dot_paths();
  if (which == 1) return best_int_dot_path();
  return std::find(paths.begin(), paths.end(), int_dot_path::avx2) != paths.end() ? int_dot_path::avx2
                                                                                   : int_dot_path::scalar;
}

template <class W>
W make_weights(const std::vector<float>& w, index_t rows, index_t cols) {
  return W(matrix_view<const float>(w.data(), {rows, cols}));
}
template <class Q>
std::size_t weight_bytes(const quantized_matrix<Q>& w) {
  return w.bytes().size();
}
std::size_t weight_bytes(const int8_rows& w) { return w.size_bytes(); }

// args: rows, cols, path (0 avx2, 1 best)
template <class W>
void BM_int_matvec(benchmark::State& state) {
  const auto rows = static_cast<index_t>(state.range(0)), cols = static_cast<index_t>(state.range(1));
  const int_dot_path path = bench_path(state.range(2));
  const auto w = gaussian(static_cast<std::size_t>(rows * cols), 0.02f, 2), x = gaussian(static_cast<std::size_t>(cols), 1.0f, 3);
  const W qw = make_weights<W>(w, rows, cols);
  std::vector<float> y(static_cast<std::size_t>(rows));
  for (auto _ : state) {
    int_matvec(qw, vector_view<const float>(x.data(), {cols}), vector_view<float>(y.data(), {rows}), false, path);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(to_string(path));
  report_weight_rate(state, weight_bytes(qw), 2.0 * static_cast<double>(rows * cols));
}

// args: rows, cols, n, path (0 avx2, 1 best)
template <class W>
void BM_int_xwt(benchmark::State& state) {
  const auto rows = static_cast<index_t>(state.range(0)), cols = static_cast<index_t>(state.range(1)),
             n = static_cast<index_t>(state.range(2));
  const int_dot_path path = bench_path(state.range(3));
  const auto w = gaussian(static_cast<std::size_t>(rows * cols), 0.02f, 2),
             x = gaussian(static_cast<std::size_t>(n * cols), 1.0f, 3);
  const W qw = make_weights<W>(w, rows, cols);
  std::vector<float> y(static_cast<std::size_t>(n * rows));
  q8_0_rows scratch;
  for (auto _ : state) {
    int_matmul_transposed(matrix_view<const float>(x.data(), {n, cols}), qw, matrix_view<float>(y.data(), {n, rows}),
                          scratch, false, path);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(to_string(path));
  report_weight_rate(state, weight_bytes(qw), 2.0 * static_cast<double>(rows * cols * n));
}

// args: rows, cols, n
template <class Q>
void BM_dequant_xwt(benchmark::State& state) {
  const auto rows = static_cast<index_t>(state.range(0)), cols = static_cast<index_t>(state.range(1)),
             n = static_cast<index_t>(state.range(2));
  const auto w = gaussian(static_cast<std::size_t>(rows * cols), 0.02f, 2),
             x = gaussian(static_cast<std::size_t>(n * cols), 1.0f, 3);
  const quantized_matrix<Q> qw(matrix_view<const float>(w.data(), {rows, cols}));
  std::vector<float> y(static_cast<std::size_t>(n * rows));
  for (auto _ : state) {
    matmul_transposed(matrix_view<const float>(x.data(), {n, cols}), qw, matrix_view<float>(y.data(), {n, rows}));
    benchmark::DoNotOptimize(y.data());
  }
  report_weight_rate(state, qw.bytes().size(), 2.0 * static_cast<double>(rows * cols * n));
}

// args: rows, cols, n: Y = X W^T in float32 with Eigen (W row-major [rows x cols], as nn.Linear stores it)
void BM_eigen_xwt(benchmark::State& state) {
  const auto rows = state.range(0), cols = state.range(1), n = state.range(2);
  const auto w = gaussian(static_cast<std::size_t>(rows * cols), 0.02f, 2),
             x = gaussian(static_cast<std::size_t>(n * cols), 1.0f, 3);
  using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Eigen::Map<const row_major> W(w.data(), rows, cols), X(x.data(), n, cols);
  row_major y(n, rows);
  for (auto _ : state) {
    y.noalias() = X * W.transpose();
    benchmark::DoNotOptimize(y.data());
  }
  report_weight_rate(state, w.size() * 4, 2.0 * static_cast<double>(rows * cols * n));
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

// [rows x cols] for the integer products: the two above and Qwen2.5-0.5B's up (gate) projection
#define LMRL_INT_SHAPES(b) b->Args({1376, 512})->Args({896, 4864})->Args({4864, 896})
#define LMRL_INT_MATVEC(W, name)                                                                           \
  BENCHMARK_TEMPLATE(BM_int_matvec, W)->Name("int_matvec/" name)->ArgsProduct({{1376}, {512}, {0, 1}})    \
      ->ArgsProduct({{896}, {4864}, {0, 1}})->ArgsProduct({{4864}, {896}, {0, 1}})->UseRealTime();
LMRL_INT_MATVEC(quantized_matrix<q8_0>, "q8_0")
LMRL_INT_MATVEC(quantized_matrix<q4_0>, "q4_0")
LMRL_INT_MATVEC(quantized_matrix<q4_k>, "q4_k")
LMRL_INT_MATVEC(quantized_matrix<tq2_0>, "tq2_0")
LMRL_INT_MATVEC(int8_rows, "int8_rows")
LMRL_INT_SHAPES(BENCHMARK(BM_matvec_eigen)->Name("int_matvec/eigen"))->UseRealTime();

#define LMRL_XWT_ARGS(b)                                                                              \
  b->ArgsProduct({{1376}, {512}, {1, 8, 64}})->ArgsProduct({{896}, {4864}, {1, 8, 64}})               \
      ->ArgsProduct({{4864}, {896}, {1, 8, 64}})->UseRealTime()
#define LMRL_INT_XWT(W, name)                                                                                     \
  BENCHMARK_TEMPLATE(BM_int_xwt, W)->Name("xwt/int/" name)->ArgsProduct({{1376}, {512}, {1, 8, 64}, {0, 1}})      \
      ->ArgsProduct({{896}, {4864}, {1, 8, 64}, {0, 1}})->ArgsProduct({{4864}, {896}, {1, 8, 64}, {0, 1}})->UseRealTime();
LMRL_INT_XWT(quantized_matrix<q8_0>, "q8_0")
LMRL_INT_XWT(quantized_matrix<q4_0>, "q4_0")
LMRL_INT_XWT(quantized_matrix<q4_k>, "q4_k")
LMRL_INT_XWT(quantized_matrix<tq2_0>, "tq2_0")
LMRL_INT_XWT(int8_rows, "int8_rows")
LMRL_XWT_ARGS(BENCHMARK(BM_eigen_xwt)->Name("xwt/eigen"));
LMRL_XWT_ARGS(BENCHMARK_TEMPLATE(BM_dequant_xwt, q8_0)->Name("xwt/dequant/q8_0"));
LMRL_XWT_ARGS(BENCHMARK_TEMPLATE(BM_dequant_xwt, q4_0)->Name("xwt/dequant/q4_0"));

// ---- quantizing a weight matrix

constexpr index_t quantize_rows = 4864, quantize_cols = 896;  // Qwen2.5-0.5B's up projection

// args: OpenMP threads (1 and 2; the build without OpenMP runs one either way)
template <class W>
void BM_quantize_matrix(benchmark::State& state) {
  const auto w = gaussian(static_cast<std::size_t>(quantize_rows * quantize_cols), 0.02f, 2);
#if defined(_OPENMP)
  const int threads = omp_get_max_threads();
  omp_set_num_threads(static_cast<int>(state.range(0)));
#endif
  for (auto _ : state) {
    const W q(matrix_view<const float>(w.data(), {quantize_rows, quantize_cols}));
    benchmark::DoNotOptimize(&q);
  }
#if defined(_OPENMP)
  omp_set_num_threads(threads);
#endif
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(w.size() * 4));
}

// The serial Quantizer path: each row through quantize(), blocks one by one.
template <class Q>
void BM_quantize_matrix_blocks(benchmark::State& state) {
  const auto w = gaussian(static_cast<std::size_t>(quantize_rows * quantize_cols), 0.02f, 2);
  const std::size_t row_bytes = quantized_bytes<Q>(static_cast<std::size_t>(quantize_cols));
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(quantize_rows) * row_bytes);
  std::vector<float> row(static_cast<std::size_t>(quantize_cols));
  for (auto _ : state) {
    for (index_t r = 0; r < quantize_rows; ++r) {
      std::copy_n(w.begin() + r * quantize_cols, quantize_cols, row.begin());
      quantize(Q{}, std::span<const float>(row),
               std::span<std::uint8_t>(bytes).subspan(static_cast<std::size_t>(r) * row_bytes, row_bytes));
    }
    benchmark::DoNotOptimize(bytes.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(w.size() * 4));
}

BENCHMARK_TEMPLATE(BM_quantize_matrix_blocks, q8_0)->Name("quantize_matrix/q8_0/quantize()")->UseRealTime();
BENCHMARK_TEMPLATE(BM_quantize_matrix, quantized_matrix<q8_0>)->Name("quantize_matrix/q8_0")->ArgName("threads")
    ->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK_TEMPLATE(BM_quantize_matrix_blocks, q4_0)->Name("quantize_matrix/q4_0/quantize()")->UseRealTime();
BENCHMARK_TEMPLATE(BM_quantize_matrix, quantized_matrix<q4_0>)->Name("quantize_matrix/q4_0")->ArgName("threads")
    ->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK_TEMPLATE(BM_quantize_matrix, int8_rows)->Name("quantize_matrix/int8_rows")->ArgName("threads")
    ->Arg(1)->Arg(2)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
