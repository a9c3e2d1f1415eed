// clip_cov and kl_cov (verl): covariance-selected tokens.
#include <cmath>

#include "lmrl/rl/objectives/covariance.hpp"
#include "rl/test_objectives_support.hpp"

using namespace lmrl;
using namespace objectives_testing;
using doctest::Approx;

TEST_CASE("clip_cov: hand-computed covariances and selection") {
  // A = 2, -2, 2, -2 (mean 0); logp = -0.5, -1.5, -1.5, -0.5 (mean -1)
  // cov = 2*0.5 = 1, -2*-0.5 = 1, 2*-0.5 = -1, -2*0.5 = -1; on-policy: rho = 1, l = -A
  // with lb 0.5: candidates tokens 0 and 1; clip_num = max(int(0.0002*4), 1) = 1: one of them drops
  batch b = hand_batch(1, 4, {-0.5, -1.5, -1.5, -0.5}, {0, 0, 0, 0}, {2, -2, 2, -2}, {1, 1, 1, 1});
  clip_cov o;
  o.clip_cov_lb = 0.5;
  int dropped_0 = 0;
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    o.seed = seed;
    objective_stats s;
    const auto l = loss_of(o, b, &s);
    const auto sel = o.selected(b.inputs());
    REQUIRE(sel.size() == 1);
    CHECK((sel[0] == 0 || sel[0] == 1));
    dropped_0 += sel[0] == 0;
    for (index_t t = 0; t < 4; ++t) CHECK(l(0, t) == (t == sel[0] ? 0.0 : -b.adv(0, t)));
    CHECK(s.cov_fraction == Approx(0.25));
    const dense<double, 2> g = ones_like(b);
    CHECK(backward_of(o, b, g)(0, sel[0]) == 0.0);
    // the same seed picks the same token
    CHECK(o.selected(b.inputs()) == sel);
  }
  CHECK(dropped_0 > 0);
  CHECK(dropped_0 < 20);
  // clip_cov_ratio 0.5: clip_num = 2, both candidates drop
  o.clip_cov_ratio = 0.5;
  CHECK(o.selected(b.inputs()) == std::vector<index_t>{0, 1});
  // a token PPO already clips is no candidate: token 0 with rho = 1.5, A = 2 (clipped high)
  batch c = hand_batch(1, 4, {-0.5, -1.5, -1.5, -0.5}, {std::log(1.5), 0, 0, 0}, {2, -2, 2, -2}, {1, 1, 1, 1});
  objective_stats s;
  const auto l = loss_of(o, c, &s);
  CHECK(o.selected(c.inputs()) == std::vector<index_t>{1});
  CHECK(l(0, 0) == Approx(-2 * 1.2));
  CHECK(s.clip_fraction_high == Approx(0.25));
  // ub below the covariances: nothing selected
  o.clip_cov_ub = 0.9;
  CHECK(o.selected(b.inputs()).empty());
}

TEST_CASE("kl_cov: hand-computed top covariance and KL term") {
  // A = 2, -2, 2, -2 (mean 0); logp = -0.4, -1.5, -1.6, -0.5 (mean -1)
  // cov = 2*0.6 = 1.2, -2*-0.5 = 1.0, 2*-0.6 = -1.2, -2*0.5 = -1.0; k = max(1, int(4*0.25)) = 1 -> token 0
  // token 0: r = 0.1: l = -2 e^0.1 + 0.1 * |0.1| = -2.2103418 + 0.01; dl/dlogp = -2 e^0.1 + 0.1 sign(0.1)
  // others: l = -A rho, no clipping at all: token 1 (r = 0.5): 2 e^0.5
  batch b = hand_batch(1, 4, {-0.4, -1.5, -1.6, -0.5}, {0.1, 0.5, 0, 0}, {2, -2, 2, -2}, {1, 1, 1, 1});
  kl_cov o;
  o.kl_cov_ratio = 0.25;
  CHECK(o.selected(b.inputs()) == std::vector<index_t>{0});
  objective_stats s;
  const auto l = loss_of(o, b, &s);
  const dense<double, 2> g = ones_like(b);
  const auto d = backward_of(o, b, g);
  CHECK(l(0, 0) == Approx(-2 * std::exp(0.1) + 0.01));
  CHECK(d(0, 0) == Approx(-2 * std::exp(0.1) + 0.1));
  CHECK(l(0, 1) == Approx(2 * std::exp(0.5)));
  CHECK(d(0, 1) == Approx(2 * std::exp(0.5)));
  CHECK(s.cov_fraction == Approx(0.25));
  CHECK(s.clip_fraction == 0.0);
  // ratio 0.5: k = 2 -> tokens 0 and 1
  o.kl_cov_ratio = 0.5;
  CHECK(o.selected(b.inputs()) == std::vector<index_t>{0, 1});
  // ties go to the earlier token: covariances 1, 1
  batch t = hand_batch(1, 4, {-0.5, -1.5, -1.5, -0.5}, {0, 0, 0, 0}, {2, -2, 2, -2}, {1, 1, 1, 1});
  o.kl_cov_ratio = 0.25;
  CHECK(o.selected(t.inputs()) == std::vector<index_t>{0});
}

TEST_CASE("clip_cov, kl_cov: finite differences, masked positions, backends, bad input") {
  clip_cov cc;
  cc.clip_cov_lb = 0.05;
  cc.clip_cov_ratio = 0.2;
  cc.seed = 7;
  batch b = random_batch(4, 6, 81, 0.5, 3.0);
  CHECK(!cc.selected(b.inputs()).empty());
  check_backward_fd(cc, b, 82);
  kl_cov kc;
  kc.kl_cov_ratio = 0.2;
  batch k = random_batch(4, 6, 83, 0.5, 3.0);
  check_backward_fd(kc, k, 84);
  check_masked_positions(cc, random_batch(4, 6, 85, 0.5, 3.0), 86);
  check_masked_positions(kc, random_batch(4, 6, 87, 0.5, 3.0), 88);
  check_backends_identical(cc, random_batch(3, 5, 89, 0.5, 3.0), 90);
  check_backends_identical(kc, random_batch(3, 5, 91, 0.5, 3.0), 92);
  check_bad_input(clip_cov{}, "clip_cov");
  check_bad_input(kl_cov{}, "kl_cov");
  dense<double, 2> out({4, 6});
  clip_cov bad;
  bad.clip_cov_ratio = 0;
  CHECK_THROWS_WITH_AS(bad.loss(b.inputs(), out.view()), doctest::Contains("clip_cov::loss: clip_cov_ratio = 0"), error);
  bad = {};
  bad.clip_cov_lb = 6;
  CHECK_THROWS_WITH_AS(bad.loss(b.inputs(), out.view()), doctest::Contains("clip_cov_lb = 6"), error);
  kl_cov badk;
  badk.ppo_kl_coef = -1;
  CHECK_THROWS_WITH_AS(badk.loss(b.inputs(), out.view()), doctest::Contains("kl_cov::loss: ppo_kl_coef = -1"), error);
}
