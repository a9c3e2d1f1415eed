// Logit distillation divergences (lmrl/rl/distill.hpp): hand cases for both
// directions, agreement with exact_kl with the arguments swapped, gradients
// against finite differences, stability at +-1e4, names and bad input.
#include "lmrl/rl/distill.hpp"

#include <cmath>
#include <vector>

#include "lmrl/tensor/span.hpp"
#include "support/testing.hpp"

using namespace lmrl;
using doctest::Approx;

namespace {

double total(const dense<double, 2>& student, const dense<double, 2>& teacher, distill_divergence d, double tau) {
  std::vector<double> kl(static_cast<std::size_t>(student.shape()[0]));
  distillation_kl(student, teacher, d, kl, tau);
  double s = 0;
  for (double x : kl) s += x;
  return s;
}

}  // namespace

TEST_CASE("distillation_kl: hand case, teacher p = (1/2, 1/2), student q = (1/4, 3/4)") {
  // Logits log p and log q; the softmax gives p and q back.
  dense<double, 2> student({1, 2}), teacher({1, 2}), grad({1, 2});
  student(0, 0) = std::log(0.25), student(0, 1) = std::log(0.75);
  teacher(0, 0) = std::log(0.5), teacher(0, 1) = std::log(0.5);
  std::vector<double> kl(1);

  // forward: 1/2 ln(2) + 1/2 ln(2/3) = 1/2 ln(4/3); gradient q - p = (-1/4, 1/4)
  distillation_kl(student, teacher, distill_divergence::forward_kl, kl, grad);
  CHECK(kl[0] == Approx(0.5 * std::log(4.0 / 3.0)).epsilon(1e-14));
  CHECK(grad(0, 0) == Approx(-0.25).epsilon(1e-14));
  CHECK(grad(0, 1) == Approx(0.25).epsilon(1e-14));

  // reverse: 1/4 ln(1/2) + 3/4 ln(3/2); gradient q (log q - log p - KL)
  distillation_kl(student, teacher, distill_divergence::reverse_kl, kl, grad);
  const double reverse = 0.25 * std::log(0.5) + 0.75 * std::log(1.5);
  CHECK(kl[0] == Approx(reverse).epsilon(1e-14));
  CHECK(grad(0, 0) == Approx(0.25 * (std::log(0.5) - reverse)).epsilon(1e-13));
  CHECK(grad(0, 1) == Approx(0.75 * (std::log(1.5) - reverse)).epsilon(1e-13));

  // temperature 2 divides the gradient by 2 (and changes p and q: compare with the tempered logits at tau 1)
  dense<double, 2> s2({1, 2}), t2({1, 2}), g2({1, 2});
  for (index_t v = 0; v < 2; ++v) s2(0, v) = 2 * student(0, v), t2(0, v) = 2 * teacher(0, v);
  distillation_kl(s2, t2, distill_divergence::forward_kl, kl, g2, 2.0);
  CHECK(kl[0] == Approx(0.5 * std::log(4.0 / 3.0)).epsilon(1e-14));
  CHECK(g2(0, 0) == Approx(-0.125).epsilon(1e-14));
}

TEST_CASE("distillation_kl: forward KL is exact_kl with teacher and student swapped, reverse KL is exact_kl") {
  dense<double, 2> student({4, 300}), teacher({4, 300});
  testing::fill_uniform(student.view(), 11, -6, 6);
  testing::fill_uniform(teacher.view(), 12, -6, 6);
  std::vector<double> a(4), b(4);
  for (double tau : {1.0, 0.7}) {
    distillation_kl(student, teacher, distill_divergence::forward_kl, a, tau);
    exact_kl(teacher, student, b, tau);
    for (int r = 0; r < 4; ++r) CHECK(a[r] == Approx(b[r]).epsilon(1e-12));
    distillation_kl(student, teacher, distill_divergence::reverse_kl, a, tau);
    exact_kl(student, teacher, b, tau);
    for (int r = 0; r < 4; ++r) CHECK(a[r] == b[r]);
  }
}

TEST_CASE("distillation_kl: gradients with respect to the student's logits match finite differences") {
  for (const auto d : {distill_divergence::forward_kl, distill_divergence::reverse_kl})
    for (const double tau : {1.0, 1.7}) {
      CAPTURE(distill_divergence_name(d));
      CAPTURE(tau);
      dense<double, 2> student({3, 9}), teacher({3, 9}), grad({3, 9});
      testing::fill_uniform(student.view(), 21, -3, 3);
      testing::fill_uniform(teacher.view(), 22, -3, 3);
      std::vector<double> kl(3);
      distillation_kl(student, teacher, d, kl, grad, tau);
      testing::check_gradient([&](const dense<double, 2>& x) { return total(x, teacher, d, tau); }, student, grad,
                              1e-6, 1e-5, 1e-9);
    }
}

TEST_CASE("distillation_kl: float rows at logits of +-1e4 stay finite and agree with double") {
  dense<float, 2> sf({2, 64}), tf({2, 64}), gf({2, 64});
  dense<double, 2> sd({2, 64}), td({2, 64}), gd({2, 64});
  testing::fill_uniform(sd.view(), 31, -1e4, 1e4);
  testing::fill_uniform(td.view(), 32, -1e4, 1e4);
  for (index_t r = 0; r < 2; ++r)
    for (index_t v = 0; v < 64; ++v) {
      sd(r, v) = static_cast<float>(sd(r, v)), td(r, v) = static_cast<float>(td(r, v));
      sf(r, v) = static_cast<float>(sd(r, v)), tf(r, v) = static_cast<float>(td(r, v));
    }
  std::vector<float> kf(2);
  std::vector<double> kd(2);
  distillation_kl(sf, tf, distill_divergence::forward_kl, kf, gf);
  distillation_kl(sd, td, distill_divergence::forward_kl, kd, gd);
  for (index_t r = 0; r < 2; ++r) {
    CHECK(std::isfinite(kf[static_cast<std::size_t>(r)]));
    CHECK(kf[static_cast<std::size_t>(r)] == Approx(kd[static_cast<std::size_t>(r)]).epsilon(1e-6));
    for (index_t v = 0; v < 64; ++v) CHECK(gf(r, v) == Approx(gd(r, v)).epsilon(1e-6).scale(1e-6));
  }
}

TEST_CASE("distillation_kl: names, and bad input is an lmrl::error") {
  CHECK(distill_divergence_from_name("forward_kl") == distill_divergence::forward_kl);
  CHECK(distill_divergence_from_name("reverse_kl") == distill_divergence::reverse_kl);
  CHECK(std::string(distill_divergence_name(distill_divergence::reverse_kl)) == "reverse_kl");
  CHECK_THROWS_WITH_AS(distill_divergence_from_name("jsd"), doctest::Contains("allowed: forward_kl, reverse_kl"),
                       lmrl::error);
  dense<double, 2> a({2, 5}), b({2, 4}), c({2, 5});
  std::vector<double> kl(2), short_kl(1);
  CHECK_THROWS_AS(distillation_kl(a, b, distill_divergence::forward_kl, kl), lmrl::error);
  CHECK_THROWS_AS(distillation_kl(a, c, distill_divergence::forward_kl, short_kl), lmrl::error);
  CHECK_THROWS_AS(distillation_kl(a, c, distill_divergence::forward_kl, kl, 0.0), lmrl::error);
  c(1, 3) = std::nan("");
  CHECK_THROWS_WITH_AS(distillation_kl(a, c, distill_divergence::forward_kl, kl), doctest::Contains("row 1, column 3"),
                       lmrl::error);
}
