// bench_gpu: the GPU figures issue 9 asks for, measured in one run on one card.
//
//   build/benchmarks/bench_gpu [small|qwen2.5-0.5b|all] [repeats]     (default: all 5)
//
//   1. the card: cuBLAS 4096^3 GEMM rates (fp32, tf32, bf16 in / float out; on
//      Hopper also FP8 E4M3 with DeepSeek-V3's block scales through cuBLASLt, and
//      the quantization of a 4096^2 activation into its 1 x 128 tiles) and
//      the device-to-device copy rate (1 GiB), the bounds the rest is read against;
//   2. training (transformer_gpu log_probs + backward of one batch), per preset and
//      product precision (fp32, tf32, bf16, fp8): tokens/s and model FLOP utilization, MFU = model FLOPs/s
//      over the bf16 GEMM rate measured in 1 (model FLOPs per token: 6 x the
//      parameters in products, lm_head included, + 6 x layers x T x heads x head_dim
//      for causal attention's two products, forward and backward);
//   3. generation (lmrl::cuda::generate, greedy, no stop, prompt of 32 tokens, 128 new
//      tokens) with fp32, bf16 and fp8 products and from q8_0 and q4_0 integer weights
//      (cuda/ops/int_gemm.cuh), without and with CUDA graphs for the decode
//      steps, at batch 1 and 64: tokens/s, and at batch 1
//      the time per token over the memory bound (every weight matrix read once per
//      token, 4 or 2 bytes a weight, 1 for fp8's layer weights, the integer formats' bytes,
//      at the rate of the copy in 1, reads and writes counted);
//   4. the fused log-prob (cuda/logprob.cuh: one pass over each row, nothing of
//      [rows x vocab] written) against the two-pass way (log_softmax written out
//      [rows x vocab], then the targets gathered and the entropy summed from it)
//      at vocab 151,936: time and the device memory each needs beyond the logits;
//   5. the optimizer step of a training step, per preset, both ways the GPU policy can
//      take it: host-stepped (parameter_uploads::when_changed: the gradient downloaded,
//      its norm, clipping and AdamW on the host, the parameters uploaded) and
//      device-stepped (device_steps: train/clip_grad.cuh and train/adamw.cuh on the
//      device buffers), in ms and as a share of the bf16 training step of 2;
//   6. the reference swapped in and out (beta, kl_coef, the logged KL) for a device-stepped
//      policy, per preset: with the reference on the host (the parameters downloaded, then
//      uploaded after each swap) and on the device (train/reference_copy.cuh: two swap kernels).
//
// Every figure is the median of `repeats` timed runs after one warm-up run
// (cudaEvent timing on the stream). Status: compiled, NOT yet run on a GPU.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "lmrl/cuda/check.cuh"
#include "lmrl/cuda/device_array.cuh"
#include "lmrl/cuda/launch.cuh"
#include "lmrl/cuda/logprob.cuh"
#include "lmrl/cuda/ops/fp8_gemm.cuh"
#include "lmrl/cuda/ops/matmul.cuh"
#include "lmrl/model/config.hpp"
#include "lmrl/model/generate.cuh"
#include "lmrl/model/parameters.hpp"
#include "lmrl/model/transformer.cuh"
#include "lmrl/quant/integer_linear.hpp"
#include "lmrl/train/adamw.cuh"
#include "lmrl/train/adamw.hpp"
#include "lmrl/train/clip_grad.cuh"
#include "lmrl/train/clip_grad.hpp"
#include "lmrl/train/reference_copy.cuh"

using namespace lmrl;
using lmrl::cuda::device_array;
using lmrl::cuda::device_matrix;
using lmrl::cuda::gemm_precision;

