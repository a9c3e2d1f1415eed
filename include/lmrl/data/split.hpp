// Train / held-out split decided by a hash of the problem's identity.
//
// A generator draws problems from one stream and keeps those whose key hashes
// into the requested split, so a problem (same key) can never be both a training
// and a test problem, whatever the seeds of the two streams. The key is the
// problem's canonical text (for Countdown: the sorted numbers and the target, so
// a reordering of the same numbers is the same problem).
#pragma once

#include <cstdint>
#include <string_view>

#include "lmrl/data/random.hpp"
#include "lmrl/error.hpp"

namespace lmrl::data {

enum class split { train, test };

struct split_options {
  double test_fraction = 0.1;  // share of all possible problems that are held out
  std::uint64_t salt = 0;      // a different salt gives a different (still disjoint) partition
};

// FNV-1a over the bytes, then a SplitMix64 mix so that nearby texts spread out.
inline std::uint64_t hash_text(std::string_view text, std::uint64_t salt = 0) {
  std::uint64_t h = 0xcbf29ce484222325ULL ^ mix64(salt);
  for (const char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return mix64(h);
}

inline void check_split_options(const char* function, const split_options& options) {
  lmrl::detail::require(options.test_fraction > 0 && options.test_fraction < 1, function,
                  ": split test_fraction = ", options.test_fraction, " must be in (0, 1)");
}

// Which split the problem with this key belongs to.
inline split split_of(std::string_view key, const split_options& options = {}) {
  check_split_options("split_of", options);
  // Compare the top 53 bits as a fraction in [0, 1): exact on IEEE doubles.
  const double u = static_cast<double>(hash_text(key, options.salt) >> 11) * 0x1.0p-53;
  return u < options.test_fraction ? split::test : split::train;
}

inline const char* split_name(split s) { return s == split::train ? "train" : "test"; }

}  // namespace lmrl::data
