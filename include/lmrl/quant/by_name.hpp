// Weight formats by name, for flags such as grpo_zero's --rollout_quant:
// a function that rounds a weight matrix [out x in] through the format
// (quantized_matrix.hpp's round_through), row by row.
//
//   q8_0, q4_0       ggml's blocks of 32
//   q4_k             ggml's Q4_K super-blocks of 256 (8 sub-blocks of 32 with a scale and a min each)
//   fp8              E4M3 in 1 x 128 tiles with float32 scales (DeepSeek-V3's activation tiles)
//   tq2_0            ternary, ggml's absmax rule;  tq2_0_absmean: BitNet b1.58's absmean rule
#pragma once

#include <functional>
#include <string_view>

#include "lmrl/error.hpp"
#include "lmrl/quant/fp8_blocks.hpp"
#include "lmrl/quant/ggml_blocks.hpp"
#include "lmrl/quant/k_quants.hpp"
#include "lmrl/quant/quantized_matrix.hpp"
#include "lmrl/quant/ternary.hpp"

namespace lmrl {

inline constexpr const char* weight_format_names = "q8_0, q4_0, q4_k, fp8, tq2_0, tq2_0_absmean";

template <Real T>
std::function<void(matrix_view<T>)> weight_rounding_by_name(std::string_view name) {
  const auto through = [](auto format) { return [format](matrix_view<T> w) { round_through(format, w); }; };
  if (name == "q8_0") return through(q8_0{});
  if (name == "q4_0") return through(q4_0{});
  if (name == "q4_k") return through(q4_k{});
  if (name == "fp8") return through(fp8_tile{});
  if (name == "tq2_0") return through(tq2_0{});
  if (name == "tq2_0_absmean") return through(tq2_0{ternary_rule::absmean});
  detail::fail("weight format \"", name, "\" is not known; known: ", weight_format_names);
}

}  // namespace lmrl
