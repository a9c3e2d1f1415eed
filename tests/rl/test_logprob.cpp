// Fused log-prob / entropy: a hand-computed vocabulary of 3, agreement with a
// two-pass double log-softmax up to real vocabulary sizes, finite-difference
// gradients, extreme logits, temperature, backends and bad input.
#include "lmrl/rl/logprob.hpp"

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <vector>
#include <xtensor/xtensor.hpp>

#include "lmrl/tensor/eigen.hpp"
#include "lmrl/tensor/span.hpp"
#include "lmrl/tensor/xtensor.hpp"
#include "support/testing.hpp"

using namespace lmrl;

namespace {

using RowMajorF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowMajorD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// The two-pass way, in double: full log-softmax of the row, then gather.
struct reference_row {
  double logp, entropy, lse;
};
template <class T>
reference_row reference(const T* x, index_t vocab, index_t target, double temperature) {
  double m = -INFINITY;
  for (index_t v = 0; v < vocab; ++v) m = std::max(m, static_cast<double>(x[v]) / temperature);
  double s = 0;
  for (index_t v = 0; v < vocab; ++v) s += std::exp(static_cast<double>(x[v]) / temperature - m);
  const double lse = m + std::log(s);
  double h = 0;
  for (index_t v = 0; v < vocab; ++v) {
    const double lp = static_cast<double>(x[v]) / temperature - lse;
    h -= std::exp(lp) * lp;
  }
  return {static_cast<double>(x[target]) / temperature - lse, h, lse};
}

template <class T>
void check_against_reference(index_t rows, index_t vocab, double temperature, std::uint64_t seed, double lo,
                             double hi, double tol) {
  dense<T, 2> logits({rows, vocab});
  testing::fill_uniform(logits.view(), seed, lo, hi);
  std::vector<std::int32_t> ids(static_cast<std::size_t>(rows));
  for (index_t r = 0; r < rows; ++r) ids[static_cast<std::size_t>(r)] = static_cast<std::int32_t>((r * 7919 + 13) % vocab);
  std::vector<T> logp(rows), entropy(rows), lse(rows);
  logprob_forward(logits.view(), std::span<const std::int32_t>(ids), temperature, logp, entropy, lse);
  for (index_t r = 0; r < rows; ++r) {
    const auto ref = reference(logits.view().row_data(r), vocab, ids[static_cast<std::size_t>(r)], temperature);
    INFO("row ", r, " vocab ", vocab);
    CHECK(std::abs(logp[r] - ref.logp) <= tol * std::max(1.0, std::abs(ref.logp)));
    CHECK(std::abs(entropy[r] - ref.entropy) <= tol * std::max(1.0, std::abs(ref.entropy)));
    CHECK(std::abs(lse[r] - ref.lse) <= tol * std::max(1.0, std::abs(ref.lse)));
  }
}

}  // namespace

TEST_CASE("logprob: vocabulary of 3, by hand") {
  // logits (0, ln 2, ln 5): exp = 1, 2, 5, sum 8, p = (1/8, 1/4, 5/8), lse = ln 8.
  // target 1: logp = ln 2 - ln 8 = ln(1/4).
  // H = 1/8 ln 8 + 1/4 ln 4 + 5/8 ln(8/5) = (3/8 + 4/8 + 15/8) ln 2 - 5/8 ln 5 = 2.75 ln 2 - 0.625 ln 5.
  const double H = 2.75 * std::log(2.0) - 0.625 * std::log(5.0);  // 0.900256...
  for (double tau : {1.0, 2.0}) {
    dense<double, 2> logits({1, 3});
    logits(0, 0) = 0;
    logits(0, 1) = tau * std::log(2.0);  // z = logits / tau gives the same z for tau = 2
    logits(0, 2) = tau * std::log(5.0);
    std::vector<std::int64_t> ids{1};
    auto out = logprob_forward(logits.view(), ids, tau);
    CHECK(out.logp(0) == doctest::Approx(std::log(0.25)).epsilon(1e-14));
    CHECK(out.entropy(0) == doctest::Approx(H).epsilon(1e-14));
    CHECK(out.lse(0) == doctest::Approx(std::log(8.0)).epsilon(1e-14));

    // dlogp/dx = (1[v = 1] - p) / tau = (-1/8, 3/4, -5/8) / tau.
    dense<double, 2> g({1, 3});
    std::vector<double> one{1.0};
    logprob_backward(logits.view(), std::span<const std::int64_t>(ids), tau, out.lse, out.entropy, one,
                     std::vector<double>{}, g.view());
    CHECK(g(0, 0) == doctest::Approx(-0.125 / tau).epsilon(1e-14));
    CHECK(g(0, 1) == doctest::Approx(0.75 / tau).epsilon(1e-14));
    CHECK(g(0, 2) == doctest::Approx(-0.625 / tau).epsilon(1e-14));
    // dH/dx_v = -p_v (log p_v + H) / tau; for v = 0: -(1/8)(ln(1/8) + H) / tau.
    logprob_backward(logits.view(), std::span<const std::int64_t>(ids), tau, out.lse, out.entropy,
                     std::vector<double>{}, one, g.view());
    CHECK(g(0, 0) == doctest::Approx(-0.125 * (std::log(0.125) + H) / tau).epsilon(1e-13));
    CHECK(g(0, 2) == doctest::Approx(-0.625 * (std::log(0.625) + H) / tau).epsilon(1e-13));
  }
}

