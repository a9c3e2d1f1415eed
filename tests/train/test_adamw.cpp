// AdamW (lmrl/train/adamw.hpp): hand-computed steps, decoupled weight decay
// and its no-decay ranges, state save/restore, backends, threads, bad input.
// The cross-check against torch.optim.AdamW is in test_reference_optim.cpp.
#include "lmrl/train/adamw.hpp"

#include <Eigen/Core>
#include <cmath>
#include <random>
#include <span>
#include <vector>
#include <xtensor/xadapt.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>

#include "lmrl/tensor/eigen.hpp"
#include "lmrl/tensor/span.hpp"
#include "lmrl/tensor/xtensor.hpp"
#include "support/testing.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

using namespace lmrl;
using doctest::Approx;

namespace {

using testing::random_vector;

template <class T>
std::span<const T> cspan(const std::vector<T>& v) {
  return std::span<const T>(v);
}

}  // namespace

TEST_CASE("adamw: defaults are torch.optim.AdamW's") {
  adamw_config c;
  CHECK(c.lr == 1e-3);
  CHECK(c.beta1 == 0.9);
  CHECK(c.beta2 == 0.999);
  CHECK(c.eps == 1e-8);
  CHECK(c.weight_decay == 0.01);
}

TEST_CASE("adamw: first step by hand, weight decay applied before the update") {
  // Step 1 from zero moments: m = 0.1 g, v = 0.001 g^2, bc1 = 0.1, bc2 = 0.001, so
  // m / bc1 = g and sqrt(v) / sqrt(bc2) = |g|: p <- p (1 - lr wd) - lr g / (|g| + eps).
  // lr = 0.1, wd = 0.01: decay factor 1 - 0.001 = 0.999.
  //   p = 1.0,  g = 0.5:   0.999  - 0.1 * 0.5 / (0.5 + 1e-8)    = 0.899 + 2e-9 (to 1e-17)
  //   p = -2.0, g = -0.25: -1.998 + 0.1 * 0.25 / (0.25 + 1e-8)  = -1.898 - 4e-9
  //   p = 0.5,  g = 0:     only the decay, 0.4995 (0 / eps = 0)
  adamw<double> opt(3, {.lr = 0.1, .weight_decay = 0.01});
  std::vector<double> p{1.0, -2.0, 0.5};
  const std::vector<double> g{0.5, -0.25, 0.0};
  opt.step(p, cspan(g));
  CHECK(opt.step_count() == 1);
  CHECK(p[0] == Approx(0.899 + 2e-9).epsilon(1e-15));
  CHECK(p[1] == Approx(-1.898 - 4e-9).epsilon(1e-15));
  CHECK(p[2] == Approx(0.4995).epsilon(1e-15));
  // the moments: exp_avg = 0.1 g, exp_avg_sq = 0.001 g^2
  CHECK(opt.exp_avg()[0] == Approx(0.05).epsilon(1e-15));
  CHECK(opt.exp_avg()[1] == Approx(-0.025).epsilon(1e-15));
  CHECK(opt.exp_avg_sq()[0] == Approx(0.001 * 0.25).epsilon(1e-15));
  CHECK(opt.exp_avg_sq()[1] == Approx(0.001 * 0.0625).epsilon(1e-15));
  CHECK(opt.exp_avg_sq()[2] == 0.0);
}

TEST_CASE("adamw: second step by hand with the gradient's sign flipped") {
  // lr = 1, wd = 0, eps = 0. Step 1, g = 1: m = 0.1, v = 0.001, update 1 -> p = 3 - 1 = 2.
  // Step 2, g = -1: m = 0.9 * 0.1 - 0.1 = -0.01; v = 0.999 * 0.001 + 0.001 = 0.001999;
  // bc1 = 1 - 0.81 = 0.19, bc2 = 1 - 0.998001 = 0.001999: m_hat = -1/19, v_hat = 1,
  // p = 2 + 1/19.
  adamw<double> opt(1, {.lr = 1.0, .eps = 0.0, .weight_decay = 0.0});
  std::vector<double> p{3.0};
  opt.step(p, cspan(std::vector<double>{1.0}));
  CHECK(p[0] == Approx(2.0).epsilon(1e-14));
  opt.step(p, cspan(std::vector<double>{-1.0}));
  CHECK(opt.exp_avg()[0] == Approx(-0.01).epsilon(1e-14));
  CHECK(opt.exp_avg_sq()[0] == Approx(0.001999).epsilon(1e-14));
  CHECK(p[0] == Approx(2.0 + 1.0 / 19.0).epsilon(1e-14));
}

