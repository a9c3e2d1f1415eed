// cuda/philox.cuh and cuda/sample.cuh against the CPU: Philox in device code
// gives philox.hpp's bits; the GPU sampler draws the CPU sampler's token for
// the same logits, config and uniform, with the same log-probs. Runs only on
// a GPU.
//
// Exactness needs the CPU reference (compiled here by nvcc's host compiler,
// plain x86-64: no FMA) to do its double arithmetic unfused, as the kernel
// does; see the top of cuda/sample.cuh for the one case (top-p over more than
// 256 candidates) where only a draw within rounding of the nucleus boundary
// could differ — zero in practice, and these tests require zero.
//
// With top-k keeping more than 256 candidates and top-p on, the CPU once drew
// in std::nth_element's order instead of the ranking (fixed in samplers.hpp,
// tested in tests/sample/test_samplers.cpp); the "top_k 300, top_p 0.8" config
// compares those rows token for token too.
#include "support/doctest_strings.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "lmrl/cuda/device_array.cuh"
#include "lmrl/cuda/launch.cuh"
#include "lmrl/cuda/philox.cuh"
#include "lmrl/cuda/sample.cuh"
#include "lmrl/sample/philox.hpp"
#include "lmrl/sample/samplers.hpp"
#include "lmrl/tensor/fast_exp.hpp"
#include "lmrl/tensor/span.hpp"

using namespace lmrl;

static_assert(cuda::detail::sample_sum_block == lmrl::detail::sum_block_size,
              "the GPU sums the vocabulary in the CPU's blocks");

namespace {

// ---------------------------------------------------------------- Philox

std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

struct philox_inputs {
  std::vector<std::uint64_t> seeds, sequences;
  std::vector<std::uint32_t> positions, draws;
};

// Random 64/32-bit words, plus the extremes of every field.
philox_inputs make_philox_inputs(std::size_t n) {
  philox_inputs in;
  std::uint64_t state = 12345;
  const std::uint64_t seed_edges[] = {0, 1, 0xffffffffull, 0x100000000ull, ~0ull, 42};
  const std::uint64_t seq_edges[] = {0, 1, 0xffffffffull, 0x100000000ull, ~0ull, 7};
  const std::uint32_t pos_edges[] = {0, 1, 0xffffffffu, 0x80000000u, 3, 4095};
  for (std::size_t i = 0; i < n; ++i) {
    const bool edge = i < 6 * 6 * 6;
    in.seeds.push_back(edge ? seed_edges[i % 6] : splitmix64(state));
    in.sequences.push_back(edge ? seq_edges[(i / 6) % 6] : splitmix64(state));
    in.positions.push_back(edge ? pos_edges[(i / 36) % 6] : static_cast<std::uint32_t>(splitmix64(state)));
    in.draws.push_back(i % 3 == 0 ? 0u : static_cast<std::uint32_t>(splitmix64(state) >> (i % 32)));
  }
  return in;
}

__global__ void philox_on_device(const std::uint64_t* seeds, const std::uint64_t* sequences,
                                 const std::uint32_t* positions, const std::uint32_t* draws, int n,
                                 std::uint32_t* blocks, double* u_double, float* u_float, double* u_helper) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i >= n) return;
  const counter_rng rng(seeds[i]);
  const philox4x32_block b = rng.block(sequences[i], positions[i], draws[i]);
  for (int k = 0; k < 4; ++k) blocks[4 * i + k] = b.v[k];
  u_double[i] = rng.uniform_double(sequences[i], positions[i], draws[i]);
  u_float[i] = rng.uniform<float>(sequences[i], positions[i], draws[i]);
  u_helper[i] = cuda::uniform_double(rng, sequences[i], positions[i], draws[i]);
}

