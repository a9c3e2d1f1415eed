// Token samplers: hand-worked distributions, transformers' warpers
// (tests/data/sampling_reference.txt), a chi-square test of the draws, the
// edge cases, and bit-identical results on every backend.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>
#include <xtensor/xtensor.hpp>

#include "lmrl/sample/philox.hpp"
#include "lmrl/sample/samplers.hpp"
#include "lmrl/tensor/eigen.hpp"
#include "lmrl/tensor/span.hpp"
#include "lmrl/tensor/xtensor.hpp"
#include "support/testing.hpp"

using namespace lmrl;
using doctest::Approx;

static_assert(Sampler<composed_sampler, float> && Sampler<composed_sampler, double>);

namespace {

constexpr double inf = std::numeric_limits<double>::infinity();

// Logits ln 1, ln 2, ln 3, ln 4: at temperature 1 the probabilities are
// 0.1, 0.2, 0.3, 0.4 and the weights relative to the max, w = p / 0.4, are
// 0.25, 0.5, 0.75, 1.
std::vector<double> four() { return {std::log(1.0), std::log(2.0), std::log(3.0), std::log(4.0)}; }

template <class T>
sampled_token draw(const std::vector<T>& x, const sampler_config& c, double u) {
  sampler_scratch<T> scratch(static_cast<index_t>(x.size()));
  return sample_token(x, c, u, scratch);
}

template <class T>
std::vector<T> warped(const std::vector<T>& x, const sampler_config& c) {
  sampler_scratch<T> scratch(static_cast<index_t>(x.size()));
  std::vector<T> out(x.size());
  warped_logprobs(x, c, scratch, out);
  return out;
}

// log_softmax(x / t) computed the plain way, for comparisons.
std::vector<double> log_softmax(const std::vector<double>& x, double t) {
  double m = -inf;
  for (double v : x) m = std::max(m, v / t);
  double z = 0;
  for (double v : x) z += std::exp(v / t - m);
  std::vector<double> out;
  for (double v : x) out.push_back(v / t - m - std::log(z));
  return out;
}

}  // namespace

TEST_CASE("temperature sampling: inverse CDF over the ids, both log-probs") {
  const auto x = four();
  const sampler_config plain;
  // Cumulative probabilities in id order: 0.1, 0.3, 0.6, 1.0.
  CHECK(draw(x, plain, 0.0).token == 0);
  CHECK(draw(x, plain, 0.05).token == 0);
  CHECK(draw(x, plain, 0.25).token == 1);
  CHECK(draw(x, plain, 0.59).token == 2);
  CHECK(draw(x, plain, 0.61).token == 3);
  CHECK(draw(x, plain, 0.999999).token == 3);
  const auto s = draw(x, plain, 0.5);
  CHECK(s.token == 2);
  CHECK(s.logprob == Approx(std::log(0.3)).epsilon(1e-14));
  CHECK(s.tempered_logprob == Approx(std::log(0.3)).epsilon(1e-14));
  // Temperature 0.5 squares the probabilities: 1, 4, 9, 16 over 30. Cumulative 1/30, 5/30, 14/30, 1.
  const sampler_config cold{.temperature = 0.5};
  CHECK(draw(x, cold, 0.16).token == 1);
  CHECK(draw(x, cold, 0.17).token == 2);
  const auto c = draw(x, cold, 0.9);
  CHECK(c.token == 3);
  CHECK(c.logprob == Approx(std::log(16.0 / 30)).epsilon(1e-14));
  CHECK(c.tempered_logprob == Approx(std::log(16.0 / 30)).epsilon(1e-14));
  // Temperature 2 takes square roots: sqrt(1..4) = 1, 1.414, 1.732, 2, sum 6.146.
  const auto h = draw(x, sampler_config{.temperature = 2.0}, 0.0);
  CHECK(h.tempered_logprob == Approx(std::log(1 / (1 + std::sqrt(2.0) + std::sqrt(3.0) + 2))).epsilon(1e-14));
}

