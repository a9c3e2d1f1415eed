// Small transformer shapes for the tests: one line each instead of a block of
// field assignments.
#pragma once

#include "lmrl/model/config.hpp"

namespace lmrl::testing {

inline transformer_config transformer_shape(index_t vocab, index_t hidden, index_t layers, index_t heads,
                                            index_t kv_heads, index_t ffn, index_t max_positions = 32) {
  transformer_config c;
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv_heads;
  c.intermediate_size = ffn;
  c.max_position_embeddings = max_positions;
  return c;
}

}  // namespace lmrl::testing
