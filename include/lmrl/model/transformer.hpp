// transformer<T>: the bundled Qwen2-style decoder, its forward pass over a
// padded batch and its hand-written backward pass, on the CPU.
//
// It computes what Hugging Face's Qwen2ForCausalLM computes:
//
//   x = embed_tokens[ids]
//   per layer:  h = rmsnorm(x) ; q, k, v = h Wq^T + bq, h Wk^T + bk, h Wv^T + bv
//               q, k = rope(q, pos), rope(k, pos)        (rotate_half, theta = rope_theta)
//               x += o_proj( causal GQA softmax(q k^T / sqrt(hd)) v )
//               h = rmsnorm(x) ;  x += down( silu(gate(h)) * up(h) )
//   logits = rmsnorm(x) lm_head^T        (lm_head = embed_tokens when tied)
//
// Batches are padded sequences (token_batch: tokens [B x T], attention_mask
// [B x T], padding on either side). Position ids are the number of real tokens
// before a token (cumsum(mask) - 1), so left padding changes nothing; padded
// positions are never attended to, read no token id, and get logp 0.
//
// Packing (TRL's padding-free SFT): an attention mask may number the
// sequences that share a row instead of holding 1s (1, 1, 1, 2, 2, 0 is two
// sequences and a pad). A token then attends only within its own sequence,
// positions restart at 0 for each, and a sequence's first token has no
// prediction: each sequence gets what it would get in a row of its own.
//
//   log_probs(batch, logp, entropy)   logp[i, t] = log p(tokens[i, t] | tokens[i, <t]) for t >= 1 where
//                                     tokens t and t-1 are real, 0 elsewhere; entropy likewise (empty = skip).
//                                     Logits are divided by `temperature` first (TRL).
//   backward(batch, grad_logp, grad_entropy)
//                                     gradients of L = sum(grad_logp * logp + grad_entropy * entropy) for the
//                                     last log_probs call, ADDED to the gradient buffer (zero_grad() clears it).
//   logits(batch, out [B*T x vocab])  raw logits (no temperature) of every real row; padded rows get 0.
//   hidden_states(batch, out [B*T x d])  the final-normed hidden states (lm_head's input).
//   values(batch, out [B x T])        with config.value_head: the critic's V[i, t] = score . h[i, t-1], the
//                                     value of the state in which token t is chosen (same positions as logp).
//   backward_values(batch, grad_values)  gradients of L = sum(grad_values * values), ADDED likewise.
//   logit_loss_backward(batch, loss_fn)  a loss on whole next-token distributions (logit distillation):
//                                     loss_fn gets each chunk of logits and writes d(loss)/d(logits);
//                                     the gradients are ADDED likewise.
//
// The output layer never holds [B x T x vocab]: it runs over chunks of
// logit_chunk_rows rows (logits chunk = h_chunk lm_head^T, then rl's fused
// logprob_forward), and the backward pass recomputes each chunk's logits.
// Activations live in a workspace that grows to the largest batch seen and is
// reused (no allocation per call once warmed up). Matrix products go through
// Eigen (multi-threaded under OpenMP), attention runs (sequence, head) pairs
// in parallel. The same thread count gives the same bits; another thread count
// may change the last bits, because Eigen picks its GEMM blocking by the
// number of threads (grpo_zero's first-step loss agrees to 8 digits between 1
// and 2 threads).
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "lmrl/error.hpp"
#include "lmrl/model/config.hpp"
#include "lmrl/model/ops/attention.hpp"
#include "lmrl/model/ops/embedding.hpp"
#include "lmrl/model/ops/matmul.hpp"
#include "lmrl/model/ops/rms_norm.hpp"
#include "lmrl/model/ops/rope.hpp"
#include "lmrl/model/ops/swiglu.hpp"
#include "lmrl/model/parameters.hpp"
#include "lmrl/rl/logprob.hpp"
#include "lmrl/rl/policy.hpp"
#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

template <Real T>
class transformer {
 public:
  using value_type = T;

  // Logits are divided by it before the log-softmax, as TRL does with its
  // sampling temperature (TRL default 1.0).
  double temperature = 1.0;
  // Rows of the output layer per chunk; 0 = automatic (at most 2^22 logits, 16..256 rows).
  index_t logit_chunk_rows = 0;
  // Whether log_probs() and values() keep every layer's activations for a
  // backward pass. false: only the layer under way is held (1 / layers of the
  // memory; a model that is only evaluated, such as a separate reference
  // model: 2 GB less at the small preset's 8,192 tokens), and backward()
  // refuses. hidden_states() and logits(), which no backward follows, never
  // keep them. The results are the same bits either way.
  bool keep_activations = true;

