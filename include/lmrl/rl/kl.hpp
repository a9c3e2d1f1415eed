// Per-token estimators of KL(pi_theta || pi_ref) from the log-probs of the
// sampled token (Schulman, "Approximating KL divergence", 2020), as verl's
// kl_penalty / kl_penalty_forward and TRL's GRPO per_token_kl define them.
//
// With x = logp - ref_logp (the policy's log-ratio to the reference):
//   k1  ("kl", "k1")          x                         d/dlogp = 1
//   abs ("abs")               |x|                       d/dlogp = sign(x)  (0 at x = 0, as torch)
//   k2  ("mse", "k2")         x^2 / 2                   d/dlogp = x
//   k3  ("low_var_kl", "k3")  exp(-x) + x - 1           d/dlogp = 1 - exp(-x)
// The "+" forms of verl (k1+, abs+, k3+, ...) are straight-through: the value
// of the base estimator, the gradient of k2 (x), whose expectation is the
// gradient of the true KL.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <string_view>
#include <utility>

#include "lmrl/error.hpp"
#include "lmrl/rl/inputs.hpp"
#include "lmrl/tensor/checks.hpp"
#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

// k1 = logp - ref_logp: unbiased for KL, high variance, can be negative.
struct kl_k1 {
  template <Real T>
  T value(T logp, T ref_logp) const {
    return logp - ref_logp;
  }
  template <Real T>
  T gradient(T, T) const {
    return T(1);
  }
};

// |logp - ref_logp|. The derivative at 0 is 0 (torch's abs backward).
struct kl_abs {
  template <Real T>
  T value(T logp, T ref_logp) const {
    return std::abs(logp - ref_logp);
  }
  template <Real T>
  T gradient(T logp, T ref_logp) const {
    const T x = logp - ref_logp;
    return x > 0 ? T(1) : (x < 0 ? T(-1) : T(0));
  }
};

// k2 = (logp - ref_logp)^2 / 2: biased, low variance; its gradient is unbiased
// for the gradient of KL (verl "mse").
struct kl_k2 {
  template <Real T>
  T value(T logp, T ref_logp) const {
    const T x = logp - ref_logp;
    return T(0.5) * x * x;
  }
  template <Real T>
  T gradient(T logp, T ref_logp) const {
    return logp - ref_logp;
  }
};

// k3 = exp(r) - r - 1 with r = ref_logp - logp: unbiased, low variance, >= 0.
// TRL's GRPO per_token_kl is k3 without clamps (clamp = false, the default
// here). verl's "low_var_kl"/"k3" clamps r to [-20, 20] before exp and the
// result to [-10, 10] (clamp = true; see kl_k3::verl()). Where a clamp is
// active (strictly outside its range) the gradient is 0, as autograd gives
// through torch.clamp; on the boundary it passes.
struct kl_k3 {
  bool clamp = false;               // TRL: no clamps; verl: clamps
  double log_ratio_clamp = 20;      // verl: torch.clamp(kl, min=-20, max=20)
  double value_clamp = 10;          // verl: torch.clamp(kld, min=-10, max=10)

  static constexpr kl_k3 trl() { return kl_k3{}; }
  static constexpr kl_k3 verl() { return kl_k3{.clamp = true}; }

  template <Real T>
  T value(T logp, T ref_logp) const {
    T r = ref_logp - logp;
    if (clamp) r = std::clamp(r, T(-log_ratio_clamp), T(log_ratio_clamp));
    T k = std::exp(r) - r - T(1);
    if (clamp) k = std::clamp(k, T(-value_clamp), T(value_clamp));
    return k;
  }
  template <Real T>
  T gradient(T logp, T ref_logp) const {
    const T r = ref_logp - logp;
    if (clamp) {
      if (r < T(-log_ratio_clamp) || r > T(log_ratio_clamp)) return T(0);
      const T k = std::exp(r) - r - T(1);
      if (k < T(-value_clamp) || k > T(value_clamp)) return T(0);
    }
    // d/dlogp [exp(r) - r - 1] = (exp(r) - 1) * dr/dlogp = 1 - exp(r)
    return T(1) - std::exp(r);
  }
  // Both at the cost of one exp (the batch function uses it); the same bits
  // as value() and gradient().
  template <Real T>
  std::pair<T, T> value_and_gradient(T logp, T ref_logp) const {
    T r = ref_logp - logp;
    bool flat = false;
    if (clamp && (r < T(-log_ratio_clamp) || r > T(log_ratio_clamp))) {
      r = std::clamp(r, T(-log_ratio_clamp), T(log_ratio_clamp));
      flat = true;
    }
    const T e = std::exp(r);
    T k = e - r - T(1);
    if (clamp && (k < T(-value_clamp) || k > T(value_clamp))) {
      k = std::clamp(k, T(-value_clamp), T(value_clamp));
      flat = true;
    }
    return {k, flat ? T(0) : T(1) - e};
  }
};

