// model/transformer.cuh: the GPU transformer's log_probs forward and backward
// against the CPU transformer<float> (model/transformer.hpp) on a tiny random
// model (vocab 40, d 32, 2 layers, 4 heads over 2 kv heads, ffn 48, q/k/v
// biases, tied and untied lm_head, temperature 0.7) and padded batches (left,
// right, both, one real token, none) and a batch of packed rows (mask values
// numbering sequences), with the output layer in one chunk and in chunks of 7
// rows. Runs only on a GPU.
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
// scale. (The packed batch, measured the same way: 3.1e-7 of the largest |logp|,
// 3.5e-7 of the entropy, 3.3e-6 of a gradient.) The worst errors are printed (MESSAGE) so the first GPU runs record
// them; tighten the tolerances then.
#include "support/doctest_strings.hpp"

#include "cuda/model_batches.hpp"
#include "cuda/random_parameters.hpp"

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
#include "lmrl/model/transformer.hpp"

using namespace lmrl;
using lmrl::cuda::device_array;
using lmrl::cuda::gemm_precision;
using lmrl::cuda::transformer_gpu;
using lmrl::testing::random_parameters;

namespace {

constexpr double output_tolerance = 1e-4;
constexpr double gradient_tolerance = 5e-4;
constexpr double test_temperature = 0.7;
using lmrl::testing::nan_value;
using lmrl::testing::packed_test_batch;
using lmrl::testing::padded_batch;
using lmrl::testing::random_upstream;
using lmrl::testing::random_vector;
using lmrl::testing::test_batches;
using lmrl::testing::tiny_config;

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

