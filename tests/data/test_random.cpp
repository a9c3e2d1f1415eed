// Platform-independent draws: rejection sampling is exact, and the recorded
// draws from a seed never change (they are what makes a generator's seed name
// the same problems everywhere).
#include "lmrl/data/random.hpp"

#include <array>
#include <cstdint>
#include <vector>

#include "support/testing.hpp"

using namespace lmrl::data;

namespace {

// Returns the scripted values in turn.
struct scripted_engine {
  using result_type = std::uint64_t;
  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return UINT64_MAX; }
  std::vector<std::uint64_t> values;
  std::size_t next = 0;
  result_type operator()() { return values.at(next++); }
};

}  // namespace

static_assert(Engine64<task_rng> && Engine64<scripted_engine>);
static_assert(!Engine64<std::mt19937>);  // 32-bit draws would make uniform_below biased

TEST_CASE("uniform_below rejects the short top slice and reduces the rest modulo n") {
  // n = 3: 2^64 = 18446744073709551616 = 3 * 6148914691236517205 + 1, so 2^64 mod 3 = 1:
  // x = 0 is rejected; x = 1 -> 1, x = 5 -> 2, x = 2^64 - 1 -> (2^64 - 1) mod 3 = 0.
  scripted_engine e{{0, 1, 5, UINT64_MAX}};
  CHECK(uniform_below(e, 3) == 1);
  CHECK(e.next == 2);  // the 0 was drawn and rejected
  CHECK(uniform_below(e, 3) == 2);
  CHECK(uniform_below(e, 3) == 0);
  // n = 2^63 + 1: 2^64 mod n = 2^64 - n = 2^63 - 1, so every x < 2^63 - 1 is rejected;
  // the accepted x = 2^63 + 7 gives (2^63 + 7) - (2^63 + 1) = 6.
  const std::uint64_t n = (std::uint64_t{1} << 63) + 1;
  scripted_engine big{{5, (std::uint64_t{1} << 63) - 2, (std::uint64_t{1} << 63) + 7}};
  CHECK(uniform_below(big, n) == 6);
  CHECK(big.next == 3);
  // A power of two rejects nothing: 2^64 mod 8 = 0, and 13 mod 8 = 5.
  scripted_engine pow2{{13}};
  CHECK(uniform_below(pow2, 8) == 5);
}

TEST_CASE("uniform_int covers (lo, hi) including negative ranges and the full 64-bit range") {
  // lo = -2, hi = 2: span 4, n = 5; 2^64 mod 5 = 1 (2^4 = 16 = 1 mod 5, so 2^64 = 1 mod 5).
  // x = 7 -> 7 mod 5 = 2 -> -2 + 2 = 0; x = 9 -> 4 -> 2.
  scripted_engine e{{7, 9, 0, 10}};
  CHECK(uniform_int(e, -2, 2) == 0);
  CHECK(uniform_int(e, -2, 2) == 2);
  CHECK(uniform_int(e, -2, 2) == -2);  // 0 is rejected, 10 mod 5 = 0
  scripted_engine full{{UINT64_MAX}};
  CHECK(uniform_int(full, INT64_MIN, INT64_MAX) == INT64_MAX);
  CHECK_THROWS_WITH_AS(uniform_int(full, 3, 2), doctest::Contains("lo = 3 is greater than hi = 2"), lmrl::error);
  CHECK_THROWS_WITH_AS(uniform_below(full, 0), doctest::Contains("uniform_below: n is 0"), lmrl::error);
}

TEST_CASE("uniform_int is unbiased over many draws from mt19937_64") {
  task_rng rng(1);
  std::array<int, 6> counts{};
  const int draws = 60000;
  for (int k = 0; k < draws; ++k) ++counts[static_cast<std::size_t>(uniform_int(rng, 0, 5))];
  for (const int c : counts) CHECK(std::abs(c - draws / 6) < 400);  // ~4.4 standard deviations
}

TEST_CASE("bernoulli compares a 53-bit fraction with p") {
  // x >> 11 = 2^52 is the fraction 2^52 / 2^53 = 0.5: true for p = 0.5000001, false for p = 0.5.
  const std::uint64_t half = std::uint64_t{1} << 63;
  scripted_engine e{{half, half, 0, UINT64_MAX}};
  CHECK(bernoulli(e, 0.5000001));
  CHECK_FALSE(bernoulli(e, 0.5));
  CHECK_FALSE(bernoulli(e, 0.0));  // 0 < 0 is false: p = 0 never fires
  CHECK(bernoulli(e, 1.0));        // the largest fraction is 1 - 2^-53 < 1: p = 1 always fires
}

TEST_CASE("draws from a seed are recorded: the same on every platform") {
  // std::mt19937_64's sequence is fixed by the standard: its 10000th draw from
  // the default seed is 9981545732273789042 ([rand.predef]).
  std::mt19937_64 standard;
  standard.discard(9999);
  CHECK(standard() == 9981545732273789042ULL);

  task_rng rng(42);
  std::vector<std::int64_t> got;
  for (int k = 0; k < 8; ++k) got.push_back(uniform_int(rng, 1, 100));
  const std::vector<std::int64_t> recorded{7, 25, 51, 63, 82, 29, 37, 45};
  CHECK(got == recorded);
  CHECK(mix64(0) == 0xe220a8397b1dcdafULL);  // SplitMix64's first output from state 0
}
