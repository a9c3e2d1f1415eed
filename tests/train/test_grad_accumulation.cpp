// Gradient accumulation (lmrl/train/grad_accumulation.hpp): on a small linear
// model, K micro-batches with the right loss scales give the big batch's
// gradient and the same AdamW update; the mean of micro-means differs when the
// micro-batches differ in size; the accumulator's bookkeeping; bad input.
#include "lmrl/train/grad_accumulation.hpp"

#include <cmath>
#include <span>
#include <vector>

#include "lmrl/train/schedule.hpp"
#include "support/testing.hpp"

using namespace lmrl;
using doctest::Approx;

namespace {

// y = W x + b with W [2 x 3] and b [2], all in one buffer: [W row-major, b].
// Loss of a batch: mean over its samples of 0.5 * ||y - t||^2.
constexpr index_t in = 3, out = 2, n_params = out * in + out;

struct sample {
  double x[in];
  double t[out];
};

double loss(std::span<const double> p, std::span<const sample> batch) {
  double total = 0;
  for (const auto& s : batch)
    for (index_t o = 0; o < out; ++o) {
      double y = p[out * in + o];
      for (index_t i = 0; i < in; ++i) y += p[o * in + i] * s.x[i];
      total += 0.5 * (y - s.t[o]) * (y - s.t[o]);
    }
  return total / static_cast<double>(batch.size());
}

// dL/dW = mean (y - t) x^T, dL/db = mean (y - t), written into grad.
void loss_gradient(std::span<const double> p, std::span<const sample> batch, std::span<double> grad) {
  std::fill(grad.begin(), grad.end(), 0.0);
  const double inv_n = 1.0 / static_cast<double>(batch.size());
  for (const auto& s : batch)
    for (index_t o = 0; o < out; ++o) {
      double y = p[out * in + o];
      for (index_t i = 0; i < in; ++i) y += p[o * in + i] * s.x[i];
      const double r = (y - s.t[o]) * inv_n;
      for (index_t i = 0; i < in; ++i) grad[o * in + i] += r * s.x[i];
      grad[out * in + o] += r;
    }
}

std::vector<sample> random_batch(std::size_t n, std::uint64_t seed) {
  std::vector<double> values(n * (in + out));
  testing::fill_uniform(vector_view<double>(values.data(), {static_cast<index_t>(values.size())}), seed);
  std::vector<sample> batch(n);
  for (std::size_t k = 0; k < n; ++k) {
    for (index_t i = 0; i < in; ++i) batch[k].x[i] = values[k * (in + out) + i];
    for (index_t o = 0; o < out; ++o) batch[k].t[o] = values[k * (in + out) + in + o];
  }
  return batch;
}

std::vector<double> initial_params() {
  std::vector<double> p(n_params);
  testing::fill_uniform(vector_view<double>(p.data(), {n_params}), 77);
  return p;
}

}  // namespace

TEST_CASE("linear model: the gradient by hand and by finite differences") {
  // W = 0, b = 0, x = [1, 2, 3], t = [1, -1]: y = 0, y - t = [-1, 1], loss = 0.5 (1 + 1) = 1,
  // dW = [[-1, -2, -3], [1, 2, 3]], db = [-1, 1].
  const std::vector<sample> one{{{1, 2, 3}, {1, -1}}};
  const std::vector<double> zero(n_params, 0.0);
  std::vector<double> g(n_params);
  loss_gradient(zero, one, g);
  CHECK(loss(zero, one) == 1.0);
  CHECK(g == std::vector<double>{-1, -2, -3, 1, 2, 3, -1, 1});

  const auto batch = random_batch(5, 1);
  dense<double, 2> x({1, n_params});
  const auto p0 = initial_params();
  std::copy(p0.begin(), p0.end(), x.data());
  dense<double, 2> analytic({1, n_params});
  loss_gradient(std::span<const double>(x.data(), n_params), batch, std::span<double>(analytic.data(), n_params));
  testing::check_gradient(
      [&](const dense<double, 2>& y) { return loss(std::span<const double>(y.data(), n_params), batch); }, x,
      analytic);
}

TEST_CASE("accumulation: K equal micro-batches scaled by 1/K give the big batch's gradient and AdamW update") {
  const auto batch = random_batch(12, 2);
  auto p_big = initial_params();
  auto p_acc = p_big;
  std::vector<double> g_big(n_params), g_acc(n_params, 0.0), micro(n_params);
  adamw<double> opt_big(n_params, {.lr = 0.05, .weight_decay = 0.1}, {{6, 2}});
  adamw<double> opt_acc(n_params, {.lr = 0.05, .weight_decay = 0.1}, {{6, 2}});
  gradient_accumulator<double> acc(g_acc, 3);
  const lr_schedule schedule{.type = lr_schedule::kind::linear, .num_warmup_steps = 1, .num_training_steps = 5};
  for (int step = 0; step < 4; ++step) {
    loss_gradient(p_big, batch, g_big);
    for (int k = 0; k < 3; ++k) {
      loss_gradient(p_acc, std::span<const sample>(batch).subspan(4 * k, 4), micro);
      acc.add(micro, 1.0 / 3);  // HF: loss / gradient_accumulation_steps
    }
    REQUIRE(acc.ready());
    for (index_t i = 0; i < n_params; ++i) CHECK(g_acc[i] == Approx(g_big[i]).epsilon(1e-13));
    const double lr = schedule.lr(0.05, step + 1);  // skip the zero-lr first warmup step
    const double norm_big = optimizer_step(opt_big, std::span<double>(p_big), std::span<double>(g_big), lr, 0.5);
    const double norm_acc = acc.step(opt_acc, p_acc, lr, 0.5);
    CHECK(norm_acc == Approx(norm_big).epsilon(1e-13));
    CHECK(acc.micro_batches() == 0);
    CHECK(acc.optimizer_steps() == step + 1);
    for (double x : g_acc) CHECK(x == 0.0);  // zero_grad after the step
    for (index_t i = 0; i < n_params; ++i) CHECK(p_acc[i] == Approx(p_big[i]).epsilon(1e-12));
  }
  CHECK(p_acc != initial_params());
  CHECK(loss(p_acc, batch) < loss(initial_params(), batch));
}

