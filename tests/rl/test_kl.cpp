// Per-token KL estimators (lmrl/rl/kl.hpp): hand-computed values, gradients
// against finite differences, verl's clamps and straight-through forms, the
// run-time dispatcher, masking, backends and bad input.
#include "lmrl/rl/kl.hpp"

#include <Eigen/Core>
#include <cmath>
#include <limits>
#include <xtensor/xtensor.hpp>

#include "lmrl/tensor/eigen.hpp"
#include "lmrl/tensor/xtensor.hpp"
#include "support/testing.hpp"

using namespace lmrl;
using doctest::Approx;

static_assert(KLEstimator<kl_k1, float> && KLEstimator<kl_k1, double>);
static_assert(KLEstimator<kl_abs, float> && KLEstimator<kl_abs, double>);
static_assert(KLEstimator<kl_k2, float> && KLEstimator<kl_k2, double>);
static_assert(KLEstimator<kl_k3, float> && KLEstimator<kl_k3, double>);
static_assert(KLEstimator<kl_k1_plus, float> && KLEstimator<kl_k3_plus, double>);
static_assert(KLEstimator<kl_abs_plus, float>);
static_assert(KLEstimator<kl_estimator, float> && KLEstimator<kl_estimator, double>);

namespace {

// Sum over active tokens of the per-token values: the scalar whose gradient
// with respect to logp is the per-token gradient.
template <class K>
double kl_sum(const K& k, const dense<double, 2>& logp, const dense<double, 2>& ref, const dense<double, 2>& mask) {
  dense<double, 2> values(logp.shape());
  kl_per_token(k, logp, ref, mask, values);
  double s = 0;
  for (index_t i = 0; i < values.size(); ++i) s += values.data()[i];
  return s;
}

template <class K>
void check_estimator_gradient(const K& k, dense<double, 2>& logp, const dense<double, 2>& ref,
                              const dense<double, 2>& mask) {
  dense<double, 2> values(logp.shape()), grads(logp.shape());
  kl_per_token(k, logp, ref, mask, values, grads);
  testing::check_gradient([&](const dense<double, 2>& x) { return kl_sum(k, x, ref, mask); }, logp, grads);
}

}  // namespace

TEST_CASE("k1, abs, k2, k3 by hand at (logp, ref_logp) = (-1, -1.5) and (-2, -1)") {
  // Point A: x = logp - ref = -1 - (-1.5) = 0.5, r = ref - logp = -0.5.
  //   k1 = 0.5, abs = 0.5, k2 = 0.5 * 0.25 = 0.125,
  //   k3 = exp(-0.5) - (-0.5) - 1 = 0.60653065971 + 0.5 - 1 = 0.10653065971
  //   gradients: k1 1, abs +1, k2 x = 0.5, k3 1 - exp(-0.5) = 0.39346934029
  CHECK(kl_k1{}.value(-1.0, -1.5) == 0.5);
  CHECK(kl_k1{}.gradient(-1.0, -1.5) == 1.0);
  CHECK(kl_abs{}.value(-1.0, -1.5) == 0.5);
  CHECK(kl_abs{}.gradient(-1.0, -1.5) == 1.0);
  CHECK(kl_k2{}.value(-1.0, -1.5) == 0.125);
  CHECK(kl_k2{}.gradient(-1.0, -1.5) == 0.5);
  CHECK(kl_k3{}.value(-1.0, -1.5) == Approx(0.10653065971263342).epsilon(1e-14));
  CHECK(kl_k3{}.gradient(-1.0, -1.5) == Approx(0.39346934028736658).epsilon(1e-14));
  // Point B: x = -2 - (-1) = -1, r = 1.
  //   k1 = -1, abs = 1 (gradient -1), k2 = 0.5 (gradient -1),
  //   k3 = e - 1 - 1 = 0.71828182846, gradient 1 - e = -1.71828182846
  CHECK(kl_k1{}.value(-2.0, -1.0) == -1.0);
  CHECK(kl_abs{}.value(-2.0, -1.0) == 1.0);
  CHECK(kl_abs{}.gradient(-2.0, -1.0) == -1.0);
  CHECK(kl_abs{}.gradient(-1.0, -1.0) == 0.0);  // torch: sign(0) = 0
  CHECK(kl_k2{}.value(-2.0, -1.0) == 0.5);
  CHECK(kl_k2{}.gradient(-2.0, -1.0) == -1.0);
  CHECK(kl_k3{}.value(-2.0, -1.0) == Approx(0.71828182845904524).epsilon(1e-14));
  CHECK(kl_k3{}.gradient(-2.0, -1.0) == Approx(-1.71828182845904524).epsilon(1e-14));
  // Float gives the same numbers to float precision.
  CHECK(kl_k3{}.value(-2.0f, -1.0f) == Approx(0.718281828).epsilon(1e-6));
  // k3 at equal log-probs is exactly 0 with gradient 0.
  CHECK(kl_k3{}.value(-0.7, -0.7) == 0.0);
  CHECK(kl_k3{}.gradient(-0.7, -0.7) == 0.0);
}

