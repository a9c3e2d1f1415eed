// Batched generation with a KV cache for the bundled transformer.
//
//   generation_result<T> r = generate(model, prompts, options, counter_rng(seed));
//
// 1. Prefill: every DISTINCT prompt is run through the model once (all their
//    tokens in one pass; identical prompts, e.g. a GRPO group, share it), its
//    keys/values land in the cache slot of its first sequence and are copied
//    into the slots of the others (kv_cache::copy_sequence).
// 2. Decode: one token per step for every live sequence, all live sequences
//    in one pass (the matrix products run over [live x d] rows).
// 3. Sampling: sequence b's draw for its t-th completion token is
//    counter_rng::uniform_double(first_sequence + b, t): the tokens depend only
//    on (seed, sequence index, position), never on the batch composition or
//    the thread count. The sampler (sample/samplers.hpp) returns the chosen
//    token's log-prob under softmax(logits / temperature) over the whole
//    vocabulary (TRL's old_per_token_logps) and under the warped sampling
//    distribution (after top-k / top-p / min-p: the behaviour policy).
// 4. Stopping, per sequence: an eos id, a stop token sequence or a stop string
//    (matched on the text of the completion through the caller's detokenizer)
//    ends the completion and is part of it (mask 1, as TRL's completion mask
//    keeps the first EOS); otherwise max_new_tokens ends it (truncated).
//
// The lower-level cached_decoder exposes prefill/decode steps returning
// logits, for tests and for callers that drive decoding themselves.
//
// Every row of a pass runs the same per-row computation as the transformer's
// full forward (RMSNorm, RoPE with HF's rotate_half at position = number of
// real tokens before, GQA attention over the cached positions [0, position],
// SwiGLU), so cached decoding reproduces the full forward's logits (to
// rounding: the products sum in another order). Within the decoder every row
// is computed alone (packed products, attention query by query), so a
// sequence gets the same bits in any batch, and a prompt prefilled in one
// pass the same bits as fed token by token.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "lmrl/error.hpp"
#include "lmrl/model/config.hpp"
#include "lmrl/model/generation.hpp"
#include "lmrl/model/kv_cache.hpp"
#include "lmrl/model/ops/attention.hpp"
#include "lmrl/model/ops/embedding.hpp"
#include "lmrl/model/ops/matmul.hpp"
#include "lmrl/model/ops/packed_matmul.hpp"
#include "lmrl/model/ops/rms_norm.hpp"
#include "lmrl/model/ops/rope.hpp"
#include "lmrl/model/ops/swiglu.hpp"
#include "lmrl/model/parameters.hpp"
#include "lmrl/quant/integer_linear.hpp"
#include "lmrl/sample/philox.hpp"
#include "lmrl/sample/sampler_config.hpp"
#include "lmrl/sample/samplers.hpp"
#include "lmrl/tensor/checks.hpp"
#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/dense.hpp"
#include "lmrl/tensor/view.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace lmrl {

// Runs tokens through the model against a kv_cache, with the transformer's
// ops (ops/embedding, rms_norm, matmul, rope, attention, swiglu).
//
// The decoder keeps its own copy of the weight matrices, packed for few-row
// products (ops/packed_matmul.hpp) and fused ([q|k|v] and [gate|up] as one
// matrix each): one product where there were three, and no packing per call.
// The copy is taken by sync_weights(), which generate() calls (so a decoder
// reused across training steps sees the current parameters), and by the first
// pass after construction or a change of weight format or rounding: building
// a decoder and generating packs (or quantizes) the weights once, not twice.
//
// Holds a pointer to the parameters (they must outlive it) and a workspace
// that grows to the largest pass and is then reused (no allocation per step
// once warmed up).
template <Real T>
class cached_decoder {
 public:
  explicit cached_decoder(const transformer_parameters<T>& parameters)
      : params_(&parameters),
        config_(parameters.config()),
        rope_(config_.head_dim(), config_.max_position_embeddings, config_.rope_theta) {}

