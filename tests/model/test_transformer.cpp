// model/transformer.hpp: the Qwen2-style model's forward pass over padded
// batches and its hand-written backward pass, checked against central finite
// differences on every parameter tensor.
#include "lmrl/model/transformer.hpp"

#include <cmath>
#include <random>
#include <vector>

#include "support/model_shapes.hpp"
#include "support/testing.hpp"
#include "support/threads.hpp"

using namespace lmrl;

static_assert(Policy<transformer<double>>);
static_assert(Policy<transformer<float>>);

namespace {

transformer_config tiny_config(bool tied, bool bias) {
  transformer_config c = testing::transformer_shape(37, 16, 2, 4, 2, 24, 32);
  c.rope_theta = 100.0;  // small theta: positions rotate visibly in a short sequence
  c.tie_word_embeddings = tied;
  c.attention_bias = bias;
  return c;
}

// Every parameter random (norm weights and biases too), large enough that
// every path carries a visible gradient.
template <class T>
transformer_parameters<T> random_parameters(const transformer_config& c, std::uint64_t seed) {
  transformer_parameters<T> p(c);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  for (const auto& e : p.layout().entries()) {
    T* v = p.values().data() + e.offset;
    for (index_t k = 0; k < e.size; ++k) {
      const double x = u(rng);
      v[k] = static_cast<T>(e.role == parameter_entry::kind::norm ? 1 + 0.5 * x : 0.5 * x);
    }
  }
  return p;
}

// A batch of sequences with their own padding.
struct batch_data {
  index_t B, L;
  std::vector<std::int32_t> tokens;
  std::vector<double> mask;
  batch_data(index_t b, index_t l) : B(b), L(l), tokens(static_cast<std::size_t>(b * l), 0), mask(tokens.size(), 0) {}
  // Writes ids into row i starting at column `first`.
  void put(index_t i, index_t first, const std::vector<std::int32_t>& ids) {
    for (std::size_t k = 0; k < ids.size(); ++k) {
      const auto r = static_cast<std::size_t>(i * L + first) + k;
      tokens[r] = ids[k];
      mask[r] = 1;
    }
  }
  template <class T>
  std::vector<T> mask_as() const {
    return std::vector<T>(mask.begin(), mask.end());
  }
};

template <class T>
struct run_result {
  dense<T, 2> logp, entropy;
};

template <class T>
run_result<T> run(transformer<T>& model, const batch_data& b, bool with_entropy = true) {
  const auto m = b.mask_as<T>();
  token_batch<T> batch{matrix_view<const std::int32_t>(b.tokens.data(), {b.B, b.L}),
                       matrix_view<const T>(m.data(), {b.B, b.L})};
  run_result<T> r{dense<T, 2>({b.B, b.L}), dense<T, 2>({b.B, b.L})};
  model.log_probs(batch, r.logp.view(), with_entropy ? r.entropy.view() : matrix_view<T>{});
  return r;
}

template <class T>
void run_backward(transformer<T>& model, const batch_data& b, const dense<T, 2>& gl, const dense<T, 2>& ge) {
  const auto m = b.mask_as<T>();
  token_batch<T> batch{matrix_view<const std::int32_t>(b.tokens.data(), {b.B, b.L}),
                       matrix_view<const T>(m.data(), {b.B, b.L})};
  model.backward(batch, gl.view(), ge.size() ? ge.view() : matrix_view<const T>{});
}

// Three sequences: left padded, unpadded, right padded (and a length-1 one).
batch_data mixed_batch() {
  batch_data b(4, 7);
  b.put(0, 2, {5, 17, 3, 30, 8});
  b.put(1, 0, {1, 2, 36, 2, 9, 11, 0});
  b.put(2, 0, {22, 4, 4, 13});
  b.put(3, 6, {7});
  return b;
}

double loss(transformer<double>& model, const batch_data& b, const dense<double, 2>& gl, const dense<double, 2>& ge) {
  const auto r = run(model, b);
  double s = 0;
  for (index_t k = 0; k < gl.size(); ++k) s += gl.data()[k] * r.logp.data()[k] + ge.data()[k] * r.entropy.data()[k];
  return s;
}

// n random element indices of tensor e.
std::vector<index_t> random_picks(const parameter_entry& e, std::mt19937_64& rng, int n) {
  std::vector<index_t> picks;
  std::uniform_int_distribution<index_t> pick(0, e.size - 1);
  for (int k = 0; k < n; ++k) picks.push_back(pick(rng));
  return picks;
}

// Central differences (h = 1e-5) of loss_of() at the picked elements of tensor
// e against the analytic gradient; returns the largest |analytic| seen.
template <class Loss>
double check_by_finite_differences(transformer<double>& model, const parameter_entry& e,
                                   const std::vector<index_t>& picks, const std::vector<double>& analytic,
                                   Loss&& loss_of) {
  auto values = model.parameters().values();
  const double h = 1e-5;
  double largest = 0;
  for (index_t k : picks) {
    const auto at = static_cast<std::size_t>(e.offset + k);
    const double saved = values[at];
    values[at] = saved + h;
    const double up = loss_of();
    values[at] = saved - h;
    const double down = loss_of();
    values[at] = saved;
    const double numeric = (up - down) / (2 * h);
    const double a = analytic[at];
    largest = std::max(largest, std::abs(a));
    INFO(e.name, "[", k, "]: analytic ", a, ", finite difference ", numeric);
    CHECK(std::abs(a - numeric) <= 1e-9 + 1e-6 * std::max(std::abs(a), std::abs(numeric)));
  }
  return largest;
}

void check_every_tensor(bool tied, bool bias) {
  const auto c = tiny_config(tied, bias);
  transformer<double> model(random_parameters<double>(c, 11));
  const auto b = mixed_batch();
  dense<double, 2> gl({b.B, b.L}), ge({b.B, b.L});
  testing::fill_uniform(gl.view(), 1);
  testing::fill_uniform(ge.view(), 2);
  run(model, b);
  model.zero_grad();
  run_backward(model, b, gl, ge);
  const std::vector<double> analytic(model.gradients().begin(), model.gradients().end());
  std::mt19937_64 rng(3);
  for (const auto& e : model.parameters().layout().entries()) {
    // every element of small tensors; 12 random elements of the larger ones
    std::vector<index_t> picks;
    if (e.size <= 24) {
      for (index_t k = 0; k < e.size; ++k) picks.push_back(k);
    } else {
      picks = random_picks(e, rng, 12);
    }
    const double largest =
        check_by_finite_differences(model, e, picks, analytic, [&] { return loss(model, b, gl, ge); });
    INFO(e.name);
    CHECK(largest > 1e-4);  // the check is not vacuous: every tensor gets a gradient
  }
}

}  // namespace

