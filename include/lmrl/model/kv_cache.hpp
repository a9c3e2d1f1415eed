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
//
// Quantized storage (kv_format::q8_0 / q4_0): each cached row (one position of
// one kv head, head_dim values) is stored as head_dim / 32 ggml blocks of
// quant/ggml_blocks.hpp, quantized once when the row is written (store_key /
// store_value) and dequantized when attention reads it (load_keys /
// load_values): 8.5 or 4.5 bits per value instead of 32, the memory that
// long generations of many sequences spend on the cache. head_dim must then
// be a multiple of 32. With kv_format::f32 nothing is rounded and the loads
// are views of the storage.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "lmrl/error.hpp"
#include "lmrl/model/config.hpp"
#include "lmrl/model/kv_format.hpp"
#include "lmrl/quant/ggml_blocks.hpp"
#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

template <Real T = float>
class kv_cache {
 public:
  kv_cache() = default;
  kv_cache(const transformer_config& config, index_t sequences, index_t max_len, kv_format format = kv_format::f32) {
    allocate(config, sequences, max_len, format);
  }

  // (Re)allocates for `sequences` x `max_len` tokens (no-op when the shape is
  // unchanged) and empties every sequence.
  void allocate(const transformer_config& config, index_t sequences, index_t max_len,
                kv_format format = kv_format::f32) {
    config.validate();
    detail::require(sequences >= 0, "kv_cache: sequences = ", sequences, " must be >= 0");
    detail::require(max_len > 0 && max_len <= config.max_position_embeddings, "kv_cache: max_len = ", max_len,
                    " must be in [1, max_position_embeddings = ", config.max_position_embeddings, "]");
    require_kv_head_dim(format, config.head_dim(), "kv_cache");
    layers_ = config.num_hidden_layers;
    kv_heads_ = config.num_key_value_heads;
    head_dim_ = config.head_dim();
    sequences_ = sequences;
    max_len_ = max_len;
    format_ = format;
    const auto rows = static_cast<std::size_t>(2 * layers_ * sequences_ * kv_heads_ * max_len_);
    if (format_ == kv_format::f32) {
      if (values_.size() != rows * static_cast<std::size_t>(head_dim_)) values_.assign(rows * static_cast<std::size_t>(head_dim_), T(0));
      blocks_ = {};
    } else {
      if (blocks_.size() != rows * row_bytes()) blocks_.assign(rows * row_bytes(), 0);
      values_ = {};
    }
    lengths_.assign(static_cast<std::size_t>(sequences), 0);
  }

  kv_format format() const { return format_; }

  index_t sequences() const { return sequences_; }
  index_t max_len() const { return max_len_; }
  index_t layers() const { return layers_; }
  index_t kv_heads() const { return kv_heads_; }
  index_t head_dim() const { return head_dim_; }
  std::size_t bytes() const { return values_.size() * sizeof(T) + blocks_.size(); }

  // Cached tokens of sequence s = the position of its next token.
  index_t length(index_t s) const { return lengths_[static_cast<std::size_t>(check_sequence(s))]; }
  void set_length(index_t s, index_t n) {
    detail::require(n >= 0 && n <= max_len_, "kv_cache::set_length: length ", n, " of sequence ", s,
                    " is outside [0, max_len = ", max_len_, "]");
    lengths_[static_cast<std::size_t>(check_sequence(s))] = n;
  }
  void clear() { std::fill(lengths_.begin(), lengths_.end(), index_t(0)); }

  // Keys / values of (layer, sequence, kv head) of a float cache: [max_len x
  // head_dim], rows [0, length(s)) valid. (A quantized cache: load_keys.)
  matrix_view<T> keys(index_t layer, index_t s, index_t head) { return {block(layer, 0, s, head), {max_len_, head_dim_}}; }
  matrix_view<T> values(index_t layer, index_t s, index_t head) { return {block(layer, 1, s, head), {max_len_, head_dim_}}; }
  matrix_view<const T> keys(index_t layer, index_t s, index_t head) const {
    return {const_cast<kv_cache*>(this)->block(layer, 0, s, head), {max_len_, head_dim_}};
  }
  matrix_view<const T> values(index_t layer, index_t s, index_t head) const {
    return {const_cast<kv_cache*>(this)->block(layer, 1, s, head), {max_len_, head_dim_}};
  }

  // One row (one position of one kv head) of the keys / values of a float cache.
  T* key_row(index_t layer, index_t s, index_t head, index_t position) {
    return block(layer, 0, s, head) + position * head_dim_;
  }
  T* value_row(index_t layer, index_t s, index_t head, index_t position) {
    return block(layer, 1, s, head) + position * head_dim_;
  }

  // Writes head_dim values as the key / value at `position`, quantized when
  // the cache is.
  void store_key(index_t layer, index_t s, index_t head, index_t position, const T* row) {
    store(layer, 0, s, head, position, row);
  }
  void store_value(index_t layer, index_t s, index_t head, index_t position, const T* row) {
    store(layer, 1, s, head, position, row);
  }