  const transformer_config& config() const { return config_; }
  kv_cache<T>& cache() { return cache_; }
  const kv_cache<T>& cache() const { return cache_; }

  // Empties the cache and sizes it for `sequences` x `max_len` tokens.
  void reset(index_t sequences, index_t max_len) {
    cache_.allocate(config_, sequences, max_len, kv_format_);
    pending_.assign(static_cast<std::size_t>(sequences), 0);
  }

  // How the cache stores keys and values from the next reset() on: float, or
  // quantized to q8_0 / q4_0 blocks per row (model/kv_cache.hpp).
  void set_kv_format(kv_format format) { kv_format_ = format; }
  kv_format get_kv_format() const { return kv_format_; }

  // A function that rounds a weight matrix in place, given in the parameters'
  // [out x in] layout (so blocks run along the input dimension, as ggml's do).
  // Set, every projection and lm_head the decoder multiplies by is rounded
  // through it: generation from quantized weights (quant/quantized_matrix.hpp's
  // round_through), while the parameters, and training, stay in full
  // precision. The embedding table (a lookup) and the norms are left as they are.
  using weight_rounding = std::function<void(matrix_view<T>)>;
  void set_weight_rounding(weight_rounding rounding) {
    detail::require(!rounding || !format_,
                    "cached_decoder::set_weight_rounding: integer weights are set (set_weight_format); use one or the other");
    rounding_ = std::move(rounding);
    stale_ = true;
  }

  // Generate from integer-quantized weights (quant/integer_linear.hpp): every
  // projection and lm_head is held in `format` (q8_0, q4_0, int8 rows, q4_k, tq2_0) and
  // multiplied by int_gemm.hpp's integer kernels, the activations quantized
  // to Q8_0 before each product, as llama.cpp runs a model on a CPU. The
  // decoder keeps no float copy of those matrices then; the parameters, and
  // training, stay in full precision. std::nullopt: float32 again. float only.
  void set_weight_format(std::optional<integer_format> format) {
    detail::require(!format || std::is_same_v<T, float>,
                    "cached_decoder::set_weight_format: integer weights need a float decoder");
    detail::require(!format || !rounding_,
                    "cached_decoder::set_weight_format: a weight rounding is set; use one or the other");
    format_ = format;
    stale_ = true;
  }
  std::optional<integer_format> weight_format() const { return format_; }

  // Bytes of the weights the decoder multiplies by (its copy of the projections and lm_head).
  std::size_t weight_bytes() {
    if (stale_) sync_weights();
    std::size_t n = lm_head_.bytes() + lm_head_q_.bytes();
    for (const auto& l : layers_)
      n += l.qkv.bytes() + l.o.bytes() + l.gate_up.bytes() + l.down.bytes() + l.qkv_q.bytes() + l.o_q.bytes() +
           l.gate_up_q.bytes() + l.down_q.bytes();
    return n;
  }

  // Re-reads the parameters into the decoder's packed, fused copy (or its
  // integer-quantized one).
  void sync_weights() {
    weights_ = params_->weights();
    stale_ = false;
    if (format_) {
      if constexpr (std::is_same_v<T, float>) sync_integer_weights();
      return;
    }
    const transformer_weights<const T>& w = weights_;
    // The [out x in] matrices `parts`, through rounding_ when one is set, packed one after another along out.
    const auto pack = [this](ops::packed_matrix<T>& dst, std::initializer_list<matrix_view<const T>> parts) {
      if (!rounding_) return dst.assign(parts);
      std::vector<std::vector<T>> copies;
      std::vector<matrix_view<const T>> rounded;
      copies.reserve(parts.size());
      for (const auto& m : parts) {
        auto& copy = copies.emplace_back(static_cast<std::size_t>(m.shape[0] * m.shape[1]));
        const matrix_view<T> c(copy.data(), {m.shape[0], m.shape[1]});
        for (index_t o = 0; o < m.shape[0]; ++o)
          for (index_t i = 0; i < m.shape[1]; ++i) c(o, i) = m(o, i);
        rounding_(c);
        rounded.push_back(c);
      }
      dst.assign(std::span<const matrix_view<const T>>(rounded));
    };
    layers_.resize(static_cast<std::size_t>(config_.num_hidden_layers));
    for (index_t l = 0; l < config_.num_hidden_layers; ++l) {
      const auto& src = w.layers[static_cast<std::size_t>(l)];
      auto& dst = layers_[static_cast<std::size_t>(l)];
      dst.qkv_q = {}, dst.o_q = {}, dst.gate_up_q = {}, dst.down_q = {};  // an earlier integer format's copy
      pack(dst.qkv, {src.wq, src.wk, src.wv});
      fuse_qkv_bias(src, dst.qkv_bias);
      pack(dst.o, {src.wo});
      pack(dst.gate_up, {src.w_gate, src.w_up});
      pack(dst.down, {src.w_down});
    }
    pack(lm_head_, {w.lm_head});
    lm_head_q_ = {};
  }