TEST_CASE("the backward pass matches finite differences on every parameter tensor (tied, with bias)") {
  check_every_tensor(true, true);
}
TEST_CASE("the backward pass matches finite differences on every parameter tensor (untied lm_head, no bias)") {
  check_every_tensor(false, false);
}
TEST_CASE("the backward pass matches finite differences on every parameter tensor (untied, with bias)") {
  check_every_tensor(false, true);
}

TEST_CASE("gradients accumulate across calls, zero_grad clears them, entropy gradient without forward entropy") {
  const auto c = tiny_config(true, true);
  transformer<double> model(random_parameters<double>(c, 5));
  const auto b = mixed_batch();
  dense<double, 2> gl({b.B, b.L}), ge({b.B, b.L});
  testing::fill_uniform(gl.view(), 1);
  testing::fill_uniform(ge.view(), 2);
  run(model, b);
  run_backward(model, b, gl, ge);
  const std::vector<double> once(model.gradients().begin(), model.gradients().end());
  run(model, b, false);  // no entropy in the forward pass: backward recomputes it
  run_backward(model, b, gl, ge);
  for (std::size_t k = 0; k < once.size(); ++k) CHECK(model.gradients()[k] == doctest::Approx(2 * once[k]).epsilon(1e-12));
  model.zero_grad();
  for (double g : model.gradients()) CHECK(g == 0);
}

TEST_CASE("log-probs: position 0 and padding get 0, entropy is in (0, log V), probabilities are sane") {
  transformer<double> model(random_parameters<double>(tiny_config(true, true), 2));
  const auto b = mixed_batch();
  const auto r = run(model, b);
  for (index_t i = 0; i < b.B; ++i)
    for (index_t t = 0; t < b.L; ++t) {
      const bool real = b.mask[static_cast<std::size_t>(i * b.L + t)] != 0;
      const bool prev = t > 0 && b.mask[static_cast<std::size_t>(i * b.L + t - 1)] != 0;
      if (real && prev) {
        CHECK(r.logp(i, t) < 0);
        CHECK(r.entropy(i, t) > 0);
        CHECK(r.entropy(i, t) <= std::log(37.0) + 1e-12);
      } else {
        CHECK(r.logp(i, t) == 0);
        CHECK(r.entropy(i, t) == 0);
      }
    }
  CHECK(r.logp(0, 2) == 0);  // first real token of a left-padded row
  CHECK(r.logp(0, 3) != 0);
  CHECK(r.logp(3, 6) == 0);  // a one-token sequence has no prediction
}

