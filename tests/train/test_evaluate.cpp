// train/evaluate.hpp: the unbiased pass@k estimator by hand, and the
// evaluation's counts against generate() run directly.
#include "lmrl/train/evaluate.hpp"

#include "lmrl/model/transformer.hpp"

#include <vector>

#include "support/model_shapes.hpp"
#include "support/testing.hpp"

using namespace lmrl;

TEST_CASE("pass@k = 1 - C(n - c, k) / C(n, k)") {
  CHECK(pass_at_k_estimate(5, 2, 2) == doctest::Approx(1.0 - 3.0 / 10.0));  // C(3,2)/C(5,2)
  CHECK(pass_at_k_estimate(4, 1, 1) == doctest::Approx(0.25));
  CHECK(pass_at_k_estimate(8, 0, 4) == 0.0);
  CHECK(pass_at_k_estimate(8, 5, 4) == 1.0);  // fewer than k wrong: some draw of k has a correct one
  CHECK(pass_at_k_estimate(10, 3, 5) == doctest::Approx(1.0 - 21.0 / 252.0));  // C(7,5) / C(10,5)
  CHECK_THROWS_AS(pass_at_k_estimate(4, 5, 1), lmrl::error);
  CHECK_THROWS_AS(pass_at_k_estimate(4, 1, 5), lmrl::error);
}

TEST_CASE("evaluate_policy grades every greedy and sampled completion that generate() gives") {
  const transformer_config c = testing::transformer_shape(12, 16, 1, 2, 1, 16);
  const transformer<float> model(c, 11, 0.5);
  const std::vector<std::vector<std::int32_t>> prompts = {{1, 2}, {3}, {4, 5, 6}, {7}, {2, 2}};
  evaluation_options o;
  o.max_new_tokens = 6;
  o.prompts_per_batch = 2;  // three batches: the sequence offsets must carry over
  o.samples = 3;
  o.pass_k = 2;
  o.seed = 99;
  o.eos_token_ids = {0};
  // "correct" = the completion's first token is even; "thinks" = it has more than 2 tokens.
  const auto grade = [](std::size_t, std::span<const std::int32_t> ids) {
    graded_completion g;
    g.correct = !ids.empty() && ids[0] % 2 == 0;
    g.format = !ids.empty() && ids.back() == 0;
    g.thinks = ids.size() > 2;
    return g;
  };
  const evaluation_result r = evaluate_policy<float>(model.parameters(), prompts, grade, o);

  // The same numbers from generate() over all prompts at once.
  const auto expect = [&](bool sample, index_t per_prompt, completion_stats& s, double& pass_k) {
    generation_options g;
    g.max_new_tokens = o.max_new_tokens;
    g.num_generations = per_prompt;
    g.sampling.do_sample = sample;
    g.eos_token_ids = o.eos_token_ids;
    const auto out = generate(model.parameters(), std::span<const std::vector<std::int32_t>>(prompts), g,
                              counter_rng(o.seed));
    int n = 0, correct = 0, format = 0, thinks = 0, ct = 0;
    long long tokens = 0;
    std::vector<index_t> per(prompts.size(), 0);
    for (index_t b = 0; b < out.batch(); ++b) {
      std::vector<std::int32_t> ids;
      for (index_t t = 0; t < out.lengths[static_cast<std::size_t>(b)]; ++t) ids.push_back(out.completion_ids(b, t));
      const auto v = grade(0, ids);
      ++n;
      correct += v.correct;
      format += v.format;
      thinks += v.thinks;
      ct += v.thinks && v.correct;
      tokens += static_cast<long long>(ids.size());
      per[static_cast<std::size_t>(b / per_prompt)] += v.correct;
    }
    s.completions = n;
    s.accuracy = double(correct) / n;
    s.format = double(format) / n;
    s.think_rate = double(thinks) / n;
    s.accuracy_thinking = thinks ? double(ct) / thinks : 0.0;
    s.mean_length = double(tokens) / n;
    pass_k = 0;
    for (auto k : per) pass_k += pass_at_k_estimate(per_prompt, k, std::min<index_t>(o.pass_k, per_prompt));
    pass_k /= static_cast<double>(prompts.size());
  };
  completion_stats greedy, sampled;
  double unused = 0, pass_k = 0;
  expect(false, 1, greedy, unused);
  expect(true, o.samples, sampled, pass_k);
  CHECK(r.problems == 5);
  CHECK(r.greedy.completions == 5);
  CHECK(r.greedy.accuracy == doctest::Approx(greedy.accuracy));
  CHECK(r.greedy.format == doctest::Approx(greedy.format));
  CHECK(r.greedy.mean_length == doctest::Approx(greedy.mean_length));
  CHECK(r.sampled.completions == 15);
  CHECK(r.sampled.accuracy == doctest::Approx(sampled.accuracy));
  CHECK(r.sampled.think_rate == doctest::Approx(sampled.think_rate));
  CHECK(r.sampled.accuracy_thinking == doctest::Approx(sampled.accuracy_thinking));
  CHECK(r.sampled.mean_length == doctest::Approx(sampled.mean_length));
  CHECK(r.k == 2);
  CHECK(r.pass_at_k == doctest::Approx(pass_k));
  CHECK(r.pass_at_k >= r.sampled.accuracy - 1e-12);  // pass@2 >= pass@1

  o.pass_k = 4;
  CHECK_THROWS_WITH_AS(evaluate_policy<float>(model.parameters(), prompts, grade, o), doctest::Contains("pass_k = 4"),
                       lmrl::error);
}

