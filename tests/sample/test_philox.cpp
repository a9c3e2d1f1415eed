// Philox4x32-10 against the Random123 known-answer vectors, and the
// counter_rng addressing: pure, order-free, uniform.
#include <cmath>
#include <cstdint>
#include <set>
#include <vector>

#include "lmrl/sample/philox.hpp"
#include "support/testing.hpp"

using namespace lmrl;

namespace {
constexpr philox4x32_block block(std::uint32_t a, std::uint32_t b, std::uint32_t c, std::uint32_t d) {
  philox4x32_block x;
  x.v[0] = a;
  x.v[1] = b;
  x.v[2] = c;
  x.v[3] = d;
  return x;
}
constexpr philox4x32_key key(std::uint32_t a, std::uint32_t b) {
  philox4x32_key k;
  k.v[0] = a;
  k.v[1] = b;
  return k;
}
}  // namespace

// Random123 kat_vectors, "philox4x32 10": checked at compile time, so the
// generator is usable in constant expressions (and so in device code).
static_assert(philox4x32_10(block(0, 0, 0, 0), key(0, 0)) ==
              block(0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8));
static_assert(philox4x32_10(block(0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff), key(0xffffffff, 0xffffffff)) ==
              block(0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd));
static_assert(philox4x32_10(block(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), key(0xa4093822, 0x299f31d0)) ==
              block(0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1));

TEST_CASE("philox4x32_10 matches the Random123 known-answer vectors at run time too") {
  volatile std::uint32_t zero = 0;  // keep the compiler from folding the call
  CHECK(philox4x32_10(block(zero, 0, 0, 0), key(zero, 0)) == block(0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8));
  CHECK(philox4x32_10(block(0x243f6a88 + zero, 0x85a308d3, 0x13198a2e, 0x03707344), key(0xa4093822, 0x299f31d0)) ==
        block(0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1));
  // A single round by hand: counter {1, 0, 0, 0}, key {0, 0}: M0 * 1 = 0xD2511F53 (hi 0, lo 0xD2511F53),
  // M1 * 0 = 0, so the round gives {0 ^ 0 ^ 0, 0, 0 ^ 0 ^ 0, 0xD2511F53}.
  CHECK(philox4x32<1>(block(1, 0, 0, 0), key(0, 0)) == block(0, 0, 0, 0xD2511F53));
  // Counter {0, 0, 2, 0}, key {5, 7}: M1 * 2 = 0xCD9E8D57 << 1 = 0x19B3D1AAE (hi 1, lo 0x9B3D1AAE):
  // {1 ^ 0 ^ 5, 0x9B3D1AAE, 0 ^ 0 ^ 7, 0}.
  CHECK(philox4x32<1>(block(0, 0, 2, 0), key(5, 7)) == block(4, 0x9B3D1AAE, 7, 0));
  // Ten rounds differ from seven (the rounds template argument is honoured).
  CHECK(!(philox4x32<7>(block(0, 0, 0, 0), key(0, 0)) == philox4x32_10(block(0, 0, 0, 0), key(0, 0))));
}

TEST_CASE("bits to uniform numbers: endpoints and shared leading bits") {
  CHECK(uniform_float_from_bits(0) == 0.0f);
  CHECK(uniform_float_from_bits(0xffffffffu) == 1.0f - 0x1p-24f);  // (2^24 - 1) / 2^24 < 1
  CHECK(uniform_float_from_bits(0x80000000u) == 0.5f);
  CHECK(uniform_double_from_bits(0, 0) == 0.0);
  CHECK(uniform_double_from_bits(0xffffffffu, 0xffffffffu) == 1.0 - 0x1p-53);
  CHECK(uniform_double_from_bits(0x80000000u, 0) == 0.5);
  CHECK(uniform_double_from_bits(0, 0x800u) == 0x1p-53);  // the lowest bit kept of the low word is bit 11
  CHECK(uniform_double_from_bits(0, 0x7ffu) == 0.0);
}

TEST_CASE("counter_rng: the key is the seed and the counter is {draw, position, sequence}") {
  const std::uint64_t seed = 0x0123456789abcdefull;
  const counter_rng rng(seed);
  CHECK(rng.seed() == seed);
  const std::uint64_t sequence = 0x0000000500000007ull;
  CHECK(rng.block(sequence, 11, 3) == philox4x32_10(block(3, 11, 7, 5), key(0x89abcdef, 0x01234567)));
  const auto b = rng.block(sequence, 11, 3);
  CHECK(rng.uniform_double(sequence, 11, 3) == uniform_double_from_bits(b.v[0], b.v[1]));
  CHECK(rng.uniform_float(sequence, 11, 3) == uniform_float_from_bits(b.v[0]));
  CHECK(rng.uniform<float>(sequence, 11, 3) == rng.uniform_float(sequence, 11, 3));
  CHECK(rng.uniform<double>(sequence, 11, 3) == rng.uniform_double(sequence, 11, 3));
  // The float draw is the double draw cut to 24 bits.
  for (std::uint32_t p = 0; p < 100; ++p) {
    const double d = rng.uniform_double(4, p);
    CHECK(static_cast<double>(rng.uniform_float(4, p)) == std::floor(d * 0x1p24) * 0x1p-24);
  }
}

TEST_CASE("counter_rng: draws depend only on their address, and addresses do not collide") {
  const counter_rng a(42), b(42), c(43);
  // Visiting the addresses in a different order (as another thread count would) gives the same numbers.
  std::vector<double> forward, backward(64);
  for (std::uint32_t p = 0; p < 64; ++p) forward.push_back(a.uniform_double(9, p));
  for (std::uint32_t p = 64; p-- > 0;) backward[p] = b.uniform_double(9, p);
  CHECK(forward == backward);
  // Changing any coordinate changes the draw.
  std::set<double> seen;
  for (std::uint64_t s = 0; s < 8; ++s)
    for (std::uint32_t p = 0; p < 8; ++p)
      for (std::uint32_t d = 0; d < 4; ++d) seen.insert(a.uniform_double(s, p, d));
  CHECK(seen.size() == 8 * 8 * 4);
  CHECK(a.uniform_double(0, 0) != c.uniform_double(0, 0));
  CHECK(a.uniform_double(std::uint64_t{1} << 32, 0) != a.uniform_double(0, 0));  // the sequence's high word counts
}

TEST_CASE("counter_rng: uniform from 0 to 1 — mean, variance and decile counts of 200k draws") {
  const counter_rng rng(2024);
  const int n = 200000;
  double sum = 0, sum_sq = 0;
  int bins[10] = {};
  for (int i = 0; i < n; ++i) {
    const double u = rng.uniform_double(static_cast<std::uint64_t>(i / 1000), static_cast<std::uint32_t>(i % 1000));
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
    sum += u;
    sum_sq += u * u;
    ++bins[static_cast<int>(u * 10)];
  }
  // Mean 1/2 with standard error sqrt(1/12 / n) = 6.5e-4: 8 standard errors is 5.2e-3.
  CHECK(std::abs(sum / n - 0.5) < 5.2e-3);
  CHECK(std::abs(sum_sq / n - sum / n * (sum / n) - 1.0 / 12) < 2e-3);
  // Chi-square over 10 equal bins (9 degrees of freedom): P(chi2 > 60) < 1e-9.
  double chi2 = 0;
  for (int k : bins) chi2 += (k - n / 10.0) * (k - n / 10.0) / (n / 10.0);
  CHECK(chi2 < 60.0);
}
