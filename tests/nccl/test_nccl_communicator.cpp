// dist/nccl.hpp on one GPU per rank, bootstrapped over MPI:
//   mpiexec -n 2 lmrl_tests_nccl      (a machine with at least 2 GPUs)
// Every collective against its definition on device memory and on host memory
// (staged), and against the MPI model's results; all_reduce_device through
// split_communicator; then data-parallel GRPO (bigram policy, host gradients)
// over NCCL against one process.
// Registered with ctest (label gpu) only where configure found 2 GPUs or more.
// NOT RUN by this work: no GPU was available.
#define DOCTEST_CONFIG_IMPLEMENT
#include <cuda_runtime.h>
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <iostream>
#include <memory>
#include <vector>

#include "lmrl/dist/any_communicator.hpp"
#include "lmrl/dist/mpi.hpp"
#include "lmrl/dist/nccl.hpp"
#include "train/bigram_grpo.hpp"

using namespace lmrl;
using namespace lmrl::testing;

namespace {
std::unique_ptr<mpi_communicator> the_mpi;
std::unique_ptr<nccl_communicator> the_nccl;

std::vector<float> values_of(int rank, std::size_t n) {
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<float>(std::sin(0.37 * static_cast<double>(i) + rank) * (rank + 1));
  return x;
}
}  // namespace

TEST_CASE("nccl all_reduce: device and host memory give MPI's sums, maxima and minima") {
  auto& nccl = *the_nccl;
  for (const std::size_t n : {std::size_t{1}, std::size_t{1000}, std::size_t{1} << 20}) {
    for (const reduce_op op : {reduce_op::sum, reduce_op::max, reduce_op::min}) {
      std::vector<float> host = values_of(nccl.rank(), n), expected = host;
      the_mpi->all_reduce(std::span<float>(expected), op);
      nccl.all_reduce(std::span<float>(host), op);  // staged
      float* device = nullptr;
      REQUIRE(cudaMalloc(reinterpret_cast<void**>(&device), n * sizeof(float)) == cudaSuccess);
      std::vector<float> via_device = values_of(nccl.rank(), n);
      REQUIRE(cudaMemcpy(device, via_device.data(), n * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess);
      std::vector<float> poison(n, std::nanf(""));
      nccl.all_reduce(std::span<float>(device, n), op);  // in place on the GPU
      REQUIRE(cudaMemcpy(poison.data(), device, n * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
      cudaFree(device);
      for (std::size_t i = 0; i < n; ++i) {
        CHECK(host[i] == doctest::Approx(expected[i]).epsilon(1e-5));
        CHECK(poison[i] == doctest::Approx(expected[i]).epsilon(1e-5));
      }
    }
  }
}

TEST_CASE("nccl all_reduce_device and split_communicator: device memory summed by NCCL, host memory refused") {
  auto& nccl = *the_nccl;
  const std::size_t n = 1000;
  std::vector<float> expected = values_of(nccl.rank(), n);
  the_mpi->all_reduce(std::span<float>(expected), reduce_op::sum);
  float* device = nullptr;
  REQUIRE(cudaMalloc(reinterpret_cast<void**>(&device), n * sizeof(float)) == cudaSuccess);
  const std::vector<float> mine = values_of(nccl.rank(), n);
  REQUIRE(cudaMemcpy(device, mine.data(), n * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess);
  // The trainer's way: host collectives over MPI, the device all-reduce over NCCL.
  any_communicator split = split_communicator<mpi_communicator, nccl_communicator>(*the_mpi, nccl);
  CHECK(split.reduces_device_memory());
  split.all_reduce_device(std::span<float>(device, n), reduce_op::sum);
  std::vector<float> got(n, std::nanf(""));
  REQUIRE(cudaMemcpy(got.data(), device, n * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
  cudaFree(device);
  for (std::size_t i = 0; i < n; ++i) CHECK(got[i] == doctest::Approx(expected[i]).epsilon(1e-5));
  std::vector<float> host = mine;
  CHECK_THROWS_WITH_AS(nccl.all_reduce_device(std::span<float>(host), reduce_op::sum),
                       doctest::Contains("not device memory"), error);
}

TEST_CASE("nccl broadcast, all_gather and barrier: the concept's meaning") {
  auto& nccl = *the_nccl;
  for (int root = 0; root < nccl.size(); ++root) {
    std::vector<std::byte> b(37, std::byte(nccl.rank()));
    nccl.broadcast(std::span<std::byte>(b), root);
    for (auto v : b) CHECK(v == std::byte(root));
  }
  std::vector<std::byte> mine(static_cast<std::size_t>(5 * nccl.rank()), std::byte(nccl.rank() + 1));
  const auto all = nccl.all_gather(mine);
  REQUIRE(static_cast<int>(all.size()) == nccl.size());
  for (int r = 0; r < nccl.size(); ++r) {
    CHECK(all[static_cast<std::size_t>(r)].size() == static_cast<std::size_t>(5 * r));
    for (auto v : all[static_cast<std::size_t>(r)]) CHECK(v == std::byte(r + 1));
  }
  nccl.barrier();
}

TEST_CASE("data-parallel GRPO over NCCL: one process's parameters (bigram, double)") {
  grpo_config c = small_config("");
  c.max_steps = 3;
  c.output_dir = (std::filesystem::temp_directory_path() / ("lmrl_nccl_single_" + std::to_string(::getpid()))).string();
  std::filesystem::remove_all(c.output_dir);
  bigram_policy one, many;
  make_trainer(c, one, make_rewards()).train();
  std::int64_t pid = ::getpid();
  the_mpi->broadcast(std::as_writable_bytes(std::span<std::int64_t>(&pid, 1)), 0);
  c.output_dir = (std::filesystem::temp_directory_path() / ("lmrl_nccl_dp_" + std::to_string(pid))).string();
  make_trainer(c, many, make_rewards(), nullptr, any_communicator::borrowing(*the_nccl)).train();
  for (std::size_t k = 0; k < one.params.size(); ++k) CHECK(many.params[k] == doctest::Approx(one.params[k]).epsilon(1e-10));
}

int main(int argc, char** argv) {
  mpi_session mpi(argc, argv);
  int code = 1;
  try {
    the_mpi = std::make_unique<mpi_communicator>(mpi);
    int devices = 0;
    LMRL_CUDA_CHECK(cudaGetDeviceCount(&devices));
    detail::require(devices > 0, "lmrl_tests_nccl: no GPU");
    the_nccl = std::make_unique<nccl_communicator>(*the_mpi, the_mpi->rank() % devices);
    doctest::Context context(argc, argv);
    code = context.run();
    code = static_cast<int>(all_reduce_value<std::int64_t>(*the_mpi, code, reduce_op::max));
    the_nccl.reset();
    the_mpi.reset();
  } catch (const std::exception& e) {
    std::cerr << "lmrl_tests_nccl: " << e.what() << '\n';
    mpi.abort(1);
  }
  return code;
}
