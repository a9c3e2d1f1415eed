// Batched generation with a KV cache on the GPU: the twin of model/generate.hpp
// for the weights of a transformer_gpu (model/transformer.cuh), float32.
//
//   lmrl::cuda::transformer_gpu model(parameters, stream);
//   lmrl::cuda::cached_decoder_gpu decoder(model);          // reads model's device weights, never copies them
//   lmrl::generation_result<float> r = lmrl::cuda::generate(decoder, prompts, options, counter_rng(seed));
//
// Same contract as the CPU's generate (read model/generate.hpp): every distinct
// prompt prefilled once and its cache copied to the other sequences of its
// group, one decode pass per step over the live sequences, sequence b's draw for
// completion token t is counter_rng::uniform_double(first_sequence + b, t), the
// same stops (eos ids, stop token sequences, stop strings through the
// detokenizer) and the same result: the plan, the empty result and the
// record-and-stop of each token are the CPU's own functions
// (model/generation.hpp). Only the passes and the sampling run on the device: the
// sampler is cuda/sample.cuh, which draws the CPU sampler's token for the same
// logits and uniform. Each step brings n_live tokens and log-probs to the host
// (the stop rules need them) and sends the next n_live ids back.
//
// The products run at the model's precision (transformer_gpu::precision: fp32,
// tf32, bf16 tensor cores, or fp8 layer products), taken at reset(). Parity with the CPU, in fp32: the logits agree to
// float rounding (cuBLAS against the packed CPU products, another attention
// order), not bit for bit, so a token equals the CPU's unless two candidates'
// logits lie within that rounding. Compare GPU generation with the CPU by
// the log-probs of its own tokens under the CPU model
// (tests/cuda/test_generate.cu does), not token by token.
//
// The cache: keys and values [layers x sequences x kv_heads x max_len] rows of
// head_dim values each (cuda/ops/cached_attention.cuh's layout), allocated by
// reset(), in the decoder's kv_format: floats, or q8_0 / q4_0 blocks
// (set_kv_format, as the CPU decoder's: each row quantized once when stored,
// the CPU cache's bytes, 8.5 or 4.5 bits a value instead of 32).
//
// Quantized weights, as the CPU decoder's (rollouts from quantized weights while
// training stays float32): set_weight_rounding rounds every projection and
// lm_head through a function (quant/by_name.hpp's formats) into the decoder's
// own float copy of the parameters, on the host, at the first reset() after the
// model's weights changed (one download and upload of the parameters); the
// embedding lookup and the norms stay as they are; the products then run at
// fp32, tf32 or bf16 on those values (fp8 products are refused: they quantize
// the weights themselves). set_weight_format holds every projection and lm_head
// in an integer format (quant/integer_linear.hpp's bytes, 4.5 bits a weight for
// q4_0), made at the first reset() after the weights changed: on the device,
// but q4_k's on the host (a download, its bytes uploaded). It
// multiplies them with each product's activations
// quantized to Q8_0 on the device, by cuda/ops/int_gemm.cuh: every product
// has the bits of the CPU decoder's integer product of the same activations
// (the model's precision does not apply to them).
// Not here (the CPU decoder has them): packed-sequence prompts.
//
// Status: compiled (CUDA 13, sm_80 and sm_90), NOT yet run on a GPU.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "lmrl/cuda/check.cuh"
#include "lmrl/cuda/launch.cuh"
#include "lmrl/cuda/device_array.cuh"
#include "lmrl/cuda/graph.cuh"
#include "lmrl/cuda/ops/cached_attention.cuh"
#include "lmrl/cuda/ops/embedding.cuh"
#include "lmrl/cuda/ops/ggml_blocks.cuh"
#include "lmrl/cuda/ops/int_gemm.cuh"
#include "lmrl/cuda/ops/linear_products.cuh"
#include "lmrl/cuda/ops/matmul.cuh"
#include "lmrl/cuda/ops/rms_norm.cuh"
#include "lmrl/cuda/ops/rope.cuh"
#include "lmrl/cuda/ops/swiglu.cuh"
#include "lmrl/cuda/sample.cuh"
#include "lmrl/error.hpp"
#include "lmrl/model/generation.hpp"
#include "lmrl/model/kv_format.hpp"
#include "lmrl/quant/integer_linear.hpp"
#include "lmrl/sample/philox.hpp"
#include "lmrl/model/transformer.cuh"

namespace lmrl::cuda {

namespace generate_detail {

inline constexpr int threads = 256;

inline unsigned blocks(index_t work) {
  return static_cast<unsigned>(std::clamp<index_t>((work + threads - 1) / threads, 1, 65535));
}

// dst[k, :] = src[rows[k], :] for k < n (rows of width d). (A template, as every kernel in a header: a plain
// __global__ function defined here would be defined again by each translation unit that includes it.)
template <class T>
__global__ void gather_rows_kernel(const T* __restrict__ src, index_t d, const index_t* __restrict__ rows, index_t n,
                                   T* __restrict__ dst) {
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n * d; e += step)
    dst[e] = src[rows[e / d] * d + e % d];
}

}  // namespace generate_detail

