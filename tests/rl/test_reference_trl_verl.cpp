// Cross-checks of rl/ against TRL 1.16 and verl 0.9.1: tests/data/rl_reference.txt
// holds inputs and outputs computed by their own functions in float64
// (tools/make_rl_reference.py); every lmrl function here must reproduce them.
//
// Tolerance: |lmrl - reference| <= 1e-10 |reference| + 1e-12 (kTight), the
// rounding differences of float64 code that evaluates the same formula in a
// different order. Where verl divides by a count plus 1e-8 (verl_F.masked_mean,
// the seq-mean-token-mean token mean, GMPO's 1/(|o_i| + 1e-8)) and lmrl divides
// by the exact count, the two differ by a relative 1e-8/count; those checks use
// kLoose = 1e-7 relative and say so. verl's masked_whiten (REINFORCE++, GAE,
// GDPO) subtracts that biased mean, which moves a whitened value by up to
// |mean| 1e-8 / (count std); whitened outputs, which are O(1), are compared
// with kWhiten = 1e-6 absolute. verl's GRPO divides the rounding noise of a
// uniform group's mean by epsilon = 1e-6 (|A| ~ 1e-10) where lmrl gives an exact
// 0; those estimators get an absolute floor kNoise = 1e-9.
#include <cmath>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "lmrl/rl/advantages.hpp"
#include "lmrl/rl/distill.hpp"
#include "lmrl/rl/aggregation.hpp"
#include "lmrl/rl/kl.hpp"
#include "lmrl/rl/kl_controller.hpp"
#include "lmrl/rl/objectives.hpp"
#include "lmrl/rl/policy_loss.hpp"
#include "lmrl/rl/rollout_correction.hpp"
#include "lmrl/rl/value_loss.hpp"
#include "lmrl/tensor/dense.hpp"
#include "support/testing.hpp"

using namespace lmrl;
using lmrl::testing::reference_case;

