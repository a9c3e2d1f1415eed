// cuda/logprob.cuh, train/adamw.cuh and train/clip_grad.cuh against their CPU twins, rl/logprob.hpp,
// train/adamw.hpp and train/clip_grad.hpp, on the same fresh random inputs (seeded, never zeros),
// with every output poisoned (NaN) before the kernel runs, so an element the
// kernel forgot shows. Padding between rows (and before the first row) holds
// NaN logits and poisoned gradient, so a read or a write out of the rows
// shows too. Runs only on a GPU.
#include "support/doctest_strings.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include "lmrl/cuda/device_array.cuh"
#include "lmrl/cuda/logprob.cuh"
#include "lmrl/rl/logprob.hpp"
#include "lmrl/tensor/span.hpp"
#include "lmrl/train/adamw.cuh"
#include "lmrl/train/adamw.hpp"
#include "lmrl/train/clip_grad.cuh"
#include "lmrl/train/clip_grad.hpp"

using namespace lmrl;

namespace {

constexpr float nan_f = std::numeric_limits<float>::quiet_NaN();

// Tolerances, float32 logits (the CPU and the GPU both accumulate floats and
// merge in double, but in different orders, with different exp
// implementations of ~2 ulp each):
//  - lse and logp: 1e-5 relative to max(1, |value|). Their error is the
//    relative error of the sum S (a few hundred float additions per thread, a
//    few ulp of exp per term: ~1e-6) as an absolute error; near 0 (a target
//    with p ~ 1) only the absolute part means anything.
//  - entropy: 1e-5 relative to max(1, H). H = log S - E / S carries log S's
//    absolute error (float rounding of S next to its max term, ~1e-7), so a
//    nearly one-hot row (H ~ 1e-15) is checked in absolute terms.
//  - gradient: 1e-5 relative to the row's scale, max(max_v |g_v|, (|g_logp| +
//    |g_H|) / tau): each element is (a coefficient ~ that scale) x p_v, and p_v
//    inherits the ~1e-6 relative error of lse; tiny elements far from the max
//    are only meaningful relative to the row.
constexpr double logprob_tol = 1e-5;

bool close(double got, double want, double scale, double tol) {
  return std::isfinite(got) && std::abs(got - want) <= tol * scale;
}

// rows x vocab logits N(0, 3), every other row with three +-50 spikes, rows
// `stride` apart after `offset` leading elements; padding and the lead are NaN.
std::vector<float> random_logits(std::mt19937_64& rng, index_t rows, index_t vocab, index_t stride, index_t offset) {
  std::vector<float> x(static_cast<std::size_t>(offset + rows * stride), nan_f);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::uniform_int_distribution<index_t> column(0, vocab - 1);
  for (index_t r = 0; r < rows; ++r) {
    float* row = x.data() + offset + r * stride;
    for (index_t v = 0; v < vocab; ++v) {
      float value = 0.0f;
      while (value == 0.0f) value = normal(rng);
      row[v] = value;
    }
    if (r % 2 == 0 && vocab >= 7)
      for (int k = 0; k < 3; ++k) row[column(rng)] = (rng() % 2 == 0) ? 50.0f : -50.0f;
  }
  return x;
}

// Row 0 targets its max (p ~ 1 when spiked), row 1 its min, the rest random ids.
template <class Id>
std::vector<Id> pick_targets(std::mt19937_64& rng, const std::vector<float>& x, index_t rows, index_t vocab,
                             index_t stride, index_t offset) {
  std::uniform_int_distribution<index_t> column(0, vocab - 1);
  std::vector<Id> ids(static_cast<std::size_t>(rows));
  for (index_t r = 0; r < rows; ++r) {
    const float* row = x.data() + offset + r * stride;
    index_t y = column(rng);
    if (r == 0) y = std::max_element(row, row + vocab) - row;
    if (r == 1) y = std::min_element(row, row + vocab) - row;
    ids[static_cast<std::size_t>(r)] = static_cast<Id>(y);
  }
  return ids;
}

// Nonzero upstream gradients of either sign, |g| in [0.25, 2].
std::vector<float> random_grads(std::mt19937_64& rng, index_t n) {
  std::uniform_real_distribution<float> magnitude(0.25f, 2.0f);
  std::vector<float> g(static_cast<std::size_t>(n));
  for (auto& v : g) v = (rng() % 2 == 0 ? 1.0f : -1.0f) * magnitude(rng);
  return g;
}

struct logprob_case {
  index_t rows, vocab, stride, offset, grad_stride, grad_offset;
  double temperature;
};

// Forward (with and without entropy) and backward (both upstream gradients,
// then only g_logp) on the GPU against the CPU, for one shape and layout.
template <class Id>
void check_logprob_case(const logprob_case& c, std::uint64_t seed) {
  CAPTURE(c.rows);
  CAPTURE(c.vocab);
  CAPTURE(c.stride);
  CAPTURE(c.offset);
  CAPTURE(c.grad_stride);
  CAPTURE(c.temperature);
  CAPTURE(sizeof(Id));
  std::mt19937_64 rng(seed);
  const index_t rows = c.rows, vocab = c.vocab;
  const std::size_t n_rows = static_cast<std::size_t>(rows);
  const auto x = random_logits(rng, rows, vocab, c.stride, c.offset);
  const auto ids = pick_targets<Id>(rng, x, rows, vocab, c.stride, c.offset);
  const auto g_logp = random_grads(rng, rows), g_entropy = random_grads(rng, rows);
  const auto x_view = matrix_view<const float>(x.data() + c.offset, {rows, vocab}, {c.stride, 1});

  // CPU
  std::vector<float> logp(n_rows), entropy(n_rows), logp_ne(n_rows), none;
  std::vector<double> lse(n_rows), lse_ne(n_rows);
  logprob_forward(x_view, std::span<const Id>(ids), c.temperature, logp, entropy, lse);
  logprob_forward(x_view, std::span<const Id>(ids), c.temperature, logp_ne, none, lse_ne);
  std::vector<float> grad(static_cast<std::size_t>(rows * vocab)), grad_lp(grad.size());
  logprob_backward(x_view, std::span<const Id>(ids), c.temperature, lse, entropy, g_logp, g_entropy,
                   matrix_view<float>(grad.data(), {rows, vocab}));
  logprob_backward(x_view, std::span<const Id>(ids), c.temperature, lse, entropy, g_logp, none,
                   matrix_view<float>(grad_lp.data(), {rows, vocab}));

  // GPU
  const auto d_x = cuda::device_array<float>::from_host(x);
  const auto d_ids = cuda::device_array<Id>::from_host(ids);
  const auto d_gl = cuda::device_array<float>::from_host(g_logp);
  const auto d_ge = cuda::device_array<float>::from_host(g_entropy);
  cuda::device_array<float> d_logp(n_rows), d_entropy(n_rows), d_logp_ne(n_rows);
  cuda::device_array<double> d_lse(n_rows), d_lse_ne(n_rows);
  const std::size_t grad_elements = static_cast<std::size_t>(c.grad_offset + rows * c.grad_stride);
  cuda::device_array<float> d_grad(grad_elements), d_grad_lp(grad_elements);
  for (auto* a : {&d_logp, &d_entropy, &d_logp_ne, &d_grad, &d_grad_lp}) a->poison();
  d_lse.poison();
  d_lse_ne.poison();
  const float* xs = d_x.data() + c.offset;
  cuda::logprob_forward(xs, rows, vocab, c.stride, d_ids.data(), c.temperature, d_logp.data(), d_entropy.data(),
                        d_lse.data(), nullptr);
  cuda::logprob_forward(xs, rows, vocab, c.stride, d_ids.data(), c.temperature, d_logp_ne.data(), nullptr,
                        d_lse_ne.data(), nullptr, cuda::target_check::caller_checked);
  cuda::logprob_backward(xs, rows, vocab, c.stride, d_ids.data(), c.temperature, d_lse.data(), d_entropy.data(),
                         d_gl.data(), d_ge.data(), d_grad.data() + c.grad_offset, c.grad_stride, nullptr);
  cuda::logprob_backward(xs, rows, vocab, c.stride, d_ids.data(), c.temperature, d_lse.data(), nullptr, d_gl.data(),
                         nullptr, d_grad_lp.data() + c.grad_offset, c.grad_stride, nullptr,
                         cuda::target_check::caller_checked);
  const auto h_logp = d_logp.to_host(), h_entropy = d_entropy.to_host(), h_logp_ne = d_logp_ne.to_host();
  const auto h_lse = d_lse.to_host(), h_lse_ne = d_lse_ne.to_host();
  const auto h_grad = d_grad.to_host(), h_grad_lp = d_grad_lp.to_host();

  for (std::size_t r = 0; r < n_rows; ++r) {
    CAPTURE(r);
    CHECK(close(h_lse[r], lse[r], std::max(1.0, std::abs(lse[r])), logprob_tol));
    CHECK(close(h_logp[r], logp[r], std::max(1.0, std::abs(double(logp[r]))), logprob_tol));
    CHECK(close(h_entropy[r], entropy[r], std::max(1.0, std::abs(double(entropy[r]))), logprob_tol));
    CHECK(close(h_lse_ne[r], lse_ne[r], std::max(1.0, std::abs(lse_ne[r])), logprob_tol));
    CHECK(close(h_logp_ne[r], logp_ne[r], std::max(1.0, std::abs(double(logp_ne[r]))), logprob_tol));
  }

  // Gradient rows, and the padding around them still poisoned (never written).
  auto check_grad = [&](const std::vector<float>& got, const std::vector<float>& want, bool with_entropy) {
    CAPTURE(with_entropy);
    std::size_t bad = 0, first_bad = 0;
    for (index_t r = 0; r < rows; ++r) {
      const float* w = want.data() + r * vocab;
      const float* g = got.data() + c.grad_offset + r * c.grad_stride;
      double scale = (std::abs(double(g_logp[std::size_t(r)])) +
                      (with_entropy ? std::abs(double(g_entropy[std::size_t(r)])) : 0.0)) / c.temperature;
      for (index_t v = 0; v < vocab; ++v) scale = std::max(scale, std::abs(double(w[v])));
      for (index_t v = 0; v < vocab; ++v)
        if (!close(g[v], w[v], scale, logprob_tol) && bad++ == 0) first_bad = std::size_t(r * vocab + v);
    }
    CAPTURE(first_bad);
    CHECK(bad == 0);
    std::size_t written_padding = 0;
    for (index_t i = 0; i < c.grad_offset; ++i) written_padding += !std::isnan(got[std::size_t(i)]);
    for (index_t r = 0; r < rows; ++r)
      for (index_t v = vocab; v < c.grad_stride; ++v)
        written_padding += !std::isnan(got[std::size_t(c.grad_offset + r * c.grad_stride + v)]);
    CHECK(written_padding == 0);
  };
  check_grad(h_grad, grad, true);
  check_grad(h_grad_lp, grad_lp, false);
}

}  // namespace