// philox4x32_10 itself: in[6 * i ...] = counter (4 words), key (2 words).
__global__ void raw_philox_on_device(const std::uint32_t* in, int n, std::uint32_t* out) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i >= n) return;
  philox4x32_block c;
  philox4x32_key k;
  for (int w = 0; w < 4; ++w) c.v[w] = in[6 * i + w];
  k.v[0] = in[6 * i + 4];
  k.v[1] = in[6 * i + 5];
  const philox4x32_block r = philox4x32_10(c, k);
  for (int w = 0; w < 4; ++w) out[4 * i + w] = r.v[w];
}

template <class T>
std::span<const T> cspan(const std::vector<T>& v) {
  return std::span<const T>(v.data(), v.size());
}

// ---------------------------------------------------------------- the weight twin

__global__ void weights_on_device(const double* x, const double* max, const double* t, int n, double* w, double* e) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i >= n) return;
  w[i] = cuda::detail::tempered_weight(x[i], max[i], t[i]);
  e[i] = cuda::detail::exp_nonpositive_or_zero(x[i] <= 0 ? x[i] : -x[i]);
}

// ---------------------------------------------------------------- sampling

// Row kinds: smooth of varying scale (flat to peaked), quantized (many exact
// ties), spiky (a few dominant tokens), partly masked (-inf), mostly masked.
// No logit is exactly zero.
template <class T>
std::vector<T> make_logits(index_t rows, index_t vocab, index_t ld, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::vector<T> x(static_cast<std::size_t>(rows * ld), std::numeric_limits<T>::quiet_NaN());  // padding: NaN
  const double scales[] = {0.3, 1.0, 2.0, 4.0, 9.0};
  for (index_t r = 0; r < rows; ++r) {
    T* row = x.data() + r * ld;
    const int kind = static_cast<int>(r % 5);
    const double scale = scales[(r / 5) % 5];
    for (index_t v = 0; v < vocab; ++v) {
      double value = scale * normal(rng);
      if (kind == 1) value = std::round(value * 4.0) / 4.0 + 0.125;  // multiples of 1/4, shifted off zero
      if (kind == 2 && unit(rng) < 3.0 / static_cast<double>(vocab)) value += 12.0;
      if (value == 0.0) value = 0.0625;
      row[v] = static_cast<T>(value);
      if (kind == 3 && unit(rng) < 0.3) row[v] = -std::numeric_limits<T>::infinity();
      if (kind == 4 && vocab >= 100 && unit(rng) < 0.98) row[v] = -std::numeric_limits<T>::infinity();
    }
    row[static_cast<index_t>(unit(rng) * static_cast<double>(vocab)) % vocab] = static_cast<T>(1.5 * scale);  // >= 1 finite
  }
  return x;
}

struct named_config {
  std::string name;
  sampler_config config;
};

std::vector<named_config> configs() {
  std::vector<named_config> out;
  sampler_config c;
  c.do_sample = false;
  out.push_back({"greedy", c});
  c = {};
  c.temperature = 0.7;
  out.push_back({"temperature 0.7", c});
  c = {};
  c.top_k = 50;
  out.push_back({"top_k 50", c});
  c = {};
  c.top_p = 0.9;
  out.push_back({"top_p 0.9", c});
  c = {};
  c.min_p = 0.05;
  out.push_back({"min_p 0.05", c});
  c = {};
  c.temperature = 0.7;
  c.top_k = 50;
  c.top_p = 0.9;
  c.min_p = 0.05;
  out.push_back({"temperature 0.7, top_k 50, top_p 0.9, min_p 0.05", c});
  // The other branches: top-p alone with a min-p floor, and top-k past 256 then top-p.
  c = {};
  c.temperature = 1.3;
  c.top_p = 0.95;
  c.min_p = 0.02;
  out.push_back({"temperature 1.3, top_p 0.95, min_p 0.02", c});
  c = {};
  c.top_k = 300;
  c.top_p = 0.8;
  out.push_back({"top_k 300, top_p 0.8", c});
  return out;
}

template <class T>
struct sampled_rows {
  std::vector<std::int32_t> tokens;
  std::vector<T> tempered, logprobs;
};

