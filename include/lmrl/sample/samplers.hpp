// Token samplers: greedy, temperature, top-k, top-p (nucleus) and min-p,
// composed in the order transformers' generate() applies its warpers
// (GenerationMixin._get_logits_processor, transformers 5.x):
//
//   z = x / temperature  ->  top-k  ->  top-p  ->  min-p  ->  sample
//
// For one logits row x[0..V) and one uniform draw u in [0, 1), with
// s_v = (x_v - max x) / temperature (the max is taken out first so that a tiny
// temperature cannot overflow) and w_v = exp(s_v):
//
//   top-k  keeps v when x_v >= the k-th largest logit (ties with it are all
//          kept, as TopKLogitsWarper's `scores < topk(...)[-1]` does);
//   top-p  orders the survivors by logit (descending, lower id first on ties)
//          and keeps v when the mass strictly ahead of it is < top_p of the
//          survivors' mass — TopPLogitsWarper removes v when the ascending
//          cumulative probability up to v is <= 1 - top_p; the top token stays;
//   min-p  keeps v when p_v >= min_p * max_u p_u, i.e. w_v >= min_p
//          (MinPLogitsWarper; the max is never removed by the earlier steps).
//
// The kept set S is sampled by inverse CDF: the first token, in a fixed order
// (token id for the unfiltered and min-p-only cases, descending logit
// otherwise), whose running sum of w exceeds u * sum_S w. The result carries
// two log-probs of the chosen token t:
//
//   logprob          = s_t - log sum_{v in S} w_v   (the sampling distribution,
//                      what vLLM calls processed logprobs: the behaviour policy
//                      for importance-sampling corrections)
//   tempered_logprob = s_t - log sum_v w_v          (log softmax(x / T) over the
//                      whole vocabulary: what TRL's _get_per_token_logps
//                      computes for old/ref log-probs and what the GRPO ratio
//                      uses)
//
// Sums run in double. Top-k/top-p sort (value, id) pairs in caller scratch of
// at least V entries (sampler_scratch): top-k with nth_element then a sort of
// the k survivors; top-p with nth_element on growing chunks, so only the
// nucleus is ever sorted. Nothing is allocated per call.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>

#include "lmrl/error.hpp"
#include "lmrl/sample/sampler_config.hpp"
#include "lmrl/tensor/checks.hpp"
#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

// One (logit, token id) pair of the top-k/top-p scratch.
template <Real T>
struct token_candidate {
  T logit;
  std::int32_t id;
};

// Scratch for one row of `vocab` tokens: allocate once, reuse for every call.
template <Real T>
class sampler_scratch {
 public:
  explicit sampler_scratch(index_t vocab) : candidates_(static_cast<std::size_t>(vocab < 0 ? 0 : vocab)) {}
  std::span<token_candidate<T>> span() { return candidates_; }
  operator std::span<token_candidate<T>>() { return candidates_; }  // NOLINT(google-explicit-constructor)

 private:
  std::vector<token_candidate<T>> candidates_;
};

// The chosen token and its log-probabilities (see the top of this file).
struct sampled_token {
  index_t token = -1;
  double logprob = 0;           // under the sampling distribution (after every warper); 0 for greedy
  double tempered_logprob = 0;  // under softmax(logits / temperature) over the whole vocabulary
};

