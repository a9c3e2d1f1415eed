// sapo: l = -sigmoid(tau (rho - 1)) 4 / tau * A.
#include <cmath>

#include "lmrl/rl/objectives/sapo.hpp"
#include "rl/test_objectives_support.hpp"

using namespace lmrl;
using namespace objectives_testing;
using doctest::Approx;

TEST_CASE("sapo: hand-computed gate, loss and gradient") {
  // rho = 1: sigmoid(0) = 0.5, gate 4 * 0.5 / tau = 2 / tau, slope 4 * 0.25 * 1 = 1
  //   A = 1 (tau_pos 1):     l = -2,            dl/dlogp = -1
  //   A = -1 (tau_neg 1.05): l = 2 / 1.05,      dl/dlogp = 1
  // rho = 2, A = 1: sigma = sigmoid(1) = 1 / (1 + e^-1) = 0.7310586
  //   l = -4 * 0.7310586 = -2.9242344, dl/dlogp = -4 * 0.7310586 * 0.2689414 * 2 = -1.5728954
  batch b = hand_batch(1, 3, {-1, -1, -1}, {0, 0, std::log(2.0)}, {1, -1, 1}, {1, 1, 1});
  objective_stats s;
  const auto l = loss_of(sapo{}, b, &s);
  const dense<double, 2> g = ones_like(b);
  const auto d = backward_of(sapo{}, b, g);
  CHECK(l(0, 0) == Approx(-2.0));
  CHECK(d(0, 0) == Approx(-1.0));
  CHECK(l(0, 1) == Approx(2.0 / 1.05));
  CHECK(d(0, 1) == Approx(1.0));
  CHECK(l(0, 2) == Approx(-2.9242344));
  CHECK(d(0, 2) == Approx(-1.5728954));
  CHECK(s.clip_fraction == 0.0);
  CHECK(s.ratio_max == Approx(2.0));
}

TEST_CASE("sapo: finite differences, masked positions, backends, bad input") {
  check_backward_fd(sapo{}, random_batch(4, 6, 41, 1.5, 2.0), 42);
  sapo v;
  v.clamp_log_ratio = true;
  v.tau_pos = 2.0;
  check_backward_fd(v, random_batch(4, 6, 43), 44);
  check_masked_positions(sapo{}, random_batch(3, 5, 45), 46);
  check_backends_identical(sapo{}, random_batch(3, 5, 47), 48);
  check_bad_input(sapo{}, "sapo");
  batch b = random_batch(2, 3, 49);
  dense<double, 2> out({2, 3});
  sapo o;
  o.tau_neg = 0;
  CHECK_THROWS_WITH_AS(o.loss(b.inputs(), out.view()), doctest::Contains("sapo::loss: tau_neg = 0"), error);
}