namespace {

constexpr double kTight = 1e-10;
constexpr double kLoose = 1e-7;   // verl's "count + 1e-8" denominators, see the file comment
constexpr double kWhiten = 1e-6;  // absolute, verl masked_whiten outputs
constexpr double kNoise = 1e-9;   // absolute, verl GRPO-style division of rounding noise by epsilon

const std::vector<reference_case>& all_cases() {
  static const std::vector<reference_case> cases = lmrl::testing::load_reference("rl_reference.txt");
  return cases;
}

std::vector<const reference_case*> family(const std::string& name) {
  std::vector<const reference_case*> out;
  for (const auto& c : all_cases())
    if (c.text("family") == name) out.push_back(&c);
  return out;
}

bool close(double expected, double actual, double rel, double abs = 1e-12) {
  if (std::isnan(expected)) return std::isnan(actual);
  return std::abs(actual - expected) <= rel * std::abs(expected) + abs;
}

std::string fmt(double x) {
  std::ostringstream out;
  out.precision(17);
  out << x;
  return out.str();
}
double relative_difference(double expected, double actual) {
  return std::abs(actual - expected) / std::max(std::abs(expected), 1e-300);
}

void check_value(const reference_case& c, const std::string& what, double expected, double actual,
                 double rel = kTight) {
  INFO(c.name, ": ", what, " expected ", fmt(expected), " got ", fmt(actual), " (relative difference ",
       relative_difference(expected, actual), ")");
  CHECK(close(expected, actual, rel));
}

struct dims {
  index_t B = 0, T = 0;
};
dims shape_of(const reference_case& c) {
  const auto& s = c.at("shape");
  return {static_cast<index_t>(s.at(0)), static_cast<index_t>(s.at(1))};
}

dense<double, 2> matrix(const reference_case& c, const std::string& key, index_t rows, index_t cols) {
  const auto& v = c.at(key);
  REQUIRE(static_cast<index_t>(v.size()) == rows * cols);
  dense<double, 2> m({rows, cols});
  for (index_t k = 0; k < rows * cols; ++k) m.data()[k] = v[static_cast<std::size_t>(k)];
  return m;
}
dense<double, 2> matrix(const reference_case& c, const std::string& key) {
  const dims d = shape_of(c);
  return matrix(c, key, d.B, d.T);
}
dense<double, 1> vector_of(const reference_case& c, const std::string& key) {
  const auto& v = c.at(key);
  dense<double, 1> out({static_cast<index_t>(v.size())});
  for (std::size_t k = 0; k < v.size(); ++k) out.data()[k] = v[k];
  return out;
}
std::optional<double> optional_scalar(const reference_case& c, const std::string& key) {
  if (!c.has(key)) return std::nullopt;
  return c.scalar(key);
}

matrix_view<const double> cv(const dense<double, 2>& m) { return m.view(); }
vector_view<const double> cv(const dense<double, 1>& v) { return v.view(); }

// Compares a [B x T] result on active tokens; masked tokens must hold 0 in lmrl
// (verl leaves whitened values there, which lmrl by design does not).
void check_active(const reference_case& c, const std::string& what, const dense<double, 2>& expected,
                  const dense<double, 2>& actual, const dense<double, 2>& mask, double rel = kTight,
                  double abs = 1e-12) {
  for (index_t i = 0; i < mask.shape()[0]; ++i)
    for (index_t t = 0; t < mask.shape()[1]; ++t) {
      if (mask(i, t) != 0) {
        INFO(c.name, ": ", what, "(", i, ", ", t, ") expected ", fmt(expected(i, t)), " got ", fmt(actual(i, t)),
             " (relative difference ", relative_difference(expected(i, t), actual(i, t)), ")");
        CHECK(close(expected(i, t), actual(i, t), rel, abs));
      } else {
        INFO(c.name, ": ", what, "(", i, ", ", t, ") is masked but holds ", actual(i, t));
        CHECK(actual(i, t) == 0.0);
      }
    }
}

dense<double, 2> ones(index_t rows, index_t cols) {
  dense<double, 2> m({rows, cols});
  for (index_t k = 0; k < m.size(); ++k) m.data()[k] = 1;
  return m;
}

}  // namespace

TEST_CASE("the reference file is there and covers every family") {
  const auto& cases = all_cases();
  CHECK(cases.size() > 300);
  for (const char* f : {"trl_advantages", "trl_grpo_loss", "trl_kl", "trl_vllm_is", "verl_advantages", "verl_kl",
                        "verl_policy_loss", "verl_agg_loss", "verl_rollout_is", "verl_rollout_rs",
                        "verl_value_loss", "trl_gkd"}) {
    INFO("family ", f);
    CHECK(family(f).size() >= 4);
  }
}

// ----------------------------------------------------------------------------- advantages

TEST_CASE("TRL GRPO advantages: scale_rewards group/batch/none, NaN scores, several reward functions") {
  int checked = 0;
  for (const auto* c : family("trl_advantages")) {
    const std::string agg = c->text("multi_objective_aggregation");
    const std::string scale = c->text("scale_rewards");
    const auto expected = vector_of(*c, "advantages");
    const index_t B = expected.shape()[0];
    const auto G = static_cast<index_t>(c->scalar("group_size"));
    const auto mask = ones(B, 1);
    dense<double, 2> out({B, 1});
    advantage_inputs<double> in;
    in.mask = cv(mask);
    in.group_size = G;
    const auto scores = vector_of(*c, "scores");
    in.scores = cv(scores);
    dense<double, 2> components({1, 1});
    if (agg == "sum_then_normalize") {
      grpo_advantage est;  // TRL: epsilon 1e-4, unbiased std
      est.scale = scale == "group" ? grpo_scale::group_std : scale == "batch" ? grpo_scale::batch_std : grpo_scale::none;
      est(in, out.view());
    } else {
      const auto K = static_cast<index_t>(c->scalar("components"));
      components = matrix(*c, "reward_components", B, K);
      in.reward_components = cv(components);
      gdpo_advantage est;  // TRL normalize_then_sum: batch_norm sequence, epsilon 1e-4
      est.reward_weights = c->at("reward_weights");
      est(in, out.view());
    }
    for (index_t i = 0; i < B; ++i) check_value(*c, "advantage " + std::to_string(i), expected(i), out(i, 0));
    ++checked;
  }
  CHECK(checked >= 50);
}

