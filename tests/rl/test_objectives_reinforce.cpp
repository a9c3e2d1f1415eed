// reinforce: l = -A logp (verl gpg), no ratio.
#include <cmath>

#include "lmrl/rl/objectives/reinforce.hpp"
#include "rl/test_objectives_support.hpp"

using namespace lmrl;
using namespace objectives_testing;
using doctest::Approx;

TEST_CASE("reinforce: l = -A logp, dl/dlogp = -A, ratio stats reported") {
  // logp = -0.5, A = 2 -> 1.0; logp = -2, A = -1 -> -2.0; padding -> 0
  const double r = std::log(1.5);
  batch b = hand_batch(1, 3, {-0.5, -2, -1}, {0, r, 0}, {2, -1, 5}, {1, 1, 0});
  objective_stats s;
  const auto l = loss_of(reinforce{}, b, &s);
  const dense<double, 2> g = ones_like(b);
  const auto d = backward_of(reinforce{}, b, g);
  CHECK(l(0, 0) == Approx(1.0));
  CHECK(l(0, 1) == Approx(-2.0));
  CHECK(l(0, 2) == 0.0);
  CHECK(d(0, 0) == Approx(-2.0));
  CHECK(d(0, 1) == Approx(1.0));
  CHECK(d(0, 2) == 0.0);
  CHECK(s.active_tokens == 2);
  CHECK(s.ratio_mean == Approx(1.25));  // (1 + 1.5) / 2
  CHECK(s.approx_kl == Approx(-r / 2));
  CHECK(s.clip_fraction == 0.0);
}

TEST_CASE("reinforce: finite differences, masked positions, backends, bad input") {
  check_backward_fd(reinforce{}, random_batch(3, 5, 21), 22);
  check_masked_positions(reinforce{}, random_batch(3, 5, 23), 24);
  check_backends_identical(reinforce{}, random_batch(3, 5, 25), 26);
  check_bad_input(reinforce{}, "reinforce");
}