namespace {

int repeats = 5;

// Median seconds of `repeats` runs of f on the default stream, after one warm-up run.
double median_seconds(const std::function<void()>& f) {
  cudaEvent_t start, stop;
  LMRL_CUDA_CHECK(cudaEventCreate(&start));
  LMRL_CUDA_CHECK(cudaEventCreate(&stop));
  f();
  LMRL_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<double> t;
  for (int r = 0; r < repeats; ++r) {
    LMRL_CUDA_CHECK(cudaEventRecord(start));
    f();
    LMRL_CUDA_CHECK(cudaEventRecord(stop));
    LMRL_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    LMRL_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    t.push_back(ms * 1e-3);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(t.begin(), t.end());
  return t.size() % 2 ? t[t.size() / 2] : 0.5 * (t[t.size() / 2 - 1] + t[t.size() / 2]);
}

template <class T>
device_array<T> random_device(std::size_t n, std::uint64_t seed, double scale = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-scale, scale);
  std::vector<T> h(n);
  for (auto& x : h) x = static_cast<T>(static_cast<float>(u(rng)));
  auto d = device_array<T>::from_host(h);
  LMRL_CUDA_CHECK(cudaDeviceSynchronize());
  return d;
}

struct card_rates {
  double fp32 = 0, tf32 = 0, bf16 = 0;  // FLOP/s
  double fp8 = 0;                       // FLOP/s, block-scaled (0: not on this card)
  double fp8_quantize = 0;              // seconds to quantize a 4096^2 float activation into 1 x 128 tiles
  double copy = 0;                      // bytes/s (read + write)
};

card_rates measure_card() {
  const index_t n = 4096;
  const double flops = 2.0 * n * n * n;
  lmrl::cuda::cublas_handle h(nullptr);
  card_rates r;
  {
    auto a = random_device<float>(static_cast<std::size_t>(n * n), 1), b = random_device<float>(static_cast<std::size_t>(n * n), 2);
    device_array<float> c(static_cast<std::size_t>(n * n));
    for (const auto p : {gemm_precision::fp32, gemm_precision::tf32}) {
      const double s = median_seconds([&] {
        lmrl::cuda::matmul_nt<float>(h, {a.data(), n, n}, {b.data(), n, n}, {c.data(), n, n}, false, p);
      });
      (p == gemm_precision::fp32 ? r.fp32 : r.tf32) = flops / s;
    }
  }
  {
    auto a = random_device<__nv_bfloat16>(static_cast<std::size_t>(n * n), 3);
    auto b = random_device<__nv_bfloat16>(static_cast<std::size_t>(n * n), 4);
    device_array<float> c(static_cast<std::size_t>(n * n));
    const double s = median_seconds([&] {
      lmrl::cuda::matmul_nt<__nv_bfloat16, float>(h, {a.data(), n, n}, {b.data(), n, n}, {c.data(), n, n});
    });
    r.bf16 = flops / s;
  }
  {
    auto x = random_device<float>(static_cast<std::size_t>(n * n), 9), w = random_device<float>(static_cast<std::size_t>(n * n), 10);
    lmrl::cuda::fp8_tiles x8;
    lmrl::cuda::fp8_blocks w8;
    lmrl::cuda::quantize_fp8_weights({w.data(), n, n}, w8);
    r.fp8_quantize = median_seconds([&] { lmrl::cuda::quantize_fp8_activations({x.data(), n, n}, x8); });
    lmrl::cuda::fp8_products products(h);
    if (products.tensor_cores_apply(n, n)) {
      device_array<float> c(static_cast<std::size_t>(n * n));
      const double s = median_seconds([&] { products.gemm(x8, w8, {c.data(), n, n}); });
      r.fp8 = flops / s;
    }
  }
  {
    const std::size_t bytes = std::size_t{1} << 30;
    device_array<unsigned char> a(bytes), b(bytes);
    a.zero();
    const double s = median_seconds([&] {
      LMRL_CUDA_CHECK(cudaMemcpyAsync(b.data(), a.data(), bytes, cudaMemcpyDeviceToDevice, nullptr));
    });
    r.copy = 2.0 * static_cast<double>(bytes) / s;
  }
  return r;
}

// Parameters in the matrix products (q, k, v, o, gate, up, down per layer, and lm_head).
double product_parameters(const transformer_config& c) {
  const double d = static_cast<double>(c.hidden_size), qd = static_cast<double>(c.num_attention_heads * c.head_dim()),
               kvd = static_cast<double>(c.kv_dim()), ffn = static_cast<double>(c.intermediate_size);
  return static_cast<double>(c.num_hidden_layers) * (d * qd * 2 + d * kvd * 2 + 3 * d * ffn) +
         d * static_cast<double>(c.vocab_size);
}

transformer_parameters<float> random_model(const transformer_config& c) {
  transformer_parameters<float> p(c);
  p.initialize(1, 0.02);
  return p;
}

// Returns the seconds of a bf16 step (log_probs + backward), for the optimizer step's share.
double bench_training(const std::string& name, const transformer_config& c, const card_rates& card, index_t B,
                      index_t T) {
  const auto params = random_model(c);
  lmrl::cuda::transformer_gpu gpu(params);
  std::mt19937_64 rng(5);
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(B * T));
  for (auto& t : tokens) t = static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(c.vocab_size));
  const std::vector<float> mask(tokens.size(), 1.0f);
  auto tokens_dev = device_array<std::int32_t>::from_host(tokens);
  auto mask_dev = device_array<float>::from_host(mask);
  auto grad_logp = random_device<float>(tokens.size(), 6);
  device_array<float> logp(tokens.size());
  const double per_token = 6 * product_parameters(c) + 6.0 * static_cast<double>(c.num_hidden_layers) *
                                                           static_cast<double>(T) *
                                                           static_cast<double>(c.num_attention_heads * c.head_dim());
  double bf16_seconds = 0;
  for (const auto p : {gemm_precision::fp32, gemm_precision::tf32, gemm_precision::bf16, gemm_precision::fp8}) {
    if (p == gemm_precision::fp8 && card.fp8 == 0) continue;  // CUDA cores only: a correctness path, not a speed
    gpu.precision = p;
    const double s = median_seconds([&] {
      gpu.log_probs(tokens_dev.data(), mask_dev.data(), B, T, logp.data(), nullptr);
      gpu.backward(grad_logp.data(), nullptr);
    });
    if (p == gemm_precision::bf16) bf16_seconds = s;
    const double tok_s = static_cast<double>(B * T) / s;
    std::printf("[%s] training %td x %td, %s products: %.0f tokens/s (%.1f ms per step), %.2f model TFLOP/s, "
                "MFU %.1f%% of the bf16 GEMM rate (%.1f%% of the %s GEMM rate)\n",
                name.c_str(), B, T, lmrl::cuda::to_string(p), tok_s, s * 1e3, per_token * tok_s * 1e-12,
                100 * per_token * tok_s / card.bf16,
                100 * per_token * tok_s /
                    (p == gemm_precision::fp32 ? card.fp32 : p == gemm_precision::tf32 ? card.tf32 : card.bf16),
                p == gemm_precision::fp8 ? "bf16" : lmrl::cuda::to_string(p));
    std::fflush(stdout);
  }
  return bf16_seconds;
}

