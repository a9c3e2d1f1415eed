// KL in the reward and the KL controllers (lmrl/rl/kl_controller.hpp):
// hand-computed adaptive updates, verl apply_kl_penalty semantics, backends,
// bad input.
#include "lmrl/rl/kl_controller.hpp"

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

static_assert(KLController<fixed_kl_controller> && KLController<adaptive_kl_controller>);
static_assert(!KLController<double>);

TEST_CASE("adaptive controller: hand-computed updates with the proportional error clipped to (-0.2, 0.2)") {
  adaptive_kl_controller c(0.2, 6.0, 10000);
  // kl 3: e = clip(3/6 - 1 = -0.5) = -0.2; mult = 1 - 0.2 * 256 / 10000 = 0.99488; 0.2 * 0.99488 = 0.198976
  c.update(3.0, 256);
  CHECK(c.value == Approx(0.198976).epsilon(1e-14));
  // kl 6.6: e = 6.6/6 - 1 = 0.1 (inside the clip); mult = 1 + 0.1 * 100 / 10000 = 1.001 -> 0.199174976
  c.update(6.6, 100);
  CHECK(c.value == Approx(0.199174976).epsilon(1e-13));
  // kl 100: e = clip(15.67) = 0.2; mult = 1 + 0.2 * 1000 / 10000 = 1.02 -> 0.20315847552
  c.update(100.0, 1000);
  CHECK(c.value == Approx(0.20315847552).epsilon(1e-13));
  // kl on target: no change.
  c.update(6.0, 5000);
  CHECK(c.value == Approx(0.20315847552).epsilon(1e-13));
  // Defaults are verl's kl_ctrl: kl_coef 0.001, target_kl 0.1, horizon 10000.
  const adaptive_kl_controller d;
  CHECK(d.value == 0.001);
  CHECK(d.target == 0.1);
  CHECK(d.horizon == 10000);
  fixed_kl_controller f{0.05};
  f.update(123.0, 7);
  CHECK(f.value == 0.05);
  CHECK(fixed_kl_controller{}.value == 0.001);
}

TEST_CASE("apply_kl_penalty: the score at the last active token minus coef * k1, by hand") {
  // Row 0: logp (-1, -2, -0.5), ref (-1.5, -1, -0.5), mask (1, 1, 0): k1 = (0.5, -1, -), score 1.
  //   rewards = (-0.1 * 0.5, 1 - 0.1 * (-1), 0) = (-0.05, 1.1, 0); mean kl = (0.5 - 1) / 2 = -0.25
  // Row 1: logp (-0.2, -0.3, -0.4), ref (-0.4, -0.3, -0.1), mask (1, 1, 1): k1 = (0.2, 0, -0.3), score -0.5.
  //   rewards = (-0.02, 0, -0.5 + 0.03) = (-0.02, 0, -0.47); mean kl = -0.1 / 3
  // current_kl = (-0.25 - 0.1 / 3) / 2 = -0.141666...
  dense<double, 2> logp({2, 3}), ref({2, 3}), mask({2, 3}), rewards({2, 3});
  const double lp[6] = {-1, -2, -0.5, -0.2, -0.3, -0.4}, rp[6] = {-1.5, -1, -0.5, -0.4, -0.3, -0.1},
               m[6] = {1, 1, 0, 1, 1, 1};
  for (int k = 0; k < 6; ++k) logp.data()[k] = lp[k], ref.data()[k] = rp[k], mask.data()[k] = m[k];
  std::vector<double> scores{1.0, -0.5};
  const auto report = apply_kl_penalty(kl_k1{}, 0.1, scores, logp, ref, mask, rewards);
  CHECK(rewards(0, 0) == Approx(-0.05).epsilon(1e-14));
  CHECK(rewards(0, 1) == Approx(1.1).epsilon(1e-14));
  CHECK(rewards(0, 2) == 0.0);
  CHECK(rewards(1, 0) == Approx(-0.02).epsilon(1e-12));
  CHECK(rewards(1, 1) == 0.0);
  CHECK(rewards(1, 2) == Approx(-0.47).epsilon(1e-14));
  CHECK(report.current_kl == Approx(-0.25 / 2 - 0.1 / 6).epsilon(1e-13));
  CHECK(report.coef == 0.1);

  // With an adaptive controller: the penalty uses the old coefficient, then
  // update(current_kl, n_steps = 2 sequences): e = clip(-0.1417 / 0.1 - 1) = -0.2,
  // mult = 1 - 0.2 * 2 / 10 = 0.96 -> 0.1 * 0.96 = 0.096.
  adaptive_kl_controller c(0.1, 0.1, 10);
  dense<double, 2> rewards2({2, 3});
  const auto report2 = apply_kl_penalty(kl_k1{}, c, scores, logp, ref, mask, rewards2);
  CHECK(report2.coef == 0.1);
  CHECK(c.value == Approx(0.096).epsilon(1e-14));
  for (index_t k = 0; k < 6; ++k) CHECK(rewards2.data()[k] == rewards.data()[k]);
  fixed_kl_controller f{0.1};
  apply_kl_penalty(kl_k1{}, f, scores, logp, ref, mask, rewards2);
  CHECK(f.value == 0.1);
}

