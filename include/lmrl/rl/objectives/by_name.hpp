// A policy objective chosen at run time by name, for trainers driven by a
// config file: make_objective("gspo") returns an any_objective holding a
// gspo with its defaults, which is itself a PolicyObjective.
//
// Names: "ppo" (aliases "vanilla", verl's name, and "grpo", TRL's), "gspo",
// "gspo_token", "gmpo" (alias "geo_mean", verl's), "cispo", "sapo", "clip_cov",
// "kl_cov", "reinforce" (alias "gpg", verl's). Unknown names throw lmrl::error
// listing these.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <variant>

#include "lmrl/error.hpp"
#include "lmrl/rl/inputs.hpp"
#include "lmrl/rl/objectives/cispo.hpp"
#include "lmrl/rl/objectives/covariance.hpp"
#include "lmrl/rl/objectives/gmpo.hpp"
#include "lmrl/rl/objectives/gspo.hpp"
#include "lmrl/rl/objectives/ppo_clip.hpp"
#include "lmrl/rl/objectives/reinforce.hpp"
#include "lmrl/rl/objectives/sapo.hpp"

namespace lmrl {

using objective_variant = std::variant<ppo_clip, gspo, gspo_token, gmpo, cispo, sapo, clip_cov, kl_cov, reinforce>;

// The canonical name of each alternative, in variant order.
inline constexpr std::array<std::string_view, std::variant_size_v<objective_variant>> objective_names = {
    "ppo", "gspo", "gspo_token", "gmpo", "cispo", "sapo", "clip_cov", "kl_cov", "reinforce"};

struct any_objective {
  objective_variant objective;

  template <Real T>
  objective_stats loss(const policy_inputs<T>& in, matrix_view<T> per_token_loss) const {
    return std::visit([&](const auto& o) { return o.loss(in, per_token_loss); }, objective);
  }

  template <Real T>
  void backward(const policy_inputs<T>& in, matrix_view<const T> g, matrix_view<T> dlogp) const {
    std::visit([&](const auto& o) { o.backward(in, g, dlogp); }, objective);
  }

  std::string_view name() const { return objective_names[objective.index()]; }
};

static_assert(PolicyObjective<any_objective, float> && PolicyObjective<any_objective, double>);

// The objective called `name`, with its default hyper-parameters.
inline any_objective make_objective(std::string_view name) {
  if (name == "ppo" || name == "vanilla" || name == "grpo") return {ppo_clip{}};
  if (name == "gspo") return {gspo{}};
  if (name == "gspo_token") return {gspo_token{}};
  if (name == "gmpo" || name == "geo_mean") return {gmpo{}};
  if (name == "cispo") return {cispo{}};
  if (name == "sapo") return {sapo{}};
  if (name == "clip_cov") return {clip_cov{}};
  if (name == "kl_cov") return {kl_cov{}};
  if (name == "reinforce" || name == "gpg") return {reinforce{}};
  std::string allowed;
  for (auto n : objective_names) allowed += (allowed.empty() ? "" : ", ") + std::string(n);
  detail::fail("make_objective: unknown objective \"", name, "\"; allowed names are ", allowed,
               " (aliases: vanilla, grpo = ppo; geo_mean = gmpo; gpg = reinforce)");
}

}  // namespace lmrl
