// The model/ layer: the bundled Qwen2/Llama-style transformer (config, one-buffer
// parameters, forward and hand-written backward, per-op kernels), its
// tokenizers, safetensors / Hugging Face checkpoint IO, and KV-cache generation.
// Needs Eigen (the matrix products); link OpenMP to use every core.
#pragma once

#include "lmrl/model/config.hpp"
#include "lmrl/model/generate.hpp"
#include "lmrl/model/hf_checkpoint.hpp"
#include "lmrl/model/kv_cache.hpp"
#include "lmrl/model/ops/attention.hpp"
#include "lmrl/model/ops/embedding.hpp"
#include "lmrl/model/ops/matmul.hpp"
#include "lmrl/model/ops/rms_norm.hpp"
#include "lmrl/model/ops/rope.hpp"
#include "lmrl/model/ops/swiglu.hpp"
#include "lmrl/model/parameters.hpp"
#include "lmrl/model/safetensors.hpp"
#include "lmrl/model/tokenizer.hpp"
#include "lmrl/model/transformer.hpp"