TEST_CASE("a sequence gives the same log-probs alone and inside a left- or right-padded batch") {
  transformer<double> model(random_parameters<double>(tiny_config(true, true), 3));
  const std::vector<std::int32_t> seq = {4, 9, 31, 2, 2, 18};
  batch_data alone(1, 6);
  alone.put(0, 0, seq);
  const auto ref = run(model, alone);
  batch_data padded(3, 9);
  padded.put(0, 3, seq);                       // left padding
  padded.put(1, 0, seq);                       // right padding
  padded.put(2, 0, {1, 2, 3, 4, 5, 6, 7, 8, 9});  // a neighbour of full length
  const auto r = run(model, padded);
  for (index_t t = 0; t < 6; ++t) {
    CHECK(r.logp(0, 3 + t) == doctest::Approx(ref.logp(0, t)).epsilon(1e-12));
    CHECK(r.logp(1, t) == doctest::Approx(ref.logp(0, t)).epsilon(1e-12));
    CHECK(r.entropy(0, 3 + t) == doctest::Approx(ref.entropy(0, t)).epsilon(1e-12));
    CHECK(r.entropy(1, t) == doctest::Approx(ref.entropy(0, t)).epsilon(1e-12));
  }
  // what the padding holds does not matter (the ids there are never read)
  padded.tokens[0] = 99999;
  padded.tokens[1 * 9 + 8] = -5;
  const auto r2 = run(model, padded);
  for (index_t k = 0; k < r.logp.size(); ++k) CHECK(r2.logp.data()[k] == r.logp.data()[k]);
}

TEST_CASE("causal: changing a later token leaves earlier log-probs unchanged") {
  transformer<double> model(random_parameters<double>(tiny_config(false, true), 4));
  batch_data b(1, 8);
  b.put(0, 0, {3, 1, 4, 1, 5, 9, 2, 6});
  const auto r1 = run(model, b);
  b.tokens[5] = 20;  // changes logp at 5 (its target) and after, nothing before
  const auto r2 = run(model, b);
  for (index_t t = 0; t < 5; ++t) CHECK(r2.logp(0, t) == doctest::Approx(r1.logp(0, t)).epsilon(1e-13));
  CHECK(r2.logp(0, 5) != doctest::Approx(r1.logp(0, 5)));
  CHECK(r2.logp(0, 6) != doctest::Approx(r1.logp(0, 6)));
}

TEST_CASE("a batch equals its sequences one at a time, forward and accumulated gradients") {
  const auto c = tiny_config(true, true);
  transformer<double> batched(random_parameters<double>(c, 6)), single(random_parameters<double>(c, 6));
  const auto b = mixed_batch();
  dense<double, 2> gl({b.B, b.L}), ge({b.B, b.L});
  testing::fill_uniform(gl.view(), 7);
  testing::fill_uniform(ge.view(), 8);
  const auto r = run(batched, b);
  run_backward(batched, b, gl, ge);
  for (index_t i = 0; i < b.B; ++i) {
    batch_data one(1, b.L);
    dense<double, 2> g1({1, b.L}), e1({1, b.L});
    for (index_t t = 0; t < b.L; ++t) {
      const auto k = static_cast<std::size_t>(i * b.L + t);
      one.tokens[static_cast<std::size_t>(t)] = b.tokens[k];
      one.mask[static_cast<std::size_t>(t)] = b.mask[k];
      g1(0, t) = gl(i, t);
      e1(0, t) = ge(i, t);
    }
    const auto r1 = run(single, one);
    run_backward(single, one, g1, e1);  // micro-batch accumulation
    for (index_t t = 0; t < b.L; ++t) CHECK(r1.logp(0, t) == doctest::Approx(r.logp(i, t)).epsilon(1e-12));
  }
  for (std::size_t k = 0; k < batched.gradients().size(); ++k)
    CHECK(single.gradients()[k] == doctest::Approx(batched.gradients()[k]).epsilon(1e-10).scale(1e-12));
}

