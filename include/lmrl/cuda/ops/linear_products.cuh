// The products of the model's linear layers on the GPU at a chosen precision:
// float activations times weights that live in one float parameter buffer, and
// the weight gradients. fp32 and tf32 go straight to cuda/ops/matmul.cuh; bf16
// rounds the operands to bfloat16 first (round to nearest even, 7 stored mantissa
// bits; fp8 below) and multiplies on the bf16 tensor cores with float accumulation and a
// float result, the way mixed-precision training keeps float master weights.
//
//   linear_products products(blas, stream);
//   products.begin(gemm_precision::bf16, params, n);   // rounds the parameter buffer once (bf16 only)
//   products.nt(x, w, y);          // y  (+)= x . w^T   (w [out x in] inside the parameter buffer)
//   products.nn(dy, w, dx);        // dx (+)= dy . w
//   products.tn(dy, x, dw, true);  // dw (+)= dy^T . x  (activations only; dw stays float)
//
//   // An activation that feeds several products, rounded once (bf16) in operand slot 0 or 1:
//   const linear_operand h = products.operand(0, h1);
//   products.nt(h, wq, q);  products.nt(h, wk, k);  products.nt(h, wv, v);
//
// With bf16, begin() writes the whole buffer's bf16 copy (2 bytes a parameter,
// kept until the next begin: call it again whenever the float parameters
// change; given a weights version, begin() keeps the copy while the version,
// the buffer and the precision are the last call's), and an activation is
// rounded into one of two bf16 workspaces (the operand slots, each grown to the
// largest operand seen): by operand(), once for all the products it feeds, or
// by the product itself when it is given a float matrix (slot 0; tn's second
// operand slot 1). An operand is good until its slot is used again or begin()
// is called: a stale one is refused.
// At fp32 and tf32 an operand is the float matrix itself, and nothing is rounded. The accumulation and the
// outputs stay float, so accumulating products (the residual adds, the
// gradient sums) lose nothing beyond the inputs' rounding.
//
// fp8 is DeepSeek-V3's recipe for the forward products of the layers (its report, section 3.3): begin()
// also quantizes the weights it is given in a list into 128 x 128 blocks (1 more byte a weight), and nt
// with such a weight quantizes the activation into 1 x 128 tiles (once per operand, like the bf16
// rounding) and multiplies in FP8 E4M3 with float block scales (cuda/ops/fp8_gemm.cuh: Hopper's tensor
// cores, or CUDA cores elsewhere). Every other product - the output head, nn and tn of the backward pass,
// which treats the forward's quantization as the identity - runs at bf16 as above.
//
// Numerics: bf16 inputs carry a relative rounding error up to 2^-8 each; a
// dot product of such inputs is off by about that times its terms' scale, and
// through the test model the log-probs move by 4e-3 .. 1.2e-2 of their scale
// (measured on the CPU by tools/precision_emulation). tf32: 2^-11, 4e-4 .. 3e-3. fp8: E4M3 keeps 3 mantissa
// bits, a relative error up to 2^-4 on each input of the layers' forward products.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "lmrl/cuda/check.cuh"
#include "lmrl/cuda/launch.cuh"
#include "lmrl/cuda/device_array.cuh"
#include "lmrl/cuda/ops/fp8_gemm.cuh"
#include "lmrl/cuda/ops/matmul.cuh"
#include "lmrl/error.hpp"

namespace lmrl::cuda {

namespace linear_detail {

// dst [rows x cols] (contiguous) = bf16(src [rows x cols], row stride ld).
template <class T>
__global__ void round_to_bf16_kernel(const T* src, index_t rows, index_t cols, index_t ld, __nv_bfloat16* dst) {
  const index_t n = rows * cols, step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += step) {
    const index_t i = e / cols, j = e % cols;
    dst[e] = __float2bfloat16_rn(src[i * ld + j]);
  }
}

}  // namespace linear_detail

// dst[0 .. rows*cols) = src rounded to bf16 (round to nearest even), row by row; dst is contiguous.
inline void round_to_bf16(device_matrix<const float> src, __nv_bfloat16* dst, cudaStream_t stream = nullptr) {
  detail::require_layout("cuda::round_to_bf16", "src", src);
  if (src.rows == 0 || src.cols == 0) return;
  cuda::launch(linear_detail::round_to_bf16_kernel<float>, detail::blocks_for(src.rows * src.cols, 256), 256, 0, stream,
      src.data, src.rows, src.cols, src.ld, dst);
  LMRL_CUDA_CHECK_LAUNCH("round_to_bf16");
}