TEST_CASE("top-k keeps the k best and renormalizes, sampled in descending order") {
  const auto x = four();
  const sampler_config k2{.top_k = 2};
  // Survivors 3 (w 1) and 2 (w 0.75): p = 4/7 and 3/7. Order: token 3 first, then 2.
  const auto a = draw(x, k2, 0.5);  // target 0.5 * 1.75 = 0.875 < 1
  CHECK(a.token == 3);
  CHECK(a.logprob == Approx(std::log(4.0 / 7)).epsilon(1e-14));
  CHECK(a.tempered_logprob == Approx(std::log(0.4)).epsilon(1e-14));
  const auto b = draw(x, k2, 0.6);  // target 1.05 > 1
  CHECK(b.token == 2);
  CHECK(b.logprob == Approx(std::log(3.0 / 7)).epsilon(1e-14));
  CHECK(b.tempered_logprob == Approx(std::log(0.3)).epsilon(1e-14));
  const auto w = warped(x, k2);
  CHECK(w[0] == -inf);
  CHECK(w[1] == -inf);
  CHECK(w[2] == Approx(std::log(3.0 / 7)).epsilon(1e-14));
  CHECK(w[3] == Approx(std::log(4.0 / 7)).epsilon(1e-14));
  // top_k = 1 is greedy with a sampling log-prob of 0.
  const auto g = draw(x, sampler_config{.top_k = 1}, 0.99);
  CHECK(g.token == 3);
  CHECK(g.logprob == 0.0);
}

TEST_CASE("top-k keeps every logit tied with the k-th, as transformers does") {
  // Logits 1, 3, 2, 3, 2, 0: the 3rd largest is 2, tied three times; all of 1..4 survive.
  const std::vector<double> x{1, 3, 2, 3, 2, 0};
  const auto w = warped(x, sampler_config{.top_k = 3});
  CHECK(w[0] == -inf);
  CHECK(w[5] == -inf);
  // Weights e^0 (twice) and e^-1 (twice): p(3) = 1 / (2 + 2/e).
  CHECK(w[1] == Approx(-std::log(2 + 2 / std::exp(1.0))).epsilon(1e-14));
  CHECK(w[3] == w[1]);
  CHECK(w[2] == Approx(-1 - std::log(2 + 2 / std::exp(1.0))).epsilon(1e-14));
  CHECK(w[4] == w[2]);
  // Sampling order among ties: lower id first. Target u * z with z = 2 + 2/e:
  // u = 0.1 -> token 1 (first in the ranking), u = 0.4 -> token 3 (0.4 z = 1.09 > 1).
  CHECK(draw(x, sampler_config{.top_k = 3}, 0.1).token == 1);
  CHECK(draw(x, sampler_config{.top_k = 3}, 0.4).token == 3);
  CHECK(draw(x, sampler_config{.top_k = 3}, 0.8).token == 2);  // 0.8 z = 2.19 > 2: the first of the tied 2s
  // Greedy breaks ties by the lower id, like torch.argmax.
  CHECK(greedy_token(x) == 1);
}

TEST_CASE("top-p keeps the smallest head whose mass reaches top_p") {
  const auto x = four();
  // Descending 0.4, 0.3, 0.2, 0.1. top_p = 0.65: ascending cumulative mass through token 2 is
  // 1 - 0.4 = 0.6 > 0.35 (kept), through token 1 it is 0.3 <= 0.35 (removed). Survivors {3, 2}.
  auto w = warped(x, sampler_config{.top_p = 0.65});
  CHECK(w[0] == -inf);
  CHECK(w[1] == -inf);
  CHECK(w[2] == Approx(std::log(3.0 / 7)).epsilon(1e-14));
  CHECK(w[3] == Approx(std::log(4.0 / 7)).epsilon(1e-14));
  // top_p = 0.75: through token 1 the mass is 0.3 > 0.25 (kept), through token 0 it is 0.1 (removed).
  w = warped(x, sampler_config{.top_p = 0.75});
  CHECK(w[0] == -inf);
  CHECK(w[1] == Approx(std::log(2.0 / 9)).epsilon(1e-14));
  CHECK(w[3] == Approx(std::log(4.0 / 9)).epsilon(1e-14));
  // A tiny top_p keeps only the top token.
  const auto s = draw(x, sampler_config{.top_p = 0.01}, 0.9);
  CHECK(s.token == 3);
  CHECK(s.logprob == 0.0);
  CHECK(s.tempered_logprob == Approx(std::log(0.4)).epsilon(1e-14));
  // Without top-k the survivors {1, 2, 3} are sampled in id order: cumulative 2/9, 5/9, 1.
  CHECK(draw(x, sampler_config{.top_p = 0.75}, 0.20).token == 1);
  CHECK(draw(x, sampler_config{.top_p = 0.75}, 0.40).token == 2);
  CHECK(draw(x, sampler_config{.top_p = 0.75}, 0.60).token == 3);
  CHECK(draw(x, sampler_config{.top_p = 0.75}, 0.60).logprob == Approx(std::log(4.0 / 9)).epsilon(1e-14));
  // After top-k (k = 3: {3, 2, 1}, p 4/9, 3/9, 2/9) top_p = 0.9 keeps token 1 (2/9 > 0.1), and the
  // survivors are sampled best first: cumulative 4/9, 7/9, 1.
  CHECK(draw(x, sampler_config{.top_k = 3, .top_p = 0.9}, 0.40).token == 3);
  CHECK(draw(x, sampler_config{.top_k = 3, .top_p = 0.9}, 0.50).token == 2);
  CHECK(draw(x, sampler_config{.top_k = 3, .top_p = 0.9}, 0.80).token == 1);
}

