// transformer_gpu: the bundled Qwen2-style transformer's log_probs forward and
// backward pass on the GPU, float32, the twin of lmrl::transformer<float>
// (model/transformer.hpp: read it for the model, the batch conventions and the
// output layer). It is assembled from the kernels of cuda/ (cuBLAS products,
// rms_norm, rope, swiglu, embedding, attention, the fused log-prob) plus a few
// glue kernels below (positions and output rows from the mask, gathers and
// scatters of rows).
//
//   lmrl::cuda::transformer_gpu gpu(host_parameters, stream);   // ONE device buffer, the host layout
//   gpu.log_probs(tokens_dev, mask_dev, B, T, logp_dev, entropy_dev_or_null);
//   gpu.backward(grad_logp_dev_or_null, grad_entropy_dev_or_null);   // ADDS into gpu.gradients()
//   gpu.values(tokens_dev, mask_dev, B, T, values_dev);               // with config.value_head (PPO's critic)
//   gpu.backward_values(grad_values_dev);                             // ADDS likewise
//   gpu.hidden_states(tokens_dev, mask_dev, B, T, hidden_dev);        // [B*T x d]
//   gpu.logits(tokens_dev, mask_dev, B, T, logits_dev);               // [B*T x vocab]
//   gpu.logit_loss_backward(tokens_dev, mask_dev, B, T, loss_fn);     // a loss on whole distributions, ADDED
//
// Every pointer is device memory: tokens int32 [B x T], mask float [B x T]
// (1 = token, 0 = padding, on either side), logp / entropy / grad_logp /
// grad_entropy float [B x T], all row-major and contiguous.
//
//   log_probs  logp[i, t] = log p(tokens[i, t] | tokens[i, <t]) (logits / temperature) where t >= 1 and
//              tokens t and t-1 are real, 0 elsewhere; entropy likewise (nullptr = not wanted). Every
//              element of logp (and entropy) is written.
//   hidden_states  out [B*T x d]: the final-normed hidden states (lm_head's input), padded rows 0.
//   logits     out [B*T x vocab]: raw logits (no temperature), row b*T + t predicting token t + 1, padded
//              rows 0 (the caller's array; log_probs itself never holds more than a chunk of them).
//   values     values[i, t] = score . h[i, t-1] (the final-normed hidden state), at the positions
//              log_probs fills, 0 elsewhere: the CPU's transformer::values.
//   backward_values  the gradient of L = sum(grad_values * values) for the last values call, ADDED.
//   backward   the gradient of L = sum(grad_logp * logp + grad_entropy * entropy) for the last log_probs
//              call (its batch is kept on the device: the caller may free tokens and mask), ADDED to the
//              gradient buffer; nullptr = zero. Elements at positions log_probs set to 0 are not read.
//              It uses the temperature and logit_chunk_rows of that log_probs call (the CPU reads the
//              current temperature; changing it in between is a mistake there).
//
// Packed rows (SFT packing): a mask may number the sequences packed into a row
// (1, 1, 1, 2, 2, 0): each token then attends only within its own sequence,
// and positions restart with each. Unlike the CPU, the GPU needs the numbers
// to increase along a row (as pack_sequences and pretrain's batches write
// them; a number may continue after padding): a row where a number comes
// back after a larger one is refused.
// As on the CPU: positions count the real tokens before in the same sequence
// (cumsum(mask) - 1 for a 0/1 mask: left padding changes nothing),
// padded positions never read a token id nor reach a loss; the output layer
// runs over chunks of logit_chunk_rows output rows (logits chunk = h_chunk .
// lm_head^T, then the fused log-prob) and never holds [B x T x vocab]; the
// backward pass recomputes each chunk's logits. The gradient buffer has the
// parameter buffer's layout (model/parameters.hpp); lm_head's gradient is
// embed's when the embeddings are tied. Activations live in device buffers
// that grow to the largest batch seen and are reused; a newly allocated buffer
// is filled with NaN bytes, so a read of something never written shows.
//
// Synchronization: log_probs waits for the stream once, after the batch is read
// (the host needs the number of output rows for the chunk loop, and checks the
// mask and tokens); the rest of log_probs and all of backward are queued on the
// stream without waiting. Synchronize the stream before reading logp, entropy
// or the gradients on the host (download_* do).
//
// Numerics: the products are cuBLAS fp32 (CUBLAS_COMPUTE_32F, no TF32, unless
// `precision` says tf32, bf16 or fp8), the other kernels those of cuda/ (double sums where
// the CPU sums in double), so
// results agree with transformer<float> to float rounding (different orders of
// summation), not bit for bit. The entropy is always computed in the forward
// pass (the CPU's skips it when not asked for and recomputes it in backward):
// same values, one code path.
//
// NOT in this first version (each a clear lmrl::error or simply absent):
//   - bf16 activations between kernels (bf16 rounds only the products'
//     inputs). (KV-cache generation on these weights: model/generate.cuh.)
//
// It lives in model/ beside the CPU transformer (model/ may use cuda/'s
// kernels; cuda/ knows nothing of model/), and reads the config, the tensor
// layout and the CPU's rope table from model/, so the GPU rotates by the
// CPU's very numbers.
//
// Status: compiled (CUDA 13, sm_80 and sm_90, warnings on), NOT yet run on a
// GPU; tests/cuda/test_transformer.cu compares it with transformer<float>.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <type_traits>
#include <vector>

#include "lmrl/cuda/check.cuh"
#include "lmrl/cuda/launch.cuh"
#include "lmrl/cuda/device_array.cuh"
#include "lmrl/cuda/logprob.cuh"
#include "lmrl/cuda/ops/attention.cuh"
#include "lmrl/cuda/ops/embedding.cuh"
#include "lmrl/cuda/ops/linear_products.cuh"
#include "lmrl/cuda/ops/matmul.cuh"
#include "lmrl/cuda/ops/rms_norm.cuh"
#include "lmrl/cuda/ops/rope.cuh"
#include "lmrl/cuda/ops/swiglu.cuh"
#include "lmrl/error.hpp"
#include "lmrl/model/config.hpp"
#include "lmrl/model/ops/rope.hpp"
#include "lmrl/model/parameters.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl::cuda {

