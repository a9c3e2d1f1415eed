// grpo_config: TRL's names and defaults, JSON files, command-line flags, and
// errors that name the key, the value and the allowed range.
#include "lmrl/train/grpo_config.hpp"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "support/testing.hpp"

using namespace lmrl;

TEST_CASE("grpo_config: TRL 1.16 GRPOConfig defaults") {
  const grpo_config c;
  CHECK(c.learning_rate == 1e-6);
  CHECK(c.num_generations == 8);
  CHECK(c.max_completion_length == 512);
  CHECK(c.temperature == 1.0);
  CHECK(c.top_p == 1.0);
  CHECK(c.top_k == 0);
  CHECK_FALSE(c.min_p.has_value());
  CHECK(c.beta == 0.0);
  CHECK(c.num_iterations == 1);
  CHECK(c.epsilon == 0.2);
  CHECK_FALSE(c.delta.has_value());
  CHECK(c.epsilon_high_value() == 0.2);  // None = epsilon
  CHECK(c.importance_sampling_level == "token");
  CHECK(c.scale_rewards == "group");
  CHECK(c.loss_type == "dapo");
  CHECK_FALSE(c.mask_truncated_completions);
  CHECK_FALSE(c.sync_ref_model);
  CHECK(c.ref_model_mixup_alpha == 0.6);
  CHECK(c.ref_model_sync_steps == 512);
  CHECK(c.top_entropy_quantile == 1.0);
  CHECK(c.entropy_coef == 0.0);
  CHECK(c.generation_steps() == c.gradient_accumulation_steps);  // steps_per_generation None
  CHECK_NOTHROW(c.validate());
}

TEST_CASE("grpo_config: derived batch sizes") {
  grpo_config c;
  c.per_device_train_batch_size = 4;
  c.gradient_accumulation_steps = 2;
  c.steps_per_generation = 4;
  c.num_generations = 4;
  c.num_iterations = 3;
  c.max_steps = 10;
  c.warmup_ratio = 0.1;
  CHECK(c.generation_batch_size() == 16);  // 4 * 4
  CHECK(c.prompts_per_step() == 4);        // 16 / 4
  CHECK(c.mini_batch_size() == 8);         // 4 * 2
  CHECK(c.optimizer_steps_per_step() == 6);  // 3 iterations * (4 / 2) mini-batches
  CHECK(c.total_optimizer_steps() == 60);
  CHECK(c.warmup_optimizer_steps() == 6);  // ceil(0.1 * 60)
  c.warmup_steps = 5;
  CHECK(c.warmup_optimizer_steps() == 5);  // warmup_steps wins, as in HF
  CHECK_NOTHROW(c.validate());
}

TEST_CASE("grpo_config: command-line flags, both spellings, optional None, lists, booleans") {
  grpo_config c;
  const char* argv[] = {"prog",         "--learning_rate=3e-4", "--num_generations", "4",     "--epsilon_high",
                        "0.28",         "--delta=None",          "--sync_ref_model", "--beta", "0.04",
                        "--reward_weights=1,0.5", "--reward_funcs", "accuracy,format", "extra", "--max-steps=7",
                        "--dynamic_sampling", "false"};
  const auto rest = apply_grpo_config_flags(c, static_cast<int>(std::size(argv)), argv);
  CHECK(c.learning_rate == 3e-4);
  CHECK(c.num_generations == 4);
  REQUIRE(c.epsilon_high.has_value());
  CHECK(*c.epsilon_high == 0.28);
  CHECK_FALSE(c.delta.has_value());
  CHECK(c.sync_ref_model);
  CHECK(c.beta == 0.04);
  CHECK(c.reward_weights == std::vector<double>{1.0, 0.5});
  CHECK(c.reward_funcs == std::vector<std::string>{"accuracy", "format"});
  CHECK(c.max_steps == 7);
  CHECK_FALSE(c.dynamic_sampling);
  CHECK(rest == std::vector<std::string>{"extra"});
}

TEST_CASE("grpo_config: caller's own flags pass through the callback") {
  grpo_config c;
  std::string task;
  bool quick = false;
  const char* argv[] = {"prog", "--task", "countdown", "--quick", "file.txt", "--seed=7"};
  const auto rest = apply_grpo_config_flags(c, 6, argv, [&](std::string_view k, std::optional<std::string_view> v) {
    if (k == "task" && v) {
      task = std::string(*v);
      return flag_use::used_value;
    }
    if (k == "quick") {
      quick = true;
      return flag_use::used_alone;  // "file.txt" stays positional
    }
    return flag_use::not_mine;
  });
  CHECK(task == "countdown");
  CHECK(quick);
  CHECK(c.seed == 7);
  CHECK(rest == std::vector<std::string>{"file.txt"});
  const char* bad[] = {"prog", "--tsk=x"};
  CHECK_THROWS_WITH_AS(apply_grpo_config_flags(c, 2, bad, [](auto, auto) { return flag_use::not_mine; }),
                       doctest::Contains("unknown key \"tsk\""), error);
}

