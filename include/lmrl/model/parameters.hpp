// All weights of the transformer in one contiguous buffer, with a named view
// per tensor.
//
// One array means the optimizer, a checkpoint, a gradient buffer and a future
// all-reduce each touch a single span. Tensors are stored as PyTorch/Hugging
// Face store them (Linear weights are [out x in], row-major) and named as in a
// Qwen2/Llama checkpoint, in the order a checkpoint lists them:
//
//   model.embed_tokens.weight                      [vocab x d]
//   model.layers.N.input_layernorm.weight          [d]
//   model.layers.N.self_attn.{q,k,v}_proj.weight   [heads*hd x d], [kv*hd x d], [kv*hd x d]
//   model.layers.N.self_attn.{q,k,v}_proj.bias     (when attention_bias)
//   model.layers.N.self_attn.o_proj.weight         [d x heads*hd]
//   model.layers.N.post_attention_layernorm.weight [d]
//   model.layers.N.mlp.{gate,up}_proj.weight       [ffn x d]
//   model.layers.N.mlp.down_proj.weight            [d x ffn]
//   model.norm.weight                              [d]
//   lm_head.weight                                 [vocab x d] (absent when tied)
//   score.weight                                   [1 x d] (the value head; only when value_head)
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "lmrl/error.hpp"
#include "lmrl/model/config.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

// Where one named tensor lives in the buffer.
struct parameter_entry {
  std::string name;
  std::vector<index_t> shape;  // 1 or 2 extents
  index_t offset = 0;          // in elements
  index_t size = 0;
  enum class kind { weight, bias, norm } role = kind::weight;
};

// The list of tensors of a config, in checkpoint order, with their offsets.
class parameter_layout {
 public:
  parameter_layout() = default;
  explicit parameter_layout(const transformer_config& c) {
    c.validate();
    const index_t d = c.hidden_size, hd = c.head_dim(), q = c.num_attention_heads * hd, kv = c.kv_dim();
    using k = parameter_entry::kind;
    add("model.embed_tokens.weight", {c.vocab_size, d}, k::weight);
    for (index_t l = 0; l < c.num_hidden_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      add(p + "input_layernorm.weight", {d}, k::norm);
      add(p + "self_attn.q_proj.weight", {q, d}, k::weight);
      if (c.attention_bias) add(p + "self_attn.q_proj.bias", {q}, k::bias);
      add(p + "self_attn.k_proj.weight", {kv, d}, k::weight);
      if (c.attention_bias) add(p + "self_attn.k_proj.bias", {kv}, k::bias);
      add(p + "self_attn.v_proj.weight", {kv, d}, k::weight);
      if (c.attention_bias) add(p + "self_attn.v_proj.bias", {kv}, k::bias);
      add(p + "self_attn.o_proj.weight", {d, q}, k::weight);
      add(p + "post_attention_layernorm.weight", {d}, k::norm);
      add(p + "mlp.gate_proj.weight", {c.intermediate_size, d}, k::weight);
      add(p + "mlp.up_proj.weight", {c.intermediate_size, d}, k::weight);
      add(p + "mlp.down_proj.weight", {d, c.intermediate_size}, k::weight);
    }
    add("model.norm.weight", {d}, k::norm);
    if (!c.tie_word_embeddings) add("lm_head.weight", {c.vocab_size, d}, k::weight);
    if (c.value_head) add("score.weight", {1, d}, k::weight);
  }

  const std::vector<parameter_entry>& entries() const { return entries_; }
  index_t total_size() const { return total_; }

  // The entry of a name, or nullptr.
  const parameter_entry* find(const std::string& name) const {
    for (const auto& e : entries_)
      if (e.name == name) return &e;
    return nullptr;
  }
  const parameter_entry& at(const std::string& name) const {
    const parameter_entry* e = find(name);
    if (e == nullptr) detail::fail("parameter_layout: no tensor named \"", name, "\"");
    return *e;
  }

 private:
  void add(std::string name, std::vector<index_t> shape, parameter_entry::kind role) {
    index_t size = 1;
    for (auto s : shape) size *= s;
    entries_.push_back({std::move(name), std::move(shape), total_, size, role});
    total_ += size;
  }
  std::vector<parameter_entry> entries_;
  index_t total_ = 0;
};

// Views of one layer's tensors. Empty views where the config has none (biases).
template <class T>
struct layer_weights {
  vector_view<T> input_norm;
  matrix_view<T> wq, wk, wv, wo;
  vector_view<T> bq, bk, bv;
  vector_view<T> post_attention_norm;
  matrix_view<T> w_gate, w_up, w_down;
};

// Views of every tensor of a buffer laid out by parameter_layout. Used for
// the weights and, with the same layout, for their gradients.
template <class T>
struct transformer_weights {
  matrix_view<T> embed;  // [vocab x d]
  std::vector<layer_weights<T>> layers;
  vector_view<T> final_norm;
  matrix_view<T> lm_head;  // == embed when tied
  matrix_view<T> score;    // [1 x d] value head; empty without one