TEST_CASE("k3 clamps: TRL has none, verl clamps the log-ratio to (-20, 20) and the value to (-10, 10)") {
  const kl_k3 trl = kl_k3::trl();
  const kl_k3 verl = kl_k3::verl();
  CHECK(!trl.clamp);
  CHECK(verl.clamp);
  // logp = -5, ref = 0: r = 5, k3 = e^5 - 5 - 1 = 148.4131591 - 6 = 142.4131591.
  CHECK(trl.value(-5.0, 0.0) == Approx(142.41315910257660).epsilon(1e-13));
  CHECK(trl.gradient(-5.0, 0.0) == Approx(1 - 148.41315910257660).epsilon(1e-13));
  // verl: the value clamp is active (142 > 10): value 10, gradient 0.
  CHECK(verl.value(-5.0, 0.0) == 10.0);
  CHECK(verl.gradient(-5.0, 0.0) == 0.0);
  // logp = 0, ref = -30: r = -30 is clamped to -20 first: e^-20 + 20 - 1 = 19.0000000021.
  // With the value clamp widened to 100 only the log-ratio clamp acts: value 19.0000000021, gradient 0.
  const kl_k3 wide{.clamp = true, .log_ratio_clamp = 20, .value_clamp = 100};
  CHECK(wide.value(0.0, -30.0) == Approx(19.000000002061154).epsilon(1e-14));
  CHECK(wide.gradient(0.0, -30.0) == 0.0);
  CHECK(verl.value(0.0, -30.0) == 10.0);
  // Inside both ranges verl and TRL agree (r = 1: 0.71828).
  CHECK(verl.value(-2.0, -1.0) == trl.value(-2.0, -1.0));
  CHECK(verl.gradient(-2.0, -1.0) == trl.gradient(-2.0, -1.0));
  // TRL's k3 is finite for r = -30 (29 + e^-30) where verl's saturates at 10.
  CHECK(trl.value(0.0, -30.0) == Approx(29.0).epsilon(1e-14));
}

TEST_CASE("straight-through forms: value of the base estimator, gradient of k2") {
  // logp = -5, ref = 0 (x = -5): k3+ (verl clamps) has value 10 and gradient x = -5.
  const kl_k3_plus k3p{kl_k3::verl()};
  CHECK(k3p.value(-5.0, 0.0) == 10.0);
  CHECK(k3p.gradient(-5.0, 0.0) == -5.0);
  const kl_k1_plus k1p{};
  CHECK(k1p.value(-1.0, -1.5) == 0.5);
  CHECK(k1p.gradient(-1.0, -1.5) == 0.5);  // not 1 (k1's own gradient)
  const kl_abs_plus absp{};
  CHECK(absp.value(-2.0, -1.0) == 1.0);
  CHECK(absp.gradient(-2.0, -1.0) == -1.0);
  CHECK(absp.gradient(-3.0, -1.0) == -2.0);  // x, not sign(x)
}

