// model/transformer.cuh: the GPU transformer's log_probs forward and backward
// against the CPU transformer<float> (model/transformer.hpp) on a tiny random
// model (vocab 40, d 32, 2 layers, 4 heads over 2 kv heads, ffn 48, q/k/v
// biases, tied and untied lm_head, temperature 0.7) and padded batches (left,
// right, both, one real token, none), with the output layer in one chunk and in
// chunks of 7 rows. Runs only on a GPU.
//
// Outputs (logp, entropy) are poisoned (NaN) before each call, so an element
// the GPU fails to write fails; positions without a prediction must be exactly
// 0. The gradient buffer starts from the same random nonzero values on both
// sides (it is ADDED to), and backward runs twice (the second must add again).
// grad_logp and grad_entropy hold NaN at the positions that have no
// prediction: neither side may read them. The workspace is reused across
// batches that shrink and grow (stale values from a larger batch must not leak
// into a smaller one).
//
// Tolerances, both relative to a scale, never passing a NaN:
//   logp, entropy: |gpu - cpu| <= 1e-4 * max |cpu| over the batch;
//   gradients:     |gpu - cpu| <= 5e-4 * max |cpu - g0| over that tensor (per named tensor of the layout;
//                  g0 the buffer before backward, so the scale is what backward added: a backward that
//                  overwrote instead of adding is off by |g0| ~ 0.5, 50 to 1000 times the tolerance).
// Why: both sides compute in float32 the same formulas in different orders of
// summation (cuBLAS against Eigen, online-softmax attention against the CPU's,
// expf against std::exp, FMA contraction). Measured on the CPU for exactly
// these models, weights, batches, upstream gradients and metrics (a copy of
// this test with transformer<double> in place of the GPU): transformer<float>
// differs from transformer<double> by at most 4.9e-7 of the largest |logp|
// (7 .. 12), 1.1e-6 of the largest entropy (~3), and 1.2e-5 of what backward
// added to a tensor (most tensors and batches 1e-6 .. 3e-6). The GPU's float
// result has errors of the same size, so GPU against CPU should stay within
// about twice those: the tolerances leave a margin of ~45 (outputs) and ~20
// (gradients), while a missing bias, an unrotated k, a wrong row offset, a lost
// accumulation or an unwritten element moves a value by O(1e-2 .. 1) of the
// scale. The worst errors are printed (MESSAGE) so the first GPU runs record
// them; tighten the tolerances then.
#include <doctest/doctest.h>

#include "cuda/random_parameters.hpp"
#include "cuda/random_values.hpp"
#include "support/model_shapes.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "lmrl/cuda/device_array.cuh"
#include "lmrl/model/transformer.cuh"
// Eigen's own headers annotate defaulted members __host__ __device__, which
// nvcc reports (warning 20012) in every .cu that includes them.
#pragma nv_diag_suppress 20012
#include "lmrl/model/transformer.hpp"
#pragma nv_diag_default 20012

using namespace lmrl;
using lmrl::cuda::device_array;
using lmrl::cuda::gemm_precision;
using lmrl::cuda::transformer_gpu;
using lmrl::testing::random_parameters;

namespace {

constexpr double output_tolerance = 1e-4;
constexpr double gradient_tolerance = 5e-4;
constexpr double test_temperature = 0.7;
constexpr std::int32_t pad_token = 12345;  // out of the vocabulary: reading it would be flagged as an error
const float nan_value = std::numeric_limits<float>::quiet_NaN();

transformer_config tiny_config(bool tied) {
  transformer_config c = lmrl::testing::transformer_shape(40, 32, 2, 4, 2, 48, 64);
  c.tie_word_embeddings = tied;
  c.attention_bias = true;
  return c;
}

std::vector<float> random_vector(std::size_t n, std::uint64_t seed, double lo = -1, double hi = 1) {
  return lmrl::testing::random_values<float>(static_cast<index_t>(n), seed, lo, hi);
}

struct padding {
  index_t left = 0, right = 0;
};

// A padded batch: row i has pads[i].left pads, then real tokens, then pads[i].right pads.
struct padded_batch {
  index_t B = 0, T = 0;
  std::vector<std::int32_t> tokens;
  std::vector<float> mask;

