// Benchmarks of decoding's two hot kernels, each beside the way it was done
// before, in one run (the machines are noisy: read the ratios).
//
// Products: every weight product of one decode step of the small preset
// (8 layers of fused q|k|v, o, gate|up, down, then lm_head: 27.4 M weights,
// 110 MB, so each step reads them from memory as decoding does) for m live
// sequences, through
//   eigen   ops::matmul_nn over the [in x out] transposed copy (Eigen packs
//           the weights on every call; the decoder's former path)
//   packed  ops::matmul_packed over the weights packed once
// Counters: GFLOP/s, and GB/s of weights read.
//
// Attention: one decode step's attention of the small preset (32 sequences x
// 4 kv heads x 2 query heads, head_dim 64, `keys` cached positions each, 8
// layers: 134 MB of cache at 256 keys, read from memory), through
//   per_head  a GEMM per query head (Eigen's gemv for one query; the
//             decoder's former path: each key row is read once per head)
//   query     ops::attention_forward (one pass over the keys for the heads
//             of a kv group, prefetched)
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "lmrl/model/config.hpp"
#include "lmrl/model/ops/attention.hpp"
#include "lmrl/model/ops/matmul.hpp"
#include "lmrl/model/ops/packed_matmul.hpp"
#include "lmrl/sample/philox.hpp"

namespace {

using namespace lmrl;

std::vector<float> random_values(std::size_t n, std::uint64_t stream) {
  const counter_rng rng(99);
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i)
    v[i] = static_cast<float>(rng.uniform_double(stream, static_cast<std::uint32_t>(i)) - 0.5);
  return v;
}

// The small preset's weight matrices of one step, [out x in] each.
struct step_weights {
  struct shape {
    index_t out, in;
  };
  std::vector<shape> shapes;
  std::vector<std::vector<float>> values;

  step_weights() {
    const transformer_config c = transformer_config::small();
    const index_t d = c.hidden_size, qkv = c.num_attention_heads * c.head_dim() + 2 * c.kv_dim();
    const index_t ffn = c.intermediate_size;
    for (index_t l = 0; l < c.num_hidden_layers; ++l)
      for (const shape s : {shape{qkv, d}, shape{d, c.num_attention_heads * c.head_dim()}, shape{2 * ffn, d},
                            shape{d, ffn}})
        shapes.push_back(s);
    shapes.push_back({c.vocab_size, d});
    for (std::size_t i = 0; i < shapes.size(); ++i)
      values.push_back(random_values(static_cast<std::size_t>(shapes[i].out * shapes[i].in), i));
  }
  matrix_view<const float> matrix(std::size_t i) const {
    return {values[i].data(), {shapes[i].out, shapes[i].in}};
  }
  double flops_per_row() const {
    double n = 0;
    for (const auto& s : shapes) n += 2.0 * static_cast<double>(s.out * s.in);
    return n;
  }
};

const step_weights& weights() {
  static const step_weights w;
  return w;
}

void set_product_counters(benchmark::State& state, index_t m) {
  const double flops = weights().flops_per_row() * static_cast<double>(m);
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["weights_GB/s"] =
      benchmark::Counter(flops / 2 / static_cast<double>(m) * sizeof(float) * 1e-9,
                         benchmark::Counter::kIsIterationInvariantRate);
}

void BM_decode_products_eigen(benchmark::State& state) {
  const index_t m = state.range(0);
  const step_weights& w = weights();
  std::vector<std::vector<float>> transposed;  // [in x out]
  for (std::size_t i = 0; i < w.shapes.size(); ++i) {
    const auto src = w.matrix(i);
    auto& t = transposed.emplace_back(w.values[i].size());
    for (index_t o = 0; o < src.shape[0]; ++o)
      for (index_t k = 0; k < src.shape[1]; ++k) t[static_cast<std::size_t>(k * src.shape[0] + o)] = src(o, k);
  }
  const std::vector<float> x = random_values(static_cast<std::size_t>(m * 8192), 1000);
  std::vector<float> y(static_cast<std::size_t>(m * 8192));
  for (auto _ : state) {
    for (std::size_t i = 0; i < w.shapes.size(); ++i) {
      const auto [out, in] = w.shapes[i];
      ops::matmul_nn<float>(matrix_view<const float>(x.data(), {m, in}),
                            matrix_view<const float>(transposed[i].data(), {in, out}),
                            matrix_view<float>(y.data(), {m, out}));
    }
    benchmark::DoNotOptimize(y.data());
  }
  set_product_counters(state, m);
}

