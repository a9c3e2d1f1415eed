// The MPI model of Communicator (Open MPI or MPICH; Debian: libopenmpi-dev),
// and the session that starts and ends MPI. Include it only in a program that
// links MPI (CMake: find_package(MPI), MPI::MPI_CXX); nothing else in lmrl
// needs it.
//
//   int main(int argc, char** argv) {
//     lmrl::mpi_session mpi(argc, argv);          // MPI_Init_thread, MPI_Finalize at exit
//     lmrl::mpi_communicator world(mpi);          // a private duplicate of MPI_COMM_WORLD
//     try { ... train with world ... }
//     catch (const std::exception& e) { std::cerr << e.what(); mpi.abort(1); }
//   }
//
// Every collective is MPI's nonblocking one, waited for without spinning a
// core (ranks often share a machine's cores). Errors of MPI calls become
// lmrl::error naming the call and MPI's message.
// A rank that fails must end the whole job (mpi_session::abort, MPI_Abort):
// the others are waiting in a collective it will never join, and MPI_Finalize
// on the failing rank would wait for them too.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "lmrl/dist/communicator.hpp"
#include "lmrl/error.hpp"

namespace lmrl {

namespace detail {

inline void mpi_check(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) length = 0;
  fail("MPI: ", call, " failed with code ", code, length > 0 ? ": " : "", std::string(text, static_cast<std::size_t>(length)));
}

template <class T>
MPI_Datatype mpi_type() {
  if constexpr (std::is_same_v<T, float>) return MPI_FLOAT;
  else if constexpr (std::is_same_v<T, double>) return MPI_DOUBLE;
  else if constexpr (std::is_same_v<T, std::int64_t>) return MPI_INT64_T;
  else static_assert(sizeof(T) == 0, "mpi_type: float, double or std::int64_t");
}

// Waits for nonblocking MPI requests without holding a core: MPI's blocking
// calls poll at full speed, which on a machine whose cores the ranks share
// takes the core from the rank still computing (rank 0 evaluating, say). It
// polls for about 50 microseconds, then sleeps 200 microseconds between polls.
inline void mpi_wait_politely(std::vector<MPI_Request>& requests, const char* call) {
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    int done = 0;
    mpi_check(MPI_Testall(static_cast<int>(requests.size()), requests.data(), &done, MPI_STATUSES_IGNORE), call);
    if (done) return;
    if (std::chrono::steady_clock::now() - start > std::chrono::microseconds(50))
      std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

inline MPI_Op mpi_op(reduce_op op) {
  switch (op) {
    case reduce_op::sum: return MPI_SUM;
    case reduce_op::max: return MPI_MAX;
    case reduce_op::min: return MPI_MIN;
  }
  return MPI_SUM;
}

}  // namespace detail

// MPI_Init_thread on construction (FUNNELED: only the main thread calls MPI,
// OpenMP threads never do), MPI_Finalize on destruction. When MPI was already
// started by someone else, it leaves both to them.
class mpi_session {
 public:
  mpi_session(int& argc, char**& argv) {
    int started = 0;
    detail::mpi_check(MPI_Initialized(&started), "MPI_Initialized");
    if (!started) {
      int provided = 0;
      detail::mpi_check(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
      owner_ = true;
    }
  }
  mpi_session(const mpi_session&) = delete;
  mpi_session& operator=(const mpi_session&) = delete;
  ~mpi_session() {
    int finalized = 0;
    if (owner_ && MPI_Finalized(&finalized) == MPI_SUCCESS && !finalized) MPI_Finalize();
  }

  // Ends every rank of the job with `code` (the launcher reports which rank called it).
  [[noreturn]] void abort(int code) {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);  // MPI_Abort does not return; this is for the compiler
  }

  // True when a launcher (mpirun/mpiexec of Open MPI, MPICH's Hydra, Slurm's
  // PMI) started this process: a program can then choose MPI, and otherwise
  // run alone without touching MPI at all.
  static bool launched() {
    for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
      if (std::getenv(name) != nullptr) return true;
    return false;
  }