TEST_CASE("run-time estimator: verl names dispatch to the same numbers as the structs") {
  const double lp = -1.3, rp = -0.4;
  CHECK(kl_estimator::from_name("kl").value(lp, rp) == kl_k1{}.value(lp, rp));
  CHECK(kl_estimator::from_name("k1").gradient(lp, rp) == 1.0);
  CHECK(kl_estimator::from_name("abs").value(lp, rp) == kl_abs{}.value(lp, rp));
  CHECK(kl_estimator::from_name("mse").value(lp, rp) == kl_k2{}.value(lp, rp));
  CHECK(kl_estimator::from_name("k2").gradient(lp, rp) == kl_k2{}.gradient(lp, rp));
  CHECK(kl_estimator::from_name("low_var_kl").value(lp, rp) == kl_k3::verl().value(lp, rp));
  CHECK(kl_estimator::from_name("k3").value(-5.0, 0.0) == 10.0);  // verl names clamp
  auto unclamped = kl_estimator::from_name("k3");
  unclamped.clamp = false;
  CHECK(unclamped.value(-5.0, 0.0) == kl_k3::trl().value(-5.0, 0.0));
  const auto k3p = kl_estimator::from_name("k3+");
  CHECK(k3p.straight_through);
  CHECK(k3p.value(lp, rp) == kl_k3::verl().value(lp, rp));
  CHECK(k3p.gradient(lp, rp) == lp - rp);
  CHECK(kl_estimator::from_name("kl+").gradient(lp, rp) == lp - rp);
  CHECK(kl_estimator::from_name("low_var_kl+").name() == "k3+");
  CHECK(kl_estimator::from_name("abs+").name() == "abs+");
  CHECK(kl_estimator::from_name("mse+").name() == "k2");  // verl: k2+ is k2
  CHECK(!kl_estimator::from_name("k2+").straight_through);
  CHECK(kl_estimator::from_name("kl").name() == "k1");
  CHECK_THROWS_WITH_AS(kl_estimator::from_name("k4"), doctest::Contains("unknown KL estimator name 'k4'"), error);
  CHECK_THROWS_WITH_AS(kl_estimator::from_name("full"), doctest::Contains("low_var_kl"), error);
  CHECK_THROWS_AS(kl_estimator::from_name(""), error);
}

TEST_CASE("every gradient matches finite differences of the batch values (double)") {
  dense<double, 2> logp({4, 6}), ref({4, 6});
  testing::fill_uniform(logp.view(), 11, -3, -0.1);
  testing::fill_uniform(ref.view(), 12, -3, -0.1);
  const auto mask = testing::random_padding_mask<double>(4, 6, 13, 2);
  check_estimator_gradient(kl_k1{}, logp, ref, mask);
  check_estimator_gradient(kl_abs{}, logp, ref, mask);  // |x| > 0 almost surely away from the kink
  check_estimator_gradient(kl_k2{}, logp, ref, mask);
  check_estimator_gradient(kl_k3::trl(), logp, ref, mask);
  check_estimator_gradient(kl_k3::verl(), logp, ref, mask);
  check_estimator_gradient(kl_estimator::from_name("low_var_kl"), logp, ref, mask);
  // Where verl's clamps are active the value is flat: finite differences give 0 too.
  // Offsets x = logp - ref: -5 (r = 5, value clamp), 15 (r = -15, value clamp), 25 (both clamps).
  dense<double, 2> far({1, 4}), far_ref({1, 4}), ones({1, 4});
  const double offsets[4] = {-5, 15, 25, 0.4};
  for (index_t t = 0; t < 4; ++t) {
    far_ref(0, t) = -1.0;
    far(0, t) = -1.0 + offsets[t];
    ones(0, t) = 1;
  }
  check_estimator_gradient(kl_k3::verl(), far, far_ref, ones);
  check_estimator_gradient(kl_k3::trl(), far, far_ref, ones);
  dense<double, 2> v({1, 4}), g({1, 4});
  kl_per_token(kl_k3::verl(), far, far_ref, ones, v, g);
  CHECK(g(0, 0) == 0.0);
  CHECK(g(0, 1) == 0.0);
  CHECK(g(0, 2) == 0.0);
  CHECK(g(0, 3) != 0.0);
  // Straight-through: the gradient is the finite difference of k2's value, not of the base's.
  dense<double, 2> vs(logp.shape()), gs(logp.shape());
  kl_per_token(kl_k3_plus{kl_k3::verl()}, logp, ref, mask, vs, gs);
  testing::check_gradient([&](const dense<double, 2>& x) { return kl_sum(kl_k2{}, x, ref, mask); }, logp, gs);
}

