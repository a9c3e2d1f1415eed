// The CPU emulator of tests/emulator/ against CUDA's definitions: the
// coordinates, shared memory, barriers and warp shuffles a kernel sees, and
// each mistake it promises to catch (cuda_emulator.hpp's list) caught, with
// the next launch unharmed. Part of lmrl_tests_cuda_emulated only.
#include "emulator/cuda_emulator.hpp"

#include <cub/device/device_radix_sort.cuh>

#include <cmath>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "lmrl/cuda/check.cuh"
#include "lmrl/cuda/device_array.cuh"
#include "lmrl/cuda/launch.cuh"
#include "lmrl/cuda/managed_tensor.cuh"
#include "support/doctest_strings.hpp"

using lmrl::cuda::device_array;
using lmrl::cuda::launch;

namespace {

// Each thread's linear block and thread numbers, counted so that a thread run twice or never shows.
__global__ void coordinates(int* seen, int* block_of, int* thread_of) {
  const int block = static_cast<int>(blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z));
  const int thread = static_cast<int>(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z));
  const int slot = block * static_cast<int>(blockDim.x * blockDim.y * blockDim.z) + thread;
  atomicAdd(&seen[slot], 1);
  block_of[slot] = block;
  thread_of[slot] = thread;
}

// A tree sum in shared memory, a barrier per level.
__global__ void block_sums(const float* x, float* sums) {
  __shared__ float partial[256];
  partial[threadIdx.x] = x[blockIdx.x * 256 + threadIdx.x];
  __syncthreads();
  for (unsigned s = 128; s > 0; s /= 2) {
    if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) sums[blockIdx.x] = partial[0];
}

__global__ void shuffles(int* out) {
  const int v = static_cast<int>(threadIdx.x) * 10;
  int* o = out + threadIdx.x * 4;
  o[0] = __shfl_xor_sync(0xffffffffu, v, 5);
  o[1] = __shfl_down_sync(0xffffffffu, v, 3u);
  o[2] = __shfl_sync(0xffffffffu, v, 7);
  o[3] = __shfl_down_sync(0xffffffffu, v, 1u, 8);  // within segments of 8 lanes
}

// Threads 16.. leave before the barrier: exited threads count as arrived, as on the hardware.
__global__ void early_exit(int* out) {
  __shared__ int s[16];
  if (threadIdx.x >= 16) return;
  s[threadIdx.x] = static_cast<int>(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = s[15 - threadIdx.x];
}

__global__ void divergent_barrier(int* out) {
  if (threadIdx.x % 2 == 0) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

__global__ void exited_lane(int* out) {
  if (threadIdx.x == 3) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, static_cast<int>(threadIdx.x), 1);
}

// Lane 15 reads lane 16, which the mask leaves out.
__global__ void outside_mask(int* out) {
  if (threadIdx.x < 16) out[threadIdx.x] = __shfl_down_sync(0x0000ffffu, static_cast<int>(threadIdx.x), 1u);
}

__global__ void read_dynamic_shared(unsigned* out) {
  out[threadIdx.x] = lmrl::cuda::dynamic_shared_memory<unsigned>()[threadIdx.x];
}

__global__ void add_one(float* x, int n) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) x[i] += 1.0f;
}

template <class T>
std::vector<T> to_host(const device_array<T>& d) {
  return d.to_host();
}

std::string describe(const void* p) {
  std::ostringstream out;
  out << p;
  return out.str();
}

}  // namespace

TEST_CASE("emulator: every thread of a 3-D grid of 3-D blocks runs once, with CUDA's coordinates") {
  const dim3 grid(3, 2, 2), block(4, 3, 2);
  const int blocks = 12, threads = 24;
  device_array<int> seen(static_cast<std::size_t>(blocks * threads)), block_of(seen.size()), thread_of(seen.size());
  LMRL_CUDA_CHECK(cudaMemset(seen.data(), 0, seen.size() * sizeof(int)));
  launch(coordinates, grid, block, 0, nullptr, seen.data(), block_of.data(), thread_of.data());
  const auto s = to_host(seen), b = to_host(block_of), t = to_host(thread_of);
  for (int slot = 0; slot < blocks * threads; ++slot) {
    CAPTURE(slot);
    CHECK(s[static_cast<std::size_t>(slot)] == 1);
    CHECK(b[static_cast<std::size_t>(slot)] == slot / threads);
    CHECK(t[static_cast<std::size_t>(slot)] == slot % threads);
  }
}

