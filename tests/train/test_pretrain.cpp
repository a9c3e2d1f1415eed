// train/pretrain.hpp: the next-token loss is the mean NLL of the marked
// tokens (checked against the model's own log-probs), its gradient matches
// central finite differences, and pretraining learns a small language.
#include "lmrl/train/pretrain.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include "support/model_shapes.hpp"
#include "support/testing.hpp"
#include "train/device_stepped.hpp"

using namespace lmrl;

namespace {

transformer_config small_config() { return testing::transformer_shape(11, 16, 2, 4, 2, 24); }

// Examples of random tokens (vocabulary 11) of the given lengths; the loss of
// those longer than `long_from` starts at `loss_from`, of the others at 0.
std::vector<pretrain_example> random_examples(unsigned seed, std::initializer_list<std::size_t> lengths,
                                              std::size_t long_from, std::size_t loss_from) {
  std::mt19937 gen(seed);
  std::vector<pretrain_example> batch;
  for (std::size_t len : lengths) {
    pretrain_example e;
    for (std::size_t t = 0; t < len; ++t) e.tokens.push_back(static_cast<std::int32_t>(gen() % 11));
    e.loss_from = len > long_from ? loss_from : 0;
    batch.push_back(std::move(e));
  }
  return batch;
}

std::vector<pretrain_example> two_examples() {
  return {{{1, 4, 2, 7, 3}, 2}, {{5, 6, 1}, 0}};
}

}  // namespace

TEST_CASE("next_token_loss is the mean NLL of the tokens from loss_from on (position 0 never counts)") {
  transformer<double> model(small_config(), 3, 0.5);
  const auto batch = two_examples();
  const double loss = next_token_loss(model, batch, false);
  // By hand: log-probs of each sequence alone, summed over the marked positions.
  double sum = 0;
  int count = 0;
  for (const auto& e : batch) {
    const auto L = static_cast<index_t>(e.tokens.size());
    dense<double, 2> mask({1, L}), logp({1, L});
    for (index_t t = 0; t < L; ++t) mask(0, t) = 1;
    const token_batch<double> tb{matrix_view<const std::int32_t>(e.tokens.data(), {1, L}), mask.view()};
    model.log_probs(tb, logp.view(), matrix_view<double>{});
    for (index_t t = std::max<index_t>(1, static_cast<index_t>(e.loss_from)); t < L; ++t) {
      sum -= logp(0, t);
      ++count;
    }
  }
  CHECK(count == 3 + 2);
  CHECK(loss == doctest::Approx(sum / count).epsilon(1e-12));
}

TEST_CASE("next_token_loss gradient matches central finite differences") {
  transformer<double> model(small_config(), 5, 0.5);
  const auto batch = two_examples();
  model.zero_grad();
  next_token_loss(model, batch, true);
  const std::vector<double> grad(model.gradients().begin(), model.gradients().end());
  std::span<double> p = model.parameters().values();
  const double h = 1e-5;
  double worst = 0;
  for (std::size_t k = 0; k < p.size(); k += 37) {
    const double keep = p[k];
    p[k] = keep + h;
    const double up = next_token_loss(model, batch, false);
    p[k] = keep - h;
    const double down = next_token_loss(model, batch, false);
    p[k] = keep;
    const double fd = (up - down) / (2 * h);
    worst = std::max(worst, std::abs(fd - grad[k]) / std::max(1.0, std::abs(fd)));
  }
  CHECK(worst < 1e-6);
}

TEST_CASE("length_groups cuts the sorted lengths where padding costs more than another micro-batch") {
  const std::vector<std::size_t> lengths{80, 265, 80, 220, 265};
  // Overhead 10: {265, 265} 530 + {220} 220 + {80, 80} 160 + 3 x 10 = 940, the least
  // ({265, 265, 220} + {80, 80} = 805 + 170 = 975; one group = 1335).
  using groups = std::vector<std::vector<std::size_t>>;
  CHECK(length_groups(lengths, 10) == groups{{1, 4}, {3}, {0, 2}});
  // Overhead 512: one group (1325 + 512) beats any cut (the best, {265, 265, 220} + {80, 80}, is 1989).
  CHECK(length_groups(lengths, 512) == groups{{1, 4, 3, 0, 2}});
  CHECK(length_groups(std::vector<std::size_t>{}, 10).empty());
}