TEST_CASE("top-p over a large vocabulary sorts only the head, chunk by chunk") {
  // 5000 tokens with logits -v / 1000: the nucleus of 0.99 spans chunks of 256 and 512 candidates.
  std::vector<double> x(5000);
  for (std::size_t v = 0; v < x.size(); ++v) x[v] = -static_cast<double>((v * 7919) % 5000) / 1000.0;
  const sampler_config c{.top_p = 0.99};
  const auto w = warped(x, c);
  // Expected survivors from a full sort.
  std::vector<std::size_t> order(x.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](auto a, auto b) { return x[a] > x[b]; });
  const auto p = log_softmax(x, 1.0);
  double ahead = 0;
  std::size_t kept = 0;
  for (auto v : order) {
    if (kept > 0 && 1 - ahead <= 1 - 0.99 + 1e-12) break;
    ahead += std::exp(p[v]);
    ++kept;
  }
  CHECK(kept > 600);  // more than the first two chunks
  std::size_t survivors = 0;
  for (double v : w) survivors += v != -inf;
  CHECK(survivors == kept);
  for (std::size_t j = 0; j < kept; ++j) CHECK(w[order[j]] == Approx(p[order[j]] - std::log(ahead)).epsilon(1e-12));
}

TEST_CASE("min-p keeps tokens with p >= min_p * max p, sampled in id order when alone") {
  const auto x = four();
  // w = 0.25, 0.5, 0.75, 1: min_p = 0.6 keeps {2, 3}, p = 3/7 and 4/7. Cumulative in id order: 0.75, 1.75.
  const sampler_config c{.min_p = 0.6};
  const auto w = warped(x, c);
  CHECK(w[0] == -inf);
  CHECK(w[1] == -inf);
  CHECK(w[2] == Approx(std::log(3.0 / 7)).epsilon(1e-14));
  CHECK(w[3] == Approx(std::log(4.0 / 7)).epsilon(1e-14));
  CHECK(draw(x, c, 0.40).token == 2);  // target 0.7 < 0.75
  CHECK(draw(x, c, 0.45).token == 3);  // target 0.7875 > 0.75
  CHECK(draw(x, c, 0.45).logprob == Approx(std::log(4.0 / 7)).epsilon(1e-14));
  // A token exactly at the threshold stays (transformers removes only p < min_p * max p):
  // min_p = 0.5 keeps token 1 whose w is exactly 0.5.
  CHECK(warped(x, sampler_config{.min_p = 0.5})[1] == Approx(std::log(2.0 / 9)).epsilon(1e-14));
}