  // A fresh model initialized as transformers initializes Qwen2 (see transformer_parameters::initialize).
  transformer(const transformer_config& config, std::uint64_t seed, double initializer_range = 0.02)
      : params_(config) {
    params_.initialize(seed, initializer_range);
    setup();
  }
  explicit transformer(transformer_parameters<T> parameters) : params_(std::move(parameters)) { setup(); }

  transformer(const transformer& other) : params_(other.params_) {
    setup();
    grad_ = other.grad_;
    temperature = other.temperature;
    logit_chunk_rows = other.logit_chunk_rows;
    keep_activations = other.keep_activations;
  }
  transformer& operator=(const transformer& other) {
    if (this != &other) *this = transformer(other);
    return *this;
  }
  transformer(transformer&&) noexcept = default;  // vectors keep their buffers: the views stay valid
  transformer& operator=(transformer&&) noexcept = default;

  const transformer_config& config() const { return params_.config(); }
  transformer_parameters<T>& parameters() { return params_; }
  const transformer_parameters<T>& parameters() const { return params_; }
  // The gradient buffer: same layout as parameters().values().
  std::span<T> gradients() { return grad_; }
  std::span<const T> gradients() const { return grad_; }
  // Views of the gradient of each tensor (lm_head == embed when tied).
  const transformer_weights<T>& gradient_weights() const { return grad_w_; }
  void zero_grad() { std::fill(grad_.begin(), grad_.end(), T(0)); }

  // ------------------------------------------------------------------ forward

  void log_probs(const token_batch<T>& batch, matrix_view<T> logp, matrix_view<T> entropy) {
    const char* f = "transformer::log_probs";
    forward_hidden(batch, f, keep_activations);
    lmrl::detail::require(logp.shape == batch.tokens.shape, f, ": logp has shape ", logp, " but tokens has shape ",
                          batch.tokens);
    const bool want_entropy = given(entropy);
    lmrl::detail::require(!want_entropy || entropy.shape == batch.tokens.shape, f, ": entropy has shape ", entropy,
                          " but tokens has shape ", batch.tokens);
    lmrl::detail::check_temperature(f, temperature);
    collect_output_rows();
    const index_t R = static_cast<index_t>(out_rows_.size());
    out_lse_.resize(static_cast<std::size_t>(R));
    out_entropy_.resize(want_entropy ? static_cast<std::size_t>(R) : 0);
    out_logp_.resize(static_cast<std::size_t>(R));
    for (index_t c0 = 0; c0 < R; c0 += chunk_rows()) {
      const index_t n = std::min(chunk_rows(), R - c0);
      auto logits = chunk_logits(c0, n);
      lmrl::detail::logprob_forward<T, std::int32_t, double>(
          logits, std::span<const std::int32_t>(out_targets_).subspan(static_cast<std::size_t>(c0), static_cast<std::size_t>(n)),
          temperature, vector_view<T>(out_logp_.data() + c0, {n}),
          want_entropy ? vector_view<T>(out_entropy_.data() + c0, {n}) : vector_view<T>{},
          vector_view<double>(out_lse_.data() + c0, {n}));
    }
    for (index_t i = 0; i < B_; ++i)
      for (index_t t = 0; t < L_; ++t) {
        logp(i, t) = T(0);
        if (want_entropy) entropy(i, t) = T(0);
      }
    for (index_t r = 0; r < R; ++r) {
      const index_t row = out_rows_[static_cast<std::size_t>(r)];
      logp(row / L_, row % L_) = out_logp_[static_cast<std::size_t>(r)];
      if (want_entropy) entropy(row / L_, row % L_) = out_entropy_[static_cast<std::size_t>(r)];
    }
    last_forward_ = forward_kind::log_probs;
  }

  // Raw logits (no temperature) of every row: out[b*T + t] predicts token t + 1. Padded rows get 0.
  void logits(const token_batch<T>& batch, matrix_view<T> out) {
    const char* f = "transformer::logits";
    forward_hidden(batch, f, false);
    const index_t N = B_ * L_, V = config().vocab_size;
    lmrl::detail::require(out.shape[0] == N && out.shape[1] == V, f, ": out has shape ", out, " but needs [", N,
                          " x ", V, "] (batch rows x vocab_size)");
    ops::matmul_nt<T>(hidden(hf_), w().lm_head, out);
    for (index_t r = 0; r < N; ++r)
      if (row_mask_[static_cast<std::size_t>(r)] == T(0))
        for (index_t v = 0; v < V; ++v) out(r, v) = T(0);
  }

