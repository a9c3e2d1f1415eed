// train/transformer_policy.hpp: the transformer as the trainer's policy and
// generator. Rollouts are generate()'s, their log-probs agree with the
// policy's forward pass, and GRPO steps on the transformer run end to end.
#include "lmrl/train/transformer_policy.hpp"

#include <filesystem>
#include <string>

#include "lmrl/reward/weighted_sum.hpp"
#include "support/model_shapes.hpp"
#include "support/testing.hpp"
#include "support/twos_task.hpp"

using namespace lmrl;

namespace {

transformer_config small_config() { return testing::transformer_shape(10, 16, 1, 2, 1, 16); }

}  // namespace

TEST_CASE("rollouts are generate()'s tokens, and their log-probs are the policy's") {
  transformer_policy<float> policy(transformer<float>(small_config(), 3, 0.5));
  transformer_rollouts<float> rollouts({9});
  const std::vector<std::vector<std::int32_t>> prompts = {{1, 2, 3}, {4}};
  rollout_request req;
  req.num_generations = 3;
  req.max_new_tokens = 5;
  req.seed = 77;
  const rollout_batch<float> r = rollouts(policy, prompts, req);
  REQUIRE(r.completions.size() == 6);

  generation_options o;
  o.num_generations = 3;
  o.max_new_tokens = 5;
  o.eos_token_ids = {9};
  const auto g = generate(policy.model().parameters(), std::span<const std::vector<std::int32_t>>(prompts), o,
                          counter_rng(77));
  for (index_t b = 0; b < 6; ++b) {
    const auto& c = r.completions[static_cast<std::size_t>(b)];
    REQUIRE(static_cast<index_t>(c.size()) == g.lengths[static_cast<std::size_t>(b)]);
    CHECK(r.truncated[static_cast<std::size_t>(b)] == (g.truncated[static_cast<std::size_t>(b)] != 0));
    // The policy's log-probs of prompt + completion equal the sampler's.
    std::vector<std::int32_t> seq = prompts[static_cast<std::size_t>(b / 3)];
    const auto np = static_cast<index_t>(seq.size());
    seq.insert(seq.end(), c.begin(), c.end());
    const auto L = static_cast<index_t>(seq.size());
    dense<float, 2> mask({1, L}), logp({1, L});
    for (index_t t = 0; t < L; ++t) mask(0, t) = 1;
    policy.log_probs({matrix_view<const std::int32_t>(seq.data(), {1, L}), mask.view()}, logp.view(),
                     matrix_view<float>{});
    for (std::size_t t = 0; t < c.size(); ++t) {
      CHECK(c[t] == g.completion_ids(b, static_cast<index_t>(t)));
      CHECK(logp(0, np + static_cast<index_t>(t)) ==
            doctest::Approx(r.logprobs[static_cast<std::size_t>(b)][t]).epsilon(1e-4));
    }
  }
}

TEST_CASE("the decoder follows the policy's updates: new weights, new tokens") {
  transformer_policy<float> policy(transformer<float>(small_config(), 3, 0.5));
  transformer_rollouts<float> rollouts({});
  const std::vector<std::vector<std::int32_t>> prompts = {{1}};
  rollout_request req;
  req.num_generations = 4;
  req.max_new_tokens = 8;
  req.sampling.do_sample = false;
  const auto before = rollouts(policy, prompts, req);
  // All weights zero but the final norm (1) and two embedding rows: every layer then passes its input through,
  // so the last hidden state is normalize(embedding) = all ones, and the tied output layer scores each token by
  // the sum of its embedding row: token 5 (rows of 2) beats the prompt's token 1 (rows of 0.5).
  for (auto& x : policy.parameters()) x = 0.0f;
  for (auto& x : policy.model().parameters().tensor("model.norm.weight")) x = 1.0f;
  auto emb = policy.model().parameters().tensor("model.embed_tokens.weight");
  for (index_t j = 0; j < 16; ++j) emb[static_cast<std::size_t>(5 * 16 + j)] = 2.0f;
  for (index_t j = 0; j < 16; ++j) emb[static_cast<std::size_t>(1 * 16 + j)] = 0.5f;
  const auto after = rollouts(policy, prompts, req);
  bool changed = false;
  for (std::size_t b = 0; b < 4; ++b) changed = changed || after.completions[b] != before.completions[b];
  CHECK(changed);
  for (std::size_t b = 0; b < 4; ++b) CHECK(after.completions[b].front() == 5);
}

namespace {
using testing::letter_prompts;
using testing::twos;

// The "twos" run of the tests below: 12 steps of 4 prompts x 8, 6 tokens each.
grpo_config twos_config(const std::string& dir) {
  std::filesystem::remove_all(dir);
  grpo_config c;
  c.output_dir = dir;
  c.learning_rate = 3e-2;
  c.max_steps = 12;
  c.num_generations = 8;
  c.per_device_train_batch_size = 32;
  c.max_completion_length = 6;
  c.save_steps = 0;
  c.logging_steps = 100;
  return c;
}

std::string temp_dir(const char* name) { return (std::filesystem::temp_directory_path() / name).string(); }
}  // namespace

