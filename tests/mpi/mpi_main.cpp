// The MPI test program's main: starts MPI, runs doctest on every rank (each
// rank checks its own results; the job fails when any rank fails), and ends
// the whole job at once when a rank throws outside a test.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <iostream>
#include <memory>

#include "mpi/world.hpp"

namespace {
lmrl::mpi_session* the_session = nullptr;
std::unique_ptr<lmrl::mpi_communicator> the_world;
}  // namespace

lmrl::mpi_session& lmrl::testing::session() { return *the_session; }

lmrl::mpi_communicator& lmrl::testing::world() { return *the_world; }

std::string lmrl::testing::shared_temp_dir(const std::string& name) {
  std::int64_t pid = ::getpid();
  world().broadcast(std::as_writable_bytes(std::span<std::int64_t>(&pid, 1)), 0);
  return (std::filesystem::temp_directory_path() / ("lmrl_mpi_" + std::to_string(pid) + "_" + name)).string();
}

int main(int argc, char** argv) {
  lmrl::mpi_session mpi(argc, argv);
  the_session = &mpi;
  int code = 1;
  try {
    the_world = std::make_unique<lmrl::mpi_communicator>(mpi);
    doctest::Context context(argc, argv);
    code = context.run();
    // Every rank reports its own tests; the job's status is the worst.
    code = static_cast<int>(lmrl::all_reduce_value<std::int64_t>(*the_world, code, lmrl::reduce_op::max));
    the_world.reset();
  } catch (const std::exception& e) {
    std::cerr << "rank " << (the_world ? the_world->rank() : -1) << ": " << e.what() << '\n';
    mpi.abort(1);
  }
  return code;
}
