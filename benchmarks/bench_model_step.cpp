// One GRPO-shaped step of the bundled transformer, phase by phase, at the two
// shapes of issue #4, against the eager PyTorch 1.13 numbers (2 threads
// on the same machine):
//
//   generation      P prompts x G sequences, prompt + completion tokens, KV-cache
//                   decoding (generate(): each prompt prefilled once), temperature 1,
//                   no EOS so every completion has full length;   tokens/s = B * completion / s
//   ref + old       2 forward passes (reference and old policy log-probs) over
//                   prompt + completion;                          tokens/s = 2 * B * (prompt + completion) / s
//   training        forward + backward + AdamW (train/adamw.hpp); tokens/s = B * (prompt + completion) / s
//
// plus the peak resident memory (getrusage ru_maxrss), the GFLOP/s of a
// 2048^3 float GEMM of model/ops/matmul.hpp measured in the same run, and the training phase's
// achieved GFLOP/s counting its matrix products exactly: every Linear layer
// and lm_head is 2 flops per weight per token forward and twice that
// backward (6 x matmul weights x tokens in all), plus causal attention
// (q k^T and p v over the keys each query sees: 4 hd (t + 1) flops per query
// and head forward, twice that backward).
//
// A plain program, not a Google Benchmark: each phase is a long measurement
// (seconds), run after one untimed warm-up that sizes every workspace, then
// `repeats` times (default 3); the figures are the medians, the GEMM rate's
// too, so that a noisy neighbour on a shared machine moves both sides alike.
//
//   g++ -std=c++20 -O2 -march=native -fopenmp -Iinclude -isystem /usr/include/eigen3
//       benchmarks/bench_model_step.cpp -o /tmp/bench_model_step
//   /tmp/bench_model_step [tiny|small|all] [repeats]
#include <sys/resource.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "lmrl/model/generate.hpp"
#include "lmrl/model/ops/matmul.hpp"
#include "lmrl/model/transformer.hpp"
#include "lmrl/sample/philox.hpp"
#include "lmrl/train/adamw.hpp"
#include "support/timing.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

using namespace lmrl;
using bench::clock_type;
using bench::median_seconds;
using bench::seconds_since;

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // Linux reports KiB
}

// The rate of the model's own GEMM (model/ops/matmul.hpp: Eigen over
// row-major maps), n x n times n x n in float, median of 5.
double gemm_gflops(index_t n) {
  std::vector<float> a(static_cast<std::size_t>(n * n)), b(a.size()), c(a.size());
  const counter_rng rng(7);
  for (std::size_t i = 0; i < a.size(); ++i) {
    a[i] = static_cast<float>(rng.uniform_double(1, static_cast<std::uint32_t>(i)) - 0.5);
    b[i] = static_cast<float>(rng.uniform_double(2, static_cast<std::uint32_t>(i)) - 0.5);
  }
  const matrix_view<const float> av(a.data(), {n, n}), bv(b.data(), {n, n});
  const matrix_view<float> cv(c.data(), {n, n});
  ops::matmul_nn<float>(av, bv, cv);  // warm-up
  const double t = median_seconds(5, [&] { ops::matmul_nn<float>(av, bv, cv); });
  std::printf("  (GEMM check value %.3f)\n", static_cast<double>(c[0]));
  const double nd = static_cast<double>(n);
  return 2.0 * nd * nd * nd / t * 1e-9;
}

struct step_shape {
  const char* name;
  transformer_config config;
  index_t prompts, group, prompt_len, completion_len;
  double torch_generation, torch_training;  // tokens/s from the issue
};

// Flops of the matrix products of one forward pass over B sequences of L tokens.
struct flop_count {
  double linear = 0, attention = 0;
};
flop_count forward_flops(const transformer_config& c, index_t B, index_t L) {
  const double d = static_cast<double>(c.hidden_size), qd = static_cast<double>(c.num_attention_heads * c.head_dim());
  const double kvd = static_cast<double>(c.kv_dim()), ffn = static_cast<double>(c.intermediate_size);
  const double per_layer = d * (qd + 2 * kvd) + qd * d + 3 * d * ffn;  // weights of q, k, v, o, gate, up, down
  const double weights = static_cast<double>(c.num_hidden_layers) * per_layer + d * static_cast<double>(c.vocab_size);
  flop_count f;
  f.linear = 2.0 * weights * static_cast<double>(B * L);
  const double keys_seen = static_cast<double>(L) * static_cast<double>(L + 1) / 2.0;  // sum over queries of t + 1
  f.attention = 4.0 * static_cast<double>(c.head_dim()) * keys_seen * static_cast<double>(c.num_attention_heads) *
                static_cast<double>(c.num_hidden_layers) * static_cast<double>(B);
  return f;
}