  padded_batch(index_t seq_len, const std::vector<padding>& pads, index_t vocab, std::uint64_t seed)
      : B(static_cast<index_t>(pads.size())), T(seq_len) {
    std::mt19937_64 rng(seed);
    tokens.resize(static_cast<std::size_t>(B * T));
    mask.resize(tokens.size());
    for (index_t i = 0; i < B; ++i)
      for (index_t t = 0; t < T; ++t) {
        const auto r = static_cast<std::size_t>(i * T + t);
        const bool real = t >= pads[static_cast<std::size_t>(i)].left && t < T - pads[static_cast<std::size_t>(i)].right;
        mask[r] = real ? 1.0f : 0.0f;
        tokens[r] = real ? static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(vocab)) : pad_token;
      }
  }
  token_batch<float> view() const {
    return {matrix_view<const std::int32_t>(tokens.data(), {B, T}), matrix_view<const float>(mask.data(), {B, T})};
  }
  // Position (i, t) has a prediction: t >= 1, tokens t and t-1 real.
  bool predicted(std::size_t r) const {
    return r % static_cast<std::size_t>(T) != 0 && mask[r] == 1.0f && mask[r - 1] == 1.0f;
  }
  std::size_t size() const { return tokens.size(); }
};

// Random values at the predicted positions, NaN elsewhere (never to be read).
std::vector<float> random_upstream(const padded_batch& b, std::uint64_t seed) {
  auto v = random_vector(b.size(), seed);
  for (std::size_t r = 0; r < v.size(); ++r)
    if (!b.predicted(r)) v[r] = nan_value;
  return v;
}

// |got - expected| <= tol * max |expected|, and exactly 0 where nothing is predicted.
void check_outputs(const std::vector<float>& got, const std::vector<float>& expected, const padded_batch& b,
                   const char* what) {
  REQUIRE(got.size() == expected.size());
  double scale = 0, worst = 0;
  for (const float e : expected) scale = std::max(scale, std::abs(static_cast<double>(e)));
  REQUIRE(scale > 0);
  index_t bad = 0, unpredicted_nonzero = 0;
  for (std::size_t r = 0; r < got.size(); ++r) {
    if (!b.predicted(r)) {
      if (got[r] != 0.0f) ++unpredicted_nonzero;  // NaN counts
      continue;
    }
    const double err = std::abs(static_cast<double>(got[r]) - expected[r]);
    if (!(err <= output_tolerance * scale)) ++bad;
    if (std::isnan(err)) worst = std::numeric_limits<double>::infinity();
    else worst = std::max(worst, err);
  }
  MESSAGE(what, ": worst |gpu - cpu| / max |cpu| = ", worst / scale, " (scale ", scale, ")");
  CHECK_MESSAGE(unpredicted_nonzero == 0, what, ": ", unpredicted_nonzero, " positions without a prediction not 0");
  CHECK_MESSAGE(bad == 0, what, ": ", bad, " elements off by more than ", output_tolerance, " of ", scale);
}

// Per named tensor, with base the buffer before the backward calls: |gpu - cpu| <= tol * max |cpu - base| over
// the tensor (the scale of what backward added, not of base; exactly equal where nothing was added).
void check_gradients(const std::vector<float>& got, std::span<const float> expected, const std::vector<float>& base,
                     const parameter_layout& layout, const char* what) {
  REQUIRE(got.size() == expected.size());
  REQUIRE(base.size() == expected.size());
  double worst_all = 0;
  for (const auto& e : layout.entries()) {
    double scale = 0, worst = 0;
    for (index_t k = 0; k < e.size; ++k) {
      const auto i = static_cast<std::size_t>(e.offset + k);
      scale = std::max(scale, std::abs(static_cast<double>(expected[i]) - base[i]));
    }
    index_t bad = 0;
    for (index_t k = 0; k < e.size; ++k) {
      const auto i = static_cast<std::size_t>(e.offset + k);
      const double err = std::abs(static_cast<double>(got[i]) - expected[i]);
      if (!(err <= gradient_tolerance * scale)) ++bad;
      worst = std::isnan(err) ? std::numeric_limits<double>::infinity() : std::max(worst, err);
    }
    if (scale > 0) worst_all = std::max(worst_all, worst / scale);
    CHECK_MESSAGE(bad == 0, what, ": ", e.name, ": ", bad, " of ", e.size, " elements off by more than ",
                  gradient_tolerance, " of ", scale, " (worst ", worst, ")");
  }
  MESSAGE(what, ": worst |gpu - cpu| / max |cpu - before| over the tensors = ", worst_all);
}

