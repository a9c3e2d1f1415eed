// rl/objectives/common.hpp: the clipped surrogate, log-ratio clamp, stats and
// the generic overloads.
#include <cmath>

#include "lmrl/rl/objectives/common.hpp"
#include "lmrl/rl/objectives/ppo_clip.hpp"
#include "rl/test_objectives_support.hpp"

using namespace lmrl;
using namespace objectives_testing;
using doctest::Approx;

TEST_CASE("clipped_surrogate: branches and autograd derivatives") {
  using detail::clipped_surrogate;
  // inside: l = -A rho, d = -A (tie: half from each branch)
  auto s = clipped_surrogate(1.1, 2.0, 0.8, 1.2);
  CHECK(s.loss == Approx(-2.2));
  CHECK(s.dloss_dratio == Approx(-2.0));
  // clipped high for A > 0; clipped low for A < 0
  s = clipped_surrogate(1.5, 1.0, 0.8, 1.2);
  CHECK(s.loss == Approx(-1.2));
  CHECK(s.dloss_dratio == 0.0);
  CHECK(s.high);
  s = clipped_surrogate(0.5, -1.0, 0.8, 1.2);
  CHECK(s.loss == Approx(0.8));
  CHECK(s.low);
  // dual: A = -1, rho = 5, c = 3 -> 3, flagged
  s = clipped_surrogate(5.0, -1.0, 0.8, 1.2, INFINITY, 3.0);
  CHECK(s.loss == Approx(3.0));
  CHECK(s.dual);
  CHECK(s.dloss_dratio == 0.0);
  // A = 0: zero everything
  s = clipped_surrogate(5.0, 0.0, 0.8, 1.2, 1.4, 3.0);
  CHECK(s.loss == 0.0);
  CHECK(s.dloss_dratio == 0.0);
}

TEST_CASE("log_ratio: verl clamp at +-20 with zero slope outside") {
  CHECK(detail::log_ratio(-1, -2, false).value == 1.0);
  CHECK(detail::log_ratio(0, -30, true).value == 20.0);
  CHECK(detail::log_ratio(0, -30, true).slope == 0.0);
  CHECK(detail::log_ratio(0, -30, false).value == 30.0);
  CHECK(detail::log_ratio(-30, 0, true).value == -20.0);
}

TEST_CASE("stats: empty batch gives zeros, generic overloads take any backend") {
  batch b = random_batch(2, 3, 111);
  for (index_t k = 0; k < b.mask.size(); ++k) b.mask.data()[k] = 0;
  objective_stats s;
  const auto l = loss_of(ppo_clip{}, b, &s);
  CHECK(s.active_tokens == 0);
  CHECK(s.ratio_mean == 0.0);
  CHECK(s.approx_kl == 0.0);
  for (index_t k = 0; k < l.size(); ++k) CHECK(l.data()[k] == 0.0);
  // the convenience overload returns the per-token loss in logp's family
  batch c = random_batch(2, 3, 112);
  Eigen::MatrixXd lp(2, 3), old(2, 3), adv(2, 3), m(2, 3);
  for (index_t i = 0; i < 2; ++i)
    for (index_t t = 0; t < 3; ++t) {
      lp(i, t) = c.logp(i, t);
      old(i, t) = c.old_logp(i, t);
      adv(i, t) = c.adv(i, t);
      m(i, t) = c.mask(i, t);
    }
  const auto r = policy_loss(ppo_clip{}, lp, old, adv, m);
  static_assert(std::is_same_v<std::remove_cvref_t<decltype(r.per_token_loss)>, Eigen::MatrixXd>);
  objective_stats expected;
  const auto ref = loss_of(ppo_clip{}, c, &expected);
  for (index_t i = 0; i < 2; ++i)
    for (index_t t = 0; t < 3; ++t) CHECK(r.per_token_loss(i, t) == ref(i, t));
  CHECK(r.stats.ratio_mean == expected.ratio_mean);
  CHECK(r.stats.active_tokens == expected.active_tokens);
}