void run(const step_shape& s, double gemm, int repeats) {
  const transformer_config& c = s.config;
  const index_t B = s.prompts * s.group, L = s.prompt_len + s.completion_len;
  std::printf("\n== %s: vocab %td, d %td, %td layers, %td heads, %td kv heads, ffn %td; %td prompts x group %td, "
              "prompt %td + completion %td\n",
              s.name, c.vocab_size, c.hidden_size, c.num_hidden_layers, c.num_attention_heads,
              c.num_key_value_heads, c.intermediate_size, s.prompts, s.group, s.prompt_len, s.completion_len);
  transformer<float> policy(c, 1);
  transformer<float> reference(policy.parameters());
  reference.keep_activations = false;  // never trained: one layer's activations at a time

  // Prompts: counter-RNG tokens.
  const counter_rng rng(2024);
  std::vector<std::vector<std::int32_t>> prompts(static_cast<std::size_t>(s.prompts));
  for (index_t i = 0; i < s.prompts; ++i)
    for (index_t t = 0; t < s.prompt_len; ++t)
      prompts[static_cast<std::size_t>(i)].push_back(
          static_cast<std::int32_t>(rng.uniform_double(1000 + static_cast<std::uint64_t>(i), static_cast<std::uint32_t>(t)) *
                                    static_cast<double>(c.vocab_size)));

  // ---- generation
  generation_options o;
  o.num_generations = s.group;
  o.sampling.temperature = 1.0;
  cached_decoder<float> decoder(policy.parameters());
  o.max_new_tokens = 4;
  generate(decoder, std::span<const std::vector<std::int32_t>>(prompts), o, rng);  // warm-up: sizes the workspace
  o.max_new_tokens = s.completion_len;
  generation_result<float> r;
  const double t_gen = median_seconds(
      repeats, [&] { r = generate(decoder, std::span<const std::vector<std::int32_t>>(prompts), o, rng); });
  index_t generated = 0;
  for (auto n : r.lengths) generated += n;

  // The batch: prompt + completion, no padding (no EOS: every completion is full).
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(B * L));
  std::vector<float> mask(tokens.size(), 1.0f), logp(tokens.size()), ref_logp(tokens.size()), grad(tokens.size());
  for (index_t b = 0; b < B; ++b) {
    const auto& p = prompts[static_cast<std::size_t>(r.prompt_index[static_cast<std::size_t>(b)])];
    for (index_t t = 0; t < s.prompt_len; ++t) tokens[static_cast<std::size_t>(b * L + t)] = p[static_cast<std::size_t>(t)];
    for (index_t t = 0; t < s.completion_len; ++t)
      tokens[static_cast<std::size_t>(b * L + s.prompt_len + t)] = r.completion_ids(b, t);
  }
  const token_batch<float> batch{matrix_view<const std::int32_t>(tokens.data(), {B, L}),
                                 matrix_view<const float>(mask.data(), {B, L})};
  const matrix_view<float> logp_v(logp.data(), {B, L}), ref_v(ref_logp.data(), {B, L});

  // ---- reference + old policy log-probs: two forward passes
  reference.log_probs(batch, ref_v, {});  // warm-up
  const double t_ref = median_seconds(repeats, [&] {
    reference.log_probs(batch, ref_v, {});
    policy.log_probs(batch, logp_v, {});
  });
  double max_gap = 0;  // old policy vs the generation's sampling log-probs (same weights, temperature 1)
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < s.completion_len; ++t)
      max_gap = std::max(max_gap, std::abs(static_cast<double>(logp_v(b, s.prompt_len + t) - r.logprobs(b, t))));

  // ---- training: forward + backward + AdamW. The gradient of a GRPO-like loss
  // -sum(A_b logp) / tokens over the completion, with advantages +-1.
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < L; ++t)
      grad[static_cast<std::size_t>(b * L + t)] =
          t >= s.prompt_len ? (b % 2 == 0 ? -1.0f : 1.0f) / static_cast<float>(B * s.completion_len) : 0.0f;
  const matrix_view<const float> grad_v(grad.data(), {B, L});
  adamw_config ac;
  ac.lr = 1e-6;
  ac.weight_decay = 0.0;  // TRL default
  adamw<float> optimizer(static_cast<index_t>(policy.parameters().values().size()), ac);
  const auto train_step = [&] {
    policy.zero_grad();
    policy.log_probs(batch, logp_v, {});
    policy.backward(batch, grad_v, {});
    optimizer.step(policy.parameters().values(), std::span<const float>(policy.gradients()));
  };
  train_step();  // warm-up
  const double t_train = median_seconds(repeats, train_step);

  const flop_count fwd = forward_flops(c, B, L);
  const double train_linear = 3 * fwd.linear, train_attention = 3 * fwd.attention;
  const double gen_tps = static_cast<double>(generated) / t_gen;
  const double ref_tps = 2.0 * static_cast<double>(B * L) / t_ref;
  const double train_tps = static_cast<double>(B * L) / t_train;
  const double train_gflops = (train_linear + train_attention) / t_train * 1e-9;
  std::printf("  %-34s %10s %12s %12s %9s\n", "phase", "seconds", "tokens/s", "torch tok/s", "ratio");
  std::printf("  %-34s %10.3f %12.0f %12.0f %8.1fx  (target >= 20x: %s)\n", "generation (KV cache)", t_gen, gen_tps,
              s.torch_generation, gen_tps / s.torch_generation, gen_tps >= 20 * s.torch_generation ? "met" : "NOT met");
  std::printf("  %-34s %10.3f %12.0f %12s\n", "reference + old log-probs (2 fwd)", t_ref, ref_tps, "-");
  std::printf("  %-34s %10.3f %12.0f %12.0f %8.1fx  (target >= 4x: %s)\n", "training (fwd + bwd + AdamW)", t_train,
              train_tps, s.torch_training, train_tps / s.torch_training,
              train_tps >= 4 * s.torch_training ? "met" : "NOT met");
  std::printf("  training matrix work: %.1f GFLOP (linear %.1f + attention %.1f) -> %.1f GFLOP/s = %.2f of the "
              "GEMM rate (target >= 0.5: %s)\n",
              (train_linear + train_attention) * 1e-9, train_linear * 1e-9, train_attention * 1e-9, train_gflops,
              train_gflops / gemm, train_gflops >= 0.5 * gemm ? "met" : "NOT met");
  std::printf("  generated %td tokens; old log-probs vs the sampler's: max |diff| %.2e; peak RSS so far %.0f MiB\n",
              generated, max_gap, peak_rss_mib());
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1;
#if defined(_OPENMP)
  threads = omp_get_max_threads();