TEST_CASE("verl advantage estimators agree with compute_*_advantage") {
  std::map<std::string, int> checked;
  for (const auto* c : family("verl_advantages")) {
    const std::string est = c->text("estimator");
    const dims d = shape_of(*c);
    const auto mask = matrix(*c, "mask");
    const auto expected = matrix(*c, "advantages");
    const auto scores = vector_of(*c, "scores");
    const auto token_rewards = matrix(*c, "token_rewards");
    const bool norm = c->has("norm_adv_by_std_in_grpo") && c->scalar("norm_adv_by_std_in_grpo") != 0;
    dense<double, 2> out({d.B, d.T});
    advantage_inputs<double> in;
    in.scores = cv(scores);
    in.mask = cv(mask);
    in.group_size = static_cast<index_t>(c->scalar("group_size"));
    double rel = kTight, abs = kNoise;
    if (est == "grpo") {
      grpo_advantage e;
      e.epsilon = 1e-6;  // verl's epsilon
      e.scale = norm ? grpo_scale::group_std : grpo_scale::none;
      e(in, out.view());
    } else if (est == "rloo" || est == "rloo_vectorized") {  // verl: rloo (loop) and rloo_vectorized (bincount)
      rloo_advantage{}(in, out.view());
    } else if (est == "opo") {
      opo_advantage{}(in, out.view());
    } else if (est == "gpg") {
      gpg_advantage{}(in, out.view());
    } else if (est == "grpo_passk") {
      passk_advantage{norm, 1e-6}(in, out.view());
    } else if (est == "reinforce_plus_plus_baseline") {
      reinforce_pp_baseline_advantage{}(in, out.view());
      abs = kWhiten;
    } else if (est == "gdpo") {
      if (!norm) continue;  // lmrl's gdpo always divides by the group std (verl norm_adv_by_std_in_grpo=False: not offered)
      gdpo_advantage e;
      e.epsilon = 1e-6;
      e.batch_norm = gdpo_batch_norm::token;  // verl masked_whiten
      e(in, out.view());
      abs = kWhiten;
    } else if (est == "reinforce_plus_plus") {
      in.token_rewards = cv(token_rewards);
      reinforce_pp_advantage{c->scalar("gamma")}(in, out.view());
      abs = kWhiten;
    } else if (est == "remax") {
      in.token_rewards = cv(token_rewards);
      const auto baselines = vector_of(*c, "baseline_scores");
      in.baseline_scores = cv(baselines);
      remax_advantage{}(in, out.view());
    } else if (est == "gae") {
      in.token_rewards = cv(token_rewards);
      const auto values = matrix(*c, "values");
      in.values = cv(values);
      dense<double, 2> returns({d.B, d.T});
      gae_advantage{c->scalar("gamma"), c->scalar("lam"), true}(in, out.view(), returns.view());
      check_active(*c, "returns", matrix(*c, "returns"), returns, mask, kTight);
      abs = kWhiten;
    } else {
      FAIL("unknown estimator " << est);
    }
    check_active(*c, est + " advantages", expected, out, mask, rel, abs);
    ++checked[est];
  }
  for (const char* e : {"grpo", "rloo", "rloo_vectorized", "opo", "gpg", "grpo_passk",
                        "reinforce_plus_plus_baseline", "gdpo", "reinforce_plus_plus", "remax", "gae"}) {
    INFO("estimator ", e);
    CHECK(checked[e] >= 3);
  }
}

