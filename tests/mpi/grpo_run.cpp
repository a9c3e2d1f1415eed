// A small data-parallel GRPO run on the transformer for the kill-and-resume
// check (kill_and_resume.sh):
//
//   mpiexec -n R lmrl_mpi_grpo_run OUTPUT_DIR STEPS [KILL_RANK KILL_STEP]
//
// trains STEPS steps (checkpoints every 2, resuming from OUTPUT_DIR's latest),
// and with KILL_RANK, that rank dies by SIGKILL as step KILL_STEP draws its
// first prompt, as a crashed machine would. Rank 0 writes OUTPUT_DIR/records.txt:
// every logged number but the timings, one step a line, to compare runs.
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>

#include "lmrl/dist/mpi.hpp"
#include "lmrl/reward/weighted_sum.hpp"
#include "lmrl/train/transformer_policy.hpp"
#include "support/model_shapes.hpp"

using namespace lmrl;

namespace {

constexpr int prompts_per_step = 8;

struct prompts_that_can_kill {
  int rank = 0, kill_rank = -1;
  long long kill_step = -1;
  grpo_prompt prompt(std::uint64_t i) const {
    if (rank == kill_rank && static_cast<long long>(i) == (kill_step - 1) * prompts_per_step) std::raise(SIGKILL);
    return {std::string(1, static_cast<char>('a' + i % 5)), {}};
  }
};

struct twos {  // the share of completion tokens equal to 2
  double operator()(const reward_context& ctx) const {
    if (ctx.completion_ids.empty()) return 0.0;
    double n = 0;
    for (auto id : ctx.completion_ids) n += id == 2;
    return n / static_cast<double>(ctx.completion_ids.size());
  }
};

}  // namespace

int main(int argc, char** argv) {
  mpi_session mpi(argc, argv);
  try {
    mpi_communicator world(mpi);
    if (argc != 3 && argc != 5) {
      std::cerr << "usage: " << argv[0] << " OUTPUT_DIR STEPS [KILL_RANK KILL_STEP]\n";
      return 2;
    }
    grpo_config c;
    c.output_dir = argv[1];
    c.max_steps = std::stoi(argv[2]);
    c.learning_rate = 1e-2;
    c.num_generations = 4;
    c.per_device_train_batch_size = 4;
    c.gradient_accumulation_steps = 4;  // mini-batches of 16 sequences
    c.steps_per_generation = 8;         // 8 prompts x 4 = 32 sequences: two optimizer steps a step
    c.max_completion_length = 8;
    c.beta = 0.02;
    c.save_steps = 2;
    c.logging_steps = 1;
    c.seed = 5;
    prompts_that_can_kill prompts{world.rank(), argc == 5 ? std::stoi(argv[3]) : -1,
                                  argc == 5 ? std::stoll(argv[4]) : -1};
    transformer_policy<float> policy(transformer<float>(testing::transformer_shape(12, 32, 2, 4, 2, 48), 4, 0.3));
    grpo_trainer_options o;
    o.encode = [](std::string_view s) { return std::vector<std::int32_t>{static_cast<std::int32_t>(s[0] - 'a' + 1), 3}; };
    o.decode = [](std::span<const std::int32_t> ids) { return std::string(ids.size(), 'x'); };
    o.write_report = false;
    o.communicator = any_communicator::borrowing(world);
    if (c.prompts_per_step() != prompts_per_step) throw error("lmrl_mpi_grpo_run: the config's prompts per step changed");
    grpo_trainer trainer(c, policy, transformer_rollouts<float>({11}), weighted_sum<twos>(twos{}), prompts, o);
    trainer.train();
    if (world.rank() == 0) {
      std::ofstream out(c.output_dir + "/records.txt");
      for (const auto& r : read_metrics_jsonl(c.output_dir + "/metrics.jsonl")) {
        for (const auto& [k, v] : r.entries())
          if (k.rfind("time/", 0) != 0 && k.rfind("tokens_per_s/", 0) != 0 && k.rfind("memory/", 0) != 0)
            out << k << '=' << json::number_text(v) << ' ';
        out << '\n';
      }
    }
  } catch (const std::exception& e) {
    std::cerr << "lmrl_mpi_grpo_run: " << e.what() << '\n';
    mpi.abort(1);
  }
  return 0;
}
