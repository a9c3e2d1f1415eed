// The Communicator concept: what data-parallel training asks of a collective
// engine (MPI, NCCL, or nothing), and the single-process model that does nothing.
//
//   rank(), size()            this process's place in the group, 0 <= rank < size
//   all_reduce(x, op)         x <- op over every rank's x, in place (sum, max, min);
//                             every rank receives the same bits
//   broadcast(bytes, root)    every rank's bytes <- root's bytes (same length everywhere)
//   all_gather(bytes)         every rank gets every rank's bytes, variable length,
//                             in rank order (token batches, rollouts)
//   barrier()                 returns when every rank has called it
//
// A communicator may also reduce device memory in place, where it lives
// (NCCL on GPU buffers), so that a gradient kept on a GPU is summed without
// coming to the host (DeviceMemoryCommunicator):
//   reduces_device_memory()   whether it does (a run-time answer: any_communicator
//                             gives the one of the communicator it holds)
//   all_reduce_device(x, op)  all_reduce of x in device memory
// split_communicator pairs a host one (MPI) with a device one (NCCL).
//
// Collectives are called by every rank in the same order; a rank that stops
// calling them (an exception, a crash) leaves the others waiting, which is why
// a distributed program aborts the whole job on error (dist/mpi.hpp).
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "lmrl/error.hpp"

namespace lmrl {

enum class reduce_op { sum, max, min };

template <class C>
concept Communicator = requires(C& c, const C& cc, std::span<float> f, std::span<double> d,
                                std::span<std::int64_t> n, std::span<std::byte> bytes,
                                std::span<const std::byte> const_bytes, reduce_op op, int root) {
  { cc.rank() } -> std::same_as<int>;
  { cc.size() } -> std::same_as<int>;
  c.all_reduce(f, op);
  c.all_reduce(d, op);
  c.all_reduce(n, op);
  c.broadcast(bytes, root);
  { c.all_gather(const_bytes) } -> std::same_as<std::vector<std::vector<std::byte>>>;
  c.barrier();
};

template <class C>
concept DeviceMemoryCommunicator =
    Communicator<C> && requires(C& c, const C& cc, std::span<float> f, std::span<double> d, reduce_op op) {
      { cc.reduces_device_memory() } -> std::same_as<bool>;
      c.all_reduce_device(f, op);
      c.all_reduce_device(d, op);
    };

template <Communicator C>
bool reduces_device_memory(const C& comm) {
  if constexpr (DeviceMemoryCommunicator<C>)
    return comm.reduces_device_memory();
  else
    return false;
}

// One process, no peers: every collective is the identity.
struct single_process {
  int rank() const { return 0; }
  int size() const { return 1; }
  template <class T>
  void all_reduce(std::span<T>, reduce_op) {}
  void broadcast(std::span<std::byte>, int) {}
  std::vector<std::vector<std::byte>> all_gather(std::span<const std::byte> mine) {
    return {std::vector<std::byte>(mine.begin(), mine.end())};
  }
  void barrier() {}
};
static_assert(Communicator<single_process>);

// The host's collectives through `host` (MPI), device memory's all-reduces through `device` (NCCL), over the
// same ranks: each kind of buffer goes where it is summed best. Borrows both; they must outlive it.
template <Communicator Host, DeviceMemoryCommunicator Device>
class split_communicator {
 public:
  split_communicator(Host& host, Device& device) : host_(&host), device_(&device) {
    detail::require(host.rank() == device.rank() && host.size() == device.size(),
                    "split_communicator: the host communicator is rank ", host.rank(), " of ", host.size(),
                    ", the device one rank ", device.rank(), " of ", device.size());
    detail::require(device.reduces_device_memory(), "split_communicator: the device communicator does not reduce ",
                    "device memory");
  }
  int rank() const { return host_->rank(); }
  int size() const { return host_->size(); }
  template <class T>
  void all_reduce(std::span<T> x, reduce_op op) {
    host_->all_reduce(x, op);
  }
  void broadcast(std::span<std::byte> bytes, int root) { host_->broadcast(bytes, root); }
  std::vector<std::vector<std::byte>> all_gather(std::span<const std::byte> mine) { return host_->all_gather(mine); }
  void barrier() { host_->barrier(); }
  bool reduces_device_memory() const { return true; }
  template <class T>
  void all_reduce_device(std::span<T> x, reduce_op op) {
    device_->all_reduce_device(x, op);
  }

 private:
  Host* host_;
  Device* device_;
};

// The rows [begin, end) of n items that rank `rank` of `size` owns: contiguous
// slices in rank order whose lengths differ by at most one (the first n % size
// ranks take one more), so concatenating the slices in rank order gives 0..n.
struct shard {
  std::int64_t begin = 0, end = 0;
  std::int64_t count() const { return end - begin; }
};
inline shard shard_of(std::int64_t n, int rank, int size) {
  const std::int64_t q = n / size, r = n % size;
  const std::int64_t begin = rank * q + std::min<std::int64_t>(rank, r);
  return {begin, begin + q + (rank < r ? 1 : 0)};
}

// One value reduced over the ranks.
template <class T, Communicator C>
T all_reduce_value(C& comm, T value, reduce_op op) {
  comm.all_reduce(std::span<T>(&value, 1), op);
  return value;
}

}  // namespace lmrl
