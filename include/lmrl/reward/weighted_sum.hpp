// weighted_sum: several rules, one reward. Each component's value is written
// per completion into caller storage ([completions x rules]) so a trainer can
// log them separately, and the weighted total into a [completions] array.
//
// NaN components follow TRL's GRPOTrainer: total_i = nansum_k(w_k r_ik), and a
// completion whose components are all NaN gets NaN (TRL marks it unscorable
// rather than collapsing it to 0). Infinite components or weights are errors.
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <span>
#include <tuple>
#include <utility>

#include "lmrl/error.hpp"
#include "lmrl/reward/rule.hpp"
#include "lmrl/tensor/checks.hpp"
#include "lmrl/tensor/concepts.hpp"

namespace lmrl {

template <RewardRule... Rules>
class weighted_sum {
 public:
  static constexpr std::size_t size = sizeof...(Rules);
  static_assert(size > 0, "weighted_sum needs at least one rule");

  // All weights 1 (TRL's default reward_weights).
  explicit weighted_sum(Rules... rules) : rules_(std::move(rules)...) { weights_.fill(1.0); }
  weighted_sum(std::array<double, size> weights, Rules... rules) : rules_(std::move(rules)...), weights_(weights) {
    for (std::size_t k = 0; k < size; ++k)
      detail::require(std::isfinite(weights_[k]), "weighted_sum: weights[", k, "] = ", weights_[k], " is not finite");
  }

  const std::array<double, size>& weights() const { return weights_; }
  const std::tuple<Rules...>& rules() const { return rules_; }

  // One completion's components.
  std::array<double, size> components(const reward_context& ctx) const {
    std::array<double, size> values{};
    std::size_t k = 0;
    std::apply([&](const auto&... rule) { ((values[k++] = static_cast<double>(rule(ctx))), ...); }, rules_);
    for (std::size_t j = 0; j < size; ++j)
      if (std::isinf(values[j])) detail::fail("weighted_sum: rule ", j, " returned ", values[j], " (infinite)");
    return values;
  }

  // nansum of the weighted components; NaN when every component is NaN.
  double total(const std::array<double, size>& values) const {
    double sum = 0;
    bool any = false;
    for (std::size_t k = 0; k < size; ++k) {
      if (std::isnan(values[k])) continue;
      sum += weights_[k] * values[k];
      any = true;
    }
    return any ? sum : std::nan("");
  }

  // A weighted sum is itself a rule.
  double operator()(const reward_context& ctx) const { return total(components(ctx)); }

  // Every completion of a batch: components(i, k) = rule k on batch[i], totals(i) = weighted total.
  template <WritableArray2D C, WritableArray1D T>
    requires Real<element_t<C, 2>> && Real<element_t<T, 1>>
  void evaluate(std::span<const reward_context> batch, C&& components_out, T&& totals_out) const {
    auto c = view<2>(components_out);
    auto t = view<1>(totals_out);
    const auto n = static_cast<index_t>(batch.size());
    detail::require(c.shape[0] == n && c.shape[1] == static_cast<index_t>(size), "weighted_sum: components has shape ",
                    c, " but the batch has ", n, " completions and ", size, " rules");
    detail::require(t.shape[0] == n, "weighted_sum: totals has shape ", t, " but the batch has ", n, " completions");
    using TC = element_t<C, 2>;
    using TT = element_t<T, 1>;
    for (index_t i = 0; i < n; ++i) {
      std::array<double, size> values;
      try {
        values = components(batch[static_cast<std::size_t>(i)]);
      } catch (const error& e) {
        detail::fail(e.what(), " for completion ", i);
      }
      for (std::size_t k = 0; k < size; ++k) c(i, static_cast<index_t>(k)) = static_cast<TC>(values[k]);
      t(i) = static_cast<TT>(total(values));
    }
  }

 private:
  std::tuple<Rules...> rules_;
  std::array<double, size> weights_{};
};

template <class... Rules>
  requires(RewardRule<Rules> && ...)
weighted_sum(Rules...) -> weighted_sum<Rules...>;

template <std::size_t N, class... Rules>
  requires(RewardRule<Rules> && ...)
weighted_sum(std::array<double, N>, Rules...) -> weighted_sum<Rules...>;

}  // namespace lmrl
