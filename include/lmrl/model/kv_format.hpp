// kv_format: how a KV cache stores its rows (one position of one kv head,
// head_dim values), on the CPU (model/kv_cache.hpp) and on the GPU
// (cuda/ops/cached_attention.cuh) alike, byte for byte:
//
//   f32    head_dim floats
//   q8_0   head_dim / 32 ggml Q8_0 blocks (quant/ggml_blocks.hpp), 34 bytes each: 8.5 bits a value
//   q4_0   head_dim / 32 ggml Q4_0 blocks, 18 bytes each: 4.5 bits a value
#pragma once

#include <cstddef>
#include <string_view>

#include "lmrl/error.hpp"
#include "lmrl/quant/ggml_blocks.hpp"
#include "lmrl/tensor/concepts.hpp"

namespace lmrl {

enum class kv_format { f32, q8_0, q4_0 };

// Values per block of a quantized row: head_dim must be a multiple of it.
inline constexpr index_t kv_block_values = 32;
static_assert(q8_0::block_size == kv_block_values && q4_0::block_size == kv_block_values);

// "none" (or "f32"), "q8_0", "q4_0": for flags such as grpo_zero's --rollout_kv_quant.
inline kv_format kv_format_by_name(std::string_view name) {
  if (name == "none" || name == "f32") return kv_format::f32;
  if (name == "q8_0") return kv_format::q8_0;
  if (name == "q4_0") return kv_format::q4_0;
  detail::fail("kv-cache format \"", name, "\" is not known; known: none, q8_0, q4_0");
}

inline const char* kv_format_name(kv_format f) {
  return f == kv_format::q8_0 ? "q8_0" : f == kv_format::q4_0 ? "q4_0" : "f32";
}

// Bytes of one quantized block (0 for f32, which has none).
constexpr std::size_t kv_block_bytes(kv_format f) {
  return f == kv_format::q8_0 ? q8_0::bytes_per_block : f == kv_format::q4_0 ? q4_0::bytes_per_block : 0;
}

// Bytes of one cached row of head_dim values stored as `value_bytes`-byte values (f32) or as blocks.
constexpr std::size_t kv_row_bytes(kv_format f, index_t head_dim, std::size_t value_bytes = sizeof(float)) {
  return f == kv_format::f32 ? static_cast<std::size_t>(head_dim) * value_bytes
                             : static_cast<std::size_t>(head_dim / kv_block_values) * kv_block_bytes(f);
}

// Fails unless a `format` cache can hold rows of head_dim values; `who` names the caller.
inline void require_kv_head_dim(kv_format format, index_t head_dim, const char* who) {
  detail::require(format == kv_format::f32 || head_dim % kv_block_values == 0, who, ": a ", kv_format_name(format),
                  " cache stores rows in blocks of ", kv_block_values, "; head_dim = ", head_dim,
                  " is not a multiple of ", kv_block_values);
}

}  // namespace lmrl