TEST_CASE("cuda logprob: forward and backward match rl/logprob.hpp over vocab sizes, temperatures and layouts") {
  std::uint64_t seed = 20240611;
  for (const index_t vocab : {index_t{1}, index_t{7}, index_t{1000}, index_t{4099}, index_t{151936}}) {
    const index_t rows = vocab == 151936 ? 2 : 6;
    for (const double tau : {1.0, 0.7}) {
      // contiguous rows, int32 ids (vocab 7 and 4099: rows at every alignment)
      check_logprob_case<std::int32_t>({rows, vocab, vocab, 0, vocab, 0, tau}, ++seed);
      // padded rows after a misaligned start, gradient with another misalignment
      // (scalar path for the backward), int64 ids
      check_logprob_case<std::int64_t>({rows, vocab, vocab + 3, 1, vocab + 5, 2, tau}, ++seed);
      // padded rows, gradient aligned like the logits (float4 loads and stores after a head)
      check_logprob_case<std::int32_t>({rows, vocab, vocab + 4, 3, vocab + 4, 3, tau}, ++seed);
    }
  }
}

TEST_CASE("cuda logprob: -inf logits weigh nothing, as on the CPU; a row of them gives NaN on both") {
  // Row 0: its first 2048 logits -inf (one CPU chunk), row 1: every other logit, row 2: all of them.
  std::mt19937_64 rng(11);
  const index_t rows = 3, vocab = 5000;
  auto x = random_logits(rng, rows, vocab, vocab, 0);
  constexpr float inf = std::numeric_limits<float>::infinity();
  for (index_t v = 0; v < 2048; ++v) x[std::size_t(v)] = -inf;
  for (index_t v = 0; v < vocab; v += 2) x[std::size_t(vocab + v)] = -inf;
  for (index_t v = 0; v < vocab; ++v) x[std::size_t(2 * vocab + v)] = -inf;
  const std::vector<std::int32_t> ids{3000, 11, 5};
  const double tau = 0.7;
  std::vector<float> logp(rows), entropy(rows);
  std::vector<double> lse(rows);
  logprob_forward(matrix_view<const float>(x.data(), {rows, vocab}), std::span<const std::int32_t>(ids), tau, logp,
                  entropy, lse);
  const auto d_x = cuda::device_array<float>::from_host(x);
  const auto d_ids = cuda::device_array<std::int32_t>::from_host(ids);
  cuda::device_array<float> d_logp(rows), d_entropy(rows);
  cuda::device_array<double> d_lse(rows);
  d_logp.poison();
  d_entropy.poison();
  d_lse.poison();
  cuda::logprob_forward(d_x.data(), rows, vocab, vocab, d_ids.data(), tau, d_logp.data(), d_entropy.data(),
                        d_lse.data(), nullptr);
  const auto h_logp = d_logp.to_host(), h_entropy = d_entropy.to_host();
  const auto h_lse = d_lse.to_host();
  for (std::size_t r = 0; r < 2; ++r) {
    CAPTURE(r);
    CHECK(close(h_lse[r], lse[r], std::max(1.0, std::abs(lse[r])), logprob_tol));
    CHECK(close(h_logp[r], logp[r], std::max(1.0, std::abs(double(logp[r]))), logprob_tol));
    CHECK(close(h_entropy[r], entropy[r], std::max(1.0, std::abs(double(entropy[r]))), logprob_tol));
  }
  CHECK(std::isnan(logp[2]));
  CHECK(std::isnan(entropy[2]));
  CHECK(lse[2] == -std::numeric_limits<double>::infinity());
  CHECK(std::isnan(h_logp[2]));
  CHECK(std::isnan(h_entropy[2]));
  CHECK(h_lse[2] == -std::numeric_limits<double>::infinity());
}

