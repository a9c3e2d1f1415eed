// r1_pipeline_cuda: r1_pipeline (r1_pipeline.cpp, read it) compiled by nvcc, so
// that --device cuda runs every stage on the GPU through
// train/transformer_gpu_policy.cuh: pretraining, SFT, GRPO and logit
// distillation (passes, optimizer steps and reference swaps on the device),
// rejection sampling and the held-out evaluations (model/generate.cuh).
// Built where CMake finds nvcc; r1_pipeline itself stays a plain C++ program.
//
//   build/examples/r1_pipeline_cuda --device cuda --output_dir runs/r1_gpu
#define LMRL_R1_PIPELINE_CUDA 1
// The CPU decoder's `#pragma GCC unroll` is GCC's (nvcc warning 1675). (Eigen is
// compiled with EIGEN_NO_CUDA here: the build's lmrl_cuda_flags.)
#pragma nv_diag_suppress 1675
#include "r1_pipeline.cpp"