// The GPU sampler on host logits; uniforms empty: Philox draws from `draws`.
template <class T>
sampled_rows<T> sample_on_gpu(const std::vector<T>& logits, index_t rows, index_t vocab, index_t ld,
                              const sampler_config& config, cuda::sample_draws draws,
                              const std::vector<double>& uniforms) {
  auto x = cuda::device_array<T>::from_host(cspan(logits));
  cuda::device_array<double> u;
  if (!uniforms.empty()) {
    u = cuda::device_array<double>::from_host(cspan(uniforms));
    draws.uniforms = u.data();
  }
  cuda::device_array<std::int32_t> tokens(static_cast<std::size_t>(rows));
  cuda::device_array<T> tempered(static_cast<std::size_t>(rows)), logprobs(static_cast<std::size_t>(rows));
  const std::size_t bytes = cuda::sample_scratch_bytes<T>(rows, vocab, config);
  cuda::device_array<unsigned char> scratch(bytes);
  tokens.poison();
  tempered.poison();
  logprobs.poison();
  scratch.poison();  // nothing may rely on zeroed scratch
  cuda::sample_tokens<T>(x.data(), rows, vocab, ld, config, draws, tokens.data(), tempered.data(), logprobs.data(),
                         scratch.data(), bytes, nullptr);
  return {tokens.to_host(), tempered.to_host(), logprobs.to_host()};
}

bool close_relative(double gpu, double cpu, double tolerance) {
  return std::abs(gpu - cpu) <= tolerance * std::abs(cpu) + 1e-30;
}

// GPU against the CPU sampler for every config on `rows` rows: once with
// Philox draws made on the device, once with caller uniforms that include the
// extremes 0 and 1 - 2^-53.
template <class T>
void check_against_cpu(index_t rows, index_t vocab, index_t ld, std::uint64_t seed) {
  const std::vector<T> logits = make_logits<T>(rows, vocab, ld, seed);
  const counter_rng rng(seed ^ 0xABCDEF);
  sampler_scratch<T> cpu_scratch(vocab);
  const auto all = configs();
  for (std::size_t ci = 0; ci < all.size(); ++ci) {
    const sampler_config& config = all[ci].config;
    for (int explicit_uniforms = 0; explicit_uniforms < 2; ++explicit_uniforms) {
      CAPTURE(vocab);
      CAPTURE(all[ci].name);
      CAPTURE(explicit_uniforms);
      cuda::sample_draws draws;
      draws.rng = rng;
      draws.first_sequence = 1000 * ci + 17;
      draws.position = static_cast<std::uint32_t>(ci + 3);
      std::vector<double> u(static_cast<std::size_t>(rows));
      for (index_t r = 0; r < rows; ++r) u[r] = rng.uniform_double(draws.first_sequence + r, draws.position);
      std::vector<double> given;
      if (explicit_uniforms) {
        for (index_t r = 0; r < rows; ++r) {
          if (r % 7 == 0) u[r] = 0.0;
          if (r % 7 == 1) u[r] = 1.0 - 0x1p-53;
          if (r % 7 == 2) u[r] = rng.uniform_double(r, 99, 1);
        }
        given = u;
      }
      const sampled_rows<T> gpu = sample_on_gpu<T>(logits, rows, vocab, ld, config, draws, given);
      int token_mismatches = 0, logprob_mismatches = 0;
      for (index_t r = 0; r < rows; ++r) {
        const std::span<const T> row(logits.data() + r * ld, static_cast<std::size_t>(vocab));
        const sampled_token cpu = sample_token(row, config, u[r], cpu_scratch.span(), r);
        if (gpu.tokens[r] != cpu.token) {
          if (++token_mismatches <= 5)
            MESSAGE("row ", r, ": GPU token ", gpu.tokens[r], ", CPU token ", cpu.token, " (u = ", u[r], ")");
          continue;
        }
        // Same token and bit-identical sums: only log's last ulp and the rounding to T differ.
        const bool ok = close_relative(gpu.tempered[r], cpu.tempered_logprob, 1e-5) &&
                        close_relative(gpu.logprobs[r], cpu.logprob, 1e-5);
        if (!ok && ++logprob_mismatches <= 5)
          MESSAGE("row ", r, ": GPU log-probs ", gpu.tempered[r], " / ", gpu.logprobs[r], ", CPU ",
                  cpu.tempered_logprob, " / ", cpu.logprob);
      }
      CHECK(token_mismatches == 0);
      CHECK(logprob_mismatches == 0);
    }
  }
}

}  // namespace