TEST_CASE("cuda logprob: a bad target id is an lmrl::error naming the first bad row, or NaN when the caller checked") {
  std::mt19937_64 rng(7);
  const index_t rows = 6, vocab = 1000;
  const auto x = random_logits(rng, rows, vocab, vocab, 0);
  std::vector<std::int32_t> ids32{1, 2, 3, 1000, 5, -1};
  std::vector<std::int64_t> ids64{1, 2, std::int64_t{1} << 40, 4, 5, 6};
  const auto d_x = cuda::device_array<float>::from_host(x);
  const auto d_ids32 = cuda::device_array<std::int32_t>::from_host(ids32);
  const auto d_ids64 = cuda::device_array<std::int64_t>::from_host(ids64);
  cuda::device_array<float> d_logp(rows), d_entropy(rows), d_grad(std::size_t(rows * vocab));
  cuda::device_array<double> d_lse(rows);
  d_logp.poison();
  d_lse.poison();
  d_entropy.poison();

  CHECK_THROWS_WITH_AS(cuda::logprob_forward(d_x.data(), rows, vocab, vocab, d_ids32.data(), 1.0, d_logp.data(),
                                             d_entropy.data(), d_lse.data(), nullptr),
                       doctest::Contains("cuda::logprob_forward: targets[3] = 1000 is out of range"), error);
  CHECK_THROWS_WITH_AS(cuda::logprob_forward(d_x.data(), rows, vocab, vocab, d_ids64.data(), 1.0, d_logp.data(),
                                             nullptr, d_lse.data(), nullptr),
                       doctest::Contains("targets[2] = 1099511627776"), error);

  // Unchecked: the bad rows' logp is NaN, the others are written; lse is good everywhere.
  d_logp.poison();
  cuda::logprob_forward(d_x.data(), rows, vocab, vocab, d_ids32.data(), 1.0, d_logp.data(), d_entropy.data(),
                        d_lse.data(), nullptr, cuda::target_check::caller_checked);
  const auto logp = d_logp.to_host();
  const auto lse = d_lse.to_host();
  for (index_t r = 0; r < rows; ++r) {
    CAPTURE(r);
    CHECK(std::isnan(logp[std::size_t(r)]) == (r == 3 || r == 5));
    CHECK(std::isfinite(lse[std::size_t(r)]));
  }

  const auto g = random_grads(rng, rows);
  const auto d_g = cuda::device_array<float>::from_host(g);
  CHECK_THROWS_WITH_AS(cuda::logprob_backward(d_x.data(), rows, vocab, vocab, d_ids64.data(), 1.0, d_lse.data(),
                                              d_entropy.data(), d_g.data(), d_g.data(), d_grad.data(), vocab, nullptr),
                       doctest::Contains("cuda::logprob_backward: targets[2] = 1099511627776 is out of range"), error);
  d_grad.poison();
  cuda::logprob_backward(d_x.data(), rows, vocab, vocab, d_ids32.data(), 1.0, d_lse.data(), d_entropy.data(),
                         d_g.data(), d_g.data(), d_grad.data(), vocab, nullptr, cuda::target_check::caller_checked);
  const auto grad = d_grad.to_host();
  for (index_t r = 0; r < rows; ++r) {
    CAPTURE(r);
    const bool bad = r == 3 || r == 5;
    std::size_t finite = 0;
    for (index_t v = 0; v < vocab; ++v) finite += std::isfinite(grad[std::size_t(r * vocab + v)]);
    CHECK(finite == (bad ? 0u : std::size_t(vocab)));
  }
}