TEST_CASE("the warpers compose in transformers' order: temperature, top-k, top-p, min-p") {
  const auto x = four();
  // T = 0.5: weights 1, 4, 9, 16. top_k = 3: {3, 2, 1}, z = 29. top_p = 0.8: through token 2 the ascending
  // mass is 13/29 = 0.448 > 0.2 (kept); through token 1 it is 4/29 = 0.138 <= 0.2 (removed).
  // min_p = 0.5: token 2 has w = 9/16 = 0.5625 >= 0.5 (kept). Result: p(3) = 16/25, p(2) = 9/25.
  sampler_config c{.temperature = 0.5, .top_k = 3, .top_p = 0.8, .min_p = 0.5};
  auto w = warped(x, c);
  CHECK(w[0] == -inf);
  CHECK(w[1] == -inf);
  CHECK(w[2] == Approx(std::log(9.0 / 25)).epsilon(1e-14));
  CHECK(w[3] == Approx(std::log(16.0 / 25)).epsilon(1e-14));
  const auto s = draw(x, c, 0.7);  // target 0.7 * 25/16 = 1.09 > 1: token 2
  CHECK(s.token == 2);
  CHECK(s.logprob == Approx(std::log(9.0 / 25)).epsilon(1e-14));
  CHECK(s.tempered_logprob == Approx(std::log(9.0 / 30)).epsilon(1e-14));  // full vocabulary at T = 0.5
  // min_p = 0.6 now also drops token 2 (0.5625 < 0.6).
  c.min_p = 0.6;
  w = warped(x, c);
  CHECK(w[2] == -inf);
  CHECK(w[3] == 0.0);
  // Top-p renormalizes over top-k's survivors: top_k = 2 then top_p = 0.6 at T = 1:
  // over {3, 2} (p 4/7, 3/7) token 2's ascending mass is 3/7 = 0.43 > 0.4: kept. Without top-k, 0.6 <= ... see above.
  w = warped(x, sampler_config{.top_k = 2, .top_p = 0.6});
  CHECK(w[2] == Approx(std::log(3.0 / 7)).epsilon(1e-14));
}

TEST_CASE("top-k over more than 256 survivors, then top-p and min-p: the kept head stays in rank order") {
  // top_p_head halves the candidates with nth_element once more than 256 are
  // left; after top-k the kept head must still be ranked, since min-p trims
  // it from the end and the draw walks it in rank order. Reference: the
  // warpers written out on a fully sorted copy, in double.
  std::vector<double> x(1000);
  std::uint64_t state = 12345;
  for (auto& v : x) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    v = 3.0 * (static_cast<double>(state >> 11) / 9007199254740992.0) - 1.5;
  }
  std::vector<std::int32_t> order(x.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](auto a, auto b) { return x[a] > x[b] || (x[a] == x[b] && a < b); });
  for (const sampler_config c : {sampler_config{.top_k = 300, .top_p = 0.8}, sampler_config{.top_k = 300, .top_p = 0.99, .min_p = 0.3},
                                 sampler_config{.temperature = 0.7, .top_k = 600, .top_p = 0.9, .min_p = 0.05}}) {
    std::vector<double> w(static_cast<std::size_t>(c.top_k));
    double z = 0;
    for (index_t j = 0; j < c.top_k; ++j) z += w[static_cast<std::size_t>(j)] = std::exp((x[order[static_cast<std::size_t>(j)]] - x[order[0]]) / c.temperature);
    index_t kept = 0;  // top-p: keep while the ascending mass through the token exceeds 1 - top_p
    double ahead = 0;
    while (kept < c.top_k && (kept == 0 || (z - ahead) / z > 1.0 - c.top_p)) ahead += w[static_cast<std::size_t>(kept++)];
    while (kept > 1 && w[static_cast<std::size_t>(kept - 1)] < c.min_p) --kept;
    INFO("top_k ", c.top_k, " top_p ", c.top_p, " min_p ", c.min_p, ": ", kept, " kept");
    REQUIRE(c.top_k > 256);  // top-p then halves the 300 or 600 survivors (the path under test)
    const auto got = warped(x, c);
    for (index_t j = 0; j < static_cast<index_t>(x.size()); ++j)
      CHECK((got[static_cast<std::size_t>(order[static_cast<std::size_t>(j)])] > -inf) == (j < kept));
    CHECK(draw(x, c, 0.0).token == order[0]);  // u = 0: the top-ranked token
  }
}

