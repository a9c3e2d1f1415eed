// The tiny model and the padded batches that the GPU model tests compare on
// (test_transformer.cu, test_generate.cu), host code only, so that
// tools/precision_emulation measures reduced precision on the very same
// model, batches and upstream gradients.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "cuda/random_values.hpp"
#include "lmrl/model/config.hpp"
#include "lmrl/rl/policy.hpp"
#include "lmrl/tensor/view.hpp"
#include "support/model_shapes.hpp"

namespace lmrl::testing {

inline constexpr std::int32_t pad_token = 12345;  // out of the vocabulary: reading it would be flagged as an error
inline const float nan_value = std::numeric_limits<float>::quiet_NaN();

// Vocab 40, d 32, 2 layers, 4 heads over 2 kv heads, ffn 48, 64 positions, q/k/v biases.
inline transformer_config tiny_config(bool tied) {
  transformer_config c = transformer_shape(40, 32, 2, 4, 2, 48, 64);
  c.tie_word_embeddings = tied;
  c.attention_bias = true;
  return c;
}

inline std::vector<float> random_vector(std::size_t n, std::uint64_t seed, double lo = -1, double hi = 1) {
  return random_values<float>(static_cast<index_t>(n), seed, lo, hi);
}

struct padding {
  index_t left = 0, right = 0;
};

// A padded batch: row i has pads[i].left pads, then real tokens, then pads[i].right pads.
struct padded_batch {
  index_t B = 0, T = 0;
  std::vector<std::int32_t> tokens;
  std::vector<float> mask;

  padded_batch(index_t seq_len, const std::vector<padding>& pads, index_t vocab, std::uint64_t seed)
      : B(static_cast<index_t>(pads.size())), T(seq_len) {
    std::mt19937_64 rng(seed);
    tokens.resize(static_cast<std::size_t>(B * T));
    mask.resize(tokens.size());
    for (index_t i = 0; i < B; ++i)
      for (index_t t = 0; t < T; ++t) {
        const auto r = static_cast<std::size_t>(i * T + t);
        const bool real = t >= pads[static_cast<std::size_t>(i)].left && t < T - pads[static_cast<std::size_t>(i)].right;
        mask[r] = real ? 1.0f : 0.0f;
        tokens[r] = real ? static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(vocab)) : pad_token;
      }
  }
  token_batch<float> view() const {
    return {matrix_view<const std::int32_t>(tokens.data(), {B, T}), matrix_view<const float>(mask.data(), {B, T})};
  }
  // Position (i, t) has a prediction: t >= 1, tokens t and t-1 real and of one (packed) sequence.
  bool predicted(std::size_t r) const {
    return r % static_cast<std::size_t>(T) != 0 && mask[r] != 0.0f && mask[r - 1] == mask[r];
  }
  std::size_t size() const { return tokens.size(); }
};

// Random values at the predicted positions, NaN elsewhere (never to be read).
inline std::vector<float> random_upstream(const padded_batch& b, std::uint64_t seed) {
  auto v = random_vector(b.size(), seed);
  for (std::size_t r = 0; r < v.size(); ++r)
    if (!b.predicted(r)) v[r] = nan_value;
  return v;
}

// Left, right, both, one real token, none.
inline std::vector<padded_batch> test_batches(index_t vocab) {
  std::vector<padded_batch> batches;
  batches.emplace_back(7, std::vector<padding>{{0, 0}, {2, 0}, {0, 3}}, vocab, 101);
  batches.emplace_back(11, std::vector<padding>{{0, 0}, {3, 0}, {0, 4}, {2, 2}, {10, 0}, {11, 0}}, vocab, 102);
  batches.emplace_back(5, std::vector<padding>{{1, 1}, {0, 0}}, vocab, 103);
  batches.emplace_back(13, std::vector<padding>{{0, 0}, {5, 0}, {0, 6}, {1, 3}, {0, 12}, {4, 4}, {0, 1}, {6, 0}},
                       vocab, 104);
  return batches;
}

// Packed rows (SFT packing): the mask numbers the sequences of a row, 0 pads. A row as pack_sequences lays
// one out (1, 2, 3, then padding), one left-padded with a one-token sequence, and one whose sequence 1
// continues after padding (its positions go on counting).
inline padded_batch packed_test_batch(index_t vocab) {
  padded_batch b(12, std::vector<padding>(3), vocab, 105);
  b.mask = {1, 1, 1, 2, 2, 2, 2, 3, 3, 0, 0, 0,  //
            0, 0, 1, 1, 1, 2, 3, 3, 3, 3, 3, 3,  //
            1, 1, 0, 0, 1, 1, 2, 2, 2, 2, 2, 0};
  for (std::size_t r = 0; r < b.size(); ++r)
    if (b.mask[r] == 0.0f) b.tokens[r] = pad_token;
  return b;
}

}  // namespace lmrl::testing
