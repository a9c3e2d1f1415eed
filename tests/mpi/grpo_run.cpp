// A small data-parallel GRPO run on the transformer for the kill-and-resume
// check (kill_and_resume.sh):
//
//   mpiexec -n R lmrl_mpi_grpo_run OUTPUT_DIR STEPS [KILL_RANK KILL_STEP [throw]]
//
// trains STEPS steps (checkpoints every 2, resuming from OUTPUT_DIR's latest),
// and with KILL_RANK, that rank dies by SIGKILL as step KILL_STEP draws its
// first prompt, as a crashed machine would (with "throw": it throws an
// lmrl::error instead, and the program ends the job with MPI_Abort). Rank 0 writes OUTPUT_DIR/records.txt:
// every logged number but the timings, one step a line, to compare runs.
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>

#include "lmrl/dist/mpi.hpp"
#include "mpi/twos_run.hpp"

using namespace lmrl;

int main(int argc, char** argv) {
  mpi_session mpi(argc, argv);
  try {
    mpi_communicator world(mpi);
    if (argc != 3 && argc != 5 && !(argc == 6 && std::string(argv[5]) == "throw")) {
      std::cerr << "usage: " << argv[0] << " OUTPUT_DIR STEPS [KILL_RANK KILL_STEP [throw]]\n";
      return 2;
    }
    grpo_config c = testing::twos_config(argv[1], std::stoll(argv[2]));
    c.save_steps = 2;
    c.logging_steps = 1;
    const testing::twos_prompts prompts{world.rank(), argc >= 5 ? std::stoi(argv[3]) : -1,
                                        argc >= 5 ? std::stoll(argv[4]) : -1, argc == 6};
    transformer_policy<float> policy = testing::twos_policy();
    grpo_trainer_options o = testing::twos_options(any_communicator::borrowing(world));
    o.terminal = &std::cout;
    detail::require(c.prompts_per_step() == testing::twos_prompts_per_step, "lmrl_mpi_grpo_run: ",
                    c.prompts_per_step(), " prompts a step, the kill step counts ", testing::twos_prompts_per_step);
    grpo_trainer trainer(c, policy, transformer_rollouts<float>({11}), weighted_sum<testing::twos>(testing::twos{}),
                         prompts, o);
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