// verl's "+" forms: value of Base, gradient of k2 (logp - ref_logp).
template <class Base>
struct kl_straight_through {
  Base base{};
  template <Real T>
  T value(T logp, T ref_logp) const {
    return base.value(logp, ref_logp);
  }
  template <Real T>
  T gradient(T logp, T ref_logp) const {
    return logp - ref_logp;
  }
};

using kl_k1_plus = kl_straight_through<kl_k1>;
using kl_abs_plus = kl_straight_through<kl_abs>;
using kl_k3_plus = kl_straight_through<kl_k3>;

// ------------------------------------------------------------ run-time choice

enum class kl_kind { k1, abs, k2, k3 };

// An estimator chosen by its verl name at run time ("kl", "k1", "abs", "mse",
// "k2", "low_var_kl", "k3", each optionally with a "+" suffix). The verl names
// of k3 come with verl's clamps; set clamp = false for TRL's unclamped k3.
struct kl_estimator {
  kl_kind kind = kl_kind::k3;     // verl actor kl_loss_type default "low_var_kl"
  bool straight_through = false;  // the "+" suffix: gradient of k2
  bool clamp = true;              // k3 only: verl's clamps (kl_k3::verl())

  static constexpr std::string_view allowed_names =
      "kl, k1, abs, mse, k2, low_var_kl, k3 (each optionally followed by '+')";

  static kl_estimator from_name(std::string_view name) {
    kl_estimator e;
    std::string_view base = name;
    if (!base.empty() && base.back() == '+') {
      e.straight_through = true;
      base.remove_suffix(1);
    }
    if (base == "kl" || base == "k1") {
      e.kind = kl_kind::k1;
    } else if (base == "abs") {
      e.kind = kl_kind::abs;
    } else if (base == "mse" || base == "k2") {
      e.kind = kl_kind::k2;
      e.straight_through = false;  // k2+ is k2 (verl returns the forward score)
    } else if (base == "low_var_kl" || base == "k3") {
      e.kind = kl_kind::k3;
    } else {
      detail::fail("lmrl::kl_estimator::from_name: unknown KL estimator name '", std::string(name),
                   "'; allowed: ", allowed_names);
    }
    return e;
  }

  // The canonical verl name of this estimator.
  std::string name() const {
    std::string n = kind == kl_kind::k1 ? "k1" : kind == kl_kind::abs ? "abs" : kind == kl_kind::k2 ? "k2" : "k3";
    if (straight_through && kind != kl_kind::k2) n += '+';
    return n;
  }

  template <Real T>
  T value(T logp, T ref_logp) const {
    switch (kind) {
      case kl_kind::k1: return kl_k1{}.value(logp, ref_logp);
      case kl_kind::abs: return kl_abs{}.value(logp, ref_logp);
      case kl_kind::k2: return kl_k2{}.value(logp, ref_logp);
      case kl_kind::k3: break;
    }
    return kl_k3{.clamp = clamp}.value(logp, ref_logp);
  }
  template <Real T>
  T gradient(T logp, T ref_logp) const {
    if (straight_through) return logp - ref_logp;
    switch (kind) {
      case kl_kind::k1: return kl_k1{}.gradient(logp, ref_logp);
      case kl_kind::abs: return kl_abs{}.gradient(logp, ref_logp);
      case kl_kind::k2: return kl_k2{}.gradient(logp, ref_logp);
      case kl_kind::k3: break;
    }
    return kl_k3{.clamp = clamp}.gradient(logp, ref_logp);
  }
  template <Real T>
  std::pair<T, T> value_and_gradient(T logp, T ref_logp) const {
    if (kind != kl_kind::k3) return {value(logp, ref_logp), gradient(logp, ref_logp)};
    auto vg = kl_k3{.clamp = clamp}.value_and_gradient(logp, ref_logp);
    if (straight_through) vg.second = logp - ref_logp;
    return vg;
  }
};

// ------------------------------------------------------------ batch