TEST_CASE("greedy: argmax, lowest id on ties, log-prob 0 under the point mass") {
  const auto x = four();
  const sampler_config g{.do_sample = false, .temperature = 0.5, .top_k = 1};
  for (double u : {0.0, 0.3, 0.999}) {
    const auto s = draw(x, g, u);
    CHECK(s.token == 3);
    CHECK(s.logprob == 0.0);
    CHECK(s.tempered_logprob == Approx(std::log(16.0 / 30)).epsilon(1e-14));
  }
  const auto w = warped(x, g);
  CHECK(w == std::vector<double>{-inf, -inf, -inf, 0.0});
  CHECK(greedy_token(std::vector<float>{0.5f, 2.0f, -1.0f, 2.0f}) == 1);
}

TEST_CASE("off switches: top_k >= vocab, top_p = 1 and min_p = 0 change nothing") {
  std::vector<double> x(37);
  testing::fill_uniform(view<1>(x), 5, -3, 3);
  const auto plain = warped(x, sampler_config{.temperature = 0.9});
  const auto off = warped(x, sampler_config{.temperature = 0.9, .top_k = 37, .top_p = 1.0, .min_p = 0.0});
  const auto big = warped(x, sampler_config{.temperature = 0.9, .top_k = 1000});
  CHECK(plain == off);
  CHECK(plain == big);
  const auto ref = log_softmax(x, 0.9);
  for (std::size_t v = 0; v < x.size(); ++v) CHECK(plain[v] == Approx(ref[v]).epsilon(1e-13));
  for (double u : {0.0, 0.2, 0.7, 0.95}) {
    const auto a = draw(x, sampler_config{.temperature = 0.9}, u);
    const auto b = draw(x, sampler_config{.temperature = 0.9, .top_k = 100}, u);
    CHECK(a.token == b.token);
    CHECK(a.logprob == a.tempered_logprob);
    CHECK(a.logprob == Approx(ref[static_cast<std::size_t>(a.token)]).epsilon(1e-13));
  }
}

TEST_CASE("edge cases: one finite logit, tiny temperature, huge logits") {
  const std::vector<float> one{-INFINITY, -INFINITY, 2.5f, -INFINITY};
  for (const sampler_config& c : {sampler_config{}, sampler_config{.top_k = 2}, sampler_config{.top_p = 0.5},
                                  sampler_config{.min_p = 0.3}, sampler_config{.temperature = 1e-6}}) {
    const auto s = draw(one, c, 0.999);
    CHECK(s.token == 2);
    CHECK(s.logprob == 0.0);
    CHECK(s.tempered_logprob == 0.0);
    const auto w = warped(one, c);
    CHECK(w == std::vector<float>{-INFINITY, -INFINITY, 0.0f, -INFINITY});
  }
  // A temperature of 1e-300 divides logit gaps of 1e4 into -inf weights without overflow or NaN.
  const std::vector<double> big{1e4, -1e4, 9999.0, 0.0};
  const sampler_config frozen{.temperature = 1e-300};
  for (double u : {0.0, 0.5, 0.999999}) {
    const auto s = draw(big, frozen, u);
    CHECK(s.token == 0);
    CHECK(s.logprob == 0.0);
    CHECK(s.tempered_logprob == 0.0);
  }
  const auto w = warped(big, frozen);
  CHECK(w[0] == 0.0);
  CHECK(w[1] < -1e300);  // (-1e4 - 1e4) / 1e-300 = -2e304: finite, as the formula says
  // Logits of 1e30 in float still give probabilities (the max is taken out before dividing).
  const std::vector<float> large{1e30f, 1e30f, -1e30f};
  const auto s = draw(large, sampler_config{}, 0.75);
  CHECK(s.token == 1);
  CHECK(s.logprob == Approx(std::log(0.5)).epsilon(1e-14));
}