  // Appends `rows` to the cache and returns the logits [n x vocab] of the rows
  // with want_logits, in row order. Rows of one sequence are consecutive
  // positions in row order (a prompt's tokens, or one token per decode step);
  // a run of consecutive rows of one sequence attends as one block.
  matrix_view<const T> forward(std::span<const cached_token> rows) {
    const char* f = "cached_decoder::forward";
    const index_t n = static_cast<index_t>(rows.size());
    const index_t d = config_.hidden_size, hd = config_.head_dim(), nh = config_.num_attention_heads;
    const index_t nkv = config_.num_key_value_heads, qd = nh * hd, kvd = nkv * hd, ffn = config_.intermediate_size;
    const index_t vocab = config_.vocab_size, qkv = qd + 2 * kvd;
    const double eps = config_.rms_norm_eps;
    if (stale_) sync_weights();
    reserve(n);
    // Check every row before touching the cache; positions count on from each sequence's length.
    index_t n_logits = 0;
    for (index_t r = 0; r < n; ++r) {
      const auto& row = rows[static_cast<std::size_t>(r)];
      if (row.sequence < 0 || row.sequence >= cache_.sequences())
        detail::fail(f, ": row ", r, " names sequence ", row.sequence, " but the cache holds ", cache_.sequences());
      if (row.token < 0 || row.token >= vocab)
        detail::fail(f, ": row ", r, " (sequence ", row.sequence, ") has token id ", row.token,
                     " outside the vocabulary [0, ", vocab, ")");
      index_t& pending = pending_[static_cast<std::size_t>(row.sequence)];
      const index_t p = cache_.length(row.sequence) + pending++;
      if (p >= cache_.max_len()) {
        std::fill(pending_.begin(), pending_.end(), index_t(0));
        detail::fail(f, ": sequence ", row.sequence, " is full (max_len = ", cache_.max_len(), ")");
      }
      position_[static_cast<std::size_t>(r)] = p;
      ids_[static_cast<std::size_t>(r)] = row.token;
      if (row.want_logits) logit_rows_[static_cast<std::size_t>(n_logits++)] = r;
    }
    for (index_t r = 0; r < n; ++r) {
      const index_t s = rows[static_cast<std::size_t>(r)].sequence;
      cache_.set_length(s, std::max(cache_.length(s), position_[static_cast<std::size_t>(r)] + 1));
      pending_[static_cast<std::size_t>(s)] = 0;
    }
    // Runs of consecutive rows of one sequence: one attention block each.
    runs_.clear();
    for (index_t r = 0; r < n; ++r)
      if (r == 0 || rows[static_cast<std::size_t>(r)].sequence != rows[static_cast<std::size_t>(r - 1)].sequence)
        runs_.push_back(r);
    runs_.push_back(n);

    const matrix_view<T> x(x_.data(), {n, d}), h(h_.data(), {n, d});
    const matrix_view<T> qkv_rows(qkv_.data(), {n, qkv});
    const matrix_view<T> q(qkv_.data(), {n, qd}, {qkv, 1}), k(qkv_.data() + qd, {n, kvd}, {qkv, 1});
    const matrix_view<T> v(qkv_.data() + qd + kvd, {n, kvd}, {qkv, 1});
    const matrix_view<T> att(att_.data(), {n, qd});
    const matrix_view<T> gate(gate_up_.data(), {n, ffn}, {2 * ffn, 1}), up(gate_up_.data() + ffn, {n, ffn}, {2 * ffn, 1});
    const matrix_view<T> act(act_.data(), {n, ffn});
    const std::span<const index_t> positions(position_.data(), static_cast<std::size_t>(n));
    ops::embedding_forward<T>(weights_.embed, std::span<const std::int32_t>(ids_.data(), static_cast<std::size_t>(n)),
                              {}, x);
    for (index_t l = 0; l < config_.num_hidden_layers; ++l) {
      const auto& w = weights_.layers[static_cast<std::size_t>(l)];
      const auto& c = layers_[static_cast<std::size_t>(l)];
      ops::rms_norm_forward<T>(x, w.input_norm, eps, h, {});
      project(h, c.qkv, c.qkv_q, qkv_rows, false);
      if (!c.qkv_bias.empty()) ops::add_bias<T>(qkv_rows, vector_view<const T>(c.qkv_bias.data(), {qkv}));
      ops::rope_forward<T>(rope_, q, positions, nh);
      ops::rope_forward<T>(rope_, k, positions, nkv);
      for (index_t r = 0; r < n; ++r) {  // keys (after RoPE) and values into the cache
        const index_t s = rows[static_cast<std::size_t>(r)].sequence, p = position_[static_cast<std::size_t>(r)];
        for (index_t g = 0; g < nkv; ++g) {
          cache_.store_key(l, s, g, p, &k(r, g * hd));
          cache_.store_value(l, s, g, p, &v(r, g * hd));
        }
      }
      attend(l, rows, q, att);
      project(att, c.o, c.o_q, x, true);  // residual
      ops::rms_norm_forward<T>(x, w.post_attention_norm, eps, h, {});
      project(h, c.gate_up, c.gate_up_q, matrix_view<T>(gate_up_.data(), {n, 2 * ffn}), false);
      ops::swiglu_forward<T>(gate, up, act);
      project(act, c.down, c.down_q, x, true);  // residual
    }
    // Final norm and lm_head on the rows that want logits only.
    const matrix_view<T> picked(h_.data(), {n_logits, d});
    for (index_t j = 0; j < n_logits; ++j) std::copy_n(x.row_data(logit_rows_[static_cast<std::size_t>(j)]), d, att_.data() + j * d);
    ops::rms_norm_forward<T>(matrix_view<const T>(att_.data(), {n_logits, d}), weights_.final_norm, eps, picked, {});
    const matrix_view<T> logits(logits_.data(), {n_logits, vocab});
    project(picked, lm_head_, lm_head_q_, logits, false);
    return logits;
  }