      auto batches = test_batches(config.vocab_size);
      batches.push_back(packed_test_batch(config.vocab_size));
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

TEST_CASE("cuda transformer_gpu at bf16 and fp8 rounds its weights again after every kind of change, and only then") {
  const transformer_config config = tiny_config(false);
  const auto params = random_parameters(config, 26);
  const padded_batch b(9, {{0, 0}, {3, 0}, {0, 2}}, config.vocab_size, 27);
  auto tokens_dev = upload(b.tokens);
  auto mask_dev = upload(b.mask);
  const auto logp_of = [&](transformer_gpu& model) {
    auto out = poisoned<float>(b.size());
    model.log_probs(tokens_dev.data(), mask_dev.data(), b.B, b.T, out.data(), nullptr);
    return out.to_host();
  };
  for (const gemm_precision p : {gemm_precision::bf16, gemm_precision::fp8}) {
    CAPTURE(to_string(p));
    transformer_gpu gpu(params);
    gpu.precision = p;
    const auto version = gpu.weights_version();
    const auto first = logp_of(gpu);
    CHECK(logp_of(gpu) == first);  // the same copies, the same bits
    CHECK(gpu.weights_version() == version);  // passes change nothing

    // Each way the buffer can change gives the bits of a model built with the new values.
    auto changed = transformer_parameters<float>(params);
    for (float& v : changed.values()) v = 0.75f * v - 0.01f;
    transformer_gpu fresh(changed);
    fresh.precision = p;
    const auto expected = logp_of(fresh);
    CHECK(expected != first);
    gpu.upload_parameters(changed.values());  // an upload
    CHECK(gpu.weights_version() > version);
    CHECK(logp_of(gpu) == expected);
    gpu.upload_parameters(params.values());
    CHECK(logp_of(gpu) == first);
    float* writable = gpu.parameters();  // a write through the device pointer (a device optimizer's)
    LMRL_CUDA_CHECK(cudaMemcpy(writable, changed.values().data(), changed.values().size_bytes(),
                               cudaMemcpyHostToDevice));
    CHECK(logp_of(gpu) == expected);
    LMRL_CUDA_CHECK(cudaMemcpy(writable, params.values().data(), params.values().size_bytes(),
                               cudaMemcpyHostToDevice));
    gpu.parameters_changed();  // a writer that kept the pointer says so
    CHECK(logp_of(gpu) == first);
  }
}

TEST_CASE("cuda transformer_gpu with tf32, bf16 and fp8 products: near the CPU's float results, not fp32's bits") {
  // Reduced-precision products round their inputs (tf32: 10 stored mantissa bits, relative 2^-11; bf16: 7, 2^-8)
  // and accumulate in float. Measured on the CPU for exactly this model, batch and upstream gradients, with
  // transformer<float>'s product inputs rounded the same way (tools/precision_emulation): tf32 moves logp by
  // 3.8e-4 and the entropy by 8.3e-4 of their scale, and the gradient of a tensor by at most 4.7e-3 of its
  // norm (|d g| / |g|; median tensor ~3e-3); bf16 by 4.5e-3, 6.0e-3 and 3.6e-2. The tolerances below leave
  // a margin of about 10 (tf32) and 7 (bf16); a wiring mistake (a product skipped, a weight misplaced, an
  // accumulation lost) moves values by O(1e-1 .. 1) of the scale, as in the fp32 test. The gradients are
  // compared by norm per tensor (one rounding flip in a cancelling sum weighs less than elementwise). The bounds
  // are this case's: over other seeds the q/k bias gradients move by up to 0.6 of their norm at bf16.
  // fp8 (the layers' forward products in E4M3 with block scales, the rest bf16) moves this tiny random model a
  // lot: the emulation gives logp 5.4e-2, entropy 8.9e-2 and a gradient tensor 0.54 of its norm (up to 0.27,
  // 0.24 and 5.5 over other seeds and batches: one scale per 128 x 128 block covers each whole weight here).
  // Its bounds (margin about 2) catch a product left in bf16 only through the bits check below; the tight
  // checks of the FP8 products are test_fp8_gemm.cu's.
  struct bound {
    gemm_precision precision;
    double outputs, gradients;
  };
  const bound bounds[] = {
      {gemm_precision::tf32, 1e-2, 5e-2}, {gemm_precision::bf16, 5e-2, 0.25}, {gemm_precision::fp8, 0.15, 1.5}};
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
  const auto gl = random_upstream(b, 32), ge = random_upstream(b, 33);
  std::fill(cpu.gradients().begin(), cpu.gradients().end(), 0.0f);
  cpu.backward(b.view(), matrix_view<const float>(gl.data(), {b.B, b.T}), matrix_view<const float>(ge.data(), {b.B, b.T}));
  auto tokens_dev = upload(b.tokens);
  auto mask_dev = upload(b.mask);
  auto gl_dev = upload(gl), ge_dev = upload(ge);

  std::vector<std::vector<float>> logps;  // fp32, then each bound's
  const auto forward = [&](gemm_precision p) {
    gpu.precision = p;
    auto logp_dev = poisoned<float>(n), entropy_dev = poisoned<float>(n);
    gpu.log_probs(tokens_dev.data(), mask_dev.data(), b.B, b.T, logp_dev.data(), entropy_dev.data());
    logps.push_back(logp_dev.to_host());
    return entropy_dev.to_host();
  };
  forward(gemm_precision::fp32);
  for (const bound& bd : bounds) {
    const char* name = to_string(bd.precision);
    CAPTURE(name);
    const auto entropy = forward(bd.precision);
    const auto& logp = logps.back();
    double scale = 0, worst = 0, entropy_scale = 0, entropy_worst = 0;
    for (std::size_t r = 0; r < n; ++r) {
      if (!b.predicted(r)) {
        CHECK(logp[r] == 0.0f);
        continue;
      }
      scale = std::max(scale, std::abs(static_cast<double>(logp_cpu[r])));
      worst = worse(worst, static_cast<double>(logp[r]) - logp_cpu[r]);
      entropy_scale = std::max(entropy_scale, std::abs(static_cast<double>(entropy_cpu[r])));
      entropy_worst = worse(entropy_worst, static_cast<double>(entropy[r]) - entropy_cpu[r]);
    }
    MESSAGE(name, ": worst |gpu - cpu| / max |cpu|: logp ", worst / scale, ", entropy ", entropy_worst / entropy_scale);
    CHECK(worst <= bd.outputs * scale);
    CHECK(entropy_worst <= bd.outputs * entropy_scale);
    // The knob reached the products: other bits than every earlier precision's.
    for (std::size_t i = 0; i + 1 < logps.size(); ++i)
      CHECK(std::memcmp(logps[i].data(), logp.data(), n * sizeof(float)) != 0);

    // Backward of this forward (it keeps the forward's precision even if the member changes in between).
    gpu.precision = gemm_precision::fp32;
    gpu.zero_grad();
    gpu.backward(gl_dev.data(), ge_dev.data());
    const auto got = download_gradients(gpu);
    double worst_tensor = 0;
    for (const auto& e : params.layout().entries()) {
      double norm = 0, err = 0;
      for (index_t k = 0; k < e.size; ++k) {
        const auto i = static_cast<std::size_t>(e.offset + k);
        const double want = cpu.gradients()[i], d = static_cast<double>(got[i]) - want;
        norm += want * want;
        err += std::isnan(d) ? std::numeric_limits<double>::infinity() : d * d;
      }
      const double relative = std::sqrt(err / norm);
      CAPTURE(e.name);
      CHECK(norm > 0);
      CHECK(relative <= bd.gradients);
      worst_tensor = worse(worst_tensor, relative);
    }
    MESSAGE(name, ": worst |gpu - cpu| / |cpu| over the gradient's tensors: ", worst_tensor);
  }
}

TEST_CASE("cuda transformer_gpu values and backward_values match transformer float's value head") {
  transformer_config config = tiny_config(true);
  config.value_head = true;
  const auto params = random_parameters(config, 41);
  transformer<float> cpu(params);
  transformer_gpu gpu(params);
  auto batches = test_batches(config.vocab_size);
  batches.push_back(packed_test_batch(config.vocab_size));
  for (const std::size_t bi : {std::size_t{0}, std::size_t{3}, std::size_t{4}}) {
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

TEST_CASE("cuda transformer_gpu hidden_states and logits match transformer float's, padded rows 0") {
  for (const bool tied : {false, true}) {
    CAPTURE(tied);
    const transformer_config config = tiny_config(tied);
    const auto params = random_parameters(config, 43);
    transformer<float> cpu(params);
    transformer_gpu gpu(params);
    auto batches = test_batches(config.vocab_size);
    batches.push_back(packed_test_batch(config.vocab_size));
    for (std::size_t bi = 0; bi < batches.size(); ++bi) {
      CAPTURE(bi);
      const padded_batch& b = batches[bi];
      const index_t N = b.B * b.T, d = config.hidden_size, V = config.vocab_size;
      auto tokens_dev = upload(b.tokens);
      auto mask_dev = upload(b.mask);
      for (const index_t width : {d, V}) {
        const bool hidden = width == d;
        CAPTURE(hidden);
        std::vector<float> want(static_cast<std::size_t>(N * width));
        auto got_dev = poisoned<float>(want.size());
        if (hidden) {
          cpu.hidden_states(b.view(), matrix_view<float>(want.data(), {N, width}));
          gpu.hidden_states(tokens_dev.data(), mask_dev.data(), b.B, b.T, got_dev.data());
        } else {
          cpu.logits(b.view(), matrix_view<float>(want.data(), {N, width}));
          gpu.logits(tokens_dev.data(), mask_dev.data(), b.B, b.T, got_dev.data());
        }
        const auto got = got_dev.to_host();
        double scale = 0, worst = 0;
        for (const float e : want) scale = std::max(scale, std::abs(static_cast<double>(e)));
        REQUIRE(scale > 0);
        index_t padded_nonzero = 0;
        for (index_t r = 0; r < N; ++r)
          for (index_t j = 0; j < width; ++j) {
            const auto e = static_cast<std::size_t>(r * width + j);
            if (b.mask[static_cast<std::size_t>(r)] == 0.0f) {
              if (got[e] != 0.0f) ++padded_nonzero;  // NaN counts
              continue;
            }
            const double err = std::abs(static_cast<double>(got[e]) - want[e]);
            worst = std::isnan(err) ? std::numeric_limits<double>::infinity() : std::max(worst, err);
          }
        MESSAGE((hidden ? "hidden_states" : "logits"), ": worst |gpu - cpu| / max |cpu| = ", worst / scale);
        CHECK(padded_nonzero == 0);
        CHECK(worst <= output_tolerance * scale);
      }
      CHECK_THROWS_WITH_AS(gpu.backward(nullptr, nullptr), doctest::Contains("call log_probs on the batch first"),
                           error);
    }
  }
}

TEST_CASE("cuda transformer_gpu rejects bad batches and masks with lmrl error") {
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

  // packed rows: numbers that increase along a row (continued after padding too); one coming back is refused
  CHECK_NOTHROW(run(ok_tokens, {1, 1, 2, 2, 2, 1, 0, 1, 3, 3}));
  CHECK_THROWS_WITH_AS(run(ok_tokens, {1, 1, 1, 1, 1, 2, 2, 1, 1, 1}),
                       doctest::Contains("attention_mask(1, 2) = 1 comes after a larger sequence number"), lmrl::error);
  CHECK_THROWS_AS(gpu.backward(nullptr, nullptr), lmrl::error);  // a failed forward leaves nothing to differentiate
  CHECK_THROWS_WITH_AS(run(ok_tokens, {1, 1, 0.5f, 1, 1, 1, 1, 1, 1, 1}),
                       doctest::Contains("attention_mask(0, 2) = 0.5 but a mask holds"), lmrl::error);
  CHECK_THROWS_WITH_AS(run(ok_tokens, {1, 1, 1, 1, 65537, 1, 1, 1, 1, 1}), doctest::Contains("attention_mask(0, 4)"),
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
