// integer_linear: a weight matrix W [out x in] (nn.Linear's layout) held in one
// of the formats that int_gemm.hpp multiplies with integer kernels, the format
// chosen at run time (by name, for flags), and its product with float
// activations:
//
//   Y [n x out] (+)= X [n x in] W^T      X quantized to Q8_0 once per call
//
//   q8_0   ggml's 32-value blocks, 8.5 bits per weight
//   q4_0   ggml's 32-value blocks, 4.5 bits per weight
//   int8   int8_rows: one float32 scale per row, 8 bits per weight (+ 32 per row)
//   q4_k   ggml's 256-value super-blocks, 6-bit scales and mins, 4.5 bits per weight
//   tq2_0  ggml's ternary 256-value blocks (absmax d, ggml's rule), 2.06 bits per weight
//   tq2_0_absmean   the same blocks, d = mean|x| (BitNet b1.58's rule, ternary.hpp)
//
// What a decoder holds instead of its float32 weights to generate from
// quantized ones (model/generate.hpp's cached_decoder::set_weight_format).
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>
#include <type_traits>
#include <variant>

#include "lmrl/error.hpp"
#include "lmrl/quant/ggml_blocks.hpp"
#include "lmrl/quant/int8_rows.hpp"
#include "lmrl/quant/int_gemm.hpp"
#include "lmrl/quant/k_quants.hpp"
#include "lmrl/quant/q8_0_rows.hpp"
#include "lmrl/quant/quantized_matrix.hpp"
#include "lmrl/quant/ternary.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

enum class integer_format { q8_0, q4_0, int8, q4_k, tq2_0, tq2_0_absmean };

inline constexpr const char* integer_format_names = "q8_0, q4_0, int8, q4_k, tq2_0, tq2_0_absmean";

inline const char* integer_format_name(integer_format f) {
  switch (f) {
    case integer_format::q8_0: return "q8_0";
    case integer_format::q4_0: return "q4_0";
    case integer_format::int8: return "int8";
    case integer_format::q4_k: return "q4_k";
    case integer_format::tq2_0: return "tq2_0";
    case integer_format::tq2_0_absmean: return "tq2_0_absmean";
  }
  return "unknown";
}

// The format of a name, or nothing when the name is not one of integer_format_names.
inline std::optional<integer_format> integer_format_by_name(std::string_view name) {
  for (auto f : {integer_format::q8_0, integer_format::q4_0, integer_format::int8, integer_format::q4_k,
                 integer_format::tq2_0, integer_format::tq2_0_absmean})
    if (name == integer_format_name(f)) return f;
  return std::nullopt;
}

namespace detail {
// integer_linear's variant holds format f as its alternative number f.
constexpr std::size_t alternative(integer_format f) { return static_cast<std::size_t>(f); }
}  // namespace detail

class integer_linear {
 public:
  integer_linear() = default;
  integer_linear(integer_format format, matrix_view<const float> w) {
    switch (format) {
      case integer_format::q8_0: w_.emplace<detail::alternative(integer_format::q8_0)>(w); break;
      case integer_format::q4_0: w_.emplace<detail::alternative(integer_format::q4_0)>(w); break;
      case integer_format::int8: w_.emplace<detail::alternative(integer_format::int8)>(w); break;
      case integer_format::q4_k: w_.emplace<detail::alternative(integer_format::q4_k)>(w); break;
      case integer_format::tq2_0:
        w_.emplace<detail::alternative(integer_format::tq2_0)>(w, tq2_0{ternary_rule::absmax});
        break;
      case integer_format::tq2_0_absmean:
        w_.emplace<detail::alternative(integer_format::tq2_0_absmean)>(w, tq2_0{ternary_rule::absmean});
        break;
    }
  }

  integer_format format() const { return static_cast<integer_format>(w_.index()); }
  index_t rows() const {
    return std::visit([](const auto& m) { return m.rows(); }, w_);
  }
  index_t cols() const {
    return std::visit([](const auto& m) { return m.cols(); }, w_);
  }
  // The bytes a product reads (codes and scales).
  std::size_t bytes() const {
    return std::visit(
        [](const auto& m) -> std::size_t {
          if constexpr (std::is_same_v<std::decay_t<decltype(m)>, int8_rows>) {
            return m.size_bytes();
          } else {
            return m.bytes().size();
          }
        },
        w_);
  }

  // Its bytes as the integer kernels read them: row r's blocks at data + r * stride (int8: rows of codes padded
  // to whole blocks of 32, and row_scales, one float a row), rows() rows. What a GPU copy is made from.
  detail::int_kernels::weight_rows kernel_rows() const {
    return std::visit([](const auto& m) { return detail::int_kernels::rows_of(m); }, w_);
  }

  // Y (+)= X W^T with X already quantized (several weights sharing one X).
  void multiply(const q8_0_rows& x, matrix_view<float> y, bool accumulate = false) const {
    std::visit([&](const auto& m) { int_matmul_transposed(x, m, y, accumulate); }, w_);
  }
  // Y (+)= X W^T, X quantized into scratch.
  void multiply(matrix_view<const float> x, matrix_view<float> y, q8_0_rows& scratch, bool accumulate = false) const {
    std::visit([&](const auto& m) { int_matmul_transposed(x, m, y, scratch, accumulate); }, w_);
  }

  // The float32 matrix it holds (tests, error measurements).
  void dequantize_to(matrix_view<float> out) const {
    std::visit([&](const auto& m) { m.dequantize_to(out); }, w_);
  }

 private:
  // Alternatives in integer_format's order (the two tq2_0 ones differ in their format's rule).
  std::variant<quantized_matrix<q8_0>, quantized_matrix<q4_0>, int8_rows, quantized_matrix<q4_k>,
               quantized_matrix<tq2_0>, quantized_matrix<tq2_0>>
      w_;
};

}  // namespace lmrl
