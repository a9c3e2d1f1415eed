// The NCCL model of Communicator: the collectives between GPUs (NVLink,
// InfiniBand) that PyTorch's DDP and every large trainer use. Include it only
// in a program that links the CUDA runtime and NCCL (CMake: CUDA::cudart and
// libnccl from the CUDA toolkit); nothing else in lmrl needs it.
//
//   lmrl::mpi_session mpi(argc, argv);
//   lmrl::mpi_communicator world(mpi);                      // bootstrap: carries NCCL's unique id
//   lmrl::nccl_communicator gpus(world, world.rank() % devices_per_node);
//
// One rank per GPU (NCCL refuses two ranks of one communicator on one GPU).
// all_reduce and broadcast work in place on device memory; host memory is
// staged through a device buffer (correct, and as slow as the copies), so the
// CPU trainer can use it too. all_reduce_device takes device memory only: the
// trainer's way to sum a gradient that lives on the GPU (split_communicator
// pairs this with MPI for the host's collectives). all_gather takes and returns host bytes (token
// batches live on the host): lengths first, then one padded ncclAllGather.
// Every call synchronizes its stream before returning, as the concept's
// callers expect; CUDA and NCCL errors become lmrl::error naming the call.
//
// NOT RUN: no GPU was available to this work; this header is compiled (tests/
// CMakeLists.txt, lmrl_nccl_compile) but has never executed.
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "lmrl/cuda/check.cuh"
#include "lmrl/dist/communicator.hpp"
#include "lmrl/error.hpp"

namespace lmrl {

namespace detail {

inline void nccl_check(ncclResult_t code, const char* call) {
  if (code != ncclSuccess) fail("NCCL: ", call, " failed with code ", static_cast<int>(code), ": ", ncclGetErrorString(code));
}

template <class T>
ncclDataType_t nccl_type() {
  if constexpr (std::is_same_v<T, float>) return ncclFloat32;
  else if constexpr (std::is_same_v<T, double>) return ncclFloat64;
  else if constexpr (std::is_same_v<T, std::int64_t>) return ncclInt64;
  else if constexpr (std::is_same_v<T, std::byte>) return ncclUint8;
  else static_assert(sizeof(T) == 0, "nccl_type: float, double, std::int64_t or std::byte");
}

inline ncclRedOp_t nccl_op(reduce_op op) {
  switch (op) {
    case reduce_op::sum: return ncclSum;
    case reduce_op::max: return ncclMax;
    case reduce_op::min: return ncclMin;
  }
  return ncclSum;
}

// True when the GPU can read and write p directly (device or managed memory).
inline bool device_accessible(const void* p) {
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    (void)cudaGetLastError();  // plain host memory on old runtimes: clear the error
    return false;
  }
  return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

}  // namespace detail

class nccl_communicator {
 public:
  // Joins the group of every rank of `bootstrap` on GPU `device`: rank 0's
  // ncclUniqueId travels through bootstrap.broadcast.
  template <Communicator Bootstrap>
  nccl_communicator(Bootstrap& bootstrap, int device) : rank_(bootstrap.rank()), size_(bootstrap.size()), device_(device) {
    LMRL_CUDA_CHECK(cudaSetDevice(device_));
    ncclUniqueId id{};
    if (rank_ == 0) detail::nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    bootstrap.broadcast(std::as_writable_bytes(std::span<ncclUniqueId>(&id, 1)), 0);
    detail::nccl_check(ncclCommInitRank(&comm_, size_, id, rank_), "ncclCommInitRank");
    LMRL_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }
  nccl_communicator(const nccl_communicator&) = delete;
  nccl_communicator& operator=(const nccl_communicator&) = delete;
  ~nccl_communicator() {
    if (staging_) cudaFree(staging_);
    if (stream_) cudaStreamDestroy(stream_);
    if (comm_) ncclCommDestroy(comm_);
  }

  int rank() const { return rank_; }
  int size() const { return size_; }
  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }

  template <class T>
  void all_reduce(std::span<T> x, reduce_op op) {
    if (x.empty()) return;
    T* data = on_device(x);
    detail::nccl_check(ncclAllReduce(data, data, x.size(), detail::nccl_type<T>(), detail::nccl_op(op), comm_, stream_),
                       "ncclAllReduce");
    back_to_host(x, data);
  }

