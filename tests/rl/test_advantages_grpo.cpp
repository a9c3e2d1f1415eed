// GRPO group-normalized advantages: the three scales, uniform groups, missing
// (NaN) rewards, group_size 1, the struct form, backends and bad input.
#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>
#include <xtensor/xtensor.hpp>

#include "lmrl/rl/advantages/grpo.hpp"
#include "lmrl/tensor.hpp"
#include "lmrl/tensor/eigen.hpp"
#include "lmrl/tensor/xtensor.hpp"
#include "support/testing.hpp"

using namespace lmrl;
using doctest::Approx;

static_assert(AdvantageEstimator<grpo_advantage, float> && AdvantageEstimator<grpo_advantage, double>);

TEST_CASE("grpo: the example of the packaging test, group std, TRL epsilon") {
  const std::vector<double> rewards{1, 0, 0, 1, 1, 1};
  std::vector<double> out(6, -7);
  const auto report = grpo_sequence_advantages(rewards, 3, grpo_scale::group_std, out);
  // group {1,0,0}: mean 1/3; deviations 2/3, -1/3, -1/3; unbiased var (4/9 + 1/9 + 1/9) / 2 = 1/3
  const double s = std::sqrt(1.0 / 3) + 1e-4;
  CHECK(out[0] == Approx((2.0 / 3) / s).epsilon(1e-14));
  CHECK(out[1] == Approx((-1.0 / 3) / s).epsilon(1e-14));
  CHECK(out[2] == out[1]);
  // group {1,1,1} is uniform: exactly zero
  CHECK(out[3] == 0.0);
  CHECK(out[4] == 0.0);
  CHECK(out[5] == 0.0);
  CHECK(report.groups == 2);
  CHECK(report.uniform_groups == 1);
  CHECK(report.missing_scores == 0);
}

TEST_CASE("grpo: hand-computed cases of each scale and std bias") {
  const std::vector<double> r{0, 2, 4};
  std::vector<double> a(3);
  // mean 2; deviations -2, 0, 2; unbiased var (4 + 0 + 4) / 2 = 4, std 2 -> {-1, 0, 1}
  grpo_sequence_advantages(r, 3, grpo_scale::group_std, a, 0.0);
  CHECK(a == std::vector<double>{-1, 0, 1});
  // biased var 8/3, std sqrt(8/3) = 1.632993...
  grpo_sequence_advantages(r, 3, grpo_scale::group_std, a, 0.0, false);
  CHECK(a[2] == Approx(2 / std::sqrt(8.0 / 3)).epsilon(1e-14));
  CHECK(a[2] == Approx(1.2247448713915890).epsilon(1e-12));
  // Dr. GRPO: only centred -> {-2, 0, 2}
  grpo_sequence_advantages(r, 3, grpo_scale::none, a);
  CHECK(a == std::vector<double>{-2, 0, 2});
  // verl epsilon: 2 / (2 + 1e-6)
  grpo_sequence_advantages(r, 3, grpo_scale::group_std, a, 1e-6);
  CHECK(a[2] == Approx(2 / (2 + 1e-6)).epsilon(1e-15));

  // batch std (TRL scale_rewards="batch"): {0,2 | 4,6}, group means 1 and 5 -> centred {-1, 1, -1, 1};
  // batch mean 3, unbiased var (9 + 1 + 1 + 9) / 3 = 20/3 -> A = -+1 / sqrt(20/3) = -+0.3872983...
  const std::vector<double> r4{0, 2, 4, 6};
  std::vector<double> a4(4);
  grpo_sequence_advantages(r4, 2, grpo_scale::batch_std, a4, 0.0);
  CHECK(a4[0] == Approx(-0.3872983346207417).epsilon(1e-12));
  CHECK(a4[1] == Approx(0.3872983346207417).epsilon(1e-12));
  CHECK(a4[3] == a4[1]);
}

