// A CPU emulator for lmrl's CUDA kernels, so that the GPU tests (tests/cuda/)
// run on a machine without a GPU. Included first, before any lmrl header, by
// the generated units that compile the same test sources nvcc compiles for the
// GPU (tests/CMakeLists.txt); the library meets it only in lmrl/cuda/launch.cuh.
//
// What it is: every thread of a block is a fiber with its own stack, on one OS
// thread; blocks run one after another. __syncthreads parks a thread until
// every thread of its block has arrived (or exited); a warp shuffle parks it
// until every lane its mask names has posted to the same shuffle. __shared__
// variables become function statics, which is the block's shared memory
// because one block runs at a time. Device memory is host memory that the
// emulator tracks, so it checks what a GPU would not tell: every copy and
// memset inside one allocation and in the direction it names, every pointer a
// kernel receives a device pointer (or null), no empty grid or oversized block,
// no barrier reached from two places at once, no shuffle with an exited or
// masked-out lane, no deadlock, no synchronize or legacy-stream work during a
// capture. New allocations and dynamic shared memory are filled with 0xff
// bytes (NaN as floats) so that a read before a write shows. cuBLAS's GemmEx
// runs in double (TF32 inputs rounded as the tensor cores would); cuBLASLt
// offers no algorithm, so block-scaled FP8 takes its CUDA-core path.
//
// What it is not: a GPU. Kernels see sequential, deterministic scheduling, so
// a race that the hardware would expose may not show here; static __shared__
// arrays are not poisoned; timing, occupancy and the fast-math intrinsics'
// rounding (__expf) are not emulated; the cuBLASLt FP8 path is not run at all.
#pragma once

#define LMRL_CUDA_EMULATOR 1

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

// Device code is host code here.
#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __forceinline__
#undef __launch_bounds__
#define __global__
#define __device__
#define __host__
#define __shared__ static  // one block runs at a time: a function static is its shared memory
#define __forceinline__ inline
#define __launch_bounds__(...)

// The running thread's coordinates, set by the scheduler before it switches to a thread.
inline uint3 threadIdx;
inline uint3 blockIdx;
inline dim3 blockDim;
inline dim3 gridDim;
inline constexpr int warpSize = 32;

namespace lmrl_cuda_emulator {

// Runs `work` now, or records it where `stream` is being captured into a graph.
void submit(cudaStream_t stream, std::function<void()> work);
// Fails unless [p, p + bytes) lies inside one device or managed allocation.
void require_device(const void* p, std::size_t bytes, const std::string& what);

// The kernel body of one launch, run by every thread of every block.
void run_grid(const void* kernel, dim3 grid, dim3 block, std::size_t shared_bytes, cudaStream_t stream,
              std::function<void()> body);
void set_max_dynamic_shared(const void* kernel, int bytes);

// Fails the launch unless p is null or points into (or one past) a device or managed allocation.
void check_kernel_pointer(const void* kernel, int argument, const void* p);

void* dynamic_shared_memory();
void syncthreads_at(const char* file, int line);

// A warp collective: the calling lane posts `value`; returns once every lane in `mask` has posted to the
// same kind of collective, with the value of the lane it reads (shuffle_kind, as the CUDA intrinsics define it).
enum class shuffle_kind { xor_lanes, down, index, sync };
std::uint64_t warp_collective(unsigned mask, shuffle_kind kind, std::uint64_t value, int parameter, int width);

template <class T>
T shuffle(unsigned mask, shuffle_kind kind, T value, int parameter, int width) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>);
  std::uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  bits = warp_collective(mask, kind, bits, parameter, width);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}

template <class P>
void check_parameter(const void* kernel, int argument, const P& value) {
  if constexpr (std::is_pointer_v<P>) check_kernel_pointer(kernel, argument, static_cast<const void*>(value));
}

template <class... Params, class... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t shared_bytes, cudaStream_t stream,
            Args&&... args) {
  // The arguments converted to the parameters' types once, as <<<>>> would; each thread gets its copy.
  std::tuple<std::remove_cvref_t<Params>...> parameters(std::forward<Args>(args)...);
  const void* key = reinterpret_cast<const void*>(kernel);
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (check_parameter(key, static_cast<int>(I), std::get<I>(parameters)), ...);
  }(std::index_sequence_for<Params...>{});
  run_grid(key, grid, block, shared_bytes, stream, [kernel, parameters] { std::apply(kernel, parameters); });
}

}  // namespace lmrl_cuda_emulator

