// Held-out evaluation of a policy on a verifiable task: pass@1 (greedy and
// sampled), pass@k, format compliance, completion length, and how often the
// model "thinks" (and how accurate it is when it does and when it does not).
//
// pass@k uses the unbiased estimator of Chen et al. (2021, Codex) from n >= k
// samples per problem with c correct:  pass@k = 1 - C(n - c, k) / C(n, k),
// averaged over problems; sampled pass@1 is the same with k = 1 (= c / n).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "lmrl/error.hpp"
#include "lmrl/model/generate.hpp"
#include "lmrl/sample/philox.hpp"

namespace lmrl {

// A grader's verdict on one completion.
struct graded_completion {
  bool correct = false;
  bool format = false;
  bool thinks = false;
};

// grade(problem index, completion ids) -> verdict.
using completion_grader = std::function<graded_completion(std::size_t, std::span<const std::int32_t>)>;

struct evaluation_options {
  index_t max_new_tokens = 64;
  index_t prompts_per_batch = 128;  // prompts decoded together (the KV cache holds this many x samples)
  index_t samples = 0;              // sampled completions per problem (0: greedy only)
  index_t pass_k = 1;               // k of pass@k (<= samples)
  double temperature = 1.0;         // for the sampled completions
  std::uint64_t seed = 0;
  std::vector<std::int32_t> eos_token_ids{};
  std::int32_t pad_token_id = 0;

