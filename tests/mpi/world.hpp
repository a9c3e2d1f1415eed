// The MPI tests' communicator over every rank of the job (set up by mpi_main.cpp).
#pragma once

#include <string>

#include "lmrl/dist/mpi.hpp"

namespace lmrl::testing {

mpi_session& session();
mpi_communicator& world();

// A directory name the same on every rank of this job (the launcher's job id
// is not portable, so rank 0's pid is broadcast).
std::string shared_temp_dir(const std::string& name);

}  // namespace lmrl::testing
