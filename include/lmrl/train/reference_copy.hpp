// The trainer's reference policy pi_ref: a frozen copy of the policy's
// parameters (TRL's ref_model) that the KL terms' log-probs are computed with,
// by swapping it in for one forward pass and back.
//
//   lmrl::reference_copy<float> ref;
//   ref.hold(model);                  // pi_ref := the parameters now
//   ref.swap(model);                  // the model computes with pi_ref ...
//   ref.swap(model);                  // ... and with its own parameters again
//   ref.mixup(model, alpha);          // TRL's sync_ref_model: pi_ref := alpha * policy + (1 - alpha) * pi_ref
//   write(ref.values(model));         // a checkpoint
//   ref.load(model, [&](std::span<float> to) { read(to); });
//
// By default the copy is a host vector beside the model: a swap is
// swap_ranges over parameters() and parameters_changed(model), a mix-up reads
// parameters(). A model that takes its optimizer steps on a device
// (train/optimizer_step.hpp) can keep the copy there too
// (DeviceReferenceModel; cuda::transformer_gpu_policy with
// parameter_uploads::device_steps): swap and mix-up run on the device, so the
// parameters never cross the bus for them (at the Qwen2.5-0.5B shapes a host
// swap costs a 2 GB download and two 2 GB uploads), and the host sees the copy
// only when a checkpoint is written (values) or read (load). It costs the
// device 4 more bytes a parameter.
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <utility>
#include <vector>

#include "lmrl/error.hpp"
#include "lmrl/rl/policy.hpp"
#include "lmrl/tensor/concepts.hpp"
#include "lmrl/train/optimizer_step.hpp"

namespace lmrl {

// ref := alpha * policy + (1 - alpha) * ref, element by element (TRL's SyncRefModelCallback), in T.
template <Real T>
void mixup_reference(std::span<T> ref, std::span<const T> policy, T alpha) {
  detail::require(ref.size() == policy.size(), "mixup_reference: the reference has ", ref.size(),
                  " values, the policy ", policy.size());
  for (std::size_t k = 0; k < ref.size(); ++k) ref[k] = alpha * policy[k] + (T(1) - alpha) * ref[k];
}

// A device-stepped model that keeps the reference beside its parameters (used while steps_on_device()):
//   hold_reference()          the copy := the parameters now
//   swap_reference()          the parameters and the copy trade places
//   mixup_reference(alpha)    the copy := alpha * parameters + (1 - alpha) * copy, as mixup_reference above
//   pull_reference(out)       the copy into host memory (out: one value per parameter)
//   push_reference(values)    host values into the copy
template <class M>
concept DeviceReferenceModel =
    DeviceSteppedModel<M> && requires(M& m, std::span<typename M::value_type> out,
                                      std::span<const typename M::value_type> values, typename M::value_type alpha) {
      { m.hold_reference() };
      { m.swap_reference() };
      { m.mixup_reference(alpha) };
      { m.pull_reference(out) };
      { m.push_reference(values) };
    };

template <Real T>
class reference_copy {
 public:
  bool held() const { return held_; }

  // The copy := the model's parameters now (on the model's device when it keeps one there).
  template <class M>
  void hold(M& model) {
    on_device_ = keeps_reference(model);
    const std::span<T> p = detail::parameter_values(model);
    size_ = p.size();
    held_ = true;
    if constexpr (DeviceReferenceModel<M>)
      if (on_device_) {
        host_.clear();
        return model.hold_reference();
      }
    host_.assign(p.begin(), p.end());
  }

  // The model's parameters and the copy trade places.
  template <class M>
  void swap(M& model) {
    require_held("swap");
    if constexpr (DeviceReferenceModel<M>)
      if (on_device(model)) return model.swap_reference();
    const std::span<T> p = detail::parameter_values(model);
    detail::require(p.size() == host_.size(), "reference_copy::swap: the model has ", p.size(),
                    " parameters, the copy ", host_.size());
    std::swap_ranges(p.begin(), p.end(), host_.begin());
    parameters_changed(model);
  }

  // The copy := alpha * parameters + (1 - alpha) * copy.
  template <class M>
  void mixup(M& model, T alpha) {
    require_held("mixup");
    if constexpr (DeviceReferenceModel<M>)
      if (on_device(model)) return model.mixup_reference(alpha);
    mixup_reference(std::span<T>(host_), std::span<const T>(detail::parameter_values(model)), alpha);
  }

  // The copy's values on the host (fetched from the device first when it lives there).
  template <class M>
  std::span<const T> values(M& model) {
    require_held("values");
    if constexpr (DeviceReferenceModel<M>)
      if (on_device(model)) {
        host_.resize(size_);
        model.pull_reference(std::span<T>(host_));
      }
    return host_;
  }

  // read(std::span<T>) writes the copy's values (a checkpoint's), which then go to the device when the copy
  // lives there.
  template <class M, class Read>
  void load(M& model, Read&& read) {
    require_held("load");
    host_.resize(size_);
    read(std::span<T>(host_));
    if constexpr (DeviceReferenceModel<M>)
      if (on_device(model)) model.push_reference(std::span<const T>(host_));
  }

 private:
  template <class M>
  static bool keeps_reference(const M& model) {
    if constexpr (DeviceReferenceModel<M>)
      return model.steps_on_device();
    else
      return false;
  }
  // Where the copy is, checked against the model's setting now (a device copy is the model's own).
  template <class M>
  bool on_device(const M& model) const {
    detail::require(on_device_ == keeps_reference(model), "reference_copy: the copy was held ",
                    on_device_ ? "on the model's device" : "on the host", " but the model now ",
                    on_device_ ? "steps on the host" : "keeps its reference on a device");
    return on_device_;
  }
  void require_held(const char* what) const {
    detail::require(held_, "reference_copy::", what, ": no reference is held (hold(model) first)");
  }

  std::vector<T> host_;  // the copy, or (on a device) its last fetched values
  std::size_t size_ = 0;
  bool held_ = false, on_device_ = false;
};

}  // namespace lmrl
