// Helpers shared by the tests of rl/objectives/: random batches, the
// finite-difference check of backward, the masked-position property and the
// Eigen / xtensor bit-identity check. Every objective runs through all three.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <limits>
#include <xtensor/xtensor.hpp>

#include "lmrl/rl/objectives/common.hpp"
#include "lmrl/tensor/eigen.hpp"
#include "lmrl/tensor/xtensor.hpp"
#include "support/testing.hpp"

namespace objectives_testing {

using namespace lmrl;

struct batch {
  dense<double, 2> logp, old_logp, adv, mask;

  policy_inputs<double> inputs() const {
    policy_inputs<double> in;
    in.logp = logp.view();
    in.old_logp = old_logp.view();
    in.advantages = adv.view();
    in.mask = mask.view();
    return in;
  }
  index_t rows() const { return logp.shape()[0]; }
  index_t cols() const { return logp.shape()[1]; }
};

// logp in [-3, -0.05], log-ratio in [-spread, spread], advantages in
// [-adv_scale, adv_scale] (sequence-constant when per_sequence), right padding.
inline batch random_batch(index_t rows, index_t cols, std::uint64_t seed, double spread = 0.5, double adv_scale = 1.0,
                          bool per_sequence = false) {
  batch b{dense<double, 2>({rows, cols}), dense<double, 2>({rows, cols}), dense<double, 2>({rows, cols}),
          testing::random_padding_mask<double>(rows, cols, seed + 3, 2)};
  testing::fill_uniform(b.logp.view(), seed, -3, -0.05);
  dense<double, 2> lr({rows, cols});
  testing::fill_uniform(lr.view(), seed + 1, -spread, spread);
  testing::fill_uniform(b.adv.view(), seed + 2, -adv_scale, adv_scale);
  for (index_t i = 0; i < rows; ++i)
    for (index_t t = 0; t < cols; ++t) {
      b.old_logp(i, t) = b.logp(i, t) - lr(i, t);
      if (per_sequence) b.adv(i, t) = b.adv(i, 0);
    }
  return b;
}

// A batch from per-token log-ratios r (old_logp = logp - r).
inline batch hand_batch(index_t rows, index_t cols, std::initializer_list<double> logp,
                        std::initializer_list<double> log_ratio, std::initializer_list<double> adv,
                        std::initializer_list<double> mask) {
  batch b{dense<double, 2>({rows, cols}), dense<double, 2>({rows, cols}), dense<double, 2>({rows, cols}),
          dense<double, 2>({rows, cols})};
  auto l = logp.begin();
  auto r = log_ratio.begin();
  auto a = adv.begin();
  auto m = mask.begin();
  for (index_t i = 0; i < rows; ++i)
    for (index_t t = 0; t < cols; ++t) {
      b.logp(i, t) = *l++;
      b.old_logp(i, t) = b.logp(i, t) - *r++;
      b.adv(i, t) = *a++;
      b.mask(i, t) = *m++;
    }
  return b;
}

template <class O>
dense<double, 2> loss_of(const O& o, const batch& b, objective_stats* stats = nullptr) {
  dense<double, 2> l({b.rows(), b.cols()});
  const auto s = o.loss(b.inputs(), l.view());
  if (stats) *stats = s;
  return l;
}

template <class O>
dense<double, 2> backward_of(const O& o, const batch& b, const dense<double, 2>& g) {
  dense<double, 2> d({b.rows(), b.cols()});
  o.backward(b.inputs(), g.view(), d.view());
  return d;
}

inline dense<double, 2> ones_like(const batch& b) {
  dense<double, 2> g({b.rows(), b.cols()});
  for (index_t k = 0; k < g.size(); ++k) g.data()[k] = 1;
  return g;
}

// backward against central finite differences of L = sum g * l, random g.
// With move_old, old_logp moves with logp so that the ratio stays fixed: the
// finite difference then sees a stop-gradient weight of the ratio (CISPO) as
// the constant autograd treats it as.
template <class O>
void check_backward_fd(const O& o, batch b, std::uint64_t seed, bool move_old = false) {
  dense<double, 2> g({b.rows(), b.cols()});
  testing::fill_uniform(g.view(), seed, -1, 1);
  const auto analytic = backward_of(o, b, g);
  const dense<double, 2> base = b.logp;  // check_gradient moves b.logp itself
  auto f = [&](const dense<double, 2>& x) {
    batch moved = b;
    moved.logp = x;
    if (move_old)
      for (index_t k = 0; k < x.size(); ++k) moved.old_logp.data()[k] += x.data()[k] - base.data()[k];
    const auto l = loss_of(o, moved);
    double total = 0;
    for (index_t k = 0; k < l.size(); ++k) total += g.data()[k] * l.data()[k];
    return total;
  };
  testing::check_gradient(f, b.logp, analytic);
}

// Masked positions: loss and gradient 0 there, and changing their inputs
// (even to NaN) changes nothing anywhere.
template <class O>
void check_masked_positions(const O& o, const batch& b, std::uint64_t seed) {
  dense<double, 2> g({b.rows(), b.cols()});
  testing::fill_uniform(g.view(), seed, -1, 1);
  objective_stats s1, s2;
  const auto l1 = loss_of(o, b, &s1);
  const auto d1 = backward_of(o, b, g);
  batch changed = b;
  dense<double, 2> g2 = g;
  index_t masked = 0;
  for (index_t i = 0; i < b.rows(); ++i)
    for (index_t t = 0; t < b.cols(); ++t)
      if (b.mask(i, t) == 0) {
        ++masked;
        CHECK(l1(i, t) == 0.0);
        CHECK(d1(i, t) == 0.0);
        changed.logp(i, t) = std::numeric_limits<double>::quiet_NaN();
        changed.old_logp(i, t) = 7.0;
        changed.adv(i, t) = std::numeric_limits<double>::infinity();
        g2(i, t) = 1e30;
      }
  REQUIRE(masked > 0);
  const auto l2 = loss_of(o, changed, &s2);
  const auto d2 = backward_of(o, changed, g2);
  for (index_t k = 0; k < l1.size(); ++k) {
    CHECK(l1.data()[k] == l2.data()[k]);
    CHECK(d1.data()[k] == d2.data()[k]);
  }
  CHECK(s1.active_tokens == s2.active_tokens);
  CHECK(s1.ratio_mean == s2.ratio_mean);
  CHECK(s1.approx_kl == s2.approx_kl);
  CHECK(s1.clip_fraction == s2.clip_fraction);
}

template <class X>
X copy_to(const dense<double, 2>& d) {
  auto x = make_like<X, typename std::remove_cvref_t<decltype(lmrl::view<2>(std::declval<X&>()))>::value_type, 2>(
      d.shape());
  auto v = lmrl::view<2>(x);
  for (index_t i = 0; i < d.shape()[0]; ++i)
    for (index_t j = 0; j < d.shape()[1]; ++j) v(i, j) = static_cast<typename decltype(v)::value_type>(d(i, j));
  return x;
}

// Runs loss and backward on backend X; returns (loss, dlogp) as dense double.
template <class X, class O>
std::pair<dense<double, 2>, dense<double, 2>> run_on(const O& o, const batch& b, const dense<double, 2>& g) {
  const X logp = copy_to<X>(b.logp), old = copy_to<X>(b.old_logp), adv = copy_to<X>(b.adv),
          mask = copy_to<X>(b.mask), gx = copy_to<X>(g);
  X l = copy_to<X>(dense<double, 2>({b.rows(), b.cols()}));
  X d = l;
  const auto in = policy_inputs_of(logp, old, adv, mask);
  policy_loss(o, in, l);
  policy_backward(o, in, gx, d);
  std::pair<dense<double, 2>, dense<double, 2>> out{dense<double, 2>({b.rows(), b.cols()}),
                                                     dense<double, 2>({b.rows(), b.cols()})};
  const auto lv = lmrl::view<2>(l);
  const auto dv = lmrl::view<2>(d);
  for (index_t i = 0; i < b.rows(); ++i)
    for (index_t j = 0; j < b.cols(); ++j) {
      out.first(i, j) = static_cast<double>(lv(i, j));
      out.second(i, j) = static_cast<double>(dv(i, j));
    }
  return out;
}

inline void check_identical(const std::pair<dense<double, 2>, dense<double, 2>>& a,
                            const std::pair<dense<double, 2>, dense<double, 2>>& b) {
  for (index_t k = 0; k < a.first.size(); ++k) {
    CHECK(a.first.data()[k] == b.first.data()[k]);
    CHECK(a.second.data()[k] == b.second.data()[k]);
  }
}

// Eigen (column-major, row-major) and xtensor give the same bits, in double
// and in float.
template <class O>
void check_backends_identical(const O& o, const batch& b, std::uint64_t seed) {
  dense<double, 2> g({b.rows(), b.cols()});
  testing::fill_uniform(g.view(), seed, -1, 1);
  using RowMajor = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const auto eigen = run_on<Eigen::MatrixXd>(o, b, g);
  check_identical(eigen, run_on<RowMajor>(o, b, g));
  check_identical(eigen, run_on<xt::xtensor<double, 2>>(o, b, g));
  check_identical(eigen, run_on<dense<double, 2>>(o, b, g));
  const auto eigen_f = run_on<Eigen::MatrixXf>(o, b, g);
  check_identical(eigen_f, run_on<xt::xtensor<float, 2>>(o, b, g));
  // float agrees with double to float precision
  for (index_t k = 0; k < eigen.first.size(); ++k) {
    CHECK(eigen_f.first.data()[k] == doctest::Approx(eigen.first.data()[k]).epsilon(1e-4).scale(1));
  }
}

// The errors every objective gives for bad input.
template <class O>
void check_bad_input(const O& o, const char* name) {
  batch b = random_batch(2, 3, 11);
  auto in = b.inputs();
  dense<double, 2> out({2, 3});
  dense<double, 2> small({2, 2});
  const std::string fn = std::string(name) + "::loss";
  CHECK_THROWS_WITH_AS(o.loss(in, small.view()), doctest::Contains((fn + ": per_token_loss has shape [2 x 2]").c_str()),
                       error);
  auto wrong = in;
  wrong.advantages = small.view();
  CHECK_THROWS_WITH_AS(o.loss(wrong, out.view()), doctest::Contains("advantages has shape [2 x 2] but logp has shape [2 x 3]"), error);
  wrong = in;
  wrong.old_logp = small.view();
  CHECK_THROWS_WITH_AS(o.loss(wrong, out.view()), doctest::Contains("old_logp has shape [2 x 2]"), error);
  wrong = in;
  wrong.mask = {};
  CHECK_THROWS_WITH_AS(o.loss(wrong, out.view()), doctest::Contains("mask is not given"), error);
  batch nan = b;
  nan.logp(0, 0) = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH_AS(o.loss(nan.inputs(), out.view()),
                       doctest::Contains((fn + ": logp(0, 0) = inf is not finite at an active position").c_str()), error);
  batch bad_mask = b;
  bad_mask.mask(1, 1) = 0.5;
  CHECK_THROWS_WITH_AS(o.loss(bad_mask.inputs(), out.view()), doctest::Contains("mask(1, 1) = 0.5"), error);
  const dense<double, 2> g = ones_like(b);
  const dense<double, 2> small_g({2, 2});
  CHECK_THROWS_WITH_AS(o.backward(in, small_g.view(), out.view()),
                       doctest::Contains((std::string(name) + "::backward: g has shape [2 x 2]").c_str()), error);
  CHECK_THROWS_WITH_AS(o.backward(in, g.view(), small.view()), doctest::Contains("dlogp has shape [2 x 2]"), error);
}

}  // namespace objectives_testing
