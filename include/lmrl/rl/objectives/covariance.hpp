// Clip-Cov and KL-Cov (Cui et al., "The Entropy Mechanism of Reinforcement
// Learning for Reasoning Language Models", arXiv 2505.22617), as verl
// compute_policy_loss_clip_cov / compute_policy_loss_kl_cov compute them.
// Both rank active tokens by their centered covariance between advantage and
// log-prob over the whole batch,
//
//   cov[i,t] = (A[i,t] - mean A) (logp[i,t] - mean logp)     (means over active tokens)
//
// and treat the high-covariance tokens, which drive entropy collapse, apart:
//
// - clip_cov: the PPO clipped surrogate (rho = exp(logp - old_logp), no dual
//   clip, no log-ratio clamp); among the active tokens not already clipped by
//   PPO with clip_cov_lb < cov < clip_cov_ub, a random subset of
//   max(int(clip_cov_ratio * active), 1) tokens (all of them if fewer) gets
//   loss 0 and gradient 0. verl draws the subset with torch.randperm; lmrl
//   draws it from `seed` (a partial Fisher-Yates shuffle of the candidates in
//   row-major order, splitmix64), so loss and backward pick the same tokens.
//   Give a new seed each step for a new draw.
// - kl_cov: l = -A rho, no clipping at all, plus ppo_kl_coef |logp - old_logp|
//   on the max(1, int(kl_cov_ratio * active)) tokens of largest cov (torch.topk;
//   ties go to the earlier token in row-major order).
//
// The selection is computed from the inputs, treated as a constant (no
// gradient through it), and allocates O(active tokens) scratch.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "lmrl/rl/inputs.hpp"
#include "lmrl/rl/objectives/common.hpp"

namespace lmrl {

namespace detail {

// Masked means of A and logp over active tokens; eps is verl's 1e-8 in
// masked_mean (clip_cov) or 0 for a plain mean (kl_cov uses tensor.mean()).
template <Real T>
std::pair<double, double> active_means(const policy_inputs<T>& in, double eps, index_t& active) {
  double a = 0, l = 0;
  active = 0;
  for (index_t i = 0; i < in.logp.shape[0]; ++i)
    for (index_t t = 0; t < in.logp.shape[1]; ++t)
      if (in.mask(i, t) != 0) {
        a += static_cast<double>(in.advantages(i, t));
        l += static_cast<double>(in.logp(i, t));
        ++active;
      }
  const double n = static_cast<double>(active) + eps;
  if (n == 0) return {0.0, 0.0};
  return {a / n, l / n};
}

inline std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Walks a sorted list of flat indices along a row-major traversal.
struct selection_cursor {
  const std::vector<index_t>& picked;
  std::size_t next = 0;
  bool at(index_t flat) {
    while (next < picked.size() && picked[next] < flat) ++next;
    return next < picked.size() && picked[next] == flat;
  }
};

}  // namespace detail

struct clip_cov {
  double epsilon_low = 0.2;         // verl clip_ratio_low
  double epsilon_high = 0.2;        // verl clip_ratio_high
  double clip_cov_ratio = 0.0002;   // verl policy_loss.clip_cov_ratio
  double clip_cov_lb = 1.0;         // verl policy_loss.clip_cov_lb
  double clip_cov_ub = 5.0;         // verl policy_loss.clip_cov_ub
  std::uint64_t seed = 0;           // the random subset; verl uses torch's global generator

  void validate(const char* function) const {
    detail::require_in_range(function, "epsilon_low", epsilon_low, 0.0, 1.0, "[0, 1]");
    detail::require_in_range(function, "epsilon_high", epsilon_high, 0.0, std::numeric_limits<double>::max(),
                             "[0, inf)");
    detail::require(clip_cov_ratio > 0 && clip_cov_ratio <= 1, function, ": clip_cov_ratio = ", clip_cov_ratio,
                    " must be in (0, 1]");
    detail::require(clip_cov_lb < clip_cov_ub, function, ": clip_cov_lb = ", clip_cov_lb,
                    " must be below clip_cov_ub = ", clip_cov_ub);
  }

