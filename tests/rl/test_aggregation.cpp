// Loss aggregation: hand-computed values of every mode, the split-invariance
// of micro-batches with batch_totals (TRL #3021), gradients, properties,
// backends and bad input.
#include "lmrl/rl/aggregation.hpp"

#include <Eigen/Core>
#include <cmath>
#include <limits>
#include <string>
#include <vector>
#include <xtensor/xtensor.hpp>

#include "lmrl/tensor/eigen.hpp"
#include "lmrl/tensor/xtensor.hpp"
#include "support/testing.hpp"

using namespace lmrl;

namespace {

const double nan_value = std::numeric_limits<double>::quiet_NaN();

// mask            loss (masked positions hold NaN: they must never be read)
// 1 1 1 0         1 2 3 .
// 1 1 0 0         4 6 . .
// 1 0 0 0         6 . . .
dense<double, 2> small_mask() {
  dense<double, 2> m({3, 4});
  const double v[3][4] = {{1, 1, 1, 0}, {1, 1, 0, 0}, {1, 0, 0, 0}};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) m(i, j) = v[i][j];
  return m;
}
dense<double, 2> small_loss() {
  dense<double, 2> l({3, 4});
  const double v[3][4] = {{1, 2, 3, nan_value}, {4, 6, nan_value, nan_value}, {6, nan_value, nan_value, nan_value}};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) l(i, j) = v[i][j];
  return l;
}

template <class A>
double loss_of(const A& mode, batch_totals totals = {}) {
  return aggregate(mode, small_loss(), small_mask(), totals);
}

// All modes, by name, with the structs they stand for.
const std::vector<std::string> all_names = {"token-mean",          "bnpo",  "dapo", "token-sum",
                                            "seq-mean-token-mean", "grpo",  "seq-mean-token-sum",
                                            "luspo",               "seq-mean-token-sum-norm", "dr_grpo"};

}  // namespace

TEST_CASE("aggregation: every mode on a 3 x 4 batch, computed by hand") {
  // active tokens N = 3 + 2 + 1 = 6, token sum = 1+2+3 + 4+6 + 6 = 22,
  // row sums 6, 10, 6; row means 6/3 = 2, 10/2 = 5, 6/1 = 6.
  CHECK(loss_of(token_sum{}) == doctest::Approx(22.0));
  CHECK(loss_of(token_mean{}) == doctest::Approx(22.0 / 6));           // 11/3
  CHECK(loss_of(dapo{}) == doctest::Approx(22.0 / 6));                 // one batch: N = 6
  CHECK(loss_of(seq_mean_token_mean{}) == doctest::Approx(13.0 / 3));  // (2 + 5 + 6) / 3
  CHECK(loss_of(seq_mean_token_sum{}) == doctest::Approx(22.0 / 3));   // (6 + 10 + 6) / 3
  CHECK(loss_of(seq_mean_token_sum_norm{}) == doctest::Approx(22.0 / 12));       // L = T = 4: 22 / (3 * 4)
  CHECK(loss_of(seq_mean_token_sum_norm{10}) == doctest::Approx(22.0 / 30));     // L = 10: 22 / (3 * 10)

  // The same micro-batch as part of a step of 6 sequences and 11 active tokens.
  const batch_totals step{6, 11};
  CHECK(loss_of(token_mean{}, step) == doctest::Approx(2.0));             // 22 / 11
  CHECK(loss_of(dapo{}, step) == doctest::Approx(2.0));
  CHECK(loss_of(seq_mean_token_mean{}, step) == doctest::Approx(13.0 / 6));  // (2 + 5 + 6) / 6
  CHECK(loss_of(seq_mean_token_sum{}, step) == doctest::Approx(22.0 / 6));
  CHECK(loss_of(seq_mean_token_sum_norm{4}, step) == doctest::Approx(22.0 / 24));  // 22 / (6 * 4)
  CHECK(loss_of(token_sum{}, step) == doctest::Approx(22.0));  // no normalizer

  // The weights themselves: seq-mean-token-mean gives 1/(3*3), 1/(3*2), 1/(3*1) on the rows.
  auto w = aggregation_weights(seq_mean_token_mean{}, small_mask());
  CHECK(w(0, 0) == doctest::Approx(1.0 / 9));
  CHECK(w(1, 1) == doctest::Approx(1.0 / 6));
  CHECK(w(2, 0) == doctest::Approx(1.0 / 3));
  CHECK(w(0, 3) == 0.0);
  CHECK(w(2, 1) == 0.0);
}