  // The final-normed hidden states [B*T x d] (lm_head's input); padded rows get 0.
  void hidden_states(const token_batch<T>& batch, matrix_view<T> out) {
    const char* f = "transformer::hidden_states";
    forward_hidden(batch, f, false);
    const index_t N = B_ * L_, d = config().hidden_size;
    lmrl::detail::require(out.shape[0] == N && out.shape[1] == d, f, ": out has shape ", out, " but needs [", N,
                          " x ", d, "]");
    for (index_t r = 0; r < N; ++r)
      for (index_t j = 0; j < d; ++j) out(r, j) = hf_[static_cast<std::size_t>(r * d + j)];
  }

  // The critic's values (config.value_head): out[i, t] = score . h[i, t-1] at the
  // positions log_probs fills (t >= 1, tokens t and t-1 real), 0 elsewhere.
  void values(const token_batch<T>& batch, matrix_view<T> out) {
    const char* f = "transformer::values";
    lmrl::detail::require(config().value_head, f, ": the model has no value head (config.value_head is false)");
    forward_hidden(batch, f, keep_activations);
    lmrl::detail::require(out.shape == batch.tokens.shape, f, ": out has shape ", out, " but tokens has shape ",
                          batch.tokens);
    collect_output_rows();
    const index_t d = config().hidden_size;
    const T* score = w().score.data;
    for (index_t i = 0; i < B_; ++i)
      for (index_t t = 0; t < L_; ++t) out(i, t) = T(0);
    for (const index_t row : out_rows_) {
      const T* h = hf_.data() + (row - 1) * d;
      T v = T(0);
      for (index_t j = 0; j < d; ++j) v += score[j] * h[j];
      out(row / L_, row % L_) = v;
    }
    last_forward_ = forward_kind::values;
  }

  // ----------------------------------------------------------------- backward

  void backward(const token_batch<T>& batch, matrix_view<const T> grad_logp, matrix_view<const T> grad_entropy) {
    const char* f = "transformer::backward";
    lmrl::detail::require(last_forward_ == forward_kind::log_probs, f, ": call log_probs on the batch first");
    require_activations(f);
    check_same_batch(batch, f);
    const bool has_gl = given(grad_logp), has_ge = given(grad_entropy);
    lmrl::detail::require(!has_gl || grad_logp.shape == batch.tokens.shape, f, ": grad_logp has shape ", grad_logp,
                          " but tokens has shape ", batch.tokens);
    lmrl::detail::require(!has_ge || grad_entropy.shape == batch.tokens.shape, f, ": grad_entropy has shape ",
                          grad_entropy, " but tokens has shape ", batch.tokens);
    const transformer_config& c = config();
    const index_t R = static_cast<index_t>(out_rows_.size());

    // Output layer, chunk by chunk: dlogits -> dh (rows t-1) and d lm_head.
    std::fill(dh_.begin(), dh_.begin() + B_ * L_ * c.hidden_size, T(0));
    for (index_t c0 = 0; c0 < R; c0 += chunk_rows()) {
      const index_t n = std::min(chunk_rows(), R - c0);
      auto logits = chunk_logits(c0, n);
      for (index_t r = 0; r < n; ++r) {
        const index_t row = out_rows_[static_cast<std::size_t>(c0 + r)];
        chunk_gl_[static_cast<std::size_t>(r)] = has_gl ? grad_logp(row / L_, row % L_) : T(0);
        chunk_ge_[static_cast<std::size_t>(r)] = has_ge ? grad_entropy(row / L_, row % L_) : T(0);
      }
      const auto targets = std::span<const std::int32_t>(out_targets_).subspan(static_cast<std::size_t>(c0),
                                                                               static_cast<std::size_t>(n));
      vector_view<const double> lse(out_lse_.data() + c0, {n});
      vector_view<const T> ent;
      if (has_ge) {
        if (out_entropy_.empty()) {  // the forward pass skipped the entropy: recompute it for this chunk
          lmrl::detail::logprob_forward<T, std::int32_t, double>(logits, targets, temperature,
                                                                 vector_view<T>(chunk_logp_.data(), {n}),
                                                                 vector_view<T>(chunk_entropy_.data(), {n}), {});
          ent = vector_view<const T>(chunk_entropy_.data(), {n});
        } else {
          ent = vector_view<const T>(out_entropy_.data() + c0, {n});
        }
      }
      auto dlogits = mat(dlogits_, n, c.vocab_size);
      lmrl::detail::logprob_backward<T, std::int32_t, double>(
          logits, targets, temperature, lse, ent, vector_view<const T>(chunk_gl_.data(), {n}),
          has_ge ? vector_view<const T>(chunk_ge_.data(), {n}) : vector_view<const T>{}, dlogits);
      output_chunk_backward(c0, n);
    }
    trunk_backward();
  }

