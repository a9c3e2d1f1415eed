// variant_bench: what the algorithm-variant bench measures in each run and
// how it tabulates and plots them. The runs themselves are grpo_zero runs
// (examples/variant_bench.cpp starts them); this header reads their
// metrics.jsonl and summary.json figures and writes
//
//   table.md / table.csv   one row per variant: held-out greedy pass@1 (mean
//                          and sample standard deviation over seeds, and the
//                          base's), steps and training seconds to reach a
//                          target accuracy, tokens/s, peak memory, mean
//                          completion length, KL to the reference, and what
//                          the critic costs (PPO)
//   curves.svg             held-out accuracy against training seconds and
//                          against steps, one line per variant (mean over seeds)
//
// Training seconds leave out the held-out evaluations (time/step_s -
// time/eval_s), which every variant pays alike.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <map>
#include <utility>
#include <string>
#include <vector>

#include "lmrl/error.hpp"
#include "lmrl/train/metrics_log.hpp"
#include "lmrl/train/plot_svg.hpp"
#include "lmrl/train/report.hpp"

namespace lmrl {

// A variant: a name and the grpo_zero flags that make it.
struct bench_variant {
  std::string name;
  std::vector<std::string> flags;
};

// The variants the issue names, as TRL / verl / the papers configure them on
// top of grpo_zero's defaults (loss "dapo", beta 0, one optimizer step per
// generation, so the ratio is 1 at the update and clipping never binds).
inline const std::vector<bench_variant>& known_variants() {
  static const std::vector<bench_variant> v = {
      {"grpo", {"--loss_type", "grpo"}},  // TRL's GRPO loss: sequence mean of token means, group std scaling
      {"dr_grpo", {"--advantage_estimator", "dr_grpo", "--loss_type", "dr_grpo"}},
      {"dapo",  // clip-higher, dynamic sampling, token-mean, overlong filtering and soft overlong punishment
       {"--loss_type", "dapo", "--epsilon_high", "0.28", "--dynamic_sampling", "true", "--overlong_filtering", "true",
        "--overlong_buffer", "20"}},
      {"gspo", {"--importance_sampling_level", "sequence", "--loss_type", "grpo", "--epsilon", "3e-4", "--epsilon_high",
                "4e-4"}},
      {"rloo", {"--advantage_estimator", "rloo"}},
      {"reinforce_pp", {"--advantage_estimator", "reinforce_pp", "--kl_coef", "0.001"}},
      {"reinforce_pp_baseline", {"--advantage_estimator", "reinforce_pp_baseline"}},
      {"cispo", {"--objective", "cispo"}},
      // verl's PPO defaults for reasoning (gamma = lam = 1: with lam = 0.95 the answer's reward reaches the
      // first token of a 100-token completion as 0.95^100 = 0.6%), the critic at 10x the policy's rate (verl).
      {"ppo", {"--advantage_estimator", "gae", "--kl_coef", "0.001", "--gamma", "1", "--lam", "1", "--vf_coef", "0.1",
               "--critic_learning_rate", "1e-3"}},
      // The same PPO with the value head on the policy's own trunk and one joint loss (no second model).
      {"ppo_shared", {"--advantage_estimator", "gae", "--kl_coef", "0.001", "--gamma", "1", "--lam", "1", "--vf_coef",
                      "0.1", "--critic_trunk", "shared"}},
  };
  return v;
}

inline const bench_variant& find_variant(const std::string& name) {
  for (const auto& v : known_variants())
    if (v.name == name) return v;
  std::string known;
  for (const auto& v : known_variants()) known += (known.empty() ? "" : ", ") + v.name;
  detail::fail("variant_bench: unknown variant \"", name, "\" (known: ", known, ")");
}

// One run (variant x seed), read back from its files.
struct bench_run {
  std::string variant;
  std::uint64_t seed = 0;
  double base_accuracy = std::nan("");   // summary.json before.greedy.accuracy
  double final_accuracy = std::nan("");  // summary.json after.greedy.accuracy
  std::vector<double> eval_steps, eval_accuracy, eval_seconds;  // held-out curve, training seconds at each point
  double train_seconds = 0;                // every step, evaluations left out
  double steps_to_target = std::nan(""), seconds_to_target = std::nan("");
  double train_tokens_per_s = 0, generate_tokens_per_s = 0;  // medians over steps
  double peak_mib = 0;
  double final_length = std::nan("");       // mean completion length of the last step's rollouts
  double final_kl = std::nan("");           // kl_ref/k1 at the last step that logged it
  double critic_seconds = 0, critic_state_mib = 0;
};

namespace detail {

inline double median_of(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace detail

// The run's figures from its records (metrics.jsonl, step 1 first) and the
// base and final accuracies; `target` is the held-out accuracy whose first
// crossing gives steps_to_target (NaN when never reached).
inline bench_run summarize_run(std::string variant, std::uint64_t seed, const std::vector<metrics_record>& records,
                               double base_accuracy, double final_accuracy, double target) {
  bench_run r;
  r.variant = std::move(variant);
  r.seed = seed;
  r.base_accuracy = base_accuracy;
  r.final_accuracy = final_accuracy;
  r.eval_steps.push_back(0);
  r.eval_accuracy.push_back(base_accuracy);
  r.eval_seconds.push_back(0);
  if (base_accuracy >= target) r.steps_to_target = 0, r.seconds_to_target = 0;
  std::vector<double> train_tps, gen_tps;
  for (const auto& rec : records) {
    const double step_s = rec.has("time/step_s") ? rec.get("time/step_s") : 0.0;
    const double eval_s = rec.has("time/eval_s") ? rec.get("time/eval_s") : 0.0;
    r.train_seconds += step_s - eval_s;
    if (rec.has("tokens_per_s/train")) train_tps.push_back(rec.get("tokens_per_s/train"));
    if (rec.has("tokens_per_s/generate")) gen_tps.push_back(rec.get("tokens_per_s/generate"));
    if (rec.has("memory/peak_mib")) r.peak_mib = std::max(r.peak_mib, rec.get("memory/peak_mib"));
    if (rec.has("completions/mean_length")) r.final_length = rec.get("completions/mean_length");
    if (rec.has("kl_ref/k1")) r.final_kl = rec.get("kl_ref/k1");
    if (rec.has("time/critic_s")) r.critic_seconds += rec.get("time/critic_s");
    if (rec.has("memory/critic_state_mib")) r.critic_state_mib = rec.get("memory/critic_state_mib");
    if (rec.has(heldout_accuracy_key)) {
      const double a = rec.get(heldout_accuracy_key), step = rec.get("step");
      r.eval_steps.push_back(step);
      r.eval_accuracy.push_back(a);
      r.eval_seconds.push_back(r.train_seconds);
      if (std::isnan(r.steps_to_target) && a >= target) r.steps_to_target = step, r.seconds_to_target = r.train_seconds;
    }
  }
  r.train_tokens_per_s = detail::median_of(train_tps);
  r.generate_tokens_per_s = detail::median_of(gen_tps);
  return r;
}

// Mean and sample standard deviation of the finite values (NaN when none; sd NaN below two).
struct spread {
  double mean = std::nan(""), sd = std::nan("");
  int count = 0;
};

inline spread spread_of(const std::vector<double>& v) {
  spread s;
  double sum = 0;
  for (double x : v)
    if (std::isfinite(x)) sum += x, ++s.count;
  if (s.count == 0) return s;
  s.mean = sum / s.count;
  if (s.count > 1) {
    double sq = 0;
    for (double x : v)
      if (std::isfinite(x)) sq += (x - s.mean) * (x - s.mean);
    s.sd = std::sqrt(sq / (s.count - 1));
  }
  return s;
}

// One variant over its seeds.
struct bench_row {
  std::string variant;
  int seeds = 0;
  spread base, final_accuracy, steps_to_target, seconds_to_target, train_seconds, train_tokens_per_s,
      generate_tokens_per_s, peak_mib, final_length, final_kl, critic_seconds, critic_state_mib;
  int reached = 0;  // seeds that reached the target
  bool all_beat_base = false;
};

// The variants of `runs` in the order they first appear.
inline std::vector<std::string> variant_order(const std::vector<bench_run>& runs) {
  std::vector<std::string> order;
  for (const auto& r : runs)
    if (std::find(order.begin(), order.end(), r.variant) == order.end()) order.push_back(r.variant);
  return order;
}

inline std::vector<bench_row> bench_rows(const std::vector<bench_run>& runs) {
  // Each spread of a row and the per-run figure it summarizes.
  static constexpr std::pair<spread bench_row::*, double bench_run::*> figures[] = {
      {&bench_row::base, &bench_run::base_accuracy},
      {&bench_row::final_accuracy, &bench_run::final_accuracy},
      {&bench_row::steps_to_target, &bench_run::steps_to_target},
      {&bench_row::seconds_to_target, &bench_run::seconds_to_target},
      {&bench_row::train_seconds, &bench_run::train_seconds},
      {&bench_row::train_tokens_per_s, &bench_run::train_tokens_per_s},
      {&bench_row::generate_tokens_per_s, &bench_run::generate_tokens_per_s},
      {&bench_row::peak_mib, &bench_run::peak_mib},
      {&bench_row::final_length, &bench_run::final_length},
      {&bench_row::final_kl, &bench_run::final_kl},
      {&bench_row::critic_seconds, &bench_run::critic_seconds},
      {&bench_row::critic_state_mib, &bench_run::critic_state_mib},
  };
  std::vector<bench_row> rows;
  for (const auto& name : variant_order(runs)) {
    bench_row row;
    row.variant = name;
    row.all_beat_base = true;
    std::vector<const bench_run*> mine;
    for (const auto& r : runs)
      if (r.variant == name) {
        mine.push_back(&r);
        row.reached += std::isfinite(r.steps_to_target);
        row.all_beat_base = row.all_beat_base && r.final_accuracy > r.base_accuracy;
      }
    row.seeds = static_cast<int>(mine.size());
    for (const auto& [to, from] : figures) {
      std::vector<double> values;
      for (const bench_run* r : mine) values.push_back(r->*from);
      row.*to = spread_of(values);
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

namespace detail {

inline std::string fixed(double v, int digits) {
  if (!std::isfinite(v)) return "n/a";
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", digits, v);
  return b;
}
inline std::string pm(const spread& s, double scale, int digits) {
  if (s.count == 0) return "n/a";
  return fixed(scale * s.mean, digits) + (std::isfinite(s.sd) ? " ± " + fixed(scale * s.sd, digits) : "");
}

}  // namespace detail

// The Markdown table; target is the accuracy the "to target" columns count to.
inline std::string bench_table_markdown(const std::vector<bench_row>& rows, double target) {
  const std::string t = detail::fixed(100 * target, 0) + "%";
  std::string s = "| variant | seeds | base pass@1 | final pass@1 | beats base on every seed | steps to " + t +
                  " | training s to " + t + " | training s | train tok/s | generate tok/s | peak MiB | mean length | "
                  "KL to ref (k1) | critic s | critic state MiB |\n";
  s += "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& r : rows) {
    const std::string reached = " (" + std::to_string(r.reached) + "/" + std::to_string(r.seeds) + " reached)";
    // A critic on the policy's trunk has no state of its own (0 MiB) but takes time.
    const bool has_critic = r.critic_seconds.mean > 0 || r.critic_state_mib.mean > 0;
    s += "| " + r.variant + " | " + std::to_string(r.seeds) + " | " + detail::pm(r.base, 100, 1) + "% | " +
         detail::pm(r.final_accuracy, 100, 1) + "% | " + (r.all_beat_base ? "yes" : "no") + " | " +
         detail::pm(r.steps_to_target, 1, 1) + reached + " | " + detail::pm(r.seconds_to_target, 1, 0) + " | " +
         detail::pm(r.train_seconds, 1, 0) + " | " + detail::pm(r.train_tokens_per_s, 1, 0) + " | " +
         detail::pm(r.generate_tokens_per_s, 1, 0) + " | " + detail::pm(r.peak_mib, 1, 0) + " | " +
         detail::pm(r.final_length, 1, 1) + " | " + detail::pm(r.final_kl, 1, 4) + " | " +
         (has_critic ? detail::pm(r.critic_seconds, 1, 0) : "-") + " | " +
         (has_critic ? detail::pm(r.critic_state_mib, 1, 2) : "-") + " |\n";
  }
  return s;
}

// The same figures as CSV, one row per variant (mean and sd columns), for plotting elsewhere.
inline std::string bench_table_csv(const std::vector<bench_row>& rows) {
  std::string s =
      "variant,seeds,base_mean,base_sd,final_mean,final_sd,beats_base_every_seed,reached,steps_to_target_mean,"
      "steps_to_target_sd,seconds_to_target_mean,seconds_to_target_sd,train_seconds_mean,train_seconds_sd,"
      "train_tokens_per_s,generate_tokens_per_s,peak_mib,mean_length,kl_ref_k1,critic_seconds,critic_state_mib\n";
  const auto num = [](double v) {  // six significant digits: a table to read, not state to restore
    if (!std::isfinite(v)) return std::string();
    char b[32];
    std::snprintf(b, sizeof b, "%.6g", v);
    return std::string(b);
  };
  for (const auto& r : rows)
    s += r.variant + "," + std::to_string(r.seeds) + "," + num(r.base.mean) + "," + num(r.base.sd) + "," +
         num(r.final_accuracy.mean) + "," + num(r.final_accuracy.sd) + "," + (r.all_beat_base ? "1" : "0") + "," +
         std::to_string(r.reached) + "," + num(r.steps_to_target.mean) + "," + num(r.steps_to_target.sd) + "," +
         num(r.seconds_to_target.mean) + "," + num(r.seconds_to_target.sd) + "," + num(r.train_seconds.mean) + "," +
         num(r.train_seconds.sd) + "," + num(r.train_tokens_per_s.mean) + "," + num(r.generate_tokens_per_s.mean) +
         "," + num(r.peak_mib.mean) + "," + num(r.final_length.mean) + "," + num(r.final_kl.mean) + "," +
         num(r.critic_seconds.mean) + "," + num(r.critic_state_mib.mean) + "\n";
  return s;
}

// Held-out accuracy (mean over seeds at each evaluation) against training
// seconds and against steps, a line per variant.
inline std::string bench_curves_svg(const std::vector<bench_run>& runs) {
  plot_panel by_time{"held-out greedy pass@1 against training time", "training seconds (evaluations left out)",
                     "pass@1", {}, true};
  plot_panel by_step{"held-out greedy pass@1 against steps", "step", "pass@1", {}, true};
  for (const auto& name : variant_order(runs)) {
    std::map<double, std::vector<double>> acc, secs;  // by step
    for (const auto& r : runs)
      if (r.variant == name)
        for (std::size_t k = 0; k < r.eval_steps.size(); ++k) {
          acc[r.eval_steps[k]].push_back(r.eval_accuracy[k]);
          secs[r.eval_steps[k]].push_back(r.eval_seconds[k]);
        }
    plot_series t{name, {}, {}}, s{name, {}, {}};
    for (const auto& [step, values] : acc) {
      const double a = spread_of(values).mean, sec = spread_of(secs[step]).mean;
      s.x.push_back(step), s.y.push_back(a);
      t.x.push_back(sec), t.y.push_back(a);
    }
    by_time.series.push_back(std::move(t));
    by_step.series.push_back(std::move(s));
  }
  return svg_figure({by_time, by_step}, 2);
}

}  // namespace lmrl