void bench_optimizer_step(const std::string& name, const transformer_config& c, double training_step_seconds) {
  const auto n = static_cast<std::size_t>(parameter_layout(c).total_size());
  const auto size = static_cast<index_t>(n);
  adamw_config config;
  config.lr = 1e-5;
  config.weight_decay = 0.01;
  const double max_norm = 1e9;  // above the norm: a factor of 1, but the scaling pass runs as in a clipped step
  auto params_dev = random_device<float>(n, 7), grads_dev = random_device<float>(n, 8, 1e-3);
  // Host-stepped: the trainer's host master parameters and moments, the gradient brought down each step.
  std::vector<float> params(n), grads(n);
  LMRL_CUDA_CHECK(cudaMemcpy(params.data(), params_dev.data(), n * sizeof(float), cudaMemcpyDeviceToHost));
  adamw<float> host_optimizer(size, config);
  const double host = median_seconds([&] {
    LMRL_CUDA_CHECK(cudaMemcpy(grads.data(), grads_dev.data(), n * sizeof(float), cudaMemcpyDeviceToHost));
    const double norm = l2_norm(std::span<const float>(grads));
    scale_gradients(std::span<float>(grads), static_cast<float>(clip_coefficient(norm, max_norm)));
    host_optimizer.step(std::span<float>(params), std::span<const float>(grads), config.lr);
    LMRL_CUDA_CHECK(cudaMemcpy(params_dev.data(), params.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  });
  // Device-stepped: the same work on the device buffers (the norm's one sync included).
  device_array<float> moments(2 * n);
  moments.zero();
  device_array<double> scratch;
  const auto segments = lmrl::detail::adamw_segments(size, {});
  std::int64_t step = 0;
  const double device = median_seconds([&] {
    const double norm = lmrl::cuda::l2_norm(grads_dev.data(), size, scratch);
    lmrl::cuda::scale_gradients(grads_dev.data(), size, static_cast<float>(clip_coefficient(norm, max_norm)));
    lmrl::cuda::adamw_update<float>(params_dev.data(), grads_dev.data(), moments.data(), moments.data() + n, size,
                                    ++step, config.lr, config, segments);
  });
  std::printf("[%s] optimizer step, %.0fM parameters (norm, clipping, AdamW): host-stepped %.1f ms (gradient "
              "down, the host's step, parameters up; %.0f%% of the bf16 training step), device-stepped %.2f ms "
              "(%.1f%%): %.0fx\n",
              name.c_str(), static_cast<double>(n) * 1e-6, host * 1e3, 100 * host / training_step_seconds,
              device * 1e3, 100 * device / training_step_seconds, host / device);
  std::fflush(stdout);
}

void bench_reference_swap(const std::string& name, const transformer_config& c, double training_step_seconds) {
  const auto n = static_cast<std::size_t>(parameter_layout(c).total_size());
  auto params_dev = random_device<float>(n, 9), ref_dev = random_device<float>(n, 10);
  std::vector<float> params(n), ref(n);
  LMRL_CUDA_CHECK(cudaMemcpy(ref.data(), ref_dev.data(), n * sizeof(float), cudaMemcpyDeviceToHost));
  // The host's copy: after an optimizer step the parameters come down, then go up after each swap.
  const double host = median_seconds([&] {
    LMRL_CUDA_CHECK(cudaMemcpy(params.data(), params_dev.data(), n * sizeof(float), cudaMemcpyDeviceToHost));
    for (int swap = 0; swap < 2; ++swap) {
      std::swap_ranges(params.begin(), params.end(), ref.begin());
      LMRL_CUDA_CHECK(cudaMemcpy(params_dev.data(), params.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    }
  });
  const double device = median_seconds([&] {
    for (int swap = 0; swap < 2; ++swap)
      lmrl::cuda::swap_values(params_dev.data(), ref_dev.data(), static_cast<index_t>(n));
  });
  std::printf("[%s] reference swapped in and out, %.0fM parameters: on the host %.1f ms (parameters down once, "
              "up twice; %.0f%% of the bf16 training step), on the device %.2f ms (%.1f%%): %.0fx\n",
              name.c_str(), static_cast<double>(n) * 1e-6, host * 1e3, 100 * host / training_step_seconds,
              device * 1e3, 100 * device / training_step_seconds, host / device);
  std::fflush(stdout);
}

void bench_generation(const std::string& name, const transformer_config& c, const card_rates& card) {
  const auto params = random_model(c);
  lmrl::cuda::transformer_gpu gpu(params);
  const index_t prompt_len = 32, new_tokens = 128;
  struct variant {
    gemm_precision precision;
    bool graphs;
    std::optional<integer_format> format;  // integer weights (the precision then does not apply)
  };
  for (const variant v : {variant{gemm_precision::fp32, false}, variant{gemm_precision::fp32, true},
                          variant{gemm_precision::bf16, false}, variant{gemm_precision::bf16, true},
                          variant{gemm_precision::fp8, false}, variant{gemm_precision::fp8, true},
                          variant{gemm_precision::fp32, false, integer_format::q8_0},
                          variant{gemm_precision::fp32, true, integer_format::q8_0},
                          variant{gemm_precision::fp32, false, integer_format::q4_0},
                          variant{gemm_precision::fp32, true, integer_format::q4_0}}) {
    if (v.precision == gemm_precision::fp8 && card.fp8 == 0) continue;  // as in bench_training
    gpu.precision = v.precision;
    lmrl::cuda::cached_decoder_gpu decoder(gpu, lmrl::cuda::decoder_gpu_options{v.graphs});
    decoder.set_weight_format(v.format);
    for (const index_t batch : {index_t{1}, index_t{64}}) {
      std::vector<std::vector<std::int32_t>> prompts(static_cast<std::size_t>(batch));
      std::mt19937_64 rng(7);
      for (auto& prompt : prompts)
        for (index_t t = 0; t < prompt_len; ++t)
          prompt.push_back(static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(c.vocab_size)));
      generation_options o;
      o.max_new_tokens = new_tokens;
      o.sampling.do_sample = false;
      const double s = median_seconds([&] { (void)lmrl::cuda::generate(decoder, prompts, o, counter_rng(1)); });
      const double tok_s = static_cast<double>(batch * new_tokens) / s;
      std::printf("[%s] generation %s%s batch %td (prompt %td, %td new tokens, greedy): %.0f tokens/s, %.3f ms per "
                  "step",
                  name.c_str(), v.format ? integer_format_name(*v.format) : lmrl::cuda::to_string(v.precision),
                  v.graphs ? " graphs" : "", batch, prompt_len, new_tokens, tok_s,
                  s / static_cast<double>(new_tokens) * 1e3);
      if (batch == 1) {
        // One read of every weight matrix per token (4 or 2 bytes a weight) at the copy's rate (its reads and
        // writes share the memory's bandwidth, so the copy's bytes moved per second are the rate a pure read
        // can reach).
        const double head = static_cast<double>(c.hidden_size) * static_cast<double>(c.vocab_size);
        const double weight_bytes = v.format ? static_cast<double>(decoder.integer_weight_bytes())
                                    : v.precision == gemm_precision::fp32 ? 4 * product_parameters(c)
                                    : v.precision == gemm_precision::bf16 ? 2 * product_parameters(c)
                                                                          : (product_parameters(c) - head) + 2 * head;
        const double bound = weight_bytes / card.copy;
        std::printf("; memory bound %.3f ms per token (%.0f MB of weights at %.0f GB/s): %.2fx the bound",
                    bound * 1e3, weight_bytes * 1e-6, card.copy * 1e-9, s / static_cast<double>(new_tokens) / bound);
      }
      std::printf("\n");
      std::fflush(stdout);
    }
  }
}

// The two-pass way: log_softmax written out, then gathered and summed.
__global__ void log_softmax_rows(const float* x, index_t vocab, float* out) {
  __shared__ float red[256];
  const float* row = x + blockIdx.x * vocab;
  float* o = out + blockIdx.x * vocab;
  float m = -INFINITY;
  for (index_t v = threadIdx.x; v < vocab; v += blockDim.x) m = fmaxf(m, row[v]);
  red[threadIdx.x] = m;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + s]);
    __syncthreads();
  }
  m = red[0];
  __syncthreads();
  float z = 0;
  for (index_t v = threadIdx.x; v < vocab; v += blockDim.x) z += expf(row[v] - m);
  red[threadIdx.x] = z;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  const float lse = m + logf(red[0]);
  for (index_t v = threadIdx.x; v < vocab; v += blockDim.x) o[v] = row[v] - lse;
}

