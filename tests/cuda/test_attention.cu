// cuda/ops/attention.cuh: the GPU causal GQA attention against the CPU op
// (model/ops/attention.hpp) and against a plain double-precision evaluation of
// the same formulas, forward (out, lse) and backward (dq, dk, dv), with and
// without padding / packed sequences. Runs only on a GPU.
//
// The CPU op needs Eigen (<Eigen/Core>); where this program is compiled
// without it on the include path, only the double-precision reference is used
// (it implements the op's documented rules: causal, mask[j] == mask[i] != 0,
// masked rows 0, lse 0 for them).
#include "support/doctest_strings.hpp"

#include "cuda/random_values.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "lmrl/cuda/device_array.cuh"
#include "lmrl/cuda/ops/attention.cuh"

#if __has_include(<Eigen/Core>)
#define LMRL_TEST_WITH_CPU_ATTENTION 1
#include "lmrl/model/ops/attention.hpp"
#else
#define LMRL_TEST_WITH_CPU_ATTENTION 0
#endif

using namespace lmrl;

namespace {

// Errors are max |gpu - reference| / max(max |reference|, 0.1) over a whole
// output. float32 throughout on the GPU and in the CPU op: each output element
// is a sum of at most seq_len * heads/kv_heads (<= 2100) products of values of
// order 1, formed in a different order on each side, so the two differ by a few
// ulp of the largest terms. Measured (the kernels emulated on the CPU, and the
// CPU op, each against double): at most 1.1e-6, the peaked-softmax case
// included. 1e-5 leaves a margin of ~10 and still catches any indexing, masking
// or scaling mistake, which are O(1). The floor 0.1 is below the largest
// element of every output here (0.3 to 11) except where the math cancels
// exactly: with T = 1 a query sees one key, P = 1, dP = delta, so dq = dk = 0
// and float rounding of dP - delta (~1e-7) is all there is to compare.
constexpr double tolerance = 1e-5;

std::vector<float> random_vector(std::size_t n, std::uint64_t seed, double lo = -1, double hi = 1) {
  return lmrl::testing::random_values<float>(static_cast<index_t>(n), seed, lo, hi);
}

struct attention_shape {
  index_t batch, seq_len, heads, kv_heads, head_dim;
};

index_t q_size(const attention_shape& s) { return s.batch * s.seq_len * s.heads * s.head_dim; }
index_t kv_size(const attention_shape& s) { return s.batch * s.seq_len * s.kv_heads * s.head_dim; }

// Sequence b % 3 == 0: three packed sequences (ids 1, 2, 3) then right padding;
// 1: right padding; 2: left padding. Every row keeps at least one token.
std::vector<float> padded_mask(index_t batch, index_t T) {
  std::vector<float> m(static_cast<std::size_t>(batch * T), 0.0f);
  for (index_t b = 0; b < batch; ++b)
    for (index_t t = 0; t < T; ++t) {
      float value = 0;
      switch (b % 3) {
        case 0: value = t < T - T / 5 ? static_cast<float>(1 + 3 * t / T) : 0.0f; break;
        case 1: value = t < T - T / 3 ? 1.0f : 0.0f; break;
        default: value = t >= T / 3 ? 1.0f : 0.0f; break;
      }
      m[static_cast<std::size_t>(b * T + t)] = value;
    }
  return m;
}

struct attention_result {
  std::vector<double> out, lse, dq, dk, dv;
};

// The formulas of model/ops/attention.hpp evaluated literally in double.
attention_result reference_attention(const attention_shape& s, const std::vector<float>& q,
                                     const std::vector<float>& k, const std::vector<float>& v,
                                     const std::vector<float>& mask, const std::vector<float>& dout) {
  const index_t B = s.batch, T = s.seq_len, H = s.heads, G = s.kv_heads, hd = s.head_dim, group = H / G;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  auto qi = [&](index_t b, index_t t, index_t h) { return static_cast<std::size_t>(((b * T + t) * H + h) * hd); };
  auto ki = [&](index_t b, index_t t, index_t g) { return static_cast<std::size_t>(((b * T + t) * G + g) * hd); };
  attention_result r;
  r.out.assign(q.size(), 0.0);
  r.dq.assign(q.size(), 0.0);
  r.dk.assign(k.size(), 0.0);
  r.dv.assign(k.size(), 0.0);
  r.lse.assign(static_cast<std::size_t>(B * H * T), 0.0);
  std::vector<double> p(static_cast<std::size_t>(T)), dp(static_cast<std::size_t>(T));
  std::vector<char> visible(static_cast<std::size_t>(T));
  for (index_t b = 0; b < B; ++b)
    for (index_t h = 0; h < H; ++h) {
      const index_t g = h / group;
      for (index_t i = 0; i < T; ++i) {
        const float seg = mask[static_cast<std::size_t>(b * T + i)];
        if (seg == 0.0f) continue;  // a masked query: output 0, lse 0, no gradient
        double m = -std::numeric_limits<double>::infinity();
        for (index_t j = 0; j <= i; ++j) {
          visible[j] = mask[static_cast<std::size_t>(b * T + j)] == seg;
          if (!visible[j]) continue;
          double dot = 0;
          for (index_t d = 0; d < hd; ++d) dot += static_cast<double>(q[qi(b, i, h) + d]) * k[ki(b, j, g) + d];
          p[j] = scale * dot;
          m = std::max(m, p[j]);
        }
        double sum = 0;
        for (index_t j = 0; j <= i; ++j)
          if (visible[j]) sum += std::exp(p[j] - m);
        const double lse = m + std::log(sum);
        r.lse[static_cast<std::size_t>((b * H + h) * T + i)] = lse;
        double delta = 0;
        for (index_t j = 0; j <= i; ++j) {
          p[j] = visible[j] ? std::exp(p[j] - lse) : 0.0;
          double dot = 0;
          for (index_t d = 0; d < hd; ++d) {
            r.out[qi(b, i, h) + d] += p[j] * v[ki(b, j, g) + d];
            dot += static_cast<double>(dout[qi(b, i, h) + d]) * v[ki(b, j, g) + d];
          }
          dp[j] = dot;
          delta += p[j] * dot;
        }
        for (index_t j = 0; j <= i; ++j) {
          const double ds = scale * p[j] * (dp[j] - delta);
          for (index_t d = 0; d < hd; ++d) {
            r.dq[qi(b, i, h) + d] += ds * k[ki(b, j, g) + d];
            r.dk[ki(b, j, g) + d] += ds * q[qi(b, i, h) + d];
            r.dv[ki(b, j, g) + d] += p[j] * dout[qi(b, i, h) + d];
          }
        }
      }
    }
  return r;
}

// max |got - want| / max(max |want|, 0.1); infinity when got holds a NaN or an
// infinity (an element never written keeps its poison).
template <class Want>
double relative_error(const std::vector<float>& got, const std::vector<Want>& want) {
  REQUIRE(got.size() == want.size());
  double diff = 0, largest = 0;
  for (std::size_t n = 0; n < got.size(); ++n) {
    if (!std::isfinite(got[n])) return std::numeric_limits<double>::infinity();
    diff = std::max(diff, std::abs(static_cast<double>(got[n]) - static_cast<double>(want[n])));
    largest = std::max(largest, std::abs(static_cast<double>(want[n])));
  }
  return diff / std::max(largest, 0.1);
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

struct gpu_result {
  std::vector<float> out, lse, dq, dk, dv;
};

// Forward then backward on the GPU, every output poisoned (NaN) first.
gpu_result run_gpu(const attention_shape& s, const std::vector<float>& q, const std::vector<float>& k,
                   const std::vector<float>& v, const std::vector<float>* mask, const std::vector<float>& dout) {
  using cuda::device_array;
  auto q_d = device_array<float>::from_host(q), k_d = device_array<float>::from_host(k),
       v_d = device_array<float>::from_host(v), dout_d = device_array<float>::from_host(dout);
  device_array<float> mask_d;
  if (mask != nullptr) mask_d = device_array<float>::from_host(*mask);
  const auto nq = static_cast<std::size_t>(q_size(s)), nkv = static_cast<std::size_t>(kv_size(s));
  device_array<float> out(nq), lse(static_cast<std::size_t>(s.batch * s.heads * s.seq_len)), dq(nq), dk(nkv),
      dv(nkv),
      workspace(static_cast<std::size_t>(cuda::causal_attention_backward_workspace_size(s.batch, s.seq_len, s.heads)));
  for (auto* a : {&out, &lse, &dq, &dk, &dv, &workspace}) a->poison();
  const float* mask_ptr = mask != nullptr ? mask_d.data() : nullptr;
  cuda::causal_attention_forward(q_d.data(), k_d.data(), v_d.data(), mask_ptr, out.data(), lse.data(), s.batch,
                                 s.seq_len, s.heads, s.kv_heads, s.head_dim);
  cuda::causal_attention_backward(q_d.data(), k_d.data(), v_d.data(), mask_ptr, out.data(), lse.data(), dout_d.data(),
                                  dq.data(), dk.data(), dv.data(), workspace.data(), s.batch, s.seq_len, s.heads,
                                  s.kv_heads, s.head_dim);
  return {out.to_host(), lse.to_host(), dq.to_host(), dk.to_host(), dv.to_host()};
}

void check_attention(const attention_shape& s, bool padded, std::uint64_t seed, double lo = -1, double hi = 1) {
  CAPTURE(s.batch);
  CAPTURE(s.seq_len);
  CAPTURE(s.heads);
  CAPTURE(s.kv_heads);
  CAPTURE(s.head_dim);
  CAPTURE(padded);
  const auto nq = static_cast<std::size_t>(q_size(s)), nkv = static_cast<std::size_t>(kv_size(s));
  const auto q = random_vector(nq, seed, lo, hi);
  const auto k = random_vector(nkv, seed + 1, lo, hi);
  const auto v = random_vector(nkv, seed + 2);
  const auto dout = random_vector(nq, seed + 3);
  const auto mask = padded ? padded_mask(s.batch, s.seq_len)
                           : std::vector<float>(static_cast<std::size_t>(s.batch * s.seq_len), 1.0f);

  const gpu_result gpu = run_gpu(s, q, k, v, padded ? &mask : nullptr, dout);

  const attention_result ref = reference_attention(s, q, k, v, mask, dout);
  CHECK(relative_error(gpu.out, ref.out) <= tolerance);
  CHECK(relative_error(gpu.lse, ref.lse) <= tolerance);
  CHECK(relative_error(gpu.dq, ref.dq) <= tolerance);
  CHECK(relative_error(gpu.dk, ref.dk) <= tolerance);
  CHECK(relative_error(gpu.dv, ref.dv) <= tolerance);

#if LMRL_TEST_WITH_CPU_ATTENTION
  const index_t rows = s.batch * s.seq_len;
  using cview = matrix_view<const float>;
  const cview q_v(q.data(), {rows, s.heads * s.head_dim}), k_v(k.data(), {rows, s.kv_heads * s.head_dim}),
      v_v(v.data(), {rows, s.kv_heads * s.head_dim}), mask_v(mask.data(), {s.batch, s.seq_len}),
      dout_v(dout.data(), {rows, s.heads * s.head_dim});
  std::vector<float> out(nq), lse(static_cast<std::size_t>(s.batch * s.heads * s.seq_len)), dq(nq), dk(nkv), dv(nkv);
  ops::causal_attention_forward<float>(q_v, k_v, v_v, mask_v, s.heads, matrix_view<float>(out.data(), q_v.shape),
                                       matrix_view<float>(lse.data(), {s.batch * s.heads, s.seq_len}));
  ops::causal_attention_backward<float>(q_v, k_v, v_v, mask_v, s.heads, cview(lse.data(), {s.batch * s.heads, s.seq_len}),
                                        dout_v, matrix_view<float>(dq.data(), q_v.shape),
                                        matrix_view<float>(dk.data(), k_v.shape),
                                        matrix_view<float>(dv.data(), k_v.shape));
  CHECK(relative_error(gpu.out, out) <= tolerance);
  CHECK(relative_error(gpu.lse, lse) <= tolerance);
  CHECK(relative_error(gpu.dq, dq) <= tolerance);
  CHECK(relative_error(gpu.dk, dk) <= tolerance);
  CHECK(relative_error(gpu.dv, dv) <= tolerance);
#endif

  // Padding is exactly 0 everywhere: out, lse and dq of a masked query, dk and dv of a masked key.
  for (index_t b = 0; b < s.batch; ++b)
    for (index_t t = 0; t < s.seq_len; ++t) {
      if (mask[static_cast<std::size_t>(b * s.seq_len + t)] != 0.0f) continue;
      for (index_t h = 0; h < s.heads; ++h) {
        CHECK(gpu.lse[static_cast<std::size_t>((b * s.heads + h) * s.seq_len + t)] == 0.0f);
        for (index_t d = 0; d < s.head_dim; ++d) {
          const auto n = static_cast<std::size_t>(((b * s.seq_len + t) * s.heads + h) * s.head_dim + d);
          CHECK(gpu.out[n] == 0.0f);
          CHECK(gpu.dq[n] == 0.0f);
        }
      }
      for (index_t n = (b * s.seq_len + t) * s.kv_heads * s.head_dim;
           n < (b * s.seq_len + t + 1) * s.kv_heads * s.head_dim; ++n) {
        CHECK(gpu.dk[static_cast<std::size_t>(n)] == 0.0f);
        CHECK(gpu.dv[static_cast<std::size_t>(n)] == 0.0f);
      }
    }

  // Deterministic: a second run gives the same bits.
  const gpu_result again = run_gpu(s, q, k, v, padded ? &mask : nullptr, dout);
  CHECK(same_bits(gpu.out, again.out));
  CHECK(same_bits(gpu.lse, again.lse));
  CHECK(same_bits(gpu.dq, again.dq));
  CHECK(same_bits(gpu.dk, again.dk));
  CHECK(same_bits(gpu.dv, again.dv));
}

// (batch, T) x head_dim x (heads, kv_heads), as the brief of the op lists them.
void check_all_shapes(bool padded) {
  const index_t sequences[][2] = {{1, 1}, {2, 7}, {3, 65}, {1, 300}};
  const index_t head_dims[] = {16, 64};
  const index_t head_configs[][2] = {{4, 2}, {14, 2}, {3, 3}};
  std::uint64_t seed = padded ? 5000 : 1000;
  for (const auto& bt : sequences)
    for (const index_t hd : head_dims)
      for (const auto& hg : head_configs) {
        check_attention({bt[0], bt[1], hg[0], hg[1], hd}, padded, seed);
        seed += 10;
      }
}

}  // namespace

TEST_CASE("cuda causal_attention: forward and backward match the CPU op without padding") {
  check_all_shapes(false);
}

TEST_CASE("cuda causal_attention: forward and backward match the CPU op with padding and packed sequences") {
  check_all_shapes(true);
}

TEST_CASE("cuda causal_attention: odd head_dim, head_dim 128 and peaked softmax") {
  check_attention({2, 45, 4, 1, 5}, true, 9001);       // head_dim not a multiple of anything: padded columns
  check_attention({2, 70, 2, 2, 128}, false, 9101);    // the largest head_dim (dynamic shared memory over 48 KiB)
  check_attention({1, 97, 6, 2, 100}, true, 9201);     // head_dim 100 in the 128 kernels
  check_attention({2, 130, 4, 2, 64}, true, 9301, -3, 3);  // larger scores: the running max moves between tiles
}

TEST_CASE("cuda causal_attention: bad shapes are an lmrl::error naming the argument, empty batches do nothing") {
  float* p = nullptr;
  CHECK_THROWS_WITH_AS(cuda::causal_attention_forward(p, p, p, p, p, p, 1, 4, 6, 4, 16),
                       doctest::Contains("kv_heads = 4"), error);
  CHECK_THROWS_WITH_AS(cuda::causal_attention_forward(p, p, p, p, p, p, 1, 4, 4, 2, 129),
                       doctest::Contains("head_dim = 129"), error);
  CHECK_THROWS_WITH_AS(cuda::causal_attention_forward(p, p, p, p, p, p, 1, 4, 4, 2, 16),
                       doctest::Contains("q is null"), error);
  CHECK_THROWS_WITH_AS(cuda::causal_attention_backward(p, p, p, p, p, p, p, p, p, p, p, 1, -1, 4, 2, 16),
                       doctest::Contains("seq_len = -1"), error);
  CHECK_NOTHROW(cuda::causal_attention_forward(p, p, p, p, p, p, 0, 4, 4, 2, 16));
  CHECK_NOTHROW(cuda::causal_attention_backward(p, p, p, p, p, p, p, p, p, p, p, 3, 0, 4, 2, 16));
}