TEST_CASE("cuda philox: the device runs philox.hpp bit for bit, and the Random123 vectors hold on both sides") {
  // Host calls of the __host__ __device__ functions.
  const philox_inputs in = make_philox_inputs(20000);
  const int n = static_cast<int>(in.seeds.size());
  for (int i = 0; i < n; ++i) {
    const counter_rng rng(in.seeds[i]);
    REQUIRE(std::bit_cast<std::uint64_t>(cuda::uniform_double(rng, in.sequences[i], in.positions[i], in.draws[i])) ==
            std::bit_cast<std::uint64_t>(rng.uniform_double(in.sequences[i], in.positions[i], in.draws[i])));
  }
  // Device calls through a kernel.
  auto seeds = cuda::device_array<std::uint64_t>::from_host(cspan(in.seeds));
  auto sequences = cuda::device_array<std::uint64_t>::from_host(cspan(in.sequences));
  auto positions = cuda::device_array<std::uint32_t>::from_host(cspan(in.positions));
  auto draws = cuda::device_array<std::uint32_t>::from_host(cspan(in.draws));
  cuda::device_array<std::uint32_t> blocks(4 * static_cast<std::size_t>(n));
  cuda::device_array<double> u_double(static_cast<std::size_t>(n)), u_helper(static_cast<std::size_t>(n));
  cuda::device_array<float> u_float(static_cast<std::size_t>(n));
  blocks.poison();
  lmrl::cuda::launch(philox_on_device, (n + 255) / 256, 256, 0, nullptr, seeds.data(), sequences.data(),
      positions.data(), draws.data(), n, blocks.data(), u_double.data(), u_float.data(), u_helper.data());
  LMRL_CUDA_CHECK_LAUNCH("philox_on_device");
  const auto b = blocks.to_host();
  const auto ud = u_double.to_host();
  const auto uf = u_float.to_host();
  const auto uh = u_helper.to_host();
  int mismatches = 0;
  for (int i = 0; i < n; ++i) {
    const counter_rng rng(in.seeds[i]);
    const philox4x32_block host = rng.block(in.sequences[i], in.positions[i], in.draws[i]);
    bool same = true;
    for (int k = 0; k < 4; ++k) same = same && b[4 * i + k] == host.v[k];
    const double hd = rng.uniform_double(in.sequences[i], in.positions[i], in.draws[i]);
    const float hf = rng.uniform_float(in.sequences[i], in.positions[i], in.draws[i]);
    same = same && std::bit_cast<std::uint64_t>(ud[i]) == std::bit_cast<std::uint64_t>(hd) &&
           std::bit_cast<std::uint64_t>(uh[i]) == std::bit_cast<std::uint64_t>(hd) &&
           std::bit_cast<std::uint32_t>(uf[i]) == std::bit_cast<std::uint32_t>(hf) && ud[i] >= 0 && ud[i] < 1;
    if (!same && ++mismatches <= 5)
      MESSAGE("seed ", in.seeds[i], " sequence ", in.sequences[i], " position ", in.positions[i], " draw ", in.draws[i],
              ": device ", ud[i], ", host ", hd);
  }
  CHECK(mismatches == 0);

  // Random123 kat_vectors "philox4x32 10": counter, key -> output.
  const std::vector<std::uint32_t> kat_in = {0,          0,          0,          0,          0,          0,
                                             0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
                                             0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0};
  const std::vector<std::uint32_t> kat_out = {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8,
                                              0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd,
                                              0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1};
  auto kat = cuda::device_array<std::uint32_t>::from_host(cspan(kat_in));
  cuda::device_array<std::uint32_t> kat_result(12);
  lmrl::cuda::launch(raw_philox_on_device, 1, 32, 0, nullptr, kat.data(), 3, kat_result.data());
  LMRL_CUDA_CHECK_LAUNCH("raw_philox_on_device");
  CHECK(kat_result.to_host() == kat_out);
  for (int i = 0; i < 3; ++i) {
    philox4x32_block c;
    philox4x32_key k;
    for (int w = 0; w < 4; ++w) c.v[w] = kat_in[6 * i + w];
    k.v[0] = kat_in[6 * i + 4];
    k.v[1] = kat_in[6 * i + 5];
    const philox4x32_block r = philox4x32_10(c, k);
    for (int w = 0; w < 4; ++w) CHECK(r.v[w] == kat_out[4 * i + w]);
  }
}