// ----------------------------------------------------------------------------- KL

TEST_CASE("verl kl_penalty: value and d/dlogp of k1, abs, k2, k3 and the '+' forms") {
  int checked = 0;
  for (const auto* c : family("verl_kl")) {
    const dims d = shape_of(*c);
    const auto logp = matrix(*c, "logp");
    const auto ref = matrix(*c, "ref_logp");
    const auto value = matrix(*c, "value");
    const auto grad = matrix(*c, "grad");
    const auto mask = ones(d.B, d.T);
    const kl_estimator k = kl_estimator::from_name(c->text("kl_penalty"));  // verl names: k3 with verl's clamps
    dense<double, 2> v({d.B, d.T}), g({d.B, d.T});
    kl_per_token(k, cv(logp), cv(ref), cv(mask), v.view(), g.view());
    check_active(*c, "kl value", value, v, mask);
    check_active(*c, "kl gradient", grad, g, mask);
    ++checked;
  }
  CHECK(checked == 24);
}

TEST_CASE("TRL's per-token KL (k3 without clamps) and its derivative, taken from _compute_loss") {
  for (const auto* c : family("trl_kl")) {
    const dims d = shape_of(*c);
    const auto logp = matrix(*c, "logp");
    const auto ref = matrix(*c, "ref_logp");
    const auto mask = ones(d.B, d.T);
    dense<double, 2> v({d.B, d.T}), g({d.B, d.T});
    kl_per_token(kl_k3::trl(), cv(logp), cv(ref), cv(mask), v.view(), g.view());
    check_active(*c, "kl value", matrix(*c, "value"), v, mask);
    check_active(*c, "kl gradient", matrix(*c, "grad"), g, mask);
  }
}

// ----------------------------------------------------------------------------- aggregation

TEST_CASE("verl agg_loss: every loss_agg_mode as weights, with and without global batch sizes") {
  for (const auto* c : family("verl_agg_loss")) {
    const dims d = shape_of(*c);
    const std::string mode = c->text("loss_agg_mode");
    const auto mask = matrix(*c, "mask");
    const auto loss_mat = matrix(*c, "loss_mat");
    const auto expected = matrix(*c, "weights");
    batch_totals totals;
    if (auto n = optional_scalar(*c, "batch_num_tokens")) totals.active_tokens = static_cast<index_t>(*n);
    if (auto s = optional_scalar(*c, "global_batch_size")) totals.sequences = static_cast<index_t>(*s);
    const auto factor = optional_scalar(*c, "loss_scale_factor");
    const loss_aggregation agg(mode, factor ? static_cast<index_t>(*factor) : 0);
    dense<double, 2> w({d.B, d.T});
    agg.weights(cv(mask), totals, w.view());
    const double rel = mode == "seq-mean-token-mean" ? kLoose : kTight;  // verl: token sum / (count + 1e-8)
    check_active(*c, "weights", expected, w, mask, rel);
    check_value(*c, "loss", c->scalar("loss"), aggregate(cv(loss_mat), cv(w)), rel);
  }
}

// ----------------------------------------------------------------------------- policy losses

namespace {

// L = sum w (s l + beta kl) and dL/dlogp, with s an optional per-token factor
// (rollout importance weights), l the objective's per-token loss, w the
// aggregation weights: the trainer's composed_policy_loss, with s as
// in.rollout_weights, which is how TRL and verl assemble their losses.
template <class O>
std::pair<double, dense<double, 2>> assemble(const O& objective, policy_inputs<double> in,
                                             const loss_aggregation& agg, batch_totals totals,
                                             const dense<double, 2>* scale, double beta,
                                             const dense<double, 2>* ref_logp, objective_stats* stats = nullptr) {
  const index_t B = in.logp.shape[0], T = in.logp.shape[1];
  dense<double, 2> dlogp({B, T}), per_token({B, T}), w({B, T});
  if (scale) in.rollout_weights = cv(*scale);
  const composed_policy_loss<O, kl_k3, loss_aggregation> loss{objective, kl_k3::trl(), agg, beta};
  const composed_loss_result r = loss(in, ref_logp ? cv(*ref_logp) : matrix_view<const double>{}, totals,
                                      dlogp.view(), matrix_view<double>{},
                                      composed_loss_scratch<double>{per_token.view(), w.view()});
  if (stats) *stats = r.stats;
  return {r.loss, std::move(dlogp)};
}

}  // namespace

