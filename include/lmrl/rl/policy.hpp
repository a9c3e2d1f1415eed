// The Policy concept: what an RL trainer needs from a model.
//
// A policy gives the per-token log-probabilities (and entropies) of given
// token sequences, and accepts the gradient of a loss with respect to those
// log-probs, turning it into gradients of its own parameters. That is all the
// rl/ algorithms need: the bundled transformer satisfies it, and so can a
// user's own model (no base class).
//
// Positions: logp[i, t] = log pi(tokens[i, t] | tokens[i, <t]) for t >= 1;
// position 0 has no prediction and gets 0, as do padded positions
// (attention_mask 0). Sequences may be padded on either side.
#pragma once

#include <concepts>
#include <cstdint>
#include <span>

#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

template <Real T>
struct token_batch {
  matrix_view<const std::int32_t> tokens;  // [B x T] token ids
  matrix_view<const T> attention_mask;     // [B x T] 1 = real token, 0 = padding
};

template <class P>
concept Policy = Real<typename P::value_type> &&
                 requires(P& policy, const token_batch<typename P::value_type>& batch,
                          matrix_view<typename P::value_type> out, matrix_view<const typename P::value_type> grad) {
                   // Forward: writes logp [B x T] and entropy [B x T] (entropy may be an empty view to skip it).
                   // Keeps what backward needs.
                   { policy.log_probs(batch, out, out) };
                   // Backward of the last log_probs call: grad_logp and grad_entropy (empty = zero) are
                   // dL/dlogp and dL/dentropy; parameter gradients are accumulated (added), not overwritten.
                   { policy.backward(batch, grad, grad) };
                 };

// A policy a trainer can optimize: the Policy concept plus one flat parameter
// buffer and its gradient buffer (backward adds into gradients()), both host
// memory: the trainers clip, step and checkpoint them there (a policy that
// keeps them on a device may take the step there instead:
// train/optimizer_step.hpp's DeviceSteppedModel).
template <class M>
concept TrainablePolicy = Policy<M> && requires(M& m) {
  { m.parameters() } -> std::same_as<std::span<typename M::value_type>>;
  { m.gradients() } -> std::same_as<std::span<typename M::value_type>>;
  { m.zero_grad() };
};

// Tells a model that mirrors its parameters elsewhere (the GPU policy keeps a device copy) that the host
// parameters() changed. lmrl's trainers call it after every change they make (an optimizer step, a swap
// with the reference weights, a checkpoint load); a model without the member needs no telling.
template <class M>
void parameters_changed(M& model) {
  if constexpr (requires { model.parameters_changed(); }) model.parameters_changed();
}

}  // namespace lmrl
