// The Quantizer concept: a block format that turns block_size floats into
// bytes_per_block bytes and back. Formats are small structs (ggml_blocks.hpp,
// fp8_blocks.hpp); quantize() and dequantize() run one over a whole array.
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

#include "lmrl/error.hpp"

namespace lmrl {

template <class Q>
concept Quantizer = requires(const Q& q, std::span<const float> values, std::span<std::uint8_t> bytes,
                             std::span<const std::uint8_t> block, std::span<float> out) {
  { Q::block_size } -> std::convertible_to<std::size_t>;
  { Q::bytes_per_block } -> std::convertible_to<std::size_t>;
  { Q::name } -> std::convertible_to<const char*>;
  q.quantize_block(values, bytes);  // block_size values -> bytes_per_block bytes
  q.dequantize_block(block, out);   // and back
};

template <Quantizer Q>
constexpr double bits_per_value() {
  return 8.0 * static_cast<double>(Q::bytes_per_block) / static_cast<double>(Q::block_size);
}

// Bytes that hold n values (n a multiple of the block size).
template <Quantizer Q>
std::size_t quantized_bytes(std::size_t n) {
  detail::require(n % Q::block_size == 0, Q::name, ": ", n, " values are not a whole number of blocks of ",
                  Q::block_size);
  return n / Q::block_size * Q::bytes_per_block;
}

template <Quantizer Q>
void quantize(const Q& q, std::span<const float> values, std::span<std::uint8_t> bytes) {
  const std::size_t need = quantized_bytes<Q>(values.size());
  detail::require(bytes.size() == need, Q::name, ": ", values.size(), " values need ", need, " bytes, the output has ",
                  bytes.size());
  for (std::size_t b = 0; b < values.size() / Q::block_size; ++b)
    q.quantize_block(values.subspan(b * Q::block_size, Q::block_size),
                     bytes.subspan(b * Q::bytes_per_block, Q::bytes_per_block));
}

template <Quantizer Q>
void dequantize(const Q& q, std::span<const std::uint8_t> bytes, std::span<float> values) {
  const std::size_t need = quantized_bytes<Q>(values.size());
  detail::require(bytes.size() == need, Q::name, ": ", values.size(), " values need ", need, " bytes, the input has ",
                  bytes.size());
  for (std::size_t b = 0; b < values.size() / Q::block_size; ++b)
    q.dequantize_block(bytes.subspan(b * Q::bytes_per_block, Q::bytes_per_block),
                       values.subspan(b * Q::block_size, Q::block_size));
}

namespace detail {
// Every value finite (block formats have no code for NaN or infinity); names the first that is not.
inline void require_finite_block(const char* format, std::span<const float> values) {
  for (std::size_t i = 0; i < values.size(); ++i)
    require(std::isfinite(values[i]), format, ": value ", i, " of the block is ", values[i],
            "; the format holds finite values only");
}
}  // namespace detail

}  // namespace lmrl