TEST_CASE("next_token_loss in length groups equals one padded batch: loss and gradient") {
  transformer<double> model(small_config(), 9, 0.5);
  const std::vector<pretrain_example> batch = random_examples(4, {3, 30, 4, 28, 3, 31, 5, 29}, 10, 7);
  std::vector<std::size_t> lengths;
  for (const auto& e : batch) lengths.push_back(e.tokens.size());
  REQUIRE(length_groups(lengths, 10).size() > 1);  // cut into micro-batches at overhead 10

  const double inf = std::numeric_limits<double>::infinity();
  model.zero_grad();
  const double whole = next_token_loss(model, batch, true, batch_layout{inf});
  const std::vector<double> g_whole(model.gradients().begin(), model.gradients().end());
  model.zero_grad();
  const double grouped = next_token_loss(model, batch, true, batch_layout{10});
  CHECK(grouped == doctest::Approx(whole).epsilon(1e-12));
  double worst = 0;
  for (std::size_t k = 0; k < g_whole.size(); ++k)
    worst = std::max(worst, std::abs(model.gradients()[k] - g_whole[k]) / std::max(1.0, std::abs(g_whole[k])));
  CHECK(worst < 1e-12);
  CHECK(next_token_loss(model, batch, false, batch_layout{10}) == doctest::Approx(whole).epsilon(1e-12));
}

TEST_CASE("pack_sequences: first fit decreasing, never over max_length, a longer example alone and whole") {
  using rows = std::vector<std::vector<std::size_t>>;
  const std::vector<std::size_t> lengths = {3, 9, 5, 2, 14, 6};
  CHECK(pack_sequences(lengths, 10) == rows{{4}, {1}, {5, 0}, {2, 3}});  // 14 (> 10, alone) | 9 | 6+3 | 5+2
  CHECK(pack_sequences(lengths, 100) == rows{{4, 1, 5, 2, 0, 3}});
  CHECK(pack_sequences(std::vector<std::size_t>{}, 10).empty());
}

TEST_CASE("packing gives the loss and gradient of one example per row, and fewer padded positions") {
  transformer<double> model(small_config(), 9, 0.5);
  const std::vector<pretrain_example> batch = random_examples(5, {3, 12, 4, 9, 3, 11, 5, 2}, 6, 3);
  const double inf = std::numeric_limits<double>::infinity();
  model.zero_grad();
  const double plain = next_token_loss(model, batch, true, batch_layout{inf, 0});
  const std::vector<double> g_plain(model.gradients().begin(), model.gradients().end());
  model.zero_grad();
  const double packed = next_token_loss(model, batch, true, batch_layout{inf, 16});
  CHECK(packed == doctest::Approx(plain).epsilon(1e-12));
  double worst = 0;
  for (std::size_t k = 0; k < g_plain.size(); ++k)
    worst = std::max(worst, std::abs(model.gradients()[k] - g_plain[k]) / std::max(1.0, std::abs(g_plain[k])));
  CHECK(worst < 1e-12);
  // 8 rows of 12 = 96 positions unpacked; packed into rows of <= 16: 49 tokens in 4 rows of 16
  const auto micro = detail::micro_batches(batch, batch_layout{inf, 16});
  REQUIRE(micro.size() == 1);
  CHECK(micro[0].size() == 4);
}

TEST_CASE("the loss covers only completion tokens: d(loss)/d(logp) at prompt positions is zero") {
  // TRL masks prompt labels with -100; here loss_from does it. The gradient of
  // the SFT loss equals the one of -(1/N) sum of the completion tokens' logp
  // alone, and any d(loss)/d(logp) put on the prompt positions (a perturbed
  // prompt target) would have changed it.
  transformer<double> model(small_config(), 12, 0.5);
  const std::vector<pretrain_example> batch = {{{1, 4, 2, 7, 3, 9}, 3}, {{5, 6, 1, 8}, 2}};
  model.zero_grad();
  next_token_loss(model, batch, true, batch_layout{std::numeric_limits<double>::infinity(), 0});
  const std::vector<double> sft(model.gradients().begin(), model.gradients().end());

  dense<std::int32_t, 2> tokens({2, 6});
  dense<double, 2> mask({2, 6}), logp({2, 6}), grad({2, 6});
  for (index_t i = 0; i < 2; ++i)
    for (std::size_t t = 0; t < batch[static_cast<std::size_t>(i)].tokens.size(); ++t) {
      tokens(i, static_cast<index_t>(t)) = batch[static_cast<std::size_t>(i)].tokens[t];
      mask(i, static_cast<index_t>(t)) = 1;
    }
  const token_batch<double> tb{tokens.view(), mask.view()};
  const auto gradient_with_prompt_weight = [&](double prompt_weight) {
    for (index_t i = 0; i < 2; ++i)
      for (index_t t = 1; t < 6; ++t) {
        const auto& e = batch[static_cast<std::size_t>(i)];
        if (static_cast<std::size_t>(t) >= e.tokens.size()) continue;
        grad(i, t) = static_cast<std::size_t>(t) >= e.loss_from ? -1.0 / 5 : prompt_weight;  // 3 + 2 completion tokens
      }
    model.log_probs(tb, logp.view(), {});
    model.zero_grad();
    model.backward(tb, grad.view(), {});
    return std::vector<double>(model.gradients().begin(), model.gradients().end());
  };
  const auto reference = gradient_with_prompt_weight(0.0);
  const auto perturbed = gradient_with_prompt_weight(0.3);
  double same = 0, moved = 0;
  for (std::size_t k = 0; k < sft.size(); ++k) {
    same = std::max(same, std::abs(sft[k] - reference[k]));
    moved = std::max(moved, std::abs(perturbed[k] - reference[k]));
  }
  CHECK(same < 1e-14);
  CHECK(moved > 1e-3);
}

