// cuda/device_array.cuh, managed_tensor.cuh, check.cuh: copies round-trip,
// poison is NaN, managed memory is one array for kernels and host algorithms,
// and a failing call is an lmrl::error naming it. Runs only on a GPU.
#include "support/doctest_strings.hpp"

#include <cmath>
#include <vector>

#include "lmrl/cuda/device_array.cuh"
#include "lmrl/cuda/launch.cuh"
#include "lmrl/cuda/managed_tensor.cuh"

using namespace lmrl;

namespace {
__global__ void add_one(float* x, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] += 1.0f;
}
}  // namespace

TEST_CASE("device_array: host values round-trip, poison reads back as NaN, a kernel sees the copy") {
  const std::vector<float> values{1.5f, -2.0f, 3.25f, 0.0f, 7.0f};
  auto x = cuda::device_array<float>::from_host(values);
  lmrl::cuda::launch(add_one, 1, 32, 0, nullptr, x.data(), 5);
  LMRL_CUDA_CHECK_LAUNCH("add_one");
  const auto back = x.to_host();
  for (std::size_t i = 0; i < values.size(); ++i) CHECK(back[i] == values[i] + 1.0f);
  cuda::device_array<float> y(4);
  y.poison();
  for (float v : y.to_host()) CHECK(std::isnan(v));
}

TEST_CASE("managed_tensor: kernels and host views share the memory, and it satisfies the tensor concepts") {
  static_assert(Array2D<cuda::managed_tensor<float, 2>> && WritableArray2D<cuda::managed_tensor<float, 2>>);
  cuda::managed_tensor<float, 2> m({3, 4});
  m.synchronize();
  m.view()(1, 2) = 5.0f;
  lmrl::cuda::launch(add_one, 1, 32, 0, nullptr, m.data(), 12);
  LMRL_CUDA_CHECK_LAUNCH("add_one");
  m.synchronize();
  CHECK(m.view()(1, 2) == 6.0f);
  CHECK(m.view()(0, 0) == 1.0f);
}

TEST_CASE("LMRL_CUDA_CHECK: a failing call is an lmrl::error with the call and CUDA's error name") {
  void* p = nullptr;
  CHECK_THROWS_WITH_AS(LMRL_CUDA_CHECK(cudaMalloc(&p, std::size_t{1} << 62)),
                       doctest::Contains("cudaMalloc(&p, std::size_t{1} << 62)"), error);
}

TEST_CASE("require_device: passes where a GPU is (these tests run only there)") {
  CHECK_NOTHROW(lmrl::cuda::require_device("test"));
}