TEST_CASE("logprob: agrees with a two-pass double log-softmax, vocabularies 1000 to 151,936") {
  check_against_reference<double>(5, 1000, 1.0, 1, -5, 5, 1e-13);
  check_against_reference<float>(5, 1000, 1.0, 2, -5, 5, 2e-6);
  check_against_reference<double>(3, 151936, 0.7, 3, -20, 20, 1e-12);
  check_against_reference<float>(3, 151936, 1.0, 4, -20, 20, 1e-5);
  check_against_reference<float>(2, 129280, 0.6, 5, -30, 30, 1e-5);
  check_against_reference<float>(4, 4097, 1.3, 6, -1, 1, 2e-6);  // chunk tail and lane tail

  // Chunk merges in both directions: the max grows chunk after chunk, or sits in the first chunk.
  for (int direction : {1, -1}) {
    const index_t vocab = 5000;
    dense<double, 2> logits({1, vocab});
    for (index_t v = 0; v < vocab; ++v) logits(0, v) = direction * 0.004 * static_cast<double>(v);
    std::vector<std::int32_t> ids{2500};
    auto out = logprob_forward(logits.view(), ids, 1.0);
    const auto ref = reference(logits.view().row_data(0), vocab, 2500, 1.0);
    CHECK(out.logp(0) == doctest::Approx(ref.logp).epsilon(1e-13));
    CHECK(out.entropy(0) == doctest::Approx(ref.entropy).epsilon(1e-13));
  }
}

TEST_CASE("logprob: gradients match finite differences (double, temperature 0.7)") {
  const index_t rows = 3, vocab = 7;
  const double tau = 0.7;
  dense<double, 2> logits({rows, vocab});
  testing::fill_uniform(logits.view(), 9, -2, 2);
  std::vector<std::int32_t> ids{4, 0, 6};
  std::vector<double> c{0.5, -1.25, 2.0}, d{-0.75, 1.5, 0.3};
  // L = sum_r c_r logp_r + d_r H_r, and each term alone.
  for (int which = 0; which < 3; ++which) {
    const bool use_c = which != 2, use_d = which != 1;
    auto f = [&](const dense<double, 2>& x) {
      auto out = logprob_forward(x.view(), ids, tau);
      double L = 0;
      for (index_t r = 0; r < rows; ++r) L += (use_c ? c[r] * out.logp(r) : 0) + (use_d ? d[r] * out.entropy(r) : 0);
      return L;
    };
    auto out = logprob_forward(logits.view(), ids, tau);
    dense<double, 2> g({rows, vocab});
    logprob_backward(logits.view(), std::span<const std::int32_t>(ids), tau, out.lse, out.entropy,
                     use_c ? c : std::vector<double>{}, use_d ? d : std::vector<double>{}, g.view());
    testing::check_gradient(f, logits, g, 1e-6, 1e-7, 1e-9);
  }
}

