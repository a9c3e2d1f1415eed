// Uses lmrl the way a user's project does: std containers only, no Eigen, no xtensor.
#include <cmath>
#include <cstdio>
#include <vector>

#include <lmrl/rl/advantages.hpp>
#include <lmrl/tensor.hpp>

int main() {
  const std::vector<double> rewards{1, 0, 0, 1, 1, 1};  // two groups of three
  std::vector<double> advantages(rewards.size());
  const auto report = lmrl::grpo_sequence_advantages(rewards, 3, lmrl::grpo_scale::group_std, advantages);
  // First group {1,0,0}: mean 1/3, unbiased std sqrt(1/3); second group is uniform.
  const double expected = (1 - 1.0 / 3) / (std::sqrt(1.0 / 3) + 1e-4);
  const bool ok = std::abs(advantages[0] - expected) < 1e-12 && advantages[3] == 0 && report.uniform_groups == 1;
  std::printf("consumer: advantage[0] = %.6f (expected %.6f), uniform groups = %td: %s\n", advantages[0], expected,
              report.uniform_groups, ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
