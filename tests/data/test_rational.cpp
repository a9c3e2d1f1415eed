// Exact rationals: normalized results, exact cancellation, and overflow
// reported instead of wrapping.
#include "lmrl/data/rational.hpp"

#include <sstream>

#include "support/testing.hpp"

using namespace lmrl::data;

TEST_CASE("arithmetic is exact and normalized") {
  const rational half{1, 2}, third{1, 3};
  CHECK(*add(half, third) == rational{5, 6});        // 3/6 + 2/6
  CHECK(*subtract(third, half) == rational{-1, 6});  // 2/6 - 3/6
  CHECK(*multiply(rational{2, 3}, rational{9, 4}) == rational{3, 2});  // 18/12
  CHECK(*divide(rational{7, 1}, rational{2, 1}) == rational{7, 2});
  CHECK(*multiply(*divide(integer(7), integer(2)), integer(2)) == integer(7));  // 7 / 2 * 2 = 7 exactly
  CHECK(*divide(integer(3), integer(-6)) == rational{-1, 2});  // the sign goes to the numerator
  CHECK(*subtract(integer(5), integer(5)) == rational{0, 1});  // zero is 0/1
  CHECK(*add(rational{1, 6}, rational{1, 6}) == rational{1, 3});
  CHECK(*negate(rational{3, 4}) == rational{-3, 4});
  CHECK(rational{7, 2}.to_string() == "7/2");
  CHECK(integer(-8).to_string() == "-8");
  CHECK(integer(-8).is_integer());
  CHECK_FALSE((rational{1, 2}).is_integer());
  CHECK(rational{1, 4}.to_double() == 0.25);
  std::ostringstream out;
  out << rational{-5, 3};
  CHECK(out.str() == "-5/3");
}

TEST_CASE("division by zero and overflow give nullopt, never a wrapped value") {
  CHECK_FALSE(divide(integer(1), integer(0)).has_value());
  const std::int64_t big = 4000000000;  // 4e9 * 4e9 = 1.6e19 > 9.22e18
  CHECK_FALSE(multiply(integer(big), integer(big)).has_value());
  CHECK(multiply(integer(3037000499), integer(3037000499)).has_value());  // 9.2233720e18 < 2^63 - 1
  CHECK_FALSE(add(integer(INT64_MAX), integer(1)).has_value());
  CHECK_FALSE(subtract(integer(-INT64_MAX), integer(1)).has_value());  // INT64_MIN itself is excluded
  CHECK(*add(integer(INT64_MAX), integer(-1)) == integer(INT64_MAX - 1));
  // Cross-reduction avoids a false overflow: (4e9 / 3) * (3 / 4e9) = 1.
  CHECK(*multiply(rational{big, 3}, rational{3, big}) == integer(1));
}