 private:
  struct layer_copy {
    ops::packed_matrix<T> qkv, o, gate_up, down;  // float weights
    std::vector<T> qkv_bias;
    integer_linear qkv_q, o_q, gate_up_q, down_q;  // [out x in] (integer weights)
  };

  // The q, k and v biases one after another (empty without biases), as the fused qkv product's columns.
  void fuse_qkv_bias(const layer_weights<const T>& src, std::vector<T>& bias) const {
    bias.clear();
    if (src.bq.data == nullptr) return;
    const index_t qd = config_.num_attention_heads * config_.head_dim(), kvd = config_.kv_dim();
    bias.resize(static_cast<std::size_t>(qd + 2 * kvd));
    for (index_t j = 0; j < qd; ++j) bias[static_cast<std::size_t>(j)] = src.bq(j);
    for (index_t j = 0; j < kvd; ++j) bias[static_cast<std::size_t>(qd + j)] = src.bk(j);
    for (index_t j = 0; j < kvd; ++j) bias[static_cast<std::size_t>(qd + kvd + j)] = src.bv(j);
  }

  // out (+)= in W^T: the packed float copy or the integer one.
  void project(matrix_view<const T> in, const ops::packed_matrix<T>& w, const integer_linear& w_q, matrix_view<T> out,
               bool accumulate) {
    if constexpr (std::is_same_v<T, float>) {
      if (format_) return w_q.multiply(in, out, activations_q8_, accumulate);
    }
    ops::matmul_packed<T>(in, w, out, accumulate);
  }

