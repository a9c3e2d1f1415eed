// ppo_clip: the PPO clipped surrogate of TRL (grpo/dapo) and verl (vanilla),
// with clip-higher, dual clip and TRL's delta.
#include <cmath>

#include "lmrl/rl/objectives/ppo_clip.hpp"
#include "rl/test_objectives_support.hpp"

using namespace lmrl;
using namespace objectives_testing;
using doctest::Approx;

static_assert(PolicyObjective<ppo_clip, float> && PolicyObjective<ppo_clip, double>);

TEST_CASE("ppo_clip: hand-computed loss, gradient and stats in every regime (TRL defaults, epsilon 0.2)") {
  // one row per regime; column 1 is padding. rho = exp(r), clip range [0.8, 1.2].
  const double l11 = std::log(1.1), l15 = std::log(1.5), l05 = std::log(0.5);
  batch b = hand_batch(5, 2, {-1, 0, -1, 0, -1, 0, -1, 0, -1, 0},
                       {l11, 0, l15, 0, l05, 0, l05, 0, l15, 0},
                       {1, 0, 1, 0, -1, 0, 1, 0, -2, 0},
                       {1, 0, 1, 0, 1, 0, 1, 0, 1, 0});
  objective_stats s;
  const auto l = loss_of(ppo_clip{}, b, &s);
  const auto d = backward_of(ppo_clip{}, b, ones_like(b));
  // inside, A = 1:        max(-1.1, -1.1) = -1.1;            dl/dlogp = -A rho = -1.1
  CHECK(l(0, 0) == Approx(-1.1));
  CHECK(d(0, 0) == Approx(-1.1));
  // clipped above, A = 1: max(-1.5, -1.2) = -1.2;            gradient 0
  CHECK(l(1, 0) == Approx(-1.2));
  CHECK(d(1, 0) == 0.0);
  // clipped below, A = -1: max(0.5, 0.8) = 0.8;              gradient 0
  CHECK(l(2, 0) == Approx(0.8));
  CHECK(d(2, 0) == 0.0);
  // rho below range, A = 1: max(-0.5, -0.8) = -0.5 (unclipped); -A rho = -0.5
  CHECK(l(3, 0) == Approx(-0.5));
  CHECK(d(3, 0) == Approx(-0.5));
  // rho above range, A = -2: max(3.0, 2.4) = 3.0 (unclipped); -A rho = 3.0
  CHECK(l(4, 0) == Approx(3.0));
  CHECK(d(4, 0) == Approx(3.0));
  for (index_t i = 0; i < 5; ++i) CHECK(l(i, 1) == 0.0);
  // stats: low = row 2, high = row 1 -> 1/5 each, 2/5 together
  CHECK(s.active_tokens == 5);
  CHECK(s.clip_fraction_low == Approx(0.2));
  CHECK(s.clip_fraction_high == Approx(0.2));
  CHECK(s.clip_fraction == Approx(0.4));
  CHECK(s.clip_fraction_dual == 0.0);
  // ratio mean (1.1 + 1.5 + 0.5 + 0.5 + 1.5) / 5 = 1.02; approx_kl = -ln(1.1*1.5*0.5*0.5*1.5)/5
  CHECK(s.ratio_mean == Approx(1.02));
  CHECK(s.ratio_min == Approx(0.5));
  CHECK(s.ratio_max == Approx(1.5));
  CHECK(s.approx_kl == Approx(-std::log(0.61875) / 5));
}

TEST_CASE("ppo_clip: clip-higher (DAPO 0.28), dual clip (verl c = 3) and TRL delta") {
  const double r13 = std::log(1.3), r15 = std::log(1.5), r2 = std::log(2.0), r4 = std::log(4.0);
  batch b = hand_batch(1, 4, {-1, -1, -1, -1}, {r13, r2, r4, r15}, {1, -1, -1, -1}, {1, 1, 1, 1});
  // DAPO: range [0.8, 1.28]; rho 1.3, A = 1: max(-1.3, -1.28) = -1.28, clipped
  const auto dapo = loss_of(ppo_clip::dapo(), b);
  CHECK(dapo(0, 0) == Approx(-1.28));
  // symmetric 0.2 clips it too: -1.2
  CHECK(loss_of(ppo_clip{}, b)(0, 0) == Approx(-1.2));
  // dual clip c = 3: rho 2, A = -1: max(2, 1.2) = 2 < 3 -> 2, gradient -A rho = 2
  //                  rho 4, A = -1: max(4, 1.2) = 4 > 3 -> 3, gradient 0
  ppo_clip dual;
  dual.clip_ratio_c = 3.0;
  objective_stats s;
  const auto l = loss_of(dual, b, &s);
  const auto d = backward_of(dual, b, ones_like(b));
  CHECK(l(0, 1) == Approx(2.0));
  CHECK(d(0, 1) == Approx(2.0));
  CHECK(l(0, 2) == Approx(3.0));
  CHECK(d(0, 2) == 0.0);
  CHECK(s.clip_fraction_dual == Approx(0.25));
  // without dual clip the rho = 4 token costs 4 with gradient 4
  CHECK(loss_of(ppo_clip{}, b)(0, 2) == Approx(4.0));
  CHECK(backward_of(ppo_clip{}, b, ones_like(b))(0, 2) == Approx(4.0));
  // delta 1.4: rho 1.5, A = -1: max(-A min(1.5, 1.4), -A 1.2) = 1.4, gradient 0 (capped)
  //            rho 2.0 -> 1.4 as well; rho 1.3, A = 1: unaffected, clipped to -1.2
  ppo_clip two_sided;
  two_sided.delta = 1.4;
  const auto ld = loss_of(two_sided, b);
  const auto dd = backward_of(two_sided, b, ones_like(b));
  CHECK(ld(0, 3) == Approx(1.4));
  CHECK(dd(0, 3) == 0.0);
  CHECK(ld(0, 1) == Approx(1.4));
  CHECK(ld(0, 0) == Approx(-1.2));
  // delta 1.6: rho 1.5 < delta, unclipped: 1.5 with gradient 1.5
  two_sided.delta = 1.6;
  CHECK(loss_of(two_sided, b)(0, 3) == Approx(1.5));
  CHECK(backward_of(two_sided, b, ones_like(b))(0, 3) == Approx(1.5));
}