TEST_CASE("pretraining learns a deterministic language: x(t+1) = (x(t) + 3) mod 11") {
  transformer<float> model(small_config(), 7);
  std::mt19937_64 rng(1);
  const auto next = [&] {
    pretrain_example e;
    std::int32_t x = static_cast<std::int32_t>(rng() % 11);
    for (int t = 0; t < 12; ++t) {
      e.tokens.push_back(x);
      x = (x + 3) % 11;
    }
    return e;
  };
  pretrain_config c;
  c.steps = 150;
  c.batch_size = 16;
  c.lr = 1e-2;
  c.log_every = 10;
  std::vector<pretrain_record> seen;
  const pretrain_result result = pretrain(model, next, c, [&](const pretrain_record& r) { seen.push_back(r); });
  CHECK_FALSE(result.stopped);
  CHECK(result.resumed_from == 0);
  const auto& records = result.records;
  REQUIRE(records.size() == 15);
  CHECK(seen.size() == records.size());
  CHECK(records.front().step == 10);
  CHECK(records.back().step == 150);
  CHECK(records.back().tokens == 150 * 16 * 12);
  CHECK(records.front().loss > 1.0);  // log 11 = 2.4 at the start
  CHECK(records.back().loss < 0.05);  // every next token is determined by the previous one
  CHECK(records.back().lr == doctest::Approx(c.lr * c.min_lr_rate).epsilon(0.05));
}

namespace {

// A deterministic stream of sequences of mixed lengths: the same seed, the same stream.
struct counting_source {
  std::mt19937_64 rng;
  explicit counting_source(std::uint64_t seed) : rng(seed) {}
  pretrain_example operator()() {
    pretrain_example e;
    const std::size_t len = 3 + rng() % 10;
    for (std::size_t t = 0; t < len; ++t) e.tokens.push_back(static_cast<std::int32_t>(rng() % 11));
    e.loss_from = rng() % 2;
    return e;
  }
};

pretrain_config resume_config() {
  pretrain_config c;
  c.steps = 12;
  c.batch_size = 4;
  c.lr = 1e-2;
  c.log_every = 1;
  return c;
}

}  // namespace

