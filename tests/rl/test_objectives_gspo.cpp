// gspo (TRL sequence level) and gspo_token (verl): one ratio per sequence.
#include <cmath>

#include "lmrl/rl/objectives/gspo.hpp"
#include "rl/test_objectives_support.hpp"

using namespace lmrl;
using namespace objectives_testing;
using doctest::Approx;

TEST_CASE("gspo: hand-computed sequence ratio, clipping and gradients of both forms") {
  // row 0: log-ratios 0.1, 0.3 -> mean 0.2, s = e^0.2 = 1.2214028; range [0.8, 1.2]
  //   A = 1:  max(-1.2214, -1.2) = -1.2 (clipped high);  A = -1: max(1.2214, 1.2) = 1.2214
  // row 1: log-ratios -0.2, 0.0 (third token padding) -> mean -0.1, s = e^-0.1 = 0.9048374
  //   A = 1 and A = 3: inside, l = -s and -3 s
  batch b = hand_batch(2, 3, {-1, -1, -1, -1, -1, -1}, {0.1, 0.3, 0, -0.2, 0.0, 0.9}, {1, -1, 0, 1, 3, 0},
                       {1, 1, 0, 1, 1, 0});
  gspo o{0.2, 0.2, {}};
  const double s0 = std::exp(0.2), s1 = std::exp(-0.1);
  objective_stats st;
  const auto l = loss_of(o, b, &st);
  CHECK(l(0, 0) == Approx(-1.2));
  CHECK(l(0, 1) == Approx(s0));
  CHECK(l(1, 0) == Approx(-s1));
  CHECK(l(1, 1) == Approx(-3 * s1));
  CHECK(l(1, 2) == 0.0);
  CHECK(st.clip_fraction_high == Approx(0.25));
  CHECK(st.ratio_mean == Approx((2 * s0 + 2 * s1) / 4));
  CHECK(st.approx_kl == Approx(-(0.1 + 0.3 - 0.2 + 0.0) / 4));
  // token form: same values
  gspo_token ot{0.2, 0.2, 10.0};
  const auto lt = loss_of(ot, b);
  for (index_t k = 0; k < l.size(); ++k) CHECK(lt.data()[k] == Approx(l.data()[k]));
  // gradients with g = 1. Sequence form: dL/dlogp[i,t] = s/|o| * sum_s dl_s/ds
  //   row 0: (0 + 1) * s0 / 2 (token 0 clipped: 0; token 1: -A = 1);  row 1: (-1 - 3) * s1 / 2 = -2 s1
  const dense<double, 2> g = ones_like(b);
  const auto d = backward_of(o, b, g);
  CHECK(d(0, 0) == Approx(s0 / 2));
  CHECK(d(0, 1) == Approx(s0 / 2));
  CHECK(d(1, 0) == Approx(-2 * s1));
  CHECK(d(1, 1) == Approx(-2 * s1));
  CHECK(d(1, 2) == 0.0);
  // token form: each token its own: dl/ds * s: row 0: 0 and s0; row 1: -s1 and -3 s1
  const auto dt = backward_of(ot, b, g);
  CHECK(dt(0, 0) == 0.0);
  CHECK(dt(0, 1) == Approx(s0));
  CHECK(dt(1, 0) == Approx(-s1));
  CHECK(dt(1, 1) == Approx(-3 * s1));
  // the two forms agree on the row sum (same total gradient per sequence)
  CHECK(d(1, 0) + d(1, 1) == Approx(dt(1, 0) + dt(1, 1)));
  // GSPO paper defaults clip almost everything: s0 = 1.22 > 1 + 4e-4
  CHECK(loss_of(gspo{}, b)(0, 0) == Approx(-(1 + 4e-4)));
}

TEST_CASE("gspo_token: verl caps log s at 10 (no gradient above)") {
  batch b = hand_batch(1, 2, {-1, -1}, {12, 12}, {-1, -1}, {1, 1});
  gspo_token o{0.2, 0.2, 10.0};
  CHECK(loss_of(o, b)(0, 0) == Approx(std::exp(10.0)));
  const dense<double, 2> g = ones_like(b);
  CHECK(backward_of(o, b, g)(0, 0) == 0.0);
  CHECK(loss_of(gspo{0.2, 0.2, {}}, b)(0, 0) == Approx(std::exp(12.0)));
}

TEST_CASE("gspo: sequence form against finite differences, token form against its stop-gradient definition") {
  gspo o{0.2, 0.28, {}};
  check_backward_fd(o, random_batch(4, 6, 51, 0.3), 52);
  check_backward_fd(gspo{0.2, 0.2, 1.1}, random_batch(4, 6, 53, 0.3, 1.0, true), 54);
  // gspo_token: dL/dlogp[i,t] = g[i,t] dl/ds(s_i, A[i,t]) s_i; with per-sequence A and g = 1/|o_i|
  // (per-sequence token mean) it equals the sequence form's gradient.
  batch b = random_batch(4, 6, 55, 0.3, 1.0, true);
  dense<double, 2> g({4, 6});
  for (index_t i = 0; i < 4; ++i) {
    double n = 0;
    for (index_t t = 0; t < 6; ++t) n += b.mask(i, t);
    for (index_t t = 0; t < 6; ++t) g(i, t) = b.mask(i, t) / n;
  }
  const auto ds = backward_of(gspo{0.2, 0.2, {}}, b, g);
  const auto dt = backward_of(gspo_token{0.2, 0.2, 10.0}, b, g);
  index_t nonzero = 0;
  for (index_t k = 0; k < ds.size(); ++k) {
    CHECK(dt.data()[k] == Approx(ds.data()[k]).epsilon(1e-12));
    nonzero += ds.data()[k] != 0;
  }
  CHECK(nonzero > 0);
}

TEST_CASE("gspo: masked positions, backends, bad input") {
  check_masked_positions(gspo{0.2, 0.2, {}}, random_batch(4, 6, 57, 0.3), 58);
  check_masked_positions(gspo_token{}, random_batch(4, 6, 59, 0.3), 60);
  check_backends_identical(gspo{0.2, 0.2, {}}, random_batch(3, 5, 61, 0.3), 62);
  check_backends_identical(gspo_token{0.2, 0.2, 10.0}, random_batch(3, 5, 63, 0.3), 64);
  check_bad_input(gspo{}, "gspo");
  check_bad_input(gspo_token{}, "gspo_token");
  batch b = random_batch(2, 3, 65);
  dense<double, 2> out({2, 3});
  CHECK_THROWS_WITH_AS(gspo({-0.1, 0.2, {}}).loss(b.inputs(), out.view()),
                       doctest::Contains("gspo::loss: epsilon_low = -0.1 must be in [0, 1]"), error);
}