TEST_CASE("TRL GRPOTrainer._compute_loss: grpo, bnpo, dr_grpo, dapo, cispo, sapo, luspo, token and sequence level") {
  int checked = 0;
  for (const auto* c : family("trl_grpo_loss")) {
    const dims d = shape_of(*c);
    const std::string type = c->text("loss_type");
    const std::string level = c->text("importance_sampling_level");
    const auto mask = matrix(*c, "mask");
    const auto logp = matrix(*c, "logp");
    const auto old = matrix(*c, "old_logp");
    const auto ref = matrix(*c, "ref_logp");
    const auto adv_seq = vector_of(*c, "advantages");
    dense<double, 2> adv({d.B, d.T});
    for (index_t i = 0; i < d.B; ++i)
      for (index_t t = 0; t < d.T; ++t) adv(i, t) = adv_seq(i);
    policy_inputs<double> in{cv(logp), cv(old), cv(adv), cv(mask)};
    const double beta = c->scalar("beta");
    const double eps_low = c->scalar("epsilon_low"), eps_high = c->scalar("epsilon_high");
    const auto delta = optional_scalar(*c, "delta");
    const auto T_max = static_cast<index_t>(c->scalar("max_completion_length"));
    batch_totals totals;
    std::string agg_name = type;
    if (type == "dapo" || type == "cispo") {  // TRL normalizes both by num_items_in_batch
      agg_name = "dapo";
      totals.active_tokens = static_cast<index_t>(c->scalar("num_items_in_batch"));
    }
    if (type == "sapo") agg_name = "grpo";
    const loss_aggregation agg(agg_name, T_max);
    dense<double, 2> is_ratio({1, 1});
    const dense<double, 2>* scale = nullptr;
    if (c->has("importance_sampling_ratio")) {
      is_ratio = matrix(*c, "importance_sampling_ratio");
      scale = &is_ratio;
    }
    std::pair<double, dense<double, 2>> result{0.0, dense<double, 2>({1, 1})};
    objective_stats stats;
    if (type == "cispo") {
      cispo o;
      o.epsilon_high = eps_high - 1;  // TRL caps the ratio at epsilon_high itself, lmrl at 1 + epsilon_high
      result = assemble(o, in, agg, totals, scale, beta, &ref, &stats);
    } else if (type == "sapo") {
      sapo o;
      o.tau_pos = c->scalar("sapo_temperature_pos");
      o.tau_neg = c->scalar("sapo_temperature_neg");
      result = assemble(o, in, agg, totals, scale, beta, &ref, &stats);
    } else if (level == "sequence") {  // GSPO: sequence-level ratio exp(mean log-ratio)
      gspo o;
      o.epsilon_low = eps_low;
      o.epsilon_high = eps_high;
      o.delta = delta;
      result = assemble(o, in, agg, totals, scale, beta, &ref, &stats);
    } else {
      ppo_clip o;
      o.epsilon_low = eps_low;
      o.epsilon_high = eps_high;
      o.delta = delta;
      result = assemble(o, in, agg, totals, scale, beta, &ref, &stats);
    }
    check_value(*c, "loss", c->scalar("loss"), result.first);
    check_active(*c, "d loss / d logp", matrix(*c, "grad"), result.second, mask);
    if (level == "token" && c->has("clip_ratio_low") && type != "cispo" && type != "sapo") {
      check_value(*c, "clip_ratio/low_mean", c->scalar("clip_ratio_low"), stats.clip_fraction_low);
      check_value(*c, "clip_ratio/high_mean", c->scalar("clip_ratio_high"), stats.clip_fraction_high);
      check_value(*c, "clip_ratio/region_mean", c->scalar("clip_ratio_region"), stats.clip_fraction);
    }
    ++checked;
  }
  CHECK(checked >= 100);
}