TEST_CASE("apply_kl_penalty: holes in the mask, masked inputs ignored, sums, coef 0") {
  // Mask (1, 0, 1, 0): the score goes to token 2, the last active one.
  dense<double, 2> logp({1, 4}), ref({1, 4}), mask({1, 4}), rewards({1, 4});
  logp(0, 0) = -1, logp(0, 1) = std::numeric_limits<double>::quiet_NaN(), logp(0, 2) = -2, logp(0, 3) = 5;
  ref(0, 0) = -1.5, ref(0, 1) = 0, ref(0, 2) = -1, ref(0, 3) = std::numeric_limits<double>::infinity();
  mask(0, 0) = 1, mask(0, 2) = 1;
  std::vector<double> scores{2.0};
  // k3 (TRL): token 0: exp(-0.5) + 0.5 - 1 = 0.10653; token 2: e - 2 = 0.71828.
  const auto report = apply_kl_penalty(kl_k3::trl(), 0.5, scores, logp, ref, mask, rewards);
  CHECK(rewards(0, 0) == Approx(-0.5 * 0.10653065971263342).epsilon(1e-13));
  CHECK(rewards(0, 1) == 0.0);
  CHECK(rewards(0, 2) == Approx(2.0 - 0.5 * 0.71828182845904524).epsilon(1e-13));
  CHECK(rewards(0, 3) == 0.0);
  CHECK(report.current_kl == Approx((0.10653065971263342 + 0.71828182845904524) / 2).epsilon(1e-13));
  // coef 0: rewards are the scores alone.
  apply_kl_penalty(kl_k3::trl(), 0.0, scores, logp, ref, mask, rewards);
  CHECK(rewards(0, 0) == 0.0);
  CHECK(rewards(0, 2) == 2.0);
  // Random batch: the sum of a row's rewards is score - coef * sum of its KL.
  dense<double, 2> lp({6, 9}), rp({6, 9}), out({6, 9});
  testing::fill_uniform(lp.view(), 81, -3, 0);
  testing::fill_uniform(rp.view(), 82, -3, 0);
  const auto mk = testing::random_padding_mask<double>(6, 9, 83);
  std::vector<double> sc{0, 1, 0.5, -1, 1, 0};
  const auto k = kl_estimator::from_name("low_var_kl");
  apply_kl_penalty(k, 0.2, sc, lp, rp, mk, out);
  for (index_t i = 0; i < 6; ++i) {
    double row = 0, kl = 0;
    for (index_t t = 0; t < 9; ++t) {
      row += out(i, t);
      if (mk(i, t) != 0) kl += k.value(lp(i, t), rp(i, t));
      else CHECK(out(i, t) == 0.0);
    }
    CHECK(row == Approx(sc[static_cast<std::size_t>(i)] - 0.2 * kl).epsilon(1e-12));
  }
}