TEST_CASE("bad input: NaN and +inf logits name the row, an all -inf row, u, scratch, config") {
  std::vector<double> x{0.1, std::nan(""), 0.3};
  sampler_scratch<double> scratch(3);
  CHECK_THROWS_WITH_AS(sample_token(x, sampler_config{}, 0.5, scratch, 7),
                       doctest::Contains("sample_token: logits row 7 has NaN at token 1"), error);
  x[1] = inf;
  CHECK_THROWS_WITH_AS(sample_token(x, sampler_config{}, 0.5, scratch),
                       doctest::Contains("logits row 0 has +inf at token 1"), error);
  const std::vector<double> none{-inf, -inf};
  CHECK_THROWS_WITH_AS(sample_token(none, sampler_config{}, 0.5, scratch),
                       doctest::Contains("is -inf at all 2 tokens"), error);
  CHECK_THROWS_WITH_AS(greedy_token(std::vector<float>{}), doctest::Contains("greedy_token: logits row 0 is empty"),
                       error);
  const auto ok = four();
  CHECK_THROWS_WITH_AS(sample_token(ok, sampler_config{}, 1.0, scratch), doctest::Contains("u = 1 for row 0"), error);
  CHECK_THROWS_WITH_AS(sample_token(ok, sampler_config{}, -0.1, scratch), doctest::Contains("is not in [0, 1)"),
                       error);
  sampler_scratch<double> small(3);
  CHECK_THROWS_WITH_AS(sample_token(ok, sampler_config{.top_k = 2}, 0.5, small),
                       doctest::Contains("scratch holds 3 candidates but logits row 0 has 4 tokens"), error);
  CHECK_NOTHROW(sample_token(ok, sampler_config{.min_p = 0.2}, 0.5, small));  // min-p needs no scratch
  CHECK_THROWS_WITH_AS(sample_token(ok, sampler_config{.temperature = 0.0}, 0.5, scratch),
                       doctest::Contains("temperature = 0 must be a finite number > 0"), error);
  CHECK_THROWS_WITH_AS(sampler_config{.temperature = std::nan("")}.validate(), doctest::Contains("temperature"),
                       error);
  CHECK_THROWS_WITH_AS(sampler_config{.top_k = -1}.validate(), doctest::Contains("top_k = -1 must be >= 0"), error);
  CHECK_THROWS_WITH_AS(sampler_config{.top_p = 0.0}.validate(), doctest::Contains("top_p = 0 must be in (0, 1]"),
                       error);
  CHECK_THROWS_WITH_AS(sampler_config{.top_p = 1.5}.validate(), doctest::Contains("top_p = 1.5"), error);
  CHECK_THROWS_WITH_AS(sampler_config{.min_p = 1.0}.validate(), doctest::Contains("min_p = 1 must be in [0, 1)"),
                       error);
  CHECK_THROWS_WITH_AS(sampler_config{.min_p = -0.1}.validate(), doctest::Contains("min_p = -0.1"), error);
  std::vector<double> wrong(5);
  CHECK_THROWS_WITH_AS(warped_logprobs(ok, sampler_config{}, scratch.span(), wrong),
                       doctest::Contains("warped_logprobs: out has shape [5] but logits has shape [4]"), error);
}

TEST_CASE("transformers' warpers: same surviving tokens, log-probs within 1e-5 (float) and 1e-6 (double)") {
  const auto cases = testing::load_reference("sampling_reference.txt");
  int checked = 0;
  for (const auto& rc : cases) {
    if (!rc.has("logits")) continue;
    INFO("case ", rc.name);
    const auto& logits = rc.at("logits");
    const auto& expected = rc.at("logprobs");
    const sampler_config c{.temperature = rc.scalar("temperature"),
                           .top_k = static_cast<index_t>(rc.scalar("top_k")),
                           .top_p = rc.scalar("top_p"),
                           .min_p = rc.scalar("min_p")};
    std::vector<float> xf(logits.begin(), logits.end());
    const auto wf = warped(xf, c);
    const auto wd = warped(logits, c);  // the same float values, held as double
    std::size_t survivors = 0;
    for (std::size_t v = 0; v < logits.size(); ++v) {
      INFO("token ", v);
      REQUIRE((expected[v] == -inf) == (wf[v] == -INFINITY));
      REQUIRE((expected[v] == -inf) == (wd[v] == -inf));
      if (expected[v] == -inf) continue;
      ++survivors;
      CHECK(std::abs(wf[v] - expected[v]) <= 1e-5);
      CHECK(std::abs(wd[v] - expected[v]) <= 1e-6);
    }
    CHECK(survivors >= 1);
    // The sampled token is a survivor and carries its warped log-prob.
    sampler_scratch<float> scratch(static_cast<index_t>(xf.size()));
    const counter_rng rng(11);
    for (std::uint32_t p = 0; p < 20; ++p) {
      const auto s = sample_token(xf, c, rng.uniform_double(0, p), scratch);
      REQUIRE(expected[static_cast<std::size_t>(s.token)] != -inf);
      CHECK(std::abs(s.logprob - expected[static_cast<std::size_t>(s.token)]) <= 1e-5);
    }
    ++checked;
  }
  CHECK(checked == 17);
}

