// sampler_config: the decoding hyper-parameters, named as Hugging Face
// transformers' GenerationConfig and TRL's GRPOConfig name them, and their
// validation.
#pragma once

#include <cmath>

#include "lmrl/error.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

struct sampler_config {
  // false = greedy decoding (argmax; the warpers below are ignored, as in
  // transformers' generate()). TRL's GRPOTrainer always samples.
  bool do_sample = true;
  // Logits are divided by it. TRL GRPOConfig default 1.0 (also HF's).
  double temperature = 1.0;
  // Keep the top_k highest logits (and any tied with the k-th); 0 = off.
  // TRL GRPOConfig default 0 (HF GenerationConfig's is 50).
  index_t top_k = 0;
  // Nucleus: keep the smallest set of most probable tokens whose mass reaches
  // top_p; 1 = off. TRL/HF default 1.0.
  double top_p = 1.0;
  // Drop tokens with probability below min_p times the top token's; 0 = off.
  // TRL GRPOConfig default None (off), which is 0 here.
  double min_p = 0.0;

  // Throws lmrl::error naming the field and its value when out of range.
  void validate() const {
    detail::require(std::isfinite(temperature) && temperature > 0, "sampler_config: temperature = ", temperature,
                    " must be a finite number > 0 (for greedy decoding set do_sample = false)");
    detail::require(top_k >= 0, "sampler_config: top_k = ", top_k, " must be >= 0 (0 turns top-k off)");
    detail::require(top_p > 0 && top_p <= 1, "sampler_config: top_p = ", top_p,
                    " must be in (0, 1] (1 turns top-p off)");
    detail::require(min_p >= 0 && min_p < 1, "sampler_config: min_p = ", min_p,
                    " must be in [0, 1) (0 turns min-p off)");
  }

  // Which warpers are active for a vocabulary of `vocab` tokens.
  constexpr bool uses_top_k(index_t vocab) const { return do_sample && top_k > 0 && top_k < vocab; }
  constexpr bool uses_top_p() const { return do_sample && top_p < 1; }
  constexpr bool uses_min_p() const { return do_sample && min_p > 0; }
};

}  // namespace lmrl