TEST_CASE("logits(): log_softmax of row t-1 at token t is log_probs, temperature divides the logits") {
  transformer<double> model(random_parameters<double>(tiny_config(false, false), 9));
  const auto b = mixed_batch();
  model.temperature = 0.7;
  const auto r = run(model, b);
  const auto m = b.mask_as<double>();
  token_batch<double> batch{matrix_view<const std::int32_t>(b.tokens.data(), {b.B, b.L}),
                            matrix_view<const double>(m.data(), {b.B, b.L})};
  dense<double, 2> logits({b.B * b.L, 37});
  model.logits(batch, logits.view());
  for (index_t i = 0; i < b.B; ++i)
    for (index_t t = 1; t < b.L; ++t) {
      if (r.logp(i, t) == 0) continue;
      const index_t row = i * b.L + t - 1;
      double mx = -1e300, s = 0;
      for (index_t v = 0; v < 37; ++v) mx = std::max(mx, logits(row, v) / 0.7);
      for (index_t v = 0; v < 37; ++v) s += std::exp(logits(row, v) / 0.7 - mx);
      const double expect = logits(row, b.tokens[static_cast<std::size_t>(i * b.L + t)]) / 0.7 - mx - std::log(s);
      CHECK(r.logp(i, t) == doctest::Approx(expect).epsilon(1e-12));
    }
  for (index_t v = 0; v < 37; ++v) CHECK(logits(0, v) == 0);  // padding
  dense<double, 2> hidden({b.B * b.L, 16});
  model.hidden_states(batch, hidden.view());
  CHECK(hidden(0, 3) == 0);
  CHECK(hidden(2, 3) != 0);
}

TEST_CASE("the output layer's chunk size does not change the results") {
  transformer<double> model(random_parameters<double>(tiny_config(true, true), 10));
  const auto b = mixed_batch();
  dense<double, 2> gl({b.B, b.L}), ge({b.B, b.L});
  testing::fill_uniform(gl.view(), 1);
  testing::fill_uniform(ge.view(), 2);
  const auto r1 = run(model, b);
  run_backward(model, b, gl, ge);
  const std::vector<double> g1(model.gradients().begin(), model.gradients().end());
  model.zero_grad();
  model.logit_chunk_rows = 3;  // 16 output rows in chunks of 3, 3, ..., 1
  const auto r2 = run(model, b);
  run_backward(model, b, gl, ge);
  for (index_t k = 0; k < r1.logp.size(); ++k) CHECK(r2.logp.data()[k] == doctest::Approx(r1.logp.data()[k]).epsilon(1e-14));
  for (std::size_t k = 0; k < g1.size(); ++k)
    CHECK(model.gradients()[k] == doctest::Approx(g1[k]).epsilon(1e-12).scale(1e-14));
}

TEST_CASE("a float model agrees with the double model") {
  const auto c = tiny_config(true, true);
  const auto pd = random_parameters<double>(c, 12);
  transformer_parameters<float> pf(c);
  for (std::size_t k = 0; k < pf.values().size(); ++k) pf.values()[k] = static_cast<float>(pd.values()[k]);
  transformer<double> md(pd);
  transformer<float> mf(pf);
  const auto b = mixed_batch();
  const auto rd = run(md, b);
  const auto rf = run(mf, b);
  for (index_t k = 0; k < rd.logp.size(); ++k) {
    CHECK(rf.logp.data()[k] == doctest::Approx(rd.logp.data()[k]).epsilon(1e-5).scale(1));
    CHECK(rf.entropy.data()[k] == doctest::Approx(rd.entropy.data()[k]).epsilon(1e-5).scale(1));
  }
  dense<double, 2> gl({b.B, b.L});
  dense<float, 2> glf({b.B, b.L});
  testing::fill_uniform(gl.view(), 1);
  testing::fill_uniform(glf.view(), 1);
  run_backward(md, b, gl, dense<double, 2>());
  run_backward(mf, b, glf, dense<float, 2>());
  double largest = 0;
  for (double g : md.gradients()) largest = std::max(largest, std::abs(g));
  for (std::size_t k = 0; k < md.gradients().size(); ++k)
    CHECK(std::abs(mf.gradients()[k] - md.gradients()[k]) <= 1e-5 * largest);
}

