// Rollout correction (lmrl/rl/rollout_correction.hpp): hand-computed weights
// for TRL's four modes and verl's TIS / IcePop at token and sequence level,
// statistics, batch normalization, properties, backends and bad input.
#include "lmrl/rl/rollout_correction.hpp"

#include <Eigen/Core>
#include <cmath>
#include <limits>
#include <xtensor/xtensor.hpp>

#include "lmrl/tensor/eigen.hpp"
#include "lmrl/tensor/xtensor.hpp"
#include "support/testing.hpp"

using namespace lmrl;
using doctest::Approx;

namespace {

const double nan_v = std::numeric_limits<double>::quiet_NaN();

// Two sequences, rollout log-probs -2 everywhere, log-ratios d = old - rollout:
//   row 0: d = (ln 2, ln 4, -ln 4), all active  -> token weights (2, 4, 0.25), sequence weight exp(ln 2) = 2
//   row 1: d = (ln 8, -, -), one active token   -> token weight 8, sequence weight 8
// (masked positions hold NaN in old_logp: they must never be read.)
struct batch {
  dense<double, 2> old_logp{{2, 3}}, rollout_logp{{2, 3}}, mask{{2, 3}}, out{{2, 3}};
  batch() {
    const double d[6] = {std::log(2.0), std::log(4.0), -std::log(4.0), std::log(8.0), nan_v, nan_v};
    const double m[6] = {1, 1, 1, 1, 0, 0};
    for (int k = 0; k < 6; ++k) {
      rollout_logp.data()[k] = -2;
      old_logp.data()[k] = -2 + d[k];
      mask.data()[k] = m[k];
    }
  }
  rollout_correction_stats run(const rollout_correction& c) { return c.weights(old_logp, rollout_logp, mask, out); }
  void expect(std::array<double, 4> active) const {
    const double got[4] = {out(0, 0), out(0, 1), out(0, 2), out(1, 0)};
    for (int k = 0; k < 4; ++k) {
      INFO("active token ", k);
      CHECK(got[k] == Approx(active[static_cast<std::size_t>(k)]).epsilon(1e-12));
    }
    CHECK(out(1, 1) == 0.0);
    CHECK(out(1, 2) == 0.0);
  }
};

}  // namespace

TEST_CASE("TRL token_truncate and token_mask, by hand") {
  batch b;
  // token_truncate, C_max 3: (2, min(4, 3), 0.25 | min(8, 3)) = (2, 3, 0.25 | 3); mean 8.25 / 4 = 2.0625
  auto st = b.run(rollout_correction::trl("token_truncate"));
  b.expect({2, 3, 0.25, 3});
  CHECK(st.active_tokens == 4);
  CHECK(st.sequences == 2);
  CHECK(st.weight_mean == Approx(2.0625));
  CHECK(st.weight_min == Approx(0.25));
  CHECK(st.weight_max == Approx(3.0));
  CHECK(st.fraction_high == 0.5);
  CHECK(st.fraction_low == 0.0);
  CHECK(st.fraction_truncated == 0.5);
  CHECK(st.fraction_masked == 0.0);
  // |d| = (1, 2, 2, 3) ln 2: mean 2 ln 2, max 3 ln 2 (TRL sampling_logp_difference).
  CHECK(st.logp_diff_mean == Approx(2 * std::log(2.0)));
  CHECK(st.logp_diff_max == Approx(3 * std::log(2.0)));
  // token_mask, C_max 3: 4 and 8 become 0: (2, 0, 0.25 | 0); mean 2.25 / 4 = 0.5625
  st = b.run(rollout_correction::trl("token_mask"));
  b.expect({2, 0, 0.25, 0});
  CHECK(st.weight_mean == Approx(0.5625));
  CHECK(st.fraction_masked == 0.5);
  CHECK(st.fraction_truncated == 0.0);
  CHECK(st.weight_min == 0.0);
  // With C_min = 0.5: truncate raises 0.25 to 0.5, mask zeroes it.
  st = b.run(rollout_correction::trl("token_truncate", 3.0, 0.5));
  b.expect({2, 3, 0.5, 3});
  CHECK(st.fraction_low == 0.25);
  CHECK(st.fraction_truncated == 0.75);
  st = b.run(rollout_correction::trl("token_mask", 3.0, 0.5));
  b.expect({2, 0, 0, 0});
  CHECK(st.fraction_masked == 0.75);
  CHECK(st.weight_mean == Approx(0.5));
  // No upper bound (TRL clip_max = None): only the lower one acts.
  st = b.run(rollout_correction::trl("token_mask", std::numeric_limits<double>::infinity(), 0.5));
  b.expect({2, 4, 0, 8});
}