  void backward_values(const token_batch<T>& batch, matrix_view<const T> grad_values) {
    const char* f = "transformer::backward_values";
    lmrl::detail::require(last_forward_ == forward_kind::values, f, ": call values on the batch first");
    require_activations(f);
    check_same_batch(batch, f);
    lmrl::detail::require(grad_values.shape == batch.tokens.shape, f, ": grad_values has shape ", grad_values,
                          " but tokens has shape ", batch.tokens);
    const index_t N = B_ * L_, d = config().hidden_size;
    std::fill(dh_.begin(), dh_.begin() + N * d, T(0));
    const T* score = w().score.data;
    T* dscore = grad_w_.score.data;
    for (const index_t row : out_rows_) {  // V = score . h[row - 1]
      const T g = grad_values(row / L_, row % L_);
      const T* h = hf_.data() + (row - 1) * d;
      T* dh = dh_.data() + (row - 1) * d;
      for (index_t j = 0; j < d; ++j) {
        dh[j] = g * score[j];
        dscore[j] += g * h[j];
      }
    }
    trunk_backward();
  }

  // Losses on whole next-token distributions (logit distillation): the
  // forward pass over the batch, then for each chunk of output rows
  //
  //   loss_fn(std::span<const index_t> rows, matrix_view<const T> logits, matrix_view<T> grad_logits) -> double
  //
  // with rows[k] = b*T + t the position whose token t logits row k predicts
  // (the rows log_probs fills), logits [n x vocab] raw (no temperature).
  // loss_fn writes d(loss)/d(logits) into grad_logits and returns its part of
  // the loss. The gradients are ADDED to the buffer; returns the summed loss.
  // No [rows x vocab] array is ever held beyond one chunk.
  template <class LossFn>
    requires std::invocable<LossFn&, std::span<const index_t>, matrix_view<const T>, matrix_view<T>>
  double logit_loss_backward(const token_batch<T>& batch, LossFn&& loss_fn) {
    forward_hidden(batch, "transformer::logit_loss_backward", true);
    collect_output_rows();
    const index_t R = static_cast<index_t>(out_rows_.size());
    std::fill(dh_.begin(), dh_.begin() + B_ * L_ * config().hidden_size, T(0));
    double loss = 0;
    for (index_t c0 = 0; c0 < R; c0 += chunk_rows()) {
      const index_t n = std::min(chunk_rows(), R - c0);
      const auto logits = chunk_logits(c0, n);
      auto dlogits = mat(dlogits_, n, config().vocab_size);
      loss += static_cast<double>(loss_fn(
          std::span<const index_t>(out_rows_).subspan(static_cast<std::size_t>(c0), static_cast<std::size_t>(n)),
          logits, dlogits));
      output_chunk_backward(c0, n);
    }
    trunk_backward();
    return loss;
  }

 private:
  // The output layer's backward for output rows [c0, c0 + n) from dlogits_
  // (chunk_h_ still holds their hidden rows): d lm_head, and dh_ of rows t-1.
  void output_chunk_backward(index_t c0, index_t n) {
    const index_t d = config().hidden_size;
    const auto dlogits = mat(dlogits_, n, config().vocab_size);
    auto dhc = mat(chunk_dh_, n, d);
    ops::matmul_nn<T>(dlogits, w().lm_head, dhc);
    ops::matmul_tn<T>(dlogits, mat(chunk_h_, n, d), grad_w_.lm_head, true);
    for (index_t r = 0; r < n; ++r) {  // each source row feeds one output row: plain copy
      const index_t src = out_rows_[static_cast<std::size_t>(c0 + r)] - 1;
      std::copy(dhc.row_data(r), dhc.row_data(r) + d, dh_.data() + src * d);
    }
  }