TEST_CASE("a fresh model from a config and a seed is deterministic, copies are independent") {
  transformer<float> a(transformer_config::tiny(), 1), b(transformer_config::tiny(), 1);
  CHECK(std::equal(a.parameters().values().begin(), a.parameters().values().end(), b.parameters().values().begin()));
  transformer<float> copy = a;
  copy.parameters().values()[0] += 1;
  CHECK(copy.parameters().values()[0] != a.parameters().values()[0]);
  CHECK(copy.gradient_weights().embed.data == copy.gradients().data());
}

TEST_CASE("bad input is lmrl::error naming what is wrong") {
  transformer<double> model(random_parameters<double>(tiny_config(true, true), 1));
  batch_data b(2, 4);
  b.put(0, 0, {1, 2, 3, 4});
  b.put(1, 1, {5, 37, 6});  // 37 is out of range for a vocabulary of 37
  dense<double, 2> logp({2, 4});
  auto m = b.mask_as<double>();
  token_batch<double> batch{matrix_view<const std::int32_t>(b.tokens.data(), {2, 4}),
                            matrix_view<const double>(m.data(), {2, 4})};
  CHECK_THROWS_WITH_AS(model.log_probs(batch, logp.view(), {}),
                       doctest::Contains("tokens(1, 2) = 37 is out of range for vocab_size = 37"), error);
  b.tokens[6] = 6;
  CHECK_THROWS_WITH_AS(model.backward(batch, logp.view(), {}), doctest::Contains("call log_probs"), error);
  dense<double, 2> wrong({2, 3});
  CHECK_THROWS_WITH_AS(model.log_probs(batch, wrong.view(), {}), doctest::Contains("logp has shape [2 x 3]"), error);
  token_batch<double> mismatched{batch.tokens, matrix_view<const double>(m.data(), {2, 3})};
  CHECK_THROWS_WITH_AS(model.log_probs(mismatched, logp.view(), {}),
                       doctest::Contains("attention_mask has shape [2 x 3]"), error);
  m[1] = 0.5;
  CHECK_THROWS_WITH_AS(model.log_probs(batch, logp.view(), {}), doctest::Contains("attention_mask(0, 1) = 0.5"),
                       error);
  m[1] = 1;
  model.log_probs(batch, logp.view(), {});
  b.tokens[0] = 2;  // a different batch
  CHECK_THROWS_WITH_AS(model.backward(batch, logp.view(), {}), doctest::Contains("differs at (0, 0)"), error);
  CHECK_THROWS_WITH_AS(model.backward(batch, wrong.view(), {}), doctest::Contains("differs"), error);
  b.tokens[0] = 1;
  CHECK_THROWS_WITH_AS(model.backward(batch, wrong.view(), {}), doctest::Contains("grad_logp has shape [2 x 3]"),
                       error);
  model.temperature = 0;
  CHECK_THROWS_WITH_AS(model.log_probs(batch, logp.view(), {}), doctest::Contains("temperature = 0"), error);
  model.temperature = 1;
  batch_data long_batch(1, 40);  // max_position_embeddings = 32
  for (index_t t = 0; t < 40; ++t) long_batch.put(0, t, {1});
  auto lm = long_batch.mask_as<double>();
  dense<double, 2> lp({1, 40});
  CHECK_THROWS_WITH_AS(model.log_probs({matrix_view<const std::int32_t>(long_batch.tokens.data(), {1, 40}),
                                        matrix_view<const double>(lm.data(), {1, 40})},
                                       lp.view(), {}),
                       doctest::Contains("sequence 0 (mask value 1) has more real tokens than max_position_embeddings = 32"),
                       error);
  // 40 columns of which 32 real (left padded) is fine: positions count real tokens only
  for (index_t t = 0; t < 8; ++t) lm[static_cast<std::size_t>(t)] = 0;
  CHECK_NOTHROW(model.log_probs({matrix_view<const std::int32_t>(long_batch.tokens.data(), {1, 40}),
                                 matrix_view<const double>(lm.data(), {1, 40})},
                                lp.view(), {}));
}

// ---------------------------------------------------------------- the value head (PPO's critic)

