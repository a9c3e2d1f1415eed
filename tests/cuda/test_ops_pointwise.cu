// cuda/ops/{rms_norm,rope,swiglu,embedding}.cuh: each kernel against its CPU op
// (model/ops/*.hpp) on the same seeded random inputs (never zero), over shapes
// that are and are not multiples of the block sizes. Outputs are poisoned (NaN)
// before each run, so an element a kernel fails to write fails the comparison;
// accumulating outputs start from a nonzero random gradient. Runs only on a GPU.
//
// Tolerance (check_rows_close): |gpu - cpu| <= tol * (the row's largest |cpu|),
//   float:  tol = 1e-5     double: tol = 1e-12.
// Why: each output element is a handful of roundings (<= ~8 ulp: 6e-7 in float,
// 2e-15 in double) of terms no larger than a few times the row's largest
// output (inputs are in [-1, 1], |w| <= 1.5, r = 1/rms(x) <= ~5, and the
// accumulating outputs start from values of size ~1); the GPU may contract a*b+c
// into an FMA, sums in double in another order (RMSNorm: then rounded once to
// T), and CUDA's exp is within 2 ulp where the host's is within 1. So the
// tolerance leaves a margin of >= 10 (float) and >= 100 (double), while a wrong
// index, a missing term or an unwritten (NaN) element is off by O(1).
// Embedding gathers and adds in the CPU's order: it is compared bit for bit.
#include "support/doctest_strings.hpp"

#include "cuda/random_values.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <type_traits>
#include <vector>

#include "lmrl/cuda/device_array.cuh"
#include "lmrl/cuda/ops/embedding.cuh"
#include "lmrl/cuda/ops/rms_norm.cuh"
#include "lmrl/cuda/ops/rope.cuh"
#include "lmrl/cuda/ops/swiglu.cuh"
#include "lmrl/model/ops/embedding.hpp"
#include "lmrl/model/ops/rms_norm.hpp"
#include "lmrl/model/ops/rope.hpp"
#include "lmrl/model/ops/swiglu.hpp"

using namespace lmrl;
using lmrl::cuda::device_array;

namespace {

template <class T>
constexpr double tolerance = std::is_same_v<T, float> ? 1e-5 : 1e-12;

constexpr index_t row_counts[] = {1, 7, 33, 300};
constexpr index_t widths[] = {8, 64, 100, 896};

using lmrl::testing::random_values;

template <class T>
device_array<T> upload(const std::vector<T>& values) {
  return device_array<T>::from_host(values);
}

template <class T>
device_array<T> poisoned(index_t n) {
  device_array<T> a(static_cast<std::size_t>(n));
  a.poison();
  return a;
}

// Every element within tol * (its row's largest |expected|) of expected; a NaN never passes.
template <class T>
void check_rows_close(const std::vector<T>& got, const std::vector<T>& expected, index_t rows, index_t cols, double tol,
                      const char* what) {
  REQUIRE(got.size() == expected.size());
  REQUIRE(static_cast<index_t>(expected.size()) == rows * cols);
  index_t bad = 0, bad_i = 0, bad_j = 0;
  for (index_t i = 0; i < rows; ++i) {
    double scale = 0;
    for (index_t j = 0; j < cols; ++j) scale = std::max(scale, std::abs(static_cast<double>(expected[i * cols + j])));
    if (scale == 0) scale = 1;
    for (index_t j = 0; j < cols; ++j) {
      const double g = got[i * cols + j], e = expected[i * cols + j];
      if (!(std::abs(g - e) <= tol * scale)) {
        if (bad++ == 0) bad_i = i, bad_j = j;
      }
    }
  }
  CHECK_MESSAGE(bad == 0, what, " [", rows, " x ", cols, "]: ", bad, " elements off by more than ", tol,
                " of their row's scale; first at (", bad_i, ", ", bad_j, "): got ", got[bad_i * cols + bad_j],
                ", expected ", expected[bad_i * cols + bad_j]);
}

template <class T>
void check_bitwise_equal(const std::vector<T>& got, const std::vector<T>& expected, const char* what) {
  REQUIRE(got.size() == expected.size());
  std::size_t bad = 0, first = 0;
  for (std::size_t k = 0; k < got.size(); ++k)
    if (std::memcmp(&got[k], &expected[k], sizeof(T)) != 0 && bad++ == 0) first = k;
  CHECK_MESSAGE(bad == 0, what, ": ", bad, " of ", got.size(), " elements differ; first at ", first, ": got ",
                got[first], ", expected ", expected[first]);
}

template <class T>
matrix_view<const T> cmat(const std::vector<T>& v, index_t rows, index_t cols) {
  return {v.data(), {rows, cols}};
}
template <class T>
matrix_view<T> mat(std::vector<T>& v, index_t rows, index_t cols) {
  return {v.data(), {rows, cols}};
}
template <class T>
vector_view<const T> cvec(const std::vector<T>& v) {
  return {v.data(), {static_cast<index_t>(v.size())}};
}
template <class T>
vector_view<T> vec(std::vector<T>& v) {
  return {v.data(), {static_cast<index_t>(v.size())}};
}

std::uint64_t seed_of(index_t a, index_t b, index_t c = 0) {
  return static_cast<std::uint64_t>(a) * 1000003u + static_cast<std::uint64_t>(b) * 1009u +
         static_cast<std::uint64_t>(c);
}

}  // namespace