TEST_CASE("grpo: uniform groups give exactly zero even when the mean is inexact, flags for dynamic sampling") {
  // 0.1 + 0.1 + 0.1 = 0.30000000000000004, / 3 != 0.1: a naive (r - mean) / (0 + eps) is not zero
  const std::vector<double> r{0.1, 0.1, 0.1, 1, 0, 1, 7, 7, 7};
  std::vector<double> a(9, 5);
  for (auto scale : {grpo_scale::group_std, grpo_scale::batch_std, grpo_scale::none}) {
    const auto report = grpo_sequence_advantages(r, 3, scale, a);
    CHECK(report.uniform_groups == 2);
    for (int i : {0, 1, 2, 6, 7, 8}) CHECK(a[i] == 0.0);
    CHECK(a[3] > 0);
    CHECK(a[4] < 0);
  }
  std::vector<std::uint8_t> flags(3, 9);
  CHECK(uniform_group_flags(r, 3, flags) == 2);
  CHECK(flags == std::vector<std::uint8_t>{1, 0, 1});
  bool bflags[3] = {false, true, false};
  CHECK(uniform_group_flags(r, 3, std::span<bool>(bflags)) == 2);
  CHECK((bflags[0] && !bflags[1] && bflags[2]));
  std::vector<float> wrong(2);
  CHECK_THROWS_WITH_AS(uniform_group_flags(r, 3, wrong), doctest::Contains("flags has extent 2"), error);
}

TEST_CASE("grpo: NaN rewards are missing, as TRL nanmean/nanstd") {
  const double nan = std::nan("");
  // {1, NaN, 3}: mean 2, unbiased var (1 + 1) / 1 = 2 -> {-1/sqrt2, 0, 1/sqrt2}
  // {NaN, 5, NaN}: a single scored reward: no signal, uniform
  const std::vector<double> r{1, nan, 3, nan, 5, nan};
  std::vector<double> a(6, 9);
  const auto report = grpo_sequence_advantages(r, 3, grpo_scale::group_std, a, 0.0);
  CHECK(a[0] == Approx(-1 / std::sqrt(2.0)).epsilon(1e-14));
  CHECK(a[1] == 0.0);
  CHECK(a[2] == Approx(1 / std::sqrt(2.0)).epsilon(1e-14));
  CHECK(a[3] == 0.0);
  CHECK(a[4] == 0.0);
  CHECK(a[5] == 0.0);
  CHECK(report.missing_scores == 3);
  CHECK(report.uniform_groups == 1);
}

TEST_CASE("grpo: group_size 1 follows verl (mean 0, std 1)") {
  const std::vector<double> r{2, -1};
  std::vector<double> a(2);
  const auto report = grpo_sequence_advantages(r, 1, grpo_scale::group_std, a);
  CHECK(a[0] == Approx(2 / 1.0001).epsilon(1e-15));
  CHECK(a[1] == Approx(-1 / 1.0001).epsilon(1e-15));
  CHECK(report.uniform_groups == 0);
  grpo_sequence_advantages(r, 1, grpo_scale::none, a);
  CHECK(a == std::vector<double>{2, -1});
}

TEST_CASE("grpo: properties — zero sum per group, permutation within a group, shift invariance") {
  dense<double, 1> r({24});
  testing::fill_uniform(r.view(), 11, 0, 1);
  std::vector<double> a(24), b(24);
  grpo_sequence_advantages(r.view(), 6, grpo_scale::group_std, vector_view<double>(a.data(), {24}));
  for (int g = 0; g < 4; ++g) {
    double sum = 0;
    for (int i = 0; i < 6; ++i) sum += a[g * 6 + i];
    CHECK(std::abs(sum) < 1e-12);
  }
  // reverse group 1's order: its advantages reverse, the others stay bit-identical
  dense<double, 1> p = r;
  for (int i = 0; i < 6; ++i) p(6 + i) = r(11 - i);
  grpo_sequence_advantages(p.view(), 6, grpo_scale::group_std, vector_view<double>(b.data(), {24}));
  for (int i = 0; i < 6; ++i) CHECK(b[6 + i] == a[11 - i]);
  for (int i : {0, 5, 12, 23}) CHECK(b[i] == a[i]);
  // adding a constant to a group changes nothing (up to rounding)
  for (int i = 0; i < 6; ++i) p(i) = r(i) + 3;
  grpo_sequence_advantages(p.view(), 6, grpo_scale::group_std, vector_view<double>(b.data(), {24}));
  for (int i = 0; i < 6; ++i) CHECK(b[i] == Approx(a[i]).epsilon(1e-9));
}