namespace {

dense<double, 2> run_values(transformer<double>& model, const batch_data& b) {
  const auto m = b.mask_as<double>();
  token_batch<double> batch{matrix_view<const std::int32_t>(b.tokens.data(), {b.B, b.L}),
                            matrix_view<const double>(m.data(), {b.B, b.L})};
  dense<double, 2> v({b.B, b.L});
  model.values(batch, v.view());
  return v;
}

void check_value_gradients(bool tied) {
  auto c = tiny_config(tied, true);
  c.value_head = true;
  transformer<double> model(random_parameters<double>(c, 21));
  const auto b = mixed_batch();
  dense<double, 2> gv({b.B, b.L});
  testing::fill_uniform(gv.view(), 4);
  const auto loss_of = [&] {
    const auto v = run_values(model, b);
    double s = 0;
    for (index_t k = 0; k < gv.size(); ++k) s += gv.data()[k] * v.data()[k];
    return s;
  };
  run_values(model, b);
  model.zero_grad();
  const auto m = b.mask_as<double>();
  model.backward_values({matrix_view<const std::int32_t>(b.tokens.data(), {b.B, b.L}),
                         matrix_view<const double>(m.data(), {b.B, b.L})},
                        gv.view());
  const std::vector<double> analytic(model.gradients().begin(), model.gradients().end());
  std::mt19937_64 rng(5);
  for (const auto& e : model.parameters().layout().entries()) {
    const double largest = check_by_finite_differences(model, e, random_picks(e, rng, 10), analytic, loss_of);
    INFO(e.name);
    if (e.name == "lm_head.weight")
      CHECK(largest == 0);  // the critic never reads the output layer
    else
      CHECK(largest > 1e-4);
  }
}

}  // namespace

TEST_CASE("the value head: V at the log-prob positions, its backward matches finite differences (tied, untied)") {
  check_value_gradients(true);
  check_value_gradients(false);
}

TEST_CASE("the value head reads the final hidden state of the previous position, and misuse is an error") {
  auto c = tiny_config(true, true);
  c.value_head = true;
  transformer<double> model(random_parameters<double>(c, 8));
  const auto b = mixed_batch();
  const auto v = run_values(model, b);
  const auto m = b.mask_as<double>();
  token_batch<double> batch{matrix_view<const std::int32_t>(b.tokens.data(), {b.B, b.L}),
                            matrix_view<const double>(m.data(), {b.B, b.L})};
  dense<double, 2> h({b.B * b.L, c.hidden_size});
  model.hidden_states(batch, h.view());
  const auto score = model.parameters().weights().score;
  for (index_t i = 0; i < b.B; ++i)
    for (index_t t = 0; t < b.L; ++t) {
      const bool has = t >= 1 && m[static_cast<std::size_t>(i * b.L + t)] != 0 &&
                       m[static_cast<std::size_t>(i * b.L + t - 1)] != 0;
      double expected = 0;
      if (has)
        for (index_t j = 0; j < c.hidden_size; ++j) expected += score(0, j) * h.view()((i * b.L + t - 1), j);
      INFO("(", i, ", ", t, ")");
      CHECK(v.view()(i, t) == doctest::Approx(expected).epsilon(1e-12));
    }
  dense<double, 2> g({b.B, b.L});
  CHECK_THROWS_WITH_AS(model.backward_values(batch, g.view()), doctest::Contains("call values on the batch first"),
                       error);
  run_values(model, b);
  CHECK_THROWS_WITH_AS(model.backward(batch, g.view(), {}), doctest::Contains("call log_probs"), error);
  transformer<double> plain(random_parameters<double>(tiny_config(true, true), 8));
  CHECK_THROWS_WITH_AS(run_values(plain, b), doctest::Contains("has no value head"), error);
}

// ---------------------------------------------------------------- packing and losses on whole distributions