  // The integer copy: q, k and v stacked into one [qkv x d] matrix, gate and up
  // into one [2 ffn x d] (the parameters' [out x in] rows, one product each),
  // o, down and lm_head as they are. The float copies are freed.
  void sync_integer_weights() {
    const transformer_weights<const T>& w = weights_;
    // Rows of the parts, one after another, into rounded_ as one [rows x cols] matrix.
    const auto stacked = [this](std::initializer_list<matrix_view<const T>> parts) {
      if (parts.size() == 1) return *parts.begin();  // one matrix: quantized from the parameters in place
      index_t rows = 0;
      const index_t cols = parts.begin()->shape[1];
      for (const auto& m : parts) rows += m.shape[0];
      rounded_.resize(static_cast<std::size_t>(rows * cols));
      index_t r0 = 0;
      for (const auto& m : parts) {
        for (index_t o = 0; o < m.shape[0]; ++o)
          for (index_t i = 0; i < cols; ++i) rounded_[static_cast<std::size_t>((r0 + o) * cols + i)] = m(o, i);
        r0 += m.shape[0];
      }
      return matrix_view<const T>(rounded_.data(), {rows, cols});
    };
    layers_.resize(static_cast<std::size_t>(config_.num_hidden_layers));
    for (index_t l = 0; l < config_.num_hidden_layers; ++l) {
      const auto& src = w.layers[static_cast<std::size_t>(l)];
      auto& dst = layers_[static_cast<std::size_t>(l)];
      dst.qkv = {}, dst.o = {}, dst.gate_up = {}, dst.down = {};
      dst.qkv_q = integer_linear(*format_, stacked({src.wq, src.wk, src.wv}));
      dst.o_q = integer_linear(*format_, stacked({src.wo}));
      dst.gate_up_q = integer_linear(*format_, stacked({src.w_gate, src.w_up}));
      dst.down_q = integer_linear(*format_, stacked({src.w_down}));
      fuse_qkv_bias(src, dst.qkv_bias);
    }
    lm_head_ = {};
    lm_head_q_ = integer_linear(*format_, stacked({w.lm_head}));
    rounded_ = {};
  }

  void reserve(index_t n) {
    if (n <= capacity_) return;
    capacity_ = n;
    const auto rows = static_cast<std::size_t>(n);
    const auto d = static_cast<std::size_t>(config_.hidden_size);
    const auto qd = static_cast<std::size_t>(config_.num_attention_heads * config_.head_dim());
    const auto kvd = static_cast<std::size_t>(config_.kv_dim()), ffn = static_cast<std::size_t>(config_.intermediate_size);
    x_.assign(rows * d, T(0));
    h_.assign(rows * d, T(0));
    qkv_.assign(rows * (qd + 2 * kvd), T(0));
    att_.assign(rows * std::max(qd, d), T(0));
    gate_up_.assign(rows * 2 * ffn, T(0));
    act_.assign(rows * ffn, T(0));
    logits_.assign(rows * static_cast<std::size_t>(config_.vocab_size), T(0));
    position_.assign(rows, 0);
    ids_.assign(rows, 0);
    logit_rows_.assign(rows, 0);
    runs_.reserve(rows + 1);
  }