TEST_CASE("verl policy losses: vanilla (dual clip), gspo, sapo, gpg, cispo, geo_mean under every loss_agg_mode") {
  std::map<std::string, int> checked;
  for (const auto* c : family("verl_policy_loss")) {
    const std::string mode = c->text("loss_mode");
    std::string agg_mode = c->text("loss_agg_mode");
    const auto mask = matrix(*c, "mask");
    const auto logp = matrix(*c, "logp");
    const auto old = matrix(*c, "old_logp");
    const auto adv = matrix(*c, "advantages");
    policy_inputs<double> in{cv(logp), cv(old), cv(adv), cv(mask)};
    const double low = c->scalar("clip_ratio_low"), high = c->scalar("clip_ratio_high");
    batch_totals totals;
    if (auto n = optional_scalar(*c, "batch_num_tokens")) totals.active_tokens = static_cast<index_t>(*n);
    if (auto s = optional_scalar(*c, "global_batch_size")) totals.sequences = static_cast<index_t>(*s);
    dense<double, 2> weights({1, 1});
    const dense<double, 2>* scale = nullptr;
    if (c->has("rollout_is_weights")) {
      weights = matrix(*c, "rollout_is_weights");
      scale = &weights;
    }
    if (mode == "sapo" || mode == "geo_mean") agg_mode = "seq-mean-token-mean";  // verl fixes these
    const loss_aggregation agg(agg_mode);
    double rel = agg_mode == "seq-mean-token-mean" ? kLoose : kTight;
    std::pair<double, dense<double, 2>> result{0.0, dense<double, 2>({1, 1})};
    objective_stats stats;
    if (mode == "vanilla") {
      ppo_clip o = ppo_clip::verl();
      o.epsilon_low = low;
      o.epsilon_high = high;
      o.clip_ratio_c = c->scalar("clip_ratio_c");
      result = assemble(o, in, agg, totals, scale, 0.0, nullptr, &stats);
    } else if (mode == "gspo") {
      gspo_token o;
      o.epsilon_low = low;
      o.epsilon_high = high;
      result = assemble(o, in, agg, totals, scale, 0.0, nullptr, &stats);
    } else if (mode == "sapo") {
      sapo o;
      o.tau_pos = c->scalar("tau_pos");
      o.tau_neg = c->scalar("tau_neg");
      o.clamp_log_ratio = true;
      result = assemble(o, in, agg, totals, scale, 0.0, nullptr, &stats);
    } else if (mode == "gpg") {
      result = assemble(reinforce{}, in, agg, totals, scale, 0.0, nullptr, &stats);
    } else if (mode == "cispo") {
      cispo o;
      o.epsilon_low = low;
      o.epsilon_high = high;
      o.clamp_log_ratio = true;
      result = assemble(o, in, agg, totals, scale, 0.0, nullptr, &stats);
    } else if (mode == "geo_mean") {
      gmpo o;
      o.epsilon_low = low;
      o.epsilon_high = high;
      result = assemble(o, in, agg, totals, scale, 0.0, nullptr, &stats);
      rel = kLoose;
    } else {
      continue;  // dppo_tv, dppo_kl, dro: not in lmrl (the cases stay in the file for when they are)
    }
    check_value(*c, "loss", c->scalar("loss"), result.first, rel);
    check_active(*c, "d loss / d logp", matrix(*c, "grad"), result.second, mask, rel);
    if (mode == "vanilla" && c->has("pg_clipfrac")) {  // verl metrics are masked means: count + 1e-8
      check_value(*c, "pg_clipfrac", c->scalar("pg_clipfrac"), stats.clip_fraction, kLoose);
      check_value(*c, "pg_clipfrac_lower", c->scalar("pg_clipfrac_lower"), stats.clip_fraction_dual, kLoose);
      check_value(*c, "ppo_kl", c->scalar("ppo_kl"), stats.approx_kl, kLoose);
    }
    ++checked[mode];
  }
  for (const char* m : {"vanilla", "gspo", "sapo", "gpg", "cispo", "geo_mean"}) {
    INFO("loss_mode ", m);
    CHECK(checked[m] >= 2);
  }
}