#endif
  std::printf("bench_model_step: %d OpenMP thread(s), Eigen %d.%d.%d using %d thread(s)\n", threads,
              EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION, EIGEN_MINOR_VERSION, Eigen::nbThreads());
  const std::string only = argc > 1 && std::string(argv[1]) != "all" ? argv[1] : "";
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 3;
  if (repeats < 1) {
    std::fprintf(stderr, "bench_model_step: repeats = %s must be a count >= 1\n", argv[2]);
    return 2;
  }
  const std::vector<step_shape> shapes = {
      {"tiny", transformer_config::tiny(), 8, 8, 32, 96, 472, 1617},
      {"small", transformer_config::small(), 4, 8, 64, 192, 97, 237},
  };
  if (!only.empty() &&
      std::none_of(shapes.begin(), shapes.end(), [&](const step_shape& s) { return only == s.name; })) {
    std::fprintf(stderr, "bench_model_step: unknown shape \"%s\" (tiny, small or all)\n", only.c_str());
    return 2;
  }
  std::printf("medians of %d runs per phase\n", repeats);
  const double gemm = gemm_gflops(2048);
  std::printf("2048^3 float GEMM (model/ops/matmul.hpp, Eigen): %.1f GFLOP/s (issue: ~270)\n", gemm);
  for (const auto& s : shapes)
    if (only.empty() || only == s.name) run(s, gemm, repeats);
  std::printf("\npeak RSS %.0f MiB\n", peak_rss_mib());
  return 0;
}