  // From d(loss)/d(final-normed hidden states) in dh_ to every trunk gradient.
  void trunk_backward() {
    const transformer_config& c = config();
    const index_t N = B_ * L_, d = c.hidden_size, qd = c.num_attention_heads * c.head_dim(), kvd = c.kv_dim(),
                  ffn = c.intermediate_size;
    const auto& W = w();
    const auto& G = grad_w_;
    auto dx = mat(dx_, N, d);
    auto dh = mat(dh_, N, d);
    // Final norm.
    std::fill(dx_.begin(), dx_.begin() + N * d, T(0));
    ops::rms_norm_backward<T>(act(xs_, c.num_hidden_layers, N, d), W.final_norm, vec(invf_, 0, N), dh, dx,
                              G.final_norm);

    auto dq = mat(dq_, N, qd), dk = mat(dk_, N, kvd), dv = mat(dv_, N, kvd), dattn = mat(dattn_, N, qd);
    auto dgate = mat(dgate_, N, ffn), dup = mat(dup_, N, ffn), dact = mat(dact_, N, ffn);
    for (index_t l = c.num_hidden_layers; l-- > 0;) {
      const auto& lw = W.layers[static_cast<std::size_t>(l)];
      const auto& lg = G.layers[static_cast<std::size_t>(l)];
      // MLP: x_out = x_mid + down(silu(gate(h2)) * up(h2))
      ops::matmul_nn<T>(dx, lw.w_down, dact);
      ops::matmul_tn<T>(dx, act(act_, l, N, ffn), lg.w_down, true);
      ops::swiglu_backward<T>(act(gate_, l, N, ffn), act(up_, l, N, ffn), dact, dgate, dup);
      ops::matmul_nn<T>(dgate, lw.w_gate, dh);
      ops::matmul_nn<T>(dup, lw.w_up, dh, true);
      const auto h2 = act(h2_, l, N, d);
      ops::matmul_tn<T>(dgate, h2, lg.w_gate, true);
      ops::matmul_tn<T>(dup, h2, lg.w_up, true);
      ops::rms_norm_backward<T>(act(xmid_, l, N, d), lw.post_attention_norm, vec(inv2_, l, N), dh, dx,
                                lg.post_attention_norm);
      // Attention: x_mid = x_in + o_proj(attn(rope(q), rope(k), v))
      ops::matmul_nn<T>(dx, lw.wo, dattn);
      ops::matmul_tn<T>(dx, act(attn_, l, N, qd), lg.wo, true);
      ops::causal_attention_backward<T>(act(q_, l, N, qd), act(k_, l, N, kvd), act(v_, l, N, kvd), mask(),
                                        c.num_attention_heads, lse_view(l), dattn, dq, dk, dv);
      ops::rope_backward<T>(rope_, dq, positions_, c.num_attention_heads);
      ops::rope_backward<T>(rope_, dk, positions_, c.num_key_value_heads);
      ops::matmul_nn<T>(dq, lw.wq, dh);
      ops::matmul_nn<T>(dk, lw.wk, dh, true);
      ops::matmul_nn<T>(dv, lw.wv, dh, true);
      const auto h1 = act(h1_, l, N, d);
      ops::matmul_tn<T>(dq, h1, lg.wq, true);
      ops::matmul_tn<T>(dk, h1, lg.wk, true);
      ops::matmul_tn<T>(dv, h1, lg.wv, true);
      ops::add_column_sums<T>(dq, lg.bq);
      ops::add_column_sums<T>(dk, lg.bk);
      ops::add_column_sums<T>(dv, lg.bv);
      ops::rms_norm_backward<T>(act(xs_, l, N, d), lw.input_norm, vec(inv1_, l, N), dh, dx, lg.input_norm);
    }
    ops::embedding_backward<T>(dx, ids_, vector_view<const T>(row_mask_.data(), {N}), G.embed);
  }

  void require_activations(const char* f) const {
    lmrl::detail::require(kept_activations_, f,
                          ": the forward pass kept no activations (keep_activations is false): nothing to backpropagate");
  }

