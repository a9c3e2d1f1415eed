// The "twos" task of the trainer tests: prompts "a", "b", "c" by index (one
// token id each, 1..3), a reward for the share of completion tokens equal to
// 2, and trainer options that encode a prompt's letter as that id.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lmrl/reward/rule.hpp"
#include "lmrl/train/grpo_trainer.hpp"

namespace lmrl::testing {

struct letter_prompts {
  grpo_prompt prompt(std::uint64_t i) const { return {std::string(1, static_cast<char>('a' + i % 3)), {"x"}}; }
};

struct twos {  // the share of completion tokens equal to 2
  double operator()(const reward_context& ctx) const {
    if (ctx.completion_ids.empty()) return 0.0;
    double n = 0;
    for (auto id : ctx.completion_ids) n += id == 2;
    return n / static_cast<double>(ctx.completion_ids.size());
  }
};

inline grpo_trainer_options letter_options() {
  grpo_trainer_options o;
  o.encode = [](std::string_view s) { return std::vector<std::int32_t>{static_cast<std::int32_t>(s[0] - 'a' + 1)}; };
  o.decode = [](std::span<const std::int32_t> ids) { return std::string(ids.size(), 'x'); };
  o.terminal = nullptr;
  o.write_report = false;
  return o;
}

}  // namespace lmrl::testing