TEST_CASE("packing: sequences numbered in one row give what they give in rows of their own") {
  const auto c = tiny_config(true, true);
  transformer<double> separate(random_parameters<double>(c, 31)), packed(random_parameters<double>(c, 31));
  const auto b = mixed_batch();  // sequences of 5, 7, 4 and 1 tokens
  dense<double, 2> gl({b.B, b.L}), ge({b.B, b.L});
  testing::fill_uniform(gl.view(), 32);
  testing::fill_uniform(ge.view(), 33);
  const auto r = run(separate, b);
  run_backward(separate, b, gl, ge);

  // Row 0: sequence 0 then 2 (numbered 3 and 7: any positive numbers do); row 1: sequence 3 then 1, then a pad.
  struct placed {
    index_t seq, row, col;
    double number;
  };
  const std::vector<placed> layout = {{0, 0, 0, 3}, {2, 0, 5, 7}, {3, 1, 0, 1}, {1, 1, 1, 2}};
  batch_data p(2, 9);
  dense<double, 2> pgl({2, 9}), pge({2, 9});
  std::vector<std::pair<index_t, index_t>> where(static_cast<std::size_t>(b.B * b.L), {-1, -1});
  for (const placed& s : layout) {
    index_t col = s.col;
    for (index_t t = 0; t < b.L; ++t) {
      const auto k = static_cast<std::size_t>(s.seq * b.L + t);
      if (b.mask[k] == 0) continue;
      const auto at = static_cast<std::size_t>(s.row * p.L + col);
      p.tokens[at] = b.tokens[k];
      p.mask[at] = s.number;
      pgl(s.row, col) = gl(s.seq, t);
      pge(s.row, col) = ge(s.seq, t);
      where[k] = {s.row, col++};
    }
  }
  const auto pr = run(packed, p);
  run_backward(packed, p, pgl, pge);
  for (index_t i = 0; i < b.B; ++i)
    for (index_t t = 0; t < b.L; ++t) {
      const auto [row, col] = where[static_cast<std::size_t>(i * b.L + t)];
      if (row < 0) continue;
      CAPTURE(i);
      CAPTURE(t);
      CHECK(pr.logp(row, col) == doctest::Approx(r.logp(i, t)).epsilon(1e-12));
      CHECK(pr.entropy(row, col) == doctest::Approx(r.entropy(i, t)).epsilon(1e-12));
    }
  CHECK(pr.logp(0, 5) == 0);  // the first token of a packed sequence has no prediction
  for (std::size_t k = 0; k < packed.gradients().size(); ++k)
    CHECK(packed.gradients()[k] == doctest::Approx(separate.gradients()[k]).epsilon(1e-10).scale(1e-12));

  // A mask value that is not a sequence number is an error.
  p.mask[0] = 1.5;
  CHECK_THROWS_WITH_AS(run(packed, p), doctest::Contains("attention_mask(0, 0) = 1.5"), error);
}

TEST_CASE("logit_loss_backward: rows are the log-prob positions, gradients match finite differences") {
  const auto c = tiny_config(false, true);
  transformer<double> model(random_parameters<double>(c, 41));
  const auto b = mixed_batch();
  const auto m = b.mask_as<double>();
  const token_batch<double> batch{matrix_view<const std::int32_t>(b.tokens.data(), {b.B, b.L}),
                                  matrix_view<const double>(m.data(), {b.B, b.L})};
  // L = sum over output rows of A[row] . log_softmax(logits): a loss on the whole distribution.
  dense<double, 2> A({b.B * b.L, c.vocab_size});
  testing::fill_uniform(A.view(), 42);
  std::vector<index_t> seen_rows;
  const auto loss_fn = [&](std::span<const index_t> rows, matrix_view<const double> logits,
                           matrix_view<double> grad) {
    double loss = 0;
    for (std::size_t k = 0; k < rows.size(); ++k) {
      const auto r = static_cast<index_t>(k);
      seen_rows.push_back(rows[k]);
      double mx = -INFINITY, s = 0, asum = 0;
      for (index_t v = 0; v < c.vocab_size; ++v) mx = std::max(mx, logits(r, v));
      for (index_t v = 0; v < c.vocab_size; ++v) s += std::exp(logits(r, v) - mx);
      const double lse = mx + std::log(s);
      for (index_t v = 0; v < c.vocab_size; ++v) {
        loss += A(rows[k], v) * (logits(r, v) - lse);
        asum += A(rows[k], v);
      }
      for (index_t v = 0; v < c.vocab_size; ++v)
        grad(r, v) = A(rows[k], v) - asum * std::exp(logits(r, v) - lse);
    }
    return loss;
  };
  model.logit_chunk_rows = 5;  // several chunks
  model.zero_grad();
  const double value = model.logit_loss_backward(batch, loss_fn);
  const std::vector<double> analytic(model.gradients().begin(), model.gradients().end());
  dense<double, 2> gl({b.B, b.L});  // backward() may not follow it: it was not a log_probs call
  CHECK_THROWS_WITH_AS(model.backward(batch, gl.view(), {}), doctest::Contains("call log_probs"), error);

  // The rows are exactly the positions log_probs fills.
  std::vector<index_t> expected;
  for (index_t i = 0; i < b.B; ++i)
    for (index_t t = 0; t < b.L; ++t)
      if (t >= 1 && m[static_cast<std::size_t>(i * b.L + t)] != 0 && m[static_cast<std::size_t>(i * b.L + t - 1)] != 0)
        expected.push_back(i * b.L + t);
  CHECK(seen_rows == expected);
  CHECK(std::isfinite(value));

  std::mt19937_64 rng(43);
  for (const auto& e : model.parameters().layout().entries()) {
    const double largest = check_by_finite_differences(model, e, random_picks(e, rng, 8), analytic, [&] {
      seen_rows.clear();
      transformer<double> copy(model);
      return copy.logit_loss_backward(batch, loss_fn);
    });
    INFO(e.name);
    CHECK(largest > 1e-4);
  }
}

