// The held-out split: a pure function of the key, close to the requested
// fraction, and changed (but still a partition) by the salt.
#include "lmrl/data/split.hpp"

#include <string>

#include "support/testing.hpp"

using namespace lmrl::data;

TEST_CASE("hash_text is FNV-1a followed by the SplitMix64 mix") {
  // Empty text: FNV-1a's offset basis 0xcbf29ce484222325 xor mix64(0); then mixed.
  CHECK(hash_text("") == mix64(0xcbf29ce484222325ULL ^ mix64(0)));
  // One byte 'a' (0x61): (basis ^ 0x61) * FNV prime, then mixed.
  const std::uint64_t basis = 0xcbf29ce484222325ULL ^ mix64(0);
  CHECK(hash_text("a") == mix64((basis ^ 0x61) * 0x100000001b3ULL));
  CHECK(hash_text("ab") != hash_text("ba"));
  CHECK(hash_text("ab", 1) != hash_text("ab", 2));
}

TEST_CASE("split_of is deterministic and holds out close to test_fraction") {
  int test = 0, unstable = 0;
  const int n = 20000;
  for (int k = 0; k < n; ++k) {
    const std::string key = "problem " + std::to_string(k);
    const split s = split_of(key);
    unstable += s != split_of(key);
    test += s == split::test;
  }
  CHECK(unstable == 0);
  CHECK(std::abs(test - n / 10) < 200);  // 0.1 * 20000 = 2000, sd = sqrt(20000 * 0.1 * 0.9) = 42
  split_options quarter{0.25, 7};
  int q = 0;
  for (int k = 0; k < n; ++k) q += split_of("problem " + std::to_string(k), quarter) == split::test;
  CHECK(std::abs(q - n / 4) < 300);  // sd = sqrt(20000 * 0.25 * 0.75) = 61
  CHECK(std::string(split_name(split::train)) == "train");
  CHECK(std::string(split_name(split::test)) == "test");
}

TEST_CASE("a different salt gives a different partition") {
  int moved = 0;
  for (int k = 0; k < 2000; ++k) {
    std::string key = std::to_string(k);
    key.insert(key.begin(), 'p');  // not "p" + ...: GCC 12 misreports that under -Wrestrict (bug 105329)
    moved += split_of(key, {0.5, 1}) != split_of(key, {0.5, 2});
  }
  CHECK(moved > 800);  // independent halves disagree on about half the keys
  CHECK(moved < 1200);
}

TEST_CASE("test_fraction must be in (0, 1)") {
  CHECK_THROWS_WITH_AS(split_of("x", {0.0, 0}), doctest::Contains("test_fraction = 0 must be in (0, 1)"),
                       lmrl::error);
  CHECK_THROWS_WITH_AS(split_of("x", {1.0, 0}), doctest::Contains("split_of: split test_fraction = 1"), lmrl::error);
}
