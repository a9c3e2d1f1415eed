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

// A series of one metric against "step" (records without it give NaN: a gap).
inline plot_series metric_series(const std::vector<metrics_record>& records, const std::string& key,
                                 std::string label = {}) {
  plot_series s;
  s.name = label.empty() ? key : std::move(label);
  for (const auto& r : records) {
    s.x.push_back(r.get("step"));
    s.y.push_back(r.get(key));
  }
  return s;
}

// The four panels of a GRPO run.
inline std::vector<plot_panel> grpo_panels(const std::vector<metrics_record>& records,
                                           const std::vector<std::string>& reward_names = {}) {
  const auto has = [&](const char* key) {
    for (const auto& r : records)
      if (r.has(key) && std::isfinite(r.get(key))) return true;
    return false;
  };
  plot_panel reward{"reward and accuracy", "step", "", {}};
  reward.series.push_back(metric_series(records, "reward"));
  if (has("accuracy")) reward.series.push_back(metric_series(records, "accuracy"));
  if (has("eval/accuracy")) reward.series.push_back(metric_series(records, "eval/accuracy", "held-out accuracy"));
  for (const auto& n : reward_names)
    if (reward_names.size() > 1) reward.series.push_back(metric_series(records, "rewards/" + n + "/mean", n));
  plot_panel length{"completion length", "step", "tokens", {metric_series(records, "completions/mean_length", "mean")}};
  length.series.push_back(metric_series(records, "completions/max_length", "max"));
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
                                  const std::string& title = "GRPO training report") {
  const auto path = [&](const char* f) { return (std::filesystem::path(dir) / f).string(); };
  write_file_atomically(path("curves.svg"), svg_figure(grpo_panels(records, reward_names), 2));
  std::string md = "# " + title + "\n\n";
  if (!records.empty()) {
    const metrics_record& first = records.front();
    const metrics_record& last = records.back();
    const auto fmt = [](double v) {
      char buf[32];
      if (std::isnan(v)) return std::string("–");
      std::snprintf(buf, sizeof buf, "%.4g", v);
      return std::string(buf);
    };
    md += "Steps logged: " + std::to_string(records.size()) + " (step " + fmt(first.get("step")) + " to " +
          fmt(last.get("step")) + ").\n\n";
    md += "| metric | first step | last step |\n|---|---|---|\n";
    std::vector<std::string> keys = {"reward", "accuracy", "completions/mean_length", "kl", "entropy", "grad_norm",
                                     "learning_rate"};
    for (const auto& n : reward_names) keys.push_back("rewards/" + n + "/mean");
    for (const auto& k : keys)
      if (first.has(k) || last.has(k)) md += "| " + k + " | " + fmt(first.get(k)) + " | " + fmt(last.get(k)) + " |\n";
    double seconds = 0;
    for (const auto& r : records) seconds += std::isnan(r.get("time/step_s")) ? 0.0 : r.get("time/step_s");
    md += "\nTraining time: " + fmt(seconds) + " s; peak memory " + fmt(last.get("memory/peak_mib")) + " MiB.\n";
  }
  md += "\n![curves](curves.svg)\n";
  for (const auto& s : sections) md += "\n" + s + "\n";
  write_file_atomically(path("report.md"), md);
}

}  // namespace lmrl