TEST_CASE("aggregation: run-time names give the same weights as the structs") {
  const auto mask = small_mask();
  auto same = [&](const loss_aggregation& a, const auto& s) {
    auto wa = aggregation_weights(a, mask, batch_totals{5, 9});
    auto ws = aggregation_weights(s, mask, batch_totals{5, 9});
    for (index_t i = 0; i < 3; ++i)
      for (index_t j = 0; j < 4; ++j) CHECK(wa(i, j) == ws(i, j));
  };
  same(loss_aggregation("token-mean"), token_mean{});
  same(loss_aggregation("bnpo"), token_mean{});
  same(loss_aggregation("dapo"), dapo{});
  same(loss_aggregation("token-sum"), token_sum{});
  same(loss_aggregation("grpo"), seq_mean_token_mean{});
  same(loss_aggregation("seq-mean-token-mean"), seq_mean_token_mean{false});
  same(loss_aggregation("luspo"), seq_mean_token_sum{});
  same(loss_aggregation("seq-mean-token-sum"), seq_mean_token_sum{false});
  same(loss_aggregation("dr_grpo", 7), seq_mean_token_sum_norm{7});
  same(loss_aggregation("seq-mean-token-sum-norm"), seq_mean_token_sum_norm{0, false});
  CHECK(loss_aggregation().name() == "token-mean");  // verl's default
  CHECK(loss_aggregation("grpo").count_empty_sequences());
  CHECK(!loss_aggregation("seq-mean-token-mean").count_empty_sequences());
}

TEST_CASE("aggregation: fully masked rows count in S for TRL names, not for verl names") {
  // Add an empty 4th row to the 3 x 4 batch: TRL "grpo" = (2 + 5 + 6) / 4 = 13/4,
  // verl "seq-mean-token-mean" = 13/3; "luspo" = 22/4, "seq-mean-token-sum" = 22/3;
  // "dr_grpo" = 22/(4*4), "seq-mean-token-sum-norm" = 22/(3*4). Token modes do not change: 22/6.
  dense<double, 2> mask({4, 4}), loss({4, 4});
  const auto m3 = small_mask();
  const auto l3 = small_loss();
  for (index_t i = 0; i < 3; ++i)
    for (index_t j = 0; j < 4; ++j) {
      mask(i, j) = m3(i, j);
      loss(i, j) = l3(i, j);
    }
  for (index_t j = 0; j < 4; ++j) loss(3, j) = 100.0;  // masked: never read
  auto L = [&](const char* name) { return aggregate(loss_aggregation(name), loss, mask); };
  CHECK(L("grpo") == doctest::Approx(13.0 / 4));
  CHECK(L("seq-mean-token-mean") == doctest::Approx(13.0 / 3));
  CHECK(L("luspo") == doctest::Approx(22.0 / 4));
  CHECK(L("seq-mean-token-sum") == doctest::Approx(22.0 / 3));
  CHECK(L("dr_grpo") == doctest::Approx(22.0 / 16));
  CHECK(L("seq-mean-token-sum-norm") == doctest::Approx(22.0 / 12));
  CHECK(L("token-mean") == doctest::Approx(22.0 / 6));
  CHECK(L("bnpo") == doctest::Approx(22.0 / 6));
  // With totals, both count the step's sequences: 13 / 8.
  CHECK(aggregate(loss_aggregation("grpo"), loss, mask, {8, 0}) == doctest::Approx(13.0 / 8));
  CHECK(aggregate(loss_aggregation("seq-mean-token-mean"), loss, mask, {8, 0}) == doctest::Approx(13.0 / 8));
  // An all-masked batch gives 0, not NaN.
  dense<double, 2> none({2, 3});
  CHECK(aggregate(token_mean{}, loss, mask, {}) == doctest::Approx(22.0 / 6));
  CHECK(aggregate(token_mean{}, none, none) == 0.0);
  CHECK(aggregate(seq_mean_token_mean{false}, none, none) == 0.0);
}

