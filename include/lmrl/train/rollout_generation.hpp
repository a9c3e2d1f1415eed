// The two conversions between the trainer's rollout round and a generate()
// call, shared by every RolloutGenerator built on generate() (the CPU's
// transformer_rollouts, the GPU's transformer_gpu_rollouts):
//
//   generation_options o = rollout_generation_options(request, eos_ids, pad_id);
//   rollout_batch<T> r = to_rollout_batch(generation_result);   // each completion up to its length
#pragma once

#include <cstdint>
#include <vector>

#include "lmrl/model/generation.hpp"
#include "lmrl/train/grpo_trainer.hpp"

namespace lmrl {

inline generation_options rollout_generation_options(const rollout_request& request,
                                                     const std::vector<std::int32_t>& eos_token_ids,
                                                     std::int32_t pad_token_id) {
  generation_options o;
  o.num_generations = request.num_generations;
  o.first_sequence = request.first_sequence;
  o.max_new_tokens = request.max_new_tokens;
  o.sampling = request.sampling;
  o.eos_token_ids = eos_token_ids;
  o.pad_token_id = pad_token_id;
  return o;
}

template <Real T>
rollout_batch<T> to_rollout_batch(const generation_result<T>& r) {
  rollout_batch<T> out;
  const index_t B = r.batch();
  out.completions.resize(static_cast<std::size_t>(B));
  out.logprobs.resize(static_cast<std::size_t>(B));
  out.truncated.resize(static_cast<std::size_t>(B));
  for (index_t b = 0; b < B; ++b) {
    const auto k = static_cast<std::size_t>(b);
    for (index_t t = 0; t < r.lengths[k]; ++t) {
      out.completions[k].push_back(r.completion_ids(b, t));
      out.logprobs[k].push_back(r.logprobs(b, t));
    }
    out.truncated[k] = r.truncated[k] != 0;
  }
  return out;
}

}  // namespace lmrl