TEST_CASE("logprob: logits of +-1e4 give finite, correct results") {
  const index_t rows = 4, vocab = 3000;
  dense<float, 2> lf({rows, vocab});
  dense<double, 2> ld({rows, vocab});
  for (index_t r = 0; r < rows; ++r)
    for (index_t v = 0; v < vocab; ++v) {
      const double x = (v * 31 + r) % 7 == 0 ? 1e4 : ((v + r) % 3 == 0 ? -1e4 : 0.0);
      lf(r, v) = static_cast<float>(x);
      ld(r, v) = x;
    }
  std::vector<std::int32_t> ids{0, 1, 2, 5};  // targets at +1e4, -1e4 and 0
  auto of = logprob_forward(lf.view(), ids, 1.0);
  auto od = logprob_forward(ld.view(), ids, 1.0);
  dense<float, 2> gf({rows, vocab});
  std::vector<float> ones(rows, 1.0f);
  logprob_backward(lf.view(), std::span<const std::int32_t>(ids), 1.0, of.lse, of.entropy, ones, ones, gf.view());
  for (index_t r = 0; r < rows; ++r) {
    const auto ref = reference(ld.view().row_data(r), vocab, ids[r], 1.0);
    INFO("row ", r);
    CHECK(std::isfinite(of.logp(r)));
    CHECK(std::isfinite(of.entropy(r)));
    CHECK(std::abs(od.logp(r) - ref.logp) <= 1e-12 * std::max(1.0, std::abs(ref.logp)));
    CHECK(std::abs(od.entropy(r) - ref.entropy) <= 1e-10);  // the reference loses 1e4 * eps in x - lse
    CHECK(std::abs(of.logp(r) - ref.logp) <= 1e-6 * std::max(1.0, std::abs(ref.logp)));
    CHECK(std::abs(of.entropy(r) - ref.entropy) <= 1e-5);
    double sum = 0;
    for (index_t v = 0; v < vocab; ++v) {
      CHECK(std::isfinite(gf(r, v)));
      sum += gf(r, v);
    }
    CHECK(std::abs(sum) <= 1e-4);  // softmax gradients sum to 0 over the vocabulary
  }
  // With lse kept in float the gradient is still finite, but log p loses |lse| * 6e-8 ~ 6e-4.
  std::vector<float> lse_f(rows), ent_f(rows), logp_f(rows);
  logprob_forward(lf.view(), std::span<const std::int32_t>(ids), 1.0, logp_f, ent_f, lse_f);
  logprob_backward(lf.view(), std::span<const std::int32_t>(ids), 1.0, lse_f, ent_f, ones, ones, gf.view());
  for (index_t r = 0; r < rows; ++r) {
    CHECK(logp_f[r] == of.logp(r));
    double sum = 0;
    for (index_t v = 0; v < vocab; ++v) sum += gf(r, v);
    CHECK(std::isfinite(sum));
    CHECK(std::abs(sum) <= 1e-2);
  }
  // Entropy of a row with k equal maxima and the rest 1e4 below: ln k.
  index_t k = 0;
  for (index_t v = 0; v < vocab; ++v) k += ld(0, v) == 1e4;
  CHECK(od.entropy(0) == doctest::Approx(std::log(static_cast<double>(k))).epsilon(1e-12));
}

TEST_CASE("logprob: a chunk of -inf logits adds nothing, a row of them gives NaN") {
  // Chunks of 2048 logits: row 0's first is all -inf, row 1's second, row 2 is -inf everywhere.
  const index_t rows = 3, vocab = 5000, chunk = 2048;
  const double temperature = 0.7;
  dense<double, 2> ld({rows, vocab});
  testing::fill_uniform(ld.view(), 41, -3, 3);
  for (index_t v = 0; v < chunk; ++v) ld(0, v) = -INFINITY;
  for (index_t v = chunk; v < 2 * chunk; ++v) ld(1, v) = -INFINITY;
  for (index_t v = 0; v < vocab; ++v) ld(2, v) = -INFINITY;
  dense<float, 2> lf({rows, vocab});
  for (index_t k = 0; k < ld.size(); ++k) lf.data()[k] = static_cast<float>(ld.data()[k]);
  const std::vector<std::int32_t> ids{3000, 100, 7};
  const auto of = logprob_forward(lf.view(), ids, temperature);
  const auto od = logprob_forward(ld.view(), ids, temperature);
  // What the finite logits alone give: the -inf ones have probability 0.
  std::vector<double> finite_row;
  for (index_t v = chunk; v < vocab; ++v) finite_row.push_back(ld(0, v));
  const auto ref0 = reference(finite_row.data(), vocab - chunk, 3000 - chunk, temperature);
  finite_row.clear();
  for (index_t v = 0; v < vocab; ++v)
    if (v < chunk || v >= 2 * chunk) finite_row.push_back(ld(1, v));
  const auto ref1 = reference(finite_row.data(), vocab - chunk, 100, temperature);
  for (const auto& [r, ref] : {std::pair{0, ref0}, std::pair{1, ref1}}) {
    INFO("row ", r);
    CHECK(od.logp(r) == doctest::Approx(ref.logp).epsilon(1e-12));
    CHECK(od.entropy(r) == doctest::Approx(ref.entropy).epsilon(1e-12));
    CHECK(of.logp(r) == doctest::Approx(ref.logp).epsilon(1e-5));
    CHECK(of.entropy(r) == doctest::Approx(ref.entropy).epsilon(1e-5));
  }
  CHECK(std::isnan(od.logp(2)));
  CHECK(std::isnan(od.entropy(2)));
  CHECK(std::isnan(of.logp(2)));
  CHECK(std::isnan(of.entropy(2)));
}