TEST_CASE("cuda sample: the device weight exp((x - max) / T) is the CPU's bit for bit") {
  std::vector<double> x, max, t;
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal(0.0, 6.0);
  const double temperatures[] = {0.05, 0.3, 0.7, 1.0, 1.3, 2.5};
  for (int i = 0; i < 60000; ++i) {
    const double a = static_cast<double>(static_cast<float>(normal(rng)));  // float logits, as the model's
    const double b = static_cast<double>(static_cast<float>(normal(rng)));
    x.push_back(std::min(a, b));
    max.push_back(std::max(a, b));
    t.push_back(temperatures[i % 6]);
  }
  // The exp's edges: zero, tiny, the reduction's half-ln2 steps, the underflow clamp, -inf.
  const double inf = std::numeric_limits<double>::infinity();
  const double edges[] = {0.0, -0.0, -1e-300, -1e-17, -0.34657359027997264, -0.3465735902799727, -0.5, -1.0,
                          -700.0, -708.0, std::nextafter(-708.0, -inf), std::nextafter(-708.0, 0.0), -709.0,
                          -745.2, -1e300, -inf};
  for (double e : edges) {
    x.push_back(e);
    max.push_back(0.0);
    t.push_back(1.0);
  }
  const int n = static_cast<int>(x.size());
  auto dx = cuda::device_array<double>::from_host(cspan(x));
  auto dm = cuda::device_array<double>::from_host(cspan(max));
  auto dt = cuda::device_array<double>::from_host(cspan(t));
  cuda::device_array<double> w(static_cast<std::size_t>(n)), e(static_cast<std::size_t>(n));
  lmrl::cuda::launch(weights_on_device, (n + 255) / 256, 256, 0, nullptr, dx.data(), dm.data(), dt.data(), n, w.data(),
      e.data());
  LMRL_CUDA_CHECK_LAUNCH("weights_on_device");
  const auto hw = w.to_host();
  const auto he = e.to_host();
  int mismatches = 0;
  for (int i = 0; i < n; ++i) {
    const double cpu_w = lmrl::detail::tempered_weight(x[i], max[i], t[i]);
    const double cpu_e = lmrl::detail::exp_nonpositive_or_zero(x[i] <= 0 ? x[i] : -x[i]);
    if ((std::bit_cast<std::uint64_t>(hw[i]) != std::bit_cast<std::uint64_t>(cpu_w) ||
         std::bit_cast<std::uint64_t>(he[i]) != std::bit_cast<std::uint64_t>(cpu_e)) &&
        ++mismatches <= 5)
      MESSAGE("x ", x[i], " max ", max[i], " T ", t[i], ": device ", hw[i], " / ", he[i], ", host ", cpu_w, " / ",
              cpu_e);
  }
  CHECK(mismatches == 0);
}

