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
// (descending logit, lower id first, after top-k; token id otherwise), whose
// running sum of w exceeds u * sum_S w. The result carries two log-probs of
// the chosen token t:
//
//   logprob          = s_t - log sum_{v in S} w_v   (the sampling distribution,
//                      what vLLM calls processed logprobs: the behaviour policy
//                      for importance-sampling corrections)
//   tempered_logprob = s_t - log sum_v w_v          (log softmax(x / T) over the
//                      whole vocabulary: what TRL's _get_per_token_logps
//                      computes for old/ref log-probs and what the GRPO ratio
//                      uses)
//
// Sums run in double, in a fixed order (blocks of 64 tokens, 8 lanes each),
// with a branch-free exp so the passes over the vocabulary vectorize. Top-k and
// top-p rank (value, id) pairs in caller scratch of at least V entries
// (sampler_scratch): top-k with nth_element and a sort of the k survivors;
// top-p by halving with nth_element until <= 256 candidates are left to sort,
// after dropping the tokens too light to ever be in the nucleus. Nothing is
// allocated per call.
#pragma once

#include <algorithm>
#include <bit>
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
#include "lmrl/tensor/fast_exp.hpp"
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

// w = exp((x - max) / temperature): the max is taken out before dividing, so
// no temperature overflows.
inline double tempered_weight(double x, double max, double temperature) {
  return exp_nonpositive_or_zero((x - max) / temperature);
}

// Sums of f over the vocabulary in one fixed order: blocks of 64 tokens added
// one after another, each block summed over 8 interleaved lanes. The inverse
// CDF walks the same blocks, so its running sum reaches the same total.
inline constexpr index_t sum_block_size = 64;

template <class F>
double sum_block(index_t begin, index_t end, F&& f) {
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  index_t v = begin;
  for (; v + 8 <= end; v += 8)
    for (int l = 0; l < 8; ++l) lane[l] += f(v + l);
  double tail = 0;
  for (; v < end; ++v) tail += f(v);
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7])) + tail;
}

template <class F>
double sum_blocks(index_t n, F&& f) {
  double total = 0;
  for (index_t b = 0; b < n; b += sum_block_size) total += sum_block(b, std::min(n, b + sum_block_size), f);
  return total;
}

// Calls f(p, stride) with the stride a compile-time 1 for contiguous rows, so
// the common case vectorizes.
template <class T, class F>
decltype(auto) with_row(vector_view<const T> x, F&& f) {
  if (x.stride[0] == 1) return f(x.data, std::integral_constant<index_t, 1>{});
  return f(x.data, x.stride[0]);
}

template <class T>
row_summary summarize_row(const char* function, vector_view<const T> x, double temperature, index_t row) {
  const index_t vocab = x.shape[0];
  if (vocab <= 0) fail(function, ": logits row ", row, " is empty");
  if (vocab > std::numeric_limits<std::int32_t>::max())
    fail(function, ": logits row ", row, " has ", vocab, " entries, more than token ids of 32 bits hold");
  row_summary s;
  with_row(x, [&](const T* p, auto stride) {
    // Branch-free max and a flag for NaN / +inf; the slow path finds the culprit for the message.
    T m = -std::numeric_limits<T>::infinity();
    bool bad = false;
    for (index_t v = 0; v < vocab; ++v) {
      const T xv = p[v * stride];
      bad |= !(xv < std::numeric_limits<T>::infinity());  // NaN or +inf
      m = xv > m ? xv : m;
    }
    if (bad)
      for (index_t v = 0; v < vocab; ++v) {
        const T xv = p[v * stride];
        if (std::isnan(xv)) fail(function, ": logits row ", row, " has NaN at token ", v);
        if (!(xv < std::numeric_limits<T>::infinity()))
          fail(function, ": logits row ", row, " has +inf at token ", v, " (a logit must be finite or -inf)");
      }
    if (m == -std::numeric_limits<T>::infinity())
      fail(function, ": logits row ", row, " is -inf at all ", vocab, " tokens; no token can be drawn");
    s.max = static_cast<double>(m);
    s.argmax = 0;
    while (p[s.argmax * stride] != m) ++s.argmax;  // the lowest id wins a tie
    s.z = sum_blocks(vocab, [&](index_t v) { return tempered_weight(static_cast<double>(p[v * stride]), s.max, temperature); });
    return 0;
  });
  return s;
}

