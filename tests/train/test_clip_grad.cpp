// Global gradient-norm clipping (lmrl/train/clip_grad.hpp): hand-computed
// norms and coefficients, torch's behaviour on NaN/inf, the fixed reduction
// order, backends, bad input. Cross-check with torch: test_reference_optim.cpp.
#include "lmrl/train/clip_grad.hpp"

#include <Eigen/Core>
#include <cmath>
#include <limits>
#include <span>
#include <vector>
#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>

#include "lmrl/tensor/eigen.hpp"
#include "lmrl/tensor/span.hpp"
#include "lmrl/tensor/xtensor.hpp"
#include "support/testing.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

using namespace lmrl;
using doctest::Approx;

namespace {
using testing::random_vector;
}  // namespace

TEST_CASE("clip_grad_norm: a 3-4-5 gradient clipped to norm 1") {
  // norm 5; clip_coef = 1 / (5 + 1e-6); g <- [3, 4] * clip_coef ~ [0.6, 0.8].
  std::vector<double> g{3.0, 4.0};
  const double norm = clip_grad_norm(std::span<double>(g), 1.0);
  CHECK(norm == 5.0);
  CHECK(g[0] == 3.0 * (1.0 / (5.0 + 1e-6)));
  CHECK(g[1] == 4.0 * (1.0 / (5.0 + 1e-6)));
  CHECK(g[0] == Approx(0.6).epsilon(1e-6));
  CHECK(l2_norm(std::span<const double>(g)) == Approx(5.0 / (5.0 + 1e-6)).epsilon(1e-15));
}

TEST_CASE("clip_grad_norm: below max_norm the coefficient clamps to 1 and nothing changes") {
  // norm 0.5 < 1: 1 / (0.5 + 1e-6) = 1.999996 -> clamped to 1.
  std::vector<float> g{0.3f, -0.4f};
  const auto before = g;
  const double norm = clip_grad_norm(std::span<float>(g), 1.0);
  CHECK(norm == Approx(0.5).epsilon(1e-7));
  CHECK(g == before);
  // At exactly max_norm the 1e-6 still scales a little: 1 / (1 + 1e-6).
  std::vector<double> h{0.6, 0.8};
  clip_grad_norm(std::span<double>(h), 1.0);
  CHECK(h[0] < 0.6);
  CHECK(h[0] == Approx(0.6 / (1 + 1e-6)).epsilon(1e-15));
}

TEST_CASE("l2_norm: a long buffer (chunked path) of 0.5s has norm sqrt(n / 4) exactly") {
  // 100000 * 0.25 = 25000 is exact in double in any order of summation.
  std::vector<float> g(100000, 0.5f);
  CHECK(l2_norm(std::span<const float>(g)) == std::sqrt(25000.0));
  // A float sum would lose digits on 10^7 terms; the double accumulation does not:
  // 10^7 * 0.1f^2 with 0.1f = 0.100000001490116...
  std::vector<float> h(10'000'000, 0.1f);
  const double x = static_cast<double>(0.1f);
  const double expected = std::sqrt(1e7 * x * x);
  CHECK(l2_norm(std::span<const float>(h)) == Approx(expected).epsilon(1e-12));
  float naive = 0;  // what a float accumulator gives: off in the 3rd digit
  for (float v : h) naive += v * v;
  CHECK(std::abs(std::sqrt(static_cast<double>(naive)) - expected) > 1e-4 * expected);
}

TEST_CASE("clip_grad_norm: non-finite norms, as torch") {
  std::vector<double> g{1.0, std::numeric_limits<double>::quiet_NaN(), 2.0};
  CHECK_THROWS_WITH_AS(clip_grad_norm(std::span<double>(g), 1.0, true),
                       doctest::Contains("clip_grad_norm: the total L2 norm of the 3 gradients is nan"), error);
  CHECK(g[0] == 1.0);  // untouched when it throws
  // error_if_nonfinite = false (torch's default): scaled by the NaN coefficient.
  CHECK(std::isnan(clip_grad_norm(std::span<double>(g), 1.0)));
  for (double x : g) CHECK(std::isnan(x));
  // inf norm: coefficient max_norm / inf = 0; finite gradients become 0, inf * 0 = NaN.
  std::vector<float> h{1.0f, std::numeric_limits<float>::infinity(), -3.0f};
  CHECK_THROWS_WITH_AS(clip_grad_norm(std::span<float>(h), 1.0, true), doctest::Contains("is inf"), error);
  CHECK(std::isinf(clip_grad_norm(std::span<float>(h), 1.0)));
  CHECK(h[0] == 0.0f);
  CHECK(std::isnan(h[1]));
  CHECK(h[2] == 0.0f);
}

