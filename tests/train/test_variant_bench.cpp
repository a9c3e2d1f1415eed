// train/variant_bench.hpp: a run's figures from its records, the rows over
// seeds, the Markdown/CSV tables and the plot, on records made by hand.
#include "lmrl/train/variant_bench.hpp"

#include <cmath>
#include <string>
#include <vector>

#include "support/testing.hpp"

using namespace lmrl;

namespace {

// Steps of 10 s, evaluations of 2 s at steps 2 and 4 with the given accuracies.
std::vector<metrics_record> records(double acc2, double acc4, double length, double critic_s = -1,
                                    double critic_mib = 12) {
  std::vector<metrics_record> out;
  for (int step = 1; step <= 4; ++step) {
    metrics_record r;
    r.set("step", step);
    r.set("time/step_s", 10);
    r.set("tokens_per_s/train", 100 * step);
    r.set("tokens_per_s/generate", 1000 * step);
    r.set("memory/peak_mib", 50 + step);
    r.set("completions/mean_length", length + step);
    if (critic_s >= 0) r.set("time/critic_s", critic_s), r.set("memory/critic_state_mib", critic_mib);
    if (step % 2 == 0) {
      r.set("time/eval_s", 2);
      r.set(heldout_accuracy_key, step == 2 ? acc2 : acc4);
      r.set("kl_ref/k1", 0.01 * step);
    }
    out.push_back(r);
  }
  return out;
}

}  // namespace

TEST_CASE("summarize_run: training seconds without evaluations, the first crossing of the target, medians") {
  const bench_run r = summarize_run("grpo", 7, records(0.8, 0.95, 20), 0.5, 0.95, 0.9);
  CHECK(r.train_seconds == doctest::Approx(4 * 10 - 2 * 2));
  CHECK(r.steps_to_target == 4);
  CHECK(r.seconds_to_target == doctest::Approx(36));
  CHECK(r.eval_steps == std::vector<double>{0, 2, 4});
  CHECK(r.eval_accuracy == std::vector<double>{0.5, 0.8, 0.95});
  CHECK(r.eval_seconds == std::vector<double>{0, 18, 36});
  CHECK(r.train_tokens_per_s == doctest::Approx(250));  // median of 100..400
  CHECK(r.generate_tokens_per_s == doctest::Approx(2500));
  CHECK(r.peak_mib == 54);
  CHECK(r.final_length == 24);
  CHECK(r.final_kl == doctest::Approx(0.04));
  const bench_run never = summarize_run("grpo", 8, records(0.6, 0.7, 20), 0.5, 0.7, 0.9);
  CHECK(std::isnan(never.steps_to_target));
  CHECK(std::isnan(never.seconds_to_target));
}

TEST_CASE("bench_rows: mean and sample sd over seeds, reached counts, beats-base, tables and plot") {
  std::vector<bench_run> runs = {
      summarize_run("grpo", 1, records(0.8, 0.92, 20), 0.6, 0.92, 0.9),
      summarize_run("grpo", 2, records(0.9, 0.96, 30), 0.6, 0.96, 0.9),
      summarize_run("ppo", 1, records(0.5, 0.55, 10, 4), 0.6, 0.55, 0.9),
  };
  const auto rows = bench_rows(runs);
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].variant == "grpo");
  CHECK(rows[0].seeds == 2);
  CHECK(rows[0].final_accuracy.mean == doctest::Approx(0.94));
  CHECK(rows[0].final_accuracy.sd == doctest::Approx(std::sqrt(0.0008)));  // (0.02^2 * 2) / (2 - 1)
  CHECK(rows[0].reached == 2);
  CHECK(rows[0].steps_to_target.mean == doctest::Approx(3));  // steps 4 and 2
  CHECK(rows[0].all_beat_base);
  CHECK(rows[1].seeds == 1);
  CHECK(std::isnan(rows[1].final_accuracy.sd));
  CHECK_FALSE(rows[1].all_beat_base);  // 55% < 60%
  CHECK(rows[1].critic_seconds.mean == doctest::Approx(16));
  CHECK(rows[1].critic_state_mib.mean == 12);

  const std::string md = bench_table_markdown(rows, 0.9);
  CHECK(md.find("| grpo | 2 | 60.0 ± 0.0% | 94.0 ± 2.8% | yes | 3.0 ± 1.4 (2/2 reached) |") != std::string::npos);
  CHECK(md.find("| ppo | 1 | 60.0% | 55.0% | no | n/a (0/1 reached) |") != std::string::npos);
  CHECK(md.find("| 16 | 12.00 |") != std::string::npos);  // the critic's cost, for PPO only
  CHECK(md.find("| - | - |") != std::string::npos);       // GRPO has none
  // A critic on the policy's trunk: time, and no state of its own.
  const auto shared = bench_rows({summarize_run("ppo_shared", 1, records(0.5, 0.55, 10, 3, 0), 0.6, 0.55, 0.9)});
  const std::string md_shared = bench_table_markdown(shared, 0.9);
  INFO(md_shared);
  CHECK(md_shared.find("| 12 | 0.00 |") != std::string::npos);

  const std::string csv = bench_table_csv(rows);
  std::vector<std::string> lines;
  for (std::size_t a = 0, b; (b = csv.find('\n', a)) != std::string::npos; a = b + 1) lines.push_back(csv.substr(a, b - a));
  REQUIRE(lines.size() == 3);
  const auto columns = [](const std::string& l) { return std::count(l.begin(), l.end(), ',') + 1; };
  CHECK(columns(lines[0]) == 21);
  CHECK(columns(lines[1]) == 21);
  CHECK(columns(lines[2]) == 21);
  INFO(lines[1]);
  CHECK(lines[1].rfind("grpo,2,0.6,0,0.94,0.0282843,1,2,3,1.41421,27,", 0) == 0);

  const std::string svg = bench_curves_svg(runs);
  CHECK(svg.rfind("<svg", 0) == 0);
  std::size_t polylines = 0;
  for (std::size_t p = 0; (p = svg.find("<polyline", p)) != std::string::npos; ++p) ++polylines;
  CHECK(polylines == 4);  // two panels x two variants
  CHECK(svg.find(">grpo<") != std::string::npos);
  CHECK(svg.find(">ppo<") != std::string::npos);
}

TEST_CASE("every variant the issue names is known, and an unknown one is an error naming the known ones") {
  for (const char* name :
       {"grpo", "dr_grpo", "dapo", "gspo", "rloo", "reinforce_pp", "reinforce_pp_baseline", "cispo", "ppo"})
    CHECK(find_variant(name).name == name);
  CHECK_THROWS_WITH_AS(find_variant("trpo"), doctest::Contains("unknown variant \"trpo\" (known: grpo, dr_grpo"),
                       error);
}