TEST_CASE("grpo_trainer on the transformer: rewarded tokens become more likely") {
  const std::string dir = temp_dir("lmrl_test_transformer_policy");
  transformer_policy<float> policy(transformer<float>(small_config(), 4, 0.1));
  grpo_config c = twos_config(dir);
  const grpo_trainer_options o = testing::letter_options();
  grpo_trainer trainer(c, policy, transformer_rollouts<float>({}), weighted_sum<twos>(twos{}), letter_prompts{}, o);
  REQUIRE(trainer.train());
  const auto& rec = trainer.records();
  REQUIRE(rec.size() == 12);
  const double first = rec.front().get("reward"), last = rec.back().get("reward");
  CHECK(first < 0.3);  // about 1/10 at random
  CHECK(last > first + 0.2);
  std::filesystem::remove_all(dir);
}

TEST_CASE("transformer_critic::from_policy copies the policy's tensors and starts at V = 0") {
  transformer<float> base(small_config(), 4, 0.1);
  auto critic = transformer_critic<float>::from_policy(base.parameters());
  const auto& p = critic.model().parameters();
  CHECK(p.config().value_head);
  for (const auto& e : base.parameters().layout().entries()) {
    const auto& ce = p.layout().at(e.name);
    CHECK(std::equal(base.parameters().values().begin() + e.offset, base.parameters().values().begin() + e.offset + e.size,
                     p.values().begin() + ce.offset));
  }
  std::vector<std::int32_t> ids{1, 2, 3};
  std::vector<float> m{1, 1, 1}, v(3, 7.0f);
  critic.values({matrix_view<const std::int32_t>(ids.data(), {1, 3}), matrix_view<const float>(m.data(), {1, 3})},
                matrix_view<float>(v.data(), {1, 3}));
  for (float x : v) CHECK(x == 0.0f);
  CHECK_THROWS_WITH_AS(transformer_critic<float>(transformer<float>(small_config(), 1)),
                       doctest::Contains("has no value head"), error);
}

TEST_CASE("ppo_trainer on the transformer: a transformer critic and GAE make rewarded tokens more likely") {
  const std::string dir = temp_dir("lmrl_test_transformer_ppo");
  transformer_policy<float> policy(transformer<float>(small_config(), 4, 0.1));
  auto critic = transformer_critic<float>::from_policy(policy.model().parameters());
  grpo_config c = twos_config(dir);
  c.advantage_estimator = "gae";
  c.kl_coef = 0.01;
  const grpo_trainer_options o = testing::letter_options();
  ppo_trainer trainer(c, policy, critic, transformer_rollouts<float>({}), weighted_sum<twos>(twos{}), letter_prompts{},
                      o);
  REQUIRE(trainer.train());
  const auto& rec = trainer.records();
  REQUIRE(rec.size() == 12);
  const double first = rec.front().get("reward"), last = rec.back().get("reward");
  CHECK(first < 0.3);
  CHECK(last > first + 0.2);
  CHECK(rec.back().get("critic/values_mean") > 0.05);  // the critic left V = 0 and follows the reward
  CHECK(std::isfinite(rec.back().get("critic/value_loss")));
  std::filesystem::remove_all(dir);
}

TEST_CASE("with_value_head adds a zero head or removes it, every shared tensor copied") {
  transformer_parameters<float> base(small_config());
  base.initialize(3, 0.2);
  const auto headed = with_value_head(base);
  CHECK(headed.config().value_head);
  for (float v : headed.values().subspan(static_cast<std::size_t>(headed.layout().at("score.weight").offset))) CHECK(v == 0.0f);
  const auto back = with_value_head(headed, false);
  CHECK_FALSE(back.config().value_head);
  CHECK(std::equal(back.values().begin(), back.values().end(), base.values().begin(), base.values().end()));
}

TEST_CASE("ppo_trainer with the critic on the policy's trunk: one joint loss, the head learns, rewards rise") {
  const std::string dir = temp_dir("lmrl_test_transformer_ppo_shared");
  transformer_policy<float> policy(transformer<float>(with_value_head(transformer<float>(small_config(), 4, 0.1).parameters())));
  transformer_shared_critic<float> critic(policy);
  grpo_config c = twos_config(dir);
  c.save_steps = 6;  // a checkpoint of a critic without weights of its own
  c.advantage_estimator = "gae";
  c.vf_coef = 0.5;
  const grpo_trainer_options o = testing::letter_options();
  ppo_trainer trainer(c, policy, critic, transformer_rollouts<float>({}), weighted_sum<twos>(twos{}), letter_prompts{},
                      o);
  REQUIRE(trainer.train());
  const auto& rec = trainer.records();
  CHECK(rec.back().get("reward") > rec.front().get("reward") + 0.2);
  CHECK(rec.back().get("critic/values_mean") > 0.05);  // the head, trained through the policy's optimizer
  CHECK(rec.back().get("memory/critic_state_mib") == 0.0);
  CHECK_FALSE(std::filesystem::exists(std::filesystem::path(dir) / "checkpoint-12" / "critic.safetensors"));
  CHECK(std::filesystem::exists(std::filesystem::path(dir) / "checkpoint-12" / "model.safetensors"));
  c.critic_warmup = 2;
  c.output_dir = dir + "_warmup";
  CHECK_THROWS_WITH_AS(ppo_trainer(c, policy, critic, transformer_rollouts<float>({}), weighted_sum<twos>(twos{}),
                                   letter_prompts{}, o),
                       doctest::Contains("needs a critic with weights of its own"), error);
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(dir + "_warmup");
}
