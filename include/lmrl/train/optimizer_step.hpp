// The trainers' optimizer step: the gradient's norm, clipping, AdamW, on the
// host or where the model keeps its parameters.
//
//   const double norm = lmrl::gradient_norm(model);              // checked finite by the caller
//   lmrl::clip_and_step(model, optimizer, norm, max_grad_norm, lr);
//
// By default the step runs on the model's host buffers: the gradient's L2 norm
// (train/clip_grad.hpp), the gradient scaled by clip_coefficient(norm,
// max_norm), adamw<T>::step on the parameters, and parameters_changed(model).
//
// A model whose passes run on a device can keep the master parameters, the
// gradient and the optimizer's moments there and take the same step there
// (DeviceSteppedModel; cuda::transformer_gpu_policy with
// parameter_uploads::device_steps), so that no parameter or gradient crosses
// the bus per step. The trainer's adamw<T> then keeps the hyper-parameters,
// the no-decay segments and the step count; its moments are current only
// after pull_optimizer_state() (before a checkpoint is written), and
// push_optimizer_state() hands them back (after a checkpoint is read). A
// model that steps elsewhere tells whether it does at run time:
// steps_on_device(model).
//
// Data-parallel runs sum the gradient over the ranks before the step
// (all_reduce_gradients): on the host by default; a device-stepped model that
// lends its device gradient (DeviceGradientModel) has it summed in place
// when the communicator reduces device memory (dist/communicator.hpp: NCCL),
// and otherwise it comes to the host and the sum goes back
// (host_gradients_changed).
#pragma once

#include <cmath>
#include <concepts>
#include <span>
#include <utility>

#include "lmrl/dist/communicator.hpp"
#include "lmrl/rl/policy.hpp"
#include "lmrl/tensor/concepts.hpp"
#include "lmrl/train/adamw.hpp"
#include "lmrl/train/clip_grad.hpp"

namespace lmrl {

namespace detail {
// The one flat host parameter buffer of a model: parameters().values() of transformer<T>, parameters() of a
// TrainablePolicy.
template <class M>
  requires requires(M& m) {
    { m.parameters().values() } -> std::same_as<std::span<typename M::value_type>>;
  }
std::span<typename M::value_type> parameter_values(M& model) {
  return model.parameters().values();
}
template <class M>
  requires requires(M& m) {
    { m.parameters() } -> std::same_as<std::span<typename M::value_type>>;
  }
std::span<typename M::value_type> parameter_values(M& model) {
  return model.parameters();
}
}  // namespace detail

// A model that takes the optimizer step where its parameters live:
//   steps_on_device()            whether it does (a run-time setting of the model)
//   gradient_norm()              the L2 norm of its gradient, computed there
//   device_step(opt, coef, lr)   gradient *= coef (coef < 1), then one AdamW step at lr with opt's config and
//                                segments, numbered opt.step_count() + 1 (the caller counts it: clip_and_step)
//   pull_optimizer_state(opt)    its moments into opt (opt.load_state)
//   push_optimizer_state(opt)    opt's moments onto the device (a checkpoint was read into opt)
//   host_gradients_changed()     gradients() was written on the host (an all-reduce): the device copy follows
template <class M>
concept DeviceSteppedModel = requires(M& m, const M& cm, adamw<typename M::value_type>& opt,
                                      const adamw<typename M::value_type>& copt, typename M::value_type coef,
                                      double lr) {
  { cm.steps_on_device() } -> std::same_as<bool>;
  { m.gradient_norm() } -> std::same_as<double>;
  { m.device_step(copt, coef, lr) };
  { m.pull_optimizer_state(opt) };
  { m.push_optimizer_state(copt) };
  { m.host_gradients_changed() };
};

// A device-stepped model whose gradient a collective can sum where it lives: device_gradients() is its
// gradient buffer on the device (the model's queued work on it done; what is written there is the gradient).
template <class M>
concept DeviceGradientModel = DeviceSteppedModel<M> && requires(M& m) {
  { m.device_gradients() } -> std::same_as<std::span<typename M::value_type>>;
};

template <class M>
bool steps_on_device(const M& model) {
  if constexpr (DeviceSteppedModel<M>)
    return model.steps_on_device();
  else
    return false;
}

// The L2 norm of the model's gradient, where the step will run.
template <class M>
double gradient_norm(M& model) {
  if constexpr (DeviceSteppedModel<M>)
    if (model.steps_on_device()) return model.gradient_norm();
  return l2_norm(std::span<const typename M::value_type>(model.gradients()));
}

// Scales the gradient whose norm is `norm` to at most max_norm (max_norm <= 0: no clipping), takes one AdamW
// step at lr and tells the model its parameters changed (a device-stepped model knows).
template <class M, Real T>
void clip_and_step(M& model, adamw<T>& optimizer, double norm, double max_norm, double lr) {
  const T coef = max_norm > 0 ? static_cast<T>(clip_coefficient(norm, max_norm)) : T(1);
  if constexpr (DeviceSteppedModel<M>) {
    if (model.steps_on_device()) {
      model.device_step(std::as_const(optimizer), coef, lr);
      optimizer.count_step_taken_elsewhere();
      return;
    }
  }
  const std::span<T> grads = model.gradients();
  if (max_norm > 0) scale_gradients(grads, coef);
  optimizer.step(detail::parameter_values(model), std::span<const T>(grads), lr);
  parameters_changed(model);
}

// The optimizer's moments made current (before a checkpoint is written).
template <class M, Real T>
void pull_optimizer_state(M& model, adamw<T>& optimizer) {
  if constexpr (DeviceSteppedModel<M>)
    if (model.steps_on_device()) model.pull_optimizer_state(optimizer);
}

// The optimizer's moments handed to a model that steps elsewhere (after a checkpoint was read).
template <class M, Real T>
void push_optimizer_state(M& model, const adamw<T>& optimizer) {
  if constexpr (DeviceSteppedModel<M>)
    if (model.steps_on_device()) model.push_optimizer_state(optimizer);
}

// The model's gradients() were written on the host (summed over ranks): a device-stepped model takes them.
template <class M>
void host_gradients_changed(M& model) {
  if constexpr (DeviceSteppedModel<M>)
    if (model.steps_on_device()) model.host_gradients_changed();
}

// The model's gradient summed over the ranks of `comm`, in place on the device when the model lends it there
// and the communicator reduces device memory, else on the host copy (which a device-stepped model takes back).
template <class M, Communicator C>
void all_reduce_gradients(M& model, C& comm) {
  if constexpr (DeviceGradientModel<M> && DeviceMemoryCommunicator<C>) {
    if (model.steps_on_device() && comm.reduces_device_memory()) {
      comm.all_reduce_device(model.device_gradients(), reduce_op::sum);
      return;
    }
  }
  comm.all_reduce(model.gradients(), reduce_op::sum);
  host_gradients_changed(model);
}

}  // namespace lmrl