TEST_CASE("cuda sample: vocab 5, the GPU draws the CPU sampler's tokens and log-probs under every config") {
  check_against_cpu<float>(350, 5, 5, 101);
}

TEST_CASE("cuda sample: vocab 1000, the GPU draws the CPU sampler's tokens and log-probs under every config") {
  check_against_cpu<float>(250, 1000, 1000, 202);
  check_against_cpu<float>(50, 1000, 1003, 203);  // rows padded (NaN past the vocabulary)
  check_against_cpu<double>(50, 1000, 1000, 204);
}

TEST_CASE("cuda sample: vocab 32000, the GPU draws the CPU sampler's tokens and log-probs under every config") {
  check_against_cpu<float>(60, 32000, 32000, 303);
}

TEST_CASE("cuda sample: vocab 151936 (Qwen2), the GPU draws the CPU sampler's tokens under every config") {
  check_against_cpu<float>(10, 151936, 151936, 404);
}

TEST_CASE("cuda sample: a bad row gets token -1 and NaN log-probs, the others are sampled, bad arguments throw") {
  const index_t rows = 3, vocab = 64;
  std::vector<float> logits = make_logits<float>(rows, vocab, vocab, 505);
  logits[static_cast<std::size_t>(vocab + 10)] = std::numeric_limits<float>::quiet_NaN();  // row 1: NaN
  for (index_t v = 0; v < vocab; ++v) logits[static_cast<std::size_t>(2 * vocab + v)] = -INFINITY;  // row 2: all -inf
  sampler_config config;
  config.top_k = 10;
  cuda::sample_draws draws;
  draws.rng = counter_rng(9);
  const auto gpu = sample_on_gpu<float>(logits, rows, vocab, vocab, config, draws, {});
  sampler_scratch<float> cpu_scratch(vocab);
  const sampled_token cpu = sample_token(std::span<const float>(logits.data(), static_cast<std::size_t>(vocab)), config,
                                         draws.rng.uniform_double(0, 0), cpu_scratch.span());
  CHECK(gpu.tokens[0] == cpu.token);
  for (int r = 1; r < 3; ++r) {
    CHECK(gpu.tokens[r] == -1);
    CHECK(std::isnan(gpu.tempered[r]));
    CHECK(std::isnan(gpu.logprobs[r]));
  }

  // Host-side validation: lmrl::error naming the argument.
  cuda::device_array<float> x(static_cast<std::size_t>(rows * vocab));
  cuda::device_array<std::int32_t> tokens(static_cast<std::size_t>(rows));
  cuda::device_array<float> lp(static_cast<std::size_t>(rows));
  const std::size_t bytes = cuda::sample_scratch_bytes<float>(rows, vocab, config);
  cuda::device_array<unsigned char> scratch(bytes);
  const auto call = [&](index_t r, index_t v, index_t ld, const sampler_config& c, std::size_t b) {
    cuda::sample_tokens<float>(x.data(), r, v, ld, c, draws, tokens.data(), lp.data(), nullptr, scratch.data(), b,
                               nullptr);
  };
  CHECK_THROWS_WITH_AS(call(rows, vocab, vocab, config, bytes - 1), doctest::Contains("sample_scratch_bytes"), error);
  CHECK_THROWS_WITH_AS(call(rows, vocab, vocab - 1, config, bytes), doctest::Contains("ld"), error);
  CHECK_THROWS_WITH_AS(call(rows, 0, 0, config, bytes), doctest::Contains("vocab"), error);
  sampler_config hot = config;
  hot.temperature = 0;
  CHECK_THROWS_WITH_AS(call(rows, vocab, vocab, hot, bytes), doctest::Contains("temperature"), error);
  CHECK_NOTHROW(call(0, vocab, vocab, config, 0));  // no rows: nothing to do
  // Without top-k / top-p the scratch is only the block sums.
  CHECK(cuda::sample_scratch_bytes<float>(rows, vocab, sampler_config{}) < bytes);
}
