// weight_rounding_by_name (lmrl/quant/by_name.hpp): every name gives a
// rounding that changes a matrix, an unknown name lists the known ones.
#include "lmrl/quant/by_name.hpp"

#include <vector>

#include "doctest/doctest.h"

using namespace lmrl;

TEST_CASE("weight_rounding_by_name knows every format and names them for an unknown one") {
  std::vector<float> w(2 * 256, 0.5f);
  w[3] = -2.0f;
  for (const char* name : {"q8_0", "q4_0", "fp8", "tq2_0", "tq2_0_absmean"}) {
    std::vector<float> copy = w;
    weight_rounding_by_name<float>(name)(matrix_view<float>(copy.data(), {2, 256}));
    CHECK(copy[3] < 0.0f);
    CHECK(copy != std::vector<float>(512, 0.0f));
  }
  CHECK_THROWS_WITH_AS(weight_rounding_by_name<float>("q3_k"), doctest::Contains("known: q8_0, q4_0, fp8"),
                       lmrl::error);
}
