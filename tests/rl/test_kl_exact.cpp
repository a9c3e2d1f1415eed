// Exact KL between two logit rows (lmrl/rl/kl_exact.hpp): a hand case,
// agreement with a direct two-pass softmax, gradients against finite
// differences (vocab 5 and 1000), stability at +-1e4, backends, bad input.
#include "lmrl/rl/kl_exact.hpp"

#include <Eigen/Core>
#include <cmath>
#include <limits>
#include <vector>
#include <xtensor/xtensor.hpp>

#include "lmrl/tensor/eigen.hpp"
#include "lmrl/tensor/span.hpp"
#include "lmrl/tensor/xtensor.hpp"
#include "support/testing.hpp"

using namespace lmrl;
using doctest::Approx;

namespace {

// Direct two-pass reference: log-softmax of each row, then sum p (log p - log q).
double two_pass_kl(const dense<double, 2>& z, const dense<double, 2>& w, index_t r, double temperature) {
  const index_t V = z.shape()[1];
  double mz = -INFINITY, mw = -INFINITY;
  for (index_t v = 0; v < V; ++v) {
    mz = std::max(mz, z(r, v) / temperature);
    mw = std::max(mw, w(r, v) / temperature);
  }
  long double sz = 0, sw = 0;
  for (index_t v = 0; v < V; ++v) {
    sz += std::exp(static_cast<long double>(z(r, v) / temperature - mz));
    sw += std::exp(static_cast<long double>(w(r, v) / temperature - mw));
  }
  long double kl = 0;
  for (index_t v = 0; v < V; ++v) {
    const long double lp = (z(r, v) / temperature - mz) - std::log(sz);
    const long double lq = (w(r, v) / temperature - mw) - std::log(sw);
    kl += std::exp(lp) * (lp - lq);
  }
  return static_cast<double>(kl);
}

double total_kl(const dense<double, 2>& z, const dense<double, 2>& w, double temperature) {
  std::vector<double> kl(static_cast<std::size_t>(z.shape()[0]));
  exact_kl(z, w, kl, temperature);
  double s = 0;
  for (double x : kl) s += x;
  return s;
}

void check_logit_gradient(index_t rows, index_t vocab, double scale, double temperature, std::uint64_t seed) {
  dense<double, 2> z({rows, vocab}), w({rows, vocab}), grad({rows, vocab});
  testing::fill_uniform(z.view(), seed, -scale, scale);
  testing::fill_uniform(w.view(), seed + 1, -scale, scale);
  std::vector<double> kl(static_cast<std::size_t>(rows));
  exact_kl(z, w, kl, grad, temperature);
  testing::check_gradient([&](const dense<double, 2>& x) { return total_kl(x, w, temperature); }, z, grad, 1e-6,
                          1e-5, 1e-9);
}

}  // namespace

TEST_CASE("hand case: p = (1/2, 1/2), q = (1/4, 3/4)") {
  // Policy logits (0, 0) -> p = (0.5, 0.5); reference logits (0, ln 3) -> q = (0.25, 0.75).
  // KL = 0.5 ln(0.5 / 0.25) + 0.5 ln(0.5 / 0.75) = 0.5 ln(4/3) = 0.143841036225890.
  // dKL/dz_0 = p_0 (ln 2 - KL) = 0.5 (ln 2 - 0.5 ln(4/3)) = 0.25 ln 3 = 0.274653072167027; dKL/dz_1 = -0.274653...
  dense<double, 2> z({1, 2}), w({1, 2}), grad({1, 2});
  w(0, 1) = std::log(3.0);
  std::vector<double> kl(1);
  exact_kl(z, w, kl, grad);
  CHECK(kl[0] == Approx(0.5 * std::log(4.0 / 3.0)).epsilon(1e-14));
  CHECK(grad(0, 0) == Approx(0.25 * std::log(3.0)).epsilon(1e-14));
  CHECK(grad(0, 1) == Approx(-0.25 * std::log(3.0)).epsilon(1e-14));
  // Temperature 2 with the reference logits doubled gives the same distributions:
  // the same KL, and the gradient with respect to the logits halves.
  w(0, 1) = 2 * std::log(3.0);
  exact_kl(z, w, kl, grad, 2.0);
  CHECK(kl[0] == Approx(0.5 * std::log(4.0 / 3.0)).epsilon(1e-14));
  CHECK(grad(0, 0) == Approx(0.125 * std::log(3.0)).epsilon(1e-14));
  // Swapping the order in the vocabulary changes nothing (the online max is met second here).
  dense<double, 2> z2({1, 2}), w2({1, 2});
  w2(0, 0) = std::log(3.0);
  exact_kl(z2, w2, kl);
  CHECK(kl[0] == Approx(0.5 * std::log(4.0 / 3.0)).epsilon(1e-14));
}