  void validate() const {
    const char* f = "evaluation_options";
    detail::require(max_new_tokens >= 1, f, ": max_new_tokens = ", max_new_tokens, " must be >= 1");
    detail::require(prompts_per_batch >= 1, f, ": prompts_per_batch = ", prompts_per_batch, " must be >= 1");
    detail::require(samples >= 0, f, ": samples = ", samples, " must be >= 0");
    detail::require(pass_k >= 1 && (samples == 0 || pass_k <= samples), f, ": pass_k = ", pass_k,
                    " must be in [1, samples = ", samples, "]");
    detail::require(temperature > 0, f, ": temperature = ", temperature, " must be > 0");
  }
};

// Rates over a set of completions.
struct completion_stats {
  index_t completions = 0;
  double accuracy = 0;       // share correct
  double format = 0;         // share in the required format
  double think_rate = 0;     // share that thought
  double accuracy_thinking = 0;  // accuracy among those that thought (0 when none did)
  double accuracy_direct = 0;    // accuracy among those that did not
  double mean_length = 0;        // completion tokens
};

struct evaluation_result {
  index_t problems = 0;
  completion_stats greedy;   // one greedy completion per problem: greedy.accuracy is greedy pass@1
  completion_stats sampled;  // `samples` per problem (empty when samples == 0): sampled.accuracy is pass@1
  double pass_at_k = 0;      // unbiased pass@k from the samples
  index_t k = 0;
};

// 1 - C(n - c, k) / C(n, k), as a product (no large binomials).
inline double pass_at_k_estimate(index_t n, index_t c, index_t k) {
  detail::require(n >= 1 && c >= 0 && c <= n && k >= 1 && k <= n, "pass_at_k_estimate: need 0 <= c <= n and 1 <= k <= n (n = ",
                  n, ", c = ", c, ", k = ", k, ")");
  if (n - c < k) return 1.0;
  double miss = 1.0;
  for (index_t i = n - c + 1; i <= n; ++i) miss *= 1.0 - static_cast<double>(k) / static_cast<double>(i);
  return 1.0 - miss;
}

namespace detail {

struct completion_tally {
  index_t n = 0, correct = 0, format = 0, thinks = 0, correct_thinking = 0, correct_direct = 0;
  long long tokens = 0;
  void add(const graded_completion& g, index_t length) {
    ++n;
    correct += g.correct;
    format += g.format;
    thinks += g.thinks;
    (g.thinks ? correct_thinking : correct_direct) += g.correct;
    tokens += length;
  }
  completion_stats finish() const {
    completion_stats s;
    s.completions = n;
    if (n == 0) return s;
    const double dn = static_cast<double>(n);
    s.accuracy = static_cast<double>(correct) / dn;
    s.format = static_cast<double>(format) / dn;
    s.think_rate = static_cast<double>(thinks) / dn;
    s.accuracy_thinking = thinks ? static_cast<double>(correct_thinking) / static_cast<double>(thinks) : 0.0;
    s.accuracy_direct = n - thinks ? static_cast<double>(correct_direct) / static_cast<double>(n - thinks) : 0.0;
    s.mean_length = static_cast<double>(tokens) / dn;
    return s;
  }
};

}  // namespace detail

// Generates for every prompt (greedy, then `samples` sampled completions) with
// generate_batch(prompts, generation_options, counter_rng) -> generation_result<T>
// (lmrl::generate over a cached_decoder; lmrl::cuda::generate over the GPU's
// decoder) and grades each completion.
template <Real T, class Generate>
  requires std::is_invocable_r_v<generation_result<T>, Generate&, std::span<const std::vector<std::int32_t>>,
                                 const generation_options&, const counter_rng&>
evaluation_result evaluate_with(Generate&& generate_batch, std::span<const std::vector<std::int32_t>> prompts,
                                const completion_grader& grade, const evaluation_options& options) {
  options.validate();
  detail::require(!prompts.empty(), "evaluate_with: no prompts");
  detail::require(static_cast<bool>(grade), "evaluate_with: no grader");
  evaluation_result out;
  out.problems = static_cast<index_t>(prompts.size());
  detail::completion_tally greedy, sampled;
  double pass_k_sum = 0;
  const auto run = [&](bool sample, index_t per_prompt, auto&& on_completion) {
    generation_options o;
    o.max_new_tokens = options.max_new_tokens;
    o.num_generations = per_prompt;
    o.sampling.do_sample = sample;
    o.sampling.temperature = options.temperature;
    o.eos_token_ids = options.eos_token_ids;
    o.pad_token_id = options.pad_token_id;
    for (std::size_t first = 0; first < prompts.size(); first += static_cast<std::size_t>(options.prompts_per_batch)) {
      const std::size_t count = std::min(prompts.size() - first, static_cast<std::size_t>(options.prompts_per_batch));
      o.first_sequence = first * static_cast<std::size_t>(per_prompt);
      const generation_result<T> r = generate_batch(prompts.subspan(first, count), o, counter_rng(options.seed));
      for (index_t b = 0; b < r.batch(); ++b) {
        const auto len = r.lengths[static_cast<std::size_t>(b)];
        std::vector<std::int32_t> ids(static_cast<std::size_t>(len));
        for (index_t t = 0; t < len; ++t) ids[static_cast<std::size_t>(t)] = r.completion_ids(b, t);
        on_completion(first + static_cast<std::size_t>(b / per_prompt), ids);
      }
    }
  };
  run(false, 1, [&](std::size_t problem, const std::vector<std::int32_t>& ids) {
    greedy.add(grade(problem, ids), static_cast<index_t>(ids.size()));
  });
  out.greedy = greedy.finish();
  if (options.samples > 0) {
    std::vector<index_t> correct(prompts.size(), 0);
    run(true, options.samples, [&](std::size_t problem, const std::vector<std::int32_t>& ids) {
      const graded_completion g = grade(problem, ids);
      correct[problem] += g.correct;
      sampled.add(g, static_cast<index_t>(ids.size()));
    });
    for (index_t c : correct) pass_k_sum += pass_at_k_estimate(options.samples, c, options.pass_k);
    out.sampled = sampled.finish();
    out.pass_at_k = pass_k_sum / static_cast<double>(prompts.size());
    out.k = options.pass_k;
  }
  return out;
}

// evaluate_with on the CPU: the policy's parameters through a cached_decoder.
template <Real T>
evaluation_result evaluate_policy(const transformer_parameters<T>& parameters,
                                  std::span<const std::vector<std::int32_t>> prompts, const completion_grader& grade,
                                  const evaluation_options& options) {
  cached_decoder<T> decoder(parameters);
  return evaluate_with<T>(
      [&](std::span<const std::vector<std::int32_t>> batch, const generation_options& o, const counter_rng& rng) {
        return generate(decoder, batch, o, rng);
      },
      prompts, grade, options);
}

}  // namespace lmrl