namespace transformer_detail {

inline constexpr int glue_threads = 256;

// Blocks for a grid-stride loop over `work` items.
inline unsigned glue_blocks(index_t work) {
  return static_cast<unsigned>(std::clamp<index_t>((work + glue_threads - 1) / glue_threads, 1, 65535));
}

// status[0..2]: the first flat index (b*T + t) of a mask value that is not a
// whole number in [0, 65536], of a real token id outside [0, vocab), of a real
// token at position >= max_positions; status[4]: of a sequence number smaller
// than one before it in its row (all ~0 = none); status[3]: the number of
// output rows.
inline constexpr int status_words = 5;
inline constexpr unsigned long long no_index = ~0ull;

// One thread per row i, its tokens in order: ids (0 where padded), the row's
// segments (the mask's values: 0 padding, else the number of the token's
// sequence; the attention kernels read them), positions (the real tokens
// before in the same sequence, -1 where padded), and counts[i] = the output
// rows of row i (t >= 1, tokens t and t-1 of the same sequence). A bad mask
// value is treated as padding and a bad id as 0 after flagging them (the host
// throws before anything reads them).
template <class T>
__global__ void prepare_rows_kernel(const std::int32_t* tokens, const T* mask, index_t batch, index_t seq_len,
                                    index_t vocab, index_t max_positions, std::int32_t* ids, T* segments,
                                    index_t* positions, index_t* counts, unsigned long long* status) {
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < batch; i += step) {
    index_t position = 0, count = 0;
    T sequence = T(0), previous = T(0);  // the current sequence's number; token t-1's segment
    for (index_t t = 0; t < seq_len; ++t) {
      const index_t r = i * seq_len + t;
      const T m = mask[r];
      const bool whole = m >= T(0) && m <= T(65536) && m == floor(m);  // false for NaN
      if (!whole || m == T(0)) {
        if (!whole) atomicMin(status + 0, static_cast<unsigned long long>(r));
        ids[r] = 0;
        segments[r] = T(0);
        positions[r] = -1;
        previous = T(0);
        continue;
      }
      if (m != sequence) {  // a new sequence starts (numbers only increase)
        if (m < sequence) atomicMin(status + 4, static_cast<unsigned long long>(r));
        sequence = m;
        position = 0;
      }
      std::int32_t id = tokens[r];
      if (id < 0 || id >= vocab) {
        atomicMin(status + 1, static_cast<unsigned long long>(r));
        id = 0;
      }
      if (position >= max_positions) atomicMin(status + 2, static_cast<unsigned long long>(r));
      ids[r] = id;
      segments[r] = m;
      positions[r] = position++;
      if (previous == m) ++count;  // implies t >= 1
      previous = m;
    }
    counts[i] = count;
  }
}

// One thread: offsets[i] = counts[0] + ... + counts[i-1], status[3] = the total.
// Serial over the batch (B is at most 65535, the attention's grid limit).
template <class T>
__global__ void scan_counts_kernel(const T* counts, index_t batch, T* offsets, unsigned long long* status) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  T total = 0;
  for (index_t i = 0; i < batch; ++i) {
    offsets[i] = total;
    total += counts[i];
  }
  status[3] = static_cast<unsigned long long>(total);
}

// One thread per row: its output rows r = b*T + t (in order) and their target ids,
// from offsets[i] on. Output rows are numbered in row-major order, as the CPU numbers them.
template <class T>
__global__ void collect_rows_kernel(const T* segments, const std::int32_t* ids, index_t batch, index_t seq_len,
                                    const index_t* offsets, index_t* out_rows, std::int32_t* out_targets) {
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < batch; i += step) {
    index_t k = offsets[i];
    for (index_t t = 1; t < seq_len; ++t) {
      const index_t r = i * seq_len + t;
      if (segments[r] != T(0) && segments[r - 1] == segments[r]) {
        out_rows[k] = r;
        out_targets[k] = ids[r];
        ++k;
      }
    }
  }
}

// dst[k, :] = src[rows[k] - 1, :] for k < n (the hidden row that predicts output row k).
template <class T>
__global__ void gather_previous_rows_kernel(const T* src, index_t d, const index_t* rows, index_t n, T* dst) {
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n * d; e += step) {
    const index_t k = e / d, j = e % d;
    dst[e] = src[(rows[k] - 1) * d + j];
  }
}

// dst[rows[k] - 1, :] = src[k, :] for k < n (distinct rows: no two threads write one element).
template <class T>
__global__ void scatter_previous_rows_kernel(const T* src, index_t d, const index_t* rows, index_t n, T* dst) {
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n * d; e += step) {
    const index_t k = e / d, j = e % d;
    dst[(rows[k] - 1) * d + j] = src[e];
  }
}

// dst[k] = src[rows[k]] for k < n.
template <class T>
__global__ void gather_values_kernel(const T* src, const index_t* rows, index_t n, T* dst) {
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t k = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n; k += step) dst[k] = src[rows[k]];
}

// dst[rows[k]] = src[k] for k < n.
template <class T>
__global__ void scatter_values_kernel(const T* src, const index_t* rows, index_t n, T* dst) {
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t k = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n; k += step) dst[rows[k]] = src[k];
}

// dst[r, :] = segments[r] != 0 ? src[r, :] : 0 for r < rows (width columns, both contiguous; src may be dst).
template <class T>
__global__ void copy_real_rows_kernel(const T* src, index_t rows, index_t width, const float* segments, T* dst) {
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < rows * width; e += step)
    dst[e] = segments[e / width] != 0.0f ? src[e] : T(0);
}

}  // namespace transformer_detail

class transformer_gpu {
 public:
  using value_type = float;

  // Logits are divided by it before the log-softmax (TRL's sampling temperature), as on the CPU.
  double temperature = 1.0;
  // Output rows per chunk of the output layer; 0 = automatic, the CPU's rule (at most 2^22 logits, 16..256 rows).
  index_t logit_chunk_rows = 0;
  // The matrix products' arithmetic (cuda/ops/linear_products.cuh), float accumulation in every case:
  //   fp32  the default: the CPU's results to float rounding;
  //   tf32  tensor cores, inputs rounded to 10 mantissa bits inside cuBLAS: several times faster on Ampere
  //         and later, results about 1e-3 of their scale away from fp32's;
  //   bf16  bf16 tensor cores (twice tf32's rate on NVIDIA's data sheets), weights and activations rounded to 7 stored mantissa bits
  //         before each product (the parameters at the first forward after they changed, into a bf16
  //         copy: 2 more bytes a parameter; weights_version()), results about 1e-2 of their scale away.
  //         The master parameters, the gradients and every other kernel stay float.
  //   fp8   bf16, except the forward products of the layers' seven linears (q, k, v, o, gate, up, down):
  //         FP8 E4M3 with DeepSeek-V3's block scales (1 x 128 activation tiles, 128 x 128 weight blocks,
  //         fp8_weights()), on Hopper's tensor cores (CUDA cores elsewhere); the output head, the value
  //         head, the embedding, norms and attention stay as at bf16, as in DeepSeek-V3. 1 more byte a
  //         layer weight; the backward pass is bf16's.
  // A forward's backward uses that forward's precision. The decoder of model/generate.cuh follows it.
  gemm_precision precision = gemm_precision::fp32;