 private:
  bool owner_ = false;
};

class mpi_communicator {
 public:
  // A duplicate of `comm`, so that lmrl's messages never match a user's own;
  // errors are returned (and thrown as lmrl::error) rather than aborting.
  // all_reduce splits long arrays into buckets of bucket_bytes, each an
  // MPI_Iallreduce, all in flight together (and under MPI's int counts).
  explicit mpi_communicator(const mpi_session&, MPI_Comm comm = MPI_COMM_WORLD,
                            std::size_t bucket_bytes = std::size_t{16} << 20)
      : bucket_bytes_(bucket_bytes) {
    detail::require(bucket_bytes_ >= 1024, "mpi_communicator: bucket_bytes = ", bucket_bytes_, " is below 1024");
    detail::mpi_check(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup");
    detail::mpi_check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    detail::mpi_check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    detail::mpi_check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
    MPI_Comm local;  // the ranks on this machine, for sharing its cores
    detail::mpi_check(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local),
                      "MPI_Comm_split_type");
    detail::mpi_check(MPI_Comm_size(local, &local_size_), "MPI_Comm_size");
    MPI_Comm_free(&local);
  }
  mpi_communicator(const mpi_communicator&) = delete;
  mpi_communicator& operator=(const mpi_communicator&) = delete;
  mpi_communicator(mpi_communicator&& o) noexcept
      : comm_(std::exchange(o.comm_, MPI_COMM_NULL)), rank_(o.rank_), size_(o.size_), local_size_(o.local_size_),
        bucket_bytes_(o.bucket_bytes_) {}
  mpi_communicator& operator=(mpi_communicator&&) = delete;
  ~mpi_communicator() {
    int finalized = 0;
    if (comm_ != MPI_COMM_NULL && MPI_Finalized(&finalized) == MPI_SUCCESS && !finalized) MPI_Comm_free(&comm_);
  }

  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_size() const { return local_size_; }  // ranks on this machine (this one included)
  MPI_Comm native() const { return comm_; }

  template <class T>
  void all_reduce(std::span<T> x, reduce_op op) {
    if (x.empty()) return;
    const std::size_t bucket = std::min<std::size_t>(std::max<std::size_t>(bucket_bytes_ / sizeof(T), 1), INT_MAX);
    std::vector<MPI_Request> requests;
    for (std::size_t first = 0; first < x.size(); first += bucket) {
      const auto n = static_cast<int>(std::min(bucket, x.size() - first));
      requests.emplace_back();
      detail::mpi_check(MPI_Iallreduce(MPI_IN_PLACE, x.data() + first, n, detail::mpi_type<T>(), detail::mpi_op(op),
                                       comm_, &requests.back()),
                        "MPI_Iallreduce");
    }
    detail::mpi_wait_politely(requests, "MPI_Testall (all_reduce)");
  }

  void broadcast(std::span<std::byte> bytes, int root) {
    detail::require(root >= 0 && root < size_, "mpi_communicator::broadcast: root ", root, " of ", size_, " ranks");
    std::vector<MPI_Request> requests;
    for (std::size_t first = 0; first < bytes.size(); first += INT_MAX) {
      requests.emplace_back();
      detail::mpi_check(MPI_Ibcast(bytes.data() + first, static_cast<int>(std::min<std::size_t>(INT_MAX, bytes.size() - first)),
                                   MPI_BYTE, root, comm_, &requests.back()),
                        "MPI_Ibcast");
    }
    detail::mpi_wait_politely(requests, "MPI_Testall (broadcast)");
  }

  std::vector<std::vector<std::byte>> all_gather(std::span<const std::byte> mine) {
    std::vector<std::int64_t> lengths(static_cast<std::size_t>(size_));
    const auto my_length = static_cast<std::int64_t>(mine.size());
    std::vector<MPI_Request> requests(1);
    detail::mpi_check(MPI_Iallgather(&my_length, 1, MPI_INT64_T, lengths.data(), 1, MPI_INT64_T, comm_, &requests[0]),
                      "MPI_Iallgather (lengths)");
    detail::mpi_wait_politely(requests, "MPI_Testall (all_gather lengths)");
    std::vector<int> counts(lengths.size()), offsets(lengths.size());
    std::int64_t total = 0;
    for (std::size_t r = 0; r < lengths.size(); ++r) {
      detail::require(total + lengths[r] <= INT_MAX, "mpi_communicator::all_gather: ", total + lengths[r],
                      " bytes in all is over MPI's int count (", INT_MAX, ")");
      counts[r] = static_cast<int>(lengths[r]);
      offsets[r] = static_cast<int>(total);
      total += lengths[r];
    }
    std::vector<std::byte> all(static_cast<std::size_t>(total));
    detail::mpi_check(MPI_Iallgatherv(mine.data(), static_cast<int>(mine.size()), MPI_BYTE, all.data(), counts.data(),
                                      offsets.data(), MPI_BYTE, comm_, &requests[0]),
                      "MPI_Iallgatherv");
    detail::mpi_wait_politely(requests, "MPI_Testall (all_gather)");
    std::vector<std::vector<std::byte>> out(lengths.size());
    for (std::size_t r = 0; r < lengths.size(); ++r)
      out[r].assign(all.begin() + offsets[r], all.begin() + offsets[r] + counts[r]);
    return out;
  }

  void barrier() {
    std::vector<MPI_Request> requests(1);
    detail::mpi_check(MPI_Ibarrier(comm_, &requests[0]), "MPI_Ibarrier");
    detail::mpi_wait_politely(requests, "MPI_Testall (barrier)");
  }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1, local_size_ = 1;
  std::size_t bucket_bytes_;
};
static_assert(Communicator<mpi_communicator>);

}  // namespace lmrl
