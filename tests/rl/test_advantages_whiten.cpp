// Masked whitening (verl masked_mean / masked_var / masked_whiten).
#include <Eigen/Core>
#include <cmath>
#include <xtensor/xtensor.hpp>

#include "lmrl/rl/advantages/whiten.hpp"
#include "lmrl/tensor.hpp"
#include "lmrl/tensor/eigen.hpp"
#include "lmrl/tensor/xtensor.hpp"
#include "support/testing.hpp"

using namespace lmrl;
using doctest::Approx;

TEST_CASE("masked whitening: a hand-computed case, biased and unbiased, shift_mean") {
  // active values 1, 2, 3, 6 (the 100 and the NaN are masked): mean 3; deviations -2, -1, 0, 3;
  // squares 4 + 1 + 0 + 9 = 14; unbiased var 14 / 3, biased 14 / 4 = 3.5
  dense<double, 2> x({2, 3}), m({2, 3}), out({2, 3});
  const double values[6] = {1, 2, 100, 3, 6, std::nan("")};
  const double mask[6] = {1, 1, 0, 1, 1, 0};
  for (int k = 0; k < 6; ++k) {
    x.data()[k] = values[k];
    m.data()[k] = mask[k];
  }
  CHECK(masked_mean(x, m) == 3.0);
  CHECK(masked_var(x, m) == Approx(14.0 / 3).epsilon(1e-15));
  CHECK(masked_var(x, m, false) == 3.5);
  masked_whiten(x, m, out);
  const double s = std::sqrt(14.0 / 3 + 1e-8);
  CHECK(out(0, 0) == Approx(-2 / s).epsilon(1e-15));
  CHECK(out(0, 1) == Approx(-1 / s).epsilon(1e-15));
  CHECK(out(1, 0) == 0.0);
  CHECK(out(1, 1) == Approx(3 / s).epsilon(1e-15));
  CHECK(out(0, 2) == 0.0);  // masked: 0, however large x is
  CHECK(out(1, 2) == 0.0);  // masked NaN never read
  masked_whiten(x, m, out, true, false);
  CHECK(out(1, 1) == Approx(3 / std::sqrt(3.5 + 1e-8)).epsilon(1e-15));
  masked_whiten(x, m, out, false);  // shift_mean = false: the mean is added back
  CHECK(out(1, 1) == Approx(3 / s + 3).epsilon(1e-15));
  CHECK(out(1, 0) == 3.0);
  // in place (out aliases x) gives the same as out of place
  dense<double, 2> y = x;
  masked_whiten(y, m, y);
  masked_whiten(x, m, out);
  for (index_t i = 0; i < 2; ++i)
    for (index_t t = 0; t < 3; ++t) CHECK(y(i, t) == out(i, t));
}

TEST_CASE("masked whitening: properties — zero mean, unit variance, masked values change nothing") {
  dense<double, 2> x({6, 10});
  testing::fill_uniform(x.view(), 7, -3, 5);
  auto m = testing::random_padding_mask<double>(6, 10, 8, 2);
  auto w = masked_whiten(x, m);
  CHECK(std::abs(masked_mean(w, m)) < 1e-12);
  CHECK(masked_var(w, m) == Approx(1.0).epsilon(1e-7));
  dense<double, 2> x2 = x;
  for (index_t i = 0; i < 6; ++i)
    for (index_t t = 0; t < 10; ++t)
      if (m(i, t) == 0) x2(i, t) = 1e30;
  auto w2 = masked_whiten(x2, m);
  for (index_t i = 0; i < 6; ++i)
    for (index_t t = 0; t < 10; ++t) CHECK(w2(i, t) == w(i, t));
}

TEST_CASE("masked whitening: Eigen and xtensor bit-identical, convenience returns the caller's family") {
  Eigen::MatrixXd ex(4, 5), em(4, 5);
  xt::xtensor<double, 2> xx = xt::zeros<double>({4, 5}), xm = xt::zeros<double>({4, 5});
  auto m = testing::random_padding_mask<double>(4, 5, 3);
  dense<double, 2> base({4, 5});
  testing::fill_uniform(base.view(), 9);
  for (index_t i = 0; i < 4; ++i)
    for (index_t t = 0; t < 5; ++t) {
      ex(i, t) = xx(i, t) = base(i, t);
      em(i, t) = xm(i, t) = m(i, t);
    }
  Eigen::MatrixXd eo = masked_whiten(ex, em);
  xt::xtensor<double, 2> xo = masked_whiten(xx, xm);
  for (index_t i = 0; i < 4; ++i)
    for (index_t t = 0; t < 5; ++t) CHECK(eo(i, t) == xo(i, t));
  Eigen::MatrixXf ef = ex.cast<float>(), emf = em.cast<float>(), eof(4, 5);
  masked_whiten(ef, emf, eof);
  CHECK(eof(0, 0) == Approx(eo(0, 0)).epsilon(1e-5));
}

TEST_CASE("masked whitening: bad input") {
  dense<double, 2> x({2, 2}), m({2, 2}), o({2, 3});
  CHECK_THROWS_WITH_AS(masked_whiten(x, m, o), doctest::Contains("out has shape [2 x 3]"), error);
  CHECK_THROWS_WITH_AS(masked_whiten(x, m), doctest::Contains("at least 2 active tokens"), error);
  CHECK_THROWS_WITH_AS(masked_mean(x, m), doctest::Contains("no active token"), error);
  m(0, 0) = 1;
  CHECK_THROWS_WITH_AS(masked_var(x, m), doctest::Contains("has 1"), error);
  CHECK(masked_var(x, m, false) == 0.0);
  m(1, 1) = 2;
  CHECK_THROWS_WITH_AS(masked_whiten(x, m), doctest::Contains("mask(1, 1) = 2"), error);
  m(1, 1) = 1;
  x(1, 1) = INFINITY;
  CHECK_THROWS_WITH_AS(masked_whiten(x, m), doctest::Contains("x(1, 1) = inf"), error);
}
