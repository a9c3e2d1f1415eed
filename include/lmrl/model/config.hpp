// transformer_config: the shape of the bundled Llama/Qwen2-style transformer.
//
// Field names follow Hugging Face's Qwen2Config / LlamaConfig (config.json),
// so a real checkpoint's config maps one to one.
#pragma once

#include <string>

#include "lmrl/error.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

struct transformer_config {
  index_t vocab_size = 512;
  index_t hidden_size = 256;           // d_model
  index_t num_hidden_layers = 4;
  index_t num_attention_heads = 4;
  index_t num_key_value_heads = 2;     // grouped-query attention: heads share K/V in groups
  index_t intermediate_size = 688;     // SwiGLU hidden width
  index_t max_position_embeddings = 256;
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = true;     // lm_head shares embed_tokens
  bool attention_bias = true;          // q/k/v projections have biases (Qwen2: yes, Llama: no)
  // A scalar head score.weight [1 x d] on the final hidden states: the value
  // model (critic) of PPO, as TRL builds it (Hugging Face's
  // *ForSequenceClassification with num_labels 1, read at every token).
  bool value_head = false;

  index_t head_dim() const { return hidden_size / num_attention_heads; }
  index_t kv_dim() const { return num_key_value_heads * head_dim(); }
  index_t heads_per_kv() const { return num_attention_heads / num_key_value_heads; }

  void validate() const {
    const char* f = "transformer_config";
    auto positive = [&](const char* name, index_t v) {
      detail::require(v > 0, f, ": ", name, " = ", v, " must be positive");
    };
    positive("vocab_size", vocab_size);
    positive("hidden_size", hidden_size);
    positive("num_hidden_layers", num_hidden_layers);
    positive("num_attention_heads", num_attention_heads);
    positive("num_key_value_heads", num_key_value_heads);
    positive("intermediate_size", intermediate_size);
    positive("max_position_embeddings", max_position_embeddings);
    detail::require(hidden_size % num_attention_heads == 0, f, ": hidden_size = ", hidden_size,
                    " is not a multiple of num_attention_heads = ", num_attention_heads);
    detail::require(head_dim() % 2 == 0, f, ": head_dim = ", head_dim(), " must be even for rotary embeddings");
    detail::require(num_attention_heads % num_key_value_heads == 0, f, ": num_attention_heads = ",
                    num_attention_heads, " is not a multiple of num_key_value_heads = ", num_key_value_heads);
    detail::require(rope_theta > 0, f, ": rope_theta = ", rope_theta, " must be positive");
    detail::require(rms_norm_eps > 0, f, ": rms_norm_eps = ", rms_norm_eps, " must be positive");
  }

  // The tiny model the examples train in minutes on two cores (also the
  // "tiny" benchmark shape). vocab 512 covers the byte tokenizer's 262 ids.
  static transformer_config tiny() { return {}; }

  // The "small" benchmark shape.
  static transformer_config small() {
    transformer_config c;
    c.vocab_size = 8192;
    c.hidden_size = 512;
    c.num_hidden_layers = 8;
    c.num_attention_heads = 8;
    c.num_key_value_heads = 4;
    c.intermediate_size = 1376;
    c.max_position_embeddings = 512;
    return c;
  }

  // The shapes of Qwen2.5-0.5B (its config.json).
  static transformer_config qwen2_5_0_5b() {
    transformer_config c;
    c.vocab_size = 151936;
    c.hidden_size = 896;
    c.num_hidden_layers = 24;
    c.num_attention_heads = 14;
    c.num_key_value_heads = 2;
    c.intermediate_size = 4864;
    c.max_position_embeddings = 32768;
    c.rope_theta = 1000000.0;
    c.rms_norm_eps = 1e-6;
    c.tie_word_embeddings = true;
    c.attention_bias = true;
    return c;
  }

  // A preset by name: "tiny", "small", "qwen2.5-0.5b".
  static transformer_config preset(const std::string& name) {
    if (name == "tiny") return tiny();
    if (name == "small") return small();
    if (name == "qwen2.5-0.5b") return qwen2_5_0_5b();
    detail::fail("transformer_config::preset: unknown preset \"", name, "\" (known: tiny, small, qwen2.5-0.5b)");
  }
};

}  // namespace lmrl
