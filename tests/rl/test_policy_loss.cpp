// The composed policy loss: objective + beta KL - entropy_coeff H, aggregated.
// Local test objectives (REINFORCE, PPO-clip) and a local k3 estimator stand in
// for rl/objectives/ and rl/kl.hpp, written against the concepts only.
#include "lmrl/rl/policy_loss.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>
#include <xtensor/xtensor.hpp>

#include "lmrl/tensor/eigen.hpp"
#include "lmrl/tensor/xtensor.hpp"
#include "support/testing.hpp"

using namespace lmrl;

namespace {

// l = -A logp; dl/dlogp = -A.
struct reinforce {
  template <Real T>
  objective_stats loss(const policy_inputs<T>& in, matrix_view<T> out) const {
    objective_stats s;
    for (index_t i = 0; i < in.mask.shape[0]; ++i)
      for (index_t t = 0; t < in.mask.shape[1]; ++t) {
        const bool on = in.mask(i, t) != T(0);
        out(i, t) = on ? -in.advantages(i, t) * in.logp(i, t) : T(0);
        s.active_tokens += on;
      }
    return s;
  }
  template <Real T>
  void backward(const policy_inputs<T>& in, matrix_view<const T> g, matrix_view<T> out) const {
    for (index_t i = 0; i < in.mask.shape[0]; ++i)
      for (index_t t = 0; t < in.mask.shape[1]; ++t)
        out(i, t) = in.mask(i, t) != T(0) ? -in.advantages(i, t) * g(i, t) : T(0);
  }
};

// l = -min(r A, clip(r, 1 - eps, 1 + eps) A), r = exp(logp - old_logp).
struct ppo_clip {
  double epsilon = 0.2;
  template <Real T>
  objective_stats loss(const policy_inputs<T>& in, matrix_view<T> out) const {
    objective_stats s;
    for (index_t i = 0; i < in.mask.shape[0]; ++i)
      for (index_t t = 0; t < in.mask.shape[1]; ++t) {
        if (in.mask(i, t) == T(0)) {
          out(i, t) = T(0);
          continue;
        }
        const T r = std::exp(in.logp(i, t) - in.old_logp(i, t)), a = in.advantages(i, t);
        const T c = std::clamp(r, T(1 - epsilon), T(1 + epsilon));
        out(i, t) = -std::min(r * a, c * a);
        ++s.active_tokens;
        s.clip_fraction += (r * a > c * a);
      }
    if (s.active_tokens) s.clip_fraction /= static_cast<double>(s.active_tokens);
    return s;
  }
  template <Real T>
  void backward(const policy_inputs<T>& in, matrix_view<const T> g, matrix_view<T> out) const {
    for (index_t i = 0; i < in.mask.shape[0]; ++i)
      for (index_t t = 0; t < in.mask.shape[1]; ++t) {
        if (in.mask(i, t) == T(0)) {
          out(i, t) = T(0);
          continue;
        }
        const T r = std::exp(in.logp(i, t) - in.old_logp(i, t)), a = in.advantages(i, t);
        const T c = std::clamp(r, T(1 - epsilon), T(1 + epsilon));
        out(i, t) = r * a <= c * a ? -a * r * g(i, t) : T(0);  // the unclipped branch is the min
      }
  }
};

// k3 = exp(ref - logp) - (ref - logp) - 1; dk3/dlogp = 1 - exp(ref - logp).
struct k3 {
  template <Real T>
  T value(T logp, T ref) const {
    return std::exp(ref - logp) - (ref - logp) - T(1);
  }
  template <Real T>
  T gradient(T logp, T ref) const {
    return T(1) - std::exp(ref - logp);
  }
};

static_assert(PolicyObjective<reinforce, double> && PolicyObjective<ppo_clip, float>);
static_assert(KLEstimator<k3, double>);

const double nan_value = std::numeric_limits<double>::quiet_NaN();

// Random inputs of a [B x T] micro-batch, masked positions filled with NaN.
struct batch {
  dense<double, 2> logp, old_logp, adv, mask, entropy, ref;
  batch(index_t B, index_t T, std::uint64_t seed)
      : logp({B, T}), old_logp({B, T}), adv({B, T}), mask(testing::random_padding_mask<double>(B, T, seed, 1)),
        entropy({B, T}), ref({B, T}) {
    testing::fill_uniform(logp.view(), seed + 1, -3, -0.1);
    testing::fill_uniform(old_logp.view(), seed + 2, -0.15, 0.15);  // a log-ratio offset for now
    testing::fill_uniform(adv.view(), seed + 3, -2, 2);
    testing::fill_uniform(entropy.view(), seed + 4, 0, 3);
    testing::fill_uniform(ref.view(), seed + 5, -0.5, 0.5);
    for (index_t i = 0; i < B; ++i)
      for (index_t t = 0; t < T; ++t) {
        old_logp(i, t) += logp(i, t);
        ref(i, t) += logp(i, t);
        if (mask(i, t) == 0) logp(i, t) = old_logp(i, t) = adv(i, t) = entropy(i, t) = ref(i, t) = nan_value;
      }
  }
  policy_inputs<double> inputs(index_t first, index_t count) const {
    policy_inputs<double> in;
    in.logp = logp.view().rows(first, count);
    in.old_logp = old_logp.view().rows(first, count);
    in.advantages = adv.view().rows(first, count);
    in.mask = mask.view().rows(first, count);
    in.entropy = entropy.view().rows(first, count);
    return in;
  }
};

}  // namespace

