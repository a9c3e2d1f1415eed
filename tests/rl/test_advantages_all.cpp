// The umbrella header lmrl/rl/advantages.hpp: every estimator struct is an
// AdvantageEstimator, and every one gives bit-identical results on Eigen
// (column-major, row-major map) and xtensor inputs, in double and in float.
#include <Eigen/Core>
#include <cmath>
#include <xtensor/xtensor.hpp>

#include "lmrl/rl/advantages.hpp"
#include "lmrl/tensor.hpp"
#include "lmrl/tensor/eigen.hpp"
#include "lmrl/tensor/xtensor.hpp"
#include "support/testing.hpp"

using namespace lmrl;

#define LMRL_BOTH(E) static_assert(AdvantageEstimator<E, float> && AdvantageEstimator<E, double>)
LMRL_BOTH(grpo_advantage);
LMRL_BOTH(rloo_advantage);
LMRL_BOTH(opo_advantage);
LMRL_BOTH(gpg_advantage);
LMRL_BOTH(passk_advantage);
LMRL_BOTH(reinforce_pp_advantage);
LMRL_BOTH(reinforce_pp_baseline_advantage);
LMRL_BOTH(remax_advantage);
LMRL_BOTH(gae_advantage);
LMRL_BOTH(gdpo_advantage);
#undef LMRL_BOTH
static_assert(!AdvantageEstimator<int, double>);

namespace {

constexpr index_t B = 8, T = 9, K = 3, G = 4;

using row_major = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using row_major_f = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// One batch in every backend: scores (one NaN), mask, token rewards, values,
// greedy baselines, reward components.
template <class M, class V>
struct batch_in {
  V scores, baseline;
  M mask, token_rewards, values, components, out;
};

template <class M, class V>
void fill(batch_in<M, V>& b, const dense<double, 2>& mask, const dense<double, 2>& tr, const dense<double, 2>& val,
          const dense<double, 2>& comp, const dense<double, 1>& sc) {
  for (index_t i = 0; i < B; ++i) {
    b.scores(i) = static_cast<typename V::value_type>(sc(i));
    b.baseline(i) = static_cast<typename V::value_type>(sc(i) / 2);
    for (index_t t = 0; t < T; ++t) {
      b.mask(i, t) = static_cast<typename M::value_type>(mask(i, t));
      b.token_rewards(i, t) = static_cast<typename M::value_type>(tr(i, t));
      b.values(i, t) = static_cast<typename M::value_type>(val(i, t));
    }
    for (index_t k = 0; k < K; ++k) b.components(i, k) = static_cast<typename M::value_type>(comp(i, k));
  }
}

template <class E, class R, class M, class V>
void run(const E& est, batch_in<M, V>& b, bool with_token_rewards) {
  using X = element_t<M, 2>;
  advantage_inputs<X> in{view<1>(b.scores), view<2>(b.mask), G};
  if (with_token_rewards) in.token_rewards = view<2>(b.token_rewards);
  in.values = view<2>(b.values);
  in.baseline_scores = view<1>(b.baseline);
  in.reward_components = view<2>(b.components);
  est(in, matrix_view<X>(view<2>(b.out)));
}

template <class E>
void check_backends(const E& est, bool with_token_rewards) {
  auto mask = testing::random_padding_mask<double>(B, T, 21, 2);
  dense<double, 2> tr({B, T}), val({B, T}), comp({B, K});
  dense<double, 1> sc({B});
  testing::fill_uniform(tr.view(), 1);
  testing::fill_uniform(val.view(), 2);
  testing::fill_uniform(comp.view(), 3, 0, 2);
  testing::fill_uniform(sc.view(), 4, 0, 3);
  sc(5) = std::nan("");  // a missing score

  batch_in<Eigen::MatrixXd, Eigen::VectorXd> e{Eigen::VectorXd(B), Eigen::VectorXd(B), Eigen::MatrixXd(B, T),
                                               Eigen::MatrixXd(B, T), Eigen::MatrixXd(B, T), Eigen::MatrixXd(B, K),
                                               Eigen::MatrixXd(B, T)};
  batch_in<row_major, Eigen::VectorXd> r{Eigen::VectorXd(B), Eigen::VectorXd(B), row_major(B, T), row_major(B, T),
                                         row_major(B, T), row_major(B, K), row_major(B, T)};
  using xm = xt::xtensor<double, 2>;
  using xv = xt::xtensor<double, 1>;
  batch_in<xm, xv> x{xv::from_shape({B}), xv::from_shape({B}), xm::from_shape({B, T}), xm::from_shape({B, T}),
                     xm::from_shape({B, T}), xm::from_shape({B, K}), xm::from_shape({B, T})};
  batch_in<Eigen::MatrixXf, Eigen::VectorXf> ef{Eigen::VectorXf(B), Eigen::VectorXf(B), Eigen::MatrixXf(B, T),
                                                Eigen::MatrixXf(B, T), Eigen::MatrixXf(B, T), Eigen::MatrixXf(B, K),
                                                Eigen::MatrixXf(B, T)};
  using xmf = xt::xtensor<float, 2>;
  using xvf = xt::xtensor<float, 1>;
  batch_in<xmf, xvf> xf{xvf::from_shape({B}), xvf::from_shape({B}), xmf::from_shape({B, T}), xmf::from_shape({B, T}),
                        xmf::from_shape({B, T}), xmf::from_shape({B, K}), xmf::from_shape({B, T})};
  fill(e, mask, tr, val, comp, sc);
  fill(r, mask, tr, val, comp, sc);
  fill(x, mask, tr, val, comp, sc);
  fill(ef, mask, tr, val, comp, sc);
  fill(xf, mask, tr, val, comp, sc);
  run<E, void>(est, e, with_token_rewards);
  run<E, void>(est, r, with_token_rewards);
  run<E, void>(est, x, with_token_rewards);
  run<E, void>(est, ef, with_token_rewards);
  run<E, void>(est, xf, with_token_rewards);
  bool any_nonzero = false;
  for (index_t i = 0; i < B; ++i)
    for (index_t t = 0; t < T; ++t) {
      CHECK(e.out(i, t) == x.out(i, t));
      CHECK(r.out(i, t) == x.out(i, t));
      CHECK(ef.out(i, t) == xf.out(i, t));
      CHECK(std::abs(ef.out(i, t) - e.out(i, t)) <= 1e-4 * (1 + std::abs(e.out(i, t))));
      if (mask(i, t) == 0) CHECK(e.out(i, t) == 0.0);
      any_nonzero = any_nonzero || e.out(i, t) != 0;
    }
  CHECK(any_nonzero);
}

}  // namespace