  transformer_weights() = default;
  transformer_weights(const transformer_config& c, const parameter_layout& layout, std::span<T> buffer) {
    detail::require(static_cast<index_t>(buffer.size()) == layout.total_size(), "transformer_weights: buffer has ",
                    buffer.size(), " elements but the layout needs ", layout.total_size());
    auto mat = [&](const std::string& name) {
      const auto& e = layout.at(name);
      return matrix_view<T>(buffer.data() + e.offset, {e.shape[0], e.shape[1]});
    };
    auto vec = [&](const std::string& name) {
      const auto* e = layout.find(name);
      return e ? vector_view<T>(buffer.data() + e->offset, {e->shape[0]}) : vector_view<T>{};
    };
    embed = mat("model.embed_tokens.weight");
    for (index_t l = 0; l < c.num_hidden_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      layers.push_back({vec(p + "input_layernorm.weight"), mat(p + "self_attn.q_proj.weight"),
                        mat(p + "self_attn.k_proj.weight"), mat(p + "self_attn.v_proj.weight"),
                        mat(p + "self_attn.o_proj.weight"), vec(p + "self_attn.q_proj.bias"),
                        vec(p + "self_attn.k_proj.bias"), vec(p + "self_attn.v_proj.bias"),
                        vec(p + "post_attention_layernorm.weight"), mat(p + "mlp.gate_proj.weight"),
                        mat(p + "mlp.up_proj.weight"), mat(p + "mlp.down_proj.weight")});
    }
    final_norm = vec("model.norm.weight");
    lm_head = c.tie_word_embeddings ? embed : mat("lm_head.weight");
    if (c.value_head) score = mat("score.weight");
  }
};

// The owning parameter buffer of one model: config, layout, values, views.
template <class T = float>
class transformer_parameters {
 public:
  transformer_parameters() = default;
  explicit transformer_parameters(const transformer_config& config)
      : config_(config), layout_(config), values_(static_cast<std::size_t>(layout_.total_size()), T(0)) {
    rebuild_views();
  }
  transformer_parameters(const transformer_parameters& other)
      : config_(other.config_), layout_(other.layout_), values_(other.values_) {
    rebuild_views();
  }
  transformer_parameters& operator=(const transformer_parameters& other) {
    if (this != &other) {
      config_ = other.config_;
      layout_ = other.layout_;
      values_ = other.values_;
      rebuild_views();
    }
    return *this;
  }
  transformer_parameters(transformer_parameters&&) noexcept = default;
  transformer_parameters& operator=(transformer_parameters&&) noexcept = default;

  const transformer_config& config() const { return config_; }
  const parameter_layout& layout() const { return layout_; }
  std::span<T> values() { return values_; }
  std::span<const T> values() const { return values_; }
  const transformer_weights<T>& weights() { return weights_; }
  transformer_weights<const T> weights() const {
    return transformer_weights<const T>(config_, layout_, std::span<const T>(values_));
  }
  // One named tensor's elements.
  std::span<T> tensor(const std::string& name) {
    const auto& e = layout_.at(name);
    return std::span<T>(values_.data() + e.offset, static_cast<std::size_t>(e.size));
  }

  // Deterministic initialization as Hugging Face initializes a fresh Qwen2:
  // weights ~ N(0, initializer_range^2), biases 0, norm weights 1. Each value
  // depends only on (seed, its index), so it is the same on every machine and
  // thread count.
  void initialize(std::uint64_t seed, double initializer_range = 0.02) {
    for (const auto& e : layout_.entries()) {
      T* p = values_.data() + e.offset;
      for (index_t k = 0; k < e.size; ++k) {
        switch (e.role) {
          case parameter_entry::kind::norm: p[k] = T(1); break;
          case parameter_entry::kind::bias: p[k] = T(0); break;
          case parameter_entry::kind::weight:
            p[k] = static_cast<T>(initializer_range * standard_normal(seed, static_cast<std::uint64_t>(e.offset + k)));
            break;
        }
      }
    }
  }

  void set_zero() { std::fill(values_.begin(), values_.end(), T(0)); }

 private:
  void rebuild_views() { weights_ = transformer_weights<T>(config_, layout_, std::span<T>(values_)); }

  // A normal draw from a counter-based hash (Box-Muller on two 53-bit uniforms).
  static double standard_normal(std::uint64_t seed, std::uint64_t index) {
    auto mix = [](std::uint64_t z) {
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      return z ^ (z >> 31);
    };
    const std::uint64_t a = mix(seed * 0x9E3779B97F4A7C15ull + 2 * index + 1);
    const std::uint64_t b = mix(a + 0x9E3779B97F4A7C15ull);
    const double u1 = (static_cast<double>(a >> 11) + 0.5) * 0x1.0p-53;  // (0, 1)
    const double u2 = static_cast<double>(b >> 11) * 0x1.0p-53;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

  transformer_config config_{};
  parameter_layout layout_{};
  std::vector<T> values_;
  transformer_weights<T> weights_{};
};

// The same weights with a value head of zeros (head = true) or without one:
// every tensor the two layouts share is copied.
template <class T>
transformer_parameters<T> with_value_head(const transformer_parameters<T>& from, bool head = true) {
  transformer_config c = from.config();
  c.value_head = head;
  transformer_parameters<T> p(c);
  for (const auto& e : p.layout().entries()) {
    if (from.layout().find(e.name) == nullptr) continue;  // the new head stays 0
    const auto& src = from.layout().at(e.name);
    const auto v = from.values().subspan(static_cast<std::size_t>(src.offset), static_cast<std::size_t>(src.size));
    std::copy(v.begin(), v.end(), p.tensor(e.name).begin());
  }
  return p;
}

}  // namespace lmrl