TEST_CASE("policy_loss: REINFORCE + k3 + entropy bonus, token-mean, computed by hand") {
  // mask 1 1 / 1 0; logp (-1, -2 / -0.5, .); A (1, 1 / -2, .); H (1, 0.5 / 2, .);
  // ref = logp except ref(0, 1) = -2 + ln 2, so k3 = 0 except k3(0, 1) = 2 - ln 2 - 1 = 1 - ln 2
  // and dk3/dlogp(0, 1) = 1 - 2 = -1. beta = 0.5, entropy_coeff = 0.1, w = 1/3.
  // objective -A logp: 1, 2, -1 -> policy_loss = 2/3
  // l = objective + 0.5 k3 - 0.1 H: 0.9, 2.45 - 0.5 ln 2, -1.2 -> L = (2.15 - 0.5 ln 2) / 3
  dense<double, 2> logp({2, 2}), adv({2, 2}), mask({2, 2}), ent({2, 2}), ref({2, 2});
  logp(0, 0) = -1, logp(0, 1) = -2, logp(1, 0) = -0.5, logp(1, 1) = nan_value;
  adv(0, 0) = 1, adv(0, 1) = 1, adv(1, 0) = -2, adv(1, 1) = nan_value;
  mask(0, 0) = mask(0, 1) = mask(1, 0) = 1;
  ent(0, 0) = 1, ent(0, 1) = 0.5, ent(1, 0) = 2, ent(1, 1) = nan_value;
  ref(0, 0) = -1, ref(0, 1) = -2 + std::log(2.0), ref(1, 0) = -0.5, ref(1, 1) = nan_value;
  policy_inputs<double> in{logp.view(), logp.view(), adv.view(), mask.view(), ent.view()};
  composed_policy_loss<reinforce, k3> pl{.beta = 0.5, .entropy_coeff = 0.1};
  dense<double, 2> g({2, 2}), ge({2, 2}), per_token({2, 2}), w({2, 2});
  const auto r = pl(in, matrix_view<const double>(ref.view()), {}, g.view(), ge.view(),
                    composed_loss_scratch<double>{per_token.view(), w.view()});
  const double ln2 = std::log(2.0);
  CHECK(r.loss == doctest::Approx((2.15 - 0.5 * ln2) / 3));
  CHECK(r.policy_loss == doctest::Approx(2.0 / 3));
  CHECK(r.kl_loss == doctest::Approx((1 - ln2) / 3));
  CHECK(r.entropy_loss == doctest::Approx(3.5 / 3));
  CHECK(r.mean_kl == doctest::Approx((1 - ln2) / 3));
  CHECK(r.mean_entropy == doctest::Approx(3.5 / 3));
  CHECK(r.stats.active_tokens == 3);
  // dL/dlogp = -A w + beta w dk3: -1/3, -1/3 + 0.5 (1/3)(-1) = -1/2, 2/3, 0.
  CHECK(g(0, 0) == doctest::Approx(-1.0 / 3));
  CHECK(g(0, 1) == doctest::Approx(-0.5));
  CHECK(g(1, 0) == doctest::Approx(2.0 / 3));
  CHECK(g(1, 1) == 0.0);
  // dL/dH = -0.1 w.
  CHECK(ge(0, 0) == doctest::Approx(-0.1 / 3));
  CHECK(ge(1, 0) == doctest::Approx(-0.1 / 3));
  CHECK(ge(1, 1) == 0.0);
  // The scratch holds the composed per-token loss and the weights.
  CHECK(per_token(0, 0) == doctest::Approx(0.9));
  CHECK(per_token(0, 1) == doctest::Approx(2.45 - 0.5 * ln2));
  CHECK(per_token(1, 0) == doctest::Approx(-1.2));
  CHECK(per_token(1, 1) == 0.0);
  CHECK(w(1, 0) == doctest::Approx(1.0 / 3));
  CHECK(w(1, 1) == 0.0);
}