// How a cached_decoder_gpu runs its passes.
struct decoder_gpu_options {
  // Replay each pass shape (rows, rows wanting logits) as a CUDA graph (cuda/graph.cuh) from its second
  // occurrence in a generation on: one launch per decode step instead of about 15 kernels per layer. The
  // decoder then runs on a stream and a cuBLAS handle of its own (a capture cannot use the legacy default
  // stream), after the model's stream at each reset(). Same kernels, same arguments: the same bits as without.
  bool cuda_graphs = false;
};

// Runs tokens through a transformer_gpu's weights against a device KV cache.
// Holds a pointer to the model (it must outlive the decoder); its weights are
// read where they are, so a decoder sees every update of the model's
// parameters (an optimizer step, upload_parameters) with no sync step. The
// products' precision is the model's at reset(), kept until the next reset;
// with bf16, reset() also rounds the weights into the decoder's own bf16 copy
// (2 bytes a parameter; fp8 also quantizes the layers' weights, 1 byte more),
// so there an update shows from the next reset().
// Work buffers grow to the largest pass and are reused.
class cached_decoder_gpu {
 public:
  explicit cached_decoder_gpu(const transformer_gpu& model, decoder_gpu_options options = {})
      : model_(&model), config_(model.config()), options_(options) {
    if (options_.cuda_graphs) {
      own_stream_ = std::make_unique<owned_stream>();
      own_blas_ = std::make_unique<cublas_handle>(own_stream_->get());  // a workspace like the model's handle
    }
    stream_ = options_.cuda_graphs ? own_stream_->get() : model.stream();
    linear_ = linear_products(options_.cuda_graphs ? *own_blas_ : model.blas(), stream_);
  }

  const transformer_config& config() const { return config_; }
  cudaStream_t stream() const { return stream_; }
  index_t sequences() const { return sequences_; }
  index_t max_len() const { return max_len_; }
  index_t length(index_t sequence) const { return lengths_.at(static_cast<std::size_t>(sequence)); }
  // Device bytes of the cache's keys and values as last sized by reset().
  std::size_t cache_bytes() const {
    return 2 * layer_cache_bytes(sequences_) * static_cast<std::size_t>(config_.num_hidden_layers);
  }

  // How the cache stores its rows (model/kv_format.hpp), from the next reset() on; f32 by default.
  void set_kv_format(kv_format format) {
    require_kv_head_dim(format, config_.head_dim(), "lmrl::cuda::cached_decoder_gpu::set_kv_format");
    next_format_ = format;
  }
  kv_format get_kv_format() const { return next_format_; }

  // Generate from weights rounded by `rounding` (in place, on a host matrix in the parameters' [out x in]
  // layout: quant/by_name.hpp's weight_rounding_by_name), as cached_decoder::set_weight_rounding; empty: the
  // model's weights. Takes effect at the next reset().
  using weight_rounding = std::function<void(matrix_view<float>)>;
  void set_weight_rounding(weight_rounding rounding) {
    lmrl::detail::require(!rounding || !weight_format_, "lmrl::cuda::cached_decoder_gpu::set_weight_rounding: "
                          "integer weights are set (set_weight_format); use one or the other");
    rounding_ = std::move(rounding);
    rounded_for_.reset();
  }
  // Generate from integer weights with Q8_0 activations (see the top of the file), as
  // cached_decoder::set_weight_format; std::nullopt: the model's weights. Takes effect at the next reset().
  void set_weight_format(std::optional<integer_format> format) {
    lmrl::detail::require(!format || !rounding_, "lmrl::cuda::cached_decoder_gpu::set_weight_format: a weight "
                          "rounding is set; use one or the other");
    weight_format_ = format;
    rounded_for_.reset();
  }
  std::optional<integer_format> weight_format() const { return weight_format_; }
  // Device bytes of the integer weights as last quantized by reset() (0 without set_weight_format).
  std::size_t integer_weight_bytes() const { return integer_products_ ? integer_weights_.bytes() : 0; }
  // Graphs captured since the last reset() (decoder_gpu_options::cuda_graphs).
  std::size_t graphs() const {
    return static_cast<std::size_t>(
        std::count_if(passes_.begin(), passes_.end(), [](const auto& p) { return p.second.captured(); }));
  }