__global__ void gather_and_entropy(const float* logp_full, index_t vocab, const std::int32_t* targets, float* logp,
                                   float* entropy) {
  __shared__ float red[256];
  const float* row = logp_full + blockIdx.x * vocab;
  float e = 0;
  for (index_t v = threadIdx.x; v < vocab; v += blockDim.x) e -= expf(row[v]) * row[v];
  red[threadIdx.x] = e;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    entropy[blockIdx.x] = red[0];
    logp[blockIdx.x] = row[targets[blockIdx.x]];
  }
}

void bench_logprob() {
  const index_t rows = 1024, vocab = 151936;
  const auto n = static_cast<std::size_t>(rows * vocab);
  auto logits = random_device<float>(n, 8, 8.0);
  std::vector<std::int32_t> t(static_cast<std::size_t>(rows));
  for (std::size_t r = 0; r < t.size(); ++r) t[r] = static_cast<std::int32_t>((r * 7919) % static_cast<std::size_t>(vocab));
  auto targets = device_array<std::int32_t>::from_host(t);
  device_array<float> logp(static_cast<std::size_t>(rows)), entropy(static_cast<std::size_t>(rows)),
      logp2(static_cast<std::size_t>(rows)), entropy2(static_cast<std::size_t>(rows));
  device_array<double> lse(static_cast<std::size_t>(rows));
  const double fused = median_seconds([&] {
    lmrl::cuda::logprob_forward<std::int32_t>(logits.data(), rows, vocab, vocab, targets.data(), 1.0, logp.data(),
                                        entropy.data(), lse.data(), nullptr, lmrl::cuda::target_check::caller_checked);
  });
  device_array<float> full(n);
  const double two_pass = median_seconds([&] {
    lmrl::cuda::launch(log_softmax_rows, static_cast<unsigned>(rows), 256, 0, nullptr, logits.data(), vocab,
        full.data());
    lmrl::cuda::launch(gather_and_entropy, static_cast<unsigned>(rows), 256, 0, nullptr, full.data(), vocab,
        targets.data(), logp2.data(), entropy2.data());
    LMRL_CUDA_CHECK_LAUNCH("two-pass log-prob");
  });
  const auto a = logp.to_host(), b = logp2.to_host(), ea = entropy.to_host(), eb = entropy2.to_host();
  double worst = 0;
  for (std::size_t r = 0; r < a.size(); ++r)
    worst = std::max({worst, std::abs(static_cast<double>(a[r]) - b[r]), std::abs(static_cast<double>(ea[r]) - eb[r])});
  const double logits_gb = static_cast<double>(n) * 4 * 1e-9;
  std::printf("log-prob and entropy, %td rows x vocab %td (%.2f GB of logits): fused %.3f ms (%.0f GB/s of logits "
              "read; extra memory %.0f bytes per row), two-pass %.3f ms (extra memory %.2f GB: the written "
              "log-probs); two-pass / fused %.2fx; the two agree within %.2e\n",
              rows, vocab, logits_gb, fused * 1e3, logits_gb / fused, 4.0 + 4.0 + 8.0, two_pass * 1e3, logits_gb,
              two_pass / fused, worst);
}

}  // namespace