TEST_CASE("adamw: a constant gradient moves every step by lr * g / (|g| + eps)") {
  // With g fixed, m_t / bc1_t = g and v_t / bc2_t = g^2 at every t.
  adamw<double> opt(2, {.lr = 0.01, .weight_decay = 0.0});
  std::vector<double> p{0.0, 0.0};
  const std::vector<double> g{2.0, -0.5};
  for (int t = 1; t <= 5; ++t) {
    opt.step(p, cspan(g));
    CHECK(p[0] == Approx(-0.01 * t * 2.0 / (2.0 + 1e-8)).epsilon(1e-12));
    CHECK(p[1] == Approx(0.01 * t * 0.5 / (0.5 + 1e-8)).epsilon(1e-12));
  }
}

TEST_CASE("adamw: beta1 < 0.5 takes lerp's other branch and gives the same moment") {
  // m = m + w (g - m) for w < 0.5, m = g - (g - m)(1 - w) otherwise: both are
  // beta1 m + (1 - beta1) g. beta1 = 0.25: m1 = 0.75 * 4 = 3, m2 = 0.25 * 3 + 0.75 * 0 = 0.75.
  adamw<double> opt(1, {.lr = 0.0, .beta1 = 0.25, .weight_decay = 0.0});
  std::vector<double> p{1.0};
  opt.step(p, cspan(std::vector<double>{4.0}));
  CHECK(opt.exp_avg()[0] == 3.0);
  opt.step(p, cspan(std::vector<double>{0.0}));
  CHECK(opt.exp_avg()[0] == 0.75);
  CHECK(p[0] == 1.0);  // lr = 0 changes nothing
}

TEST_CASE("adamw: no_weight_decay ranges, in any order, overlapping or touching") {
  // Buffer of 10: no decay on [2, 4), [3, 5) (overlapping), [5, 6) (touching), [8, 10).
  adamw<double> opt(10, {.lr = 0.5, .weight_decay = 0.1},
                    {{8, 2}, {3, 2}, {2, 2}, {5, 1}, {0, 0}});
  const auto& s = opt.segments();
  REQUIRE(s.size() == 4);
  CHECK((s[0].begin == 0 && s[0].end == 2 && s[0].decay));
  CHECK((s[1].begin == 2 && s[1].end == 6 && !s[1].decay));
  CHECK((s[2].begin == 6 && s[2].end == 8 && s[2].decay));
  CHECK((s[3].begin == 8 && s[3].end == 10 && !s[3].decay));
  // With zero gradients the Adam update is 0 / (0 + eps) = 0: only the decay
  // acts, p * (1 - 0.5 * 0.1) = 0.95 p outside the ranges.
  std::vector<double> p(10, 2.0);
  opt.step(p, cspan(std::vector<double>(10, 0.0)));
  const std::vector<double> expected{1.9, 1.9, 2, 2, 2, 2, 1.9, 1.9, 2, 2};
  for (std::size_t i = 0; i < 10; ++i) CHECK(p[i] == Approx(expected[i]).epsilon(1e-15));
  // One range covering everything: no decay anywhere.
  adamw<double> none(4, {.weight_decay = 0.1}, {{0, 4}});
  REQUIRE(none.segments().size() == 1);
  CHECK(!none.segments()[0].decay);
}

TEST_CASE("adamw: the no-decay part of a buffer steps exactly as an optimizer with weight_decay = 0") {
  const std::size_t n = 50;
  auto p_mixed = random_vector<float>(n, 1);
  auto p_plain = p_mixed;
  adamw<float> mixed(n, {.lr = 0.05, .weight_decay = 0.2}, {{10, 40}});
  adamw<float> plain(n, {.lr = 0.05, .weight_decay = 0.0});
  for (int t = 0; t < 4; ++t) {
    const auto g = random_vector<float>(n, 100 + t);
    mixed.step(p_mixed, cspan(g));
    plain.step(p_plain, cspan(g));
  }
  for (std::size_t i = 10; i < n; ++i) CHECK(p_mixed[i] == p_plain[i]);
  for (std::size_t i = 0; i < 10; ++i) CHECK(p_mixed[i] != p_plain[i]);
}