TEST_CASE("emulator: shared memory and __syncthreads give each block its own tree sum") {
  std::vector<float> x(3 * 256);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 7) % 13) - 6.0f;
  const auto dx = device_array<float>::from_host(x);
  device_array<float> sums(3);
  launch(block_sums, 3, 256, 0, nullptr, dx.data(), sums.data());
  const auto got = to_host(sums);
  for (std::size_t b = 0; b < 3; ++b) {
    float expected = 0;
    for (std::size_t i = 0; i < 256; ++i) expected += x[b * 256 + i];
    CHECK(got[b] == expected);  // small integers: exact in any order
  }
}

TEST_CASE("emulator: warp shuffles read the lanes CUDA defines, warp by warp") {
  device_array<int> out(64 * 4);
  launch(shuffles, 1, 64, 0, nullptr, out.data());
  const auto o = to_host(out);
  for (int tid = 0; tid < 64; ++tid) {
    CAPTURE(tid);
    const int lane = tid % 32, base = tid - lane;
    const int* r = o.data() + tid * 4;
    CHECK(r[0] == (base + (lane ^ 5)) * 10);
    CHECK(r[1] == (lane + 3 < 32 ? tid + 3 : tid) * 10);
    CHECK(r[2] == (base + 7) * 10);
    CHECK(r[3] == (lane % 8 + 1 < 8 ? tid + 1 : tid) * 10);
  }
}