TEST_CASE("policy_loss: gradients match finite differences for every aggregation (PPO-clip + k3 + entropy)") {
  const index_t B = 4, T = 5;
  batch b(B, T, 31);
  const batch_totals step{6, 25};
  for (const char* name : {"token-mean", "grpo", "dr_grpo", "luspo", "dapo", "seq-mean-token-mean"}) {
    INFO("mode ", name);
    composed_policy_loss<ppo_clip, k3, loss_aggregation> pl{ppo_clip{0.2}, k3{}, loss_aggregation(name, 8), 0.04, 0.01};
    auto loss_at = [&](const dense<double, 2>& logp, const dense<double, 2>& entropy) {
      policy_inputs<double> in = b.inputs(0, B);
      in.logp = logp.view();
      in.entropy = entropy.view();
      dense<double, 2> g({B, T}), ge({B, T});
      return pl(in, matrix_view<const double>(b.ref.view()), step, g, ge).loss;
    };
    dense<double, 2> g({B, T}), ge({B, T});
    pl(b.inputs(0, B), matrix_view<const double>(b.ref.view()), step, g, ge);
    // Finite differences only at active positions (masked ones hold NaN and have gradient 0).
    dense<double, 2> logp = b.logp, entropy = b.entropy;
    for (index_t i = 0; i < B; ++i)
      for (index_t t = 0; t < T; ++t)
        if (b.mask(i, t) == 0) {
          CHECK(g(i, t) == 0.0);
          CHECK(ge(i, t) == 0.0);
          logp(i, t) = entropy(i, t) = 0;  // any finite value: the mask hides it
        }
    testing::check_gradient([&](const dense<double, 2>& x) { return loss_at(x, entropy); }, logp, g);
    testing::check_gradient([&](const dense<double, 2>& x) { return loss_at(logp, x); }, entropy, ge);
  }
}

TEST_CASE("policy_loss: uneven micro-batches with batch_totals give the one-big-batch loss and gradient") {
  const index_t B = 9, T = 6;
  batch b(B, T, 77);
  const index_t active = detail::count_active(matrix_view<const double>(b.mask.view()));
  const batch_totals step{B, active};
  const index_t splits[][2] = {{0, 2}, {2, 5}, {7, 2}};
  for (const char* name : {"token-mean", "bnpo", "dapo", "token-sum", "grpo", "seq-mean-token-mean", "luspo",
                           "seq-mean-token-sum", "dr_grpo", "seq-mean-token-sum-norm"}) {
    INFO("mode ", name);
    composed_policy_loss<ppo_clip, k3, loss_aggregation> pl{ppo_clip{0.2}, k3{}, loss_aggregation(name, 10), 0.1, 0.02};
    dense<double, 2> g({B, T}), ge({B, T});
    const double full = pl(b.inputs(0, B), matrix_view<const double>(b.ref.view()), step, g, ge).loss;
    double summed = 0;
    for (const auto& s : splits) {
      dense<double, 2> gs({s[1], T}), ges({s[1], T});
      summed += pl(b.inputs(s[0], s[1]), matrix_view<const double>(b.ref.view().rows(s[0], s[1])), step, gs, ges).loss;
      for (index_t i = 0; i < s[1]; ++i)
        for (index_t t = 0; t < T; ++t) {
          CHECK(gs(i, t) == g(s[0] + i, t));
          CHECK(ges(i, t) == ge(s[0] + i, t));
        }
    }
    CHECK(summed == doctest::Approx(full).epsilon(1e-13));
  }
}

