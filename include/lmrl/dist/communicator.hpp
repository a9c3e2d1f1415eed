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