// ------------------------------------------------------------------ RMSNorm

TEST_CASE_TEMPLATE("cuda rms_norm_forward matches the CPU op, y and inv_rms fully written, in place too", T, float,
                   double) {
  const double eps = 1e-6;
  for (index_t n : row_counts)
    for (index_t d : widths) {
      CAPTURE(n);
      CAPTURE(d);
      const auto x = random_values<T>(n * d, seed_of(n, d, 1));
      const auto w = random_values<T>(d, seed_of(n, d, 2), -1.5, 1.5);
      std::vector<T> y(static_cast<std::size_t>(n * d)), inv(static_cast<std::size_t>(n));
      ops::rms_norm_forward<T>(cmat(x, n, d), cvec(w), eps, mat(y, n, d), vec(inv));

      auto dx = upload(x), dw = upload(w);
      auto dy = poisoned<T>(n * d), dinv = poisoned<T>(n);
      lmrl::cuda::rms_norm_forward(dx.data(), dw.data(), n, d, eps, dy.data(), dinv.data(), nullptr);
      check_rows_close(dy.to_host(), y, n, d, tolerance<T>, "rms_norm_forward y");
      check_rows_close(dinv.to_host(), inv, n, 1, tolerance<T>, "rms_norm_forward inv_rms");

      // y aliasing x, no inv_rms kept.
      auto dxy = upload(x);
      lmrl::cuda::rms_norm_forward(dxy.data(), dw.data(), n, d, eps, dxy.data(), nullptr, nullptr);
      check_rows_close(dxy.to_host(), y, n, d, tolerance<T>, "rms_norm_forward in place");
    }
}

TEST_CASE_TEMPLATE("cuda rms_norm_backward accumulates grad_x and grad_w as the CPU op, grad_w run-to-run identical", T,
                   float, double) {
  const double eps = 1e-6;
  for (index_t n : row_counts)
    for (index_t d : widths) {
      CAPTURE(n);
      CAPTURE(d);
      const auto x = random_values<T>(n * d, seed_of(n, d, 3));
      const auto w = random_values<T>(d, seed_of(n, d, 4), -1.5, 1.5);
      const auto grad_y = random_values<T>(n * d, seed_of(n, d, 5));
      const auto grad_x0 = random_values<T>(n * d, seed_of(n, d, 6));  // the skip path's gradient, nonzero
      const auto grad_w0 = random_values<T>(d, seed_of(n, d, 7));
      std::vector<T> y(static_cast<std::size_t>(n * d)), inv(static_cast<std::size_t>(n));
      ops::rms_norm_forward<T>(cmat(x, n, d), cvec(w), eps, mat(y, n, d), vec(inv));
      std::vector<T> grad_x = grad_x0, grad_w = grad_w0;
      ops::rms_norm_backward<T>(cmat(x, n, d), cvec(w), cvec(inv), cmat(grad_y, n, d), mat(grad_x, n, d), vec(grad_w));

      auto dx = upload(x), dw = upload(w), dinv = upload(inv), dgy = upload(grad_y);
      auto dgx = upload(grad_x0), dgw = upload(grad_w0);
      lmrl::cuda::rms_norm_backward(dx.data(), dw.data(), dinv.data(), dgy.data(), n, d, dgx.data(), dgw.data(),
                                    nullptr);
      const auto gx = dgx.to_host(), gw = dgw.to_host();
      check_rows_close(gx, grad_x, n, d, tolerance<T>, "rms_norm_backward grad_x");
      check_rows_close(gw, grad_w, 1, d, tolerance<T>, "rms_norm_backward grad_w");

      // Again from the same start: the same bits; and without grad_w, the same grad_x.
      dgx.copy_from_host(grad_x0);
      dgw.copy_from_host(grad_w0);
      lmrl::cuda::rms_norm_backward(dx.data(), dw.data(), dinv.data(), dgy.data(), n, d, dgx.data(), dgw.data(),
                                    nullptr);
      check_bitwise_equal(dgw.to_host(), gw, "rms_norm_backward grad_w, second run");
      check_bitwise_equal(dgx.to_host(), gx, "rms_norm_backward grad_x, second run");
      dgx.copy_from_host(grad_x0);
      lmrl::cuda::rms_norm_backward(dx.data(), dw.data(), dinv.data(), dgy.data(), n, d, dgx.data(), nullptr, nullptr);
      check_bitwise_equal(dgx.to_host(), gx, "rms_norm_backward grad_x without grad_w");
    }
}