namespace detail {

// Descending logit, lower id first on ties: the one order every sort uses.
template <class T>
constexpr bool ranks_before(const token_candidate<T>& a, const token_candidate<T>& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

// Max, argmax (lowest id) and the tempered normalizer of one row.
struct row_summary {
  double max = 0;
  index_t argmax = 0;
  double z = 0;  // sum_v exp((x_v - max) / temperature), in token-id order
};

inline double tempered_weight(double x, double max, double temperature) { return std::exp((x - max) / temperature); }

template <class T>
row_summary summarize_row(const char* function, vector_view<const T> x, double temperature, index_t row) {
  const index_t vocab = x.shape[0];
  if (vocab <= 0) fail(function, ": logits row ", row, " is empty");
  if (vocab > std::numeric_limits<std::int32_t>::max())
    fail(function, ": logits row ", row, " has ", vocab, " entries, more than token ids of 32 bits hold");
  row_summary s;
  s.max = -std::numeric_limits<double>::infinity();
  s.argmax = -1;
  for (index_t v = 0; v < vocab; ++v) {
    const double xv = static_cast<double>(x(v));
    if (std::isnan(xv)) fail(function, ": logits row ", row, " has NaN at token ", v);
    if (xv == std::numeric_limits<double>::infinity())
      fail(function, ": logits row ", row, " has +inf at token ", v, " (a logit must be finite or -inf)");
    if (xv > s.max) {  // strict: the lowest id wins a tie
      s.max = xv;
      s.argmax = v;
    }
  }
  if (s.argmax < 0) fail(function, ": logits row ", row, " is -inf at all ", vocab, " tokens; no token can be drawn");
  for (index_t v = 0; v < vocab; ++v) s.z += tempered_weight(static_cast<double>(x(v)), s.max, temperature);
  return s;
}

// The tokens that survive the warpers and their total weight.
enum class support_kind { all, min_p_only, candidates };
struct sampling_support {
  support_kind kind = support_kind::all;
  index_t count = 0;  // candidates: scratch[0, count) in descending order
  double z = 0;       // sum of w over the support, in the order it is sampled
};

template <class T>
sampling_support find_support(const char* function, vector_view<const T> x, const sampler_config& config,
                              const row_summary& summary, std::span<token_candidate<T>> scratch, index_t row) {
  const index_t vocab = x.shape[0];
  const double t = config.temperature;
  const auto weight = [&](const token_candidate<T>& c) { return tempered_weight(static_cast<double>(c.logit), summary.max, t); };
  sampling_support support;
  if (!config.uses_top_k(vocab) && !config.uses_top_p()) {
    if (!config.uses_min_p()) {
      support.z = summary.z;
      return support;
    }
    support.kind = support_kind::min_p_only;
    for (index_t v = 0; v < vocab; ++v) {
      const double w = tempered_weight(static_cast<double>(x(v)), summary.max, t);
      if (w >= config.min_p) support.z += w;
    }
    return support;
  }
  if (static_cast<index_t>(scratch.size()) < vocab)
    fail(function, ": scratch holds ", scratch.size(), " candidates but logits row ", row, " has ", vocab,
         " tokens (top-k/top-p need one per token; see sampler_scratch)");
  support.kind = support_kind::candidates;
  // -inf logits have weight 0 under every warper: leave them out.
  index_t n = 0;
  for (index_t v = 0; v < vocab; ++v) {
    const T xv = x(v);
    if (xv != -std::numeric_limits<T>::infinity()) scratch[static_cast<std::size_t>(n++)] = {xv, static_cast<std::int32_t>(v)};
  }
  auto* first = scratch.data();
  const auto before = [](const token_candidate<T>& a, const token_candidate<T>& b) { return ranks_before(a, b); };
  index_t sorted = 0;  // scratch[0, sorted) is in final order
  double z = summary.z;
  if (config.uses_top_k(vocab) && config.top_k < n) {
    const index_t k = config.top_k;
    std::nth_element(first, first + (k - 1), first + n, before);
    const T threshold = first[k - 1].logit;
    // Every logit equal to the k-th survives too (HF removes only scores < the k-th).
    n = std::partition(first + k, first + n, [&](const token_candidate<T>& c) { return c.logit == threshold; }) - first;
    std::sort(first, first + n, before);
    sorted = n;
    z = 0;
    for (index_t j = 0; j < n; ++j) z += weight(first[j]);
  }
  if (config.uses_top_p()) {
    // Walk down the ranking; sort the next chunk only when the walk reaches it.
    const double keep_above = 1.0 - config.top_p;
    double ahead = 0;  // weight of the tokens ranked before j
    index_t kept = 0;
    for (index_t j = 0; j < n; ++j) {
      if (j == sorted) {
        const index_t end = std::min(n, sorted + std::max<index_t>(256, sorted));
        if (end < n) std::nth_element(first + sorted, first + end, first + n, before);
        std::sort(first + sorted, first + end, before);
        sorted = end;
      }
      // Ascending cumulative probability through j is (z - ahead) / z; the top token always stays.
      if (j > 0 && (z - ahead) / z <= keep_above) break;
      ahead += weight(first[j]);
      kept = j + 1;
    }
    n = kept;
  } else if (sorted < n) {
    std::sort(first + sorted, first + n, before);
  }
  // Min-p keeps a prefix of the ranking: w falls as the rank grows, and w = 1 at the top.
  if (config.uses_min_p())
    while (n > 1 && weight(first[n - 1]) < config.min_p) --n;
  support.count = n;
  for (index_t j = 0; j < n; ++j) support.z += weight(first[j]);
  return support;
}

// Inverse CDF over the support: the first token whose running weight exceeds u * z.
template <class T>
index_t draw_from_support(vector_view<const T> x, const sampler_config& config, const row_summary& summary,
                          const sampling_support& support, std::span<const token_candidate<T>> scratch, double u) {
  const double t = config.temperature;
  const double target = u * support.z;
  double running = 0;
  index_t last = summary.argmax;  // the last token of positive weight, in case rounding leaves target unreached
  if (support.kind == support_kind::candidates) {
    for (index_t j = 0; j < support.count; ++j) {
      const auto& c = scratch[static_cast<std::size_t>(j)];
      const double w = tempered_weight(static_cast<double>(c.logit), summary.max, t);
      if (w <= 0) continue;
      running += w;
      last = c.id;
      if (running > target) return c.id;
    }
    return last;
  }
  const double floor_weight = support.kind == support_kind::min_p_only ? config.min_p : 0.0;
  for (index_t v = 0; v < x.shape[0]; ++v) {
    const double w = tempered_weight(static_cast<double>(x(v)), summary.max, t);
    if (w <= 0 || w < floor_weight) continue;
    running += w;
    last = v;
    if (running > target) return v;
  }
  return last;
}

template <class T>
sampled_token sample_row(vector_view<const T> x, const sampler_config& config, double u,
                         std::span<token_candidate<T>> scratch, index_t row) {
  constexpr const char* function = "sample_token";
  if (!(u >= 0 && u < 1)) fail(function, ": uniform draw u = ", u, " for row ", row, " is not in [0, 1)");
  const row_summary summary = summarize_row(function, x, config.temperature, row);
  const auto tempered = [&](index_t v) {
    return (static_cast<double>(x(v)) - summary.max) / config.temperature - std::log(summary.z);
  };
  sampled_token out;
  if (!config.do_sample) {
    out.token = summary.argmax;
    out.logprob = 0;  // greedy decoding is a point mass
    out.tempered_logprob = tempered(out.token);
    return out;
  }
  const sampling_support support = find_support(function, x, config, summary, scratch, row);
  out.token = draw_from_support<T>(x, config, summary, support, scratch, u);
  out.tempered_logprob = tempered(out.token);
  out.logprob = (static_cast<double>(x(out.token)) - summary.max) / config.temperature - std::log(support.z);
  return out;
}

}  // namespace detail

// The highest logit's id (lowest id on ties, like torch.argmax); NaN is an error.
template <Array1D X>
  requires Real<element_t<X, 1>>
index_t greedy_token(const X& logits, index_t row = 0) {
  using T = element_t<X, 1>;
  return detail::summarize_row<T>("greedy_token", lmrl::view<1>(logits), 1.0, row).argmax;
}

// Samples one token from one logits row with the uniform draw u in [0, 1).
// `row` only names the row in error messages. `scratch` needs one entry per
// token when top-k or top-p is on (unused otherwise).
template <Array1D X>
  requires Real<element_t<X, 1>>
sampled_token sample_token(const X& logits, const sampler_config& config, double u,
                           std::span<token_candidate<element_t<X, 1>>> scratch, index_t row = 0) {
  using T = element_t<X, 1>;
  config.validate();
  return detail::sample_row<T>(lmrl::view<1>(logits), config, u, scratch, row);
}

// The log-probabilities of the sampling distribution: log p_v for the tokens
// that survive the warpers, -inf for the others (greedy: 0 at the argmax).
// This is the vector the reference test compares with transformers'
// warpers followed by log_softmax.
template <Array1D X, WritableArray1D Y>
  requires Real<element_t<X, 1>> && std::same_as<element_t<X, 1>, element_t<Y, 1>>
void warped_logprobs(const X& logits, const sampler_config& config,
                     std::span<token_candidate<element_t<X, 1>>> scratch, Y&& out, index_t row = 0) {
  using T = element_t<X, 1>;
  constexpr const char* function = "warped_logprobs";
  config.validate();
  const vector_view<const T> x = lmrl::view<1>(logits);
  const vector_view<T> y = lmrl::view<1>(out);
  detail::require_same_shape(function, "logits", x, "out", y);
  const detail::row_summary summary = detail::summarize_row(function, x, config.temperature, row);
  constexpr T minus_inf = -std::numeric_limits<T>::infinity();
  const double t = config.temperature;
  if (!config.do_sample) {
    for (index_t v = 0; v < x.shape[0]; ++v) y(v) = v == summary.argmax ? T(0) : minus_inf;
    return;
  }
  const detail::sampling_support support = detail::find_support(function, x, config, summary, scratch, row);
  const double log_z = std::log(support.z);
  const auto logp = [&](double xv) { return static_cast<T>((xv - summary.max) / t - log_z); };
  if (support.kind == detail::support_kind::candidates) {
    for (index_t v = 0; v < x.shape[0]; ++v) y(v) = minus_inf;
    for (index_t j = 0; j < support.count; ++j) {
      const auto& c = scratch[static_cast<std::size_t>(j)];
      y(c.id) = logp(static_cast<double>(c.logit));
    }
    return;
  }
  const double floor_weight = support.kind == detail::support_kind::min_p_only ? config.min_p : 0.0;
  for (index_t v = 0; v < x.shape[0]; ++v) {
    const double xv = static_cast<double>(x(v));
    y(v) = detail::tempered_weight(xv, summary.max, t) >= floor_weight && xv != -INFINITY ? logp(xv) : minus_inf;
  }
}

// Samples one token per row of a [rows x vocab] logits array with the draws
// uniforms[r] (e.g. counter_rng::uniform_double(sequence_r, position)), and
// writes the token ids and both log-probs of each row into caller arrays.
// Rows run one after another through the one scratch; to run rows in
// parallel give each thread its own scratch and a block of rows.
template <Array2D L, Array1D U, WritableArray1D Tokens, WritableArray1D Logp, WritableArray1D Tempered>
  requires Real<element_t<L, 2>> && std::integral<element_t<Tokens, 1>> &&
           std::same_as<element_t<Logp, 1>, element_t<L, 2>> && std::same_as<element_t<Tempered, 1>, element_t<L, 2>>
void sample_tokens(const L& logits, const sampler_config& config, const U& uniforms,
                   std::span<token_candidate<element_t<L, 2>>> scratch, Tokens&& tokens, Logp&& logprobs,
                   Tempered&& tempered_logprobs) {
  using T = element_t<L, 2>;
  constexpr const char* function = "sample_tokens";
  config.validate();
  const matrix_view<const T> x = lmrl::view<2>(logits);
  const auto u = lmrl::view<1>(uniforms);
  const auto tok = lmrl::view<1>(tokens);
  const vector_view<T> lp = lmrl::view<1>(logprobs);
  const vector_view<T> tlp = lmrl::view<1>(tempered_logprobs);
  const index_t rows = x.shape[0];
  detail::require_extent(function, "uniforms", u, 0, rows, "the number of logits rows");
  detail::require_extent(function, "tokens", tok, 0, rows, "the number of logits rows");
  detail::require_extent(function, "logprobs", lp, 0, rows, "the number of logits rows");
  detail::require_extent(function, "tempered_logprobs", tlp, 0, rows, "the number of logits rows");
  for (index_t r = 0; r < rows; ++r) {
    const sampled_token s = detail::sample_row<T>(x.row(r), config, static_cast<double>(u(r)), scratch, r);
    tok(r) = static_cast<element_t<Tokens, 1>>(s.token);
    lp(r) = static_cast<T>(s.logprob);
    tlp(r) = static_cast<T>(s.tempered_logprob);
  }
}

// A decoding strategy: draws one token from one logits row with one uniform
// number. sampler_config is the library's model of it; a user's own sampler
// (typical-p, a grammar mask, ...) drops in without inheriting anything.
template <class S, class T>
concept Sampler = Real<T> && requires(const S& s, vector_view<const T> logits, double u,
                                      std::span<token_candidate<T>> scratch, index_t row) {
  { s.sample(logits, u, scratch, row) } -> std::same_as<sampled_token>;
};

// sampler_config as a Sampler.
struct composed_sampler {
  sampler_config config;
  template <Real T>
  sampled_token sample(vector_view<const T> logits, double u, std::span<token_candidate<T>> scratch,
                       index_t row = 0) const {
    return sample_token(logits, config, u, scratch, row);
  }
};

}  // namespace lmrl