template <class T>
device_array<T> upload(const std::vector<T>& v) {
  return device_array<T>::from_host(std::span<const T>(v));
}

template <class T>
device_array<T> poisoned(std::size_t n) {
  device_array<T> a(n);
  a.poison();
  return a;
}

std::vector<float> download_gradients(const transformer_gpu& gpu) {
  std::vector<float> g(gpu.size());
  gpu.download_gradients(g);
  return g;
}

bool all_zero(const std::vector<float>& v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return x == 0.0f; });
}

void set_gpu_gradients(transformer_gpu& gpu, const std::vector<float>& g) {
  REQUIRE(g.size() == gpu.size());
  LMRL_CUDA_CHECK(cudaMemcpy(gpu.gradients(), g.data(), g.size() * sizeof(float), cudaMemcpyHostToDevice));
}

// The batches, in an order that grows, shrinks and grows the workspace.
std::vector<padded_batch> test_batches(index_t vocab) {
  std::vector<padded_batch> batches;
  batches.emplace_back(7, std::vector<padding>{{0, 0}, {2, 0}, {0, 3}}, vocab, 101);
  batches.emplace_back(11, std::vector<padding>{{0, 0}, {3, 0}, {0, 4}, {2, 2}, {10, 0}, {11, 0}}, vocab, 102);
  batches.emplace_back(5, std::vector<padding>{{1, 1}, {0, 0}}, vocab, 103);
  batches.emplace_back(13, std::vector<padding>{{0, 0}, {5, 0}, {0, 6}, {1, 3}, {0, 12}, {4, 4}, {0, 1}, {6, 0}},
                       vocab, 104);
  return batches;
}

}  // namespace

TEST_CASE("cuda transformer_gpu log_probs and backward match transformer float, tied and untied, chunked or not") {
  for (const bool tied : {false, true})
    for (const index_t chunk : {index_t{0}, index_t{7}}) {
      CAPTURE(tied);
      CAPTURE(chunk);
      const transformer_config config = tiny_config(tied);
      const auto params = random_parameters(config, tied ? 11 : 12);
      transformer<float> cpu(params);
      transformer_gpu gpu(params);
      cpu.temperature = gpu.temperature = test_temperature;
      gpu.logit_chunk_rows = chunk;
      REQUIRE(gpu.size() == params.values().size());

      const auto batches = test_batches(config.vocab_size);
      for (std::size_t bi = 0; bi < batches.size(); ++bi) {
        CAPTURE(bi);
        const padded_batch& b = batches[bi];
        const auto B = b.B, T = b.T;
        const auto n = b.size();
        // Alternate the optional inputs: entropy wanted or not, grad_logp / grad_entropy given or not.
        const bool want_entropy = bi != 2, with_gl = bi != 1, with_ge = bi != 3;

        // Forward.
        std::vector<float> logp_cpu(n), entropy_cpu(n);
        cpu.log_probs(b.view(), matrix_view<float>(logp_cpu.data(), {B, T}),
                      matrix_view<float>(entropy_cpu.data(), {B, T}));
        auto tokens_dev = upload(b.tokens);
        auto mask_dev = upload(b.mask);
        auto logp_dev = poisoned<float>(n), entropy_dev = poisoned<float>(n);
        gpu.log_probs(tokens_dev.data(), mask_dev.data(), B, T, logp_dev.data(),
                      want_entropy ? entropy_dev.data() : nullptr);
        check_outputs(logp_dev.to_host(), logp_cpu, b, "logp");
        if (want_entropy) check_outputs(entropy_dev.to_host(), entropy_cpu, b, "entropy");

        // Backward, twice, from the same random nonzero gradient buffer on both sides.
        const auto g0 = random_vector(gpu.size(), 1000 + bi);
        std::copy(g0.begin(), g0.end(), cpu.gradients().begin());
        set_gpu_gradients(gpu, g0);
        const auto gl = random_upstream(b, 2000 + bi), ge = random_upstream(b, 3000 + bi);
        auto gl_dev = upload(gl), ge_dev = upload(ge);
        const matrix_view<const float> gl_cpu = with_gl ? matrix_view<const float>(gl.data(), {B, T})
                                                        : matrix_view<const float>{};
        const matrix_view<const float> ge_cpu = with_ge ? matrix_view<const float>(ge.data(), {B, T})
                                                        : matrix_view<const float>{};
        // the caller's batch may be gone by the backward pass: poison it
        tokens_dev.poison();
        mask_dev.poison();
        for (int pass = 1; pass <= 2; ++pass) {
          CAPTURE(pass);
          cpu.backward(b.view(), gl_cpu, ge_cpu);
          gpu.backward(with_gl ? gl_dev.data() : nullptr, with_ge ? ge_dev.data() : nullptr);
          check_gradients(download_gradients(gpu), cpu.gradients(), g0, params.layout(),
                          pass == 1 ? "gradients after one backward" : "gradients after two backward calls");
        }
      }
    }
}