  // Empties the cache and sizes it for `sequences` x `max_len` tokens (reallocated only when it grows).
  void reset(index_t sequences, index_t max_len) {
    const char* f = "lmrl::cuda::cached_decoder_gpu::reset";
    lmrl::detail::require(sequences >= 1 && max_len >= 1, f, ": sequences = ", sequences, " and max_len = ", max_len,
                          " must be positive");
    lmrl::detail::require(max_len <= config_.max_position_embeddings, f, ": max_len = ", max_len,
                          " exceeds max_position_embeddings = ", config_.max_position_embeddings);
    const bool rounded = static_cast<bool>(rounding_);
    lmrl::detail::require(!rounded || model_->precision != gemm_precision::fp8, f, ": rounded weights with fp8 "
                          "products (they quantize the weights themselves); use fp32, tf32 or bf16");
    sequences_ = 0;  // unusable until this reset completes: a throw below (a rounding, an allocation) leaves it so
    forget_graphs();  // they name the old cache's shape
    if (options_.cuda_graphs) LMRL_CUDA_CHECK(cudaStreamSynchronize(model_->stream()));  // its updates land first
    if (rounded) round_weights();
    if (weight_format_) quantize_weights();
    rounded_weights_in_use_ = rounded;
    integer_products_ = weight_format_.has_value();
    set_projections();
    max_len_ = max_len;
    format_ = next_format_;
    const std::size_t n = layer_cache_bytes(sequences) * static_cast<std::size_t>(config_.num_hidden_layers);
    for (auto* cache : {&k_cache_, &v_cache_}) cuda::grow(*cache, n, stream_);  // poisoned: unwritten reads show
    if (rounded) {
      linear_.begin(model_->precision, rounded_.data(), rounded_.size(), {}, rounded_serial_);
    } else if (!integer_products_) {  // (integer products take no precision)
      linear_.begin(model_->precision, model_->parameters(), model_->size(),
                    model_->precision == gemm_precision::fp8 ? model_->fp8_weights()
                                                             : std::vector<device_matrix<const float>>{},
                    model_->weights_version());  // rounded again only when the model's weights moved
    }
    lengths_.assign(static_cast<std::size_t>(sequences), 0);
    sequences_ = sequences;
  }

  // Sequence `to` continues from `from`'s cache (a group's copies of one prefilled prompt).
  void copy_sequence(index_t from, index_t to) {
    const char* f = "lmrl::cuda::cached_decoder_gpu::copy_sequence";
    lmrl::detail::require(from >= 0 && from < sequences_ && to >= 0 && to < sequences_, f, ": sequences ", from,
                          " and ", to, " must be in [0, ", sequences_, ")");
    if (from == to) return;
    // One layer's slot is kv_heads blocks of max_len x head_dim, contiguous; the layers' slots lie a layer
    // (sequences slots) apart: one strided copy per cache takes the slot of every layer, unless that stride
    // is over the copy's pitch limit (2^31 - 1 bytes), then one copy per layer.
    const std::size_t layer = layer_cache_bytes(sequences_), slot = layer / static_cast<std::size_t>(sequences_);
    const auto layers = static_cast<std::size_t>(config_.num_hidden_layers);
    for (device_array<std::uint8_t>* cache : {&k_cache_, &v_cache_}) {
      std::uint8_t* base = cache->data();
      std::uint8_t *dst = base + static_cast<std::size_t>(to) * slot, *src = base + static_cast<std::size_t>(from) * slot;
      if (layer <= std::size_t{0x7FFFFFFF}) {
        LMRL_CUDA_CHECK(
            cudaMemcpy2DAsync(dst, layer, src, layer, slot, layers, cudaMemcpyDeviceToDevice, stream_));
        continue;
      }
      for (std::size_t l = 0; l < layers; ++l)
        LMRL_CUDA_CHECK(cudaMemcpyAsync(dst + l * layer, src + l * layer, slot, cudaMemcpyDeviceToDevice, stream_));
    }
    lengths_[static_cast<std::size_t>(to)] = lengths_[static_cast<std::size_t>(from)];
  }