TEST_CASE("emulator: __dp4a sums the products of four signed bytes; __fmaf_rn rounds once") {
  // bytes (low first) 1, -2, 127, -128 and -1, 3, -128, -128
  const int a = static_cast<int>(0x807ffe01u), b = static_cast<int>(0x8080'03ffu);
  CHECK(__dp4a(a, b, 5) == 5 + 1 * -1 + -2 * 3 + 127 * -128 + -128 * -128);
  const float x = 1.0f + 0x1p-23f;  // x * x = 1 + 2^-22 + 2^-46: the 2^-46 survives only an unrounded product
  CHECK(__fmaf_rn(x, x, -(1.0f + 0x1p-22f)) == 0x1p-46f);
}

TEST_CASE("emulator: threads that exit before a barrier count as arrived") {
  device_array<int> out(16);
  launch(early_exit, 1, 64, 0, nullptr, out.data());
  const auto o = to_host(out);
  for (int i = 0; i < 16; ++i) CHECK(o[static_cast<std::size_t>(i)] == 15 - i);
}

TEST_CASE("emulator: the mistakes a GPU would not report are errors, and the next launch runs") {
  device_array<int> out(64);
  const auto next_launch_runs = [&] {
    device_array<float> x = device_array<float>::from_host(std::vector<float>{1, 2, 3});
    launch(add_one, 1, 32, 0, nullptr, x.data(), 3);
    CHECK(to_host(x) == std::vector<float>{2, 3, 4});
  };
  CHECK_THROWS_WITH_AS(launch(divergent_barrier, 1, 64, 0, nullptr, out.data()),
                       doctest::Contains("two different __syncthreads"), std::logic_error);
  next_launch_runs();
  CHECK_THROWS_WITH_AS(launch(exited_lane, 1, 32, 0, nullptr, out.data()),
                       doctest::Contains("lane 3 of warp 0 is named in a warp collective's mask but has exited"),
                       std::logic_error);
  next_launch_runs();
  CHECK_THROWS_WITH_AS(launch(outside_mask, 1, 32, 0, nullptr, out.data()),
                       doctest::Contains("shuffles from lane 16, which the mask leaves out"), std::logic_error);
  next_launch_runs();

  std::vector<float> host(256);
  device_array<float> sums(1);
  CHECK_THROWS_WITH_AS(launch(block_sums, 1, 256, 0, nullptr, host.data(), sums.data()),
                       doctest::Contains("argument 0 of"), std::logic_error);
  CHECK_THROWS_WITH_AS(launch(add_one, 0, 32, 0, nullptr, sums.data(), 1), doctest::Contains("an empty launch"),
                       std::logic_error);
  CHECK_THROWS_WITH_AS(launch(add_one, 1, 2048, 0, nullptr, sums.data(), 1), doctest::Contains("past the limits"),
                       std::logic_error);
  next_launch_runs();
}

TEST_CASE("emulator: copies and memsets stay inside one allocation and go the way their kind says") {
  device_array<float> d(4);
  std::vector<float> h(8, 1.0f);
  CHECK_THROWS_WITH_AS(LMRL_CUDA_CHECK(cudaMemcpy(d.data(), h.data(), 5 * sizeof(float), cudaMemcpyHostToDevice)),
                       doctest::Contains("is not inside one device allocation"), std::logic_error);
  // The two ends swapped: the source is checked first.
  const std::string device_source =
      "(source): " + describe(d.data()) + " is device memory where the copy's kind names host memory";
  CHECK_THROWS_WITH_AS(LMRL_CUDA_CHECK(cudaMemcpy(h.data(), d.data(), 4 * sizeof(float), cudaMemcpyHostToDevice)),
                       doctest::Contains(device_source.c_str()), std::logic_error);
  const std::string host_source =
      "(source): [" + describe(h.data()) + ", +16 bytes) is not inside one device allocation";
  CHECK_THROWS_WITH_AS(LMRL_CUDA_CHECK(cudaMemcpy(d.data(), h.data(), 4 * sizeof(float), cudaMemcpyDeviceToHost)),
                       doctest::Contains(host_source.c_str()), std::logic_error);
  CHECK_THROWS_WITH_AS(LMRL_CUDA_CHECK(cudaMemsetAsync(d.data() + 2, 0, 3 * sizeof(float), nullptr)),
                       doctest::Contains("cudaMemsetAsync"), std::logic_error);
  LMRL_CUDA_CHECK(cudaMemcpy(d.data(), h.data(), 4 * sizeof(float), cudaMemcpyHostToDevice));
  CHECK(to_host(d) == std::vector<float>(4, 1.0f));
}

TEST_CASE("emulator: new memory and dynamic shared memory read as 0xff bytes; shared memory has CUDA's limit") {
  device_array<float> fresh(3);
  for (const float v : to_host(fresh)) CHECK(std::isnan(v));
  device_array<unsigned> out(64);
  launch(read_dynamic_shared, 1, 64, 64 * sizeof(unsigned), nullptr, out.data());
  for (const unsigned v : to_host(out)) CHECK(v == 0xffffffffu);
  CHECK_THROWS_WITH_AS(launch(read_dynamic_shared, 1, 64, 64 << 10, nullptr, out.data()),
                       doctest::Contains("over the 49152 its cudaFuncSetAttribute allows"), std::logic_error);
  LMRL_CUDA_CHECK(cudaFuncSetAttribute(read_dynamic_shared, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 << 10));
  launch(read_dynamic_shared, 1, 64, 64 << 10, nullptr, out.data());
  CHECK(to_host(out)[5] == 0xffffffffu);
}

TEST_CASE("emulator: work on a captured stream runs when the graph does, each time it does") {
  cudaStream_t stream = nullptr;
  LMRL_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  lmrl::cuda::managed_tensor<float, 1> x({4}, stream);
  x.synchronize();
  LMRL_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
  launch(add_one, 1, 32, 0, stream, x.data(), 4);
  CHECK(x.view()(0) == 0.0f);  // recorded, not run
  CHECK_THROWS_WITH_AS(LMRL_CUDA_CHECK(cudaStreamSynchronize(stream)),
                       doctest::Contains("cudaErrorStreamCaptureUnsupported"), std::logic_error);
  cudaGraph_t graph = nullptr;
  LMRL_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec = nullptr;
  LMRL_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  LMRL_CUDA_CHECK(cudaGraphLaunch(exec, stream));
  LMRL_CUDA_CHECK(cudaGraphLaunch(exec, stream));
  LMRL_CUDA_CHECK(cudaStreamSynchronize(stream));
  for (int i = 0; i < 4; ++i) CHECK(x.view()(i) == 2.0f);
  LMRL_CUDA_CHECK(cudaGraphExecDestroy(exec));
  LMRL_CUDA_CHECK(cudaGraphDestroy(graph));

  cudaStream_t blocking = nullptr;  // the legacy stream waits for a blocking stream: not while it is captured
  LMRL_CUDA_CHECK(cudaStreamCreate(&blocking));
  LMRL_CUDA_CHECK(cudaStreamBeginCapture(blocking, cudaStreamCaptureModeRelaxed));
  CHECK_THROWS_WITH_AS(launch(add_one, 1, 32, 0, nullptr, x.data(), 4),
                       doctest::Contains("legacy stream while a blocking stream is captured"), std::logic_error);
  LMRL_CUDA_CHECK(cudaStreamEndCapture(blocking, &graph));
  LMRL_CUDA_CHECK(cudaGraphDestroy(graph));
  LMRL_CUDA_CHECK(cudaStreamDestroy(blocking));
  LMRL_CUDA_CHECK(cudaStreamDestroy(stream));
}

TEST_CASE("emulator: cublasGemmEx is the column-major product, C unread at beta 0; TF32 rounds its inputs") {
  const int m = 3, n = 2, k = 4;
  std::vector<float> a(static_cast<std::size_t>(k * m)), b(static_cast<std::size_t>(k * n));
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = 0.25f * static_cast<float>(i) - 1.0f;
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = 0.5f * static_cast<float>(i % 5) - 0.75f;
  b[0] = 1.0f + 0x1p-20f;  // TF32 keeps 10 mantissa bits: rounds to 1
  const auto da = device_array<float>::from_host(a), db = device_array<float>::from_host(b);
  device_array<float> dc(static_cast<std::size_t>(m * n));  // NaN bytes: beta 0 must not read them
  cublasHandle_t handle = nullptr;
  REQUIRE(cublasCreate(&handle) == CUBLAS_STATUS_SUCCESS);
  const float alpha = 2.0f, beta = 0.0f;
  // C = alpha A^T B with A stored k x m (lda k) and B k x n (ldb k).
  for (const auto compute : {CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_32F_FAST_TF32}) {
    REQUIRE(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, da.data(), CUDA_R_32F, k, db.data(),
                         CUDA_R_32F, k, &beta, dc.data(), CUDA_R_32F, m, compute,
                         CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS);
    const auto c = to_host(dc);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) {
        double expected = 0;
        for (int p = 0; p < k; ++p) {
          const float bv = compute == CUBLAS_COMPUTE_32F_FAST_TF32 && j == 0 && p == 0 ? 1.0f : b[p + j * k];
          expected += static_cast<double>(a[p + i * k]) * bv;
        }
        CHECK(c[static_cast<std::size_t>(i + j * m)] == static_cast<float>(2.0 * expected));
      }
  }
  REQUIRE(cublasDestroy(handle) == CUBLAS_STATUS_SUCCESS);
}

TEST_CASE("emulator: cub's radix sort orders the pairs by the key bits asked, stably") {
  const std::vector<std::uint32_t> keys{0x105, 0x003, 0x205, 0x001, 0x003};  // bit 8 and up are not sorted on
  const std::vector<std::int32_t> rows{0, 1, 2, 3, 4};
  const auto k_in = device_array<std::uint32_t>::from_host(keys);
  const auto r_in = device_array<std::int32_t>::from_host(rows);
  device_array<std::uint32_t> k_out(keys.size());
  device_array<std::int32_t> r_out(rows.size());
  std::size_t bytes = 0;
  LMRL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, k_in.data(), k_out.data(), r_in.data(),
                                                  r_out.data(), 5, 0, 8));
  device_array<unsigned char> scratch(bytes);
  LMRL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(scratch.data(), bytes, k_in.data(), k_out.data(), r_in.data(),
                                                  r_out.data(), 5, 0, 8));
  CHECK(to_host(r_out) == std::vector<std::int32_t>{3, 1, 4, 0, 2});
  CHECK(to_host(k_out) == std::vector<std::uint32_t>{0x001, 0x003, 0x003, 0x105, 0x205});
}