TEST_CASE("aggregation: uneven micro-batches with batch_totals sum to the one-big-batch loss and gradient") {
  // 10 sequences x 7 tokens, right-padded, one fully masked row; split 3 + 1 + 6.
  const index_t B = 10, T = 7;
  auto mask = testing::random_padding_mask<double>(B, T, 11, 1);
  for (index_t j = 0; j < T; ++j) mask(4, j) = 0;
  dense<double, 2> loss({B, T});
  testing::fill_uniform(loss.view(), 12, -2, 3);
  const index_t active = detail::count_active(matrix_view<const double>(mask.view()));
  const batch_totals step{B, active};
  const index_t splits[][2] = {{0, 3}, {3, 1}, {4, 6}};

  for (const auto& name : all_names) {
    INFO("mode ", name);
    const loss_aggregation mode(name, 9);
    dense<double, 2> w_full({B, T});
    mode.weights<double>(mask.view(), step, w_full.view());
    const double full = aggregate<double>(loss.view(), w_full.view());
    // The same full loss with totals left at 0 (one batch is the whole step),
    // except that verl's seq-mean names then leave the empty row out of S: 9 instead of 10.
    const bool verl_seq_mean = !mode.count_empty_sequences() && name.rfind("seq-mean", 0) == 0;
    CHECK(aggregate(mode, loss, mask) == doctest::Approx(verl_seq_mean ? full * 10 / 9 : full).epsilon(1e-14));
    double summed = 0;
    for (const auto& s : splits) {
      const matrix_view<const double> m = mask.view().rows(s[0], s[1]);
      const matrix_view<const double> l = loss.view().rows(s[0], s[1]);
      dense<double, 2> w({s[1], T});
      mode.weights(m, step, w.view());
      summed += aggregate<double>(l, w.view());
      // dL/dl of the micro-batch equals the matching rows of the full gradient, bit for bit.
      for (index_t i = 0; i < s[1]; ++i)
        for (index_t j = 0; j < T; ++j) CHECK(w(i, j) == w_full(s[0] + i, j));
    }
    CHECK(summed == doctest::Approx(full).epsilon(1e-13));
  }

  // The trap itself: without totals, token-mean of the micro-batches does not
  // add up (each normalizes by its own tokens).
  double naive = 0;
  for (const auto& s : splits)
    naive += aggregate(token_mean{}, loss.view().rows(s[0], s[1]), mask.view().rows(s[0], s[1])) / 3.0;
  CHECK(naive != doctest::Approx(aggregate(token_mean{}, loss, mask)));
}

TEST_CASE("aggregation: dL/dl is w (finite differences), permuting rows permutes the weights") {
  const index_t B = 4, T = 5;
  auto mask = testing::random_padding_mask<double>(B, T, 3, 1);
  dense<double, 2> loss({B, T});
  testing::fill_uniform(loss.view(), 4);
  for (const auto& name : all_names) {
    INFO("mode ", name);
    const loss_aggregation mode(name);
    auto w = aggregation_weights(mode, mask, batch_totals{6, 30});
    auto f = [&](const dense<double, 2>& x) { return aggregate(mode, x, mask, batch_totals{6, 30}); };
    testing::check_gradient(f, loss, w);

    // Reverse the rows: the loss is the same, the weights are reversed.
    dense<double, 2> rmask({B, T}), rloss({B, T});
    for (index_t i = 0; i < B; ++i)
      for (index_t j = 0; j < T; ++j) {
        rmask(i, j) = mask(B - 1 - i, j);
        rloss(i, j) = loss(B - 1 - i, j);
      }
    auto rw = aggregation_weights(mode, rmask, batch_totals{6, 30});
    for (index_t i = 0; i < B; ++i)
      for (index_t j = 0; j < T; ++j) CHECK(rw(i, j) == w(B - 1 - i, j));
    CHECK(aggregate(mode, rloss, rmask) == doctest::Approx(aggregate(mode, loss, mask)).epsilon(1e-14));

    // Masked positions change nothing: overwrite them with garbage.
    dense<double, 2> garbage = loss;
    for (index_t i = 0; i < B; ++i)
      for (index_t j = 0; j < T; ++j)
        if (mask(i, j) == 0) garbage(i, j) = (i + j) % 2 ? nan_value : 1e30;
    CHECK(aggregate(mode, garbage, mask) == aggregate(mode, loss, mask));
  }
}

