// The Quantizer concept (lmrl/quant/quantizer.hpp): a user's own block format
// drops in, and quantize()/dequantize() walk the blocks in order.
#include "lmrl/quant/quantizer.hpp"

#include <vector>

#include "doctest/doctest.h"

using namespace lmrl;

namespace {

// A toy format: 2 values per block, each rounded to the nearest integer and stored as a byte.
struct rounding_pairs {
  static constexpr std::size_t block_size = 2;
  static constexpr std::size_t bytes_per_block = 2;
  static constexpr const char* name = "rounding_pairs";
  void quantize_block(std::span<const float> x, std::span<std::uint8_t> out) const {
    for (std::size_t i = 0; i < 2; ++i) out[i] = static_cast<std::uint8_t>(std::lround(x[i]));
  }
  void dequantize_block(std::span<const std::uint8_t> in, std::span<float> x) const {
    for (std::size_t i = 0; i < 2; ++i) x[i] = in[i];
  }
};

struct not_a_quantizer {
  static constexpr std::size_t block_size = 2;
};

}  // namespace

TEST_CASE("Quantizer: a user's format satisfies the concept and round-trips block by block") {
  static_assert(Quantizer<rounding_pairs>);
  static_assert(!Quantizer<not_a_quantizer>);
  CHECK(bits_per_value<rounding_pairs>() == 8.0);
  const std::vector<float> x = {1.2f, 2.7f, 3.5f, 9.9f};
  std::vector<std::uint8_t> bytes(quantized_bytes<rounding_pairs>(x.size()));
  quantize(rounding_pairs{}, x, bytes);
  CHECK(bytes == std::vector<std::uint8_t>{1, 3, 4, 10});
  std::vector<float> back(4);
  dequantize(rounding_pairs{}, bytes, back);
  CHECK(back == std::vector<float>{1, 3, 4, 10});
  CHECK_THROWS_WITH_AS(quantized_bytes<rounding_pairs>(3), doctest::Contains("rounding_pairs: 3 values"), lmrl::error);
  std::vector<float> wrong(6);
  CHECK_THROWS_WITH_AS(dequantize(rounding_pairs{}, bytes, wrong), doctest::Contains("need 6 bytes, the input has 4"),
                       lmrl::error);
}