// An activation operand of linear_products: the float matrix and, at bf16 and fp8, the operand slot whose
// rounded (bf16) or quantized (fp8 tiles) copies of it the products use.
struct linear_operand {
  device_matrix<const float> value;
  int slot = -1;            // -1: used as it is (fp32, tf32)
  std::uint64_t stamp = 0;  // which of the slot's operands this is
};

class linear_products {
 public:
  linear_products() = default;  // unusable until assigned one built from a handle
  // `blas` must outlive this object and be bound to `stream`: the roundings and quantizations queued on
  // `stream` are read by the products queued on the handle's, with nothing else ordering the two.
  linear_products(const cublas_handle& blas, cudaStream_t stream) : blas_(&blas), stream_(stream), fp8_(blas) {
    lmrl::detail::require(blas.stream() == stream, "cuda::linear_products: the cuBLAS handle is bound to another "
                          "stream than the one given");
  }

  // Products from here on run at `precision` with weights inside [params, params + n). With bf16 and fp8 the
  // buffer is rounded into the bf16 copy now (queued on the stream); with fp8 the weights listed in
  // `fp8_weights` (each inside the buffer) are quantized into 128 x 128 blocks too: their nt products run in
  // FP8, every other product at bf16. The list is ignored at the other precisions.
  // weights_version: a count the owner of the buffer raises whenever its values change (transformer_gpu's
  // weights_version()). When it, the buffer, the precision and the fp8 list are the last call's, the copies
  // made then are still right and nothing is rounded again; without it begin() always rounds.
  void begin(gemm_precision precision, const float* params, std::size_t n,
             std::span<const device_matrix<const float>> fp8_weights = {},
             std::optional<std::uint64_t> weights_version = std::nullopt) {
    lmrl::detail::require(blas_ != nullptr, "cuda::linear_products::begin: no cuBLAS handle (default-constructed)");
    lmrl::detail::require(params != nullptr || n == 0, "cuda::linear_products::begin: null parameter buffer");
    precision_ = precision;
    params_ = params;
    size_ = n;
    for (auto& slot : slots_) ++slot.stamp;  // every operand made before is stale
    fp8_index_.clear();
    if (precision != gemm_precision::bf16 && precision != gemm_precision::fp8) {
      made_from_.reset();
      return;
    }
    const bool fp8 = precision == gemm_precision::fp8;
    weight_copies now{precision, params, n, weights_version.value_or(0), {}};
    if (fp8)
      for (const auto& w : fp8_weights) now.fp8_list.push_back({w.data, w.rows, w.cols, w.ld});
    const bool current = weights_version.has_value() && made_from_ == now;
    made_from_.reset();  // until the copies below are queued (a throw leaves none claimed)
    if (!current) {
      ++weight_roundings_;
      grow(weights_bf16_, n, stream_);
      round_to_bf16(device_matrix<const float>(params, 1, static_cast<index_t>(n)), weights_bf16_.data(), stream_);
    }
    if (fp8) {
      if (fp8_weights_.size() < fp8_weights.size()) fp8_weights_.resize(fp8_weights.size());
      for (std::size_t i = 0; i < fp8_weights.size(); ++i) {
        const device_matrix<const float>& w = fp8_weights[i];
        weight_offset("begin (an fp8 weight)", w);  // inside the buffer
        lmrl::detail::require(fp8_index_.emplace(w.data, std::make_pair(i, w.ld)).second,
                              "cuda::linear_products::begin: an fp8 weight is listed twice");
        if (!current) quantize_fp8_weights(w, fp8_weights_[i], stream_);
      }
    }
    if (weights_version.has_value()) made_from_ = std::move(now);
  }
  // How many begin() calls rounded the parameter buffer (bf16, fp8): the ones a weights version did not spare.
  std::uint64_t weight_roundings() const { return weight_roundings_; }