TEST_CASE("pretrain: Ctrl-C saves a checkpoint, and resuming gives bit for bit the run never stopped") {
  const auto dir = std::filesystem::temp_directory_path() / ("lmrl_pretrain_resume_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  const pretrain_config c = resume_config();

  transformer<float> whole(small_config(), 3);
  const pretrain_result uninterrupted = pretrain(whole, counting_source(8), c);
  REQUIRE(uninterrupted.records.size() == 12);

  clear_stop_request();
  transformer<float> first(small_config(), 3);
  const auto stop_at_5 = [](const pretrain_record& r) {
    if (r.step == 5) request_stop();
  };
  const pretrain_result stopped = pretrain(first, counting_source(8), c, stop_at_5, {dir.string()});
  clear_stop_request();
  CHECK(stopped.stopped);
  CHECK(stopped.records.size() == 5);
  REQUIRE(std::filesystem::exists(dir / "checkpoint-5" / "pretrain_state.json"));

  transformer<float> second(small_config(), 99);  // another init: everything comes from the checkpoint
  const pretrain_result resumed = pretrain(second, counting_source(8), c, {}, {dir.string()});
  CHECK_FALSE(resumed.stopped);
  CHECK(resumed.resumed_from == 5);
  REQUIRE(resumed.records.size() == 12);
  for (std::size_t i = 0; i < 12; ++i) {
    CHECK(resumed.records[i].step == uninterrupted.records[i].step);
    CHECK(resumed.records[i].loss == uninterrupted.records[i].loss);
    CHECK(resumed.records[i].grad_norm == uninterrupted.records[i].grad_norm);
    CHECK(resumed.records[i].tokens == uninterrupted.records[i].tokens);
  }
  const auto a = whole.parameters().values(), b = second.parameters().values();
  CHECK(std::equal(a.begin(), a.end(), b.begin(), b.end()));
  std::filesystem::remove_all(dir);
}

namespace {

// A user's own model behind TrainablePolicy's members, here the bundled transformer by reference, counting
// its forward calls and the parameter changes it is told of: pretrain() must train it through the concept alone.
struct counting_policy {
  using value_type = float;
  transformer<float>* model;
  int forwards = 0, changes = 0;
  void parameters_changed() { ++changes; }
  std::span<float> parameters() { return model->parameters().values(); }
  std::span<float> gradients() { return model->gradients(); }
  void zero_grad() { model->zero_grad(); }
  void log_probs(const token_batch<float>& batch, matrix_view<float> logp, matrix_view<float> entropy) {
    ++forwards;
    model->log_probs(batch, logp, entropy);
  }
  void backward(const token_batch<float>& batch, matrix_view<const float> grad_logp,
                matrix_view<const float> grad_entropy) {
    model->backward(batch, grad_logp, grad_entropy);
  }
};
static_assert(TrainablePolicy<counting_policy> && PretrainableModel<counting_policy>);

// pretrain() of `model` on counting_source(8) with checkpoints in `dir`, stopped (Ctrl-C) after step 5.
template <class Model>
void stop_at_step_5(Model& model, const pretrain_config& c, const std::filesystem::path& dir) {
  clear_stop_request();
  const pretrain_result stopped = pretrain(
      model, counting_source(8), c,
      [](const pretrain_record& r) {
        if (r.step == 5) request_stop();
      },
      {dir.string()});
  clear_stop_request();
  REQUIRE(stopped.stopped);
}
static_assert(PretrainableModel<transformer<float>> && !TrainablePolicy<transformer<float>>);

}  // namespace

TEST_CASE("pretrain trains any TrainablePolicy with transformer's bits, and their checkpoints are interchangeable") {
  const auto dir = std::filesystem::temp_directory_path() / ("lmrl_pretrain_policy_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  const pretrain_config c = resume_config();
  transformer<float> direct(small_config(), 3);
  const pretrain_result expected = pretrain(direct, counting_source(8), c);

  // The whole run through the policy: every step's loss and norm, and the parameters, bit for bit.
  transformer<float> inner(small_config(), 3);
  counting_policy policy{&inner};
  const pretrain_result through_policy = pretrain(policy, counting_source(8), c);
  CHECK(policy.forwards >= c.steps);
  CHECK(policy.changes == c.steps);  // told of each optimizer step (rl/policy.hpp: parameters_changed)
  REQUIRE(through_policy.records.size() == expected.records.size());
  for (std::size_t i = 0; i < expected.records.size(); ++i) {
    CHECK(through_policy.records[i].loss == expected.records[i].loss);
    CHECK(through_policy.records[i].grad_norm == expected.records[i].grad_norm);
  }
  const auto a = direct.parameters().values(), b = inner.parameters().values();
  CHECK(std::equal(a.begin(), a.end(), b.begin(), b.end()));

  // Stopped through the policy at step 5, resumed by the transformer itself: the uninterrupted run.
  transformer<float> first_inner(small_config(), 3);
  counting_policy first{&first_inner};
  stop_at_step_5(first, c, dir);
  CHECK(first.changes == 5);
  transformer<float> second(small_config(), 99);
  const pretrain_result resumed = pretrain(second, counting_source(8), c, {}, {dir.string()});
  CHECK(resumed.resumed_from == 5);
  const auto d = second.parameters().values();
  CHECK(std::equal(a.begin(), a.end(), d.begin(), d.end()));

  // next_token_loss through the policy is the transformer's.
  const auto batch = random_examples(5, {4, 7, 3}, 4, 2);
  CHECK(next_token_loss(policy, batch, false) == next_token_loss(inner, batch, false));
  std::filesystem::remove_all(dir);
}

TEST_CASE("pretrain steps a device-stepped model where it keeps its parameters: the host run's bits, resumable") {
  const auto dir = std::filesystem::temp_directory_path() / ("lmrl_pretrain_stepped_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  pretrain_config c = resume_config();
  c.max_grad_norm = 0.5;  // clipping on the "device" too
  transformer<float> direct(small_config(), 3);
  const pretrain_result expected = pretrain(direct, counting_source(8), c);

  transformer<float> inner(small_config(), 3);
  testing::device_stepped<transformer<float>> stepped(&inner);
  const pretrain_result on_device = pretrain(stepped, counting_source(8), c);
  CHECK(stepped.steps == c.steps);
  CHECK(stepped.gradient_reads == 0);  // norm, clipping and AdamW where the gradient is
  REQUIRE(on_device.records.size() == expected.records.size());
  CHECK(std::ranges::any_of(expected.records, [&](const pretrain_record& r) { return r.grad_norm > c.max_grad_norm; }));
  for (std::size_t i = 0; i < expected.records.size(); ++i) {
    CHECK(on_device.records[i].loss == expected.records[i].loss);
    CHECK(on_device.records[i].grad_norm == expected.records[i].grad_norm);
  }
  const auto a = direct.parameters().values();
  CHECK(std::ranges::equal(stepped.parameters(), a));

  // Stopped at step 5 (the checkpoint takes the "device" moments), resumed by another device-stepped model.
  transformer<float> first_inner(small_config(), 3);
  testing::device_stepped<transformer<float>> first(&first_inner);
  stop_at_step_5(first, c, dir);
  transformer<float> second_inner(small_config(), 99);
  testing::device_stepped<transformer<float>> second(&second_inner);
  const pretrain_result resumed = pretrain(second, counting_source(8), c, {}, {dir.string()});
  CHECK(resumed.resumed_from == 5);
  CHECK(std::ranges::equal(second.parameters(), a));
  std::filesystem::remove_all(dir);
}

TEST_CASE("pretrain: save_steps checkpoints let a killed run resume from the last one") {
  const auto dir = std::filesystem::temp_directory_path() / ("lmrl_pretrain_kill_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  clear_stop_request();
  const pretrain_config c = resume_config();
  transformer<float> whole(small_config(), 3);
  pretrain(whole, counting_source(2), c, {}, {dir.string(), 5});
  // The run finished; its last periodic checkpoint (step 10) is what a kill after step 10 would have left.
  REQUIRE(std::filesystem::exists(dir / "checkpoint-10"));
  CHECK_FALSE(std::filesystem::exists(dir / "checkpoint-5"));  // only the newest is kept
  transformer<float> again(small_config(), 3);
  const pretrain_result resumed = pretrain(again, counting_source(2), c, {}, {dir.string(), 5});
  CHECK(resumed.resumed_from == 10);
  const auto a = whole.parameters().values(), b = again.parameters().values();
  CHECK(std::equal(a.begin(), a.end(), b.begin(), b.end()));
  pretrain_config fewer = c;
  fewer.steps = 8;
  CHECK_THROWS_WITH_AS(pretrain(again, counting_source(2), fewer, {}, {dir.string()}),
                       doctest::Contains("past steps = 8"), lmrl::error);
  pretrain_config other_batch = c;
  other_batch.batch_size = 3;
  CHECK_THROWS_WITH_AS(pretrain(again, counting_source(2), other_batch, {}, {dir.string()}),
                       doctest::Contains("was made with batch_size = 4"), lmrl::error);
  std::filesystem::remove_all(dir);
}

TEST_CASE("pretrain: bad settings and batches are errors naming the value") {
  transformer<float> model(small_config(), 7);
  pretrain_config c;
  c.batch_size = 0;
  const auto next = [] { return pretrain_example{{1, 2, 3}, 0}; };
  CHECK_THROWS_WITH_AS(pretrain(model, next, c), doctest::Contains("batch_size = 0"), lmrl::error);
  c = {};
  c.lr = -1;
  CHECK_THROWS_WITH_AS(pretrain(model, next, c), doctest::Contains("lr = -1"), lmrl::error);
  const std::vector<pretrain_example> nothing_to_learn = {{{4}, 0}, {{1, 2}, 2}};
  CHECK_THROWS_WITH_AS(next_token_loss(model, nothing_to_learn, false), doctest::Contains("no token"), lmrl::error);
}