TEST_CASE("cuda logprob: the launchers check sizes, pointers and the temperature on the host") {
  const index_t rows = 2, vocab = 5;
  std::vector<float> x(10, 1.0f);
  std::vector<std::int32_t> ids{0, 1};
  auto d_x = cuda::device_array<float>::from_host(x);
  const auto d_ids = cuda::device_array<std::int32_t>::from_host(ids);
  cuda::device_array<float> d_logp(2), d_entropy(2), d_grad(10);
  cuda::device_array<double> d_lse(2);
  const auto* xs = d_x.data();
  const auto* is = d_ids.data();
  CHECK_THROWS_WITH_AS(cuda::logprob_forward(xs, rows, vocab, vocab, is, 0.0, d_logp.data(), nullptr, nullptr, nullptr),
                       doctest::Contains("temperature = 0"), error);
  CHECK_THROWS_WITH_AS(cuda::logprob_forward(xs, rows, vocab, vocab, is, std::nan(""), d_logp.data(), nullptr, nullptr,
                                             nullptr),
                       doctest::Contains("temperature"), error);
  CHECK_THROWS_WITH_AS(cuda::logprob_forward(xs, rows, vocab, 4, is, 1.0, d_logp.data(), nullptr, nullptr, nullptr),
                       doctest::Contains("row_stride = 4 is less than vocab = 5"), error);
  CHECK_THROWS_WITH_AS(cuda::logprob_forward(xs, rows, 0, 5, is, 1.0, d_logp.data(), nullptr, nullptr, nullptr),
                       doctest::Contains("vocab = 0"), error);
  CHECK_THROWS_WITH_AS(cuda::logprob_forward(xs, rows, vocab, vocab, is, 1.0, static_cast<float*>(nullptr), nullptr,
                                             nullptr, nullptr),
                       doctest::Contains("logp is null"), error);
  CHECK_THROWS_WITH_AS(cuda::logprob_backward(xs, rows, vocab, vocab, is, 1.0, d_lse.data(), nullptr, nullptr,
                                              d_logp.data(), d_grad.data(), vocab, nullptr),
                       doctest::Contains("entropy (from logprob_forward) is needed"), error);
  CHECK_THROWS_WITH_AS(cuda::logprob_backward(xs, rows, vocab, vocab, is, 1.0, static_cast<const double*>(nullptr),
                                              nullptr, d_logp.data(), nullptr, d_grad.data(), vocab, nullptr),
                       doctest::Contains("lse is null"), error);
  CHECK_THROWS_WITH_AS(cuda::logprob_backward(xs, rows, vocab, vocab, is, 1.0, d_lse.data(), nullptr, d_logp.data(),
                                              nullptr, d_x.data() + 3, vocab, nullptr),
                       doctest::Contains("grad_logits overlaps logits"), error);
  // No rows: nothing to do, nothing launched.
  CHECK_NOTHROW(cuda::logprob_forward(xs, 0, vocab, vocab, is, 1.0, d_logp.data(), nullptr, nullptr, nullptr));
}