TEST_CASE("TRL sequence_truncate and sequence_mask, by hand") {
  batch b;
  // Sequence weights: row 0 exp(ln 2 + ln 4 - ln 4) = 2, row 1 exp(ln 8) = 8.
  // sequence_truncate, C_max 3: (2, 2, 2 | 3); token mean 9 / 4 = 2.25; sequence mean (2 + 3) / 2 = 2.5
  auto st = b.run(rollout_correction::trl("sequence_truncate"));
  b.expect({2, 2, 2, 3});
  CHECK(st.weight_mean == Approx(2.25));
  CHECK(st.sequence_weight_mean == Approx(2.5));
  CHECK(st.fraction_high == 0.25);  // the one token of row 1
  CHECK(st.fraction_truncated == 0.25);
  // sequence_mask (TRL's default mode): row 1 is dropped: (2, 2, 2 | 0); token mean 1.5, sequence mean 1
  const rollout_correction defaults;
  CHECK(defaults.level == rollout_is_level::sequence);
  CHECK(defaults.mode == rollout_is_mode::mask);
  CHECK(defaults.clip_max == 3.0);
  st = b.run(defaults);
  b.expect({2, 2, 2, 0});
  CHECK(st.weight_mean == Approx(1.5));
  CHECK(st.sequence_weight_mean == Approx(1.0));
  CHECK(st.fraction_masked == 0.25);
  // C_min 2.5 masks row 0 too.
  b.run(rollout_correction::trl("sequence_mask", 10.0, 2.5));
  b.expect({0, 0, 0, 8});
}

TEST_CASE("verl TIS (upper threshold) and IcePop (lower_upper), token and sequence, by hand") {
  batch b;
  // TIS token "2.5": clamp from above only: (2, 2.5, 0.25 | 2.5)
  auto st = b.run(rollout_correction::verl("token", "2.5"));
  b.expect({2, 2.5, 0.25, 2.5});
  CHECK(st.fraction_truncated == 0.5);
  CHECK(st.fraction_low == 0.0);  // TIS has no lower bound
  // IcePop token "0.5_5": 0 outside [0.5, 5]: (2, 4, 0 | 0)
  st = b.run(rollout_correction::verl("token", "0.5_5"));
  b.expect({2, 4, 0, 0});
  CHECK(st.fraction_high == 0.25);
  CHECK(st.fraction_low == 0.25);
  CHECK(st.fraction_masked == 0.5);
  // TIS sequence "2.5": (2, 2, 2 | 2.5); IcePop sequence "0.5_5": (2, 2, 2 | 0)
  b.run(rollout_correction::verl("sequence", "2.5"));
  b.expect({2, 2, 2, 2.5});
  b.run(rollout_correction::verl("sequence", "0.5_5"));
  b.expect({2, 2, 2, 0});
  // verl's default: sequence level, TIS at 2.0.
  const auto v = rollout_correction::verl();
  CHECK(v.level == rollout_is_level::sequence);
  CHECK(v.mode == rollout_is_mode::truncate);
  CHECK(v.clip_max == 2.0);
  CHECK(v.log_ratio_bound == 20.0);
}

TEST_CASE("verl batch normalization divides by the mean weight (token: over tokens, sequence: over sequences)") {
  batch b;
  // Token "10": raw (2, 4, 0.25 | 8) within bounds; mean 14.25 / 4 = 3.5625.
  auto st = b.run(rollout_correction::verl("token", "10", true));
  CHECK(st.batch_norm_factor == Approx(3.5625));
  CHECK(st.weight_mean == Approx(3.5625));  // statistics are before normalization (verl)
  b.expect({2 / 3.5625, 4 / 3.5625, 0.25 / 3.5625, 8 / 3.5625});
  // Sequence "10": sequence weights (2, 8), mean over sequences 5: (0.4, 0.4, 0.4 | 1.6)
  st = b.run(rollout_correction::verl("sequence", "10", true));
  CHECK(st.batch_norm_factor == Approx(5.0));
  b.expect({0.4, 0.4, 0.4, 1.6});
}