  // Flat indices (i * cols + t), sorted, of the tokens whose loss is dropped.
  template <Real T>
  std::vector<index_t> selected(const policy_inputs<T>& in) const {
    index_t active = 0;
    const auto [mean_a, mean_l] = detail::active_means(in, 1e-8, active);
    std::vector<index_t> candidates;
    for (index_t i = 0; i < in.logp.shape[0]; ++i)
      for (index_t t = 0; t < in.logp.shape[1]; ++t) {
        if (in.mask(i, t) == 0) continue;
        const double logp = static_cast<double>(in.logp(i, t));
        const double adv = static_cast<double>(in.advantages(i, t));
        if (surrogate(logp, detail::old_logp_at(in, i, t), adv).clipped) continue;  // clip_by_origin
        const double cov = (adv - mean_a) * (logp - mean_l);
        if (cov > clip_cov_lb && cov < clip_cov_ub) candidates.push_back(i * in.logp.shape[1] + t);
      }
    const auto clip_num =
        std::max<index_t>(static_cast<index_t>(clip_cov_ratio * static_cast<double>(active)), 1);
    const auto take = std::min<std::size_t>(static_cast<std::size_t>(clip_num), candidates.size());
    std::uint64_t state = seed;
    for (std::size_t j = 0; j < take; ++j) {
      const std::size_t r = j + static_cast<std::size_t>(detail::splitmix64(state) % (candidates.size() - j));
      std::swap(candidates[j], candidates[r]);
    }
    candidates.resize(take);
    std::sort(candidates.begin(), candidates.end());
    return candidates;
  }

  template <Real T>
  objective_stats loss(const policy_inputs<T>& in, matrix_view<T> per_token_loss) const {
    validate("clip_cov::loss");
    detail::check_loss_args("clip_cov::loss", in, per_token_loss);
    const auto picked = selected(in);
    detail::selection_cursor cursor{picked};
    const index_t cols = in.logp.shape[1];
    return detail::elementwise_loss(in, per_token_loss, [&](index_t i, index_t t, double logp, double old, double adv) {
      auto k = surrogate(logp, old, adv);
      if (cursor.at(i * cols + t)) {
        k.loss = 0;
        k.dloss_dlogp = 0;
        k.picked = true;
      }
      return k;
    });
  }

  template <Real T>
  void backward(const policy_inputs<T>& in, matrix_view<const T> g, matrix_view<T> dlogp) const {
    validate("clip_cov::backward");
    detail::check_backward_args("clip_cov::backward", in, g, dlogp);
    const auto picked = selected(in);
    detail::selection_cursor cursor{picked};
    const index_t cols = in.logp.shape[1];
    detail::elementwise_backward(in, g, dlogp, [&](index_t i, index_t t, double logp, double old, double adv) {
      auto k = surrogate(logp, old, adv);
      if (cursor.at(i * cols + t)) k.dloss_dlogp = 0;
      return k;
    });
  }

 private:
  detail::token_terms surrogate(double logp, double old_logp, double adv) const {
    const double r = logp - old_logp;
    const double rho = std::exp(r);
    const auto s = detail::clipped_surrogate(rho, adv, 1 - epsilon_low, 1 + epsilon_high);
    detail::token_terms k;
    k.loss = s.loss;
    k.dloss_dlogp = s.dloss_dratio * rho;
    k.log_ratio = r;
    k.ratio = rho;
    k.low = s.low;
    k.high = s.high;
    k.clipped = s.low || s.high;  // verl clip_by_origin: -A clip(rho) > -A rho
    return k;
  }
};

struct kl_cov {
  double kl_cov_ratio = 0.0002;  // verl policy_loss.kl_cov_ratio
  double ppo_kl_coef = 0.1;      // verl policy_loss.ppo_kl_coef (config default; the function's fallback is 1.0)