  // Appends `rows` to the cache and returns the logits [n x vocab] (device memory, valid until the next
  // forward or reset) of the rows with want_logits, in row order. Row rules as cached_decoder::forward:
  // a row's position is its sequence's cache length plus its rank among that sequence's rows in the pass.
  // Asynchronous on stream(): synchronize before reading the logits on the host.
  device_matrix<const float> forward(std::span<const cached_token> rows) {
    const char* f = "lmrl::cuda::cached_decoder_gpu::forward";
    const transformer_config& c = config_;
    const index_t n = static_cast<index_t>(rows.size()), V = c.vocab_size;
    lmrl::detail::require(sequences_ > 0, f, ": call reset first");
    lmrl::detail::require(n >= 1, f, ": no rows");
    // Check every row before touching the cache.
    ids_.resize(static_cast<std::size_t>(n));
    slots_.resize(static_cast<std::size_t>(n));
    positions_.resize(static_cast<std::size_t>(n));
    logit_rows_.clear();
    std::vector<index_t> pending(static_cast<std::size_t>(sequences_), 0);
    for (index_t r = 0; r < n; ++r) {
      const cached_token& row = rows[static_cast<std::size_t>(r)];
      if (row.sequence < 0 || row.sequence >= sequences_)
        lmrl::detail::fail(f, ": row ", r, " names sequence ", row.sequence, " but the cache holds ", sequences_);
      if (row.token < 0 || row.token >= V)
        lmrl::detail::fail(f, ": row ", r, " (sequence ", row.sequence, ") has token id ", row.token,
                           " outside the vocabulary [0, ", V, ")");
      const auto s = static_cast<std::size_t>(row.sequence);
      const index_t p = lengths_[s] + pending[s]++;
      if (p >= max_len_) lmrl::detail::fail(f, ": sequence ", row.sequence, " is full (max_len = ", max_len_, ")");
      ids_[static_cast<std::size_t>(r)] = row.token;
      slots_[static_cast<std::size_t>(r)] = row.sequence;
      positions_[static_cast<std::size_t>(r)] = p;
      if (row.want_logits) logit_rows_.push_back(r);
    }
    for (std::size_t s = 0; s < pending.size(); ++s) lengths_[s] += pending[s];
    const index_t n_logits = static_cast<index_t>(logit_rows_.size());
    if (reserve(n, n_logits)) forget_graphs();  // a buffer moved
    upload(ids_dev_, ids_);
    upload(slots_dev_, slots_);
    upload(positions_dev_, positions_);
    if (n_logits > 0) upload(logit_rows_dev_, logit_rows_);
    run_pass(n, n_logits);
    return {logits_.data(), n_logits, V};
  }

 private:
  // A product's weights: float (the model's or rounded_) or integer.
  struct projection {
    device_matrix<const float> floats;
    device_integer_matrix integer;
  };
  struct layer_projections {
    projection wq, wk, wv, wo, w_gate, w_up, w_down;
  };

  // The pass over the uploaded rows: directly, or (cuda_graphs) as the graph of its shape, captured the second
  // time the shape comes (the first run grows any workspace it needs, so a capture allocates nothing).
  void run_pass(index_t n, index_t n_logits) {
    if (!options_.cuda_graphs) return pass(n, n_logits);
    const std::pair<index_t, index_t> shape{n, n_logits};
    const auto [entry, first_time] = passes_.try_emplace(shape);
    graph_exec& graph = entry->second;
    if (graph.captured()) return graph.launch(stream_);
    if (first_time) {
      const std::size_t workspace = linear_.workspace_bytes();
      try {
        pass(n, n_logits);
      } catch (...) {  // not warmed up: the next pass of this shape runs uncaptured first again
        passes_.erase(shape);
        throw;
      }
      if (linear_.workspace_bytes() != workspace) {  // a workspace moved: every graph names the old one
        forget_graphs();
        passes_.try_emplace(shape);
      }
      return;
    }
    graph = capture_graph(stream_, [&] { pass(n, n_logits); });
    graph.launch(stream_);
  }

  void forget_graphs() { passes_.clear(); }

  // Bytes of one layer's keys (or values): sequences x kv_heads x max_len_ rows in format_.
  std::size_t layer_cache_bytes(index_t sequences) const {
    return static_cast<std::size_t>(sequences * config_.num_key_value_heads * max_len_) *
           kv_row_bytes(format_, config_.head_dim());
  }