TEST_CASE("batch: masked positions hold 0 whatever their inputs, the masked mean counts active tokens") {
  // Row 0: logp = (-1, -2, NaN), ref = (-1.5, -1, 7), mask = (1, 1, 0).
  // Row 1: logp = (-0.5, inf, 0),  ref = (-0.5, 0, 0), mask = (1, 0, 0).
  // k2 values: (0.125, 0.5, 0 | 0, 0, 0); mean over the 3 active tokens = 0.625 / 3.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  dense<double, 2> logp({2, 3}), ref({2, 3}), mask({2, 3}), values({2, 3}), grads({2, 3});
  const double lp[6] = {-1, -2, nan, -0.5, inf, 0}, rp[6] = {-1.5, -1, 7, -0.5, 0, 0}, m[6] = {1, 1, 0, 1, 0, 0};
  for (int k = 0; k < 6; ++k) logp.data()[k] = lp[k], ref.data()[k] = rp[k], mask.data()[k] = m[k];
  kl_per_token(kl_k2{}, logp, ref, mask, values, grads);
  CHECK(values(0, 0) == 0.125);
  CHECK(values(0, 1) == 0.5);
  CHECK(values(0, 2) == 0.0);
  CHECK(values(1, 1) == 0.0);
  CHECK(grads(0, 0) == 0.5);
  CHECK(grads(0, 1) == -1.0);
  CHECK(grads(0, 2) == 0.0);
  CHECK(grads(1, 1) == 0.0);
  CHECK(kl_masked_mean(values, mask) == Approx(0.625 / 3).epsilon(1e-15));
  // Changing a masked input changes nothing.
  auto before = kl_per_token(kl_k3::trl(), logp, ref, mask);
  logp(1, 2) = 123;
  ref(0, 2) = -55;
  auto after = kl_per_token(kl_k3::trl(), logp, ref, mask);
  for (index_t k = 0; k < 6; ++k) CHECK(before.data()[k] == after.data()[k]);
}

TEST_CASE("Eigen (either order, Map) and xtensor (double and float) give bit-identical results") {
  const index_t B = 5, T = 7;
  dense<double, 2> logp({B, T}), ref({B, T});
  testing::fill_uniform(logp.view(), 21, -4, 0);
  testing::fill_uniform(ref.view(), 22, -4, 0);
  const auto mask = testing::random_padding_mask<double>(B, T, 23);
  const auto estimator = kl_estimator::from_name("k3+");

  Eigen::MatrixXd el(B, T), er(B, T), em(B, T), ev(B, T), eg(B, T);
  Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rl(B, T), rr(B, T), rm(B, T), rv(B, T),
      rg(B, T);
  xt::xtensor<double, 2> xl({std::size_t(B), std::size_t(T)}), xr(xl.shape()), xm(xl.shape()), xv(xl.shape()),
      xg(xl.shape());
  xt::xtensor<float, 2> fl(xl.shape()), fr(xl.shape()), fm(xl.shape()), fv(xl.shape()), fg(xl.shape());
  Eigen::MatrixXf el_f(B, T), er_f(B, T), em_f(B, T), ev_f(B, T), eg_f(B, T);
  for (index_t i = 0; i < B; ++i)
    for (index_t t = 0; t < T; ++t) {
      el(i, t) = rl(i, t) = xl(i, t) = logp(i, t);
      er(i, t) = rr(i, t) = xr(i, t) = ref(i, t);
      em(i, t) = rm(i, t) = xm(i, t) = mask(i, t);
      el_f(i, t) = fl(i, t) = static_cast<float>(logp(i, t));
      er_f(i, t) = fr(i, t) = static_cast<float>(ref(i, t));
      em_f(i, t) = fm(i, t) = static_cast<float>(mask(i, t));
    }
  kl_per_token(estimator, el, er, em, ev, eg);
  kl_per_token(estimator, rl, rr, rm, rv, rg);
  kl_per_token(estimator, xl, xr, xm, xv, xg);
  Eigen::MatrixXd mv(B, T);
  Eigen::Map<Eigen::MatrixXd> map_out(mv.data(), B, T);
  kl_per_token(estimator, Eigen::Map<const Eigen::MatrixXd>(el.data(), B, T),
               Eigen::Map<const Eigen::MatrixXd>(er.data(), B, T), em, map_out);
  auto returned = kl_per_token(estimator, xl, xr, xm);  // xt::xtensor<double, 2>
  static_assert(std::is_same_v<decltype(returned), xt::xtensor<double, 2>>);
  kl_per_token(estimator, fl, fr, fm, fv, fg);
  kl_per_token(estimator, el_f, er_f, em_f, ev_f, eg_f);
  bool any_nonzero = false;
  for (index_t i = 0; i < B; ++i)
    for (index_t t = 0; t < T; ++t) {
      CHECK(ev(i, t) == rv(i, t));
      CHECK(ev(i, t) == xv(i, t));
      CHECK(ev(i, t) == mv(i, t));
      CHECK(ev(i, t) == returned(i, t));
      CHECK(eg(i, t) == rg(i, t));
      CHECK(eg(i, t) == xg(i, t));
      CHECK(fv(i, t) == ev_f(i, t));
      CHECK(fg(i, t) == eg_f(i, t));
      CHECK(fv(i, t) == Approx(ev(i, t)).epsilon(1e-5));
      any_nonzero = any_nonzero || ev(i, t) != 0;
    }
  CHECK(any_nonzero);
  CHECK(kl_masked_mean(ev, em) == kl_masked_mean(xv, xm));
}

