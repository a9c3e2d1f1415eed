// report: curves.svg and report.md from metrics records.
#include "lmrl/train/report.hpp"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "support/testing.hpp"

using namespace lmrl;
namespace fs = std::filesystem;

TEST_CASE("write_training_report: the SVG has the four panels, the Markdown the first/last table") {
  const auto dir = fs::temp_directory_path() / ("lmrl_t1_report_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::vector<metrics_record> records;
  for (int s = 1; s <= 3; ++s) {
    metrics_record r;
    r.set("step", s);
    r.set("reward", 0.25 * s);
    r.set("accuracy", 0.2 * s);
    r.set("completions/mean_length", 10 + s);
    r.set("time/step_s", 0.5);
    if (s != 2) r.set("eval/pass1_greedy", 0.1 * s);  // a sparse held-out metric
    records.push_back(r);
  }
  write_training_report(dir.string(), records, {"accuracy_rule"}, {"## Evaluation\n\nbefore 10%, after 60%"});
  std::stringstream md, svg;
  md << std::ifstream(dir / "report.md").rdbuf();
  svg << std::ifstream(dir / "curves.svg").rdbuf();
  CHECK(md.str().find("| reward | 0.25 | 0.75 |") != std::string::npos);
  CHECK(md.str().find("| accuracy | 0.2 | 0.6 |") != std::string::npos);
  CHECK(md.str().find("| eval/pass1_greedy | 0.1 | 0.3 |") != std::string::npos);  // first and last logged
  CHECK(md.str().find("Training time: 1.5 s") != std::string::npos);  // 3 x 0.5
  CHECK(md.str().find("## Evaluation") != std::string::npos);
  for (const char* title : {"reward and accuracy", "completion length", "KL to reference and entropy", "optimization"})
    CHECK_MESSAGE(svg.str().find(title) != std::string::npos, title);
  const plot_series s = metric_series(records, "reward");
  CHECK(s.y == std::vector<double>{0.25, 0.5, 0.75});
  CHECK(std::isnan(metric_series(records, "kl").y[0]));
  const plot_series gappy = metric_series(records, "eval/pass1_greedy");
  CHECK(gappy.x == std::vector<double>{1, 2, 3});
  CHECK(std::isnan(gappy.y[1]));
  const plot_series joined = metric_series(records, "eval/pass1_greedy", "held-out", missing_points::skip);
  CHECK(joined.x == std::vector<double>{1, 3});
  CHECK(joined.y[0] == doctest::Approx(0.1));
  CHECK(joined.y[1] == doctest::Approx(0.3));
  CHECK(svg.str().find("held-out pass@1 (greedy)") != std::string::npos);
  CHECK(svg.str().find("accuracy_rule reward") == std::string::npos);  // one reward component: no per-rule line

  // Two rules: the one the trainer logs as "accuracy" (accuracy_component) is not drawn twice.
  metrics_record base;
  base.set("step", 0);
  records.insert(records.begin(), base);
  for (auto& r : records) {
    if (r.get("step") == 0) continue;
    r.set("rewards/correct/mean", r.get("accuracy"));
    r.set("rewards/format/mean", 1.0);
  }
  const std::string two = svg_figure(grpo_panels(records, {"correct", "format"}, 0), 2);
  CHECK(two.find("format reward") != std::string::npos);
  CHECK(two.find("correct reward") == std::string::npos);
  CHECK(svg_figure(grpo_panels(records, {"correct", "format"}), 2).find("correct reward") != std::string::npos);
  fs::remove_all(dir);
}