namespace {

template <class T>
std::vector<T> random_normal(std::mt19937_64& rng, std::size_t n, double scale) {
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> exponent(-3.0, 1.0);
  std::vector<T> x(n);
  for (auto& v : x) {
    double value = 0.0;
    while (value == 0.0) value = normal(rng);
    v = static_cast<T>(scale * value * std::pow(10.0, exponent(rng)));
  }
  return x;
}

// Expected bitwise: the same IEEE operations in the same order on both sides
// (the kernel uses the _rn intrinsics, so nothing is fused on the GPU). The
// tolerance, 8 ulp of the element type relative to max(|value|, 1e-3 x the
// array's largest), only allows for a host compiler that fuses a*b+c into an
// fma in the CPU loops (cancellation in g - m can make such a one-rounding
// difference large relative to a near-zero moment, never to the array).
template <class T>
std::size_t count_mismatches(const std::vector<T>& got, std::span<const T> want, std::size_t& not_bitwise) {
  double largest = 0;
  for (T w : want) largest = std::max(largest, std::abs(double(w)));
  const double tol = 8 * double(std::numeric_limits<T>::epsilon());
  std::size_t bad = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    not_bitwise += got[i] != want[i];
    const double scale = std::max(std::abs(double(want[i])), 1e-3 * largest);
    bad += !(std::abs(double(got[i]) - double(want[i])) <= tol * scale);
  }
  return bad;
}

