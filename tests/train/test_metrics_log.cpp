// metrics_log: records round-trip bit for bit, the file keeps the steps of a
// resumed run, the progress line, completion lines are valid JSON.
#include "lmrl/train/metrics_log.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "support/testing.hpp"

using namespace lmrl;

static std::string temp_file(const char* name) {
  return (std::filesystem::temp_directory_path() / (std::string("lmrl_t1_") + std::to_string(::getpid()) + name))
      .string();
}

TEST_CASE("metrics_record: JSON round trip is bit-identical, NaN as null") {
  metrics_record r;
  r.set("step", 3);
  r.set("reward", 0.1 + 0.2);  // 0.30000000000000004: needs 17 digits
  r.set("kl", 1e-300);
  r.set("loss", std::nan(""));
  r.set("neg", -2.5);
  r.set("step", 4);  // replaces in place
  CHECK(r.to_json() == R"({"step": 4, "reward": 0.30000000000000004, "kl": 1e-300, "loss": null, "neg": -2.5})");
  const metrics_record back = metrics_record::from_json(r.to_json());
  CHECK(back == r);
  CHECK(back.get("reward") == 0.1 + 0.2);
  CHECK(std::isnan(back.get("loss")));
  CHECK(back.get("absent", -1) == -1);
  metrics_record other = r;
  other.set("reward", 0.3);
  CHECK_FALSE(other == r);
}

TEST_CASE("metrics_log: appends flushed lines, resuming drops later steps") {
  const std::string path = temp_file("metrics.jsonl");
  std::ostringstream terminal;
  {
    metrics_log log(path, -1, &terminal);
    for (int s = 1; s <= 5; ++s) {
      metrics_record r;
      r.set("step", s);
      r.set("reward", s * 0.5);
      log.write(r);
      log.progress(r, 5);
    }
    CHECK(read_metrics_jsonl(path).size() == 5);  // flushed after every write
  }
  // Not a terminal: one plain line per step.
  const std::string shown = terminal.str();
  CHECK(shown.find("step 3/5 | reward 1.500") != std::string::npos);
  CHECK(std::count(shown.begin(), shown.end(), '\n') == 5);
  {
    metrics_log log(path, 3, nullptr);  // resumed from the checkpoint of step 3
    CHECK(log.records().size() == 3);
    metrics_record r;
    r.set("step", 4);
    r.set("reward", 9);
    log.write(r);
  }
  const auto records = read_metrics_jsonl(path);
  REQUIRE(records.size() == 4);
  CHECK(records[2].get("reward") == 1.5);
  CHECK(records[3].get("reward") == 9);

  // Another data-parallel rank's log (write_file = false): neither reads nor
  // touches rank 0's file, keeps its own records in memory.
  {
    metrics_log other(path, 3, nullptr, /*write_file=*/false);
    CHECK(other.records().empty());
    metrics_record r;
    r.set("step", 4);
    r.set("reward", -1);
    other.write(r);
    CHECK(other.records().size() == 1);
  }
  const auto untouched = read_metrics_jsonl(path);
  REQUIRE(untouched.size() == 4);
  CHECK(untouched[3].get("reward") == 9);
  std::filesystem::remove(path);
}

TEST_CASE("progress_line and completion_json") {
  metrics_record r;
  r.set("step", 12);
  r.set("reward", 0.41);
  r.set("accuracy", 0.375);
  r.set("completions/mean_length", 23.14);
  CHECK(progress_line(r, 200) == "step 12/200 | reward 0.410 | acc 0.375 | len 23.1");
  const std::string line = completion_json(7, "2+2=", "<think>\"x\"\n</think>\x01", 1.0);
  CHECK(line == R"({"step": 7, "prompt": "2+2=", "completion": "<think>\"x\"\n</think>\u0001", "reward": 1})");
  CHECK_NOTHROW(json::parse(line));
  CHECK(peak_memory_mib() > 0);
}