// values[i, t] = k.value(logp, ref_logp) and gradients[i, t] = d values / d logp
// on active tokens, 0 where the mask is 0. gradients may be empty (not wanted).
template <class K, Real T>
  requires KLEstimator<K, T>
void kl_per_token(const K& k, matrix_view<const T> logp, matrix_view<const T> ref_logp, matrix_view<const T> mask,
                  matrix_view<T> values, matrix_view<T> gradients = {}) {
  constexpr const char* fn = "lmrl::kl_per_token";
  detail::require_same_shape(fn, "logp", logp, "ref_logp", ref_logp);
  detail::require_same_shape(fn, "logp", logp, "mask", mask);
  detail::require_same_shape(fn, "logp", logp, "values", values);
  const bool want_gradient = gradients.data != nullptr;
  if (want_gradient) detail::require_same_shape(fn, "logp", logp, "gradients", gradients);
  detail::require_mask(fn, "mask", mask);
  detail::require_finite_where(fn, "logp", logp, mask);
  detail::require_finite_where(fn, "ref_logp", ref_logp, mask);
  for (index_t i = 0; i < logp.shape[0]; ++i)
    for (index_t t = 0; t < logp.shape[1]; ++t) {
      if (mask(i, t) == 0) {
        values(i, t) = T(0);
        if (want_gradient) gradients(i, t) = T(0);
        continue;
      }
      const T lp = logp(i, t), rp = ref_logp(i, t);
      if (!want_gradient) {
        values(i, t) = static_cast<T>(k.value(lp, rp));
      } else if constexpr (requires { k.value_and_gradient(lp, rp); }) {
        const auto [v, g] = k.value_and_gradient(lp, rp);
        values(i, t) = static_cast<T>(v);
        gradients(i, t) = static_cast<T>(g);
      } else {
        values(i, t) = static_cast<T>(k.value(lp, rp));
        gradients(i, t) = static_cast<T>(k.gradient(lp, rp));
      }
    }
}

// Any backend: the same, into caller storage.
template <class K, Array2D L, Array2D R, Array2D M, WritableArray2D V>
  requires KLEstimator<K, element_t<L, 2>>
void kl_per_token(const K& k, const L& logp, const R& ref_logp, const M& mask, V&& values) {
  using T = element_t<L, 2>;
  kl_per_token<K, T>(k, view<2>(logp), view<2>(ref_logp), view<2>(mask), view<2>(values), matrix_view<T>{});
}

template <class K, Array2D L, Array2D R, Array2D M, WritableArray2D V, WritableArray2D G>
  requires KLEstimator<K, element_t<L, 2>>
void kl_per_token(const K& k, const L& logp, const R& ref_logp, const M& mask, V&& values, G&& gradients) {
  using T = element_t<L, 2>;
  kl_per_token<K, T>(k, view<2>(logp), view<2>(ref_logp), view<2>(mask), view<2>(values), view<2>(gradients));
}

// Convenience: the per-token values as a new array of logp's family.
template <class K, Array2D L, Array2D R, Array2D M>
  requires KLEstimator<K, element_t<L, 2>>
auto kl_per_token(const K& k, const L& logp, const R& ref_logp, const M& mask) {
  using T = element_t<L, 2>;
  const auto lv = view<2>(logp);
  auto out = make_like<L, T, 2>(lv.shape);
  kl_per_token<K, T>(k, lv, view<2>(ref_logp), view<2>(mask), view<2>(out), matrix_view<T>{});
  return out;
}

// Mean of values over active tokens (accumulated in double), as TRL logs "kl";
// the mask must have an active token.
template <Real T>
double kl_masked_mean(matrix_view<const T> values, matrix_view<const T> mask) {
  constexpr const char* fn = "lmrl::kl_masked_mean";
  detail::require_same_shape(fn, "values", values, "mask", mask);
  double sum = 0;
  index_t n = 0;
  for (index_t i = 0; i < values.shape[0]; ++i)
    for (index_t t = 0; t < values.shape[1]; ++t)
      if (mask(i, t) != 0) {
        sum += static_cast<double>(values(i, t));
        ++n;
      }
  detail::require(n > 0, fn, ": mask of shape ", mask, " has no active token");
  return sum / static_cast<double>(n);
}

template <Array2D V, Array2D M>
double kl_masked_mean(const V& values, const M& mask) {
  using T = element_t<V, 2>;
  return kl_masked_mean<T>(view<2>(values), view<2>(mask));
}

}  // namespace lmrl