  // ------------------------------------------------------------ the forward pass to the final norm
  // keep: every layer's activations stay for a backward pass; else each
  // layer's overwrite the last's (the residual stream alternates two slots).
  void forward_hidden(const token_batch<T>& batch, const char* f, bool keep) {
    last_forward_ = forward_kind::none;
    read_batch(batch, f);
    const transformer_config& c = config();
    const index_t N = B_ * L_, d = c.hidden_size, qd = c.num_attention_heads * c.head_dim(), kvd = c.kv_dim(),
                  ffn = c.intermediate_size, layers = c.num_hidden_layers;
    reserve(N, keep ? layers : 1, keep);
    kept_activations_ = keep;
    const auto slot = [keep](index_t l) { return keep ? l : index_t{0}; };
    const auto stream = [keep](index_t l) { return keep ? l : l % 2; };  // the residual stream's slot
    const auto& W = w();
    const vector_view<const T> rows(row_mask_.data(), {N});
    ops::embedding_forward<T>(W.embed, ids_, rows, act(xs_, 0, N, d));
    for (index_t l = 0; l < layers; ++l) {
      const auto& lw = W.layers[static_cast<std::size_t>(l)];
      const index_t s = slot(l);
      const auto x = act(xs_, stream(l), N, d), h1 = act(h1_, s, N, d), q = act(q_, s, N, qd),
                 k = act(k_, s, N, kvd), v = act(v_, s, N, kvd), o = act(attn_, s, N, qd), xm = act(xmid_, s, N, d),
                 h2 = act(h2_, s, N, d), gate = act(gate_, s, N, ffn), up = act(up_, s, N, ffn),
                 a = act(act_, s, N, ffn), next = act(xs_, stream(l + 1), N, d);
      ops::rms_norm_forward<T>(x, lw.input_norm, c.rms_norm_eps, h1, vec(inv1_, s, N));
      ops::matmul_nt<T>(h1, lw.wq, q);
      ops::add_bias<T>(q, lw.bq);
      ops::matmul_nt<T>(h1, lw.wk, k);
      ops::add_bias<T>(k, lw.bk);
      ops::matmul_nt<T>(h1, lw.wv, v);
      ops::add_bias<T>(v, lw.bv);
      ops::rope_forward<T>(rope_, q, positions_, c.num_attention_heads);
      ops::rope_forward<T>(rope_, k, positions_, c.num_key_value_heads);
      ops::causal_attention_forward<T>(q, k, v, mask(), c.num_attention_heads, o, lse_view(s));
      std::copy(x.data, x.data + N * d, xm.data);  // x_mid = x + o_proj(o)
      ops::matmul_nt<T>(o, lw.wo, xm, true);
      ops::rms_norm_forward<T>(xm, lw.post_attention_norm, c.rms_norm_eps, h2, vec(inv2_, s, N));
      ops::matmul_nt<T>(h2, lw.w_gate, gate);
      ops::matmul_nt<T>(h2, lw.w_up, up);
      ops::swiglu_forward<T>(gate, up, a);
      std::copy(xm.data, xm.data + N * d, next.data);  // x_next = x_mid + down(a)
      ops::matmul_nt<T>(a, lw.w_down, next, true);
    }
    ops::rms_norm_forward<T>(act(xs_, stream(layers), N, d), W.final_norm, c.rms_norm_eps, mat(hf_, N, d),
                             vec(invf_, 0, N));
  }

  // Copies ids and mask (they may be strided), checks them, computes positions.
  void read_batch(const token_batch<T>& batch, const char* f) {
    const transformer_config& c = config();
    const auto& tokens = batch.tokens;
    const auto& m = batch.attention_mask;
    lmrl::detail::require(m.shape == tokens.shape, f, ": attention_mask has shape ", m, " but tokens has shape ",
                          tokens);
    lmrl::detail::require(tokens.shape[0] > 0 && tokens.shape[1] > 0, f, ": the batch is empty (tokens ", tokens,
                          ")");
    B_ = tokens.shape[0];
    L_ = tokens.shape[1];
    const index_t N = B_ * L_;
    ids_.resize(static_cast<std::size_t>(N));
    row_mask_.resize(static_cast<std::size_t>(N));
    positions_.resize(static_cast<std::size_t>(N));
    segment_.resize(static_cast<std::size_t>(N));
    for (index_t i = 0; i < B_; ++i) {
      std::fill(seen_.begin(), seen_.end(), index_t{0});
      for (index_t t = 0; t < L_; ++t) {
        const auto r = static_cast<std::size_t>(i * L_ + t);
        const T mv = m(i, t);
        if (!(mv >= T(0) && mv == std::floor(mv) && mv <= T(65536)))
          lmrl::detail::fail(f, ": attention_mask(", i, ", ", t, ") = ", static_cast<double>(mv),
                             " but a mask holds 0 (padding), 1 (a token), or the number of the packed sequence a token"
                             " belongs to (a small positive integer)");
        segment_[r] = mv;
        row_mask_[r] = mv == T(0) ? T(0) : T(1);
        if (mv == T(0)) {
          ids_[r] = 0;
          positions_[r] = -1;
          continue;
        }
        const std::int32_t id = tokens(i, t);
        if (id < 0 || id >= c.vocab_size)
          lmrl::detail::fail(f, ": tokens(", i, ", ", t, ") = ", id, " is out of range for vocab_size = ",
                             c.vocab_size);
        ids_[r] = id;
        // position: the real tokens before this one in its own (packed) sequence
        const auto seq = static_cast<std::size_t>(mv);
        if (seen_.size() <= seq) seen_.resize(seq + 1, 0);
        const index_t position = seen_[seq]++;
        positions_[r] = position;
        if (position >= c.max_position_embeddings)
          lmrl::detail::fail(f, ": sequence ", i, " (mask value ", static_cast<double>(mv),
                             ") has more real tokens than max_position_embeddings = ", c.max_position_embeddings);
      }
    }
  }

