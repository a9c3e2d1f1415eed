// kv_cache<T>: the keys and values of every layer for a batch of sequences
// being decoded, allocated once for (batch, max_len).
//
// Layout: one buffer, per layer a K block then a V block, each
//
//   [sequences x num_key_value_heads x max_len x head_dim]   (row-major)
//
// so the cached keys of one (layer, sequence, kv head) are one contiguous
// [max_len x head_dim] matrix that attention reads row after row.
//
// Positions. A sequence's cache holds its REAL tokens only, in order: slot j
// holds the token with j real tokens before it, which is exactly the position
// id the transformer gives it (position = cumsum(attention_mask) - 1, so left
// padding changes nothing). Padding therefore never enters the cache, prompts
// of different lengths need no mask, and length(s) is both the number of
// cached tokens and the position of the next token of sequence s. Keys are
// stored after RoPE, as Hugging Face's DynamicCache stores them.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include "lmrl/error.hpp"
#include "lmrl/model/config.hpp"
#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

template <Real T = float>
class kv_cache {
 public:
  kv_cache() = default;
  kv_cache(const transformer_config& config, index_t sequences, index_t max_len) { allocate(config, sequences, max_len); }

  // (Re)allocates for `sequences` x `max_len` tokens (no-op when the shape is
  // unchanged) and empties every sequence.
  void allocate(const transformer_config& config, index_t sequences, index_t max_len) {
    config.validate();
    detail::require(sequences >= 0, "kv_cache: sequences = ", sequences, " must be >= 0");
    detail::require(max_len > 0 && max_len <= config.max_position_embeddings, "kv_cache: max_len = ", max_len,
                    " must be in [1, max_position_embeddings = ", config.max_position_embeddings, "]");
    layers_ = config.num_hidden_layers;
    kv_heads_ = config.num_key_value_heads;
    head_dim_ = config.head_dim();
    sequences_ = sequences;
    max_len_ = max_len;
    const auto total = static_cast<std::size_t>(2 * layers_ * block_size());
    if (values_.size() != total) values_.assign(total, T(0));
    lengths_.assign(static_cast<std::size_t>(sequences), 0);
  }

  index_t sequences() const { return sequences_; }
  index_t max_len() const { return max_len_; }
  index_t layers() const { return layers_; }
  index_t kv_heads() const { return kv_heads_; }
  index_t head_dim() const { return head_dim_; }
  std::size_t bytes() const { return values_.size() * sizeof(T); }

  // Cached tokens of sequence s = the position of its next token.
  index_t length(index_t s) const { return lengths_[static_cast<std::size_t>(check_sequence(s))]; }
  void set_length(index_t s, index_t n) {
    detail::require(n >= 0 && n <= max_len_, "kv_cache::set_length: length ", n, " of sequence ", s,
                    " is outside [0, max_len = ", max_len_, "]");
    lengths_[static_cast<std::size_t>(check_sequence(s))] = n;
  }
  void clear() { std::fill(lengths_.begin(), lengths_.end(), index_t(0)); }

  // Keys / values of (layer, sequence, kv head): [max_len x head_dim], rows
  // [0, length(s)) valid.
  matrix_view<T> keys(index_t layer, index_t s, index_t head) { return {block(layer, 0, s, head), {max_len_, head_dim_}}; }
  matrix_view<T> values(index_t layer, index_t s, index_t head) { return {block(layer, 1, s, head), {max_len_, head_dim_}}; }
  matrix_view<const T> keys(index_t layer, index_t s, index_t head) const {
    return {const_cast<kv_cache*>(this)->block(layer, 0, s, head), {max_len_, head_dim_}};
  }
  matrix_view<const T> values(index_t layer, index_t s, index_t head) const {
    return {const_cast<kv_cache*>(this)->block(layer, 1, s, head), {max_len_, head_dim_}};
  }

  // One row (one position of one kv head) of the keys / values.
  T* key_row(index_t layer, index_t s, index_t head, index_t position) {
    return block(layer, 0, s, head) + position * head_dim_;
  }
  T* value_row(index_t layer, index_t s, index_t head, index_t position) {
    return block(layer, 1, s, head) + position * head_dim_;
  }

  // Sequence `to` becomes a copy of sequence `from` (its first length(from)
  // positions in every layer and head, and its length): how one prefilled
  // prompt is handed to the G sequences of its group.
  void copy_sequence(index_t from, index_t to) {
    check_sequence(from);
    check_sequence(to);
    if (from == to) return;
    const index_t n = lengths_[static_cast<std::size_t>(from)] * head_dim_;
    for (index_t l = 0; l < layers_; ++l)
      for (int kv = 0; kv < 2; ++kv)
        for (index_t h = 0; h < kv_heads_; ++h) {
          const T* src = block(l, kv, from, h);
          std::copy(src, src + n, block(l, kv, to, h));
        }
    lengths_[static_cast<std::size_t>(to)] = lengths_[static_cast<std::size_t>(from)];
  }

 private:
  index_t block_size() const { return sequences_ * kv_heads_ * max_len_ * head_dim_; }
  index_t check_sequence(index_t s) const {
    if (s < 0 || s >= sequences_) detail::fail("kv_cache: sequence ", s, " is outside [0, ", sequences_, ")");
    return s;
  }
  T* block(index_t layer, int kv, index_t s, index_t head) {
    return values_.data() + (2 * layer + kv) * block_size() + (s * kv_heads_ + head) * max_len_ * head_dim_;
  }

  index_t layers_ = 0, kv_heads_ = 0, head_dim_ = 0, sequences_ = 0, max_len_ = 0;
  std::vector<T> values_;
  std::vector<index_t> lengths_;
};

}  // namespace lmrl