TEST_CASE("cuda transformer_gpu gives the same bits twice and its buffers round-trip") {
  const transformer_config config = tiny_config(false);
  const auto params = random_parameters(config, 21);
  transformer_gpu gpu(params);
  gpu.temperature = test_temperature;

  std::vector<float> down(gpu.size());
  gpu.download_parameters(down);
  CHECK(std::equal(down.begin(), down.end(), params.values().begin()));
  CHECK(all_zero(download_gradients(gpu)));

  const padded_batch b(9, {{0, 0}, {3, 0}, {0, 2}}, config.vocab_size, 22);
  auto tokens_dev = upload(b.tokens);
  auto mask_dev = upload(b.mask);
  auto gl_dev = upload(random_upstream(b, 23)), ge_dev = upload(random_upstream(b, 24));
  std::vector<float> logp[2], entropy[2], grads[2];
  for (int run = 0; run < 2; ++run) {
    auto logp_dev = poisoned<float>(b.size()), entropy_dev = poisoned<float>(b.size());
    gpu.zero_grad();
    gpu.log_probs(tokens_dev.data(), mask_dev.data(), b.B, b.T, logp_dev.data(), entropy_dev.data());
    gpu.backward(gl_dev.data(), ge_dev.data());
    logp[run] = logp_dev.to_host();
    entropy[run] = entropy_dev.to_host();
    grads[run] = download_gradients(gpu);
  }
  auto same_bits = [](const std::vector<float>& a, const std::vector<float>& c) {
    return a.size() == c.size() && std::memcmp(a.data(), c.data(), a.size() * sizeof(float)) == 0;
  };
  CHECK(same_bits(logp[0], logp[1]));
  CHECK(same_bits(entropy[0], entropy[1]));
  CHECK(same_bits(grads[0], grads[1]));
  CHECK(std::any_of(grads[0].begin(), grads[0].end(), [](float g) { return g != 0; }));

  // upload_parameters then download: the same values
  auto changed = random_vector(gpu.size(), 25);
  gpu.upload_parameters(changed);
  gpu.download_parameters(down);
  CHECK(down == changed);
  gpu.zero_grad();
  CHECK(all_zero(download_gradients(gpu)));
}