  void validate(const char* function) const {
    detail::require(kl_cov_ratio > 0 && kl_cov_ratio <= 1, function, ": kl_cov_ratio = ", kl_cov_ratio,
                    " must be in (0, 1]");
    detail::require(ppo_kl_coef >= 0 && std::isfinite(ppo_kl_coef), function, ": ppo_kl_coef = ", ppo_kl_coef,
                    " must be a finite number >= 0");
  }

  // Flat indices (i * cols + t), sorted, of the tokens that get the KL term.
  template <Real T>
  std::vector<index_t> selected(const policy_inputs<T>& in) const {
    index_t active = 0;
    const auto [mean_a, mean_l] = detail::active_means(in, 0.0, active);
    std::vector<std::pair<double, index_t>> cov;
    cov.reserve(static_cast<std::size_t>(active));
    for (index_t i = 0; i < in.logp.shape[0]; ++i)
      for (index_t t = 0; t < in.logp.shape[1]; ++t)
        if (in.mask(i, t) != 0)
          cov.emplace_back((static_cast<double>(in.advantages(i, t)) - mean_a) *
                               (static_cast<double>(in.logp(i, t)) - mean_l),
                           i * in.logp.shape[1] + t);
    std::vector<index_t> picked;
    if (active == 0) return picked;
    const auto k = std::min<std::size_t>(
        static_cast<std::size_t>(std::max<index_t>(1, static_cast<index_t>(static_cast<double>(active) * kl_cov_ratio))),
        cov.size());
    std::partial_sort(cov.begin(), cov.begin() + static_cast<std::ptrdiff_t>(k), cov.end(),
                      [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
    for (std::size_t j = 0; j < k; ++j) picked.push_back(cov[j].second);
    std::sort(picked.begin(), picked.end());
    return picked;
  }

  template <Real T>
  objective_stats loss(const policy_inputs<T>& in, matrix_view<T> per_token_loss) const {
    validate("kl_cov::loss");
    detail::check_loss_args("kl_cov::loss", in, per_token_loss);
    const auto picked = selected(in);
    detail::selection_cursor cursor{picked};
    const index_t cols = in.logp.shape[1];
    return detail::elementwise_loss(in, per_token_loss, [&](index_t i, index_t t, double logp, double old, double adv) {
      return token(cursor.at(i * cols + t), logp, old, adv);
    });
  }

  template <Real T>
  void backward(const policy_inputs<T>& in, matrix_view<const T> g, matrix_view<T> dlogp) const {
    validate("kl_cov::backward");
    detail::check_backward_args("kl_cov::backward", in, g, dlogp);
    const auto picked = selected(in);
    detail::selection_cursor cursor{picked};
    const index_t cols = in.logp.shape[1];
    detail::elementwise_backward(in, g, dlogp, [&](index_t i, index_t t, double logp, double old, double adv) {
      return token(cursor.at(i * cols + t), logp, old, adv);
    });
  }

 private:
  detail::token_terms token(bool picked, double logp, double old_logp, double adv) const {
    const double r = logp - old_logp;
    const double rho = std::exp(r);
    detail::token_terms k;
    k.loss = -adv * rho;
    k.dloss_dlogp = -adv * rho;
    if (picked) {
      k.loss += ppo_kl_coef * std::abs(r);
      k.dloss_dlogp += ppo_kl_coef * detail::sign(r);  // torch: d|x|/dx = sign(x), 0 at 0
      k.picked = true;
    }
    k.log_ratio = r;
    k.ratio = rho;
    return k;
  }
};

static_assert(PolicyObjective<clip_cov, float> && PolicyObjective<clip_cov, double>);
static_assert(PolicyObjective<kl_cov, float> && PolicyObjective<kl_cov, double>);

}  // namespace lmrl