  // The first n keys / values of (layer, s, head) as an [n x head_dim] matrix:
  // a view of the storage when the cache is float, else dequantized into
  // `scratch` (resized as needed; one per thread when loads run in parallel).
  matrix_view<const T> load_keys(index_t layer, index_t s, index_t head, index_t n, std::vector<T>& scratch) const {
    return load(layer, 0, s, head, n, scratch);
  }
  matrix_view<const T> load_values(index_t layer, index_t s, index_t head, index_t n, std::vector<T>& scratch) const {
    return load(layer, 1, s, head, n, scratch);
  }

  // Sequence `to` becomes a copy of sequence `from` (its first length(from)
  // positions in every layer and head, and its length): how one prefilled
  // prompt is handed to the G sequences of its group.
  void copy_sequence(index_t from, index_t to) {
    check_sequence(from);
    check_sequence(to);
    if (from == to) return;
    const index_t rows = lengths_[static_cast<std::size_t>(from)];
    for (index_t l = 0; l < layers_; ++l)
      for (int kv = 0; kv < 2; ++kv)
        for (index_t h = 0; h < kv_heads_; ++h) {
          if (format_ == kv_format::f32) {
            const T* src = block(l, kv, from, h);
            std::copy(src, src + rows * head_dim_, block(l, kv, to, h));
          } else {
            const std::uint8_t* src = quantized_row(l, kv, from, h, 0);
            std::copy(src, src + static_cast<std::size_t>(rows) * row_bytes(), quantized_row(l, kv, to, h, 0));
          }
        }
    lengths_[static_cast<std::size_t>(to)] = lengths_[static_cast<std::size_t>(from)];
  }

 private:
  static constexpr index_t block_values = kv_block_values;

  index_t block_size() const { return sequences_ * kv_heads_ * max_len_ * head_dim_; }
  index_t check_sequence(index_t s) const {
    if (s < 0 || s >= sequences_) detail::fail("kv_cache: sequence ", s, " is outside [0, ", sequences_, ")");
    return s;
  }
  T* block(index_t layer, int kv, index_t s, index_t head) {
    detail::require(format_ == kv_format::f32, "kv_cache: this cache holds ", kv_format_name(format_),
                    " blocks; read it with load_keys / load_values, write it with store_key / store_value");
    return values_.data() + (2 * layer + kv) * block_size() + (s * kv_heads_ + head) * max_len_ * head_dim_;
  }

  std::size_t row_bytes() const { return kv_row_bytes(format_, head_dim_, sizeof(T)); }
  std::uint8_t* quantized_row(index_t layer, int kv, index_t s, index_t head, index_t position) {
    const index_t row = (((2 * layer + kv) * sequences_ + s) * kv_heads_ + head) * max_len_ + position;
    return blocks_.data() + static_cast<std::size_t>(row) * row_bytes();
  }
  const std::uint8_t* quantized_row(index_t layer, int kv, index_t s, index_t head, index_t position) const {
    return const_cast<kv_cache*>(this)->quantized_row(layer, kv, s, head, position);
  }

  // Calls f(format) with the block format of a quantized cache.
  template <class F>
  void with_format(F&& f) const {
    if (format_ == kv_format::q8_0) {
      f(q8_0{});
    } else {
      f(q4_0{});
    }
  }

  void store(index_t layer, int kv, index_t s, index_t head, index_t position, const T* row) {
    if (format_ == kv_format::f32) {
      std::copy_n(row, head_dim_, block(layer, kv, s, head) + position * head_dim_);
      return;
    }
    std::uint8_t* out = quantized_row(layer, kv, s, head, position);
    with_format([&](auto q) {
      std::array<float, block_values> x{};
      for (index_t b = 0; b < head_dim_ / block_values; ++b) {
        for (index_t i = 0; i < block_values; ++i) x[static_cast<std::size_t>(i)] = static_cast<float>(row[b * block_values + i]);
        q.quantize_block(x, std::span<std::uint8_t>(out + static_cast<std::size_t>(b) * q.bytes_per_block, q.bytes_per_block));
      }
    });
  }

  matrix_view<const T> load(index_t layer, int kv, index_t s, index_t head, index_t n, std::vector<T>& scratch) const {
    detail::require(n >= 0 && n <= max_len_, "kv_cache: ", n, " rows requested of ", max_len_);
    if (format_ == kv_format::f32)
      return matrix_view<const T>(const_cast<kv_cache*>(this)->block(layer, kv, s, head), {n, head_dim_});
    scratch.resize(static_cast<std::size_t>(n * head_dim_));
    with_format([&](auto q) {
      std::array<float, block_values> x{};
      for (index_t j = 0; j < n; ++j) {
        const std::uint8_t* in = quantized_row(layer, kv, s, head, j);
        for (index_t b = 0; b < head_dim_ / block_values; ++b) {
          q.dequantize_block(std::span<const std::uint8_t>(in + static_cast<std::size_t>(b) * q.bytes_per_block, q.bytes_per_block), x);
          std::copy(x.begin(), x.end(), scratch.begin() + j * head_dim_ + b * block_values);
        }
      }
    });
    return matrix_view<const T>(scratch.data(), {n, head_dim_});
  }

  index_t layers_ = 0, kv_heads_ = 0, head_dim_ = 0, sequences_ = 0, max_len_ = 0;
  kv_format format_ = kv_format::f32;
  std::vector<T> values_;             // float cache
  std::vector<std::uint8_t> blocks_;  // quantized cache: one row of head_dim / 32 blocks per position
  std::vector<index_t> lengths_;
};

}  // namespace lmrl