  // Queues the pass on stream_: embedding, the layers (appending to the cache), and the logits of the rows
  // logit_rows_dev_ names. Work only: a CUDA graph may capture it.
  void pass(index_t n, index_t n_logits) {
    const transformer_config& c = config_;
    const index_t d = c.hidden_size, H = c.num_attention_heads, G = c.num_key_value_heads, hd = c.head_dim(),
                  qd = H * hd, kvd = c.kv_dim(), ffn = c.intermediate_size, V = c.vocab_size,
                  P = c.max_position_embeddings;
    const transformer_weights<float>& w = rounded_weights_in_use_ ? rounded_weights_ : model_->device_weights();
    const double eps = c.rms_norm_eps;
    float *x = x_.data(), *h = h_.data(), *q = q_.data(), *k = k_.data(), *v = v_.data(), *att = att_.data(),
          *gate = gate_.data(), *up = up_.data(), *act = act_.data(), *inv = inv_.data();
    embedding_forward(static_cast<const float*>(w.embed.data), V, d, ids_dev_.data(), ones_.data(), n, x, stream_);
    const std::size_t layer_cache = layer_cache_bytes(sequences_);
    for (index_t l = 0; l < c.num_hidden_layers; ++l) {
      const auto& lw = w.layers[static_cast<std::size_t>(l)];
      const layer_projections& p = projections_[static_cast<std::size_t>(l)];
      rms_norm_forward(static_cast<const float*>(x), lw.input_norm.data, n, d, eps, h, inv, stream_);
      const device_matrix<const float> hq = product_input(h, n, d);
      nt(hq, p.wq, mat(q, n, qd));
      nt(hq, p.wk, mat(k, n, kvd));
      nt(hq, p.wv, mat(v, n, kvd));
      if (c.attention_bias) {
        add_bias(mat(q, n, qd), static_cast<const float*>(lw.bq.data), stream_);
        add_bias(mat(k, n, kvd), static_cast<const float*>(lw.bk.data), stream_);
        add_bias(mat(v, n, kvd), static_cast<const float*>(lw.bv.data), stream_);
      }
      rope_forward(model_->rope_cos(), model_->rope_sin(), hd, P, q, positions_dev_.data(), n, H, stream_);
      rope_forward(model_->rope_cos(), model_->rope_sin(), hd, P, k, positions_dev_.data(), n, G, stream_);
      std::uint8_t* k_layer = k_cache_.data() + static_cast<std::size_t>(l) * layer_cache;
      std::uint8_t* v_layer = v_cache_.data() + static_cast<std::size_t>(l) * layer_cache;
      kv_cache_store(k, v, kvd, n, slots_dev_.data(), positions_dev_.data(), G, hd, max_len_, format_, k_layer,
                     v_layer, stream_);
      cached_attention_forward(q, n, slots_dev_.data(), positions_dev_.data(), H, G, hd, max_len_, format_, k_layer,
                               v_layer, att, stream_);
      nt(product_input(att, n, qd), p.wo, mat(x, n, d), true);  // residual
      rms_norm_forward(static_cast<const float*>(x), lw.post_attention_norm.data, n, d, eps, h, inv, stream_);
      const device_matrix<const float> h2 = product_input(h, n, d);
      nt(h2, p.w_gate, mat(gate, n, ffn));
      nt(h2, p.w_up, mat(up, n, ffn));
      swiglu_forward(static_cast<const float*>(gate), up, n * ffn, act, stream_);
      nt(product_input(act, n, ffn), p.w_down, mat(x, n, d), true);  // residual
    }
    if (n_logits == 0) return;
    // Final norm and lm_head on the rows that want logits only.
    cuda::launch(generate_detail::gather_rows_kernel<float>, generate_detail::blocks(n_logits * d),
        generate_detail::threads, 0, stream_, x, d, logit_rows_dev_.data(), n_logits, att);
    LMRL_CUDA_CHECK_LAUNCH("lmrl::cuda::generate_detail::gather_rows_kernel");
    rms_norm_forward(static_cast<const float*>(att), w.final_norm.data, n_logits, d, eps, h, inv, stream_);
    nt(product_input(h, n_logits, d), lm_head_, mat(logits_.data(), n_logits, V));
  }

  // A product's activations [rows x cols]. With integer weights also quantized to Q8_0 blocks into xq_, which
  // the integer products after it read (the CPU quantizes them before each integer product; one quantization
  // serves the products that share an input).
  device_matrix<const float> product_input(const float* x, index_t rows, index_t cols) {
    if (integer_products_) quantize_rows<q8_0>(x, rows, cols, xq_.data(), stream_);
    return cmat(x, rows, cols);
  }

  // y (+)= x . w^T: integer (x's blocks from the last product_input) or at the precision taken at reset().
  void nt(device_matrix<const float> x, const projection& w, device_matrix<float> y, bool acc = false) {
    if (integer_products_) return int_matmul_transposed(xq_.data(), w.integer, y, acc, stream_);
    linear_.nt(x, w.floats, y, acc);
  }

  // projections_ and lm_head_ for the weights the passes until the next reset use.
  void set_projections() {
    const transformer_weights<float>& w = rounded_weights_in_use_ ? rounded_weights_ : model_->device_weights();
    projections_.resize(w.layers.size());
    std::size_t i = 0;  // integer_weights_' order: quantize_weights'
    const auto projection_of = [&](const matrix_view<float>& m) {
      return projection{weight(m), integer_products_ ? integer_weights_[i++] : device_integer_matrix{}};
    };
    for (std::size_t l = 0; l < w.layers.size(); ++l) {
      const auto& lw = w.layers[l];
      layer_projections& p = projections_[l];
      for (auto [to, from] : {std::pair{&p.wq, &lw.wq}, {&p.wk, &lw.wk}, {&p.wv, &lw.wv}, {&p.wo, &lw.wo},
                              {&p.w_gate, &lw.w_gate}, {&p.w_up, &lw.w_up}, {&p.w_down, &lw.w_down}})
        *to = projection_of(*from);
    }
    lm_head_ = projection_of(w.lm_head);
  }

