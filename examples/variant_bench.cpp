// variant_bench: the same base, the same task, the same seeds, a list of
// algorithm variants (GRPO, Dr. GRPO, DAPO, GSPO, RLOO, REINFORCE++,
// REINFORCE++-baseline, CISPO, PPO with a critic), side by side.
//
//   1. pretrain one base with grpo_zero --pretrain_only (or take --base DIR)
//   2. run grpo_zero --base ... for every variant x seed, --jobs at a time,
//      each with cores / jobs OpenMP threads; a finished run (summary.json
//      present) is not run again, so an interrupted bench resumes
//   3. read every run back and write table.md, table.csv and curves.svg
//      (train/variant_bench.hpp)
//
//   variant_bench                                   the quick look (a few minutes)
//   variant_bench --long                            the real comparison (3 seeds, grpo_zero's defaults)
//   variant_bench --variants grpo,ppo --seeds 1,2   a choice; any other --key value goes to every grpo_zero run
//   variant_bench --config bench.json               {"variants": [...], "seeds": [...], "flags": {"key": "value"}}
//   variant_bench --device cuda                     every run on the GPU: grpo_zero_cuda instead of grpo_zero
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "lmrl/data/json.hpp"
#include "lmrl/train/checkpoint.hpp"
#include "lmrl/train/grpo_config.hpp"
#include "lmrl/train/metrics_log.hpp"
#include "lmrl/train/variant_bench.hpp"

extern char** environ;

using namespace lmrl;
namespace fs = std::filesystem;

namespace {

struct bench_settings {
  std::vector<std::string> variants;
  std::vector<std::uint64_t> seeds = {1};
  std::vector<std::string> flags;  // for every grpo_zero run (pretraining included)
  std::string output_dir = "runs/variant_bench";
  std::string base;
  int jobs = 2;
  double target = 0.9;
  bool long_run = false;
};

void read_config_file(bench_settings& b, const std::string& path) {
  const json::value doc = json::parse_file(path);
  const json::node root(doc, path);
  json::node f = root;
  if (root.maybe("variants", f))
    for (std::size_t k = 0; k < f.size(); ++k) b.variants.push_back(f[k].as_string());
  if (root.maybe("seeds", f))
    for (std::size_t k = 0; k < f.size(); ++k) b.seeds.push_back(static_cast<std::uint64_t>(f[k].as_int64()));
  if (root.maybe("flags", f))
    for (const auto& m : f.as_object()) {  // values as a --flag takes them (true, 3e-4, "text", [1, 2])
      b.flags.push_back("--" + m.first);
      b.flags.push_back(json_value_text(f.member_value(m)));
    }
}

bench_settings parse_args(int argc, char** argv) {
  bench_settings b;
  bool seeds_given = false;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    detail::require(a.rfind("--", 0) == 0, "unexpected argument \"", a, "\" (flags are --key value)");
    if (a == "--long") {
      b.long_run = true;
      continue;
    }
    detail::require(i + 1 < args.size(), a, " needs a value");
    const std::string& v = args[++i];
    if (a == "--variants") {
      b.variants = detail::split_list(v);
    } else if (a == "--seeds") {
      b.seeds.clear();
      for (const auto& s : detail::split_list(v)) b.seeds.push_back(detail::parse_integer<std::uint64_t>(a, s));
      seeds_given = true;
    } else if (a == "--jobs") {
      b.jobs = detail::parse_integer<int>(a, v);
      detail::require(b.jobs >= 1 && b.jobs <= 64, "--jobs ", v, " must be in [1, 64]");
    } else if (a == "--target") {
      b.target = detail::parse_real(a, v);
      detail::require(b.target > 0 && b.target <= 1, "--target ", v, " must be in (0, 1]");
    } else if (a == "--output_dir") {
      b.output_dir = v;
    } else if (a == "--base") {
      b.base = v;
    } else if (a == "--config") {
      if (!seeds_given) b.seeds.clear();
      read_config_file(b, v);
      seeds_given = seeds_given || !b.seeds.empty();
    } else {
      b.flags.push_back(a);  // a grpo_zero flag: checked by grpo_zero itself
      b.flags.push_back(v);
    }
  }
  if (b.variants.empty())
    for (const auto& v : known_variants()) b.variants.push_back(v.name);
  for (const auto& v : b.variants) find_variant(v);  // unknown names fail now
  if (b.seeds.empty()) b.seeds = {1};
  if (b.long_run && !seeds_given) b.seeds = {1, 2, 3};
  // The quick look: a weak base and short runs on fewer held-out problems.
  if (!b.long_run) {
    const std::vector<std::string> quick = {"--pretrain_steps", "400", "--max_steps", "8", "--eval_steps", "4",
                                            "--heldout", "100", "--per_device_train_batch_size", "64"};
    b.flags.insert(b.flags.begin(), quick.begin(), quick.end());  // later flags win
  }
  return b;
}