TEST_CASE("cuda rms_norm launchers reject bad sizes and null pointers with an lmrl::error") {
  float* none = nullptr;
  CHECK_THROWS_WITH_AS(lmrl::cuda::rms_norm_forward<float>(none, none, 3, 0, 1e-6, none, none, nullptr),
                       doctest::Contains("rms_norm_forward: d = 0"), error);
  CHECK_THROWS_WITH_AS(lmrl::cuda::rms_norm_forward<float>(none, none, -1, 8, 1e-6, none, none, nullptr),
                       doctest::Contains("n = -1"), error);
  CHECK_THROWS_WITH_AS(lmrl::cuda::rms_norm_backward<float>(none, none, none, none, 2, 8, none, none, nullptr),
                       doctest::Contains("must be device pointers"), error);
  CHECK_NOTHROW(
      lmrl::cuda::rms_norm_forward<float>(none, none, 0, 8, 1e-6, none, none, nullptr));  // no rows: nothing to do
}

// ------------------------------------------------------------------ RoPE

namespace {

struct rope_shape {
  index_t heads, head_dim;
};
constexpr rope_shape rope_shapes[] = {{1, 8}, {2, 64}, {14, 64}, {1, 100}, {3, 34}};
constexpr index_t rope_max_positions = 64;

// Positions in [0, max_positions), every 5th row padded (-1), the last row at the table's end.
std::vector<index_t> random_positions(index_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<index_t> pos(0, rope_max_positions - 1);
  std::vector<index_t> p(static_cast<std::size_t>(n));
  for (index_t r = 0; r < n; ++r) p[static_cast<std::size_t>(r)] = r % 5 == 3 ? -1 : pos(rng);
  if (n > 1) p.back() = rope_max_positions - 1;
  return p;
}

template <class T>
struct device_rope_table {
  index_t head_dim, max_positions;
  device_array<T> cos, sin;
  explicit device_rope_table(const ops::rope_table<T>& t)
      : head_dim(t.head_dim()),
        max_positions(t.max_positions()),
        cos(device_array<T>::from_host(
            std::span<const T>(t.cos(0), static_cast<std::size_t>(t.max_positions() * t.head_dim() / 2)))),
        sin(device_array<T>::from_host(
            std::span<const T>(t.sin(0), static_cast<std::size_t>(t.max_positions() * t.head_dim() / 2)))) {}
};

template <class T, bool Backward>
void check_rope_against_cpu() {
  for (const auto [heads, hd] : rope_shapes) {
    const ops::rope_table<T> table(hd, rope_max_positions, 1e6);  // Qwen2's rope_theta
    const device_rope_table<T> dtable(table);
    for (index_t n : {index_t{1}, index_t{7}, index_t{33}}) {
      CAPTURE(heads);
      CAPTURE(hd);
      CAPTURE(n);
      const index_t cols = heads * hd;
      const auto x = random_values<T>(n * cols, seed_of(n, cols, Backward ? 11 : 10));
      const auto positions = random_positions(n, seed_of(n, cols, 12));
      std::vector<T> expected = x;
      // In place, so there is no separate output to poison: an element the
      // kernel skipped would keep its input, off from the rotated value for
      // every position > 0 (the last row is at the table's end, where even the
      // slowest frequency turns visibly); a padded row must stay as it was.
      if constexpr (Backward)
        ops::rope_backward<T>(table, mat(expected, n, cols), positions, heads);
      else
        ops::rope_forward<T>(table, mat(expected, n, cols), positions, heads);

      auto dx = upload(x);
      auto dpos = upload(positions);
      if constexpr (Backward)
        lmrl::cuda::rope_backward(dtable.cos.data(), dtable.sin.data(), hd, rope_max_positions, dx.data(), dpos.data(),
                                  n, heads, nullptr);
      else
        lmrl::cuda::rope_forward(dtable.cos.data(), dtable.sin.data(), hd, rope_max_positions, dx.data(), dpos.data(),
                                 n, heads, nullptr);
      const auto got = dx.to_host();
      check_rows_close(got, expected, n, cols, tolerance<T>, Backward ? "rope_backward" : "rope_forward");
      for (index_t r = 0; r < n; ++r)
        if (positions[static_cast<std::size_t>(r)] < 0)
          for (index_t j = 0; j < cols; ++j) CHECK(got[r * cols + j] == x[r * cols + j]);
    }
  }
}

}  // namespace