  // rounded_ = the model's parameters with every projection and lm_head rounded (set_weight_rounding), on the
  // host; a tied lm_head gets its own rounded copy after the parameters (the embedding lookup keeps the exact
  // table). Skipped while the model, its weights and the setting are those of the last rounding.
  void round_weights() {
    const std::pair<std::uint64_t, std::uint64_t> source{model_->serial(), model_->weights_version()};
    if (rounded_for_ == source) return;
    const transformer_config& c = config_;
    const std::size_t n = model_->size();
    const std::size_t head = c.tie_word_embeddings ? static_cast<std::size_t>(c.vocab_size * c.hidden_size) : 0;
    std::vector<float>& host = host_parameters_;
    transformer_weights<float> w = download_weights(head);
    if (head > 0) {  // the tied table's rounded copy, after the parameters
      std::copy_n(host.data() + model_->layout().at("model.embed_tokens.weight").offset, head, host.data() + n);
      w.lm_head = matrix_view<float>(host.data() + n, {c.vocab_size, c.hidden_size});
    }
    for (auto& lw : w.layers)
      for (auto* m : {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.w_gate, &lw.w_up, &lw.w_down}) rounding_(*m);
    rounding_(w.lm_head);
    cuda::grow(rounded_, host.size(), stream_);
    LMRL_CUDA_CHECK(cudaMemcpyAsync(rounded_.data(), host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice,
                                    stream_));
    LMRL_CUDA_CHECK(cudaStreamSynchronize(stream_));  // host is reused by the next rounding
    rounded_weights_ = transformer_weights<float>(c, model_->layout(), std::span<float>(rounded_.data(), n));
    if (head > 0) rounded_weights_.lm_head = matrix_view<float>(rounded_.data() + n, {c.vocab_size, c.hidden_size});
    rounded_for_ = source;
    ++rounded_serial_;  // linear_products' bf16 copy of rounded_ is stale
  }

  // integer_weights_ = every projection (layer by layer, in set_projections' order) and lm_head (a tied one:
  // the embedding table) in weight_format_: quantized on the device from the model's weights (the host's bytes,
  // no download), but q4_k downloaded, quantized on the host and uploaded.
  // Skipped as round_weights.
  void quantize_weights() {
    const std::pair<std::uint64_t, std::uint64_t> source{model_->serial(), model_->weights_version()};
    if (rounded_for_ == source) return;
    const integer_format format = *weight_format_;
    const bool on_device = packed_integer_weights::quantizes_on_device(format);
    const transformer_weights<float> w = on_device ? model_->device_weights() : download_weights(0);
    integer_weights_.clear();
    const auto add = [&](const matrix_view<float>& m) {
      if (on_device) {
        integer_weights_.add_on_device(format, weight(m));
      } else {
        integer_weights_.add(integer_linear(format, matrix_view<const float>(m)));
      }
    };
    for (const auto& lw : w.layers)
      for (const auto* m : {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.w_gate, &lw.w_up, &lw.w_down}) add(*m);
    add(w.lm_head);
    integer_weights_.upload(stream_);
    rounded_for_ = source;
  }

  // The model's parameters downloaded into host_parameters_ (`extra` floats more after them), as weights.
  transformer_weights<float> download_weights(std::size_t extra) {
    const std::size_t n = model_->size();
    host_parameters_.resize(n + extra);
    model_->download_parameters(std::span<float>(host_parameters_.data(), n));  // after its queued updates
    return transformer_weights<float>(config_, model_->layout(), std::span<float>(host_parameters_.data(), n));
  }

  // Work buffers for passes of n rows, n_logits of them wanting logits (att_ also holds the gathered rows).
  // True when a buffer was reallocated.
  bool reserve(index_t n, index_t n_logits) {
    bool moved = false;
    const transformer_config& c = config_;
    const index_t d = c.hidden_size, qd = c.num_attention_heads * c.head_dim(), kvd = c.kv_dim(),
                  ffn = c.intermediate_size;
    if (n > capacity_) {
      capacity_ = n;
      moved = true;
      for (auto* a : {&x_, &h_}) grow(*a, n * d);
      grow(q_, n * qd);
      grow(att_, n * std::max(qd, d));
      for (auto* a : {&k_, &v_}) grow(*a, n * kvd);
      for (auto* a : {&gate_, &up_, &act_}) grow(*a, n * ffn);
      grow(inv_, n);
      grow(ids_dev_, n);
      for (auto* a : {&slots_dev_, &positions_dev_, &logit_rows_dev_}) grow(*a, n);
      ones_ = device_array<float>::from_host(std::vector<float>(static_cast<std::size_t>(n), 1.0f), stream_);
      LMRL_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the host vector of ones dies here
    }
    const index_t xq_bytes = n * ((std::max({d, qd, ffn}) + 31) / 32) * static_cast<index_t>(q8_0::bytes_per_block);
    if (integer_products_ && static_cast<index_t>(xq_.size()) < xq_bytes) {
      grow(xq_, xq_bytes);  // product_input's Q8_0 blocks
      moved = true;
    }
    const index_t logits = std::max<index_t>(n_logits, 1) * c.vocab_size;
    moved = moved || static_cast<index_t>(logits_.size()) < logits;
    grow(logits_, logits);
    return moved;
  }