TEST_CASE("safety bound, missing rollout log-probs, permutations, masked inputs") {
  // A log-ratio of 30: verl clamps it to 20 before exp, TRL does not.
  dense<double, 2> old_logp({1, 2}), rollout({1, 2}), mask({1, 2}), out({1, 2});
  old_logp(0, 0) = -1, rollout(0, 0) = -31, mask(0, 0) = 1;
  old_logp(0, 1) = -1, rollout(0, 1) = nan_v, mask(0, 1) = 1;  // NaN: the engine gave none -> ratio 1 (TRL)
  rollout_correction c{.level = rollout_is_level::token, .mode = rollout_is_mode::truncate, .clip_max = 1e300};
  c.weights(old_logp, rollout, mask, out);
  CHECK(out(0, 0) == Approx(std::exp(30.0)).epsilon(1e-12));
  CHECK(out(0, 1) == 1.0);
  c.log_ratio_bound = 20;
  c.weights(old_logp, rollout, mask, out);
  CHECK(out(0, 0) == Approx(std::exp(20.0)).epsilon(1e-12));

  // Permuting the tokens of a sequence permutes token-level weights and
  // leaves sequence-level weights unchanged (up to the order of the sum).
  dense<double, 2> o({3, 5}), r({3, 5}), o2({3, 5}), r2({3, 5}), w({3, 5}), w2({3, 5});
  testing::fill_uniform(o.view(), 101, -3, -0.1);
  testing::fill_uniform(r.view(), 102, -3, -0.1);
  dense<double, 2> ones({3, 5});
  for (index_t k = 0; k < 15; ++k) ones.data()[k] = 1;
  const index_t perm[5] = {3, 0, 4, 1, 2};
  for (index_t i = 0; i < 3; ++i)
    for (index_t t = 0; t < 5; ++t) o2(i, t) = o(i, perm[t]), r2(i, t) = r(i, perm[t]);
  const auto tok = rollout_correction::trl("token_truncate", 1.5);
  tok.weights(o, r, ones, w);
  tok.weights(o2, r2, ones, w2);
  for (index_t i = 0; i < 3; ++i)
    for (index_t t = 0; t < 5; ++t) CHECK(w2(i, t) == w(i, perm[t]));
  const auto seq = rollout_correction::trl("sequence_truncate", 1e9);
  seq.weights(o, r, ones, w);
  seq.weights(o2, r2, ones, w2);
  for (index_t i = 0; i < 3; ++i)
    for (index_t t = 0; t < 5; ++t) {
      CHECK(w2(i, t) == Approx(w(i, 0)).epsilon(1e-13));
      CHECK(w(i, t) == w(i, 0));
    }
  // Changing an input at a masked position changes nothing.
  auto m = testing::random_padding_mask<double>(3, 5, 103, 2);
  seq.weights(o, r, m, w);
  for (index_t i = 0; i < 3; ++i)
    for (index_t t = 0; t < 5; ++t)
      if (m(i, t) == 0) {
        o(i, t) = nan_v;
        r(i, t) = 50;
      }
  seq.weights(o, r, m, w2);
  for (index_t k = 0; k < 15; ++k) CHECK(w.data()[k] == w2.data()[k]);
}

