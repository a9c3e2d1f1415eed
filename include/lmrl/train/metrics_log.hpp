// metrics_log: one JSONL record per trainer step, a one-line progress display
// on the terminal, and sample completions.
//
// A record is an ordered list of (name, number) pairs. Numbers are written
// with 17 significant digits so that a record read back is bit-identical
// (the resume test compares records that way); NaN and infinities, which JSON
// lacks, are written as null and read back as NaN.
#pragma once

#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lmrl/data/json.hpp"
#include "lmrl/error.hpp"

namespace lmrl {

class metrics_record {
 public:
  // Sets `name` (replacing an earlier value of the same name, keeping its place).
  void set(std::string_view name, double value) {
    for (auto& e : entries_)
      if (e.first == name) {
        e.second = value;
        return;
      }
    entries_.emplace_back(std::string(name), value);
  }
  bool has(std::string_view name) const {
    for (const auto& e : entries_)
      if (e.first == name) return true;
    return false;
  }
  // The value of `name`, or `fallback` when absent.
  double get(std::string_view name, double fallback = std::nan("")) const {
    for (const auto& e : entries_)
      if (e.first == name) return e.second;
    return fallback;
  }
  const std::vector<std::pair<std::string, double>>& entries() const { return entries_; }
  bool operator==(const metrics_record& other) const {
    if (entries_.size() != other.entries_.size()) return false;
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      const auto& a = entries_[i];
      const auto& b = other.entries_[i];
      if (a.first != b.first) return false;
      if (std::isnan(a.second) != std::isnan(b.second)) return false;
      if (!std::isnan(a.second) && a.second != b.second) return false;
    }
    return true;
  }

  // One line of JSON, without the newline.
  std::string to_json() const {
    std::string out = "{";
    char buf[40];
    for (const auto& [name, v] : entries_) {
      if (out.size() > 1) out += ", ";
      json::append_string(out, name);
      out += ": ";
      if (!std::isfinite(v)) {
        out += "null";
      } else if (std::floor(v) == v && std::fabs(v) < 1e15) {
        std::snprintf(buf, sizeof buf, "%.0f", v);
        out += buf;
      } else {
        out += json::number_text(v);
      }
    }
    return out + "}";
  }

  static metrics_record from_json(std::string_view line, std::string_view source = "metrics.jsonl") {
    const json::value doc = json::parse(line, source);
    const json::node root(doc, std::string(source));
    metrics_record r;
    for (const auto& m : root.as_object()) {
      const json::node v = root.member_value(m);
      if (v.type() == json::kind::null)
        r.set(m.first, std::nan(""));
      else
        r.set(m.first, v.as_double());
    }
    return r;
  }

 private:
  std::vector<std::pair<std::string, double>> entries_;
};

// Every record of a JSONL file (an absent file has none).
inline std::vector<metrics_record> read_metrics_jsonl(const std::string& path) {
  std::vector<metrics_record> out;
  std::ifstream in(path);
  std::string line;
  std::size_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty()) continue;
    out.push_back(metrics_record::from_json(line, path + ":" + std::to_string(number)));
  }
  return out;
}

// Peak resident memory of this process in MiB (getrusage: ru_maxrss is KiB on Linux).
inline double peak_memory_mib() {
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return std::nan("");
#ifdef __APPLE__
  return static_cast<double>(usage.ru_maxrss) / (1024.0 * 1024.0);  // bytes on macOS
#else
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
#endif
}

// The short progress line: "step 12/200 | reward 0.41 | acc 0.38 | len 23.1 | kl 0.0012 | 2.3 s/step".
inline std::string progress_line(const metrics_record& r, long long max_steps) {
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(3);
  s << "step " << static_cast<long long>(r.get("step", 0)) << "/" << max_steps;
  const auto add = [&](const char* label, const char* key, int precision) {
    if (!r.has(key)) return;
    s.precision(precision);
    s << " | " << label << " " << r.get(key);
  };
  add("reward", "reward", 3);
  add("acc", "accuracy", 3);
  add("len", "completions/mean_length", 1);
  add("kl", "kl", 4);
  add("lr", "learning_rate", 7);
  add("s/step", "time/step_s", 2);
  return s.str();
}

// The JSONL file of the run, the progress display and sample completions.
class metrics_log {
 public:
  metrics_log() = default;

  // Opens `path` for appending. keep_steps_up_to >= 0 first drops the records
  // of later steps (a resumed run rewrites them); -1 starts a new file.
  // write_file = false neither reads nor writes `path` and keeps this run's
  // records in memory only: a data-parallel rank other than 0 (rank 0 owns the file).
  metrics_log(std::string path, long long keep_steps_up_to, std::ostream* terminal = &std::cout,
              bool write_file = true)
      : path_(std::move(path)), terminal_(terminal) {
    tty_ = terminal_ == &std::cout && ::isatty(STDOUT_FILENO);
    if (!write_file) return;
    std::vector<metrics_record> kept;
    if (keep_steps_up_to >= 0)
      for (auto& r : read_metrics_jsonl(path_))
        if (r.get("step", 0) <= static_cast<double>(keep_steps_up_to)) kept.push_back(std::move(r));
    {
      std::ofstream out(path_, std::ios::trunc);
      detail::require(static_cast<bool>(out), "metrics_log: cannot write \"", path_, "\"");
      for (const auto& r : kept) out << r.to_json() << '\n';
    }
    records_ = std::move(kept);
    file_.open(path_, std::ios::app);
    detail::require(static_cast<bool>(file_), "metrics_log: cannot append to \"", path_, "\"");
  }

  // Appends a record (flushed, so a killed run keeps every finished step).
  void write(const metrics_record& r) {
    records_.push_back(r);
    if (file_.is_open()) {
      file_ << r.to_json() << '\n';
      file_.flush();
    }
  }

  // The progress line: rewritten in place on a terminal, one line per call otherwise.
  void progress(const metrics_record& r, long long max_steps) {
    if (!terminal_) return;
    const std::string line = progress_line(r, max_steps);
    if (tty_) {
      *terminal_ << '\r' << line << "\x1b[K" << std::flush;
      dirty_ = true;
    } else {
      *terminal_ << line << '\n' << std::flush;
    }
  }

  // Prints text on its own lines (ending a progress line first).
  void print(std::string_view text) {
    if (!terminal_) return;
    if (dirty_) *terminal_ << '\n';
    dirty_ = false;
    *terminal_ << text << std::flush;
  }

  void finish() { print(""); }

  const std::vector<metrics_record>& records() const { return records_; }
  const std::string& path() const { return path_; }
  void set_terminal(std::ostream* terminal) {
    terminal_ = terminal;
    tty_ = terminal_ == &std::cout && ::isatty(STDOUT_FILENO);
  }

 private:
  std::string path_;
  std::ofstream file_;
  std::ostream* terminal_ = nullptr;
  bool tty_ = false;
  bool dirty_ = false;
  std::vector<metrics_record> records_;
};

// A sample completion as one JSON line (completions.jsonl).
inline std::string completion_json(long long step, std::string_view prompt, std::string_view completion,
                                   double reward) {
  // escape_non_ascii: the line stays valid JSON whatever bytes the model wrote
  const auto quote = [](std::string_view s) { return json::quoted(s, true); };
  return "{\"step\": " + std::to_string(step) + ", \"prompt\": " + quote(prompt) +
         ", \"completion\": " + quote(completion) +
         ", \"reward\": " + (std::isfinite(reward) ? json::number_text(reward) : "null") + "}";
}

}  // namespace lmrl