TEST_CASE("logprob: shift invariance, int32 and int64 ids, rows independent") {
  const index_t rows = 3, vocab = 2100;
  dense<double, 2> a({rows, vocab}), b({rows, vocab});
  testing::fill_uniform(a.view(), 17, -3, 3);
  for (index_t r = 0; r < rows; ++r)
    for (index_t v = 0; v < vocab; ++v) b(r, v) = a(r, v) + 40.0 * (r + 1);
  std::vector<std::int32_t> i32{5, 2099, 0};
  std::vector<std::int64_t> i64{5, 2099, 0};
  auto oa = logprob_forward(a.view(), i32, 1.0);
  auto oa64 = logprob_forward(a.view(), i64, 1.0);
  auto ob = logprob_forward(b.view(), i32, 1.0);
  auto one_row = logprob_forward(a.view().rows(1, 1), std::vector<std::int32_t>{2099}, 1.0);
  for (index_t r = 0; r < rows; ++r) {
    CHECK(oa.logp(r) == oa64.logp(r));
    CHECK(oa.entropy(r) == oa64.entropy(r));
    CHECK(ob.logp(r) == doctest::Approx(oa.logp(r)).epsilon(1e-12));
    CHECK(ob.entropy(r) == doctest::Approx(oa.entropy(r)).epsilon(1e-11));
  }
  CHECK(one_row.logp(0) == oa.logp(1));
  CHECK(one_row.entropy(0) == oa.entropy(1));
}

TEST_CASE("logprob: Eigen and xtensor give bit-identical results, float and double") {
  const index_t rows = 6, vocab = 3001;
  dense<float, 2> src({rows, vocab});
  testing::fill_uniform(src.view(), 23, -8, 8);
  RowMajorF ef(rows, vocab);
  RowMajorD ed(rows, vocab);
  xt::xtensor<float, 2> xf = xt::zeros<float>({std::size_t(rows), std::size_t(vocab)});
  xt::xtensor<double, 2> xd = xt::zeros<double>({std::size_t(rows), std::size_t(vocab)});
  for (index_t r = 0; r < rows; ++r)
    for (index_t v = 0; v < vocab; ++v) ef(r, v) = xf(r, v) = src(r, v), ed(r, v) = xd(r, v) = src(r, v);
  Eigen::Map<RowMajorF> mf(ef.data(), rows, vocab);
  std::vector<std::int32_t> ids{0, 1, 17, 3000, 1500, 2};
  const double tau = 0.9;

  auto e = logprob_forward(ef, ids, tau);
  auto m = logprob_forward(mf, ids, tau);
  auto x = logprob_forward(xf, ids, tau);
  static_assert(std::is_same_v<decltype(e.logp), Eigen::VectorXf>);
  static_assert(std::is_same_v<decltype(x.logp), xt::xtensor<float, 1>>);
  static_assert(std::is_same_v<decltype(e.lse), Eigen::VectorXd>);  // lse is kept in double
  auto edo = logprob_forward(ed, ids, tau);
  auto xdo = logprob_forward(xd, ids, tau);
  Eigen::VectorXf gl = Eigen::VectorXf::LinSpaced(rows, -1.0f, 2.0f), ge = Eigen::VectorXf::LinSpaced(rows, 0.5f, -0.5f);
  xt::xtensor<float, 1> xgl = xt::zeros<float>({std::size_t(rows)}), xge = xgl;
  for (index_t r = 0; r < rows; ++r) xgl(r) = gl(r), xge(r) = ge(r);
  RowMajorF eg(rows, vocab);
  xt::xtensor<float, 2> xg = xt::zeros<float>({std::size_t(rows), std::size_t(vocab)});
  logprob_backward(ef, std::span<const std::int32_t>(ids), tau, e.lse, e.entropy, gl, ge, eg);
  logprob_backward(xf, std::span<const std::int32_t>(ids), tau, x.lse, x.entropy, xgl, xge, xg);
  for (index_t r = 0; r < rows; ++r) {
    CHECK(e.logp(r) == x.logp(r));
    CHECK(e.entropy(r) == x.entropy(r));
    CHECK(e.lse(r) == x.lse(r));
    CHECK(m.logp(r) == e.logp(r));
    CHECK(edo.logp(r) == xdo.logp(r));
    CHECK(edo.entropy(r) == xdo.entropy(r));
    CHECK(std::abs(edo.logp(r) - e.logp(r)) <= 1e-5 * std::max(1.0, std::abs(edo.logp(r))));  // float vs double
    bool same = true;
    for (index_t v = 0; v < vocab; ++v) same = same && eg(r, v) == xg(r, v);
    CHECK(same);
  }
}

