// train/distill.hpp: the logit distillation loss is the mean divergence of the
// two models' full next-token distributions over the marked tokens (checked
// against both models' logits), its gradient matches finite differences for
// both divergences, packing changes nothing, and distillation pulls a small
// student toward a larger teacher.
#include "lmrl/train/distill.hpp"

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "support/model_shapes.hpp"
#include "support/testing.hpp"

using namespace lmrl;

namespace {

transformer_config student_shape() { return testing::transformer_shape(13, 8, 1, 2, 1, 16); }
transformer_config teacher_shape() { return testing::transformer_shape(13, 16, 2, 4, 2, 24); }

std::vector<pretrain_example> some_sequences(std::uint64_t seed) {
  std::mt19937 gen(static_cast<unsigned>(seed));
  std::vector<pretrain_example> batch;
  for (std::size_t len : {6, 3, 9, 5}) {
    pretrain_example e;
    for (std::size_t t = 0; t < len; ++t) e.tokens.push_back(static_cast<std::int32_t>(gen() % 13));
    e.loss_from = len > 5 ? 2 : 0;
    batch.push_back(std::move(e));
  }
  return batch;
}

// The loss from whole logits rows: mean over marked tokens of D(teacher row t-1, student row t-1).
double from_full_logits(transformer<double>& student, transformer<double>& teacher,
                        const std::vector<pretrain_example>& batch, distill_divergence d, double tau) {
  double sum = 0, count = 0;
  for (const auto& e : batch) {
    const auto n = static_cast<index_t>(e.tokens.size());
    dense<std::int32_t, 2> tokens({1, n});
    dense<double, 2> mask({1, n}), zs({n, 13}), zt({n, 13});
    for (index_t t = 0; t < n; ++t) tokens(0, t) = e.tokens[static_cast<std::size_t>(t)], mask(0, t) = 1;
    const token_batch<double> tb{tokens.view(), mask.view()};
    student.logits(tb, zs.view());
    teacher.logits(tb, zt.view());
    for (index_t t = std::max<index_t>(1, static_cast<index_t>(e.loss_from)); t < n; ++t) {
      std::vector<double> kl(1);
      distillation_kl<double>(matrix_view<const double>(zs.view().data + (t - 1) * 13, {1, 13}),
                              matrix_view<const double>(zt.view().data + (t - 1) * 13, {1, 13}), d,
                              vector_view<double>(kl.data(), {1}), {}, tau);
      sum += kl[0];
      count += 1;
    }
  }
  return sum / count;
}

}  // namespace

TEST_CASE("logit distillation: the loss is the mean divergence of the full distributions over the marked tokens") {
  transformer<double> student(student_shape(), 1, 0.5), teacher(teacher_shape(), 2, 0.5);
  const auto batch = some_sequences(3);
  for (const auto d : {distill_divergence::forward_kl, distill_divergence::reverse_kl})
    for (const double tau : {1.0, 2.0}) {
      CAPTURE(distill_divergence_name(d));
      const double expected = from_full_logits(student, teacher, batch, d, tau);
      CHECK(expected > 0.01);
      student.zero_grad();
      const double got = logit_distillation_loss(student, teacher, batch, {d, tau}, true);
      CHECK(got == doctest::Approx(expected).epsilon(1e-12));
      const double packed = logit_distillation_loss(student, teacher, batch, {d, tau}, false,
                                                    batch_layout{std::numeric_limits<double>::infinity(), 12});
      CHECK(packed == doctest::Approx(expected).epsilon(1e-12));
      for (double g : teacher.gradients()) CHECK(g == 0);  // the teacher is never trained
    }
}

TEST_CASE("logit distillation: the student's gradient matches finite differences (forward and reverse KL)") {
  for (const auto d : {distill_divergence::forward_kl, distill_divergence::reverse_kl}) {
    CAPTURE(distill_divergence_name(d));
    transformer<double> student(student_shape(), 4, 0.5), teacher(teacher_shape(), 5, 0.5);
    const auto batch = some_sequences(6);
    student.logit_chunk_rows = 4;  // several chunks per micro-batch
    student.zero_grad();
    logit_distillation_loss(student, teacher, batch, {d, 1.3}, true, batch_layout{10, 0});  // two micro-batches
    const std::vector<double> analytic(student.gradients().begin(), student.gradients().end());
    auto values = student.parameters().values();
    std::mt19937_64 rng(7);
    for (const auto& e : student.parameters().layout().entries()) {
      double largest = 0;
      for (int k = 0; k < 6; ++k) {
        const auto at = static_cast<std::size_t>(e.offset + static_cast<index_t>(rng() % static_cast<std::uint64_t>(e.size)));
        const double saved = values[at], h = 1e-5;
        values[at] = saved + h;
        const double up = logit_distillation_loss(student, teacher, batch, {d, 1.3}, false);
        values[at] = saved - h;
        const double down = logit_distillation_loss(student, teacher, batch, {d, 1.3}, false);
        values[at] = saved;
        const double numeric = (up - down) / (2 * h);
        INFO(e.name, ": analytic ", analytic[at], ", finite difference ", numeric);
        CHECK(std::abs(analytic[at] - numeric) <= 1e-9 + 1e-6 * std::abs(numeric));
        largest = std::max(largest, std::abs(analytic[at]));
      }
      INFO(e.name);
      CHECK(largest > 1e-5);
    }
    // the loss without backward leaves the gradient buffer as it was
    CHECK(std::equal(analytic.begin(), analytic.end(), student.gradients().begin()));
  }
}

TEST_CASE("distill() pulls a small student toward a larger teacher, and a different vocabulary is an error") {
  transformer<float> teacher(testing::transformer_shape(13, 32, 2, 4, 2, 64), 8, 0.3);
  transformer<float> student(testing::transformer_shape(13, 16, 2, 4, 2, 32), 9);
  std::mt19937 gen(10);
  const auto next = [&] {
    pretrain_example e;
    for (int t = 0; t < 12; ++t) e.tokens.push_back(static_cast<std::int32_t>(gen() % 13));
    return e;
  };
  std::vector<pretrain_example> held;
  for (int k = 0; k < 16; ++k) held.push_back(next());
  const logit_distillation_config config{distill_divergence::forward_kl, 1.0};
  const double before = logit_distillation_loss(student, teacher, held, config, false);
  pretrain_config c;
  c.steps = 400;
  c.batch_size = 16;
  c.lr = 1e-2;
  c.log_every = 400;
  const pretrain_result r = distill(student, teacher, next, c, config);
  const double after = logit_distillation_loss(student, teacher, held, config, false);
  INFO("held-out KL(teacher || student) ", before, " -> ", after);
  CHECK(after < 0.5 * before);
  CHECK(r.records.back().loss < before);
  transformer<float> other(testing::transformer_shape(14, 8, 1, 2, 1, 16), 1);
  CHECK_THROWS_WITH_AS(logit_distillation_loss(other, teacher, held, config, false),
                       doctest::Contains("shared tokenizer"), lmrl::error);
}
