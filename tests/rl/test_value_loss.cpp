// rl/value_loss.hpp: PPO's clipped value loss and explained variance, on
// cases computed by hand (verl's own outputs are in test_reference_trl_verl.cpp).
#include "lmrl/rl/value_loss.hpp"

#include <cmath>
#include <limits>
#include <vector>

#include "lmrl/tensor/dense.hpp"
#include "support/testing.hpp"

using namespace lmrl;

namespace {
dense<double, 2> row(std::vector<double> v) {
  dense<double, 2> m({1, static_cast<index_t>(v.size())});
  for (std::size_t k = 0; k < v.size(); ++k) m.data()[k] = v[k];
  return m;
}
}  // namespace

TEST_CASE("clipped value loss by hand: inside the range, clipped out of it, masked, and without clipping") {
  // token 0: V = 1.1, V_old = 1.0, R = 2.0: inside the range (c = 0.2): l = 0.81, dl = 2 * -0.9
  // token 1: V = 2.0, V_old = 1.0, R = 0.0: V_clip = 1.2, (1.2)^2 = 1.44 < 4: plain term, l = 4, dl = 2 * 2
  // token 2: V = 0.0, V_old = 1.0, R = 2.0: V_clip = 0.8, (0.8 - 2)^2 = 1.44 < 4: plain, l = 4, dl = 2 * -2
  // token 3: V = 1.5, V_old = 1.0, R = 1.6: V_clip = 1.2, (1.2 - 1.6)^2 = 0.16 > 0.01: clipped, l = 0.16, dl = 0
  // token 4: masked
  const auto V = row({1.1, 2.0, 0.0, 1.5, 7.0}), V_old = row({1.0, 1.0, 1.0, 1.0, 0.0}),
             R = row({2.0, 0.0, 2.0, 1.6, 9.0}), m = row({1, 1, 1, 1, 0});
  dense<double, 2> g({1, 5}), w({1, 5});
  const loss_aggregation token_mean("token-mean");
  const auto r = clipped_value_loss<double>(V.view(), V_old.view(), R.view(), m.view(), 0.2, token_mean, {}, g.view(),
                                            w.view());
  CHECK(r.loss == doctest::Approx(0.5 * (0.81 + 4 + 4 + 0.16) / 4).epsilon(1e-14));
  CHECK(r.clip_fraction == doctest::Approx(0.25));
  CHECK(r.active_tokens == 4);
  CHECK(g(0, 0) == doctest::Approx(-0.9 / 4).epsilon(1e-14));
  CHECK(g(0, 1) == doctest::Approx(2.0 / 4).epsilon(1e-14));
  CHECK(g(0, 2) == doctest::Approx(-2.0 / 4).epsilon(1e-14));
  CHECK(g(0, 3) == 0.0);
  CHECK(g(0, 4) == 0.0);
  // No clipping: token 3 is plain, 0.01.
  const auto open = clipped_value_loss<double>(V.view(), V_old.view(), R.view(), m.view(),
                                               std::numeric_limits<double>::infinity(), token_mean, {}, g.view(),
                                               w.view());
  CHECK(open.loss == doctest::Approx(0.5 * (0.81 + 4 + 4 + 0.01) / 4).epsilon(1e-14));
  CHECK(open.clip_fraction == 0.0);
  CHECK(g(0, 3) == doctest::Approx(-0.1 / 4).epsilon(1e-12));
}

TEST_CASE("the value loss gradient matches finite differences away from the clip boundaries") {
  dense<double, 2> V({3, 6}), V_old({3, 6}), R({3, 6}), m({3, 6}), g({3, 6}), w({3, 6});
  testing::fill_uniform(V.view(), 1, -1, 1);
  testing::fill_uniform(V_old.view(), 2, -1, 1);
  testing::fill_uniform(R.view(), 3, -1, 1);
  for (index_t k = 0; k < m.size(); ++k) m.data()[k] = k % 5 == 4 ? 0 : 1;
  const loss_aggregation agg("seq-mean-token-mean");
  const auto loss_at = [&] {
    dense<double, 2> g2({3, 6}), w2({3, 6});
    return clipped_value_loss<double>(V.view(), V_old.view(), R.view(), m.view(), 0.3, agg, {}, g2.view(), w2.view())
        .loss;
  };
  const auto r = clipped_value_loss<double>(V.view(), V_old.view(), R.view(), m.view(), 0.3, agg, {}, g.view(), w.view());
  CHECK(r.clip_fraction > 0);  // both branches are exercised
  CHECK(r.clip_fraction < 1);
  const double h = 1e-6;
  for (index_t k = 0; k < V.size(); ++k) {
    const double saved = V.data()[k];
    V.data()[k] = saved + h;
    const double up = loss_at();
    V.data()[k] = saved - h;
    const double down = loss_at();
    V.data()[k] = saved;
    INFO("element ", k);
    CHECK(g.data()[k] == doctest::Approx((up - down) / (2 * h)).epsilon(1e-6));
  }
}

TEST_CASE("explained variance: 1 for a perfect critic, 0 for the mean, NaN without variance, and bad input") {
  const auto R = row({1, 2, 3, 4, 100}), m = row({1, 1, 1, 1, 0});
  CHECK(explained_variance<double>(R.view(), R.view(), m.view()) == doctest::Approx(1.0));
  const auto mean = row({2.5, 2.5, 2.5, 2.5, 0});
  CHECK(explained_variance<double>(mean.view(), R.view(), m.view()) == doctest::Approx(0.0));
  // V = R - (1, -1, 1, -1): Var(R - V) = 1, Var(R) = 1.25
  const auto off = row({0, 3, 2, 5, 0});
  CHECK(explained_variance<double>(off.view(), R.view(), m.view()) == doctest::Approx(1 - 1 / 1.25));
  const auto flat = row({3, 3, 3, 3, 3});
  CHECK(std::isnan(explained_variance<double>(mean.view(), flat.view(), m.view())));
  dense<double, 2> g({1, 5}), w({1, 5}), short_g({1, 4});
  const loss_aggregation agg("token-mean");
  CHECK_THROWS_WITH_AS(clipped_value_loss<double>(R.view(), R.view(), R.view(), m.view(), 0, agg, {}, g.view(), w.view()),
                       doctest::Contains("cliprange_value = 0 must be positive"), error);
  CHECK_THROWS_WITH_AS(
      clipped_value_loss<double>(R.view(), R.view(), R.view(), m.view(), 0.2, agg, {}, short_g.view(), w.view()),
      doctest::Contains("grad_values"), error);
  auto nan_v = row({1, std::nan(""), 3, 4, 0});
  CHECK_THROWS_WITH_AS(
      clipped_value_loss<double>(nan_v.view(), R.view(), R.view(), m.view(), 0.2, agg, {}, g.view(), w.view()),
      doctest::Contains("values"), error);
}