TEST_CASE("clip_grad_norm: after clipping the norm is max_norm * norm / (norm + 1e-6)") {
  auto g = random_vector<double>(5000, 3);
  for (auto& x : g) x *= 10;
  const double norm = clip_grad_norm(std::span<double>(g), 2.5);
  CHECK(norm > 2.5);
  CHECK(l2_norm(std::span<const double>(g)) == Approx(2.5 * norm / (norm + 1e-6)).epsilon(1e-13));
}

TEST_CASE("clip_grad_norm: std::vector, Eigen and xtensor give bit-identical results, float and double") {
  const std::size_t n = 70000;  // the chunked path
  const auto base = random_vector<double>(n, 5);
  std::vector<double> v = base;
  Eigen::VectorXd e = Eigen::Map<const Eigen::VectorXd>(base.data(), static_cast<index_t>(n));
  xt::xtensor<double, 1> x = xt::zeros<double>({n});
  std::copy(base.begin(), base.end(), x.begin());
  const double nv = clip_grad_norm(v, 3.0), ne = clip_grad_norm(e, 3.0), nx = clip_grad_norm(x, 3.0);
  CHECK(nv == ne);
  CHECK(nv == nx);
  CHECK(nv > 3.0);
  bool same = true;
  for (std::size_t i = 0; i < n; ++i) same = same && v[i] == e(static_cast<index_t>(i)) && v[i] == x(i);
  CHECK(same);
  std::vector<float> vf(base.begin(), base.end());
  Eigen::VectorXf ef = Eigen::Map<Eigen::VectorXf>(vf.data(), static_cast<index_t>(n));
  xt::xtensor<float, 1> xf = xt::zeros<float>({n});
  std::copy(vf.begin(), vf.end(), xf.begin());
  CHECK(l2_norm(vf) == l2_norm(ef));
  CHECK(l2_norm(vf) == l2_norm(xf));
  CHECK(clip_grad_norm(vf, 1.0) == clip_grad_norm(ef, 1.0));
  for (std::size_t i = 0; i < n; ++i) same = same && vf[i] == ef(static_cast<index_t>(i));
  CHECK(same);
}

TEST_CASE("l2_norm: the reduction order is fixed by the length alone") {
  // The documented order: 64 chunks of ceil(n / 64), each summed over 8
  // interleaved lanes combined pairwise, chunk sums added in order.
  const std::size_t n = 100003;
  const auto g = random_vector<float>(n, 9);
  const index_t per_chunk = (static_cast<index_t>(n) + 63) / 64;
  double total = 0;
  for (index_t c = 0; c < 64; ++c) {
    const index_t begin = std::min<index_t>(n, c * per_chunk), end = std::min<index_t>(n, begin + per_chunk);
    double acc[8] = {};
    for (index_t i = begin; i < end; ++i) {
      const double xi = g[static_cast<std::size_t>(i)];
      acc[(i - begin) % 8] += xi * xi;
    }
    total += ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  }
  CHECK(l2_norm(std::span<const float>(g)) == std::sqrt(total));
#if defined(_OPENMP)
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const double one = l2_norm(std::span<const float>(g));
  omp_set_num_threads(std::max(2, threads));
  const double many = l2_norm(std::span<const float>(g));
  omp_set_num_threads(threads);
  CHECK(one == many);
#endif
}

TEST_CASE("clip_grad_norm: bad input") {
  std::vector<float> g{1.0f, 2.0f};
  CHECK_THROWS_WITH_AS(clip_grad_norm(std::span<float>(g), 0.0), doctest::Contains("max_norm = 0 must be > 0"),
                       error);
  CHECK_THROWS_AS(clip_grad_norm(std::span<float>(g), -1.0), error);
  CHECK_THROWS_AS(clip_grad_norm(std::span<float>(g), std::nan("")), error);
  xt::xtensor<float, 1> big = xt::ones<float>({8});
  auto strided = xt::view(big, xt::range(0, 8, 2));
  CHECK_THROWS_WITH_AS(clip_grad_norm(strided, 1.0), doctest::Contains("grads has stride 2"), error);
  CHECK(g[0] == 1.0f);
}