TEST_CASE("aggregation: Eigen and xtensor inputs give bit-identical weights, in double and float") {
  const index_t B = 5, T = 6;
  auto mask = testing::random_padding_mask<double>(B, T, 21, 0);
  Eigen::MatrixXd em(B, T);
  Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rm(B, T);
  xt::xtensor<double, 2> xm = xt::zeros<double>({std::size_t(B), std::size_t(T)});
  xt::xtensor<float, 2> xf = xt::zeros<float>({std::size_t(B), std::size_t(T)});
  Eigen::MatrixXf ef(B, T);
  for (index_t i = 0; i < B; ++i)
    for (index_t j = 0; j < T; ++j) {
      em(i, j) = rm(i, j) = xm(i, j) = mask(i, j);
      xf(i, j) = ef(i, j) = static_cast<float>(mask(i, j));
    }
  Eigen::Map<Eigen::MatrixXd> map(em.data(), B, T);
  for (const auto& name : all_names) {
    INFO("mode ", name);
    const loss_aggregation mode(name);
    const batch_totals tot{7, 0};
    auto we = aggregation_weights(mode, em, tot);
    auto wr = aggregation_weights(mode, rm, tot);
    auto wm = aggregation_weights(mode, map, tot);
    auto wx = aggregation_weights(mode, xm, tot);
    auto wxf = aggregation_weights(mode, xf, tot);
    auto wef = aggregation_weights(mode, ef, tot);
    static_assert(std::is_same_v<decltype(wx), xt::xtensor<double, 2>>);
    static_assert(std::is_same_v<decltype(wef), Eigen::MatrixXf>);
    for (index_t i = 0; i < B; ++i)
      for (index_t j = 0; j < T; ++j) {
        CHECK(we(i, j) == wr(i, j));
        CHECK(we(i, j) == wm(i, j));
        CHECK(we(i, j) == wx(i, j));
        CHECK(wxf(i, j) == wef(i, j));
      }
    // Into caller storage of another backend.
    Eigen::MatrixXd out(B, T);
    aggregation_weights(mode, xm, tot, out);
    for (index_t i = 0; i < B; ++i)
      for (index_t j = 0; j < T; ++j) CHECK(out(i, j) == we(i, j));
  }
}

TEST_CASE("aggregation: bad input is an lmrl::error naming the function and the sizes") {
  const auto mask = small_mask();
  dense<double, 2> w({3, 5});
  CHECK_THROWS_WITH_AS(token_mean{}.weights<double>(mask.view(), {}, w.view()),
                       doctest::Contains("token_mean::weights: w has shape [3 x 5] but mask has shape [3 x 4]"),
                       error);
  dense<double, 2> half = mask;
  half(1, 2) = 0.5;
  CHECK_THROWS_WITH_AS(aggregate(seq_mean_token_mean{}, small_loss(), half),
                       doctest::Contains("mask(1, 2) = 0.5"), error);
  CHECK_THROWS_WITH_AS(aggregate(token_mean{}, small_loss(), mask, {0, 5}),
                       doctest::Contains("totals.active_tokens = 5 is less than the 6 active tokens"), error);
  CHECK_THROWS_WITH_AS(aggregate(seq_mean_token_sum{}, small_loss(), mask, {2, 0}),
                       doctest::Contains("totals.sequences = 2 is less than the 3 sequences"), error);
  CHECK_THROWS_WITH_AS(aggregate(dapo{}, small_loss(), mask, {-1, 0}), doctest::Contains("must not be negative"),
                       error);
  CHECK_THROWS_WITH_AS(loss_aggregation("seq-mean"), doctest::Contains("unknown mode \"seq-mean\"; known modes: token-mean"),
                       error);
  CHECK_THROWS_WITH_AS(loss_aggregation("dr_grpo", -3), doctest::Contains("max_completion_length = -3"), error);
  CHECK_THROWS_WITH_AS(aggregate<double>(small_loss().view(), w.view()),
                       doctest::Contains("aggregate: loss has shape [3 x 4] but w has shape [3 x 5]"), error);
}