template <class T>
void check_adamw(std::size_t n, adamw_config config, const std::vector<param_range>& no_decay, int steps,
                 std::uint64_t seed) {
  CAPTURE(n);
  CAPTURE(config.beta1);
  CAPTURE(config.weight_decay);
  CAPTURE(sizeof(T));
  std::mt19937_64 rng(seed);
  auto params = random_normal<T>(rng, n, 1.0);
  adamw<T> cpu(static_cast<index_t>(n), config, no_decay);

  auto d_p = cuda::device_array<T>::from_host(params);
  cuda::device_array<T> d_m(n), d_v(n), d_g(n);
  d_m.zero();  // torch's state before the first step
  d_v.zero();
  std::size_t not_bitwise = 0;
  for (int s = 1; s <= steps; ++s) {
    CAPTURE(s);
    const auto grads = random_normal<T>(rng, n, 1.0);
    const double lr = config.lr * (1.0 - 0.1 * (s - 1));  // a schedule's lr
    cpu.step(std::span<T>(params), std::span<const T>(grads), lr);
    d_g.copy_from_host(grads);
    cuda::adamw_update<T>(d_p.data(), d_g.data(), d_m.data(), d_v.data(), static_cast<index_t>(n), s, lr, config,
                          no_decay);
    CHECK(count_mismatches(d_p.to_host(), std::span<const T>(params), not_bitwise) == 0);
    CHECK(count_mismatches(d_m.to_host(), cpu.exp_avg(), not_bitwise) == 0);
    CHECK(count_mismatches(d_v.to_host(), cpu.exp_avg_sq(), not_bitwise) == 0);
  }
  WARN_MESSAGE(not_bitwise == 0, "cuda AdamW agrees within tolerance but not to the bit in ", not_bitwise,
               " elements (the host compiler fused a CPU operation?)");
}

}  // namespace

