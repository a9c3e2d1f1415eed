// model/ops/attention.hpp: causal GQA attention with padding, its backward,
// and the block-of-queries form a KV cache uses.
#include "lmrl/model/ops/attention.hpp"

#include <cmath>
#include <vector>

#include "support/testing.hpp"

using namespace lmrl;
using testing::fill_uniform;

namespace {

double weighted_sum(const dense<double, 2>& y, const dense<double, 2>& g) {
  double s = 0;
  for (index_t k = 0; k < y.size(); ++k) s += y.data()[k] * g.data()[k];
  return s;
}

}  // namespace

TEST_CASE("attention on a hand-computed case: causal, softmax weights, scale 1/sqrt(hd)") {
  // 1 head, hd = 1 (scale 1), two tokens. Query 0 sees key 0 only: out0 = v0 = 2.
  // Query 1 (q = 1) sees k = [0, ln 3]: weights e^0 : e^ln3 = 1 : 3 -> [1/4, 3/4]; out1 = 2/4 + 6*3/4 = 5.
  double q[] = {1, 1}, k[] = {0, std::log(3.0)}, v[] = {2, 6}, mask[] = {1, 1}, out[2], lse[2];
  ops::causal_attention_forward<double>(matrix_view<const double>(q, {2, 1}), matrix_view<const double>(k, {2, 1}),
                                        matrix_view<const double>(v, {2, 1}), matrix_view<const double>(mask, {1, 2}),
                                        1, matrix_view<double>(out, {2, 1}), matrix_view<double>(lse, {1, 2}));
  CHECK(out[0] == doctest::Approx(2).epsilon(1e-15));
  CHECK(out[1] == doctest::Approx(5).epsilon(1e-15));
  CHECK(lse[1] == doctest::Approx(std::log(4.0)).epsilon(1e-15));  // log(e^0 + e^ln3)
  // A padded key is never attended: mask key 0 and query 1 sees only key 1 -> out1 = 6; query 0 is padding -> 0.
  double mask2[] = {0, 1};
  ops::causal_attention_forward<double>(matrix_view<const double>(q, {2, 1}), matrix_view<const double>(k, {2, 1}),
                                        matrix_view<const double>(v, {2, 1}), matrix_view<const double>(mask2, {1, 2}),
                                        1, matrix_view<double>(out, {2, 1}), {});
  CHECK(out[0] == 0);
  CHECK(out[1] == doctest::Approx(6).epsilon(1e-15));
  // scale: hd = 4 -> 1/2. Two keys whose dot products with q are 0 and 2 ln 3 get weights 1 : 3 again.
  const double a = std::log(3.0);
  double q4[] = {1, 0, 0, 0, 1, 1, 0, 0}, k4[] = {0, 0, 0, 0, a, a, 5, 5}, v4[] = {2, 0, 0, 0, 6, 0, 0, 0}, o4[8];
  ops::causal_attention_forward<double>(matrix_view<const double>(q4, {2, 4}), matrix_view<const double>(k4, {2, 4}),
                                        matrix_view<const double>(v4, {2, 4}), matrix_view<const double>(mask, {1, 2}),
                                        1, matrix_view<double>(o4, {2, 4}), {});
  CHECK(o4[4] == doctest::Approx(5).epsilon(1e-15));
}

struct attention_case {
  index_t B = 2, L = 5, heads = 4, kv = 2, hd = 3;
  dense<double, 2> q{{B * L, heads * hd}}, k{{B * L, kv * hd}}, v{{B * L, kv * hd}}, mask{{B, L}},
      g{{B * L, heads * hd}};
  attention_case() {
    fill_uniform(q.view(), 1, -2, 2);
    fill_uniform(k.view(), 2, -2, 2);
    fill_uniform(v.view(), 3);
    fill_uniform(g.view(), 4);
    const double m[] = {0, 0, 1, 1, 1,   // left padded
                        1, 1, 1, 1, 0};  // right padded
    std::copy(m, m + 10, mask.data());
  }
  dense<double, 2> forward(const dense<double, 2>& qq, const dense<double, 2>& kk, const dense<double, 2>& vv,
                           dense<double, 2>* lse = nullptr) const {
    dense<double, 2> out({B * L, heads * hd});
    ops::causal_attention_forward<double>(qq.view(), kk.view(), vv.view(), mask.view(), heads, out.view(),
                                          lse ? lse->view() : matrix_view<double>{});
    return out;
  }
};

