// grpo_trainer: the step learns a trivially learnable reward, DAPO dynamic
// sampling drops uniform groups, a resumed run reproduces an uninterrupted
// one bit for bit, NaN rewards stop the run and keep the checkpoint, a bad
// output directory fails before any generation, SIGINT saves and stops.
#include "lmrl/train/grpo_trainer.hpp"

#include <unistd.h>

#include <filesystem>

#include "lmrl/reward/weighted_sum.hpp"
#include "support/testing.hpp"
#include "train/bigram_grpo.hpp"
#include "train/device_stepped.hpp"

using namespace lmrl;
using namespace lmrl::testing;
namespace fs = std::filesystem;

namespace {

std::string fresh_dir(const std::string& name) {
  const auto p = fs::temp_directory_path() / ("lmrl_t1_grpo_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  return p.string();
}


// Mean of f(record) over records [first, last).
template <class F>
double mean_of(const std::vector<metrics_record>& records, std::size_t first, std::size_t last, F f) {
  double sum = 0;
  for (std::size_t k = first; k < last; ++k) sum += f(records[k]);
  return sum / static_cast<double>(last - first);
}
double mean_of(const std::vector<metrics_record>& records, std::size_t first, std::size_t last, const char* key) {
  return mean_of(records, first, last, [&](const metrics_record& r) { return r.get(key); });
}

// A sampler whose log-probs are 0.25 above the policy's on every token (a quantized engine, say).
struct shifted_generator {
  rollout_batch<double> operator()(bigram_policy& m, std::span<const std::vector<std::int32_t>> prompts,
                                   const rollout_request& r) const {
    rollout_batch<double> out = bigram_generator{}(m, prompts, r);
    for (auto& row : out.logprobs)
      for (double& lp : row) lp += 0.25;
    return out;
  }
};

}  // namespace

TEST_CASE("grpo_trainer: a few steps raise a trivially learnable reward") {
  const std::string dir = fresh_dir("learn");
  bigram_policy model;
  grpo_config c = small_config(dir);
  c.learning_rate = 0.2;
  auto trainer = make_trainer(c, model, make_rewards());
  for (int s = 0; s < 12; ++s) {
    const metrics_record r = trainer.step();
    CHECK(std::isfinite(r.get("loss")));
    CHECK(r.get("kl") >= 0);
  }
  const double first = mean_of(trainer.records(), 0, 3, "accuracy"), last = mean_of(trainer.records(), 9, 12, "accuracy");
  // Initially P(first token = 'c') = 1/8.
  CHECK(first < 0.4);
  CHECK(last > first + 0.3);
  CHECK(trainer.optimizer_steps() == 24);  // 12 steps x 2 iterations x 1 mini-batch
  CHECK(trainer.data_cursor() == 48);      // 12 steps x 4 prompts
  const auto& rec = trainer.records().back();
  for (const char* key : {"reward", "reward_std", "rewards/first_is_c/mean", "rewards/ends/mean", "accuracy",
                          "frac_reward_zero_std", "advantages/mean", "advantages/std", "kl", "entropy",
                          "clip_ratio/region_mean", "completions/mean_length", "completions/min_length",
                          "completions/max_length", "learning_rate", "grad_norm", "time/generate_s",
                          "tokens_per_s/train", "memory/peak_mib", "dynamic_sampling/dropped_groups"})
    CHECK_MESSAGE(rec.has(key), key);
  CHECK(read_metrics_jsonl(dir + "/metrics.jsonl").size() == 12);
  CHECK(rec.get("rollout/logp_gap_max") < 1e-12);  // the sampler is the trained policy itself
  fs::remove_all(dir);
}

TEST_CASE("grpo_trainer: the rollout's log-prob gap to the trainer is logged when old log-probs are recomputed") {
  const std::string dir = fresh_dir("gap");
  bigram_policy model;
  grpo_config c = small_config(dir);
  c.max_steps = 2;
  c.num_iterations = 1;
  c.recompute_old_logprobs = true;
  grpo_trainer<bigram_policy, shifted_generator, decltype(make_rewards()), bigram_prompts> trainer(
      c, model, shifted_generator{}, make_rewards(), bigram_prompts{}, quiet_options(2));
  const metrics_record r = trainer.step();
  CHECK(r.get("rollout/logp_gap_mean") == doctest::Approx(0.25).epsilon(1e-12));
  CHECK(r.get("rollout/logp_gap_max") == doctest::Approx(0.25).epsilon(1e-12));
  CHECK(r.get("rollout/kl_k1") == doctest::Approx(0.25).epsilon(1e-12));  // mean of log pi_rollout - log pi_trainer

  c.recompute_old_logprobs = false;  // the sampler's log-probs are the old ones: nothing to compare
  bigram_policy other;
  grpo_trainer<bigram_policy, shifted_generator, decltype(make_rewards()), bigram_prompts> plain(
      c, other, shifted_generator{}, make_rewards(), bigram_prompts{}, quiet_options(2));
  CHECK_FALSE(plain.step().has("rollout/logp_gap_mean"));
  fs::remove_all(dir);
}

TEST_CASE("grpo_trainer: the rollout correction weights each token's objective by pi_old / pi_rollout") {
  // shifted_generator's log-probs are 0.25 above the trainer's: pi_old / pi_rollout = exp(-0.25).
  using trainer_t = grpo_trainer<bigram_policy, shifted_generator, decltype(make_rewards()), bigram_prompts>;
  const std::string dir = fresh_dir("correction");
  grpo_config c = small_config(dir);
  c.max_steps = 2;
  c.num_iterations = 1;
  c.beta = 0;  // the loss is the objective term alone, so it scales with the weight
  c.recompute_old_logprobs = true;
  bigram_policy plain_model, truncated_model, masked_model;
  trainer_t plain(c, plain_model, shifted_generator{}, make_rewards(), bigram_prompts{}, quiet_options(2));
  const metrics_record p = plain.step();
  CHECK_FALSE(p.has("rollout/is_ratio_mean"));

  c.recompute_old_logprobs = false;  // the correction recomputes pi_old by itself
  c.vllm_importance_sampling_correction = true;
  c.vllm_importance_sampling_mode = "token_truncate";
  trainer_t truncated(c, truncated_model, shifted_generator{}, make_rewards(), bigram_prompts{}, quiet_options(2));
  const metrics_record t = truncated.step();
  const double w = std::exp(-0.25);
  CHECK(t.get("rollout/is_ratio_mean") == doctest::Approx(w).epsilon(1e-12));
  CHECK(t.get("rollout/is_ratio_min") == doctest::Approx(w).epsilon(1e-12));
  CHECK(t.get("rollout/is_ratio_max") == doctest::Approx(w).epsilon(1e-12));
  CHECK(t.get("rollout/is_fraction_corrected") == 0.0);
  CHECK(t.get("loss") == doctest::Approx(w * p.get("loss")).epsilon(1e-9));
  CHECK(t.get("grad_norm") == doctest::Approx(w * p.get("grad_norm")).epsilon(1e-9));

  c.vllm_importance_sampling_mode = "token_mask";
  c.vllm_importance_sampling_cap = 0.5;  // exp(-0.25) > 0.5: every token is masked out
  trainer_t masked(c, masked_model, shifted_generator{}, make_rewards(), bigram_prompts{}, quiet_options(2));
  const auto before = std::vector<double>(masked_model.parameters().begin(), masked_model.parameters().end());
  const metrics_record m = masked.step();
  CHECK(m.get("rollout/is_fraction_corrected") == 1.0);
  CHECK(m.get("rollout/is_ratio_max") == 0.0);
  CHECK(m.get("loss") == 0.0);
  CHECK(m.get("grad_norm") == 0.0);
  CHECK(std::vector<double>(masked_model.parameters().begin(), masked_model.parameters().end()) == before);

  c.vllm_importance_sampling_mode = "tokens_truncate";
  CHECK_THROWS_WITH_AS(c.validate(), doctest::Contains("vllm_importance_sampling_mode"), lmrl::error);
  fs::remove_all(dir);
}

TEST_CASE("grpo_trainer: gradient accumulation equals one big batch") {
  const std::string d1 = fresh_dir("acc1"), d2 = fresh_dir("acc2");
  grpo_config a = small_config(d1), b = small_config(d2);
  a.num_iterations = b.num_iterations = 1;
  b.per_device_train_batch_size = 16;
  b.gradient_accumulation_steps = 1;  // same generation batch of 16, one micro-batch
  for (const char* loss : {"dapo", "grpo", "dr_grpo", "bnpo"}) {
    a.loss_type = b.loss_type = loss;
    bigram_policy ma, mb;
    auto ta = make_trainer(a, ma, make_rewards());
    auto tb = make_trainer(b, mb, make_rewards());
    ta.step();
    tb.step();
    for (std::size_t k = 0; k < ma.params.size(); ++k) CHECK(ma.params[k] == doctest::Approx(mb.params[k]).epsilon(1e-9));
    fs::remove_all(d1);
    fs::remove_all(d2);
  }
}

TEST_CASE("grpo_trainer: dynamic sampling drops groups whose rewards are all equal and refills") {
  const std::string dir = fresh_dir("dapo");
  grpo_config c = small_config(dir);
  c.dynamic_sampling = true;
  c.max_refill_rounds = 50;
  c.num_iterations = 1;
  c.beta = 0;
  bigram_policy model;
  // Only the first-token rule: a group is uniform unless its 4 completions disagree on 'c'.
  auto trainer = make_trainer(c, model, one_rule(first_is_c));
  const metrics_record r = trainer.step();
  CHECK(r.get("dynamic_sampling/dropped_groups") > 0);
  CHECK(r.get("frac_reward_zero_std") == 0);  // every kept group carries signal
  CHECK(r.get("dynamic_sampling/rounds") > 1);
  CHECK(trainer.data_cursor() == static_cast<std::uint64_t>(4 + r.get("dynamic_sampling/dropped_groups")));

  const std::string dir2 = fresh_dir("nodapo");
  c.output_dir = dir2;
  c.dynamic_sampling = false;
  bigram_policy model2;
  auto plain = make_trainer(c, model2, one_rule(first_is_c));
  const metrics_record p = plain.step();
  CHECK(p.get("dynamic_sampling/dropped_groups") == 0);
  CHECK(p.get("frac_reward_zero_std") > 0);  // the same first round has uniform groups
  fs::remove_all(dir);
  fs::remove_all(dir2);
}

namespace {
// Runs ca.max_steps steps straight (output a), and 3 steps with a checkpoint
// at 2, a kill, and a resume in a fresh process state (output b); every record
// but timings must agree bit for bit. with_trainer(config, use) builds fresh
// models and a trainer and calls use(trainer).
template <class WithTrainer>
void check_resume_bit_identical(const grpo_config& ca, const grpo_config& cb, WithTrainer with_trainer) {
  with_trainer(ca, [](auto& t) { CHECK(t.train()); });
  with_trainer(cb, [&](auto& t) {  // a SIGKILL after step 3: the object is dropped without saving
    for (int s = 1; s <= 3; ++s) {
      t.step();
      if (s % 2 == 0) t.save();
    }
    CHECK(read_metrics_jsonl(cb.output_dir + "/metrics.jsonl").size() == 3);
  });
  with_trainer(cb, [](auto& t) {  // everything comes from the checkpoint
    CHECK(t.current_step() == 2);
    CHECK(t.records().size() == 2);  // step 3's record is dropped and redone
    CHECK(t.train());
  });
  const auto ra = read_metrics_jsonl(ca.output_dir + "/metrics.jsonl");
  const auto rb = read_metrics_jsonl(cb.output_dir + "/metrics.jsonl");
  const auto n = static_cast<std::size_t>(ca.max_steps);
  REQUIRE(ra.size() == n);
  REQUIRE(rb.size() == n);
  for (std::size_t k = 0; k < n; ++k) CHECK_MESSAGE(same_except_timing(ra[k], rb[k]), "step ", k + 1);
  fs::remove_all(ca.output_dir);
  fs::remove_all(cb.output_dir);
}
// The GPU policy's contract (parameter_uploads::when_changed) on the CPU: the trainer changes `host`, while
// the passes and the rollouts run on `device`, a copy refreshed only by parameters_changed(). A trainer that
// changed the parameters without saying so would train on stale weights and leave the plain run's numbers.
struct mirrored_bigram {
  using value_type = double;
  std::vector<double> host = bigram_policy{}.params;
  bigram_policy device;
  int changes = 0;
  std::span<double> parameters() { return host; }
  std::span<double> gradients() { return device.gradients(); }
  void zero_grad() { device.zero_grad(); }
  void parameters_changed() {
    device.params = host;
    ++changes;
  }
  void log_probs(const token_batch<double>& b, matrix_view<double> logp, matrix_view<double> entropy) const {
    device.log_probs(b, logp, entropy);
  }
  void backward(const token_batch<double>& b, matrix_view<const double> grad_logp,
                matrix_view<const double> grad_entropy) {
    device.backward(b, grad_logp, grad_entropy);
  }
};
static_assert(TrainablePolicy<mirrored_bigram>);

using device_stepped_bigram = device_stepped<bigram_policy>;
static_assert(DeviceSteppedModel<device_stepped_bigram>);

// Where a wrapper's passes and rollouts run.
bigram_policy& device_of(mirrored_bigram& m) { return m.device; }
bigram_policy& device_of(device_stepped_bigram& m) { return *m.device; }

// The rollouts of a wrapper's device model.
struct device_generator {
  template <class Wrapper>
  rollout_batch<double> operator()(Wrapper& m, std::span<const std::vector<std::int32_t>> prompts,
                                   const rollout_request& r) const {
    return bigram_generator{}(device_of(m), prompts, r);
  }
};

template <class Wrapper, class Rewards>
auto make_wrapper_trainer(const grpo_config& c, Wrapper& m, Rewards r) {
  return grpo_trainer<Wrapper, device_generator, Rewards, bigram_prompts>(c, m, device_generator{}, r,
                                                                          bigram_prompts{}, quiet_options(Rewards::size));
}

// Trains `plain` on ca and `wrapper` on cb (6 steps each, beta > 0: the reference swapped in and out each step,
// two optimizer steps a step, the reference synced every 3), checks every step's record is the same but for
// timing, and hands both trainers to `after` before they go.
template <class Wrapper, class After>
void check_same_run_as_plain(grpo_config ca, grpo_config cb, bigram_policy& plain, Wrapper& wrapper, After after) {
  ca.max_steps = cb.max_steps = 6;
  ca.sync_ref_model = cb.sync_ref_model = true;
  ca.ref_model_sync_steps = cb.ref_model_sync_steps = 3;
  {
    auto ta = make_trainer(ca, plain, make_rewards());
    auto tb = make_wrapper_trainer(cb, wrapper, make_rewards());
    CHECK(ta.train());
    CHECK(tb.train());
    after(ta, tb);
  }
  const auto ra = read_metrics_jsonl(ca.output_dir + "/metrics.jsonl");
  const auto rb = read_metrics_jsonl(cb.output_dir + "/metrics.jsonl");
  REQUIRE(ra.size() == 6);
  REQUIRE(rb.size() == 6);
  CHECK(rb.back().get("grad_norm") > 0);
  for (std::size_t k = 0; k < 6; ++k) CHECK_MESSAGE(same_except_timing(ra[k], rb[k]), "step ", k + 1);
  fs::remove_all(ca.output_dir);
  fs::remove_all(cb.output_dir);
}

// A wrapper trained 6 steps with checkpoints every 2 (the reference synced every 3 optimizer steps), killed after
// 3 and resumed, against one never stopped.
template <class Wrapper>
void check_wrapper_resumes(const char* name) {
  const std::string n = name;
  grpo_config cc = small_config(fresh_dir(n + "_uninterrupted")), cd = small_config(fresh_dir(n + "_killed"));
  cc.max_steps = cd.max_steps = 6;
  cc.save_steps = cd.save_steps = 2;
  cc.sync_ref_model = cd.sync_ref_model = true;  // the checkpoint's reference is not the initial parameters
  cc.ref_model_sync_steps = cd.ref_model_sync_steps = 3;
  check_resume_bit_identical(cc, cd, [](const grpo_config& c, auto&& use) {
    bigram_policy on_device;
    Wrapper m = [&] {
      if constexpr (std::is_same_v<Wrapper, mirrored_bigram>)
        return mirrored_bigram{};
      else
        return Wrapper(&on_device);
    }();
    auto t = make_wrapper_trainer(c, m, make_rewards());
    use(t);
  });
}

}  // namespace

TEST_CASE("grpo_trainer tells a mirroring policy of every change: steps, reference swaps and syncs, resumes") {
  bigram_policy plain;
  mirrored_bigram mirrored;
  check_same_run_as_plain(small_config(fresh_dir("plain")), small_config(fresh_dir("mirrored")), plain, mirrored,
                          [](auto&, auto&) {});
  CHECK(mirrored.changes >= 6 * (2 + 2));  // per step: two optimizer steps, the reference in and out
  CHECK(mirrored.host == plain.params);
  // A resumed run loads the parameters from its checkpoint: a change too (the fresh copy starts from zeros).
  check_wrapper_resumes<mirrored_bigram>("mirrored");
}

TEST_CASE("grpo_trainer steps a device-stepped policy and swaps its reference where it keeps them: the host run's numbers") {
  grpo_config ca = small_config(fresh_dir("host_steps")), cb = small_config(fresh_dir("device_steps"));
  ca.max_grad_norm = cb.max_grad_norm = 0.05;  // clipped on the "device"
  bigram_policy plain, on_device;
  device_stepped_bigram stepped(&on_device);
  check_same_run_as_plain(ca, cb, plain, stepped, [&](auto& ta, auto& tb) {
    CHECK(tb.optimizer().step_count() == ta.optimizer().step_count());
    CHECK(std::ranges::equal(tb.optimizer().state(), ta.optimizer().state()));  // pulled from the "device"
    CHECK(tb.records().back().get("grad_norm") > ca.max_grad_norm);            // the clipping applied
  });
  CHECK(stepped.steps == 6 * 2);       // two optimizer steps a step, all on the "device"
  CHECK(stepped.gradient_reads == 0);  // the gradient never came to the host
  // The parameters never came to the host: the reference's swaps (two a step) and its syncs ran beside them on
  // the "device".
  CHECK(stepped.parameter_downloads == 0);
  CHECK(stepped.reference.size() == plain.params.size());
  CHECK(std::ranges::equal(stepped.parameters(), plain.params));
  // A checkpoint holds the device's moments (pulled before writing) and hands them back on resume.
  check_wrapper_resumes<device_stepped_bigram>("device");
}

TEST_CASE("reference_copy on the host: hold, swap, TRL's mix-up by hand, values, load, and its refusals") {
  bigram_policy m;
  std::ranges::fill(m.params, 1.0);
  reference_copy<double> ref;
  CHECK_THROWS_WITH_AS(ref.swap(m), doctest::Contains("no reference is held"), lmrl::error);
  ref.hold(m);  // pi_ref = 1 everywhere
  std::ranges::fill(m.params, 3.0);
  ref.mixup(m, 0.25);  // 0.25 * 3 + 0.75 * 1
  CHECK(std::ranges::all_of(ref.values(m), [](double v) { return v == 1.5; }));
  ref.swap(m);
  CHECK(std::ranges::all_of(m.params, [](double v) { return v == 1.5; }));
  CHECK(std::ranges::all_of(ref.values(m), [](double v) { return v == 3.0; }));
  ref.load(m, [](std::span<double> to) { std::ranges::fill(to, 7.0); });
  CHECK(std::ranges::all_of(ref.values(m), [](double v) { return v == 7.0; }));
  std::vector<double> two(2);
  CHECK_THROWS_WITH_AS(mixup_reference(std::span<double>(two), std::span<const double>(m.params), 0.5),
                       doctest::Contains("the reference has 2 values, the policy 64"), lmrl::error);
}

TEST_CASE("grpo_trainer: resuming after a kill gives bit-identical records") {
  grpo_config ca = small_config(fresh_dir("uninterrupted")), cb = small_config(fresh_dir("killed"));
  ca.max_steps = cb.max_steps = 6;
  ca.save_steps = cb.save_steps = 2;
  ca.sync_ref_model = cb.sync_ref_model = true;
  ca.ref_model_sync_steps = cb.ref_model_sync_steps = 3;
  check_resume_bit_identical(ca, cb, [](const grpo_config& c, auto&& use) {
    bigram_policy m;
    auto t = make_trainer(c, m, make_rewards());
    use(t);
  });
}

TEST_CASE("grpo_trainer: all-NaN rewards stop the run with a clear message and keep the last checkpoint") {
  const std::string dir = fresh_dir("nan");
  grpo_config c = small_config(dir);
  c.save_steps = 1;
  c.max_steps = 5;
  auto steps = std::make_shared<int>(0);
  auto flaky = [steps](const reward_context& ctx) {
    return *steps >= 3 ? std::nan("") : (ctx.completion.size() > 1 ? 1.0 : 0.0);
  };
  bigram_policy model;
  auto trainer = make_trainer(c, model, one_rule(flaky));
  trainer.step();
  trainer.save();
  ++*steps;
  trainer.step();
  trainer.save();
  *steps = 3;
  const std::vector<double> before = model.params;
  CHECK_THROWS_WITH_AS(trainer.step(), doctest::Contains("step 3: every reward of the 16 completions is NaN"), error);
  CHECK(model.params == before);  // no update
  const auto latest = latest_checkpoint(dir);
  REQUIRE(latest.has_value());
  CHECK(fs::path(*latest).filename() == "checkpoint-2");
  CHECK(fs::exists(*latest + "/model.safetensors"));
  fs::remove_all(dir);
}

TEST_CASE("grpo_trainer: an unwritable output_dir fails before any generation, bad config names the key") {
  const std::string dir = fresh_dir("unwritable");
  fs::create_directories(dir);
  { std::ofstream(dir + "/file") << "x"; }
  grpo_config c = small_config(dir + "/file/out");
  int calls = 0;
  bigram_policy model;
  CHECK_THROWS_WITH_AS(make_trainer(c, model, make_rewards(), &calls), doctest::Contains("cannot be created"), error);
  CHECK(calls == 0);
  c = small_config(dir + "/ok");
  c.top_p = 0;
  CHECK_THROWS_WITH_AS(make_trainer(c, model, make_rewards()), doctest::Contains("top_p = 0 is out of range"), error);
  fs::remove_all(dir);
}

TEST_CASE("grpo_trainer: a stop request (Ctrl-C) saves the current step and returns") {
  const std::string dir = fresh_dir("sigint");
  grpo_config c = small_config(dir);
  bigram_policy model;
  auto trainer = make_trainer(c, model, make_rewards());
  trainer.step();
  request_stop();
  CHECK_FALSE(trainer.train());
  clear_stop_request();
  const auto latest = latest_checkpoint(dir);
  REQUIRE(latest.has_value());
  CHECK(fs::path(*latest).filename() == "checkpoint-1");
  fs::remove_all(dir);
}

// ---------------------------------------------------------------- other estimators, PPO with a critic


TEST_CASE("grpo_trainer: rloo, reinforce_pp (with the KL in the reward) and reinforce_pp_baseline learn too") {
  for (const char* name : {"rloo", "reinforce_pp", "reinforce_pp_baseline"}) {
    const std::string dir = fresh_dir(std::string("estimator_") + name);
    bigram_policy model;
    grpo_config c = small_config(dir);
    c.learning_rate = 0.2;
    c.advantage_estimator = name;
    if (std::string(name) == "reinforce_pp") c.kl_coef = 0.01, c.beta = 0;
    auto trainer = make_trainer(c, model, make_rewards());
    for (int s = 0; s < 12; ++s) trainer.step();
    const double first = mean_of(trainer.records(), 0, 3, "accuracy");
    const double last = mean_of(trainer.records(), 9, 12, "accuracy");
    INFO(name, ": accuracy ", first, " -> ", last);
    CHECK(last > first + 0.3);
    if (std::string(name) == "reinforce_pp") {
      CHECK(trainer.records().back().has("kl_penalty/kl"));
      CHECK(trainer.records().back().get("kl_penalty/coef") == 0.01);
    }
    fs::remove_all(dir);
  }
}

TEST_CASE("ppo_trainer: GAE with a critic learns, the critic's loss falls, its metrics are logged") {
  const std::string dir = fresh_dir("ppo_learn");
  bigram_policy model;
  bigram_critic critic;
  grpo_config c = ppo_config(dir);
  c.learning_rate = 0.2;
  c.max_steps = 16;
  auto trainer = make_ppo_trainer(c, model, critic, make_rewards());
  for (int s = 0; s < 16; ++s) trainer.step();
  const auto& all = trainer.records();
  const double first = mean_of(all, 0, 3, "accuracy"), last = mean_of(all, 13, 16, "accuracy");
  const double first_vloss = mean_of(all, 0, 3, "critic/value_loss"), last_vloss = mean_of(all, 13, 16, "critic/value_loss");
  const double last_gap = mean_of(all, 13, 16, [](const metrics_record& r) {
    return std::abs(r.get("critic/values_mean") - r.get("critic/returns_mean"));
  });
  CHECK(first < 0.4);
  CHECK(last > first + 0.3);
  CHECK(last_vloss < first_vloss / 2);
  CHECK(last_gap < 0.2);  // the critic (0 at first) follows the return, which rose from ~0.2 to ~1
  const auto& rec = trainer.records().back();
  for (const char* key : {"critic/value_loss", "critic/clip_fraction", "critic/explained_variance", "critic/values_mean",
                          "critic/returns_mean", "critic/grad_norm", "critic/learning_rate", "kl_penalty/kl",
                          "kl_penalty/coef", "kl_ref/k1", "time/critic_s", "memory/critic_state_mib"})
    CHECK_MESSAGE(rec.has(key), key);
  CHECK(rec.get("kl_penalty/kl") > 0);
  CHECK(rec.get("memory/critic_state_mib") == doctest::Approx(4.0 * 9 * 8 / (1024.0 * 1024.0)));
  fs::remove_all(dir);
}

TEST_CASE("ppo_trainer: critic_warmup trains the critic alone, and the adaptive KL coefficient falls below target") {
  const std::string dir = fresh_dir("ppo_warmup");
  bigram_policy model;
  bigram_critic critic;
  grpo_config c = ppo_config(dir);
  c.critic_warmup = 2;
  c.kl_ctrl_type = "adaptive";
  c.kl_target = 1e3;  // any KL is below it: the coefficient falls
  c.kl_horizon = 10;
  auto trainer = make_ppo_trainer(c, model, critic, make_rewards());
  trainer.step();
  trainer.step();
  CHECK(trainer.optimizer_steps() == 0);
  for (double p : model.params) CHECK(p == 0.0);
  bool critic_moved = false;
  for (double p : critic.params) critic_moved = critic_moved || p != 0.0;
  CHECK(critic_moved);
  trainer.step();
  CHECK(trainer.optimizer_steps() > 0);
  const auto& rec = trainer.records();
  CHECK(rec[1].get("kl_penalty/coef") == doctest::Approx(0.05 * (1 - 0.2 * 16 / 10.0)));  // clamped error -0.2, 16 sequences
  CHECK(rec[2].get("kl_penalty/coef") < rec[1].get("kl_penalty/coef"));
  fs::remove_all(dir);
}

TEST_CASE("ppo_trainer: resuming after a kill gives bit-identical records (critic, its optimizer, adaptive KL)") {
  grpo_config ca = ppo_config(fresh_dir("ppo_uninterrupted")), cb = ppo_config(fresh_dir("ppo_killed"));
  ca.max_steps = cb.max_steps = 5;
  ca.save_steps = cb.save_steps = 2;
  ca.kl_ctrl_type = cb.kl_ctrl_type = "adaptive";
  ca.kl_target = cb.kl_target = 0.01;
  ca.kl_horizon = cb.kl_horizon = 20;
  check_resume_bit_identical(ca, cb, [](const grpo_config& c, auto&& use) {
    bigram_policy m;
    bigram_critic v;
    auto t = make_ppo_trainer(c, m, v, make_rewards());
    use(t);
  });
}

TEST_CASE("ppo_trainer: gae without a critic, or a critic without gae, is an error") {
  const std::string dir = fresh_dir("ppo_errors");
  bigram_policy m;
  bigram_critic v;
  grpo_config c = ppo_config(dir);
  CHECK_THROWS_WITH_AS(make_trainer(c, m, make_rewards()), doctest::Contains("\"gae\" needs a critic"), error);
  c.advantage_estimator = "grpo";
  CHECK_THROWS_WITH_AS(make_ppo_trainer(c, m, v, make_rewards()),
                       doctest::Contains("a critic is trained only with advantage_estimator \"gae\""), error);
  c.advantage_estimator = "gae";
  c.cliprange_value = 0;
  CHECK_THROWS_WITH_AS(make_ppo_trainer(c, m, v, make_rewards()), doctest::Contains("cliprange_value"), error);
  fs::remove_all(dir);
}

TEST_CASE("grpo_trainer: log_completions_steps writes the first completions, decoded, to completions.jsonl") {
  const std::string dir = fresh_dir("completions");
  grpo_config c = small_config(dir);
  c.log_completions_steps = 1;
  c.num_completions_to_print = 3;
  bigram_policy model;
  auto trainer = make_trainer(c, model, make_rewards());
  trainer.step();
  trainer.step();
  std::ifstream in(dir + "/completions.jsonl");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  REQUIRE(lines.size() == 6);  // 3 a step
  for (const auto& line : lines) {
    const json::value v = json::parse(line, "completions.jsonl");
    const json::node n(v, "completions.jsonl");
    const std::string text = n.at("completion").as_string();
    CHECK(!text.empty());
    CHECK(text.find_first_not_of("abcdefg$") == std::string::npos);  // bigram_decode's letters
    CHECK(n.at("prompt").as_string().size() == 2);
  }
  CHECK(lines[3].find("\"step\": 2") != std::string::npos);
  fs::remove_all(dir);
}