// The tokens that survive the warpers and their total weight. Either a rule
// over the whole vocabulary, applied in token-id order (w >= floor_weight,
// and, after top-p alone, ranked at or before a boundary token), or the
// sorted candidates scratch[0, count) (after top-k).
enum class support_kind { id_order, candidates };
struct sampling_support {
  support_kind kind = support_kind::id_order;
  index_t count = 0;  // candidates: scratch[0, count) in descending order
  double z = 0;       // sum of w over the support, in the order it is sampled
  double floor_weight = 0;  // id_order: min-p's w >= min_p (0 = no floor)
  bool bounded = false;     // id_order: keep only tokens ranked at or before the boundary
  double boundary_logit = 0;
  index_t boundary_id = 0;

  bool keeps(double x, index_t v, double w) const {  // bitwise operators: no branches in the vocabulary loops
    return (w >= floor_weight) & (!bounded | (x > boundary_logit) | ((x == boundary_logit) & (v <= boundary_id)));
  }
};

// Top-p over candidates scratch[0, n) that are the head of the ranking, out of
// a total weight z: returns how many lead the ranking and are kept (>= 1).
// The head is found by halving [lo, hi) with nth_element and comparing the
// weight ahead of the middle token with the threshold — O(n) on average —
// and only the last <= 256 candidates are sorted and walked one by one.
template <class T, class Weight>
index_t top_p_head(token_candidate<T>* first, index_t n, double z, double top_p, const Weight& weight) {
  const auto before = [](const token_candidate<T>& a, const token_candidate<T>& b) { return ranks_before(a, b); };
  const double keep_above = 1.0 - top_p;
  // Token j is removed when the ascending cumulative probability through it,
  // (z - ahead_j) / z, is <= 1 - top_p (TopPLogitsWarper); the top token stays.
  const auto removed = [&](index_t j, double ahead) { return j > 0 && (z - ahead) / z <= keep_above; };
  index_t lo = 0, hi = n;  // the boundary lies in [lo, hi); everything before lo is kept
  double ahead = 0;        // weight of scratch[0, lo)
  while (hi - lo > 256) {
    const index_t mid = lo + (hi - lo) / 2;
    std::nth_element(first + lo, first + mid, first + hi, before);
    double upper = 0;
    for (index_t j = lo; j < mid; ++j) upper += weight(first[j]);
    if (removed(mid, ahead + upper)) {
      hi = mid;  // first[mid] is the best of the rest, and it goes: so does everything after it
    } else {
      lo = mid;
      ahead += upper;
    }
  }
  std::sort(first + lo, first + hi, before);
  for (index_t j = lo; j < hi; ++j) {
    if (removed(j, ahead)) return j;
    ahead += weight(first[j]);
  }
  return hi;
}