// ----------------------------------------------------------------------------- rollout correction

TEST_CASE("TRL vLLM importance-sampling ratio: token/sequence, truncate/mask") {
  for (const auto* c : family("trl_vllm_is")) {
    const dims d = shape_of(*c);
    const std::string mode = c->text("vllm_importance_sampling_mode");
    const auto mask = matrix(*c, "mask");
    const auto old = matrix(*c, "old_logp");
    const auto sampling = matrix(*c, "sampling_logp");
    const auto ratio = c->at("ratio");
    const auto clip_max = optional_scalar(*c, "clip_max");
    const auto clip_min = optional_scalar(*c, "clip_min");
    const auto rc = rollout_correction::trl(mode, clip_max ? *clip_max : INFINITY, clip_min ? *clip_min : 0.0);
    dense<double, 2> w({d.B, d.T});
    rc.weights(cv(old), cv(sampling), cv(mask), w.view());
    const bool sequence = mode.rfind("sequence", 0) == 0;
    dense<double, 2> expected({d.B, d.T});
    for (index_t i = 0; i < d.B; ++i)
      for (index_t t = 0; t < d.T; ++t)
        expected(i, t) = ratio[static_cast<std::size_t>(sequence ? i : i * d.T + t)];
    check_active(*c, "importance weight", expected, w, mask);
  }
}

TEST_CASE("verl rollout_is weights: token/sequence, TIS and IcePop thresholds, batch normalization") {
  for (const auto* c : family("verl_rollout_is")) {
    const dims d = shape_of(*c);
    const auto mask = matrix(*c, "mask");
    const auto train = matrix(*c, "logp");
    const auto rollout = matrix(*c, "rollout_logp");
    const bool normalize = c->scalar("batch_normalize") != 0;
    const auto rc = rollout_correction::verl(c->text("rollout_is"), c->text("rollout_is_threshold"), normalize);
    dense<double, 2> w({d.B, d.T});
    rc.weights(cv(train), cv(rollout), cv(mask), w.view());
    // the batch-normalization mean is a verl masked_mean (count + 1e-8)
    check_active(*c, "rollout_is weight", matrix(*c, "weights"), w, mask, normalize ? kLoose : kTight);
  }
}

TEST_CASE("verl AdaptiveKLController: the coefficient after each update") {
  int checked = 0;
  for (const auto* c : family("verl_kl_controller")) {
    adaptive_kl_controller controller(c->scalar("kl_coef"), c->scalar("target_kl"), c->scalar("horizon"));
    const auto& kls = c->at("current_kl");
    const auto& steps = c->at("n_steps");
    const auto& values = c->at("values");
    REQUIRE(kls.size() == values.size());
    for (std::size_t k = 0; k < kls.size(); ++k) {
      controller.update(kls[k], static_cast<index_t>(steps[k]));
      INFO(c->name, ": update ", k, " expected ", fmt(values[k]), " got ", fmt(controller.value));
      CHECK(close(values[k], controller.value, kTight, 1e-15));
    }
    ++checked;
  }
  CHECK(checked == 4);
}