TEST_CASE("cuda transformer_gpu with tf32 products: near the CPU's float results, not fp32's bits") {
  // TF32 rounds the products' inputs to 10 mantissa bits (relative 2^-11 ~ 5e-4 each): the outputs move by
  // about 1e-3 of their scale through two layers, so the tolerances here are 1e-2 (outputs) and 5e-2 (what
  // backward added); a wiring mistake moves values by O(1e-1 .. 1) of the scale, as in the fp32 test.
  // The larger of worst and |err|; a NaN error makes it infinite (std::max would drop it).
  const auto worse = [](double worst, double err) {
    return std::isnan(err) ? std::numeric_limits<double>::infinity() : std::max(worst, std::abs(err));
  };
  const transformer_config config = tiny_config(false);
  const auto params = random_parameters(config, 31);
  transformer<float> cpu(params);
  transformer_gpu gpu(params);
  cpu.temperature = gpu.temperature = test_temperature;
  const padded_batch b = test_batches(config.vocab_size)[1];
  const auto n = b.size();
  std::vector<float> logp_cpu(n), entropy_cpu(n);
  cpu.log_probs(b.view(), matrix_view<float>(logp_cpu.data(), {b.B, b.T}),
                matrix_view<float>(entropy_cpu.data(), {b.B, b.T}));
  auto tokens_dev = upload(b.tokens);
  auto mask_dev = upload(b.mask);
  std::vector<float> logp[2];
  for (const gemm_precision p : {gemm_precision::fp32, gemm_precision::tf32}) {
    gpu.precision = p;
    auto logp_dev = poisoned<float>(n), entropy_dev = poisoned<float>(n);
    gpu.log_probs(tokens_dev.data(), mask_dev.data(), b.B, b.T, logp_dev.data(), entropy_dev.data());
    logp[p == gemm_precision::tf32] = logp_dev.to_host();
    if (p == gemm_precision::fp32) continue;
    const auto entropy = entropy_dev.to_host();
    double scale = 0, worst = 0, entropy_scale = 0, entropy_worst = 0;
    for (std::size_t r = 0; r < n; ++r) {
      if (!b.predicted(r)) continue;
      scale = std::max(scale, std::abs(static_cast<double>(logp_cpu[r])));
      worst = worse(worst, static_cast<double>(logp[1][r]) - logp_cpu[r]);
      entropy_scale = std::max(entropy_scale, std::abs(static_cast<double>(entropy_cpu[r])));
      entropy_worst = worse(entropy_worst, static_cast<double>(entropy[r]) - entropy_cpu[r]);
    }
    MESSAGE("tf32: worst |gpu - cpu| / max |cpu|: logp ", worst / scale, ", entropy ", entropy_worst / entropy_scale);
    CHECK(worst <= 1e-2 * scale);
    CHECK(entropy_worst <= 1e-2 * entropy_scale);
  }
  CHECK(std::memcmp(logp[0].data(), logp[1].data(), n * sizeof(float)) != 0);  // the knob reached the products
  // Backward of the tf32 forward (it keeps the forward's precision even if the member changes in between).
  gpu.precision = gemm_precision::fp32;
  std::fill(cpu.gradients().begin(), cpu.gradients().end(), 0.0f);
  gpu.zero_grad();
  const auto gl = random_upstream(b, 32), ge = random_upstream(b, 33);
  auto gl_dev = upload(gl), ge_dev = upload(ge);
  cpu.backward(b.view(), matrix_view<const float>(gl.data(), {b.B, b.T}), matrix_view<const float>(ge.data(), {b.B, b.T}));
  gpu.backward(gl_dev.data(), ge_dev.data());
  const auto got = download_gradients(gpu);
  for (const auto& e : params.layout().entries()) {
    double scale = 0, worst = 0;
    for (index_t k = 0; k < e.size; ++k) {
      const auto i = static_cast<std::size_t>(e.offset + k);
      scale = std::max(scale, std::abs(static_cast<double>(cpu.gradients()[i])));
      worst = worse(worst, static_cast<double>(got[i]) - cpu.gradients()[i]);
    }
    CAPTURE(e.name);
    CHECK(worst <= 5e-2 * scale);
  }
}

TEST_CASE("cuda transformer_gpu values and backward_values match transformer float's value head") {
  transformer_config config = tiny_config(true);
  config.value_head = true;
  const auto params = random_parameters(config, 41);
  transformer<float> cpu(params);
  transformer_gpu gpu(params);
  const auto batches = test_batches(config.vocab_size);
  for (const std::size_t bi : {std::size_t{0}, std::size_t{3}}) {
    CAPTURE(bi);
    const padded_batch& b = batches[bi];
    std::vector<float> values_cpu(b.size());
    cpu.values(b.view(), matrix_view<float>(values_cpu.data(), {b.B, b.T}));
    auto tokens_dev = upload(b.tokens);
    auto mask_dev = upload(b.mask);
    auto values_dev = poisoned<float>(b.size());
    gpu.values(tokens_dev.data(), mask_dev.data(), b.B, b.T, values_dev.data());
    check_outputs(values_dev.to_host(), values_cpu, b, "values");
    CHECK_THROWS_WITH_AS(gpu.backward(nullptr, nullptr), doctest::Contains("call log_probs on the batch first"), error);
    const auto g0 = random_vector(gpu.size(), 4000 + bi);
    std::copy(g0.begin(), g0.end(), cpu.gradients().begin());
    set_gpu_gradients(gpu, g0);
    const auto gv = random_upstream(b, 5000 + bi);
    auto gv_dev = upload(gv);
    cpu.backward_values(b.view(), matrix_view<const float>(gv.data(), {b.B, b.T}));
    gpu.backward_values(gv_dev.data());
    check_gradients(download_gradients(gpu), cpu.gradients(), g0, params.layout(), "value-head gradients");
  }
  auto tokens_dev = upload(batches[0].tokens);
  auto mask_dev = upload(batches[0].mask);
  auto logp_dev = poisoned<float>(batches[0].size());
  gpu.log_probs(tokens_dev.data(), mask_dev.data(), batches[0].B, batches[0].T, logp_dev.data(), nullptr);
  CHECK_THROWS_WITH_AS(gpu.backward_values(logp_dev.data()), doctest::Contains("call values on the batch first"), error);
  transformer_gpu headless(random_parameters(tiny_config(true), 42));
  CHECK_THROWS_WITH_AS(headless.values(tokens_dev.data(), mask_dev.data(), batches[0].B, batches[0].T, logp_dev.data()),
                       doctest::Contains("has no value head"), error);
}