TEST_CASE_TEMPLATE("cuda rope_forward matches the CPU op, rotate_half halves, padded rows untouched", T, float,
                   double) {
  check_rope_against_cpu<T, false>();
}

TEST_CASE_TEMPLATE("cuda rope_backward matches the CPU op and undoes rope_forward", T, float, double) {
  check_rope_against_cpu<T, true>();
  // The inverse rotation: backward after forward gives x back.
  const index_t heads = 2, hd = 64, n = 33, cols = heads * hd;
  const ops::rope_table<T> table(hd, rope_max_positions, 1e6);
  const device_rope_table<T> dtable(table);
  const auto x = random_values<T>(n * cols, 21);
  auto dx = upload(x);
  auto dpos = upload(random_positions(n, 22));
  lmrl::cuda::rope_forward(dtable.cos.data(), dtable.sin.data(), hd, rope_max_positions, dx.data(), dpos.data(), n,
                           heads, nullptr);
  lmrl::cuda::rope_backward(dtable.cos.data(), dtable.sin.data(), hd, rope_max_positions, dx.data(), dpos.data(), n,
                            heads, nullptr);
  check_rows_close(dx.to_host(), x, n, cols, tolerance<T>, "rope_backward(rope_forward(x))");
}

TEST_CASE("cuda rope: a position beyond the table turns its row to NaN and no other, bad shapes are an lmrl::error") {
  const index_t heads = 2, hd = 8, n = 3, cols = heads * hd;
  const ops::rope_table<float> table(hd, rope_max_positions, 1e6);
  const device_rope_table<float> dtable(table);
  const auto x = random_values<float>(n * cols, 31);
  const std::vector<index_t> positions{5, rope_max_positions, -1};
  auto dx = upload(x);
  auto dpos = upload(positions);
  lmrl::cuda::rope_forward(dtable.cos.data(), dtable.sin.data(), hd, rope_max_positions, dx.data(), dpos.data(), n,
                           heads, nullptr);
  const auto got = dx.to_host();
  for (index_t j = 0; j < cols; ++j) {
    CHECK(std::isfinite(got[j]));
    CHECK(std::isnan(got[cols + j]));
    CHECK(got[2 * cols + j] == x[2 * cols + j]);
  }
  CHECK_THROWS_WITH_AS(lmrl::cuda::rope_forward(dtable.cos.data(), dtable.sin.data(), 7, rope_max_positions, dx.data(),
                                                dpos.data(), n, heads, nullptr),
                       doctest::Contains("rope_forward: head_dim = 7"), error);
  CHECK_THROWS_WITH_AS(lmrl::cuda::rope_backward(dtable.cos.data(), dtable.sin.data(), hd, rope_max_positions,
                                                 dx.data(), dpos.data(), n, 0, nullptr),
                       doctest::Contains("rope_backward: heads = 0"), error);
}

// ------------------------------------------------------------------ SwiGLU

