// grpo_zero_cuda: grpo_zero (grpo_zero.cpp, read it) compiled by nvcc, so that
// --device cuda can run stage 3 (GRPO's forward and backward passes and its
// rollouts) on the GPU through train/transformer_gpu_policy.cuh. Pretraining
// and the held-out evaluations run on the CPU as in grpo_zero. Built where
// CMake finds nvcc; grpo_zero itself stays a plain C++ program.
//
//   build/examples/grpo_zero_cuda --device cuda --output_dir runs/gpu
#define LMRL_GRPO_ZERO_CUDA 1
// Eigen's headers annotate defaulted members __host__ __device__ (nvcc warning
// 20012); the CPU decoder's `#pragma GCC unroll` is GCC's (nvcc warning 1675).
#pragma nv_diag_suppress 20012
#pragma nv_diag_suppress 1675
#include "grpo_zero.cpp"
