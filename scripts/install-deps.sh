#!/usr/bin/env bash
# Installs what lmrl's build, tests and benchmarks need from Debian's packages,
# skipping what is already there. Safe to run again.
set -euo pipefail

need=()
have_header() { [ -e "/usr/include/$1" ] || [ -e "/usr/local/include/$1" ]; }
command -v cmake >/dev/null || need+=(cmake)
command -v ninja >/dev/null || need+=(ninja-build)
command -v g++ >/dev/null || need+=(g++)
have_header eigen3/Eigen/Core || need+=(libeigen3-dev)
have_header xtensor/xtensor.hpp || need+=(libxtensor-dev)
have_header xtl/xtl_config.hpp || need+=(xtl-dev)
have_header xsimd/xsimd.hpp || need+=(libxsimd-dev)
have_header doctest/doctest.h || need+=(doctest-dev)
have_header benchmark/benchmark.h || need+=(libbenchmark-dev)
# Data-parallel training over MPI (tests/mpi, mpirun -np N ./grpo_zero): Open MPI.
command -v mpicxx >/dev/null || need+=(libopenmpi-dev)
command -v mpiexec >/dev/null || need+=(openmpi-bin)
# The fuzz targets need clang++ and its libFuzzer/sanitizer runtimes (Debian
# ships those apart from the compiler, in libclang-rt-dev).
if ! command -v clang++ >/dev/null || [ ! -e "$(clang++ -print-file-name=libclang_rt.fuzzer-$(uname -m).a)" ]; then
  need+=(clang libclang-rt-dev)
fi

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${need[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install ${need[*]}" >&2; exit 1; }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