TEST_CASE_TEMPLATE("cuda swiglu_forward and swiglu_backward match the CPU op, every output written", T, float, double) {
  for (index_t n : row_counts)
    for (index_t f : widths) {
      CAPTURE(n);
      CAPTURE(f);
      const index_t count = n * f;
      const auto gate = random_values<T>(count, seed_of(n, f, 40), -6, 6);  // both tails of the sigmoid
      const auto up = random_values<T>(count, seed_of(n, f, 41));
      const auto grad_out = random_values<T>(count, seed_of(n, f, 42));
      std::vector<T> out(static_cast<std::size_t>(count)), grad_gate(out.size()), grad_up(out.size());
      ops::swiglu_forward<T>(cmat(gate, n, f), cmat(up, n, f), mat(out, n, f));
      ops::swiglu_backward<T>(cmat(gate, n, f), cmat(up, n, f), cmat(grad_out, n, f), mat(grad_gate, n, f),
                              mat(grad_up, n, f));

      auto dgate = upload(gate), dup = upload(up), dgo = upload(grad_out);
      auto dout = poisoned<T>(count), dgg = poisoned<T>(count), dgu = poisoned<T>(count);
      lmrl::cuda::swiglu_forward(dgate.data(), dup.data(), count, dout.data(), nullptr);
      lmrl::cuda::swiglu_backward(dgate.data(), dup.data(), dgo.data(), count, dgg.data(), dgu.data(), nullptr);
      check_rows_close(dout.to_host(), out, n, f, tolerance<T>, "swiglu_forward");
      check_rows_close(dgg.to_host(), grad_gate, n, f, tolerance<T>, "swiglu_backward grad_gate");
      check_rows_close(dgu.to_host(), grad_up, n, f, tolerance<T>, "swiglu_backward grad_up");
    }
  float* none = nullptr;
  CHECK_THROWS_WITH_AS(lmrl::cuda::swiglu_forward<float>(none, none, -2, none, nullptr),
                       doctest::Contains("swiglu_forward: count = -2"), error);
  CHECK_THROWS_WITH_AS(lmrl::cuda::swiglu_backward<float>(none, none, none, 4, none, none, nullptr),
                       doctest::Contains("must be device pointers"), error);
}

// ------------------------------------------------------------------ Embedding

namespace {

struct embedding_shape {
  index_t vocab, d;
};
constexpr embedding_shape embedding_shapes[] = {{50, 8}, {50, 100}, {1000, 64}, {1000, 896}, {151936, 8}};

// n ids with many repeats (half from a few small ids), the vocabulary's last id
// included; with a mask, every 4th row is masked and holds an id out of range,
// which must never be read.
std::vector<std::int32_t> random_ids(index_t n, index_t vocab, bool masked, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<index_t> any(0, vocab - 1), few(0, std::min<index_t>(vocab, 6) - 1);
  std::vector<std::int32_t> ids(static_cast<std::size_t>(n));
  for (index_t r = 0; r < n; ++r)
    ids[static_cast<std::size_t>(r)] = static_cast<std::int32_t>(r % 2 == 0 ? few(rng) : any(rng));
  ids[0] = static_cast<std::int32_t>(vocab - 1);
  if (masked)
    for (index_t r = 1; r < n; r += 4)
      ids[static_cast<std::size_t>(r)] = static_cast<std::int32_t>(r % 8 == 1 ? -7 : vocab + 5);
  return ids;
}

template <class T>
std::vector<T> row_mask_for(index_t n) {
  std::vector<T> m(static_cast<std::size_t>(n), T(1));
  for (index_t r = 1; r < n; r += 4) m[static_cast<std::size_t>(r)] = T(0);
  return m;
}

}  // namespace

TEST_CASE_TEMPLATE("cuda embedding_forward gathers the CPU op's rows bit for bit, masked rows zero", T, float, double) {
  for (const auto [vocab, d] : embedding_shapes)
    for (index_t n : row_counts)
      for (bool masked : {false, true}) {
        CAPTURE(vocab);
        CAPTURE(d);
        CAPTURE(n);
        CAPTURE(masked);
        const auto table = random_values<T>(vocab * d, seed_of(vocab, d, 50));
        const auto ids = random_ids(n, vocab, masked, seed_of(n, vocab, 51));
        const auto mask = row_mask_for<T>(n);
        std::vector<T> out(static_cast<std::size_t>(n * d));
        const vector_view<const T> cpu_mask = masked ? cvec(mask) : vector_view<const T>{};
        ops::embedding_forward<T>(cmat(table, vocab, d), ids, cpu_mask, mat(out, n, d));

        auto dtable = upload(table);
        auto dids = upload(ids);
        auto dmask = upload(mask);
        auto dout = poisoned<T>(n * d);
        lmrl::cuda::embedding_forward(dtable.data(), vocab, d, dids.data(), masked ? dmask.data() : nullptr, n,
                                      dout.data(), nullptr);
        check_bitwise_equal(dout.to_host(), out, "embedding_forward");
      }
}