TEST_CASE("agrees with a direct two-pass computation, KL >= 0, equal rows give 0") {
  for (double scale : {0.5, 5.0, 50.0}) {
    for (double temperature : {1.0, 0.7}) {
      dense<double, 2> z({6, 257}), w({6, 257});
      testing::fill_uniform(z.view(), 31, -scale, scale);
      testing::fill_uniform(w.view(), 32, -scale, scale);
      std::vector<double> kl(6);
      exact_kl(z, w, kl, temperature);
      for (index_t r = 0; r < 6; ++r) {
        INFO("scale ", scale, " temperature ", temperature, " row ", r);
        CHECK(kl[r] >= 0);
        CHECK(kl[r] == Approx(two_pass_kl(z, w, r, temperature)).epsilon(1e-10));
      }
    }
  }
  dense<double, 2> z({3, 100});
  testing::fill_uniform(z.view(), 41, -8, 8);
  std::vector<double> kl(3, -1.0);
  exact_kl(z, z, kl);
  for (double x : kl) CHECK(std::abs(x) <= 1e-12);
  for (double x : kl) CHECK(x >= 0);
}

TEST_CASE("gradient with respect to the policy logits matches finite differences") {
  check_logit_gradient(3, 5, 2.0, 1.0, 51);
  check_logit_gradient(2, 5, 2.0, 0.6, 52);
  check_logit_gradient(2, 1000, 3.0, 1.0, 53);
  check_logit_gradient(1, 1000, 3.0, 1.3, 54);
}

TEST_CASE("stable at logits of +-1e4: finite, non-negative, equal to the two-pass value, gradient finite") {
  dense<double, 2> z({4, 64}), w({4, 64}), grad({4, 64});
  testing::fill_uniform(z.view(), 61, -1e4, 1e4);
  testing::fill_uniform(w.view(), 62, -1e4, 1e4);
  z(0, 3) = 1e4;   // a row with a single dominant logit in each
  w(0, 7) = 1e4;
  std::vector<double> kl(4);
  exact_kl(z, w, kl, grad);
  for (index_t r = 0; r < 4; ++r) {
    CHECK(std::isfinite(kl[r]));
    CHECK(kl[r] >= 0);
    CHECK(kl[r] == Approx(two_pass_kl(z, w, r, 1.0)).epsilon(1e-9));
  }
  for (index_t k = 0; k < grad.size(); ++k) CHECK(std::isfinite(grad.data()[k]));
  // Row 0 puts almost all of p on token 3 and of q on token 7: KL ~ w_7 - w_3 (large, finite).
  CHECK(kl[0] > 100);
  // Float logits of 1e4 too.
  dense<float, 2> zf({1, 3}), wf({1, 3});
  zf(0, 0) = 1e4f, zf(0, 1) = -1e4f, zf(0, 2) = 1e4f - 1;
  wf(0, 0) = -1e4f, wf(0, 1) = 1e4f, wf(0, 2) = 0;
  std::vector<float> klf(1);
  exact_kl(zf, wf, klf);
  CHECK(std::isfinite(klf[0]));
  CHECK(klf[0] > 1e4f);
  // Shifting every policy logit by a constant changes nothing.
  dense<double, 2> zs = z;
  for (index_t k = 0; k < zs.size(); ++k) zs.data()[k] += 1e4;
  std::vector<double> kls(4);
  exact_kl(zs, w, kls);
  for (index_t r = 0; r < 4; ++r) CHECK(kls[r] == Approx(kl[r]).epsilon(1e-9));
}