TEST_CASE("evaluate_with: any batched generator, called per batch of prompts with the sequence offsets") {
  // A generator that answers prompt p with the single token p[0] (EOS 0 never comes), recording its calls.
  struct call {
    std::size_t prompts;
    index_t num_generations;
    std::uint64_t first_sequence;
    bool sample;
  };
  std::vector<call> calls;
  const auto generate_batch = [&](std::span<const std::vector<std::int32_t>> batch, const generation_options& o,
                                  const counter_rng&) {
    calls.push_back({batch.size(), o.num_generations, o.first_sequence, o.sampling.do_sample});
    generation_result<float> r;
    const index_t B = static_cast<index_t>(batch.size()) * o.num_generations;
    r.completion_ids = dense<std::int32_t, 2>({B, 1});
    r.prompt_index.resize(static_cast<std::size_t>(B));
    r.lengths.assign(static_cast<std::size_t>(B), 1);
    for (index_t b = 0; b < B; ++b) {
      r.prompt_index[static_cast<std::size_t>(b)] = b / o.num_generations;
      r.completion_ids(b, 0) = batch[static_cast<std::size_t>(b / o.num_generations)][0];
    }
    return r;
  };
  const std::vector<std::vector<std::int32_t>> prompts = {{2}, {3}, {4}, {6}, {7}};
  evaluation_options o;
  o.prompts_per_batch = 2;
  o.samples = 2;
  o.pass_k = 2;
  const auto grade = [](std::size_t problem, std::span<const std::int32_t> ids) {
    graded_completion g;
    g.correct = ids.size() == 1 && ids[0] % 2 == 0;  // prompts 0, 1 .. 4 hold 2, 3, 4, 6, 7: three even
    g.format = problem < 2;
    return g;
  };
  const evaluation_result r = evaluate_with<float>(generate_batch, prompts, grade, o);
  CHECK(r.greedy.completions == 5);
  CHECK(r.greedy.accuracy == doctest::Approx(0.6));
  CHECK(r.greedy.format == doctest::Approx(0.4));
  CHECK(r.sampled.completions == 10);
  CHECK(r.sampled.accuracy == doctest::Approx(0.6));
  CHECK(r.pass_at_k == doctest::Approx(0.6));
  // Greedy over batches of 2, 2, 1 prompts, then sampled likewise with 2 per prompt.
  REQUIRE(calls.size() == 6);
  const std::size_t sizes[] = {2, 2, 1, 2, 2, 1};
  const std::uint64_t firsts[] = {0, 2, 4, 0, 4, 8};
  for (std::size_t k = 0; k < calls.size(); ++k) {
    CAPTURE(k);
    CHECK(calls[k].prompts == sizes[k]);
    CHECK(calls[k].num_generations == (k < 3 ? 1 : 2));
    CHECK(calls[k].first_sequence == firsts[k]);
    CHECK(calls[k].sample == (k >= 3));
  }
}