  // Uploads the parameters into one device buffer (the host layout) and zeroes the gradient buffer.
  // Every call runs on `stream` (nullptr: the legacy default stream).
  explicit transformer_gpu(const transformer_parameters<float>& host_parameters, cudaStream_t stream = nullptr)
      : config_(host_parameters.config()), layout_(host_parameters.layout()), stream_(stream) {
    const char* f = "lmrl::cuda::transformer_gpu";
    require_device(f);
    config_.validate();
    lmrl::detail::require(static_cast<index_t>(host_parameters.values().size()) == layout_.total_size(), f,
                          ": the parameters hold ", host_parameters.values().size(), " values but the layout needs ",
                          layout_.total_size());
    lmrl::detail::require(config_.head_dim() <= 128, f, ": head_dim = ", config_.head_dim(),
                          " is over 128, the GPU attention's limit");
    lmrl::detail::require(config_.vocab_size < (index_t{1} << 31) - 1, f, ": vocab_size = ", config_.vocab_size,
                          " does not fit the int32 token ids");
    blas_ = std::make_unique<cublas_handle>(stream_);
    linear_ = linear_products(*blas_, stream_);
    params_ = device_array<float>::from_host(host_parameters.values(), stream_);
    grad_ = device_array<float>(static_cast<std::size_t>(layout_.total_size()), stream_);
    grad_.zero();
    weights_ = transformer_weights<float>(config_, layout_, std::span<float>(params_.data(), params_.size()));
    grad_weights_ = transformer_weights<float>(config_, layout_, std::span<float>(grad_.data(), grad_.size()));
    const ops::rope_table<float> table(config_.head_dim(), config_.max_position_embeddings, config_.rope_theta);
    const auto table_size = static_cast<std::size_t>(config_.head_dim() / 2 * config_.max_position_embeddings);
    rope_cos_ = device_array<float>::from_host(std::span<const float>(table.cos(0), table_size), stream_);
    rope_sin_ = device_array<float>::from_host(std::span<const float>(table.sin(0), table_size), stream_);
    status_ = device_array<unsigned long long>(transformer_detail::status_words, stream_);
    LMRL_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the host table dies here
  }

  transformer_gpu(const transformer_gpu&) = delete;
  transformer_gpu& operator=(const transformer_gpu&) = delete;
  transformer_gpu(transformer_gpu&&) noexcept = default;  // device buffers keep their addresses: the views stay valid
  // No assignment: a decoder built on this model (cached_decoder_gpu) holds its address and its cuBLAS
  // handle, which assigning another model in would free under it.
  transformer_gpu& operator=(transformer_gpu&&) = delete;

  // A number no other transformer_gpu of the process was given (a move keeps it): what a cache of
  // decoders recognizes its model by, where an address could be the next model's once this one is gone.
  std::uint64_t serial() const { return serial_; }

  const transformer_config& config() const { return config_; }
  const parameter_layout& layout() const { return layout_; }
  cudaStream_t stream() const { return stream_; }
  // Elements of the parameter buffer (= of the gradient buffer).
  std::size_t size() const { return params_.size(); }

  // The device buffers (layout()): for a device optimizer (train/adamw.cuh) or a collective. Taking the
  // writable parameter pointer counts as a change (the bf16 copy and the FP8 blocks are made again at the
  // next pass); a caller that keeps the pointer and writes through it later calls parameters_changed().
  float* parameters() {
    parameters_changed();
    return params_.data();
  }
  const float* parameters() const { return params_.data(); }
  // The parameter buffer's values changed: the rounded copies made from it are stale.
  void parameters_changed() { ++weights_version_; }
  // Counts the changes: a pass rounds (bf16) or quantizes (fp8) the weights only when it moved since the last.
  std::uint64_t weights_version() const { return weights_version_; }
  float* gradients() { return grad_.data(); }
  const float* gradients() const { return grad_.data(); }
  // Views of each tensor in the device buffers: pointers into device memory, never to be dereferenced on the host.
  const transformer_weights<float>& device_weights() const { return weights_; }
  // The weights whose forward products run in FP8 at gemm_precision::fp8: every layer's seven linears.
  std::vector<device_matrix<const float>> fp8_weights() const {
    std::vector<device_matrix<const float>> list;
    for (const auto& lw : weights_.layers)
      for (const auto* w : {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.w_gate, &lw.w_up, &lw.w_down}) list.push_back(weight(*w));
    return list;
  }
  const transformer_weights<float>& device_gradient_weights() const { return grad_weights_; }
  // The rope tables on the device ([max_position_embeddings x head_dim / 2] each, the CPU's numbers) and the
  // cuBLAS handle bound to stream(): for the decoder of model/generate.cuh, which runs on the same weights.
  const float* rope_cos() const { return rope_cos_.data(); }
  const float* rope_sin() const { return rope_sin_.data(); }
  const cublas_handle& blas() const { return *blas_; }

  void zero_grad() { grad_.zero(); }