  // Causal GQA attention of each run of rows against its sequence's cached
  // positions: ops::attention_forward per (run, kv head) with the query heads
  // that share the kv head, keys [0, last position of the run].
  void attend(index_t layer, std::span<const cached_token> rows, matrix_view<T> q, matrix_view<T> att) {
    const index_t hd = config_.head_dim(), nkv = config_.num_key_value_heads, group = config_.heads_per_kv();
    const index_t n_runs = static_cast<index_t>(runs_.size()) - 1;
#if defined(_OPENMP)
#pragma omp parallel
#endif
    {
      std::vector<T> k_scratch, v_scratch;  // a quantized cache's rows, dequantized (one pair per thread)
#if defined(_OPENMP)
#pragma omp for schedule(dynamic, 1)
#endif
      for (index_t job = 0; job < n_runs * nkv; ++job) {
        const index_t run = job / nkv, g = job % nkv;
        const index_t first = runs_[static_cast<std::size_t>(run)], count = runs_[static_cast<std::size_t>(run + 1)] - first;
        const index_t s = rows[static_cast<std::size_t>(first)].sequence, p0 = position_[static_cast<std::size_t>(first)];
        const index_t keys = p0 + count;
        const matrix_view<const T> qg(&q(first, g * group * hd), {count, group * hd}, {q.stride[0], 1});
        const matrix_view<T> og(&att(first, g * group * hd), {count, group * hd}, {att.stride[0], 1});
        const matrix_view<const T> K = cache_.load_keys(layer, s, g, keys, k_scratch);
        const matrix_view<const T> V = cache_.load_values(layer, s, g, keys, v_scratch);
        ops::attention_forward<T>(qg, K, V, group, p0 + 1, {}, og);
      }
    }
  }

  const transformer_parameters<T>* params_;
  transformer_config config_;
  ops::rope_table<T> rope_;
  transformer_weights<const T> weights_;  // views of the parameters (norms, embedding)
  kv_cache<T> cache_;
  kv_format kv_format_ = kv_format::f32;
  std::vector<layer_copy> layers_;
  ops::packed_matrix<T> lm_head_;
  weight_rounding rounding_;  // empty: the weights as they are
  std::optional<integer_format> format_;  // set: integer weights (layer_copy's *_q, lm_head_q_)
  integer_linear lm_head_q_;
  q8_0_rows activations_q8_;  // the activations of one product, quantized
  std::vector<T> rounded_;    // sync_integer_weights' scratch for one stacked matrix
  bool stale_ = true;  // the copy of the weights is missing or from another format: sync before the next pass
  index_t capacity_ = 0;
  std::vector<T> x_, h_, qkv_, att_, gate_up_, act_, logits_;
  std::vector<index_t> position_, logit_rows_, runs_, pending_;
  std::vector<std::int32_t> ids_;
};

// Generates completions of `prompts` (each a list of token ids, no padding)
// with any Sampler. See the top of this file.
template <Real T, class S>
  requires Sampler<S, T>