TEST_CASE_TEMPLATE("cuda embedding_backward scatter-adds as the CPU op bit for bit, deterministically", T, float,
                   double) {
  for (const auto [vocab, d] : embedding_shapes)
    for (index_t n : row_counts)
      for (bool masked : {false, true}) {
        CAPTURE(vocab);
        CAPTURE(d);
        CAPTURE(n);
        CAPTURE(masked);
        const auto grad_out = random_values<T>(n * d, seed_of(n, d, 60));
        const auto grad_table0 = random_values<T>(vocab * d, seed_of(vocab, d, 61));  // accumulated onto
        const auto ids = random_ids(n, vocab, masked, seed_of(n, vocab, 62));
        const auto mask = row_mask_for<T>(n);
        std::vector<T> grad_table = grad_table0;
        const vector_view<const T> cpu_mask = masked ? cvec(mask) : vector_view<const T>{};
        ops::embedding_backward<T>(cmat(grad_out, n, d), ids, cpu_mask, mat(grad_table, vocab, d));

        auto dgo = upload(grad_out);
        auto dgt = upload(grad_table0);
        auto dids = upload(ids);
        auto dmask = upload(mask);
        const std::size_t bytes = lmrl::cuda::embedding_backward_workspace_bytes(n, vocab);
        device_array<unsigned char> workspace(bytes);
        workspace.poison();
        lmrl::cuda::embedding_backward(dgo.data(), dids.data(), masked ? dmask.data() : nullptr, n, d, dgt.data(),
                                       vocab, workspace.data(), bytes, nullptr);
        check_bitwise_equal(dgt.to_host(), grad_table, "embedding_backward");
        // Again from the same start: the same bits.
        dgt.copy_from_host(grad_table0);
        lmrl::cuda::embedding_backward(dgo.data(), dids.data(), masked ? dmask.data() : nullptr, n, d, dgt.data(),
                                       vocab, workspace.data(), bytes, nullptr);
        check_bitwise_equal(dgt.to_host(), grad_table, "embedding_backward, second run");
      }
}

TEST_CASE("cuda embedding: an unmasked id out of range gives a NaN row forward and is skipped backward") {
  const index_t vocab = 10, d = 8, n = 3;
  const auto table = random_values<float>(vocab * d, 70);
  const std::vector<std::int32_t> ids{4, 10, 4};
  auto dtable = upload(table);
  auto dids = upload(ids);
  auto dout = poisoned<float>(n * d);
  lmrl::cuda::embedding_forward(dtable.data(), vocab, d, dids.data(), nullptr, n, dout.data(), nullptr);
  const auto out = dout.to_host();
  for (index_t j = 0; j < d; ++j) {
    CHECK(out[j] == table[4 * d + j]);
    CHECK(std::isnan(out[d + j]));
    CHECK(out[2 * d + j] == table[4 * d + j]);
  }

  const auto grad_out = random_values<float>(n * d, 71);
  auto dgo = upload(grad_out);
  auto dgt = upload(table);
  const std::size_t bytes = lmrl::cuda::embedding_backward_workspace_bytes(n, vocab);
  device_array<unsigned char> workspace(bytes);
  lmrl::cuda::embedding_backward(dgo.data(), dids.data(), nullptr, n, d, dgt.data(), vocab, workspace.data(), bytes,
                                 nullptr);
  std::vector<float> expected = table;
  for (index_t j = 0; j < d; ++j) expected[4 * d + j] = (table[4 * d + j] + grad_out[j]) + grad_out[2 * d + j];
  check_bitwise_equal(dgt.to_host(), expected, "embedding_backward with a bad id");

  CHECK_THROWS_WITH_AS(lmrl::cuda::embedding_backward(dgo.data(), dids.data(), nullptr, n, d, dgt.data(), vocab,
                                                      workspace.data(), bytes - 1, nullptr),
                       doctest::Contains("embedding_backward: workspace has"), error);
  CHECK_THROWS_WITH_AS(
      lmrl::cuda::embedding_forward(dtable.data(), 0, d, dids.data(), nullptr, n, dout.data(), nullptr),
      doctest::Contains("embedding_forward: vocab = 0"), error);
}