TEST_CASE("every estimator: Eigen (both orders) and xtensor are bit-identical, float agrees with double") {
  SUBCASE("grpo") { check_backends(grpo_advantage{}, false); }
  SUBCASE("grpo batch std") { check_backends(grpo_advantage{grpo_scale::batch_std}, false); }
  SUBCASE("rloo") { check_backends(rloo_advantage{}, false); }
  SUBCASE("opo") { check_backends(opo_advantage{}, false); }
  SUBCASE("gpg") { check_backends(gpg_advantage{}, false); }
  SUBCASE("passk") { check_backends(passk_advantage{}, false); }
  SUBCASE("reinforce++ scores") { check_backends(reinforce_pp_advantage{0.9}, false); }
  SUBCASE("reinforce++ token rewards") { check_backends(reinforce_pp_advantage{0.9}, true); }
  SUBCASE("reinforce++ baseline") { check_backends(reinforce_pp_baseline_advantage{}, false); }
  SUBCASE("remax scores") { check_backends(remax_advantage{}, false); }
  SUBCASE("remax token rewards") { check_backends(remax_advantage{}, true); }
  SUBCASE("gae scores") { check_backends(gae_advantage{0.99, 0.95}, false); }
  SUBCASE("gae token rewards") { check_backends(gae_advantage{0.99, 0.95}, true); }
  SUBCASE("gdpo trl") { check_backends(gdpo_advantage{{1.0, 0.5, 2.0}}, false); }
  SUBCASE("gdpo verl") { check_backends(gdpo_advantage{{}, 1e-6, gdpo_batch_norm::token}, false); }
}