generation_result<T> generate(cached_decoder<T>& decoder, std::span<const std::vector<std::int32_t>> prompts,
                              const generation_options& options, const counter_rng& rng, const S& sampler) {
  const transformer_config& c = decoder.config();
  const detail::generation_plan plan = detail::plan_generation(prompts, options, c, "generate");
  const index_t B = plan.batch, max_new = options.max_new_tokens;
  decoder.sync_weights();  // the parameters may have changed since the last call (a training step)
  decoder.reset(B, plan.max_len);
  generation_result<T> out = detail::empty_generation_result<T>(plan, options);

  const matrix_view<const T> prompt_logits = decoder.forward(plan.prefill);
  // Every sequence of a group starts from its prompt's cache and draws its first token from its
  // prompt's logits row.
  for (index_t b = 0; b < B; ++b)
    if (plan.source[static_cast<std::size_t>(b)] != b) decoder.cache().copy_sequence(plan.source[static_cast<std::size_t>(b)], b);

  // Per-thread sampler scratch (top-k / top-p sort candidates).
  int threads = 1;
#if defined(_OPENMP)
  threads = omp_get_max_threads();
#endif
  std::vector<sampler_scratch<T>> scratch;
  for (int k = 0; k < threads; ++k) scratch.emplace_back(c.vocab_size);

  std::vector<index_t> live(static_cast<std::size_t>(B));
  for (index_t b = 0; b < B; ++b) live[static_cast<std::size_t>(b)] = b;
  matrix_view<const T> logits = prompt_logits;
  std::vector<sampled_token> drawn(static_cast<std::size_t>(B));
  std::vector<cached_token> rows;
  for (index_t t = 0; t < max_new && !live.empty(); ++t) {
    const index_t n_live = static_cast<index_t>(live.size());
    // Sample one token per live sequence (rows in parallel; each draw is addressed by (sequence, t)).
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
    for (index_t r = 0; r < n_live; ++r) {
      int tid = 0;
#if defined(_OPENMP)
      tid = omp_get_thread_num();
#endif
      const index_t b = live[static_cast<std::size_t>(r)];
      const double u = rng.uniform_double(options.first_sequence + static_cast<std::uint64_t>(b), static_cast<std::uint32_t>(t));
      // Step 0 reads the prompt's logits row; later steps read row r of the last pass.
      const index_t row = t == 0 ? plan.logits_row_of_slot[static_cast<std::size_t>(plan.source[static_cast<std::size_t>(b)])] : r;
      drawn[static_cast<std::size_t>(r)] =
          sampler.sample(logits.row(row), u, scratch[static_cast<std::size_t>(tid)].span(), b);
    }
    // Record, check stops, and build the next pass from the sequences still live.
    rows.clear();
    std::vector<index_t> still;
    still.reserve(live.size());
    for (index_t r = 0; r < n_live; ++r) {
      const index_t b = live[static_cast<std::size_t>(r)];
      if (!detail::record_token(out, options, b, t, drawn[static_cast<std::size_t>(r)])) continue;
      still.push_back(b);
      rows.push_back({b, out.completion_ids(b, t), true});
    }
    live.swap(still);
    if (!live.empty()) logits = decoder.forward(rows);
  }
  return out;
}

// The real tokens of padded prompts: row i of `prompt_ids` where
// attention_mask is 1 (left or right padding), in order.
template <Array2D P, Array2D M>
  requires std::integral<element_t<P, 2>> && Real<element_t<M, 2>>
std::vector<std::vector<std::int32_t>> unpad_prompts(const P& prompt_ids, const M& attention_mask) {
  const auto ids = lmrl::view<2>(prompt_ids);
  const auto mask = lmrl::view<2>(attention_mask);
  detail::require_same_shape("unpad_prompts", "prompt_ids", ids, "attention_mask", mask);
  detail::require_mask("unpad_prompts", "attention_mask", mask);
  std::vector<std::vector<std::int32_t>> prompts(static_cast<std::size_t>(ids.shape[0]));
  for (index_t i = 0; i < ids.shape[0]; ++i)
    for (index_t j = 0; j < ids.shape[1]; ++j)
      if (mask(i, j) != 0) prompts[static_cast<std::size_t>(i)].push_back(static_cast<std::int32_t>(ids(i, j)));
  return prompts;
}

// generate() with the library's sampler (options.sampling).
template <Real T>
generation_result<T> generate(cached_decoder<T>& decoder, std::span<const std::vector<std::int32_t>> prompts,
                              const generation_options& options, const counter_rng& rng) {
  return generate(decoder, prompts, options, rng, composed_sampler{options.sampling});
}

// generate() from the parameters (a fresh decoder: allocates its cache and workspace).
template <Real T>
generation_result<T> generate(const transformer_parameters<T>& parameters,
                              std::span<const std::vector<std::int32_t>> prompts, const generation_options& options,
                              const counter_rng& rng) {
  cached_decoder<T> decoder(parameters);
  return generate(decoder, prompts, options, rng);
}

}  // namespace lmrl