TEST_CASE("grpo: the struct broadcasts over active tokens, masked positions are 0 and never read") {
  dense<double, 1> scores({4});
  scores(0) = 1;
  scores(1) = 0;
  scores(2) = 3;
  scores(3) = 3;
  auto mask = testing::random_padding_mask<double>(4, 5, 3);
  dense<double, 2> out({4, 5});
  advantage_inputs<double> in{scores.view(), mask.view(), 2};
  const auto report = grpo_advantage{}(in, out.view());
  CHECK(report.uniform_groups == 1);
  // group {1, 0}: mean 1/2, unbiased std sqrt(1/2) -> +-(1/2) / (0.70710678 + 1e-4)
  const double a0 = 0.5 / (std::sqrt(0.5) + 1e-4);
  for (index_t t = 0; t < 5; ++t) {
    CHECK(out(0, t) == (mask(0, t) != 0 ? Approx(a0) : Approx(0.0)));
    CHECK(out(1, t) == (mask(1, t) != 0 ? Approx(-a0) : Approx(0.0)));
    CHECK(out(2, t) == 0.0);
  }
  // float works the same and agrees to float precision
  dense<float, 1> sf({4});
  dense<float, 2> mf({4, 5}), of({4, 5});
  for (index_t i = 0; i < 4; ++i) {
    sf(i) = static_cast<float>(scores(i));
    for (index_t t = 0; t < 5; ++t) mf(i, t) = static_cast<float>(mask(i, t));
  }
  grpo_advantage{}(advantage_inputs<float>{sf.view(), mf.view(), 2}, of.view());
  for (index_t t = 0; t < 5; ++t) CHECK(of(0, t) == Approx(out(0, t)).epsilon(1e-6));
}

