// Reads tests/data/quant_reference.txt (tools/make_quant_reference.py): lines
// `name: hex hex ...`, floats as the hex of their bits.
#pragma once

#include <bit>
#include <cstdint>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "doctest/doctest.h"
#include "lmrl/quant/quantizer.hpp"

namespace quant_reference {

inline const std::map<std::string, std::vector<std::uint32_t>>& table() {
  static const auto t = [] {
    std::map<std::string, std::vector<std::uint32_t>> out;
    std::ifstream in(std::string(LMRL_TEST_DATA_DIR) + "/quant_reference.txt");
    REQUIRE_MESSAGE(in.good(), "tests/data/quant_reference.txt is missing");
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty() || line[0] == '#') continue;
      const auto colon = line.find(':');
      std::istringstream values(line.substr(colon + 1));
      auto& v = out[line.substr(0, colon)];
      std::string hex;
      while (values >> hex) v.push_back(static_cast<std::uint32_t>(std::stoul(hex, nullptr, 16)));
    }
    return out;
  }();
  return t;
}

inline const std::vector<std::uint32_t>& bits(const std::string& name) {
  const auto it = table().find(name);
  REQUIRE_MESSAGE(it != table().end(), "quant_reference.txt has no line ", name);
  return it->second;
}

inline std::vector<float> floats(const std::string& name) {
  std::vector<float> out;
  for (std::uint32_t b : bits(name)) out.push_back(std::bit_cast<float>(b));
  return out;
}

inline std::vector<std::uint8_t> bytes(const std::string& name) {
  std::vector<std::uint8_t> out;
  for (std::uint32_t b : bits(name)) out.push_back(static_cast<std::uint8_t>(b));
  return out;
}

// A format's bytes and dequantized values against gguf-py's for the blocks of NAME_input.
template <class Q>
void check_against_gguf(const std::string& name, std::size_t blocks, const Q& format = {}) {
  const auto input = floats(name + "_input");
  const auto expected = bytes(name + "_bytes");
  const auto expected_back = floats(name + "_dequant");
  REQUIRE(input.size() == blocks * Q::block_size);
  std::vector<std::uint8_t> got(lmrl::quantized_bytes<Q>(input.size()));
  lmrl::quantize(format, input, got);
  CHECK(got == expected);
  std::vector<float> back(input.size());
  lmrl::dequantize(format, got, back);
  for (std::size_t i = 0; i < back.size(); ++i) {
    INFO(name, " value ", i);
    CHECK(std::bit_cast<std::uint32_t>(back[i]) == std::bit_cast<std::uint32_t>(expected_back[i]));
  }
}

}  // namespace quant_reference
