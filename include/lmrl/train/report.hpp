// report: the end-of-run files of a trainer: curves.svg (reward and accuracy,
// completion length, KL and entropy, learning rate and gradient norm against
// the step) and report.md (a summary table of the first and last logged
// steps, plus any sections the caller adds, e.g. before/after evaluation).
#pragma once

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "lmrl/model/safetensors.hpp"
#include "lmrl/train/metrics_log.hpp"
#include "lmrl/train/plot_svg.hpp"

namespace lmrl {

// A series of one metric against "step". A record without it gives NaN, a
// gap in the line; a sparse metric (one logged every eval_steps, say) skips
// such records instead, so its points join up.
enum class missing_points { gap, skip };

inline plot_series metric_series(const std::vector<metrics_record>& records, const std::string& key,
                                 std::string label = {}, missing_points missing = missing_points::gap) {
  plot_series s;
  s.name = label.empty() ? key : std::move(label);
  for (const auto& r : records) {
    const double y = r.get(key);
    if (missing == missing_points::skip && !std::isfinite(y)) continue;
    s.x.push_back(r.get("step"));
    s.y.push_back(y);
  }
  return s;
}

// The held-out metrics a trainer's evaluate hook logs (grpo_zero does), and
// the panels that plot them.
inline constexpr const char* heldout_accuracy_key = "eval/pass1_greedy";
inline constexpr const char* heldout_length_key = "eval/mean_length";

// The four panels of a GRPO run. reward_names[accuracy_component] is the rule
// the trainer also logs as "accuracy" (grpo_trainer_options::accuracy_component,
// -1: none): its mean is drawn once, as the accuracy line.
inline std::vector<plot_panel> grpo_panels(const std::vector<metrics_record>& records,
                                           const std::vector<std::string>& reward_names = {},
                                           int accuracy_component = -1) {
  const auto has = [&](const char* key) {
    for (const auto& r : records)
      if (r.has(key) && std::isfinite(r.get(key))) return true;
    return false;
  };
  plot_panel reward{"reward and accuracy", "step", "", {}};
  reward.series.push_back(metric_series(records, "reward"));
  if (has("accuracy")) reward.series.push_back(metric_series(records, "accuracy"));
  if (has(heldout_accuracy_key))
    reward.series.push_back(
        metric_series(records, heldout_accuracy_key, "held-out pass@1 (greedy)", missing_points::skip));
  if (reward_names.size() > 1)  // one rule: its mean is the reward line
    for (std::size_t k = 0; k < reward_names.size(); ++k)
      if (static_cast<int>(k) != accuracy_component || !has("accuracy"))
        reward.series.push_back(metric_series(records, "rewards/" + reward_names[k] + "/mean",
                                              reward_names[k] + " reward"));
  plot_panel length{"completion length", "step", "tokens", {metric_series(records, "completions/mean_length", "mean")}};
  length.series.push_back(metric_series(records, "completions/max_length", "max"));
  if (has(heldout_length_key))
    length.series.push_back(metric_series(records, heldout_length_key, "held-out mean (greedy)", missing_points::skip));
  plot_panel kl{"KL to reference and entropy", "step", "", {}};
  if (has("kl")) kl.series.push_back(metric_series(records, "kl"));
  kl.series.push_back(metric_series(records, "entropy"));
  plot_panel opt{"optimization", "step", "", {metric_series(records, "grad_norm")}};
  opt.series.push_back(metric_series(records, "clip_ratio/region_mean", "clip fraction"));
  return {reward, length, kl, opt};
}

// Writes curves.svg and report.md into `dir` (atomically). `sections` are
// Markdown blocks appended after the summary.
inline void write_training_report(const std::string& dir, const std::vector<metrics_record>& records,
                                  const std::vector<std::string>& reward_names = {},
                                  const std::vector<std::string>& sections = {},
                                  const std::string& title = "GRPO training report", int accuracy_component = -1) {
  const auto path = [&](const char* f) { return (std::filesystem::path(dir) / f).string(); };
  write_file_atomically(path("curves.svg"), svg_figure(grpo_panels(records, reward_names, accuracy_component), 2));
  std::string md = "# " + title + "\n\n";
  if (!records.empty()) {
    const auto fmt = [](double v) {
      char buf[32];
      if (std::isnan(v)) return std::string("–");
      std::snprintf(buf, sizeof buf, "%.4g", v);
      return std::string(buf);
    };
    // A metric's first and last logged values (a sparse one is not in every record).
    const auto first_last = [&](const std::string& k) {
      double first = std::nan(""), last = std::nan("");
      for (const auto& r : records) {
        const double v = r.get(k);  // NaN when the record lacks it
        if (std::isnan(v)) continue;
        if (std::isnan(first)) first = v;
        last = v;
      }
      return std::pair{first, last};
    };
    md += "Records: " + std::to_string(records.size()) + " (step " + fmt(records.front().get("step")) + " to " +
          fmt(records.back().get("step")) + ").\n\n";
    md += "| metric | first logged | last logged |\n|---|---|---|\n";
    std::vector<std::string> keys = {"reward", "accuracy", "completions/mean_length", "kl", "entropy", "grad_norm",
                                     "learning_rate", heldout_accuracy_key, heldout_length_key};
    for (const auto& n : reward_names) keys.push_back("rewards/" + n + "/mean");
    for (const auto& k : keys) {
      const auto [first, last] = first_last(k);
      if (!std::isnan(first)) md += "| " + k + " | " + fmt(first) + " | " + fmt(last) + " |\n";
    }
    double seconds = 0;
    for (const auto& r : records) seconds += std::isnan(r.get("time/step_s")) ? 0.0 : r.get("time/step_s");
    md += "\nTraining time: " + fmt(seconds) + " s; peak memory " + fmt(first_last("memory/peak_mib").second) +
          " MiB.\n";
  }
  md += "\n![curves](curves.svg)\n";
  for (const auto& s : sections) md += "\n" + s + "\n";
  write_file_atomically(path("report.md"), md);
}

}  // namespace lmrl