TEST_CASE("grpo: Eigen and xtensor give bit-identical results, double and float") {
  const index_t B = 8, T = 7;
  Eigen::VectorXd er(B);
  xt::xtensor<double, 1> xr = xt::zeros<double>({B});
  dense<double, 1> base({B});
  testing::fill_uniform(base.view(), 5, -2, 2);
  for (index_t i = 0; i < B; ++i) er(i) = xr(i) = base(i);
  Eigen::VectorXd ea(B);
  xt::xtensor<double, 1> xa = xt::zeros<double>({B});
  for (auto scale : {grpo_scale::group_std, grpo_scale::batch_std, grpo_scale::none}) {
    grpo_sequence_advantages(er, 4, scale, ea);
    grpo_sequence_advantages(xr, 4, scale, xa);
    for (index_t i = 0; i < B; ++i) CHECK(ea(i) == xa(i));
  }
  auto returned = grpo_sequence_advantages(er, 4);
  static_assert(std::is_same_v<decltype(returned), Eigen::VectorXd>);
  auto xreturned = grpo_sequence_advantages(xr, 4);
  static_assert(std::is_same_v<decltype(xreturned), xt::xtensor<double, 1>>);
  for (index_t i = 0; i < B; ++i) CHECK(returned(i) == xreturned(i));

  // struct form: column-major Eigen, row-major Eigen map, xtensor float
  auto mask = testing::random_padding_mask<double>(B, T, 9);
  Eigen::MatrixXd em(B, T), eo(B, T);
  Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rm_storage(B, T), ro(B, T);
  Eigen::Map<Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> rmask(rm_storage.data(), B, T);
  xt::xtensor<double, 2> xm = xt::zeros<double>({B, T}), xo = xt::zeros<double>({B, T});
  xt::xtensor<float, 2> xmf = xt::zeros<float>({B, T}), xof = xt::zeros<float>({B, T});
  Eigen::MatrixXf emf(B, T), eof(B, T);
  Eigen::VectorXf erf = er.cast<float>();
  xt::xtensor<float, 1> xrf = xt::zeros<float>({B});
  for (index_t i = 0; i < B; ++i) {
    xrf(i) = erf(i);
    for (index_t t = 0; t < T; ++t) em(i, t) = rmask(i, t) = xm(i, t) = emf(i, t) = xmf(i, t) = float(mask(i, t));
  }
  const grpo_advantage est{};
  est(advantage_inputs<double>{view<1>(er), view<2>(em), 4}, view<2>(eo));
  est(advantage_inputs<double>{view<1>(er), view<2>(rmask), 4}, view<2>(ro));
  est(advantage_inputs<double>{view<1>(xr), view<2>(xm), 4}, view<2>(xo));
  est(advantage_inputs<float>{view<1>(erf), view<2>(emf), 4}, view<2>(eof));
  est(advantage_inputs<float>{view<1>(xrf), view<2>(xmf), 4}, view<2>(xof));
  for (index_t i = 0; i < B; ++i)
    for (index_t t = 0; t < T; ++t) {
      CHECK(eo(i, t) == xo(i, t));
      CHECK(ro(i, t) == xo(i, t));
      CHECK(eof(i, t) == xof(i, t));
    }
}

TEST_CASE("grpo: bad input is an lmrl::error naming the argument") {
  std::vector<double> r{1, 0, 1, 0, 1, 0};
  std::vector<double> a(6), short_out(5);
  CHECK_THROWS_WITH_AS(grpo_sequence_advantages(r, 4, grpo_scale::group_std, a),
                       doctest::Contains("do not divide into groups of group_size = 4"), error);
  CHECK_THROWS_WITH_AS(grpo_sequence_advantages(r, 0, grpo_scale::group_std, a),
                       doctest::Contains("group_size = 0"), error);
  CHECK_THROWS_WITH_AS(grpo_sequence_advantages(r, 3, grpo_scale::group_std, short_out),
                       doctest::Contains("out has shape [5]"), error);
  CHECK_THROWS_WITH_AS(grpo_sequence_advantages(r, 3, grpo_scale::group_std, a, -1.0),
                       doctest::Contains("epsilon = -1"), error);
  r[4] = INFINITY;
  CHECK_THROWS_WITH_AS(grpo_sequence_advantages(r, 3, grpo_scale::group_std, a),
                       doctest::Contains("rewards(4) = inf"), error);
  // struct form: mask not 0/1, shapes
  dense<double, 1> s({2});
  dense<double, 2> m({2, 3}), o({2, 3}), o_bad({2, 2});
  m(1, 2) = 0.5;
  CHECK_THROWS_WITH_AS(grpo_advantage{}(advantage_inputs<double>{s.view(), m.view(), 2}, o.view()),
                       doctest::Contains("mask(1, 2) = 0.5"), error);
  m(1, 2) = 1;
  CHECK_THROWS_WITH_AS(grpo_advantage{}(advantage_inputs<double>{s.view(), m.view(), 2}, o_bad.view()),
                       doctest::Contains("out has shape [2 x 2]"), error);
  dense<double, 1> s3({3});
  CHECK_THROWS_WITH_AS(grpo_advantage{}(advantage_inputs<double>{s3.view(), m.view(), 1}, o.view()),
                       doctest::Contains("scores has extent 3"), error);
}