  gemm_precision precision() const { return precision_; }
  // Device bytes held for bf16 and fp8: the parameters' copies, the two operand slots and the FP8 products'
  // output workspace (a decoder compares it across a pass: a change means a buffer moved).
  std::size_t workspace_bytes() const {
    std::size_t bytes = weights_bf16_.bytes();
    for (const auto& w : fp8_weights_) bytes += w.codes.bytes() + w.scales.bytes();
    for (const auto& slot : slots_) bytes += slot.bf16.bytes() + slot.fp8.codes.bytes() + slot.fp8.scales.bytes();
    return bytes + fp8_.workspace_bytes();
  }
  // Whether y = x . w^T runs in FP8 (precision fp8 and w listed at begin()).
  bool fp8_weight(device_matrix<const float> w) const { return find_fp8(w) != nullptr; }

  // m as an operand of the products that follow, in operand slot `slot` (0 or 1), which makes the slot's
  // earlier operand stale. Its bf16 copy (fp8: its 1 x 128 tiles) is made when a product first needs it; at
  // bf16 that is now. m must not change before the products that use it are queued.
  linear_operand operand(int slot, device_matrix<const float> m) {
    detail::require_layout("cuda::linear_products", "operand", m);
    lmrl::detail::require(slot == 0 || slot == 1, "cuda::linear_products::operand: slot ", slot,
                          " (there are slots 0 and 1)");
    if (precision_ != gemm_precision::bf16 && precision_ != gemm_precision::fp8) return {m, -1, 0};
    operand_slot& s = slots_[static_cast<std::size_t>(slot)];
    s.source = m;
    s.has_bf16 = s.has_fp8 = false;
    const linear_operand made{m, slot, ++s.stamp};
    if (precision_ == gemm_precision::bf16) rounded("operand", made);
    return made;
  }

  // y (+)= x . w^T
  void nt(const linear_operand& x, device_matrix<const float> w, device_matrix<float> y, bool accumulate = false) {
    if (!reduced()) return matmul_nt<float>(*blas_, x.value, w, y, accumulate, precision_);
    if (const fp8_blocks* w8 = find_fp8(w)) {
      fp8_.gemm(quantized("nt", x), *w8, y, accumulate);
      return;
    }
    matmul_nt<__nv_bfloat16, float>(*blas_, rounded("nt", x), weight("nt", w), y, accumulate);
  }
  // dx (+)= dy . w
  void nn(const linear_operand& dy, device_matrix<const float> w, device_matrix<float> dx, bool accumulate = false) {
    if (!reduced()) return matmul_nn<float>(*blas_, dy.value, w, dx, accumulate, precision_);
    matmul_nn<__nv_bfloat16, float>(*blas_, rounded("nn", dy), weight("nn", w), dx, accumulate);
  }
  // dw (+)= dy^T . x
  void tn(const linear_operand& dy, const linear_operand& x, device_matrix<float> dw, bool accumulate = false) {
    if (!reduced()) return matmul_tn<float>(*blas_, dy.value, x.value, dw, accumulate, precision_);
    matmul_tn<__nv_bfloat16, float>(*blas_, rounded("tn", dy), rounded("tn", x), dw, accumulate);
  }

  // The same products of float matrices, each operand made for this product alone (slot 0; tn's x slot 1).
  void nt(device_matrix<const float> x, device_matrix<const float> w, device_matrix<float> y, bool accumulate = false) {
    nt(operand(0, x), w, y, accumulate);
  }
  void nn(device_matrix<const float> dy, device_matrix<const float> w, device_matrix<float> dx,
          bool accumulate = false) {
    nn(operand(0, dy), w, dx, accumulate);
  }
  void tn(device_matrix<const float> dy, device_matrix<const float> x, device_matrix<float> dw,
          bool accumulate = false) {
    const linear_operand a = operand(0, dy);
    tn(a, operand(1, x), dw, accumulate);
  }

 private:
  struct operand_slot {
    device_matrix<const float> source;
    std::uint64_t stamp = 0;  // operands made in it (and begin() calls)
    bool has_bf16 = false, has_fp8 = false;
    device_array<__nv_bfloat16> bf16;  // grown to the largest operand seen
    fp8_tiles fp8;
  };

  bool reduced() const { return precision_ == gemm_precision::bf16 || precision_ == gemm_precision::fp8; }