TEST_CASE("cuda adamw: several steps with weight decay, no-decay ranges and bias correction match train/adamw.hpp") {
  adamw_config config;
  config.lr = 1e-2;
  config.weight_decay = 0.1;
  // overlapping, touching the end, empty, out of order
  const std::vector<param_range> no_decay{{9000, 1007}, {100, 50}, {120, 200}, {5000, 0}};
  check_adamw<float>(10007, config, no_decay, 6, 11);
  check_adamw<double>(10007, config, no_decay, 4, 12);

  // 1 - beta1 = 0.7: ATen's other lerp formula; no weight decay at all
  adamw_config other = config;
  other.beta1 = 0.3;
  other.beta2 = 0.99;
  other.weight_decay = 0.0;
  check_adamw<float>(10007, other, {}, 5, 13);

  // more elements than one grid covers: the grid-stride loop
  check_adamw<float>(2'100'001, config, {{1'000'000, 1000}}, 3, 14);
}

TEST_CASE("cuda l2_norm and scale_gradients: train/clip_grad.hpp's norm to double rounding, its products to the bit") {
  // One block, several, and more than the 1024-block grid covers (the grid-stride loop).
  for (const std::size_t n : {std::size_t{1}, std::size_t{1000}, std::size_t{262'145}, std::size_t{2'100'001}}) {
    CAPTURE(n);
    std::mt19937_64 rng(n);
    const auto x = random_normal<float>(rng, n, 3.0);
    auto d_x = cuda::device_array<float>::from_host(x);
    cuda::device_array<double> scratch;
    const double expected = l2_norm(std::span<const float>(x));
    const double got = cuda::l2_norm(d_x.data(), static_cast<index_t>(n), scratch);
    CHECK(got == doctest::Approx(expected).epsilon(1e-13));
    CHECK(cuda::l2_norm(d_x.data(), static_cast<index_t>(n), scratch) == got);  // a fixed order: the same bits
    std::vector<float> scaled = x;
    scale_gradients(std::span<float>(scaled), 0.37f);
    cuda::scale_gradients(d_x.data(), static_cast<index_t>(n), 0.37f);
    CHECK(d_x.to_host() == scaled);
  }
  CHECK(cuda::l2_norm(static_cast<const float*>(nullptr), 0) == 0.0);
  std::vector<float> bad(5000, 1.0f);
  bad[4321] = std::numeric_limits<float>::quiet_NaN();
  CHECK(std::isnan(cuda::l2_norm(cuda::device_array<float>::from_host(bad).data(), 5000)));
  bad[4321] = std::numeric_limits<float>::infinity();
  CHECK(std::isinf(cuda::l2_norm(cuda::device_array<float>::from_host(bad).data(), 5000)));
  CHECK_THROWS_WITH_AS(cuda::l2_norm(static_cast<const float*>(nullptr), 3), doctest::Contains("x is null"), error);
  CHECK_THROWS_WITH_AS(cuda::scale_gradients(static_cast<float*>(nullptr), -1, 1.0f),
                       doctest::Contains("n = -1"), error);
}

TEST_CASE("cuda adamw: bad hyper-parameters and ranges are lmrl::errors naming them") {
  cuda::device_array<float> p(10), g(10), m(10), v(10);
  const adamw_config ok;
  CHECK_THROWS_WITH_AS(cuda::adamw_update<float>(p.data(), g.data(), m.data(), v.data(), 10, 0, 1e-3, ok),
                       doctest::Contains("step = 0"), error);
  adamw_config bad = ok;
  bad.beta1 = 1.0;
  CHECK_THROWS_WITH_AS(cuda::adamw_update<float>(p.data(), g.data(), m.data(), v.data(), 10, 1, 1e-3, bad),
                       doctest::Contains("beta1 = 1"), error);
  CHECK_THROWS_WITH_AS(cuda::adamw_update<float>(p.data(), g.data(), m.data(), v.data(), 10, 1, 1e-3, ok,
                                                 std::vector<param_range>{{5, 6}}),
                       doctest::Contains("no_weight_decay[0] = [5, 11) is outside the parameter buffer of 10"),
                       error);
  CHECK_THROWS_WITH_AS(cuda::adamw_update<float>(nullptr, g.data(), m.data(), v.data(), 10, 1, 1e-3, ok),
                       doctest::Contains("params is null"), error);
}