  template <class U>
  void grow(device_array<U>& a, index_t n) {
    cuda::grow(a, static_cast<std::size_t>(n), stream_);
  }

  // The first values.size() elements of dst from the host (dst is large enough: reserve).
  template <class U>
  void upload(device_array<U>& dst, const std::vector<U>& values) {
    LMRL_CUDA_CHECK(cudaMemcpyAsync(dst.data(), values.data(), values.size() * sizeof(U), cudaMemcpyHostToDevice,
                                    stream_));
  }

  static device_matrix<float> mat(float* p, index_t rows, index_t cols) { return {p, rows, cols}; }
  static device_matrix<const float> cmat(const float* p, index_t rows, index_t cols) { return {p, rows, cols}; }
  static device_matrix<const float> weight(const matrix_view<float>& m) { return {m.data, m.shape[0], m.shape[1]}; }

  const transformer_gpu* model_;
  transformer_config config_;
  decoder_gpu_options options_;
  // with cuda_graphs: the decoder's own stream and cuBLAS handle (behind pointers: the handle is not movable,
  // and linear_ holds its address)
  std::unique_ptr<owned_stream> own_stream_;
  std::unique_ptr<cublas_handle> own_blas_;  // destroyed before the stream it uses
  cudaStream_t stream_ = nullptr;
  linear_products linear_;
  // the pass shapes (rows, rows wanting logits) run since the last reset, with their graph once captured
  std::map<std::pair<index_t, index_t>, graph_exec> passes_;
  index_t sequences_ = 0, max_len_ = 0, capacity_ = 0;
  std::vector<index_t> lengths_;  // cached tokens per sequence (host: forward computes positions from it)
  kv_format format_ = kv_format::f32, next_format_ = kv_format::f32;  // the cache's, and from the next reset
  // rounded or integer weights: the settings, whether the passes since the last reset use them, the rounded
  // parameters (+ a tied lm_head's copy) and their views, the integer weights, the model (serial, weights
  // version) either was made from, a count of roundings for linear_products, the host copy of the parameters
  weight_rounding rounding_;
  std::optional<integer_format> weight_format_;
  bool rounded_weights_in_use_ = false, integer_products_ = false;
  device_array<float> rounded_;
  transformer_weights<float> rounded_weights_;
  packed_integer_weights integer_weights_;
  std::optional<std::pair<std::uint64_t, std::uint64_t>> rounded_for_;
  std::uint64_t rounded_serial_ = 0;
  std::vector<float> host_parameters_;
  std::vector<layer_projections> projections_;  // each product's weights for the passes since the last reset
  projection lm_head_;
  device_array<std::uint8_t> xq_;  // product_input's Q8_0 blocks (integer products)
  device_array<std::uint8_t> k_cache_, v_cache_;
  device_array<float> x_, h_, q_, k_, v_, att_, gate_, up_, act_, inv_, ones_, logits_;
  device_array<std::int32_t> ids_dev_;
  device_array<index_t> slots_dev_, positions_dev_, logit_rows_dev_;
  // host staging of one pass (members: the asynchronous uploads read them after forward returns)
  std::vector<std::int32_t> ids_;
  std::vector<index_t> slots_, positions_, logit_rows_;
};