TEST_CASE("verl compute_rewards: score at the last token minus coef * k1, on active tokens") {
  int checked = 0;
  for (const auto* c : family("verl_kl_in_reward")) {
    const dims d = shape_of(*c);
    const auto mask = matrix(*c, "mask");
    const auto token_scores = matrix(*c, "token_scores");
    dense<double, 1> scores({d.B});
    for (index_t i = 0; i < d.B; ++i)
      for (index_t t = 0; t < d.T; ++t) scores(i) += token_scores(i, t);
    dense<double, 2> rewards({d.B, d.T});
    // verl subtracts coef * (old - ref) everywhere; lmrl only on active tokens (0 elsewhere).
    apply_kl_penalty(kl_k1{}, c->scalar("kl_coef"), cv(scores), cv(matrix(*c, "old_logp")),
                     cv(matrix(*c, "ref_logp")), cv(mask), rewards.view());
    check_active(*c, "token reward", matrix(*c, "token_rewards"), rewards, mask);
    ++checked;
  }
  CHECK(checked == 4);
}

TEST_CASE("verl compute_value_loss: the clipped value loss, its gradient and vf_clipfrac") {
  int checked = 0;
  for (const auto* c : family("verl_value_loss")) {
    const dims d = shape_of(*c);
    const std::string mode = c->text("loss_agg_mode");
    const auto mask = matrix(*c, "mask");
    dense<double, 2> grad({d.B, d.T}), w({d.B, d.T});
    const value_loss_result r =
        clipped_value_loss(cv(matrix(*c, "vpreds")), cv(matrix(*c, "values")), cv(matrix(*c, "returns")), cv(mask),
                           c->scalar("cliprange_value"), loss_aggregation(mode), batch_totals{}, grad.view(), w.view());
    const double rel = mode == "seq-mean-token-mean" ? kLoose : kTight;  // verl: / (count + 1e-8)
    check_value(*c, "loss", c->scalar("loss"), r.loss, rel);
    check_active(*c, "dL/dV", matrix(*c, "grad"), grad, mask, rel);
    check_value(*c, "vf_clipfrac", c->scalar("vf_clipfrac"), r.clip_fraction, kLoose);
    ++checked;
  }
  CHECK(checked == 4);
}

// ----------------------------------------------------------------------------- distillation

TEST_CASE("TRL GKD generalized_jsd_loss at beta 0 and 1: per-token KL, the batchmean loss and its gradient") {
  int checked = 0;
  for (const auto* c : family("trl_gkd")) {
    const dims d = shape_of(*c);
    const auto V = static_cast<index_t>(c->scalar("V"));
    const auto rows = d.B * d.T;
    const dense<double, 2> student = matrix(*c, "student_logits", rows, V), teacher = matrix(*c, "teacher_logits", rows, V);
    const auto mask = matrix(*c, "mask"), kl_expected = matrix(*c, "kl");
    const auto grad_expected = matrix(*c, "grad", rows, V);
    dense<double, 1> kl({rows});
    dense<double, 2> grad({rows, V});
    distillation_kl<double>(student.view(), teacher.view(), distill_divergence_from_name(c->text("divergence")),
                            kl.view(), grad.view(), c->scalar("temperature"));
    double count = 0, loss = 0;
    for (index_t r = 0; r < rows; ++r) count += mask.data()[r];
    for (index_t r = 0; r < rows; ++r) {
      check_value(*c, "kl[" + std::to_string(r) + "]", kl_expected.data()[r], kl(r), kTight);
      loss += mask.data()[r] * kl(r) / count;
      for (index_t v = 0; v < V; ++v)  // batchmean over the unmasked tokens
        CHECK(close(grad_expected(r, v), mask.data()[r] * grad(r, v) / count, kTight, 1e-15));
    }
    check_value(*c, "loss", c->scalar("loss"), loss, kTight);
    ++checked;
  }
  CHECK(checked == 6);
}