TEST_CASE("grpo_config: unknown keys name the closest known key") {
  grpo_config c;
  CHECK_THROWS_WITH_AS(set_grpo_config_value(c, "learnig_rate", "1"),
                       doctest::Contains("unknown key \"learnig_rate\"; did you mean \"learning_rate\"?"), error);
  const char* argv[] = {"prog", "--num_generation=4"};
  CHECK_THROWS_WITH_AS(apply_grpo_config_flags(c, 2, argv), doctest::Contains("did you mean \"num_generations\""),
                       error);
  CHECK_THROWS_WITH_AS(apply_grpo_config_json(c, R"({"temprature": 0.7})", "my.json"),
                       doctest::Contains("my.json: unknown key \"temprature\"; did you mean \"temperature\""),
                       error);
  CHECK(closest_key("epsilon_hi", {"epsilon", "epsilon_high", "beta"}) == "epsilon_high");
}

TEST_CASE("grpo_config: values out of range name the key, the value and the range") {
  grpo_config c;
  c.temperature = 0;
  CHECK_THROWS_WITH_AS(c.validate(), doctest::Contains("temperature = 0 is out of range; allowed (0, 100]"), error);
  c = {};
  c.top_p = 1.5;
  CHECK_THROWS_WITH_AS(c.validate(), doctest::Contains("top_p = 1.5 is out of range; allowed (0, 1]"), error);
  c = {};
  c.num_generations = 1;
  CHECK_THROWS_WITH_AS(c.validate(), doctest::Contains("num_generations = 1 is out of range"), error);
  c = {};
  c.per_device_train_batch_size = 6;  // not a multiple of 8 generations
  CHECK_THROWS_WITH_AS(c.validate(), doctest::Contains("must be a multiple of num_generations = 8"), error);
  c = {};
  c.loss_type = "mean";
  CHECK_THROWS_WITH_AS(c.validate(), doctest::Contains("loss_type = \"mean\" is not allowed; allowed values: grpo"),
                       error);
  c = {};
  c.ref_model_mixup_alpha = -0.1;
  CHECK_THROWS_WITH_AS(c.validate(), doctest::Contains("ref_model_mixup_alpha = -0.1 is out of range; allowed [0, 1]"),
                       error);
  c = {};
  c.gradient_accumulation_steps = 2;
  c.steps_per_generation = 3;
  CHECK_THROWS_WITH_AS(c.validate(), doctest::Contains("steps_per_generation = 3 must be a multiple"), error);
  c = {};
  CHECK_THROWS_WITH_AS(set_grpo_config_value(c, "num_generations", "four"),
                       doctest::Contains("num_generations = \"four\" is not an integer"), error);
  CHECK_THROWS_WITH_AS(set_grpo_config_value(c, "beta", "x"), doctest::Contains("beta = \"x\" is not a number"),
                       error);
  CHECK_THROWS_WITH_AS(set_grpo_config_value(c, "sync_ref_model", "maybe"), doctest::Contains("not a boolean"), error);
}

TEST_CASE("grpo_config: JSON file sets keys of every type, the JSON dump reads back the same") {
  grpo_config c;
  apply_grpo_config_json(c, R"({"learning_rate": 5e-5, "num_generations": 16, "min_p": 0.05, "epsilon_high": null,
    "mask_truncated_completions": true, "loss_type": "grpo", "reward_weights": [2, 0.5],
    "reward_funcs": ["accuracy", "format"], "per_device_train_batch_size": 16})");
  CHECK(c.learning_rate == 5e-5);
  CHECK(c.num_generations == 16);
  REQUIRE(c.min_p.has_value());
  CHECK(*c.min_p == 0.05);
  CHECK_FALSE(c.epsilon_high.has_value());
  CHECK(c.mask_truncated_completions);
  CHECK(c.loss_type == "grpo");
  CHECK(c.reward_weights == std::vector<double>{2.0, 0.5});
  CHECK(c.reward_funcs == std::vector<std::string>{"accuracy", "format"});
  CHECK_NOTHROW(c.validate());

  grpo_config back;
  apply_grpo_config_json(back, grpo_config_json(c));
  for (const auto& f : grpo_config_fields()) CHECK(f.get(back) == f.get(c));

  // Text values with quotes, backslashes and control characters dump as valid JSON and read back unchanged.
  c.output_dir = "runs/\"a\"\\b\n\tc\x01";
  grpo_config odd;
  apply_grpo_config_json(odd, grpo_config_json(c));
  CHECK(odd.output_dir == c.output_dir);

  const std::string path = (std::filesystem::temp_directory_path() / ("lmrl_grpo_config_" + std::to_string(::getpid()) + ".json")).string();
  {
    std::ofstream out(path);
    out << R"({"seed": 3, "top_k": 20})";
  }
  grpo_config d;
  const std::string flag = "--config=" + path;
  const char* argv[] = {"prog", flag.c_str(), "--seed=4"};
  apply_grpo_config_flags(d, 3, argv);
  CHECK(d.top_k == 20);
  CHECK(d.seed == 4);  // flags after the file win
  std::remove(path.c_str());
  CHECK_THROWS_WITH_AS(apply_grpo_config_json(d, R"({"top_k": {"a": 1}})", "cfg.json"),
                       doctest::Contains("got an object"), error);
}