TEST_CASE("100k draws match the sampling distribution (chi-square, false alarm < 1e-9)") {
  // Five tokens; the bound is the 1 - 1e-9 quantile of chi-square with 4 degrees of freedom
  // (47.88, from tools/make_sampling_reference.py), so a correct sampler fails with probability < 1e-9.
  double bound = 0;
  for (const auto& rc : testing::load_reference("sampling_reference.txt"))
    if (rc.name == "chi2_bound") bound = rc.scalar("bound");
  REQUIRE(bound == Approx(47.879).epsilon(1e-4));
  const std::vector<float> x{0.0f, 1.0f, -0.5f, 2.0f, 0.3f};
  const int n = 100000;
  for (const sampler_config& c : {sampler_config{}, sampler_config{.temperature = 1.7}, sampler_config{.top_k = 4},
                                  sampler_config{.top_p = 0.9}, sampler_config{.min_p = 0.1}}) {
    const auto logp = warped(x, c);
    sampler_scratch<float> scratch(5);
    const counter_rng rng(0xC0FFEE);
    int counts[5] = {};
    for (int i = 0; i < n; ++i) ++counts[sample_token(x, c, rng.uniform_double(static_cast<std::uint64_t>(i), 0), scratch).token];
    double chi2 = 0;
    int cells = 0;
    for (int v = 0; v < 5; ++v) {
      const double expected = n * std::exp(static_cast<double>(logp[static_cast<std::size_t>(v)]));
      if (expected == 0) {
        CHECK(counts[v] == 0);  // a removed token is never drawn
        continue;
      }
      chi2 += (counts[v] - expected) * (counts[v] - expected) / expected;
      ++cells;
    }
    INFO("temperature ", c.temperature, " top_k ", c.top_k, " top_p ", c.top_p, " min_p ", c.min_p, " chi2 ", chi2);
    CHECK(cells >= 3);
    CHECK(chi2 < bound);  // fewer cells -> fewer degrees of freedom -> an even safer bound
  }
}

TEST_CASE("properties: monotone in u, permuting the vocabulary permutes the warped log-probs") {
  std::vector<double> x(200);
  testing::fill_uniform(view<1>(x), 17, -4, 4);
  index_t previous = 0;
  for (int i = 0; i < 1000; ++i) {  // full distribution: the inverse CDF walks the ids in order
    const index_t t = draw(x, sampler_config{.temperature = 0.8}, i / 1000.0).token;
    CHECK(t >= previous);
    previous = t;
  }
  const sampler_config c{.temperature = 0.7, .top_k = 50, .top_p = 0.8, .min_p = 0.02};
  std::vector<std::size_t> perm(x.size());
  std::iota(perm.begin(), perm.end(), 0);
  std::reverse(perm.begin(), perm.end());
  std::rotate(perm.begin(), perm.begin() + 37, perm.end());
  std::vector<double> y(x.size());
  for (std::size_t v = 0; v < x.size(); ++v) y[v] = x[perm[v]];
  const auto wx = warped(x, c), wy = warped(y, c);
  for (std::size_t v = 0; v < x.size(); ++v) CHECK(wy[v] == wx[perm[v]]);
  // The draw does not change with the order either once mapped back: the ranking does not look at ids.
  for (double u : {0.05, 0.5, 0.95}) CHECK(perm[static_cast<std::size_t>(draw(y, c, u).token)] ==
                                           static_cast<std::size_t>(draw(x, c, u).token));
}