int main(int argc, char** argv) try {
  const std::string which = argc > 1 ? argv[1] : "all";
  if (argc > 2) repeats = std::max(1, std::atoi(argv[2]));
  lmrl::detail::require(which == "all" || which == "small" || which == "qwen2.5-0.5b",
                        "bench_gpu: unknown shape \"", which, "\" (small, qwen2.5-0.5b or all)");
  lmrl::cuda::require_device("bench_gpu");
  cudaDeviceProp prop{};
  LMRL_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (sm_%d%d, %d SMs, %.0f GiB); medians of %d runs\n", prop.name, prop.major, prop.minor,
              prop.multiProcessorCount, static_cast<double>(prop.totalGlobalMem) / (1 << 30), repeats);
  const card_rates card = measure_card();
  std::printf("card: 4096^3 GEMM fp32 %.1f, tf32 %.1f, bf16 %.1f TFLOP/s; device copy %.0f GB/s (read + write)\n",
              card.fp32 * 1e-12, card.tf32 * 1e-12, card.bf16 * 1e-12, card.copy * 1e-9);
  if (card.fp8 > 0)
    std::printf("card: 4096^3 GEMM fp8 block-scaled (cuBLASLt) %.1f TFLOP/s, %.2fx bf16\n", card.fp8 * 1e-12,
                card.fp8 / card.bf16);
  else
    std::printf("card: no block-scaled FP8 tensor cores (compute capability 9.0 only): fp8 runs on CUDA cores\n");
  std::printf("card: quantizing a 4096 x 4096 activation into 1 x 128 FP8 tiles: %.3f ms (%.0f GB/s of floats "
              "read)\n", card.fp8_quantize * 1e3, 4096.0 * 4096.0 * 4 / card.fp8_quantize * 1e-9);
  std::fflush(stdout);
  if (which != "qwen2.5-0.5b") {
    const double step = bench_training("small", transformer_config::small(), card, 16, 256);
    bench_optimizer_step("small", transformer_config::small(), step);
    bench_reference_swap("small", transformer_config::small(), step);
    bench_generation("small", transformer_config::small(), card);
  }
  if (which != "small") {
    const double step = bench_training("qwen2.5-0.5b", transformer_config::qwen2_5_0_5b(), card, 8, 512);
    bench_optimizer_step("qwen2.5-0.5b", transformer_config::qwen2_5_0_5b(), step);
    bench_reference_swap("qwen2.5-0.5b", transformer_config::qwen2_5_0_5b(), step);
    bench_generation("qwen2.5-0.5b", transformer_config::qwen2_5_0_5b(), card);
  }
  bench_logprob();
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_gpu: %s\n", e.what());
  return 1;
}