TEST_CASE("causal GQA attention backward matches finite differences for q, k and v (padding both sides)") {
  attention_case c;
  dense<double, 2> lse({c.B * c.heads, c.L});
  c.forward(c.q, c.k, c.v, &lse);
  dense<double, 2> dq({c.B * c.L, c.heads * c.hd}), dk({c.B * c.L, c.kv * c.hd}), dv({c.B * c.L, c.kv * c.hd});
  fill_uniform(dk.view(), 9);  // overwritten, not accumulated
  ops::causal_attention_backward<double>(c.q.view(), c.k.view(), c.v.view(), c.mask.view(), c.heads, lse.view(),
                                         c.g.view(), dq.view(), dk.view(), dv.view());
  testing::check_gradient([&](const dense<double, 2>& x) { return weighted_sum(c.forward(x, c.k, c.v), c.g); }, c.q,
                          dq);
  testing::check_gradient([&](const dense<double, 2>& x) { return weighted_sum(c.forward(c.q, x, c.v), c.g); }, c.k,
                          dk);
  testing::check_gradient([&](const dense<double, 2>& x) { return weighted_sum(c.forward(c.q, c.k, x), c.g); }, c.v,
                          dv);
  // padded rows get no gradient and produce zeros
  for (index_t j = 0; j < c.kv * c.hd; ++j) {
    CHECK(dk(0, j) == 0);
    CHECK(dv(9, j) == 0);
  }
}

TEST_CASE("GQA equals full multi-head attention with K/V heads repeated (repeat_kv)") {
  attention_case c;
  dense<double, 2> k4({c.B * c.L, c.heads * c.hd}), v4({c.B * c.L, c.heads * c.hd});
  for (index_t r = 0; r < c.B * c.L; ++r)
    for (index_t h = 0; h < c.heads; ++h)
      for (index_t j = 0; j < c.hd; ++j) {
        k4(r, h * c.hd + j) = c.k(r, (h / 2) * c.hd + j);
        v4(r, h * c.hd + j) = c.v(r, (h / 2) * c.hd + j);
      }
  const auto gqa = c.forward(c.q, c.k, c.v);
  dense<double, 2> mha({c.B * c.L, c.heads * c.hd});
  ops::causal_attention_forward<double>(c.q.view(), k4.view(), v4.view(), c.mask.view(), c.heads, mha.view(), {});
  for (index_t k = 0; k < gqa.size(); ++k) CHECK(gqa.data()[k] == mha.data()[k]);
}

TEST_CASE("padding and later tokens do not change a query's output") {
  attention_case c;
  const auto base = c.forward(c.q, c.k, c.v);
  dense<double, 2> k2 = c.k, v2 = c.v;
  for (index_t j = 0; j < c.kv * c.hd; ++j) {
    k2(0, j) += 3;  // sequence 0, position 0: padding
    v2(9, j) -= 2;  // sequence 1, position 4: padding
    k2(8, j) += 1;  // sequence 1, position 3: later than positions 0..2
  }
  const auto moved = c.forward(c.q, k2, v2);
  for (index_t r = 0; r < 8; ++r)
    for (index_t j = 0; j < c.heads * c.hd; ++j) CHECK(moved(r, j) == base(r, j));
}

TEST_CASE("attention_forward of a block of queries against cached keys equals the full causal pass") {
  attention_case c;
  const auto full = c.forward(c.q, c.k, c.v);
  // sequence 1 (rows 5..9, right padded): queries at positions 2..3 against keys 0..3 (a cache of 4 entries)
  const index_t p0 = 2, nq = 2, nk = 4;
  matrix_view<const double> q(c.q.data() + (5 + p0) * c.heads * c.hd, {nq, c.heads * c.hd});
  matrix_view<const double> k(c.k.data() + 5 * c.kv * c.hd, {nk, c.kv * c.hd});
  matrix_view<const double> v(c.v.data() + 5 * c.kv * c.hd, {nk, c.kv * c.hd});
  dense<double, 2> out({nq, c.heads * c.hd});
  ops::attention_forward<double>(q, k, v, c.heads, p0 + 1, {}, out.view());
  for (index_t i = 0; i < nq; ++i)
    for (index_t j = 0; j < c.heads * c.hd; ++j) CHECK(out(i, j) == doctest::Approx(full(5 + p0 + i, j)).epsilon(1e-14));
  // sequence 0 (left padded): the key mask hides the two padded slots
  matrix_view<const double> q0(c.q.data() + 4 * c.heads * c.hd, {1, c.heads * c.hd});
  matrix_view<const double> k0(c.k.data(), {5, c.kv * c.hd});
  matrix_view<const double> v0(c.v.data(), {5, c.kv * c.hd});
  dense<double, 2> out0({1, c.heads * c.hd});
  ops::attention_forward<double>(q0, k0, v0, c.heads, 5, c.mask.view().row(0), out0.view());
  for (index_t j = 0; j < c.heads * c.hd; ++j) CHECK(out0(0, j) == doctest::Approx(full(4, j)).epsilon(1e-14));
}

