// any_communicator: a value that holds any Communicator model (single_process,
// mpi_communicator, a user's own), so that a trainer takes one at run time
// without growing a template parameter. It shares the model it holds: copies
// talk through the same engine.
#pragma once

#include <memory>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "lmrl/dist/communicator.hpp"
#include "lmrl/error.hpp"

namespace lmrl {

class any_communicator {
 public:
  any_communicator() : any_communicator(single_process{}) {}

  template <Communicator C>
    requires(!std::same_as<std::remove_cvref_t<C>, any_communicator>)
  any_communicator(C comm) : self_(std::make_shared<model<C>>(std::move(comm))) {}

  // Holds a reference to a communicator that outlives this object (and its copies).
  template <Communicator C>
  static any_communicator borrowing(C& comm) {
    any_communicator a;
    a.self_ = std::make_shared<model<C&>>(comm);
    return a;
  }

  int rank() const { return self_->rank(); }
  int size() const { return self_->size(); }
  void all_reduce(std::span<float> x, reduce_op op) { self_->all_reduce(x, op); }
  void all_reduce(std::span<double> x, reduce_op op) { self_->all_reduce(x, op); }
  void all_reduce(std::span<std::int64_t> x, reduce_op op) { self_->all_reduce(x, op); }
  void broadcast(std::span<std::byte> bytes, int root) { self_->broadcast(bytes, root); }
  std::vector<std::vector<std::byte>> all_gather(std::span<const std::byte> mine) { return self_->all_gather(mine); }
  void barrier() { self_->barrier(); }
  // Whether the held communicator sums device memory in place (dist/communicator.hpp); all_reduce_device
  // refuses when it does not.
  bool reduces_device_memory() const { return self_->reduces_device_memory(); }
  void all_reduce_device(std::span<float> x, reduce_op op) { self_->all_reduce_device(x, op); }
  void all_reduce_device(std::span<double> x, reduce_op op) { self_->all_reduce_device(x, op); }

 private:
  struct erased {
    virtual ~erased() = default;
    virtual int rank() const = 0;
    virtual int size() const = 0;
    virtual void all_reduce(std::span<float>, reduce_op) = 0;
    virtual void all_reduce(std::span<double>, reduce_op) = 0;
    virtual void all_reduce(std::span<std::int64_t>, reduce_op) = 0;
    virtual void broadcast(std::span<std::byte>, int) = 0;
    virtual std::vector<std::vector<std::byte>> all_gather(std::span<const std::byte>) = 0;
    virtual void barrier() = 0;
    virtual bool reduces_device_memory() const = 0;
    virtual void all_reduce_device(std::span<float>, reduce_op) = 0;
    virtual void all_reduce_device(std::span<double>, reduce_op) = 0;
  };
  template <class C>  // C is a Communicator or a reference to one
  struct model final : erased {
    C c;
    explicit model(C comm) : c(std::forward<C>(comm)) {}
    int rank() const override { return c.rank(); }
    int size() const override { return c.size(); }
    void all_reduce(std::span<float> x, reduce_op op) override { c.all_reduce(x, op); }
    void all_reduce(std::span<double> x, reduce_op op) override { c.all_reduce(x, op); }
    void all_reduce(std::span<std::int64_t> x, reduce_op op) override { c.all_reduce(x, op); }
    void broadcast(std::span<std::byte> b, int root) override { c.broadcast(b, root); }
    std::vector<std::vector<std::byte>> all_gather(std::span<const std::byte> m) override { return c.all_gather(m); }
    void barrier() override { c.barrier(); }
    bool reduces_device_memory() const override { return lmrl::reduces_device_memory(c); }
    void all_reduce_device(std::span<float> x, reduce_op op) override { device_reduce(x, op); }
    void all_reduce_device(std::span<double> x, reduce_op op) override { device_reduce(x, op); }
    template <class T>
    void device_reduce(std::span<T> x, reduce_op op) {
      if constexpr (DeviceMemoryCommunicator<std::remove_cvref_t<C>>) {
        if (c.reduces_device_memory()) return c.all_reduce_device(x, op);
      }
      detail::fail("any_communicator::all_reduce_device: the communicator it holds does not reduce device memory");
    }
  };
  std::shared_ptr<erased> self_;
};
static_assert(DeviceMemoryCommunicator<any_communicator>);

}  // namespace lmrl