TEST_CASE("cuda transformer_gpu rejects bad batches and unsupported masks with lmrl error") {
  transformer_config config = tiny_config(true);
  config.max_position_embeddings = 8;
  const auto params = random_parameters(config, 31);
  transformer_gpu gpu(params);
  auto logp_dev = poisoned<float>(2 * 10);

  CHECK_THROWS_AS(gpu.backward(nullptr, nullptr), lmrl::error);  // no forward yet

  auto run = [&](std::vector<std::int32_t> tokens, std::vector<float> mask) {
    auto t = upload(tokens);
    auto m = upload(mask);
    gpu.log_probs(t.data(), m.data(), 2, static_cast<index_t>(tokens.size() / 2), logp_dev.data(), nullptr);
  };
  const std::vector<std::int32_t> ok_tokens = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};  // [2 x 5]
  const std::vector<float> ok_mask = {1, 1, 1, 1, 1, 0, 0, 1, 1, 1};
  CHECK_NOTHROW(run(ok_tokens, ok_mask));
  CHECK_NOTHROW(gpu.backward(nullptr, nullptr));

  // packed-sequence masks: not supported on the GPU yet
  CHECK_THROWS_WITH_AS(run(ok_tokens, {1, 1, 2, 2, 2, 1, 1, 1, 0, 0}),
                       doctest::Contains("packed-sequence masks are not supported"), lmrl::error);
  CHECK_THROWS_AS(gpu.backward(nullptr, nullptr), lmrl::error);  // a failed forward leaves nothing to differentiate
  CHECK_THROWS_WITH_AS(run(ok_tokens, {1, 1, 0.5f, 1, 1, 1, 1, 1, 1, 1}), doctest::Contains("attention_mask(0, 2)"),
                       lmrl::error);
  CHECK_THROWS_AS(run(ok_tokens, {1, 1, 1, 1, 1, 1, -1, 1, 1, 1}), lmrl::error);
  CHECK_THROWS_AS(run(ok_tokens, {1, 1, 1, 1, 1, 1, nan_value, 1, 1, 1}), lmrl::error);
  // token ids: out of range where real, anything where padded
  CHECK_THROWS_WITH_AS(run({1, 2, 3, 40, 5, 6, 7, 8, 9, 10}, ok_mask), doctest::Contains("tokens(0, 3) = 40"),
                       lmrl::error);
  CHECK_THROWS_AS(run({1, 2, 3, 4, 5, 6, 7, -1, 9, 10}, ok_mask), lmrl::error);
  CHECK_NOTHROW(run({1, 2, 3, 4, 5, -7, 99999, 8, 9, 10}, ok_mask));
  // more real tokens than max_position_embeddings = 8
  {
    auto t = upload(std::vector<std::int32_t>(20, 3));
    auto m = upload(std::vector<float>(20, 1.0f));
    auto out = poisoned<float>(20);
    CHECK_THROWS_WITH_AS(gpu.log_probs(t.data(), m.data(), 2, 10, out.data(), nullptr),
                         doctest::Contains("max_position_embeddings"), lmrl::error);
  }
  // empty batch, null pointers, bad temperature
  CHECK_THROWS_AS(gpu.log_probs(nullptr, nullptr, 0, 5, logp_dev.data(), nullptr), lmrl::error);
  {
    auto t = upload(ok_tokens);
    auto m = upload(ok_mask);
    CHECK_THROWS_AS(gpu.log_probs(t.data(), nullptr, 2, 5, logp_dev.data(), nullptr), lmrl::error);
    gpu.temperature = 0;
    CHECK_THROWS_AS(gpu.log_probs(t.data(), m.data(), 2, 5, logp_dev.data(), nullptr), lmrl::error);
  }
}