TEST_CASE("Eigen and xtensor give bit-identical weights and statistics (double and float)") {
  const index_t B = 4, T = 7;
  dense<double, 2> o({B, T}), r({B, T});
  testing::fill_uniform(o.view(), 111, -3, -0.1);
  testing::fill_uniform(r.view(), 112, -3, -0.1);
  const auto m = testing::random_padding_mask<double>(B, T, 113);
  Eigen::MatrixXd eo(B, T), er(B, T), em(B, T), ew(B, T);
  Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> ro(B, T), rr(B, T), rm(B, T), rw(B, T);
  xt::xtensor<double, 2> xo({std::size_t(B), std::size_t(T)}), xr(xo.shape()), xm(xo.shape()), xw(xo.shape());
  xt::xtensor<float, 2> fo(xo.shape()), fr(xo.shape()), fm(xo.shape()), fw(xo.shape());
  Eigen::MatrixXf efo(B, T), efr(B, T), efm(B, T), efw(B, T);
  for (index_t i = 0; i < B; ++i)
    for (index_t t = 0; t < T; ++t) {
      eo(i, t) = ro(i, t) = xo(i, t) = o(i, t);
      er(i, t) = rr(i, t) = xr(i, t) = r(i, t);
      em(i, t) = rm(i, t) = xm(i, t) = m(i, t);
      efo(i, t) = fo(i, t) = static_cast<float>(o(i, t));
      efr(i, t) = fr(i, t) = static_cast<float>(r(i, t));
      efm(i, t) = fm(i, t) = static_cast<float>(m(i, t));
    }
  for (const auto& c : {rollout_correction::trl("token_truncate", 1.2), rollout_correction::trl("sequence_mask", 2.0),
                        rollout_correction::verl("token", "0.8_1.5", true)}) {
    const auto a = c.weights(eo, er, em, ew);
    const auto b = c.weights(ro, rr, rm, rw);
    const auto x = c.weights(xo, xr, xm, xw);
    auto [returned, rs] = c.weights(xo, xr, xm);
    static_assert(std::is_same_v<decltype(returned), xt::xtensor<double, 2>>);
    c.weights(fo, fr, fm, fw);
    c.weights(efo, efr, efm, efw);
    CHECK(a.weight_mean == b.weight_mean);
    CHECK(a.weight_mean == x.weight_mean);
    CHECK(a.weight_mean == rs.weight_mean);
    CHECK(a.fraction_high == x.fraction_high);
    CHECK(a.weight_max == x.weight_max);
    for (index_t i = 0; i < B; ++i)
      for (index_t t = 0; t < T; ++t) {
        CHECK(ew(i, t) == rw(i, t));
        CHECK(ew(i, t) == xw(i, t));
        CHECK(ew(i, t) == returned(i, t));
        CHECK(fw(i, t) == efw(i, t));
      }
  }
}

TEST_CASE("bad input: modes, thresholds, shapes, non-finite log-probs, masks") {
  CHECK_THROWS_WITH_AS(rollout_correction::trl("token_clip"),
                       doctest::Contains("unknown vllm_importance_sampling_mode 'token_clip'"), error);
  CHECK_THROWS_WITH_AS(rollout_correction::trl("token_mask", 0.0), doctest::Contains("clip_max = 0 must be positive"),
                       error);
  CHECK_THROWS_WITH_AS(rollout_correction::trl("token_mask", 2.0, 3.0),
                       doctest::Contains("clip_min = 3 exceeds clip_max = 2"), error);
  CHECK_THROWS_WITH_AS(rollout_correction::verl("geometric"), doctest::Contains("unknown rollout_is 'geometric'"), error);
  CHECK_THROWS_WITH_AS(rollout_correction::verl("token", "abc"), doctest::Contains("invalid rollout_is_threshold 'abc'"),
                       error);
  CHECK_THROWS_WITH_AS(rollout_correction::verl("token", "0_2"), doctest::Contains("lower bound 0 must be positive"),
                       error);
  CHECK_THROWS_WITH_AS(rollout_correction::verl("token", "3_2"), doctest::Contains("clip_min = 3 exceeds clip_max = 2"),
                       error);
  CHECK_THROWS_AS(rollout_correction::verl("token", "-1"), error);

  batch b;
  dense<double, 2> wrong({3, 2});
  const auto c = rollout_correction::trl("token_mask");
  CHECK_THROWS_WITH_AS(c.weights(b.old_logp, wrong, b.mask, b.out),
                       doctest::Contains("rollout_logp has shape [3 x 2] but old_logp has shape [2 x 3]"), error);
  CHECK_THROWS_WITH_AS(c.weights(b.old_logp, b.rollout_logp, b.mask, wrong), doctest::Contains("out has shape [3 x 2]"),
                       error);
  b.old_logp(0, 1) = nan_v;
  CHECK_THROWS_WITH_AS(c.weights(b.old_logp, b.rollout_logp, b.mask, b.out),
                       doctest::Contains("old_logp(0, 1) = nan is not finite"), error);
  b.old_logp(0, 1) = -1;
  b.rollout_logp(1, 0) = -std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH_AS(c.weights(b.old_logp, b.rollout_logp, b.mask, b.out),
                       doctest::Contains("rollout_logp(1, 0) = -inf is infinite"), error);
  b.rollout_logp(1, 0) = -1;
  b.mask(0, 0) = 2;
  CHECK_THROWS_WITH_AS(c.weights(b.old_logp, b.rollout_logp, b.mask, b.out), doctest::Contains("mask(0, 0) = 2"),
                       error);
  rollout_correction hand{};
  hand.log_ratio_bound = 0;
  CHECK_THROWS_WITH_AS(hand.validate(), doctest::Contains("log_ratio_bound = 0 must be positive"), error);
}