TEST_CASE("sample_tokens: rows equal single-row calls, Eigen and xtensor give the same bits") {
  const index_t rows = 6, vocab = 300;
  dense<double, 2> logits({rows, vocab});
  testing::fill_uniform(logits.view(), 23, -5, 5);
  const counter_rng rng(99);
  std::vector<double> u(rows);
  for (index_t r = 0; r < rows; ++r) u[static_cast<std::size_t>(r)] = rng.uniform_double(static_cast<std::uint64_t>(r), 3);
  const sampler_config c{.temperature = 0.9, .top_k = 40, .top_p = 0.9};
  sampler_scratch<double> scratch(vocab);
  std::vector<std::int64_t> tokens(rows);
  std::vector<double> lp(rows), tlp(rows);
  sample_tokens(logits, c, u, scratch, tokens, lp, tlp);
  for (index_t r = 0; r < rows; ++r) {
    const auto s = sample_token(logits.view().row(r), c, u[static_cast<std::size_t>(r)], scratch.span(), r);
    CHECK(tokens[static_cast<std::size_t>(r)] == s.token);
    CHECK(lp[static_cast<std::size_t>(r)] == s.logprob);
    CHECK(tlp[static_cast<std::size_t>(r)] == s.tempered_logprob);
  }
  // Eigen: column-major (strided rows), row-major, Map; xtensor.
  Eigen::MatrixXd col(rows, vocab);
  Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> row(rows, vocab);
  xt::xtensor<double, 2> xt_logits = xt::zeros<double>({std::size_t(rows), std::size_t(vocab)});
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < vocab; ++j) col(i, j) = row(i, j) = xt_logits(i, j) = logits(i, j);
  Eigen::Map<Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> map(logits.data(), rows, vocab);
  Eigen::VectorXd eu = Eigen::Map<Eigen::VectorXd>(u.data(), rows);
  const auto run_eigen = [&](const auto& m) {
    Eigen::VectorXi t(rows);
    Eigen::VectorXd a(rows), b(rows);
    sample_tokens(m, c, eu, scratch, t, a, b);
    for (index_t r = 0; r < rows; ++r) {
      CHECK(t(r) == tokens[static_cast<std::size_t>(r)]);
      CHECK(a(r) == lp[static_cast<std::size_t>(r)]);
      CHECK(b(r) == tlp[static_cast<std::size_t>(r)]);
    }
  };
  run_eigen(col);
  run_eigen(row);
  run_eigen(map);
  xt::xtensor<std::int32_t, 1> xt_tokens = xt::zeros<std::int32_t>({std::size_t(rows)});
  xt::xtensor<double, 1> xa = xt::zeros<double>({std::size_t(rows)}), xb = xa, xu = xa;
  for (index_t r = 0; r < rows; ++r) xu(r) = u[static_cast<std::size_t>(r)];
  sample_tokens(xt_logits, c, xu, scratch, xt_tokens, xa, xb);
  for (index_t r = 0; r < rows; ++r) {
    CHECK(xt_tokens(r) == tokens[static_cast<std::size_t>(r)]);
    CHECK(xa(r) == lp[static_cast<std::size_t>(r)]);
    CHECK(xb(r) == tlp[static_cast<std::size_t>(r)]);
  }
  // float: xtensor and Eigen agree bit for bit too.
  xt::xtensor<float, 2> xf = xt::cast<float>(xt_logits);
  Eigen::MatrixXf ef = col.cast<float>();
  sampler_scratch<float> fs(vocab);
  xt::xtensor<float, 1> fa = xt::zeros<float>({std::size_t(rows)}), fb = fa;
  Eigen::VectorXf ea(rows), eb(rows);
  Eigen::VectorXi et(rows);
  sample_tokens(xf, c, xu, fs, xt_tokens, fa, fb);
  sample_tokens(ef, c, eu, fs, et, ea, eb);
  for (index_t r = 0; r < rows; ++r) {
    CHECK(et(r) == xt_tokens(r));
    CHECK(ea(r) == fa(r));
    CHECK(eb(r) == fb(r));
  }
  // Row errors name the row.
  logits(4, 7) = std::nan("");
  CHECK_THROWS_WITH_AS(sample_tokens(logits, c, u, scratch, tokens, lp, tlp),
                       doctest::Contains("logits row 4 has NaN at token 7"), error);
  std::vector<double> short_u(3);
  CHECK_THROWS_WITH_AS(sample_tokens(logits, c, short_u, scratch, tokens, lp, tlp),
                       doctest::Contains("sample_tokens: uniforms has extent 3"), error);
}