template <class T>
sampling_support find_support(const char* function, vector_view<const T> x, const sampler_config& config,
                              const row_summary& summary, std::span<token_candidate<T>> scratch, index_t row) {
  const index_t vocab = x.shape[0];
  const double t = config.temperature;
  const auto weight = [&](const token_candidate<T>& c) {
    return tempered_weight(static_cast<double>(c.logit), summary.max, t);
  };
  sampling_support support;
  support.floor_weight = config.uses_min_p() ? config.min_p : 0.0;
  const bool top_k = config.uses_top_k(vocab);
  const auto sum_kept = [&] {
    return with_row(x, [&](const T* p, auto stride) {
      return sum_blocks(vocab, [&](index_t v) {
        const double xv = static_cast<double>(p[v * stride]);
        const double w = tempered_weight(xv, summary.max, t);
        return support.keeps(xv, v, w) ? w : 0.0;
      });
    });
  };
  if (!top_k && !config.uses_top_p()) {
    support.z = support.floor_weight > 0 ? sum_kept() : summary.z;
    return support;
  }
  if (static_cast<index_t>(scratch.size()) < vocab)
    fail(function, ": scratch holds ", scratch.size(), " candidates but logits row ", row, " has ", vocab,
         " tokens (top-k/top-p need one per token; see sampler_scratch)");
  // -inf logits weigh 0 under every warper: leave them out. Top-p alone also
  // leaves out every token with w < (1 - top_p) z / (2 V): the tokens ranked
  // at or below it weigh less than V times that, under (1 - top_p) z, so
  // top-p removes it anyway — and it never reaches a sort.
  // As a logit: w >= cut <=> x >= max + t log(cut); the 2 in the cut leaves
  // room for rounding, so comparing logits needs no exp.
  const double lowest = -std::numeric_limits<double>::infinity();
  const double x_cut =
      top_k ? lowest : summary.max + t * std::log(0.5 * (1.0 - config.top_p) * summary.z / static_cast<double>(vocab));
  index_t n = with_row(x, [&](const T* p, auto stride) {
    index_t count = 0;
    for (index_t v = 0; v < vocab; ++v) {
      const T xv = p[v * stride];
      if (static_cast<double>(xv) > lowest && static_cast<double>(xv) >= x_cut)
        scratch[static_cast<std::size_t>(count++)] = {xv, static_cast<std::int32_t>(v)};
    }
    return count;
  });
  auto* first = scratch.data();
  const auto before = [](const token_candidate<T>& a, const token_candidate<T>& b) { return ranks_before(a, b); };
  if (!top_k) {
    // Top-p alone can keep most of a flat vocabulary: find the boundary token
    // and sample the kept tokens in id order, without sorting them.
    const index_t kept = top_p_head(first, n, summary.z, config.top_p, weight);
    support.bounded = true;
    support.boundary_logit = static_cast<double>(first[kept - 1].logit);
    support.boundary_id = first[kept - 1].id;
    support.z = sum_kept();
    return support;
  }
  // Top-k: the k best, and every logit tied with the k-th (transformers
  // removes only scores < the k-th), sorted; then top-p over their weight.
  if (config.top_k < n) {
    const index_t k = config.top_k;
    std::nth_element(first, first + (k - 1), first + n, before);
    const T threshold = first[k - 1].logit;
    n = std::partition(first + k, first + n, [&](const token_candidate<T>& c) { return c.logit == threshold; }) - first;
  }
  std::sort(first, first + n, before);
  if (config.uses_top_p()) {
    double z = 0;
    for (index_t j = 0; j < n; ++j) z += weight(first[j]);
    n = top_p_head(first, n, z, config.top_p, weight);
    // Over 256 candidates top_p_head reorders them (nth_element halving): the
    // kept head goes back to rank order, which min-p and the draw walk.
    std::sort(first, first + n, before);
  }
  // Min-p keeps a prefix of the ranking: w falls with the rank, and w = 1 at the top.
  while (n > 1 && weight(first[n - 1]) < support.floor_weight) --n;
  support.kind = support_kind::candidates;
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
  // Whole vocabulary in id order, block by block as sum_blocks added it up:
  // skip whole blocks until the one where the running sum passes the target.
  const index_t vocab = x.shape[0];
  return with_row(x, [&](const T* p, auto stride) -> index_t {
    const auto w = [&](index_t v) {
      const double xv = static_cast<double>(p[v * stride]);
      const double wv = tempered_weight(xv, summary.max, t);
      return support.keeps(xv, v, wv) ? wv : 0.0;
    };
    for (index_t b = 0; b < vocab; b += sum_block_size) {
      const index_t end = std::min(vocab, b + sum_block_size);
      const double block = sum_block(b, end, w);
      if (block > 0 && running + block > target) {
        double inner = running;
        for (index_t v = b; v < end; ++v) {
          const double wv = w(v);
          if (wv <= 0) continue;
          inner += wv;
          last = v;
          if (inner > target) return v;
        }
        return last;  // rounding: the block passes the target as a whole but not token by token
      }
      running += block;
      if (block > 0)
        for (index_t v = end; v-- > b;)
          if (w(v) > 0) {
            last = v;
            break;
          }
    }
    return last;
  });
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
  for (index_t v = 0; v < x.shape[0]; ++v) {
    const double xv = static_cast<double>(x(v));
    y(v) = support.keeps(xv, v, detail::tempered_weight(xv, summary.max, t)) ? logp(xv) : minus_inf;
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