  void upload_parameters(std::span<const float> values) {
    require_size("lmrl::cuda::transformer_gpu::upload_parameters", values.size());
    parameters_changed();
    params_.copy_from_host(values);
    LMRL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  // Host copies, after everything queued on the stream.
  void download_parameters(std::span<float> out) const { download("download_parameters", params_, out); }
  void download_gradients(std::span<float> out) const { download("download_gradients", grad_, out); }

  // ------------------------------------------------------------------ forward

  void log_probs(const std::int32_t* tokens, const float* mask, index_t batch, index_t seq_len, float* logp,
                 float* entropy) {
    const char* f = "lmrl::cuda::transformer_gpu::log_probs";
    last_forward_ = forward_kind::none;
    lmrl::detail::require(batch > 0 && seq_len > 0, f, ": the batch is empty ([", batch, " x ", seq_len, "])");
    lmrl::detail::require(tokens != nullptr && mask != nullptr && logp != nullptr, f,
                          ": tokens, mask and logp must be device pointers, not null");
    lmrl::detail::require(temperature > 0 && std::isfinite(temperature), f, ": temperature = ", temperature,
                          " must be positive and finite");
    read_batch(tokens, mask, batch, seq_len, f);
    forward_hidden();

    const index_t V = config_.vocab_size, C = chunk_;
    for (index_t c0 = 0; c0 < R_; c0 += C) {
      const index_t n = std::min(C, R_ - c0);
      chunk_logits(c0, n);
      logprob_forward<std::int32_t>(logits_.data(), n, V, V, out_targets_.data() + c0, temperature_,
                                    out_logp_.data() + c0, out_entropy_.data() + c0, out_lse_.data() + c0, stream_,
                                    target_check::caller_checked);  // the ids were checked in read_batch
    }
    const index_t N = B_ * T_;
    scatter_outputs(out_logp_.data(), logp, N);
    if (entropy != nullptr) scatter_outputs(out_entropy_.data(), entropy, N);
    last_forward_ = forward_kind::log_probs;
  }

  // The final-normed hidden states out [B*T x d] (lm_head's input), the CPU's transformer::hidden_states:
  // every row's, padded rows 0. No backward follows it.
  void hidden_states(const std::int32_t* tokens, const float* mask, index_t batch, index_t seq_len, float* out) {
    const char* f = "lmrl::cuda::transformer_gpu::hidden_states";
    lmrl::detail::require(out != nullptr, f, ": out must be a device pointer, not null");
    trunk_forward(tokens, mask, batch, seq_len, f);
    copy_real_rows(hf_.data(), config_.hidden_size, out);
  }

  // Raw logits (no temperature) out [B*T x vocab]: row b*T + t predicts token t + 1; padded rows 0, as the
  // CPU's transformer::logits. One product at the model's precision over all B*T rows (the caller holds the
  // [B*T x vocab] result; log_probs never makes it). No backward follows it.
  void logits(const std::int32_t* tokens, const float* mask, index_t batch, index_t seq_len, float* out) {
    const char* f = "lmrl::cuda::transformer_gpu::logits";
    lmrl::detail::require(out != nullptr, f, ": out must be a device pointer, not null");
    trunk_forward(tokens, mask, batch, seq_len, f);
    const index_t N = B_ * T_, V = config_.vocab_size;
    nt(cmat(hf_.data(), N, config_.hidden_size), weight(weights_.lm_head), mat(out, N, V));
    copy_real_rows(out, V, out);
  }

  // out [n x vocab] = hidden [n x d] . lm_head^T at the precision of this model's last forward (the teacher's
  // chunk of logits from its hidden states, in logit distillation). Not from inside this model's own
  // logit_loss_backward loss_fn (it shares the product workspace that pass is using).
  void project_logits(device_matrix<const float> hidden, device_matrix<float> out) {
    const char* f = "lmrl::cuda::transformer_gpu::project_logits";
    lmrl::detail::require(B_ > 0, f, ": run a forward first (its precision and parameters serve the product)");
    lmrl::detail::require(hidden.cols == config_.hidden_size && out.cols == config_.vocab_size &&
                              out.rows == hidden.rows,
                          f, ": hidden is ", hidden.rows, " x ", hidden.cols, " and out ", out.rows, " x ", out.cols,
                          "; they need ", config_.hidden_size, " and ", config_.vocab_size, " columns and equal rows");
    nt(hidden, weight(weights_.lm_head), out);
  }

  // A loss on whole next-token distributions (logit distillation), the CPU's transformer::logit_loss_backward:
  // the forward, then for each chunk of output rows (the rows log_probs fills)
  //   loss += loss_fn(rows, n, logits, grad_logits)
  // with rows the chunk's n output rows (device index_t, b*T + t: logits row k predicts token t from the
  // hidden state at t - 1), logits [n x vocab] raw (no temperature) and grad_logits [n x vocab] for loss_fn
  // to fill with d(loss)/d(logits), all device memory; the gradient is ADDED to the buffer. Returns the summed
  // loss (loss_fn's returns: loss_fn may synchronize to compute its part). No [rows x vocab] array beyond one
  // chunk. Nothing else may follow it as its backward.
  template <class LossFn>
    requires std::is_invocable_r_v<double, LossFn&, const index_t*, index_t, device_matrix<const float>,
                                   device_matrix<float>>
  double logit_loss_backward(const std::int32_t* tokens, const float* mask, index_t batch, index_t seq_len,
                             LossFn&& loss_fn) {
    trunk_forward(tokens, mask, batch, seq_len, "lmrl::cuda::transformer_gpu::logit_loss_backward");
    if (R_ == 0) return 0.0;  // no output row: no loss, nothing to add
    const index_t N = B_ * T_, V = config_.vocab_size, d = config_.hidden_size;
    LMRL_CUDA_CHECK(cudaMemsetAsync(dh_.data(), 0, static_cast<std::size_t>(N * d) * sizeof(float), stream_));
    double loss = 0;
    for (index_t c0 = 0; c0 < R_; c0 += chunk_) {
      const index_t n = std::min(chunk_, R_ - c0);
      const linear_operand h = chunk_logits(c0, n);
      loss += static_cast<double>(loss_fn(static_cast<const index_t*>(out_rows_.data() + c0), n,
                                          cmat(logits_.data(), n, V), mat(dlogits_.data(), n, V)));
      output_chunk_backward(c0, n, h);
    }
    trunk_backward();
    return loss;
  }

  // The critic's values (config.value_head): score . h[row - 1] for each output row, chunk by chunk through
  // the output layer's buffers (h rows gathered, one [n x d] . [1 x d]^T product).
  void values(const std::int32_t* tokens, const float* mask, index_t batch, index_t seq_len, float* out) {
    const char* f = "lmrl::cuda::transformer_gpu::values";
    last_forward_ = forward_kind::none;
    lmrl::detail::require(config_.value_head, f, ": the model has no value head (config.value_head is false)");
    lmrl::detail::require(batch > 0 && seq_len > 0, f, ": the batch is empty ([", batch, " x ", seq_len, "])");
    lmrl::detail::require(tokens != nullptr && mask != nullptr && out != nullptr, f,
                          ": tokens, mask and out must be device pointers, not null");
    read_batch(tokens, mask, batch, seq_len, f);
    forward_hidden();
    const index_t d = config_.hidden_size;
    for (index_t c0 = 0; c0 < R_; c0 += chunk_) {
      const index_t n = std::min(chunk_, R_ - c0);
      gather_chunk_hidden(c0, n);
      nt(cmat(chunk_h_.data(), n, d), weight(weights_.score), mat(out_logp_.data() + c0, n, 1));
    }
    scatter_outputs(out_logp_.data(), out, B_ * T_);
    last_forward_ = forward_kind::values;
  }

  void backward_values(const float* grad_values) {
    const char* f = "lmrl::cuda::transformer_gpu::backward_values";
    lmrl::detail::require(last_forward_ == forward_kind::values, f, ": call values on the batch first");
    lmrl::detail::require(grad_values != nullptr, f, ": grad_values must be a device pointer, not null");
    namespace td = transformer_detail;
    if (R_ == 0) return;
    const index_t N = B_ * T_, d = config_.hidden_size;
    cuda::launch(td::gather_values_kernel<float>, td::glue_blocks(R_), td::glue_threads, 0, stream_, grad_values,
        out_rows_.data(), R_, out_gl_.data());
    LMRL_CUDA_CHECK_LAUNCH("transformer_detail::gather_values_kernel (grad_values)");
    LMRL_CUDA_CHECK(cudaMemsetAsync(dh_.data(), 0, static_cast<std::size_t>(N * d) * sizeof(float), stream_));
    for (index_t c0 = 0; c0 < R_; c0 += chunk_) {
      const index_t n = std::min(chunk_, R_ - c0);
      gather_chunk_hidden(c0, n);
      linear_backward(cmat(out_gl_.data() + c0, n, 1), operand(1, cmat(chunk_h_.data(), n, d)),
                      weight(weights_.score), mat(chunk_dh_.data(), n, d), gmat(grad_weights_.score), false);
      cuda::launch(td::scatter_previous_rows_kernel<float>, td::glue_blocks(n * d), td::glue_threads, 0, stream_,
          chunk_dh_.data(), d, out_rows_.data() + c0, n, dh_.data());
      LMRL_CUDA_CHECK_LAUNCH("transformer_detail::scatter_previous_rows_kernel");
    }
    trunk_backward();
  }

  // ----------------------------------------------------------------- backward

  void backward(const float* grad_logp, const float* grad_entropy) {
    const char* f = "lmrl::cuda::transformer_gpu::backward";
    lmrl::detail::require(last_forward_ == forward_kind::log_probs, f, ": call log_probs on the batch first");
    namespace td = transformer_detail;
    if (R_ == 0) return;  // no output row: the loss does not depend on the parameters (adding zeros changes nothing)
    const index_t N = B_ * T_, V = config_.vocab_size, d = config_.hidden_size, C = chunk_;
    if (grad_logp != nullptr) {
      cuda::launch(td::gather_values_kernel<float>, td::glue_blocks(R_), td::glue_threads, 0, stream_, grad_logp,
          out_rows_.data(), R_, out_gl_.data());
      LMRL_CUDA_CHECK_LAUNCH("transformer_detail::gather_values_kernel (grad_logp)");
    }
    if (grad_entropy != nullptr) {
      cuda::launch(td::gather_values_kernel<float>, td::glue_blocks(R_), td::glue_threads, 0, stream_, grad_entropy,
          out_rows_.data(), R_, out_ge_.data());
      LMRL_CUDA_CHECK_LAUNCH("transformer_detail::gather_values_kernel (grad_entropy)");
    }

    // Output layer, chunk by chunk: dlogits -> dh (rows t-1) and d lm_head.
    LMRL_CUDA_CHECK(cudaMemsetAsync(dh_.data(), 0, static_cast<std::size_t>(N * d) * sizeof(float), stream_));
    for (index_t c0 = 0; c0 < R_; c0 += C) {
      const index_t n = std::min(C, R_ - c0);
      const linear_operand h = chunk_logits(c0, n);
      logprob_backward<std::int32_t>(logits_.data(), n, V, V, out_targets_.data() + c0, temperature_,
                                     out_lse_.data() + c0, out_entropy_.data() + c0,
                                     grad_logp != nullptr ? out_gl_.data() + c0 : nullptr,
                                     grad_entropy != nullptr ? out_ge_.data() + c0 : nullptr, dlogits_.data(), V,
                                     stream_, target_check::caller_checked);
      output_chunk_backward(c0, n, h);
    }
    trunk_backward();
  }

 private:
  // ------------------------------------------------------------ the batch

  // Copies ids and the mask into the workspace, checks them, computes positions and the output rows;
  // waits for the stream once (R_ and the checks).
  void read_batch(const std::int32_t* tokens, const float* mask, index_t batch, index_t seq_len, const char* f) {
    namespace td = transformer_detail;
    lmrl::detail::require(batch <= 65535, f, ": batch = ", batch, " sequences is over 65535 (the attention's grid)");
    B_ = batch;
    T_ = seq_len;
    R_ = 0;
    chunk_ = chunk_rows();  // the forward's chunking and temperature serve its backward (the workspace fits them)
    temperature_ = temperature;
    // bf16 and fp8: the parameters rounded (fp8: the layers' weights also quantized) when they changed
    linear_.begin(precision, params_.data(), params_.size(),
                  precision == gemm_precision::fp8 ? fp8_weights() : std::vector<device_matrix<const float>>{},
                  weights_version_);
    const index_t N = B_ * T_;
    reserve(N);
    status_.poison();  // every word ~0: no bad index yet
    cuda::launch(td::prepare_rows_kernel<float>, td::glue_blocks(B_), td::glue_threads, 0, stream_, tokens, mask, B_,
        T_, config_.vocab_size, config_.max_position_embeddings, ids_.data(), segments_.data(), positions_.data(),
        counts_.data(), status_.data());
    LMRL_CUDA_CHECK_LAUNCH("transformer_detail::prepare_rows_kernel");
    cuda::launch(td::scan_counts_kernel<index_t>, 1, 1, 0, stream_, counts_.data(), B_, offsets_.data(),
        status_.data());
    LMRL_CUDA_CHECK_LAUNCH("transformer_detail::scan_counts_kernel");
    cuda::launch(td::collect_rows_kernel<float>, td::glue_blocks(B_), td::glue_threads, 0, stream_, segments_.data(),
        ids_.data(), B_, T_, offsets_.data(), out_rows_.data(), out_targets_.data());
    LMRL_CUDA_CHECK_LAUNCH("transformer_detail::collect_rows_kernel");
    std::array<unsigned long long, td::status_words> status{};
    LMRL_CUDA_CHECK(cudaMemcpyAsync(status.data(), status_.data(), sizeof(status), cudaMemcpyDeviceToHost, stream_));
    LMRL_CUDA_CHECK(cudaStreamSynchronize(stream_));

    if (status[0] != td::no_index) {
      const auto r = static_cast<index_t>(status[0]);
      lmrl::detail::fail(f, ": attention_mask(", r / T_, ", ", r % T_, ") = ", read_back(mask + r),
                         " but a mask holds 0 (padding), 1 (a token), or the number of the packed sequence a token"
                         " belongs to (a whole number up to 65536)");
    }
    if (status[4] != td::no_index) {
      const auto r = static_cast<index_t>(status[4]);
      lmrl::detail::fail(f, ": attention_mask(", r / T_, ", ", r % T_, ") = ", read_back(mask + r),
                         " comes after a larger sequence number in its row: on the GPU the numbers of packed"
                         " sequences must increase along a row (1, 1, 2, 2, 3, 0), as pack_sequences writes them");
    }
    if (status[1] != td::no_index) {
      const auto r = static_cast<index_t>(status[1]);
      lmrl::detail::fail(f, ": tokens(", r / T_, ", ", r % T_, ") = ", read_back(tokens + r),
                         " is out of range for vocab_size = ", config_.vocab_size);
    }
    if (status[2] != td::no_index) {
      const auto r = static_cast<index_t>(status[2]);
      lmrl::detail::fail(f, ": sequence ", r / T_, " has more real tokens than max_position_embeddings = ",
                         config_.max_position_embeddings);
    }
    R_ = static_cast<index_t>(status[3]);
  }

  template <class U>
  U read_back(const U* device_value) const {
    U v{};
    LMRL_CUDA_CHECK(cudaMemcpyAsync(&v, device_value, sizeof(U), cudaMemcpyDeviceToHost, stream_));
    LMRL_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return v;
  }

  // out [N] = 0, then out[out_rows[k]] = compact[k].
  void scatter_outputs(const float* compact, float* out, index_t N) {
    namespace td = transformer_detail;
    LMRL_CUDA_CHECK(cudaMemsetAsync(out, 0, static_cast<std::size_t>(N) * sizeof(float), stream_));
    if (R_ == 0) return;
    cuda::launch(td::scatter_values_kernel<float>, td::glue_blocks(R_), td::glue_threads, 0, stream_, compact,
        out_rows_.data(), R_, out);
    LMRL_CUDA_CHECK_LAUNCH("transformer_detail::scatter_values_kernel");
  }

  index_t chunk_rows() const {
    if (logit_chunk_rows > 0) return logit_chunk_rows;
    return std::clamp<index_t>((index_t{1} << 22) / config_.vocab_size, 16, 256);
  }

  // The final-normed hidden rows (t-1) of output rows [c0, c0 + n) into chunk_h_.
  void gather_chunk_hidden(index_t c0, index_t n) {
    namespace td = transformer_detail;
    const index_t d = config_.hidden_size;
    cuda::launch(td::gather_previous_rows_kernel<float>, td::glue_blocks(n * d), td::glue_threads, 0, stream_,
        hf_.data(), d, out_rows_.data() + c0, n, chunk_h_.data());
    LMRL_CUDA_CHECK_LAUNCH("transformer_detail::gather_previous_rows_kernel");
  }

  // Those rows times lm_head^T into logits_; returns the rows as an operand (slot 1) for lm_head's gradient.
  linear_operand chunk_logits(index_t c0, index_t n) {
    gather_chunk_hidden(c0, n);
    const linear_operand h = operand(1, cmat(chunk_h_.data(), n, config_.hidden_size));
    nt(h, weight(weights_.lm_head), mat(logits_.data(), n, config_.vocab_size));
    return h;
  }

  // ------------------------------------------------------------ the forward pass to the final norm
  void forward_hidden() {
    const transformer_config& c = config_;
    const index_t N = B_ * T_, d = c.hidden_size, H = c.num_attention_heads, G = c.num_key_value_heads,
                  hd = c.head_dim(), qd = H * hd, kvd = c.kv_dim(), ffn = c.intermediate_size,
                  layers = c.num_hidden_layers, P = c.max_position_embeddings;
    const double eps = c.rms_norm_eps;
    embedding_forward(weights_.embed.data, c.vocab_size, d, ids_.data(), segments_.data(), N, act(xs_, 0, N, d),
                      stream_);
    for (index_t l = 0; l < layers; ++l) {
      const auto& lw = weights_.layers[static_cast<std::size_t>(l)];
      float *x = act(xs_, l, N, d), *h1 = act(h1_, l, N, d), *q = act(q_, l, N, qd), *k = act(k_, l, N, kvd),
            *v = act(v_, l, N, kvd), *o = act(attn_, l, N, qd), *xm = act(xmid_, l, N, d), *h2 = act(h2_, l, N, d),
            *gate = act(gate_, l, N, ffn), *up = act(up_, l, N, ffn), *a = act(act_, l, N, ffn),
            *next = act(xs_, l + 1, N, d);
      rms_norm_forward(cptr(x), lw.input_norm.data, N, d, eps, h1, act(inv1_, l, N, 1), stream_);
      const linear_operand h1_in = operand(0, cmat(h1, N, d));  // rounded once (bf16) for q, k and v
      nt(h1_in, weight(lw.wq), mat(q, N, qd));
      nt(h1_in, weight(lw.wk), mat(k, N, kvd));
      nt(h1_in, weight(lw.wv), mat(v, N, kvd));
      if (c.attention_bias) {
        add_bias(mat(q, N, qd), cptr(lw.bq.data), stream_);
        add_bias(mat(k, N, kvd), cptr(lw.bk.data), stream_);
        add_bias(mat(v, N, kvd), cptr(lw.bv.data), stream_);
      }
      rope_forward(cptr(rope_cos_.data()), rope_sin_.data(), hd, P, q, positions_.data(), N, H, stream_);
      rope_forward(cptr(rope_cos_.data()), rope_sin_.data(), hd, P, k, positions_.data(), N, G, stream_);
      causal_attention_forward(q, k, v, segments_.data(), o, act(lse_, l, N, H), B_, T_, H, G, hd, stream_);
      copy(xm, x, N * d);  // x_mid = x + o_proj(o)
      nt(cmat(o, N, qd), weight(lw.wo), mat(xm, N, d), true);
      rms_norm_forward(cptr(xm), lw.post_attention_norm.data, N, d, eps, h2, act(inv2_, l, N, 1), stream_);
      const linear_operand h2_in = operand(0, cmat(h2, N, d));  // once for gate and up
      nt(h2_in, weight(lw.w_gate), mat(gate, N, ffn));
      nt(h2_in, weight(lw.w_up), mat(up, N, ffn));
      swiglu_forward(cptr(gate), up, N * ffn, a, stream_);
      copy(next, xm, N * d);  // x_next = x_mid + down(a)
      nt(cmat(a, N, ffn), weight(lw.w_down), mat(next, N, d), true);
    }
    rms_norm_forward(cptr(act(xs_, layers, N, d)), weights_.final_norm.data, N, d, eps, hf_.data(), invf_.data(),
                     stream_);
  }

  // ------------------------------------------------------------ the backward pass below the output layer
  // From d(loss)/d(final-normed hidden states) in dh_ to every trunk gradient (ADDED).
  void trunk_backward() {
    const transformer_config& c = config_;
    const index_t N = B_ * T_, d = c.hidden_size, H = c.num_attention_heads, G = c.num_key_value_heads,
                  hd = c.head_dim(), qd = H * hd, kvd = c.kv_dim(), ffn = c.intermediate_size,
                  layers = c.num_hidden_layers, P = c.max_position_embeddings;
    float *dx = dx_.data(), *dh = dh_.data(), *dq = dq_.data(), *dk = dk_.data(), *dv = dv_.data(),
          *dattn = dattn_.data(), *dgate = dgate_.data(), *dup = dup_.data(), *dact = dact_.data();
    // Final norm.
    LMRL_CUDA_CHECK(cudaMemsetAsync(dx, 0, static_cast<std::size_t>(N * d) * sizeof(float), stream_));
    rms_norm_backward(cptr(act(xs_, layers, N, d)), weights_.final_norm.data, invf_.data(), dh, N, d, dx,
                      grad_weights_.final_norm.data, stream_);

    for (index_t l = layers; l-- > 0;) {
      const auto& lw = weights_.layers[static_cast<std::size_t>(l)];
      const auto& lg = grad_weights_.layers[static_cast<std::size_t>(l)];
      // MLP: x_out = x_mid + down(silu(gate(h2)) * up(h2))
      linear_backward(cmat(dx, N, d), operand(1, cmat(act(act_, l, N, ffn), N, ffn)), weight(lw.w_down),
                      mat(dact, N, ffn), gmat(lg.w_down), false);
      swiglu_backward(cptr(act(gate_, l, N, ffn)), act(up_, l, N, ffn), dact, N * ffn, dgate, dup, stream_);
      const linear_operand h2 = operand(1, cmat(act(h2_, l, N, d), N, d));  // rounded once (bf16) for both
      linear_backward(cmat(dgate, N, ffn), h2, weight(lw.w_gate), mat(dh, N, d), gmat(lg.w_gate), false);
      linear_backward(cmat(dup, N, ffn), h2, weight(lw.w_up), mat(dh, N, d), gmat(lg.w_up), true);
      rms_norm_backward(cptr(act(xmid_, l, N, d)), lw.post_attention_norm.data, act(inv2_, l, N, 1), dh, N, d, dx,
                        lg.post_attention_norm.data, stream_);
      // Attention: x_mid = x_in + o_proj(attn(rope(q), rope(k), v))
      linear_backward(cmat(dx, N, d), operand(1, cmat(act(attn_, l, N, qd), N, qd)), weight(lw.wo),
                      mat(dattn, N, qd), gmat(lg.wo), false);
      causal_attention_backward(act(q_, l, N, qd), act(k_, l, N, kvd), act(v_, l, N, kvd), segments_.data(),
                                act(attn_, l, N, qd), act(lse_, l, N, H), dattn, dq, dk, dv, attn_workspace_.data(),
                                B_, T_, H, G, hd, stream_);
      rope_backward(cptr(rope_cos_.data()), rope_sin_.data(), hd, P, dq, positions_.data(), N, H, stream_);
      rope_backward(cptr(rope_cos_.data()), rope_sin_.data(), hd, P, dk, positions_.data(), N, G, stream_);
      const linear_operand h1 = operand(1, cmat(act(h1_, l, N, d), N, d));  // once for q, k and v
      linear_backward(cmat(dq, N, qd), h1, weight(lw.wq), mat(dh, N, d), gmat(lg.wq), false);
      linear_backward(cmat(dk, N, kvd), h1, weight(lw.wk), mat(dh, N, d), gmat(lg.wk), true);
      linear_backward(cmat(dv, N, kvd), h1, weight(lw.wv), mat(dh, N, d), gmat(lg.wv), true);
      if (c.attention_bias) {
        add_column_sums<float>(mat(dq, N, qd), lg.bq.data, stream_);
        add_column_sums<float>(mat(dk, N, kvd), lg.bk.data, stream_);
        add_column_sums<float>(mat(dv, N, kvd), lg.bv.data, stream_);
      }
      rms_norm_backward(cptr(act(xs_, l, N, d)), lw.input_norm.data, act(inv1_, l, N, 1), dh, N, d, dx,
                        lg.input_norm.data, stream_);
    }
    embedding_backward(cptr(dx), ids_.data(), segments_.data(), N, d, grad_weights_.embed.data, c.vocab_size,
                       embedding_workspace_.data(), embedding_workspace_.size(), stream_);
  }

  // The output layer's backward for output rows [c0, c0 + n) from dlogits_ (h: their hidden rows, the chunk's
  // operand): d lm_head, and dh_ of rows t - 1 (each source row feeds one output row: a plain copy).
  void output_chunk_backward(index_t c0, index_t n, const linear_operand& h) {
    namespace td = transformer_detail;
    const index_t V = config_.vocab_size, d = config_.hidden_size;
    linear_backward(cmat(dlogits_.data(), n, V), h, weight(weights_.lm_head), mat(chunk_dh_.data(), n, d),
                    gmat(grad_weights_.lm_head), false);
    cuda::launch(td::scatter_previous_rows_kernel<float>, td::glue_blocks(n * d), td::glue_threads, 0, stream_,
        chunk_dh_.data(), d, out_rows_.data() + c0, n, dh_.data());
    LMRL_CUDA_CHECK_LAUNCH("transformer_detail::scatter_previous_rows_kernel");
  }

  // read_batch and the layers, for hidden_states, logits and logit_loss_backward.
  void trunk_forward(const std::int32_t* tokens, const float* mask, index_t batch, index_t seq_len, const char* f) {
    last_forward_ = forward_kind::none;
    lmrl::detail::require(batch > 0 && seq_len > 0, f, ": the batch is empty ([", batch, " x ", seq_len, "])");
    lmrl::detail::require(tokens != nullptr && mask != nullptr, f,
                          ": tokens and mask must be device pointers, not null");
    read_batch(tokens, mask, batch, seq_len, f);
    forward_hidden();
  }

  // dst [B*T x width] = src with the padded rows 0.
  void copy_real_rows(const float* src, index_t width, float* dst) {
    const index_t N = B_ * T_;
    cuda::launch(transformer_detail::copy_real_rows_kernel<float>, transformer_detail::glue_blocks(N * width),
        transformer_detail::glue_threads, 0, stream_, src, N, width, segments_.data(), dst);
    LMRL_CUDA_CHECK_LAUNCH("transformer_detail::copy_real_rows_kernel");
  }

  // ------------------------------------------------------------ products at the last forward's precision
  // (w a weight of the parameter buffer; an activation is a float matrix or an operand from operand(), rounded
  // once at bf16 for the products it feeds)
  linear_operand operand(int slot, device_matrix<const float> m) { return linear_.operand(slot, m); }
  template <class Activation>
  void nt(const Activation& x, device_matrix<const float> w, device_matrix<float> y, bool acc = false) {
    linear_.nt(x, w, y, acc);
  }
  // The backward of y = x . w^T: dx (+)= dy . w (added when accumulate_dx) and dw += dy^T . x, with dy an
  // operand rounded once (bf16, slot 0) for both; x is an operand too (slot 1), often shared with another layer.
  void linear_backward(device_matrix<const float> dy, const linear_operand& x, device_matrix<const float> w,
                       device_matrix<float> dx, device_matrix<float> dw, bool accumulate_dx) {
    const linear_operand g = operand(0, dy);
    linear_.nn(g, w, dx, accumulate_dx);
    linear_.tn(g, x, dw, true);
  }

  // ------------------------------------------------------------ storage

  // Grows the workspace to hold n = B*T rows (never shrinks: later batches reuse it).
  void reserve(index_t n) {
    const transformer_config& c = config_;
    const index_t L = c.num_hidden_layers, d = c.hidden_size, H = c.num_attention_heads, qd = H * c.head_dim(),
                  kvd = c.kv_dim(), ffn = c.intermediate_size, V = c.vocab_size, C = chunk_;
    for (auto* a : {&ids_, &out_targets_}) grow(*a, n);
    for (auto* a : {&positions_, &out_rows_}) grow(*a, n);
    grow(counts_, B_);
    grow(offsets_, B_);
    grow(out_lse_, n);
    for (auto* a : {&segments_, &out_logp_, &out_entropy_, &out_gl_, &out_ge_, &invf_}) grow(*a, n);
    grow(xs_, (L + 1) * n * d);
    for (auto* a : {&h1_, &xmid_, &h2_}) grow(*a, L * n * d);
    for (auto* a : {&q_, &attn_}) grow(*a, L * n * qd);
    for (auto* a : {&k_, &v_}) grow(*a, L * n * kvd);
    for (auto* a : {&gate_, &up_, &act_}) grow(*a, L * n * ffn);
    for (auto* a : {&inv1_, &inv2_}) grow(*a, L * n);
    grow(lse_, L * n * H);
    grow(hf_, n * d);
    for (auto* a : {&dx_, &dh_}) grow(*a, n * d);
    for (auto* a : {&dq_, &dattn_}) grow(*a, n * qd);
    for (auto* a : {&dk_, &dv_}) grow(*a, n * kvd);
    for (auto* a : {&dgate_, &dup_, &dact_}) grow(*a, n * ffn);
    grow(attn_workspace_, causal_attention_backward_workspace_size(B_, T_, H));
    for (auto* a : {&logits_, &dlogits_}) grow(*a, C * V);
    for (auto* a : {&chunk_h_, &chunk_dh_}) grow(*a, C * d);
    grow(embedding_workspace_, static_cast<index_t>(embedding_backward_workspace_bytes(n, V)));
  }

  // cuda::grow: a new buffer is filled with NaN bytes (-1 for integers): what is read before it is written shows.
  template <class U>
  void grow(device_array<U>& a, index_t n) {
    cuda::grow(a, static_cast<std::size_t>(n), stream_);
  }

  void copy(float* dst, const float* src, index_t count) {
    LMRL_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<std::size_t>(count) * sizeof(float),
                                    cudaMemcpyDeviceToDevice, stream_));
  }

  void require_size(const char* f, std::size_t n) const {
    lmrl::detail::require(n == params_.size(), f, ": ", n, " values for a buffer of ", params_.size());
  }
  void download(const char* what, const device_array<float>& buffer, std::span<float> out) const {
    require_size(what, out.size());
    if (out.empty()) return;
    LMRL_CUDA_CHECK(cudaMemcpyAsync(out.data(), buffer.data(), out.size_bytes(), cudaMemcpyDeviceToHost, stream_));
    LMRL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  // Layer l's [n x width] slice of a per-layer activation buffer (slices packed by the current n, as on the CPU).
  static float* act(device_array<float>& buffer, index_t l, index_t n, index_t width) {
    return buffer.data() + l * n * width;
  }
  static const float* cptr(const float* p) { return p; }
  static device_matrix<float> mat(float* p, index_t rows, index_t cols) { return {p, rows, cols}; }
  static device_matrix<const float> cmat(const float* p, index_t rows, index_t cols) { return {p, rows, cols}; }
  static device_matrix<const float> weight(const matrix_view<float>& w) { return {w.data, w.shape[0], w.shape[1]}; }
  static device_matrix<float> gmat(const matrix_view<float>& g) { return {g.data, g.shape[0], g.shape[1]}; }

  static std::uint64_t next_serial() {
    static std::atomic<std::uint64_t> last{0};
    return ++last;
  }

  std::uint64_t serial_ = next_serial();
  transformer_config config_;
  parameter_layout layout_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<cublas_handle> blas_;  // behind a pointer: the handle is not movable
  device_array<float> params_, grad_;
  std::uint64_t weights_version_ = 0;  // raised by every change of params_ (parameters_changed)
  transformer_weights<float> weights_, grad_weights_;  // device pointers
  device_array<float> rope_cos_, rope_sin_;
  device_array<unsigned long long> status_;

  // the batch of the last log_probs call
  index_t B_ = 0, T_ = 0, R_ = 0;  // R_: output rows
  index_t chunk_ = 0;               // output rows per chunk
  double temperature_ = 1.0;
  linear_products linear_;  // the products at the forward's precision, for its backward too
  enum class forward_kind { none, log_probs, values };
  forward_kind last_forward_ = forward_kind::none;  // what backward / backward_values may follow
  device_array<std::int32_t> ids_, out_targets_;
  device_array<index_t> positions_, counts_, offsets_, out_rows_;
  device_array<double> out_lse_;
  device_array<float> segments_;  // [B*T] the mask's values (0 padding, else the token's sequence number)
  device_array<float> out_logp_, out_entropy_, out_gl_, out_ge_;

  // saved activations, per layer [layers x rows x width]
  device_array<float> xs_, h1_, q_, k_, v_, attn_, xmid_, h2_, gate_, up_, act_, inv1_, inv2_, lse_, invf_, hf_;
  // backward scratch, one layer's worth
  device_array<float> dx_, dh_, dq_, dk_, dv_, dattn_, dgate_, dup_, dact_, attn_workspace_;
  // output-layer chunk
  device_array<float> logits_, dlogits_, chunk_h_, chunk_dh_;
  device_array<unsigned char> embedding_workspace_;
};

}  // namespace lmrl::cuda
