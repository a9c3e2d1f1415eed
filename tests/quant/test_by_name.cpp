// weight_rounding_by_name (lmrl/quant/by_name.hpp): each name rounds exactly
// as round_through with its format does, an unknown name lists the known ones.
#include "lmrl/quant/by_name.hpp"

#include <random>
#include <vector>

#include "doctest/doctest.h"

using namespace lmrl;

namespace {

template <Quantizer Q>
void check_name(const char* name, const Q& format, const std::vector<float>& w) {
  std::vector<float> by_name = w, direct = w;
  weight_rounding_by_name<float>(name)(matrix_view<float>(by_name.data(), {2, 256}));
  round_through(format, matrix_view<float>(direct.data(), {2, 256}));
  INFO(name);
  CHECK(by_name == direct);
  CHECK(by_name != w);  // and it did round
}

}  // namespace

TEST_CASE("weight_rounding_by_name gives each format's round_through and names them for an unknown one") {
  std::mt19937 gen(9);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> w(2 * 256);
  for (auto& v : w) v = normal(gen);
  check_name("q8_0", q8_0{}, w);
  check_name("q4_0", q4_0{}, w);
  check_name("q4_k", q4_k{}, w);
  check_name("fp8", fp8_tile{}, w);
  check_name("tq2_0", tq2_0{}, w);
  check_name("tq2_0_absmean", tq2_0{ternary_rule::absmean}, w);
  CHECK_THROWS_WITH_AS(weight_rounding_by_name<float>("q3_k"), doctest::Contains("known: q8_0, q4_0, q4_k, fp8"),
                       lmrl::error);
}