TEST_CASE("accumulation: unequal micro-batches need n_k / N, not 1 / K") {
  // Sizes 2, 3, 7 of 12: scale n_k / N gives the mean over all 12 samples;
  // 1 / K weights the 2 samples of the first micro-batch like the 7 of the last.
  const auto batch = random_batch(12, 3);
  const auto p = initial_params();
  std::vector<double> g_big(n_params), micro(n_params), weighted(n_params, 0.0), mean_of_means(n_params, 0.0);
  loss_gradient(p, batch, g_big);
  const index_t sizes[3] = {2, 3, 7};
  index_t at = 0;
  for (index_t n_k : sizes) {
    loss_gradient(p, std::span<const sample>(batch).subspan(at, n_k), micro);
    accumulate_gradients(std::span<double>(weighted), std::span<const double>(micro), micro_batch_loss_scale(n_k, 12));
    accumulate_gradients(std::span<double>(mean_of_means), std::span<const double>(micro), 1.0 / 3);
    at += n_k;
  }
  double worst = 0;
  for (index_t i = 0; i < n_params; ++i) {
    CHECK(weighted[i] == Approx(g_big[i]).epsilon(1e-13));
    worst = std::max(worst, std::abs(mean_of_means[i] - g_big[i]));
  }
  CHECK(worst > 1e-3);
  CHECK(micro_batch_loss_scale(3, 12) == 0.25);
}

TEST_CASE("accumulation: a backward that adds into the buffer itself, counted with count_micro_batch") {
  // The model's backward writes loss_scale * gradient into grads (torch's .grad +=).
  const auto batch = random_batch(8, 4);
  auto p = initial_params();
  std::vector<double> grads(n_params, 0.0), micro(n_params), g_big(n_params);
  loss_gradient(p, batch, g_big);
  gradient_accumulator<double> acc(grads, 2);
  for (int k = 0; k < 2; ++k) {
    loss_gradient(p, std::span<const sample>(batch).subspan(4 * k, 4), micro);
    for (index_t i = 0; i < n_params; ++i) grads[i] += 0.5 * micro[i];
    acc.count_micro_batch();
  }
  for (index_t i = 0; i < n_params; ++i) CHECK(grads[i] == Approx(g_big[i]).epsilon(1e-13));
  adamw<double> opt(n_params);
  // max_grad_norm = 0: no clipping, the norm is still returned for the log.
  double norm_sq = 0;
  for (double x : g_big) norm_sq += x * x;
  CHECK(acc.step(opt, p, 1e-3, 0.0) == Approx(std::sqrt(norm_sq)).epsilon(1e-14));
  CHECK(opt.step_count() == 1);
}

TEST_CASE("accumulate_gradients: total += scale * micro, float") {
  std::vector<float> total{1.0f, 2.0f}, micro{4.0f, -8.0f};
  accumulate_gradients(std::span<float>(total), std::span<const float>(micro), 0.25f);
  CHECK(total == std::vector<float>{2.0f, 0.0f});  // 1 + 1, 2 - 2
  accumulate_gradients(std::span<float>(total), std::span<const float>(micro));
  CHECK(total == std::vector<float>{6.0f, -8.0f});
}

TEST_CASE("accumulation: bad input") {
  std::vector<float> grads(4, 0.0f), short_micro(3, 0.0f), micro(4, 1.0f), params(4, 0.0f);
  CHECK_THROWS_WITH_AS(accumulate_gradients(std::span<float>(grads), std::span<const float>(short_micro)),
                       doctest::Contains("micro has 3 elements but total has 4"), error);
  CHECK_THROWS_WITH_AS(gradient_accumulator<float>(grads, 0), doctest::Contains("accumulation_steps = 0"), error);
  gradient_accumulator<float> acc(grads, 2);
  adamw<float> opt(4);
  acc.add(micro, 0.5);
  CHECK_THROWS_WITH_AS(acc.step(opt, params, 1e-3), doctest::Contains("1 micro-batches accumulated but 2"), error);
  acc.add(micro, 0.5);
  CHECK_THROWS_WITH_AS(acc.add(micro, 0.5), doctest::Contains("already holds 2 micro-batches"), error);
  CHECK_THROWS_AS(acc.count_micro_batch(), error);
  CHECK(grads[0] == 1.0f);
  acc.zero();
  CHECK(grads[0] == 0.0f);
  CHECK(acc.micro_batches() == 0);
  CHECK_THROWS_WITH_AS(micro_batch_loss_scale(5, 4), doctest::Contains("micro_items = 5"), error);
  CHECK_THROWS_WITH_AS(micro_batch_loss_scale(0, 0), doctest::Contains("total_items = 0"), error);
}