TEST_CASE("Eigen and xtensor inputs give bit-identical token rewards (double and float)") {
  const index_t B = 4, T = 6;
  dense<double, 2> lp({B, T}), rp({B, T});
  testing::fill_uniform(lp.view(), 91, -3, 0);
  testing::fill_uniform(rp.view(), 92, -3, 0);
  const auto mk = testing::random_padding_mask<double>(B, T, 93);
  Eigen::MatrixXd el(B, T), er(B, T), em(B, T), eo(B, T);
  Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rl(B, T), rr(B, T), rm(B, T), ro(B, T);
  xt::xtensor<double, 2> xl({std::size_t(B), std::size_t(T)}), xr(xl.shape()), xm(xl.shape()), xo(xl.shape());
  xt::xtensor<float, 2> fl(xl.shape()), fr(xl.shape()), fm(xl.shape()), fo(xl.shape());
  Eigen::MatrixXf efl(B, T), efr(B, T), efm(B, T), efo(B, T);
  for (index_t i = 0; i < B; ++i)
    for (index_t t = 0; t < T; ++t) {
      el(i, t) = rl(i, t) = xl(i, t) = lp(i, t);
      er(i, t) = rr(i, t) = xr(i, t) = rp(i, t);
      em(i, t) = rm(i, t) = xm(i, t) = mk(i, t);
      efl(i, t) = fl(i, t) = static_cast<float>(lp(i, t));
      efr(i, t) = fr(i, t) = static_cast<float>(rp(i, t));
      efm(i, t) = fm(i, t) = static_cast<float>(mk(i, t));
    }
  Eigen::VectorXd es(B);
  es << 1, 0, -1, 0.5;
  auto xs = xt::xtensor<double, 1>::from_shape({std::size_t(B)});
  auto fs = xt::xtensor<float, 1>::from_shape({std::size_t(B)});
  Eigen::VectorXf efs(B);
  for (index_t i = 0; i < B; ++i) xs(i) = es(i), fs(i) = efs(i) = static_cast<float>(es(i));
  const auto k = kl_estimator::from_name("k3");
  const auto a = apply_kl_penalty(k, 0.05, es, el, er, em, eo);
  const auto b = apply_kl_penalty(k, 0.05, es, rl, rr, rm, ro);
  const auto c = apply_kl_penalty(k, 0.05, xs, xl, xr, xm, xo);
  apply_kl_penalty(k, 0.05, fs, fl, fr, fm, fo);
  apply_kl_penalty(k, 0.05, efs, efl, efr, efm, efo);
  CHECK(a.current_kl == b.current_kl);
  CHECK(a.current_kl == c.current_kl);
  CHECK(a.current_kl > 0);
  for (index_t i = 0; i < B; ++i)
    for (index_t t = 0; t < T; ++t) {
      CHECK(eo(i, t) == ro(i, t));
      CHECK(eo(i, t) == xo(i, t));
      CHECK(fo(i, t) == efo(i, t));
      CHECK(fo(i, t) == Approx(eo(i, t)).epsilon(1e-5));
    }
}

TEST_CASE("bad input: controller hyper-parameters, shapes, scores, empty sequences") {
  CHECK_THROWS_WITH_AS(adaptive_kl_controller(0.1, 0.1, 0), doctest::Contains("horizon = 0 must be positive"), error);
  CHECK_THROWS_WITH_AS(adaptive_kl_controller(0.1, -1, 10), doctest::Contains("target_kl = -1 must be positive"),
                       error);
  CHECK_THROWS_WITH_AS(adaptive_kl_controller(-0.1, 0.1, 10), doctest::Contains("init_kl_coef = -0.1"), error);
  adaptive_kl_controller c;
  CHECK_THROWS_WITH_AS(c.update(std::nan(""), 1), doctest::Contains("current_kl = nan is not finite"), error);
  c.horizon = 0;  // a field set by hand is checked at the next update
  CHECK_THROWS_WITH_AS(c.update(0.1, 1), doctest::Contains("horizon = 0"), error);

  dense<double, 2> lp({2, 3}), rp({2, 3}), mk({2, 3}), out({2, 3});
  mk(0, 0) = 1;
  std::vector<double> scores{1, 2}, short_scores{1};
  // A row with no active token (a completion masked out) gets 0 and stays out of the KL mean.
  lp(0, 0) = -1, rp(0, 0) = -1.5, out(1, 1) = 9;
  const auto report = apply_kl_penalty(kl_k1{}, 0.1, scores, lp, rp, mk, out);
  CHECK(report.current_kl == doctest::Approx(0.5));
  CHECK(out(0, 0) == doctest::Approx(1 - 0.1 * 0.5));
  for (index_t t = 0; t < 3; ++t) CHECK(out(1, t) == 0.0);
  mk(1, 2) = 1;
  CHECK_THROWS_WITH_AS(apply_kl_penalty(kl_k1{}, 0.1, short_scores, lp, rp, mk, out),
                       doctest::Contains("scores has extent 1 in dimension 0 but the number of rows of logp is 2"),
                       error);
  scores[1] = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH_AS(apply_kl_penalty(kl_k1{}, 0.1, scores, lp, rp, mk, out),
                       doctest::Contains("scores(1) = inf is not finite"), error);
  scores[1] = 0;
  dense<double, 2> wrong({3, 2});
  CHECK_THROWS_WITH_AS(apply_kl_penalty(kl_k1{}, 0.1, scores, lp, wrong, mk, out),
                       doctest::Contains("ref_logp has shape [3 x 2]"), error);
  CHECK_THROWS_WITH_AS(apply_kl_penalty(kl_k1{}, std::nan(""), scores, lp, rp, mk, out),
                       doctest::Contains("coef = nan is not finite"), error);
}
