// A tiny exact policy for the trainer tests: a bigram softmax model,
// logits(next | prev) = W[prev, :], over an 8-token vocabulary ('a'..'g' = 0..6,
// end of text = 7). Small enough that a GRPO step takes microseconds, exact
// enough (analytic log-prob, entropy and their gradients) that the trainer's
// plumbing is what the tests exercise. The generator samples with the
// counter-based RNG as generate.hpp does, so results depend only on the seed.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "lmrl/rl/policy.hpp"
#include "lmrl/sample/philox.hpp"
#include "lmrl/train/grpo_trainer.hpp"

namespace lmrl::testing {

struct bigram_policy {
  using value_type = double;
  static constexpr index_t V = 8;
  static constexpr std::int32_t eos = 7;
  std::vector<double> params = std::vector<double>(V * V, 0.0);
  std::vector<double> grads = std::vector<double>(V * V, 0.0);

  std::span<double> parameters() { return params; }
  std::span<double> gradients() { return grads; }
  void zero_grad() { std::fill(grads.begin(), grads.end(), 0.0); }

  // p = softmax(W[prev] / temperature); returns log-sum-exp pieces in p.
  void probs(std::int32_t prev, double* p, double temperature = 1.0) const {
    double mx = -INFINITY, z = 0;
    for (index_t j = 0; j < V; ++j) mx = std::max(mx, params[static_cast<std::size_t>(prev * V + j)] / temperature);
    for (index_t j = 0; j < V; ++j) z += p[j] = std::exp(params[static_cast<std::size_t>(prev * V + j)] / temperature - mx);
    for (index_t j = 0; j < V; ++j) p[j] /= z;
  }

  void log_probs(const token_batch<double>& b, matrix_view<double> logp, matrix_view<double> entropy) const {
    double p[V];
    for (index_t i = 0; i < b.tokens.shape[0]; ++i)
      for (index_t t = 0; t < b.tokens.shape[1]; ++t) {
        double lp = 0, h = 0;
        if (t > 0 && b.attention_mask(i, t) != 0) {
          probs(b.tokens(i, t - 1), p);
          lp = std::log(p[b.tokens(i, t)]);
          for (index_t j = 0; j < V; ++j) h -= p[j] > 0 ? p[j] * std::log(p[j]) : 0.0;
        }
        logp(i, t) = lp;
        if (entropy.data) entropy(i, t) = h;
      }
  }

  void backward(const token_batch<double>& b, matrix_view<const double> grad_logp,
                matrix_view<const double> grad_entropy) {
    double p[V];
    for (index_t i = 0; i < b.tokens.shape[0]; ++i)
      for (index_t t = 1; t < b.tokens.shape[1]; ++t) {
        if (b.attention_mask(i, t) == 0) continue;
        const std::int32_t prev = b.tokens(i, t - 1), y = b.tokens(i, t);
        probs(prev, p);
        double h = 0;
        for (index_t j = 0; j < V; ++j) h -= p[j] > 0 ? p[j] * std::log(p[j]) : 0.0;
        const double g = grad_logp(i, t), ge = grad_entropy.data ? grad_entropy(i, t) : 0.0;
        for (index_t j = 0; j < V; ++j)
          grads[static_cast<std::size_t>(prev * V + j)] +=
              g * ((j == y ? 1.0 : 0.0) - p[j]) - ge * p[j] * (std::log(p[j]) + h);
      }
  }
};
static_assert(Policy<bigram_policy> && TrainablePolicy<bigram_policy>);

// A critic for the same tokens: V[i, t] = table[tokens(i, t - 1)] + bias, a
// value per previous token, at the log-prob positions.
struct bigram_critic {
  using value_type = double;
  std::vector<double> params = std::vector<double>(bigram_policy::V + 1, 0.0);
  std::vector<double> grads = std::vector<double>(bigram_policy::V + 1, 0.0);

  std::span<double> parameters() { return params; }
  std::span<double> gradients() { return grads; }
  void zero_grad() { std::fill(grads.begin(), grads.end(), 0.0); }
  void values(const token_batch<double>& b, matrix_view<double> out) const {
    for (index_t i = 0; i < b.tokens.shape[0]; ++i)
      for (index_t t = 0; t < b.tokens.shape[1]; ++t)
        out(i, t) = t > 0 && b.attention_mask(i, t) != 0 && b.attention_mask(i, t - 1) != 0
                        ? params[static_cast<std::size_t>(b.tokens(i, t - 1))] + params.back()
                        : 0.0;
  }
  void backward_values(const token_batch<double>& b, matrix_view<const double> g) {
    for (index_t i = 0; i < b.tokens.shape[0]; ++i)
      for (index_t t = 1; t < b.tokens.shape[1]; ++t)
        if (b.attention_mask(i, t) != 0 && b.attention_mask(i, t - 1) != 0) {
          grads[static_cast<std::size_t>(b.tokens(i, t - 1))] += g(i, t);
          grads.back() += g(i, t);
        }
  }
};
static_assert(ValueModel<bigram_critic>);

struct bigram_generator {
  int* calls = nullptr;
  rollout_batch<double> operator()(bigram_policy& m, std::span<const std::vector<std::int32_t>> prompts,
                                   const rollout_request& r) const {
    if (calls) ++*calls;
    const counter_rng rng(r.seed);
    rollout_batch<double> out;
    double p[bigram_policy::V];
    for (std::size_t q = 0; q < prompts.size(); ++q)
      for (index_t g = 0; g < r.num_generations; ++g) {
        const auto b = r.first_sequence + static_cast<std::uint64_t>(q) * static_cast<std::uint64_t>(r.num_generations) +
                       static_cast<std::uint64_t>(g);
        std::vector<std::int32_t> ids;
        std::vector<double> lps;
        std::int32_t prev = prompts[q].back();
        bool ended = false;
        for (index_t t = 0; t < r.max_new_tokens && !ended; ++t) {
          m.probs(prev, p, r.sampling.temperature);
          const double u = rng.uniform_double(b, static_cast<std::uint32_t>(t));
          std::int32_t tok = bigram_policy::V - 1;
          double c = 0;
          for (std::int32_t j = 0; j < bigram_policy::V; ++j) {
            c += p[j];
            if (u < c) {
              tok = j;
              break;
            }
          }
          ids.push_back(tok);
          lps.push_back(std::log(p[tok]));
          prev = tok;
          ended = tok == bigram_policy::eos;
        }
        out.completions.push_back(std::move(ids));
        out.logprobs.push_back(std::move(lps));
        out.truncated.push_back(!ended);
      }
    return out;
  }
};

inline std::vector<std::int32_t> bigram_encode(std::string_view s) {
  std::vector<std::int32_t> ids;
  for (char c : s) ids.push_back(c == '$' ? bigram_policy::eos : static_cast<std::int32_t>(c - 'a'));
  return ids;
}
inline std::string bigram_decode(std::span<const std::int32_t> ids) {
  std::string s;
  for (auto id : ids) s += id == bigram_policy::eos ? '$' : static_cast<char>('a' + id);
  return s;
}

// prompt(i): "ab", "bb", "cb", "ab", ...
struct bigram_prompts {
  grpo_prompt prompt(std::uint64_t i) const { return {std::string(1, static_cast<char>('a' + i % 3)) + "b", {}}; }
};

}  // namespace lmrl::testing