  void check_same_batch(const token_batch<T>& batch, const char* f) const {
    lmrl::detail::require(batch.tokens.shape[0] == B_ && batch.tokens.shape[1] == L_ &&
                              batch.attention_mask.shape == batch.tokens.shape,
                          f, ": the batch has shape ", batch.tokens, " but the last forward call had [", B_, " x ",
                          L_, "]");
    for (index_t i = 0; i < B_; ++i)
      for (index_t t = 0; t < L_; ++t) {
        const auto r = static_cast<std::size_t>(i * L_ + t);
        const bool real = batch.attention_mask(i, t) != T(0);
        if (batch.attention_mask(i, t) != segment_[r] || (real && batch.tokens(i, t) != ids_[r]))
          lmrl::detail::fail(f, ": the batch differs at (", i, ", ", t,
                             ") from the last forward call; backward needs the same batch");
      }
  }

  // Rows r = b*T + t whose token t has a prediction: t >= 1, tokens t and t-1 real and of the same sequence.
  void collect_output_rows() {
    out_rows_.clear();
    out_targets_.clear();
    for (index_t i = 0; i < B_; ++i)
      for (index_t t = 1; t < L_; ++t) {
        const auto r = static_cast<std::size_t>(i * L_ + t);
        if (row_mask_[r] != T(0) && segment_[r - 1] == segment_[r]) {
          out_rows_.push_back(static_cast<index_t>(r));
          out_targets_.push_back(ids_[r]);
        }
      }
  }

  index_t chunk_rows() const {
    if (logit_chunk_rows > 0) return logit_chunk_rows;
    return std::clamp<index_t>((index_t{1} << 22) / config().vocab_size, 16, 256);
  }

  // Gathers the hidden rows (t-1) of output rows [c0, c0+n) and multiplies by lm_head^T.
  matrix_view<const T> chunk_logits(index_t c0, index_t n) {
    const index_t d = config().hidden_size, V = config().vocab_size;
    auto h = mat(chunk_h_, n, d);
    for (index_t r = 0; r < n; ++r) {
      const index_t src = out_rows_[static_cast<std::size_t>(c0 + r)] - 1;
      std::copy(hf_.data() + src * d, hf_.data() + (src + 1) * d, h.row_data(r));
    }
    auto logits = mat(logits_, n, V);
    ops::matmul_nt<T>(h, w().lm_head, logits);
    return logits;
  }

  // ------------------------------------------------------------ storage
  void setup() {
    const transformer_config& c = params_.config();
    c.validate();
    grad_.assign(static_cast<std::size_t>(params_.layout().total_size()), T(0));
    grad_w_ = transformer_weights<T>(c, params_.layout(), std::span<T>(grad_));
    rope_ = ops::rope_table<T>(c.head_dim(), c.max_position_embeddings, c.rope_theta);
  }