TEST_CASE("adamw: state saved after k steps and loaded into a new optimizer continues bit for bit") {
  const std::size_t n = 64;
  const adamw_config c{.lr = 0.02, .beta1 = 0.85, .beta2 = 0.99, .eps = 1e-7, .weight_decay = 0.05};
  auto p = random_vector<float>(n, 7);
  adamw<float> a(n, c, {{0, 8}});
  for (int t = 0; t < 6; ++t) a.step(p, cspan(random_vector<float>(n, 200 + t)), 0.02 * (t + 1));
  // The checkpoint: plain arrays.
  const std::int64_t saved_step = a.step_count();
  const std::vector<float> saved_state(a.state().begin(), a.state().end());
  auto p_resumed = p;
  for (int t = 6; t < 12; ++t) a.step(p, cspan(random_vector<float>(n, 200 + t)), 0.02 * (t + 1));

  adamw<float> b(n, c, {{0, 8}});
  b.load_state(saved_step, std::span<const float>(saved_state));
  CHECK(b.step_count() == 6);
  for (int t = 6; t < 12; ++t) b.step(p_resumed, cspan(random_vector<float>(n, 200 + t)), 0.02 * (t + 1));
  CHECK(b.step_count() == 12);
  for (std::size_t i = 0; i < n; ++i) CHECK(p_resumed[i] == p[i]);
  for (std::size_t i = 0; i < 2 * n; ++i) CHECK(b.state()[i] == a.state()[i]);

  // reset(): back to the state before the first step.
  b.reset();
  CHECK(b.step_count() == 0);
  for (float x : b.state()) CHECK(x == 0.0f);
}

TEST_CASE("adamw: std::vector, Eigen and xtensor buffers give bit-identical steps") {
  const index_t n = 33;
  const adamw_config c{.lr = 0.03, .weight_decay = 0.1};
  auto p0 = random_vector<double>(n, 11);
  std::vector<std::vector<double>> grads;
  for (int t = 0; t < 5; ++t) grads.push_back(random_vector<double>(n, 300 + t));

  std::vector<double> pv = p0;
  Eigen::VectorXd pe = Eigen::Map<Eigen::VectorXd>(p0.data(), n);
  xt::xtensor<double, 1> px = xt::adapt(p0, {static_cast<std::size_t>(n)});
  adamw<double> ov(n, c, {{3, 5}}), oe(n, c, {{3, 5}}), ox(n, c, {{3, 5}});
  for (int t = 0; t < 5; ++t) {
    const double lr = 0.03 / (t + 1);
    ov.step(pv, grads[t], lr);
    Eigen::VectorXd ge = Eigen::Map<Eigen::VectorXd>(grads[t].data(), n);
    oe.step(pe, ge, lr);
    xt::xtensor<double, 1> gx = xt::adapt(grads[t], {static_cast<std::size_t>(n)});
    ox.step(px, gx, lr);
  }
  for (index_t i = 0; i < n; ++i) {
    CHECK(pe(i) == pv[i]);
    CHECK(px(i) == pv[i]);
  }
  CHECK(pv != p0);

  // float too
  std::vector<float> fv(p0.begin(), p0.end());
  Eigen::VectorXf fe = Eigen::Map<Eigen::VectorXf>(fv.data(), n);
  adamw<float> fov(n, c), foe(n, c);
  for (int t = 0; t < 5; ++t) {
    std::vector<float> g(grads[t].begin(), grads[t].end());
    Eigen::VectorXf ge = Eigen::Map<Eigen::VectorXf>(g.data(), n);
    fov.step(fv, g, 0.01);
    foe.step(fe, ge, 0.01);
  }
  for (index_t i = 0; i < n; ++i) CHECK(fe(i) == fv[i]);
}