// The device intrinsics the kernels use.
// A barrier knows where it was called from, so that two barriers reached at once are told apart.
#define __syncthreads() ::lmrl_cuda_emulator::syncthreads_at(__FILE__, __LINE__)
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  lmrl_cuda_emulator::warp_collective(mask, lmrl_cuda_emulator::shuffle_kind::sync, 0, 0, 32);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32) {
  return lmrl_cuda_emulator::shuffle(mask, lmrl_cuda_emulator::shuffle_kind::xor_lanes, value, lane_mask, width);
}
template <class T>
T __shfl_down_sync(unsigned mask, T value, unsigned delta, int width = 32) {
  return lmrl_cuda_emulator::shuffle(mask, lmrl_cuda_emulator::shuffle_kind::down, value, static_cast<int>(delta),
                                     width);
}
template <class T>
T __shfl_sync(unsigned mask, T value, int source_lane, int width = 32) {
  return lmrl_cuda_emulator::shuffle(mask, lmrl_cuda_emulator::shuffle_kind::index, value, source_lane, width);
}

// One OS thread runs every device thread and switches only at barriers and shuffles: a read-modify-write is atomic.
template <class T>
T atomicAdd(T* address, T value) {
  const T old = *address;
  *address = old + value;
  return old;
}
template <class T>
T atomicMin(T* address, T value) {
  const T old = *address;
  if (value < old) *address = value;
  return old;
}
template <class T>
T atomicMax(T* address, T value) {
  const T old = *address;
  if (old < value) *address = value;
  return old;
}

// IEEE round-to-nearest arithmetic: what the host does (x86-64 SSE, no contraction into FMA without -mfma).
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __dsqrt_rn(double a) { return std::sqrt(a); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __expf(float x) { return std::exp(x); }  // the GPU's is an approximation; this is the exact one
inline long long __double_as_longlong(double x) { return std::bit_cast<long long>(x); }
inline double __longlong_as_double(long long x) { return std::bit_cast<double>(x); }
inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
inline int __float_as_int(float x) { return std::bit_cast<int>(x); }
inline unsigned __float_as_uint(float x) { return std::bit_cast<unsigned>(x); }
inline float __uint_as_float(unsigned x) { return std::bit_cast<float>(x); }

// The sum of c and the products of a's and b's four signed bytes.
inline int __dp4a(int a, int b, int c) {
  for (int k = 0; k < 32; k += 8)
    c += static_cast<std::int8_t>(static_cast<unsigned>(a) >> k) * static_cast<std::int8_t>(static_cast<unsigned>(b) >> k);
  return c;
}

// CUDA's global min and max for device code (its math headers overload them for every arithmetic type; floating
// point as fminf/fmaxf, which return the other operand where one is NaN).
namespace lmrl_cuda_emulator {
template <bool Larger, class A, class B>
auto pick(A a, B b) {
  using C = std::common_type_t<A, B>;
  const C x = static_cast<C>(a), y = static_cast<C>(b);
  if constexpr (std::is_floating_point_v<C>)
    return Larger ? std::fmax(x, y) : std::fmin(x, y);
  else
    return (x < y) == Larger ? y : x;
}
template <class A, class B>
concept arithmetic_pair = std::is_arithmetic_v<A> && std::is_arithmetic_v<B>;
}  // namespace lmrl_cuda_emulator
template <class A, class B>
  requires lmrl_cuda_emulator::arithmetic_pair<A, B>
auto min(A a, B b) { return lmrl_cuda_emulator::pick<false>(a, b); }
template <class A, class B>
  requires lmrl_cuda_emulator::arithmetic_pair<A, B>
auto max(A a, B b) { return lmrl_cuda_emulator::pick<true>(a, b); }

// cuda_runtime.h's overload for a kernel (rather than a const void*) is nvcc's only.
template <class... Params>
cudaError_t cudaFuncSetAttribute(void (*kernel)(Params...), cudaFuncAttribute attribute, int value) {
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), attribute, value);
}