  // Grows the workspace to hold n rows of `L` layers' activations, and the
  // backward pass's scratch when `backward` (never shrinks: later batches reuse it).
  void reserve(index_t n, index_t L, bool backward) {
    const transformer_config& c = config();
    const index_t d = c.hidden_size, qd = c.num_attention_heads * c.head_dim(),
                  kvd = c.kv_dim(), ffn = c.intermediate_size, V = c.vocab_size, C = chunk_rows();
    auto grow = [](std::vector<T>& v, index_t size) {
      if (static_cast<index_t>(v.size()) < size) v.resize(static_cast<std::size_t>(size));
    };
    rows_ = std::max(rows_, n);
    grow(xs_, (L + 1) * n * d);
    for (auto* v : {&h1_, &xmid_, &h2_}) grow(*v, L * n * d);
    for (auto* v : {&q_, &attn_}) grow(*v, L * n * qd);
    for (auto* v : {&k_, &v_}) grow(*v, L * n * kvd);
    for (auto* v : {&gate_, &up_, &act_}) grow(*v, L * n * ffn);
    for (auto* v : {&inv1_, &inv2_, &lse_}) grow(*v, L * n * (v == &lse_ ? c.num_attention_heads : 1));
    grow(invf_, n);
    grow(hf_, n * d);
    grow(logits_, C * V);
    grow(chunk_h_, C * d);
    if (!backward) return;
    for (auto* v : {&dx_, &dh_}) grow(*v, n * d);
    for (auto* v : {&dq_, &dattn_}) grow(*v, n * qd);
    for (auto* v : {&dk_, &dv_}) grow(*v, n * kvd);
    for (auto* v : {&dgate_, &dup_, &dact_}) grow(*v, n * ffn);
    grow(dlogits_, C * V);
    grow(chunk_dh_, C * d);
    for (auto* v : {&chunk_gl_, &chunk_ge_, &chunk_logp_, &chunk_entropy_}) grow(*v, C);
  }

  // Layer l's [n x width] slice of a per-layer activation buffer.
  static matrix_view<T> act(std::vector<T>& buffer, index_t l, index_t n, index_t width) {
    return matrix_view<T>(buffer.data() + l * n * width, {n, width});
  }
  static matrix_view<T> mat(std::vector<T>& buffer, index_t n, index_t width) { return act(buffer, 0, n, width); }
  static vector_view<T> vec(std::vector<T>& buffer, index_t l, index_t n) {
    return vector_view<T>(buffer.data() + l * n, {n});
  }
  matrix_view<T> lse_view(index_t l) {
    const index_t H = config().num_attention_heads;
    return matrix_view<T>(lse_.data() + l * B_ * L_ * H, {B_ * H, L_});
  }
  // The attention mask as given: 0 padding, else the number of the token's (packed) sequence.
  matrix_view<const T> mask() const { return matrix_view<const T>(segment_.data(), {B_, L_}); }
  matrix_view<const T> hidden(const std::vector<T>& h) const {
    return matrix_view<const T>(h.data(), {B_ * L_, config().hidden_size});
  }
  const transformer_weights<T>& w() { return params_.weights(); }

  template <class V>
  static bool given(const V& v) {
    return v.data != nullptr && v.size() > 0;
  }

  transformer_parameters<T> params_;
  std::vector<T> grad_;
  transformer_weights<T> grad_w_;
  ops::rope_table<T> rope_;

  // the batch of the last forward pass
  index_t B_ = 0, L_ = 0, rows_ = 0;
  std::vector<std::int32_t> ids_;
  std::vector<T> row_mask_;  // 1 real token, 0 padding
  std::vector<T> segment_;   // the mask's values: which packed sequence a token belongs to (0 padding)
  std::vector<index_t> positions_;
  std::vector<index_t> seen_;  // read_batch: real tokens seen so far per sequence number
  enum class forward_kind { none, log_probs, values } last_forward_ = forward_kind::none;  // what backward may follow
  bool kept_activations_ = false;  // the last forward pass kept every layer's activations
  std::vector<index_t> out_rows_;
  std::vector<std::int32_t> out_targets_;
  std::vector<double> out_lse_;
  std::vector<T> out_logp_, out_entropy_;

  // saved activations, per layer [layers x rows x width]
  std::vector<T> xs_, h1_, q_, k_, v_, attn_, xmid_, h2_, gate_, up_, act_, inv1_, inv2_, lse_, invf_, hf_;
  // backward scratch, one layer's worth
  std::vector<T> dx_, dh_, dq_, dk_, dv_, dattn_, dgate_, dup_, dact_;
  // output-layer chunk
  std::vector<T> logits_, dlogits_, chunk_h_, chunk_dh_, chunk_gl_, chunk_ge_, chunk_logp_, chunk_entropy_;
};

static_assert(Policy<transformer<float>>);
static_assert(Policy<transformer<double>>);

}  // namespace lmrl
