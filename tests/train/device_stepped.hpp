// The GPU policy's parameter_uploads::device_steps on the CPU, for the trainer
// tests: a wrapper whose passes run on `device` (any model with flat parameter
// and gradient buffers), and so does the optimizer step, with moments of its
// own (train/optimizer_step.hpp's DeviceSteppedModel), and so does the
// reference's copy (train/reference_copy.hpp's DeviceReferenceModel). The host
// copy follows only when parameters() is read after the device's values
// moved, the device copy only after parameters_changed(). Counts the host
// gradient reads and parameter downloads, which a one-rank run makes only
// for checkpoints, the device gradient lent to a collective
// (DeviceGradientModel), and the steps.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "lmrl/train/adamw.hpp"
#include "lmrl/train/clip_grad.hpp"
#include "lmrl/train/optimizer_step.hpp"
#include "lmrl/train/reference_copy.hpp"
#include "support/testing.hpp"

namespace lmrl::testing {

template <class Device>
struct device_stepped {
  using value_type = typename Device::value_type;
  using T = value_type;

  explicit device_stepped(Device* d)
      : device(d), host(device_params().begin(), device_params().end()), moments(2 * host.size(), T(0)) {}

  Device* device;
  std::vector<T> host;
  std::vector<T> moments;
  std::vector<T> reference;  // held on the "device"
  const adamw<T>* owner = nullptr;
  std::int64_t moments_step = 0;
  bool host_behind = false;
  int gradient_reads = 0, parameter_downloads = 0, device_gradient_lends = 0, steps = 0;

  std::span<T> parameters() {
    if (host_behind) {
      std::ranges::copy(device_params(), host.begin());
      ++parameter_downloads;
    }
    host_behind = false;
    return host;
  }
  std::span<T> gradients() {
    ++gradient_reads;
    return device->gradients();
  }
  void zero_grad() { device->zero_grad(); }
  void parameters_changed() { std::ranges::copy(host, device_params().begin()); }
  void log_probs(const token_batch<T>& b, matrix_view<T> logp, matrix_view<T> entropy) {
    device->log_probs(b, logp, entropy);
  }
  void backward(const token_batch<T>& b, matrix_view<const T> grad_logp, matrix_view<const T> grad_entropy) {
    device->backward(b, grad_logp, grad_entropy);
  }

  bool steps_on_device() const { return true; }
  double gradient_norm() { return l2_norm(std::span<const T>(device->gradients())); }
  void device_step(const adamw<T>& optimizer, T coef, double lr) {
    if (owner != &optimizer || moments_step != optimizer.step_count()) push_optimizer_state(optimizer);
    const std::span<T> g = device->gradients();
    if (coef < T(1)) scale_gradients(g, coef);
    const std::size_t n = host.size();
    adamw_update<T>(device_params(), std::span<const T>(g), std::span<T>(moments).first(n),
                    std::span<T>(moments).last(n), optimizer.step_count() + 1, lr, optimizer.config(),
                    optimizer.segments());
    moments_step = optimizer.step_count() + 1;
    host_behind = true;
    ++steps;
  }
  void pull_optimizer_state(adamw<T>& optimizer) {
    if (owner != &optimizer) return;
    REQUIRE(moments_step == optimizer.step_count());
    optimizer.load_state(optimizer.step_count(), std::span<const T>(moments));
  }
  void push_optimizer_state(const adamw<T>& optimizer) {
    std::ranges::copy(optimizer.state(), moments.begin());
    owner = &optimizer;
    moments_step = optimizer.step_count();
  }
  void host_gradients_changed() {}
  std::span<T> device_gradients() {
    ++device_gradient_lends;
    return device->gradients();
  }

  void hold_reference() { reference.assign(device_params().begin(), device_params().end()); }
  void swap_reference() {
    REQUIRE(reference.size() == host.size());
    std::ranges::swap_ranges(device_params(), reference);
    host_behind = true;
  }
  void mixup_reference(T alpha) {
    lmrl::mixup_reference(std::span<T>(reference), std::span<const T>(device_params()), alpha);
  }
  void pull_reference(std::span<T> out) { std::ranges::copy(reference, out.begin()); }
  void push_reference(std::span<const T> values) { reference.assign(values.begin(), values.end()); }

 private:
  std::span<T> device_params() { return detail::parameter_values(*device); }
};

}  // namespace lmrl::testing