// The program every run starts: grpo_zero, or grpo_zero_cuda (its nvcc build) when the flags ask for
// --device cuda, which grpo_zero refuses. The last --device given wins, as in grpo_zero's own parsing.
std::string run_program(const bench_settings& b) {
  std::string device = "cpu";
  for (std::size_t k = 0; k + 1 < b.flags.size(); k += 2)
    if (b.flags[k] == "--device") device = b.flags[k + 1];
  const std::string name = device == "cuda" ? "grpo_zero_cuda" : "grpo_zero";
  const std::string path = (fs::canonical("/proc/self/exe").parent_path() / name).string();
  detail::require(fs::exists(path), path, " is missing (build the ", name, " target",
                  device == "cuda" ? ", which a build finds nvcc for)" : ")");
  return path;
}

// Runs several commands, `jobs` at a time; stdout and stderr of each go to its log file.
struct command {
  std::vector<std::string> argv;
  std::string log;
  std::string label;
};

void run_all(const std::vector<command>& commands, int jobs, int threads_each) {
  std::vector<std::pair<pid_t, const command*>> running;
  std::size_t next = 0, failed = 0;
  const std::string omp = "OMP_NUM_THREADS=" + std::to_string(threads_each);
  const auto wait_one = [&] {
    int status = 0;
    const pid_t pid = ::wait(&status);
    for (auto it = running.begin(); it != running.end(); ++it)
      if (it->first == pid) {
        const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        std::printf("  %s %s (log %s)\n", ok ? "done  " : "FAILED", it->second->label.c_str(), it->second->log.c_str());
        std::fflush(stdout);
        failed += !ok;
        running.erase(it);
        return;
      }
  };
  while (next < commands.size() || !running.empty()) {
    while (next < commands.size() && static_cast<int>(running.size()) < jobs) {
      const command& c = commands[next++];
      std::vector<char*> args;
      for (const auto& a : c.argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      std::vector<char*> env;
      for (char** e = environ; *e; ++e)
        if (std::string(*e).rfind("OMP_NUM_THREADS=", 0) != 0) env.push_back(*e);
      env.push_back(const_cast<char*>(omp.c_str()));
      env.push_back(nullptr);
      posix_spawn_file_actions_t files;
      posix_spawn_file_actions_init(&files);
      posix_spawn_file_actions_addopen(&files, 1, c.log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      posix_spawn_file_actions_adddup2(&files, 1, 2);
      pid_t pid = 0;
      const int rc = posix_spawn(&pid, args[0], &files, nullptr, args.data(), env.data());
      posix_spawn_file_actions_destroy(&files);
      detail::require(rc == 0, "cannot start ", args[0], " (error ", rc, ")");
      std::printf("  start  %s\n", c.label.c_str());
      std::fflush(stdout);
      running.emplace_back(pid, &c);
    }
    if (!running.empty()) wait_one();
  }
  detail::require(failed == 0, failed, " run(s) failed; see their logs");
}

double summary_accuracy(const json::node& root, const char* which) {
  return root.at(which).at("greedy").at("accuracy").as_double();
}

}  // namespace

int main(int argc, char** argv) try {
  const bench_settings b = parse_args(argc, argv);
  const fs::path out = b.output_dir;
  require_writable_directory(out.string());
  const std::string grpo_zero = run_program(b);
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads_each = std::max(1, cores / b.jobs);
  std::printf("variant_bench: %zu variants x %zu seeds, %d at a time with %d threads each, by %s; output in %s\n",
              b.variants.size(), b.seeds.size(), b.jobs, threads_each, grpo_zero.c_str(), out.c_str());

  // ---- 1. one base for every run
  std::string base = b.base;
  if (base.empty()) {
    const fs::path base_run = out / "base_run";
    base = (base_run / "base").string();
    if (!fs::exists(fs::path(base) / "config.json")) {
      std::printf("pretraining the shared base (%s)\n", base.c_str());
      std::vector<std::string> a = {grpo_zero, "--output_dir", base_run.string(), "--pretrain_only", "1"};
      a.insert(a.end(), b.flags.begin(), b.flags.end());
      fs::create_directories(base_run);
      run_all({{a, (base_run / "log.txt").string(), "pretraining"}}, 1, cores);
    }
  }

  // ---- 2. every variant x seed from that base
  std::vector<command> commands;
  for (const auto& name : b.variants)
    for (const auto seed : b.seeds) {
      const fs::path dir = out / "runs" / name / ("seed" + std::to_string(seed));
      if (fs::exists(dir / "summary.json")) continue;  // finished earlier
      fs::create_directories(dir);
      std::vector<std::string> a = {grpo_zero, "--base", base, "--seed", std::to_string(seed), "--output_dir",
                                    dir.string(), "--eval_samples", "0", "--save_steps", "0"};
      a.insert(a.end(), b.flags.begin(), b.flags.end());
      const auto& f = find_variant(name).flags;
      a.insert(a.end(), f.begin(), f.end());
      commands.push_back({a, (dir / "log.txt").string(), name + " seed " + std::to_string(seed)});
    }
  run_all(commands, b.jobs, threads_each);

  // ---- 3. read back, tabulate, plot
  std::vector<bench_run> runs;
  for (const auto& name : b.variants)
    for (const auto seed : b.seeds) {
      const fs::path dir = out / "runs" / name / ("seed" + std::to_string(seed));
      const std::string summary_path = (dir / "summary.json").string();
      const json::value doc = json::parse_file(summary_path);
      const json::node root(doc, summary_path);
      runs.push_back(summarize_run(name, seed, read_metrics_jsonl((dir / "metrics.jsonl").string()),
                                   summary_accuracy(root, "before"), summary_accuracy(root, "after"), b.target));
    }
  const auto rows = bench_rows(runs);
  std::string command_line;
  for (int k = 0; k < argc; ++k) command_line += (k ? " " : "") + std::string(argv[k]);
  const std::string table = bench_table_markdown(rows, b.target);
  write_file_atomically((out / "table.md").string(),
                        "# Variant bench\n\n`" + command_line + "`; base `" + base + "`; seeds " +
                            std::to_string(b.seeds.size()) + "; " + std::to_string(b.jobs) +
                            " run(s) at a time with " + std::to_string(threads_each) +
                            " thread(s) each. Accuracies are greedy pass@1 on the held-out problems; ± is the "
                            "sample standard deviation over seeds; training seconds leave out evaluations.\n\n" +
                            table + "\n![held-out accuracy](curves.svg)\n");
  write_file_atomically((out / "table.csv").string(), bench_table_csv(rows));
  write_file_atomically((out / "curves.svg").string(), bench_curves_svg(runs));
  std::printf("\n%s\ntable: %s/table.md (and table.csv), plot: %s/curves.svg\n", table.c_str(), out.c_str(),
              out.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "variant_bench: %s\n", e.what());
  return 1;
}
