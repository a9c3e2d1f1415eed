// grpo_zero_cuda: grpo_zero (grpo_zero.cpp, read it) compiled by nvcc, so that
// --device cuda can run stage 3 (GRPO's forward and backward passes and its
// rollouts) on the GPU through train/transformer_gpu_policy.cuh. Pretraining
// and the held-out evaluations run on the CPU as in grpo_zero. Built where
// CMake finds nvcc; grpo_zero itself stays a plain C++ program.
//
//   build/examples/grpo_zero_cuda --device cuda --output_dir runs/gpu
#define LMRL_GRPO_ZERO_CUDA 1
// The CPU decoder's `#pragma GCC unroll` is GCC's (nvcc warning 1675). (Eigen is
// compiled with EIGEN_NO_CUDA here: the build's lmrl_cuda_flags.)
#pragma nv_diag_suppress 1675
#include "grpo_zero.cpp"