TEST_CASE("policy_loss: without KL and entropy it is the aggregated objective, masked positions change nothing") {
  const index_t B = 3, T = 4;
  batch b(B, T, 5);
  composed_policy_loss<reinforce> plain;  // no_kl, token_mean, beta = entropy_coeff = 0
  dense<double, 2> g({B, T});
  const auto in = b.inputs(0, B);
  const auto r = plain(in, matrix_view<const double>{}, {}, g, dense<double, 2>{});
  dense<double, 2> obj({B, T});
  reinforce{}.loss(in, obj.view());
  CHECK(r.loss == doctest::Approx(aggregate(token_mean{}, obj, b.mask)));
  CHECK(r.loss == r.policy_loss);
  CHECK(r.kl_loss == 0.0);
  CHECK(r.mean_entropy > 0.0);  // logged even without a coefficient
  // Different garbage in the masked positions: the same bits.
  batch c = b;
  for (index_t i = 0; i < B; ++i)
    for (index_t t = 0; t < T; ++t)
      if (c.mask(i, t) == 0) c.logp(i, t) = c.adv(i, t) = 1e30;
  dense<double, 2> g2({B, T});
  CHECK(plain(c.inputs(0, B), matrix_view<const double>{}, {}, g2, dense<double, 2>{}).loss == r.loss);
  for (index_t i = 0; i < B; ++i)
    for (index_t t = 0; t < T; ++t) CHECK(g2(i, t) == g(i, t));
}

TEST_CASE("policy_loss: rollout weights scale the objective term only, token by token, with no gradient of their own") {
  const index_t B = 3, T = 5;
  batch b(B, T, 11);
  dense<double, 2> c({B, T});
  testing::fill_uniform(c.view(), 12, 0, 3);
  c(1, 2) = 0;  // a token the correction masks: only its KL and entropy terms are left
  composed_policy_loss<ppo_clip, k3, token_sum> loss;
  loss.beta = 0.3;
  loss.entropy_coeff = 0.05;
  const matrix_view<const double> ref = b.ref.view();
  auto in = b.inputs(0, B);
  dense<double, 2> g({B, T}), ge({B, T}), g_c({B, T}), ge_c({B, T});
  const auto plain = loss(in, ref, {}, g, ge);
  in.rollout_weights = c.view();
  const auto corrected = loss(in, ref, {}, g_c, ge_c);
  // By hand with token_sum (w = 1 on active tokens): L = sum c l_obj + beta kl - coeff H.
  dense<double, 2> obj({B, T});
  ppo_clip{}.loss(in, obj.view());
  dense<double, 2> g_obj({B, T}), ones({B, T});
  for (index_t i = 0; i < B; ++i)
    for (index_t t = 0; t < T; ++t) ones(i, t) = b.mask(i, t);
  ppo_clip{}.backward(in, matrix_view<const double>(ones.view()), g_obj.view());
  double expected_policy = 0;
  for (index_t i = 0; i < B; ++i)
    for (index_t t = 0; t < T; ++t) {
      if (b.mask(i, t) == 0) continue;
      expected_policy += c(i, t) * obj(i, t);
      // d/dlogp: c times the objective's own gradient; the KL gradient unscaled
      CHECK(g_c(i, t) == doctest::Approx(c(i, t) * g_obj(i, t) + loss.beta * k3{}.gradient(b.logp(i, t), b.ref(i, t))));
      CHECK(ge_c(i, t) == ge(i, t));  // the entropy term is not weighted
    }
  CHECK(corrected.policy_loss == doctest::Approx(expected_policy));
  CHECK(corrected.kl_loss == doctest::Approx(plain.kl_loss));
  CHECK(corrected.entropy_loss == doctest::Approx(plain.entropy_loss));
  CHECK(corrected.loss == doctest::Approx(expected_policy + loss.beta * plain.kl_loss -
                                          loss.entropy_coeff * plain.entropy_loss));
  CHECK(g_c(1, 2) == doctest::Approx(loss.beta * k3{}.gradient(b.logp(1, 2), b.ref(1, 2))));
  // Weights of 1 change nothing, bit for bit.
  dense<double, 2> unit({B, T}), g1({B, T}), ge1({B, T});
  for (index_t i = 0; i < B; ++i)
    for (index_t t = 0; t < T; ++t) unit(i, t) = 1;
  in.rollout_weights = unit.view();
  CHECK(loss(in, ref, {}, g1, ge1).loss == plain.loss);
  for (index_t i = 0; i < B; ++i)
    for (index_t t = 0; t < T; ++t) CHECK(g1(i, t) == g(i, t));
  // A wrong shape is an error naming the argument.
  dense<double, 2> wrong({B, T + 1});
  in.rollout_weights = wrong.view();
  CHECK_THROWS_WITH_AS(loss(in, ref, {}, g1, ge1), doctest::Contains("rollout_weights"), lmrl::error);
}