void BM_decode_products_packed(benchmark::State& state) {
  const index_t m = state.range(0);
  const step_weights& w = weights();
  std::vector<ops::packed_matrix<float>> packed;
  for (std::size_t i = 0; i < w.shapes.size(); ++i) packed.emplace_back(std::initializer_list{w.matrix(i)});
  const std::vector<float> x = random_values(static_cast<std::size_t>(m * 8192), 1000);
  std::vector<float> y(static_cast<std::size_t>(m * 8192));
  for (auto _ : state) {
    for (const auto& p : packed)
      ops::matmul_packed<float>(matrix_view<const float>(x.data(), {m, p.inputs()}), p,
                                matrix_view<float>(y.data(), {m, p.outputs()}));
    benchmark::DoNotOptimize(y.data());
  }
  set_product_counters(state, m);
}

// One decode step's attention at the small preset, for bench_model_step's
// small step (4 prompts x 8 sequences, 64 + 192 positions): jobs (layer,
// sequence, kv head), each one query row of the kv head's query heads against
// its own [keys x head_dim] block of K and V.
struct decode_attention {
  static constexpr index_t sequences = 4 * 8, max_len = 64 + 192;
  const transformer_config config = transformer_config::small();
  const index_t layers = config.num_hidden_layers, kv_heads = config.num_key_value_heads,
                group = config.heads_per_kv(), hd = config.head_dim();
  index_t keys;
  std::vector<float> k, v, q, out;

  explicit decode_attention(index_t keys_)
      : keys(keys_),
        k(random_values(static_cast<std::size_t>(layers * sequences * kv_heads * max_len * hd), 1)),
        v(random_values(k.size(), 2)),
        q(random_values(static_cast<std::size_t>(sequences * kv_heads * group * hd), 3)),
        out(q.size()) {}

  template <class F>
  void each_job(F&& f) {
#if defined(_OPENMP)
#pragma omp parallel for schedule(dynamic, 1)
#endif
    for (index_t job = 0; job < layers * sequences * kv_heads; ++job) {
      const index_t block = job * max_len * hd, row = job % (sequences * kv_heads);
      f(matrix_view<const float>(q.data() + row * group * hd, {1, group * hd}),
        matrix_view<const float>(k.data() + block, {keys, hd}), matrix_view<const float>(v.data() + block, {keys, hd}),
        matrix_view<float>(out.data() + row * group * hd, {1, group * hd}));
    }
  }
  void set_counters(benchmark::State& state) const {
    const double bytes = 2.0 * static_cast<double>(layers * sequences * kv_heads * keys * hd) * sizeof(float);
    state.counters["cache_GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  }
};

void BM_decode_attention_per_head(benchmark::State& state) {
  decode_attention a(state.range(0));
  const float scale = ops::detail::default_scale<float>(a.hd);
  for (auto _ : state) {
    a.each_job([&](auto q, auto k, auto v, auto out) {
      for (index_t h = 0; h < a.group; ++h)
        ops::detail::attention_head_forward<float>(ops::detail::head_block(q, 0, 1, h, a.hd), k, v, a.keys, {}, {},
                                                   scale, ops::detail::head_block(out, 0, 1, h, a.hd), {});
    });
    benchmark::DoNotOptimize(a.out.data());
  }
  a.set_counters(state);
}

void BM_decode_attention_query(benchmark::State& state) {
  decode_attention a(state.range(0));
  for (auto _ : state) {
    a.each_job([&](auto q, auto k, auto v, auto out) {
      ops::attention_forward<float>(q, k, v, a.group, a.keys, {}, out);
    });
    benchmark::DoNotOptimize(a.out.data());
  }
  a.set_counters(state);
}

}  // namespace

BENCHMARK(BM_decode_products_eigen)->Arg(1)->Arg(8)->Arg(32)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_decode_products_packed)->Arg(1)->Arg(8)->Arg(32)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_decode_attention_per_head)->Arg(64)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_decode_attention_query)->Arg(64)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