  // Device memory is what NCCL sums best (dist/communicator.hpp's DeviceMemoryCommunicator): x stays where it is.
  bool reduces_device_memory() const { return true; }
  template <class T>
  void all_reduce_device(std::span<T> x, reduce_op op) {
    detail::require(x.empty() || detail::device_accessible(x.data()),
                    "nccl_communicator::all_reduce_device: the buffer is not device memory");
    all_reduce(x, op);
  }

  void broadcast(std::span<std::byte> bytes, int root) {
    detail::require(root >= 0 && root < size_, "nccl_communicator::broadcast: root ", root, " of ", size_, " ranks");
    if (bytes.empty()) return;
    std::byte* data = on_device(bytes);
    detail::nccl_check(ncclBroadcast(data, data, bytes.size(), ncclUint8, root, comm_, stream_), "ncclBroadcast");
    back_to_host(bytes, data);
  }

  std::vector<std::vector<std::byte>> all_gather(std::span<const std::byte> mine) {
    std::vector<std::int64_t> lengths(static_cast<std::size_t>(size_), 0);
    lengths[static_cast<std::size_t>(rank_)] = static_cast<std::int64_t>(mine.size());
    all_reduce(std::span<std::int64_t>(lengths), reduce_op::sum);  // every rank's length, in rank order
    const auto longest = static_cast<std::size_t>(*std::max_element(lengths.begin(), lengths.end()));
    std::vector<std::vector<std::byte>> out(lengths.size());
    if (longest == 0) return out;
    // [ my padded slot | everyone's padded slots ] in one device buffer
    std::byte* buffer = staging(longest * (1 + static_cast<std::size_t>(size_)));
    LMRL_CUDA_CHECK(cudaMemsetAsync(buffer, 0, longest, stream_));
    if (!mine.empty())
      LMRL_CUDA_CHECK(cudaMemcpyAsync(buffer, mine.data(), mine.size(), cudaMemcpyHostToDevice, stream_));
    detail::nccl_check(ncclAllGather(buffer, buffer + longest, longest, ncclUint8, comm_, stream_), "ncclAllGather");
    std::vector<std::byte> all(longest * static_cast<std::size_t>(size_));
    LMRL_CUDA_CHECK(cudaMemcpyAsync(all.data(), buffer + longest, all.size(), cudaMemcpyDeviceToHost, stream_));
    synchronize();
    for (std::size_t r = 0; r < out.size(); ++r)
      out[r].assign(all.begin() + static_cast<std::ptrdiff_t>(r * longest),
                    all.begin() + static_cast<std::ptrdiff_t>(r * longest + static_cast<std::size_t>(lengths[r])));
    return out;
  }

  // NCCL has no barrier: a one-element all-reduce that every rank must join.
  void barrier() {
    std::int64_t one = 1;
    all_reduce(std::span<std::int64_t>(&one, 1), reduce_op::sum);
  }

 private:
  void synchronize() { LMRL_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  std::byte* staging(std::size_t bytes) {
    if (bytes > staging_bytes_) {
      if (staging_) LMRL_CUDA_CHECK(cudaFree(staging_));
      staging_ = nullptr;
      LMRL_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&staging_), bytes));
      staging_bytes_ = bytes;
    }
    return staging_;
  }

  // x itself when the GPU can address it, else a device copy of it.
  template <class T>
  T* on_device(std::span<T> x) {
    if (detail::device_accessible(x.data())) return x.data();
    auto* copy = reinterpret_cast<T*>(staging(x.size_bytes()));
    LMRL_CUDA_CHECK(cudaMemcpyAsync(copy, x.data(), x.size_bytes(), cudaMemcpyHostToDevice, stream_));
    return copy;
  }
  template <class T>
  void back_to_host(std::span<T> x, T* data) {
    if (data != x.data())
      LMRL_CUDA_CHECK(cudaMemcpyAsync(x.data(), data, x.size_bytes(), cudaMemcpyDeviceToHost, stream_));
    synchronize();
  }

  int rank_ = 0, size_ = 1, device_ = 0;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  std::byte* staging_ = nullptr;
  std::size_t staging_bytes_ = 0;
};
static_assert(DeviceMemoryCommunicator<nccl_communicator>);

}  // namespace lmrl