TEST_CASE("policy_loss: Eigen and xtensor inputs and gradients are bit-identical, in float too") {
  const index_t B = 4, T = 7;
  batch b(B, T, 101);
  auto run = [&](auto tag) {
    using Mat = decltype(tag);
    using E = std::remove_cvref_t<decltype(std::declval<Mat&>()(0, 0))>;
    Mat logp, old, adv, mask, ent, ref, g, ge;
    auto fill = [&](Mat& m, const dense<double, 2>& src) {
      m = lmrl::make_like<Mat, E, 2>({B, T});
      for (index_t i = 0; i < B; ++i)
        for (index_t t = 0; t < T; ++t) m(i, t) = static_cast<E>(src(i, t));
    };
    fill(logp, b.logp), fill(old, b.old_logp), fill(adv, b.adv), fill(mask, b.mask), fill(ent, b.entropy);
    fill(ref, b.ref), fill(g, b.mask), fill(ge, b.mask);
    policy_inputs<E> in{lmrl::view<2>(logp), lmrl::view<2>(old), lmrl::view<2>(adv), lmrl::view<2>(mask),
                        lmrl::view<2>(ent)};
    composed_policy_loss<ppo_clip, k3, loss_aggregation> pl{ppo_clip{0.2}, k3{}, loss_aggregation("grpo"), 0.05, 0.01};
    const auto r = pl(in, matrix_view<const E>(lmrl::view<2>(ref)), batch_totals{8, 0}, g, ge);
    std::vector<double> out{r.loss, r.mean_kl};
    for (index_t i = 0; i < B; ++i)
      for (index_t t = 0; t < T; ++t) out.push_back(g(i, t)), out.push_back(ge(i, t));
    return out;
  };
  const auto e = run(Eigen::MatrixXd{});
  const auto er = run(Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>{});
  const auto x = run(xt::xtensor<double, 2>{});
  const auto ef = run(Eigen::MatrixXf{});
  const auto xf = run(xt::xtensor<float, 2>{});
  CHECK(e == er);
  CHECK(e == x);
  CHECK(ef == xf);
  CHECK(ef[0] == doctest::Approx(e[0]).epsilon(1e-5));
}

TEST_CASE("policy_loss: bad input is an lmrl::error naming the argument") {
  const index_t B = 2, T = 3;
  batch b(B, T, 8);
  const auto in = b.inputs(0, B);
  dense<double, 2> g({B, T}), ge({B, T}), wrong({B, T + 1});
  composed_policy_loss<reinforce, k3> with_kl{.beta = 0.1};
  CHECK_THROWS_WITH_AS(with_kl(in, matrix_view<const double>{}, {}, g, ge),
                       doctest::Contains("composed_policy_loss: beta = 0.1 needs ref_logp, which is empty"), error);
  CHECK_THROWS_WITH_AS(with_kl(in, matrix_view<const double>(wrong.view()), {}, g, ge),
                       doctest::Contains("ref_logp has shape [2 x 4] but mask has shape [2 x 3]"), error);
  composed_policy_loss<reinforce> with_entropy{.entropy_coeff = 0.01};
  auto no_entropy = in;
  no_entropy.entropy = {};
  CHECK_THROWS_WITH_AS(with_entropy(no_entropy, matrix_view<const double>{}, {}, g, ge),
                       doctest::Contains("entropy_coeff = 0.01 needs in.entropy"), error);
  CHECK_THROWS_WITH_AS(with_entropy(in, matrix_view<const double>{}, {}, g, dense<double, 2>{}),
                       doctest::Contains("needs grad_entropy"), error);
  CHECK_THROWS_WITH_AS(composed_policy_loss<reinforce>{}(in, matrix_view<const double>{}, {}, wrong, ge),
                       doctest::Contains("grad_logp has shape [2 x 4] but mask has shape [2 x 3]"), error);
  dense<double, 2> pt({B, T});
  CHECK_THROWS_WITH_AS(composed_policy_loss<reinforce>{}(in, matrix_view<const double>{}, {}, g.view(), ge.view(),
                                                composed_loss_scratch<double>{pt.view(), wrong.view()}),
                       doctest::Contains("scratch.weights has shape [2 x 4]"), error);
  CHECK_THROWS_WITH_AS((composed_policy_loss<reinforce, no_kl, seq_mean_token_mean>{}(in, matrix_view<const double>{}, {1, 0}, g, ge)),
                       doctest::Contains("totals.sequences = 1 is less than the 2 sequences"), error);
}
