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
    records.push_back(r);
  }
  write_training_report(dir.string(), records, {"accuracy_rule"}, {"## Evaluation\n\nbefore 10%, after 60%"});
  std::stringstream md, svg;
  md << std::ifstream(dir / "report.md").rdbuf();
  svg << std::ifstream(dir / "curves.svg").rdbuf();
  CHECK(md.str().find("| reward | 0.25 | 0.75 |") != std::string::npos);
  CHECK(md.str().find("| accuracy | 0.2 | 0.6 |") != std::string::npos);
  CHECK(md.str().find("Training time: 1.5 s") != std::string::npos);  // 3 x 0.5
  CHECK(md.str().find("## Evaluation") != std::string::npos);
  for (const char* title : {"reward and accuracy", "completion length", "KL to reference and entropy", "optimization"})
    CHECK_MESSAGE(svg.str().find(title) != std::string::npos, title);
  const plot_series s = metric_series(records, "reward");
  CHECK(s.y == std::vector<double>{0.25, 0.5, 0.75});
  CHECK(std::isnan(metric_series(records, "kl").y[0]));
  fs::remove_all(dir);
}