TEST_CASE("float attention agrees with double") {
  attention_case c;
  const auto ref = c.forward(c.q, c.k, c.v);
  auto to_float = [](const dense<double, 2>& x) {
    dense<float, 2> y(x.shape());
    for (index_t k = 0; k < x.size(); ++k) y.data()[k] = static_cast<float>(x.data()[k]);
    return y;
  };
  const auto q = to_float(c.q), k = to_float(c.k), v = to_float(c.v), m = to_float(c.mask);
  dense<float, 2> out({c.B * c.L, c.heads * c.hd});
  ops::causal_attention_forward<float>(q.view(), k.view(), v.view(), m.view(), c.heads, out.view(), {});
  for (index_t i = 0; i < ref.size(); ++i) CHECK(out.data()[i] == doctest::Approx(ref.data()[i]).epsilon(1e-5));
}

TEST_CASE("attention checks its shapes") {
  attention_case c;
  dense<double, 2> out({c.B * c.L, c.heads * c.hd});
  CHECK_THROWS_WITH_AS(ops::causal_attention_forward<double>(c.q.view(), c.k.view(), c.v.view(), c.mask.view(), 5,
                                                             out.view(), {}),
                       doctest::Contains("not a multiple of heads = 5"), error);
  CHECK_THROWS_WITH_AS(ops::causal_attention_forward<double>(c.q.view(), c.k.view(), c.v.view(), c.mask.view(), 3,
                                                             out.view(), {}),
                       doctest::Contains("kv heads"), error);
  dense<double, 2> short_mask({2, 4});
  CHECK_THROWS_WITH_AS(ops::causal_attention_forward<double>(c.q.view(), c.k.view(), c.v.view(), short_mask.view(),
                                                             c.heads, out.view(), {}),
                       doctest::Contains("must have 8 rows"), error);
  dense<double, 2> lse({1, 1});
  CHECK_THROWS_WITH_AS(ops::causal_attention_backward<double>(c.q.view(), c.k.view(), c.v.view(), c.mask.view(),
                                                              c.heads, lse.view(), c.g.view(), out.view(), c.k.view(),
                                                              c.v.view()),
                       doctest::Contains("lse has shape [1 x 1]"), error);
}

TEST_CASE("attention_forward at a decoder's head size: each query alone gives the block's bits, and the softmax is right") {
  // float, head_dim 64 (whole SIMD packets), 2 kv heads of 2 query heads, 37 cached keys (blocks of four
  // and a tail), key 5 masked out; a block of 5 new queries at cache positions 32..36.
  const index_t heads = 4, kv = 2, hd = 64, nk = 37, nq = 5, p0 = nk - nq;
  dense<float, 2> q({nq, heads * hd}), k({nk, kv * hd}), v({nk, kv * hd}), mask({1, nk}), block({nq, heads * hd});
  fill_uniform(q.view(), 61, -1, 1);
  fill_uniform(k.view(), 62, -1, 1);
  fill_uniform(v.view(), 63);
  for (index_t j = 0; j < nk; ++j) mask(0, j) = j == 5 ? 0.0f : 1.0f;
  ops::attention_forward<float>(q.view(), k.view(), v.view(), heads, p0 + 1, mask.view().row(0), block.view());
  for (index_t i = 0; i < nq; ++i) {
    dense<float, 2> alone({1, heads * hd});
    ops::attention_forward<float>(matrix_view<const float>(&q(i, 0), {1, heads * hd}),
                                  matrix_view<const float>(k.data(), {p0 + i + 1, kv * hd}),
                                  matrix_view<const float>(v.data(), {p0 + i + 1, kv * hd}), heads, p0 + i + 1,
                                  vector_view<const float>(mask.data(), {p0 + i + 1}), alone.view());
    for (index_t j = 0; j < heads * hd; ++j) CHECK(alone(0, j) == block(i, j));
  }
  // The formula in double: out_h = sum_j softmax_j(q_h . k_j / 8) v_j over the keys query i sees.
  for (index_t i = 0; i < nq; ++i)
    for (index_t h = 0; h < heads; ++h) {
      const index_t g = h / (heads / kv), keys = p0 + i + 1;
      std::vector<double> w(static_cast<std::size_t>(keys), 0.0);
      double top = -1e300, sum = 0;
      for (index_t j = 0; j < keys; ++j) {
        if (mask(0, j) == 0) continue;
        double s = 0;
        for (index_t d = 0; d < hd; ++d) s += static_cast<double>(q(i, h * hd + d)) * k(j, g * hd + d);
        w[static_cast<std::size_t>(j)] = s / 8.0;
        top = std::max(top, s / 8.0);
      }
      for (index_t j = 0; j < keys; ++j) {
        w[static_cast<std::size_t>(j)] = mask(0, j) == 0 ? 0.0 : std::exp(w[static_cast<std::size_t>(j)] - top);
        sum += w[static_cast<std::size_t>(j)];
      }
      for (index_t d = 0; d < hd; ++d) {
        double o = 0;
        for (index_t j = 0; j < keys; ++j) o += w[static_cast<std::size_t>(j)] / sum * v(j, g * hd + d);
        CHECK(block(i, h * hd + d) == doctest::Approx(o).epsilon(1e-5).scale(1.0));
      }
    }
}