TEST_CASE("ppo_clip: verl clamps the log-ratio at +-20, TRL does not") {
  batch b = hand_batch(1, 2, {-1, -1}, {25, -25}, {-1, 1}, {1, 1});
  ppo_clip verl = ppo_clip::verl();
  verl.clip_ratio_c.reset();
  // A = -1, r = 25: verl uses exp(20); TRL exp(25)
  CHECK(loss_of(verl, b)(0, 0) == Approx(std::exp(20.0)));
  CHECK(loss_of(ppo_clip{}, b)(0, 0) == Approx(std::exp(25.0)));
  CHECK(backward_of(verl, b, ones_like(b))(0, 0) == 0.0);  // clamped: no gradient
  objective_stats s;
  loss_of(verl, b, &s);
  CHECK(s.approx_kl == Approx(0.0));  // (-20 + 20) / 2
}

TEST_CASE("ppo_clip: gradients match finite differences") {
  check_backward_fd(ppo_clip{}, random_batch(4, 7, 1), 2);
  check_backward_fd(ppo_clip::dapo(), random_batch(4, 7, 3), 4);
  ppo_clip all = ppo_clip::verl();
  all.delta = 1.3;
  all.clip_ratio_c = 1.25;  // low enough that the dual clip bites in a random batch
  check_backward_fd(all, random_batch(5, 6, 5, 0.8, 2.0), 6);
}

TEST_CASE("ppo_clip: masked positions, off-policy absent old_logp, backends") {
  check_masked_positions(ppo_clip::verl(), random_batch(4, 6, 7), 8);
  check_backends_identical(ppo_clip::verl(), random_batch(3, 5, 9), 10);
  // without old_logp the batch is on-policy: rho = 1 and l = -A
  batch b = random_batch(2, 3, 12);
  auto in = b.inputs();
  in.old_logp = {};
  dense<double, 2> l({2, 3});
  const auto s = ppo_clip{}.loss(in, l.view());
  for (index_t i = 0; i < 2; ++i)
    for (index_t t = 0; t < 3; ++t) CHECK(l(i, t) == (b.mask(i, t) != 0 ? -b.adv(i, t) : 0.0));
  CHECK(s.ratio_mean == 1.0);
  CHECK(s.approx_kl == 0.0);
}

TEST_CASE("ppo_clip: bad input and out-of-range hyper-parameters") {
  check_bad_input(ppo_clip{}, "ppo_clip");
  batch b = random_batch(2, 3, 13);
  dense<double, 2> out({2, 3});
  ppo_clip o;
  o.epsilon_low = 1.5;
  CHECK_THROWS_WITH_AS(o.loss(b.inputs(), out.view()),
                       doctest::Contains("ppo_clip::loss: epsilon_low = 1.5 must be in [0, 1]"), error);
  o = {};
  o.epsilon_high = -0.1;
  CHECK_THROWS_WITH_AS(o.loss(b.inputs(), out.view()), doctest::Contains("epsilon_high = -0.1"), error);
  o = {};
  o.clip_ratio_c = 0.9;
  CHECK_THROWS_WITH_AS(o.loss(b.inputs(), out.view()), doctest::Contains("clip_ratio_c = 0.9"), error);
  o = {};
  o.delta = -1;
  const dense<double, 2> g = ones_like(b);
  CHECK_THROWS_WITH_AS(o.backward(b.inputs(), g.view(), out.view()),
                       doctest::Contains("ppo_clip::backward: delta = -1"), error);
}