TEST_CASE("bad input: shapes, masks, non-finite active log-probs, empty masks") {
  dense<double, 2> logp({2, 3}), ref({2, 4}), mask({2, 3}), out({2, 3});
  CHECK_THROWS_WITH_AS(kl_per_token(kl_k1{}, logp, ref, mask, out),
                       doctest::Contains("lmrl::kl_per_token: ref_logp has shape [2 x 4] but logp has shape [2 x 3]"),
                       error);
  dense<double, 2> ref_ok({2, 3}), small({1, 3});
  CHECK_THROWS_WITH_AS(kl_per_token(kl_k1{}, logp, ref_ok, mask, small), doctest::Contains("values has shape [1 x 3]"),
                       error);
  CHECK_THROWS_WITH_AS(kl_per_token(kl_k1{}, logp, ref_ok, mask, out, small),
                       doctest::Contains("gradients has shape [1 x 3]"), error);
  mask(1, 2) = 0.5;
  CHECK_THROWS_WITH_AS(kl_per_token(kl_k1{}, logp, ref_ok, mask, out), doctest::Contains("mask(1, 2) = 0.5"), error);
  mask(1, 2) = 1;
  logp(1, 2) = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH_AS(kl_per_token(kl_k1{}, logp, ref_ok, mask, out),
                       doctest::Contains("logp(1, 2) = inf is not finite"), error);
  dense<double, 2> none({2, 3});
  CHECK_THROWS_WITH_AS(kl_masked_mean(out, none), doctest::Contains("no active token"), error);
}

TEST_CASE("the batch function's fused value-and-gradient path gives the same bits as value() and gradient()") {
  dense<double, 2> logp({3, 40}), ref({3, 40}), ones({3, 40}), v({3, 40}), g({3, 40});
  testing::fill_uniform(logp.view(), 201, -30, 0);  // log-ratios in (-30, 30): every clamp is met
  testing::fill_uniform(ref.view(), 202, -30, 0);
  for (index_t k = 0; k < ones.size(); ++k) ones.data()[k] = 1;
  const kl_estimator named[3] = {kl_estimator::from_name("k3"), kl_estimator::from_name("k3+"),
                                 kl_estimator::from_name("kl")};
  int clamped = 0;
  for (const auto& k : named) {
    kl_per_token(k, logp, ref, ones, v, g);
    for (index_t i = 0; i < 3; ++i)
      for (index_t t = 0; t < 40; ++t) {
        CHECK(v(i, t) == k.value(logp(i, t), ref(i, t)));
        CHECK(g(i, t) == k.gradient(logp(i, t), ref(i, t)));
        clamped += v(i, t) == 10.0;
      }
  }
  CHECK(clamped > 0);
  for (const auto& k : {kl_k3::verl(), kl_k3::trl()}) {
    kl_per_token(k, logp, ref, ones, v, g);
    for (index_t i = 0; i < 3; ++i)
      for (index_t t = 0; t < 40; ++t) {
        CHECK(v(i, t) == k.value(logp(i, t), ref(i, t)));
        CHECK(g(i, t) == k.gradient(logp(i, t), ref(i, t)));
      }
  }
}
