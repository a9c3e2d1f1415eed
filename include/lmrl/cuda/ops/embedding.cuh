// Token embedding on the GPU: the CUDA twin of model/ops/embedding.hpp (the
// math and its conventions are stated there). table and grad_table are
// [vocab x d], out and grad_out [n x d], contiguous and row-major; ids [n] are
// int32 and row_mask [n] (or nullptr: every row counts) is in T, 0 for a masked
// row and anything else (1, or a packed sequence's number) for a real one, all
// on the device.
//
//   forward:   out[r, :] = table[ids[r], :], rows whose mask is 0 get zeros (their id is not read)
//   backward:  grad_table[ids[r], :] += grad_out[r, :] for every unmasked row, ACCUMULATED,
//              rows sharing an id added in row order, exactly as the CPU adds them
//
// Launchers (namespace lmrl::cuda, asynchronous on `stream`):
//   embedding_forward(table, vocab, d, ids, row_mask, n, out, stream)
//   embedding_backward_workspace_bytes(n, vocab)          -> bytes of device scratch
//   embedding_backward(grad_out, ids, row_mask, n, d, grad_table, vocab, workspace, workspace_bytes, stream)
//
// The backward pass is deterministic without float atomics. It sorts the pairs
// (id, row) by id with CUB's radix sort, which is stable, so each id's rows stay
// in row order (masked rows get the key vocab and sort last); then a block per
// sorted slot k that starts a run of equal ids adds that run's rows, in order,
// onto grad_table[id, :], one thread per column. Distinct ids own distinct table
// rows, so no two threads write one element; the float additions happen in the
// CPU's order, so the result is the CPU's, bit for bit. The sort's keys, rows
// and CUB's scratch live in the caller's workspace (cudaMalloc-aligned, at least
// embedding_backward_workspace_bytes(n, vocab)), so a call allocates nothing.
//
// A kernel cannot throw: where the CPU op reports an unmasked id outside
// [0, vocab) as an lmrl::error, the forward pass writes that row as NaN (so the
// mistake shows in the loss) and the backward pass skips it; neither reads
// outside the table.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <bit>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cub/device/device_radix_sort.cuh>
#include <type_traits>

#include "lmrl/cuda/check.cuh"
#include "lmrl/cuda/launch.cuh"
#include "lmrl/cuda/quiet_nan.cuh"
#include "lmrl/error.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl::cuda {

namespace detail {

inline constexpr int embedding_threads = 256;


template <class T>
__device__ bool embedding_row_active(const T* row_mask, index_t r) {
  return row_mask == nullptr || row_mask[r] != T(0);
}

// One block per row r, one thread per column.
template <class T>
__global__ void embedding_forward_kernel(const T* table, index_t vocab, index_t d, const std::int32_t* ids,
                                         const T* row_mask, T* out) {
  const index_t r = blockIdx.x;
  T* out_r = out + r * d;
  if (!embedding_row_active(row_mask, r)) {
    for (index_t j = threadIdx.x; j < d; j += blockDim.x) out_r[j] = T(0);
    return;
  }
  const index_t id = ids[r];
  if (id < 0 || id >= vocab) {
    for (index_t j = threadIdx.x; j < d; j += blockDim.x) out_r[j] = quiet_nan<T>();
    return;
  }
  const T* table_row = table + id * d;
  for (index_t j = threadIdx.x; j < d; j += blockDim.x) out_r[j] = table_row[j];
}

// The sort's input: key = the row's id, or vocab for a masked row or a bad id
// (sorted after every real id, then skipped); value = the row.
template <class T>
__global__ void embedding_sort_keys_kernel(const std::int32_t* ids, const T* row_mask, index_t n, index_t vocab,
                                           std::uint32_t* keys, std::int32_t* rows) {
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t r = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < n; r += step) {
    index_t key = vocab;
    if (embedding_row_active(row_mask, r)) {
      const index_t id = ids[r];
      if (id >= 0 && id < vocab) key = id;
    }
    keys[r] = static_cast<std::uint32_t>(key);
    rows[r] = static_cast<std::int32_t>(r);
  }
}

// Block k: if sorted slot k starts a run of one id (keys sorted, rows in row
// order within a run), grad_table[id, :] += the run's grad_out rows, in order.
template <class T>
__global__ void embedding_accumulate_kernel(const T* grad_out, const std::uint32_t* keys, const std::int32_t* rows,
                                            index_t n, index_t d, index_t vocab, T* grad_table) {
  const index_t k = blockIdx.x;
  const std::uint32_t key = keys[k];
  if (static_cast<index_t>(key) >= vocab) return;  // masked rows and bad ids
  if (k > 0 && keys[k - 1] == key) return;         // not the first of its run
  T* table_row = grad_table + static_cast<index_t>(key) * d;
  for (index_t j = threadIdx.x; j < d; j += blockDim.x) {
    T sum = table_row[j];
    for (index_t m = k; m < n && keys[m] == key; ++m) sum += grad_out[static_cast<index_t>(rows[m]) * d + j];
    table_row[j] = sum;
  }
}

inline void embedding_require_sizes(const char* f, index_t n, index_t d, index_t vocab) {
  lmrl::detail::require(n >= 0 && n <= INT_MAX, f, ": n = ", n, " ids must be in [0, ", INT_MAX, "]");
  lmrl::detail::require(d > 0, f, ": d = ", d, " columns must be positive");
  lmrl::detail::require(vocab > 0 && vocab < INT_MAX, f, ": vocab = ", vocab, " must be in [1, ", INT_MAX, ")");
}