TEST_CASE("keep_activations = false: the same bits from one layer's activations, and no backward after it") {
  for (const bool tied : {true, false}) {
    CAPTURE(tied);
    transformer_config c = tiny_config(tied, true);
    c.value_head = true;
    transformer<float> kept(random_parameters<float>(c, 71));
    transformer<float> lean(kept);
    lean.keep_activations = false;
    const batch_data b = mixed_batch();
    const auto a = run(kept, b), z = run(lean, b);
    for (index_t k = 0; k < a.logp.size(); ++k) {
      CHECK(z.logp.data()[k] == a.logp.data()[k]);
      CHECK(z.entropy.data()[k] == a.entropy.data()[k]);
    }
    const auto m = b.mask_as<float>();
    const token_batch<float> batch{matrix_view<const std::int32_t>(b.tokens.data(), {b.B, b.L}),
                                   matrix_view<const float>(m.data(), {b.B, b.L})};
    dense<float, 2> va({b.B, b.L}), vz({b.B, b.L}), g({b.B, b.L});
    kept.values(batch, va.view());
    lean.values(batch, vz.view());
    for (index_t k = 0; k < va.size(); ++k) CHECK(vz.data()[k] == va.data()[k]);
    CHECK_THROWS_WITH_AS(lean.backward_values(batch, g.view()), doctest::Contains("kept no activations"), error);
    run(lean, b);
    CHECK_THROWS_WITH_AS(lean.backward(batch, g.view(), {}), doctest::Contains("keep_activations is false"), error);
    // Switched back on, the next forward pass keeps them and backward matches the model that always did.
    lean.keep_activations = true;
    run(lean, b);
    for (index_t k = 0; k < g.size(); ++k) g.data()[k] = m[static_cast<std::size_t>(k)] * 0.01f * static_cast<float>(k % 7);
    lean.backward(batch, g.view(), {});
    kept.zero_grad();
    run(kept, b);
    kept.backward(batch, g.view(), {});
    for (std::size_t k = 0; k < kept.gradients().size(); ++k) CHECK(lean.gradients()[k] == kept.gradients()[k]);
  }
}

// The test suite runs one OpenMP thread per test (scripts/run-tests.sh), so
// the parallel loops of the ops (RMSNorm, RoPE, attention, SwiGLU, the output
// layer, Eigen's products) are run with several threads here, on shapes past
// every threshold: a race or a thread-dependent sum shows as a difference.
TEST_CASE("forward and backward give the same bits with one thread and with two") {
  const transformer_config c = testing::transformer_shape(300, 64, 2, 4, 2, 160, 32);
  const batch_data b = mixed_batch();
  dense<float, 2> gl({b.B, b.L}), ge({b.B, b.L});
  testing::fill_uniform(gl.view(), 81);
  testing::fill_uniform(ge.view(), 82);
  std::vector<run_result<float>> results;
  std::vector<std::vector<float>> gradients;
  const testing::restore_threads restore;
  for (const int threads : testing::thread_counts()) {
    testing::set_threads(threads);
    transformer<float> model(random_parameters<float>(c, 83));
    results.push_back(run(model, b));
    run_backward(model, b, gl, ge);
    gradients.emplace_back(model.gradients().begin(), model.gradients().end());
  }
  for (std::size_t r = 1; r < results.size(); ++r) {
    for (index_t k = 0; k < gl.size(); ++k) {
      CHECK(results[r].logp.data()[k] == results[0].logp.data()[k]);
      CHECK(results[r].entropy.data()[k] == results[0].entropy.data()[k]);
    }
    std::size_t differing = 0;
    for (std::size_t k = 0; k < gradients[0].size(); ++k) differing += gradients[r][k] != gradients[0][k];
    CHECK(differing == 0);
  }
}
