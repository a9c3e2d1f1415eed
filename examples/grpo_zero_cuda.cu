// grpo_zero_cuda: grpo_zero (grpo_zero.cpp, read it) compiled by nvcc, so that
// --device cuda can run the model on the GPU through train/transformer_gpu_policy.cuh:
// pretraining's and GRPO's forward and backward passes, optimizer steps and
// reference swaps, the rollouts and the held-out evaluations.
// Built where CMake finds nvcc; grpo_zero itself stays a plain C++ program.
//
//   build/examples/grpo_zero_cuda --device cuda --output_dir runs/gpu
#define LMRL_GRPO_ZERO_CUDA 1
// The CPU decoder's `#pragma GCC unroll` is GCC's (nvcc warning 1675). (Eigen is
// compiled with EIGEN_NO_CUDA here: the build's lmrl_cuda_flags.)
#pragma nv_diag_suppress 1675
#include "grpo_zero.cpp"