  // The operand's slot, which must still hold it.
  operand_slot& slot_of(const char* product, const linear_operand& m) {
    lmrl::detail::require(m.slot >= 0 && m.stamp == slots_[static_cast<std::size_t>(m.slot)].stamp,
                          "cuda::linear_products::", product, ": a ", to_string(precision_), " operand is stale (",
                          m.slot < 0 ? "made at another precision" : "its slot was used again since",
                          "): make it with operand() after begin() and use it before its slot is reused");
    return slots_[static_cast<std::size_t>(m.slot)];
  }
  // The operand's bf16 copy, rounded now if no product has needed it yet.
  device_matrix<const __nv_bfloat16> rounded(const char* product, const linear_operand& m) {
    operand_slot& s = slot_of(product, m);
    const device_matrix<const float>& v = s.source;
    if (!s.has_bf16) {
      grow(s.bf16, static_cast<std::size_t>(v.rows * v.cols), stream_);
      round_to_bf16(v, s.bf16.data(), stream_);
      s.has_bf16 = true;
    }
    return {s.bf16.data(), v.rows, v.cols};
  }
  // The operand's 1 x 128 FP8 tiles, quantized now if no product has needed them yet.
  const fp8_tiles& quantized(const char* product, const linear_operand& m) {
    operand_slot& s = slot_of(product, m);
    if (!s.has_fp8) {
      quantize_fp8_activations(s.source, s.fp8, stream_);
      s.has_fp8 = true;
    }
    return s.fp8;
  }

  // w's offset in the parameter buffer given to begin(), where it must lie.
  std::size_t weight_offset(const char* product, device_matrix<const float> w) const {
    detail::require_layout("cuda::linear_products", "weight", w);
    const auto base = reinterpret_cast<std::uintptr_t>(params_), at = reinterpret_cast<std::uintptr_t>(w.data);
    const std::size_t end = w.rows == 0 ? 0 : static_cast<std::size_t>((w.rows - 1) * w.ld + w.cols);
    const bool inside = params_ != nullptr && at >= base && (at - base) % sizeof(float) == 0 &&
                        (at - base) / sizeof(float) + end <= size_;
    lmrl::detail::require(inside, "cuda::linear_products::", product, ": with ", to_string(precision_),
                          " the weight must lie inside the parameter buffer given to begin()");
    return (at - base) / sizeof(float);
  }
  // The bf16 copy of w.
  device_matrix<const __nv_bfloat16> weight(const char* product, device_matrix<const float> w) const {
    return {weights_bf16_.data() + weight_offset(product, w), w.rows, w.cols, w.ld};
  }
  // w's FP8 blocks when it was listed at begin() (precision fp8), else nullptr; the shape must be the listed one.
  const fp8_blocks* find_fp8(device_matrix<const float> w) const {
    const auto found = fp8_index_.find(w.data);
    if (found == fp8_index_.end()) return nullptr;
    const auto [index, ld] = found->second;
    const fp8_blocks& b = fp8_weights_[index];
    lmrl::detail::require(b.rows == w.rows && b.cols == w.cols && ld == w.ld,
                          "cuda::linear_products: an fp8 weight listed as ", b.rows, " x ", b.cols, " (row stride ",
                          ld, ") is used as ", w.rows, " x ", w.cols, " (row stride ", w.ld, ")");
    return &b;
  }

  // What the bf16 copy and the FP8 blocks were made from.
  struct listed_weight {
    const float* data;
    index_t rows, cols, ld;
    bool operator==(const listed_weight&) const = default;
  };
  struct weight_copies {
    gemm_precision precision;
    const float* params;
    std::size_t size;
    std::uint64_t version;
    std::vector<listed_weight> fp8_list;
    bool operator==(const weight_copies&) const = default;
  };

  const cublas_handle* blas_ = nullptr;
  cudaStream_t stream_ = nullptr;
  gemm_precision precision_ = gemm_precision::fp32;
  std::optional<weight_copies> made_from_;  // set when a weights version vouches for the copies
  std::uint64_t weight_roundings_ = 0;
  const float* params_ = nullptr;
  std::size_t size_ = 0;
  device_array<__nv_bfloat16> weights_bf16_;
  std::vector<fp8_blocks> fp8_weights_;             // kept across begin() calls: re-quantized in place
  std::map<const float*, std::pair<std::size_t, index_t>> fp8_index_;  // a listed weight -> its blocks, row stride
  std::array<operand_slot, 2> slots_;
  fp8_products fp8_;
};

}  // namespace lmrl::cuda