TEST_CASE("logprob: bad input is an lmrl::error naming the argument, the row and the id") {
  dense<float, 2> logits({2, 5});
  std::vector<float> out(2), none;
  std::vector<std::int32_t> ids{1, 5};
  CHECK_THROWS_WITH_AS(logprob_forward(logits.view(), std::span<const std::int32_t>(ids), 1.0, out, none, none),
                       doctest::Contains("logprob_forward: targets[1] = 5 is out of range for a vocabulary of 5"),
                       error);
  std::vector<std::int64_t> neg{-3, 0};
  CHECK_THROWS_WITH_AS(logprob_forward(logits.view(), neg), doctest::Contains("targets[0] = -3 is out of range"),
                       error);
  std::vector<std::int32_t> ok{1, 2};
  CHECK_THROWS_WITH_AS(logprob_forward(logits.view(), ok, 0.0), doctest::Contains("temperature = 0 must be positive"),
                       error);
  std::vector<std::int32_t> three{1, 2, 3};
  CHECK_THROWS_WITH_AS(logprob_forward(logits.view(), three), doctest::Contains("targets has 3 ids but logits has 2 rows"),
                       error);
  std::vector<float> short_out(1);
  CHECK_THROWS_WITH_AS(logprob_forward(logits.view(), std::span<const std::int32_t>(ok), 1.0, short_out, none, none),
                       doctest::Contains("logp has 1 elements but logits has 2 rows"), error);
  Eigen::MatrixXf column_major = Eigen::MatrixXf::Zero(2, 5);
  CHECK_THROWS_WITH_AS(logprob_forward(column_major, ok),
                       doctest::Contains("logits must have contiguous rows (stride 1 along the vocabulary)"), error);
  auto fwd = logprob_forward(logits.view(), ok);
  dense<float, 2> g({2, 4});
  CHECK_THROWS_WITH_AS(logprob_backward(logits.view(), std::span<const std::int32_t>(ok), 1.0, fwd.lse, none, out,
                                        none, g.view()),
                       doctest::Contains("grad_logits has shape [2 x 4] but logits has shape [2 x 5]"), error);
  dense<float, 2> g2({2, 5});
  CHECK_THROWS_WITH_AS(logprob_backward(logits.view(), std::span<const std::int32_t>(ok), 1.0, fwd.lse, none, none,
                                        out, g2.view()),
                       doctest::Contains("grad_entropy is given, so entropy needs 2 elements"), error);
  dense<float, 2> same = logits;
  CHECK_THROWS_WITH_AS(logprob_backward(same.view(), std::span<const std::int32_t>(ok), 1.0, fwd.lse, none, out, none,
                                        same.view()),
                       doctest::Contains("grad_logits overlaps logits"), error);
}
