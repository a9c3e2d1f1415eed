// cispo: l = -sg[clip(rho, 1 - epsilon_low, 1 + epsilon_high)] A logp.
#include <cmath>

#include "lmrl/rl/objectives/cispo.hpp"
#include "rl/test_objectives_support.hpp"

using namespace lmrl;
using namespace objectives_testing;
using doctest::Approx;

TEST_CASE("cispo: hand-computed weights, loss and gradient") {
  // rho 6 (A = 1, logp -0.5): w = min(6, 1 + 4) = 5: l = -5 * 1 * -0.5 = 2.5,   dl/dlogp = -5
  // rho 2 (A = -1, logp -1):  w = 2:                 l = -2 * -1 * -1 = -2,     dl/dlogp = 2
  // rho 0.5 (A = -1, logp -2): no lower bound: w = 0.5: l = -0.5*-1*-2 = -1,   dl/dlogp = 0.5
  batch b = hand_batch(1, 3, {-0.5, -1, -2}, {std::log(6.0), std::log(2.0), std::log(0.5)}, {1, -1, -1},
                       {1, 1, 1});
  objective_stats s;
  const auto l = loss_of(cispo{}, b, &s);
  const dense<double, 2> g = ones_like(b);
  const auto d = backward_of(cispo{}, b, g);
  CHECK(l(0, 0) == Approx(2.5));
  CHECK(d(0, 0) == Approx(-5.0));
  CHECK(l(0, 1) == Approx(-2.0));
  CHECK(d(0, 1) == Approx(2.0));
  CHECK(l(0, 2) == Approx(-1.0));
  CHECK(d(0, 2) == Approx(0.5));
  CHECK(s.clip_fraction_high == Approx(1.0 / 3));  // rho 6 > 5 with A > 0 (TRL cispo_clip_ratio)
  CHECK(s.clip_fraction == Approx(1.0 / 3));       // weight != rho (verl pg_clipfrac)
  // verl: clip to [0.8, 1.2]: w = 1.2, 1.2, 0.8
  const auto lv = loss_of(cispo::verl(), b, &s);
  CHECK(lv(0, 0) == Approx(-1.2 * 1 * -0.5));
  CHECK(lv(0, 1) == Approx(-1.2 * -1 * -1));
  CHECK(lv(0, 2) == Approx(-0.8 * -1 * -2));
  CHECK(s.clip_fraction == Approx(1.0));
  CHECK(s.clip_fraction_low == Approx(1.0 / 3));
  CHECK(backward_of(cispo::verl(), b, g)(0, 2) == Approx(0.8));
}

TEST_CASE("cispo: finite differences (the weight is a constant), masked positions, backends, bad input") {
  // the weight sg[clip(rho)] is held fixed by moving old_logp with logp
  check_backward_fd(cispo{}, random_batch(4, 6, 31, 2.0), 32, true);
  check_backward_fd(cispo::verl(), random_batch(4, 6, 33), 34, true);
  // it is a stop-gradient: moving logp alone (ratio changes) gives another derivative
  batch b0 = random_batch(1, 2, 30);
  b0.mask(0, 0) = b0.mask(0, 1) = 1;
  b0.old_logp(0, 0) = b0.logp(0, 0);  // rho = 1, inside any clip range
  const dense<double, 2> g0 = ones_like(b0);
  const double analytic = backward_of(cispo{}, b0, g0)(0, 0);
  CHECK(analytic == doctest::Approx(-b0.adv(0, 0)));  // -w A with w = 1
  check_masked_positions(cispo::verl(), random_batch(3, 5, 35), 36);
  check_backends_identical(cispo{}, random_batch(3, 5, 37, 2.0), 38);
  check_bad_input(cispo{}, "cispo");
  batch b = random_batch(2, 3, 39);
  dense<double, 2> out({2, 3});
  cispo o;
  o.epsilon_low = 2.0;
  CHECK_THROWS_WITH_AS(o.loss(b.inputs(), out.view()), doctest::Contains("cispo::loss: epsilon_low = 2"), error);
}