TEST_CASE("adamw: float steps stay within float rounding of double steps") {
  const std::size_t n = 100;
  auto pd = random_vector<double>(n, 21);
  std::vector<float> pf(pd.begin(), pd.end());
  for (std::size_t i = 0; i < n; ++i) pd[i] = pf[i];
  adamw<double> od(n, {.lr = 0.01});
  adamw<float> of(n, {.lr = 0.01});
  for (int t = 0; t < 10; ++t) {
    auto g = random_vector<float>(n, 400 + t);
    std::vector<double> gd(g.begin(), g.end());
    of.step(pf, cspan(g));
    od.step(pd, cspan(gd));
  }
  for (std::size_t i = 0; i < n; ++i) CHECK(std::abs(pf[i] - pd[i]) <= 1e-6 * std::max(1.0, std::abs(pd[i])));
}

#if defined(_OPENMP)
TEST_CASE("adamw: the same bits with one thread and with all threads") {
  const std::size_t n = (1 << 17) + 123;  // above the threshold where the loop runs in parallel
  auto p1 = random_vector<float>(n, 31);
  auto p2 = p1;
  adamw<float> a(n, {}, {{1000, 5000}, {70000, 10}}), b(n, {}, {{1000, 5000}, {70000, 10}});
  const int threads = omp_get_max_threads();
  for (int t = 0; t < 3; ++t) {
    const auto g = random_vector<float>(n, 500 + t);
    omp_set_num_threads(1);
    a.step(p1, cspan(g));
    omp_set_num_threads(std::max(2, threads));
    b.step(p2, cspan(g));
  }
  omp_set_num_threads(threads);
  bool same = true;
  for (std::size_t i = 0; i < n; ++i) same = same && p1[i] == p2[i];
  CHECK(same);
}
#endif

TEST_CASE("adamw: bad input names the argument and the sizes") {
  CHECK_THROWS_WITH_AS(adamw<float>(4, {.beta1 = 1.0}), doctest::Contains("beta1 = 1 must be in [0, 1)"), error);
  CHECK_THROWS_WITH_AS(adamw<float>(4, {.beta2 = -0.1}), doctest::Contains("beta2"), error);
  CHECK_THROWS_WITH_AS(adamw<float>(4, {.lr = -1.0}), doctest::Contains("lr = -1 must be >= 0"), error);
  CHECK_THROWS_WITH_AS(adamw<float>(4, {.eps = -1e-8}), doctest::Contains("eps"), error);
  CHECK_THROWS_WITH_AS(adamw<float>(4, {.weight_decay = -0.1}), doctest::Contains("weight_decay"), error);
  CHECK_THROWS_WITH_AS(adamw<float>(4, {}, {{2, 3}}),
                       doctest::Contains("no_weight_decay[0] = [2, 5) is outside the parameter buffer of 4"),
                       error);
  CHECK_THROWS_AS(adamw<float>(4, {}, {{-1, 2}}), error);

  adamw<float> opt(4);
  std::vector<float> p(4, 1.0f), g3(3, 0.0f), g4(4, 0.0f);
  CHECK_THROWS_WITH_AS(opt.step(p, cspan(g3)),
                       doctest::Contains("grads has 3 elements but the optimizer was made for 4"), error);
  std::vector<float> p5(5, 1.0f);
  CHECK_THROWS_WITH_AS(opt.step(p5, cspan(g4)), doctest::Contains("params has 5 elements"), error);
  CHECK_THROWS_WITH_AS(opt.step(p, cspan(g4), -0.5), doctest::Contains("lr = -0.5"), error);
  CHECK_THROWS_WITH_AS(opt.step(p, cspan(g4), NAN), doctest::Contains("must be finite"), error);
  CHECK(opt.step_count() == 0);  // failed calls do not count
  CHECK_THROWS_WITH_AS(opt.load_state(3, std::span<const float>(g3)), doctest::Contains("state has 3 elements"),
                       error);
  CHECK_THROWS_WITH_AS(opt.load_state(-1, cspan(g4), cspan(g4)), doctest::Contains("step = -1"), error);

  // A strided 1-D array is refused, not silently read as contiguous.
  xt::xtensor<float, 1> big = xt::zeros<float>({8});
  auto every_other = xt::view(big, xt::range(0, 8, 2));
  std::vector<float> g(4, 1.0f);
  CHECK_THROWS_WITH_AS(opt.step(every_other, g, 0.1), doctest::Contains("params has stride 2"), error);
}