TEST_CASE("Eigen (column- and row-major) and xtensor (double, float) give bit-identical results") {
  const index_t R = 4, V = 33;
  dense<double, 2> z({R, V}), w({R, V});
  testing::fill_uniform(z.view(), 71, -6, 6);
  testing::fill_uniform(w.view(), 72, -6, 6);
  Eigen::MatrixXd ez(R, V), ew(R, V), eg(R, V);
  Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rz(R, V), rw(R, V), rg(R, V);
  xt::xtensor<double, 2> xz({std::size_t(R), std::size_t(V)}), xw(xz.shape()), xg(xz.shape());
  xt::xtensor<float, 2> fz(xz.shape()), fw(xz.shape()), fg(xz.shape());
  Eigen::MatrixXf efz(R, V), efw(R, V), efg(R, V);
  for (index_t r = 0; r < R; ++r)
    for (index_t v = 0; v < V; ++v) {
      ez(r, v) = rz(r, v) = xz(r, v) = z(r, v);
      ew(r, v) = rw(r, v) = xw(r, v) = w(r, v);
      efz(r, v) = fz(r, v) = static_cast<float>(z(r, v));
      efw(r, v) = fw(r, v) = static_cast<float>(w(r, v));
    }
  Eigen::VectorXd ek(R), rk(R);
  auto xk = xt::xtensor<double, 1>::from_shape({std::size_t(R)});
  auto fk = xt::xtensor<float, 1>::from_shape({std::size_t(R)});
  Eigen::VectorXf efk(R);
  exact_kl(ez, ew, ek, eg, 0.9);
  exact_kl(rz, rw, rk, rg, 0.9);
  exact_kl(xz, xw, xk, xg, 0.9);
  exact_kl(fz, fw, fk, fg, 0.9);
  exact_kl(efz, efw, efk, efg, 0.9);
  auto returned = exact_kl(xz, xw, 0.9);
  static_assert(std::is_same_v<decltype(returned), xt::xtensor<double, 1>>);
  auto returned_eigen = exact_kl(ez, ew, 0.9);
  static_assert(std::is_same_v<decltype(returned_eigen), Eigen::VectorXd>);
  for (index_t r = 0; r < R; ++r) {
    CHECK(ek(r) > 0);
    CHECK(ek(r) == rk(r));
    CHECK(ek(r) == xk(r));
    CHECK(ek(r) == returned(r));
    CHECK(ek(r) == returned_eigen(r));
    CHECK(fk(r) == efk(r));
    CHECK(fk(r) == Approx(ek(r)).epsilon(1e-4));
    for (index_t v = 0; v < V; ++v) {
      CHECK(eg(r, v) == rg(r, v));
      CHECK(eg(r, v) == xg(r, v));
      CHECK(fg(r, v) == efg(r, v));
    }
  }
}

TEST_CASE("bad input: shapes, temperature, non-finite logits, empty vocabulary") {
  dense<double, 2> z({2, 3}), w({2, 4}), w_ok({2, 3}), g_bad({2, 2});
  std::vector<double> kl(2), kl_bad(3);
  CHECK_THROWS_WITH_AS(exact_kl(z, w, kl),
                       doctest::Contains("lmrl::exact_kl: ref_logits has shape [2 x 4] but policy_logits has shape [2 x 3]"),
                       error);
  CHECK_THROWS_WITH_AS(exact_kl(z, w_ok, kl_bad), doctest::Contains("kl has extent 3 in dimension 0"), error);
  CHECK_THROWS_WITH_AS(exact_kl(z, w_ok, kl, g_bad), doctest::Contains("grad_policy_logits has shape [2 x 2]"), error);
  CHECK_THROWS_WITH_AS(exact_kl(z, w_ok, kl, 0.0), doctest::Contains("temperature = 0 must be positive"), error);
  CHECK_THROWS_AS(exact_kl(z, w_ok, kl, -1.0), error);
  z(1, 2) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH_AS(exact_kl(z, w_ok, kl), doctest::Contains("row 1, column 2 are not finite"), error);
  z(1, 2) = 0;
  w_ok(0, 0) = -std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH_AS(exact_kl(z, w_ok, kl), doctest::Contains("row 0, column 0 are not finite"), error);
  dense<double, 2> e({2, 0});
  CHECK_THROWS_WITH_AS(exact_kl(e, e, kl), doctest::Contains("empty vocabulary"), error);
}