// Bits that hold every key in [0, vocab], the sentinel vocab included.
inline int embedding_key_bits(index_t vocab) { return std::bit_width(static_cast<std::uint32_t>(vocab)); }

// The workspace: keys in, keys out, rows in, rows out (n each), then CUB's scratch;
// every part 256-byte aligned.
inline std::size_t embedding_part_bytes(index_t n) {
  return (static_cast<std::size_t>(n) * sizeof(std::uint32_t) + 255) / 256 * 256;
}

inline std::size_t embedding_sort_bytes(index_t n, index_t vocab) {
  std::size_t bytes = 0;
  LMRL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, bytes, static_cast<const std::uint32_t*>(nullptr), static_cast<std::uint32_t*>(nullptr),
      static_cast<const std::int32_t*>(nullptr), static_cast<std::int32_t*>(nullptr), static_cast<int>(n), 0,
      embedding_key_bits(vocab)));
  return bytes;
}

}  // namespace detail

// out[r, :] = table[ids[r], :] for unmasked rows, zeros for masked ones.
template <class T>
void embedding_forward(const T* table, index_t vocab, index_t d, const std::int32_t* ids,
                       const std::type_identity_t<T>* row_mask, index_t n, std::type_identity_t<T>* out,
                       cudaStream_t stream) {
  static_assert(std::is_floating_point_v<T>);
  const char* f = "lmrl::cuda::embedding_forward";
  detail::embedding_require_sizes(f, n, d, vocab);
  if (n == 0) return;
  lmrl::detail::require(table != nullptr && ids != nullptr && out != nullptr, f,
                        ": table, ids and out must be device pointers, not null");
  cuda::launch(detail::embedding_forward_kernel<T>, static_cast<unsigned>(n), detail::embedding_threads, 0, stream,
      table, vocab, d, ids, row_mask, out);
  LMRL_CUDA_CHECK_LAUNCH("embedding_forward_kernel");
}

// Device scratch that embedding_backward needs for n ids over a vocabulary of vocab.
inline std::size_t embedding_backward_workspace_bytes(index_t n, index_t vocab) {
  detail::embedding_require_sizes("lmrl::cuda::embedding_backward_workspace_bytes", n, 1, vocab);
  if (n == 0) return 0;
  return 4 * detail::embedding_part_bytes(n) + detail::embedding_sort_bytes(n, vocab);
}

// grad_table[ids[r], :] += grad_out[r, :] for every unmasked row, deterministically.
template <class T>
void embedding_backward(const T* grad_out, const std::int32_t* ids, const std::type_identity_t<T>* row_mask, index_t n,
                        index_t d, std::type_identity_t<T>* grad_table, index_t vocab, void* workspace,
                        std::size_t workspace_bytes, cudaStream_t stream) {
  static_assert(std::is_floating_point_v<T>);
  const char* f = "lmrl::cuda::embedding_backward";
  detail::embedding_require_sizes(f, n, d, vocab);
  if (n == 0) return;
  lmrl::detail::require(grad_out != nullptr && ids != nullptr && grad_table != nullptr, f,
                        ": grad_out, ids and grad_table must be device pointers, not null");
  const std::size_t part = detail::embedding_part_bytes(n);
  std::size_t sort_bytes = detail::embedding_sort_bytes(n, vocab);
  lmrl::detail::require(workspace != nullptr && workspace_bytes >= 4 * part + sort_bytes, f, ": workspace has ",
                        workspace_bytes, " bytes but ", n, " ids over a vocabulary of ", vocab, " need ",
                        4 * part + sort_bytes, " (embedding_backward_workspace_bytes)");
  lmrl::detail::require(reinterpret_cast<std::uintptr_t>(workspace) % 256 == 0, f,
                        ": workspace must be 256-byte aligned (as cudaMalloc returns it)");
  auto* base = static_cast<unsigned char*>(workspace);
  auto* keys_in = reinterpret_cast<std::uint32_t*>(base);
  auto* keys_out = reinterpret_cast<std::uint32_t*>(base + part);
  auto* rows_in = reinterpret_cast<std::int32_t*>(base + 2 * part);
  auto* rows_out = reinterpret_cast<std::int32_t*>(base + 3 * part);
  void* sort_scratch = base + 4 * part;

  const auto key_blocks =
      static_cast<unsigned>(std::min<index_t>((n + detail::embedding_threads - 1) / detail::embedding_threads, 4096));
  cuda::launch(detail::embedding_sort_keys_kernel<T>, key_blocks, detail::embedding_threads, 0, stream, ids, row_mask,
      n, vocab, keys_in, rows_in);
  LMRL_CUDA_CHECK_LAUNCH("embedding_sort_keys_kernel");
  LMRL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(sort_scratch, sort_bytes, keys_in, keys_out, rows_in, rows_out,
                                                  static_cast<int>(n), 0, detail::embedding_key_bits(vocab), stream));
  cuda::launch(detail::embedding_accumulate_kernel<T>, static_cast<unsigned>(n), detail::embedding_threads, 0, stream,
      grad_out, keys_out, rows_out, n, d, vocab, grad_table);
  LMRL_CUDA_CHECK_LAUNCH("embedding_accumulate_kernel");
}

}  // namespace lmrl::cuda