// Generates completions of `prompts` on the GPU with options.sampling (cuda/sample.cuh); see the top of
// this file. Synchronizes the decoder's stream once per step.
inline generation_result<float> generate(cached_decoder_gpu& decoder,
                                         std::span<const std::vector<std::int32_t>> prompts,
                                         const generation_options& options, const counter_rng& rng) {
  const transformer_config& c = decoder.config();
  const lmrl::detail::generation_plan plan = lmrl::detail::plan_generation(prompts, options, c, "cuda::generate");
  const index_t B = plan.batch, V = c.vocab_size;
  const cudaStream_t stream = decoder.stream();
  decoder.reset(B, plan.max_len);
  generation_result<float> out = lmrl::detail::empty_generation_result<float>(plan, options);

  const device_matrix<const float> prompt_logits = decoder.forward(plan.prefill);
  for (index_t b = 0; b < B; ++b)
    if (plan.source[static_cast<std::size_t>(b)] != b) decoder.copy_sequence(plan.source[static_cast<std::size_t>(b)], b);
  // Step 0 samples sequence b from its prompt's logits row: those rows gathered into [B x V].
  device_array<float> first_logits(static_cast<std::size_t>(B * V), stream);
  {
    std::vector<index_t> row_of(static_cast<std::size_t>(B));
    for (index_t b = 0; b < B; ++b)
      row_of[static_cast<std::size_t>(b)] =
          plan.logits_row_of_slot[static_cast<std::size_t>(plan.source[static_cast<std::size_t>(b)])];
    const auto rows = device_array<index_t>::from_host(row_of, stream);
    cuda::launch(generate_detail::gather_rows_kernel<float>, generate_detail::blocks(B * V), generate_detail::threads,
        0, stream, prompt_logits.data, V, rows.data(), B, first_logits.data());
    LMRL_CUDA_CHECK_LAUNCH("lmrl::cuda::generate_detail::gather_rows_kernel (first tokens)");
    LMRL_CUDA_CHECK(cudaStreamSynchronize(stream));  // row_of and rows die here
  }

  const std::size_t scratch_bytes = sample_scratch_bytes<float>(B, V, options.sampling);
  device_array<unsigned char> scratch(std::max<std::size_t>(scratch_bytes, 1), stream);
  device_array<std::int32_t> tokens_dev(static_cast<std::size_t>(B), stream);
  device_array<float> tempered_dev(static_cast<std::size_t>(B), stream), sampling_dev(static_cast<std::size_t>(B), stream);
  device_array<std::uint64_t> sequences_dev(static_cast<std::size_t>(B), stream);
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(B));
  std::vector<float> tempered(static_cast<std::size_t>(B)), sampling(static_cast<std::size_t>(B));
  std::vector<std::uint64_t> sequences(static_cast<std::size_t>(B));

  std::vector<index_t> live(static_cast<std::size_t>(B));
  for (index_t b = 0; b < B; ++b) live[static_cast<std::size_t>(b)] = b;
  const float* logits = first_logits.data();
  std::vector<cached_token> rows;
  for (index_t t = 0; t < options.max_new_tokens && !live.empty(); ++t) {
    const index_t n_live = static_cast<index_t>(live.size());
    const auto n = static_cast<std::size_t>(n_live);
    for (std::size_t r = 0; r < n; ++r) sequences[r] = options.first_sequence + static_cast<std::uint64_t>(live[r]);
    LMRL_CUDA_CHECK(cudaMemcpyAsync(sequences_dev.data(), sequences.data(), n * sizeof(std::uint64_t),
                                    cudaMemcpyHostToDevice, stream));
    sample_draws draws;
    draws.rng = rng;
    draws.sequences = sequences_dev.data();
    draws.position = static_cast<std::uint32_t>(t);
    sample_tokens<float>(logits, n_live, V, V, options.sampling, draws, tokens_dev.data(), tempered_dev.data(),
                         sampling_dev.data(), scratch.data(), scratch.size(), stream);
    LMRL_CUDA_CHECK(cudaMemcpyAsync(tokens.data(), tokens_dev.data(), n * sizeof(std::int32_t),
                                    cudaMemcpyDeviceToHost, stream));
    LMRL_CUDA_CHECK(cudaMemcpyAsync(tempered.data(), tempered_dev.data(), n * sizeof(float), cudaMemcpyDeviceToHost,
                                    stream));
    LMRL_CUDA_CHECK(cudaMemcpyAsync(sampling.data(), sampling_dev.data(), n * sizeof(float), cudaMemcpyDeviceToHost,
                                    stream));
    LMRL_CUDA_CHECK(cudaStreamSynchronize(stream));
    rows.clear();
    std::vector<index_t> still;
    still.reserve(n);
    for (std::size_t r = 0; r < n; ++r) {
      const index_t b = live[r];
      lmrl::detail::require(tokens[r] >= 0, "cuda::generate: sequence ", b, " at completion token ", t,
                            " has logits the sampler rejects (NaN or +inf, or all -inf): non-finite weights or "
                            "activations (in a q8_0 / q4_0 cache or q8_0 / q4_0 weights such a value gives its block "
                            "a NaN scale)");
      const sampled_token s{tokens[r], sampling[r], tempered[r]};
      if (!lmrl::detail::record_token(out, options, b, t, s)) continue;
      still.push_back(b);
      rows.push_back({b, tokens[r], true});
    }
    live.swap(still);
    if (!live.empty()) logits = decoder.forward(rows).data;
  }
  return out;
}

}  // namespace lmrl::cuda
