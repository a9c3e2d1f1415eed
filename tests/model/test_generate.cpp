// model/kv_cache.hpp and model/generate.hpp: cached decoding reproduces the
// full forward, batched generation equals one-at-a-time generation, the
// counter RNG makes tokens depend on (seed, sequence, position) only, and the
// stop rules, lengths, masks and log-probs are what TRL expects.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "lmrl/model/generate.hpp"
#include "lmrl/model/kv_cache.hpp"
#include "lmrl/tensor/eigen.hpp"
#include "support/model_shapes.hpp"
#include "support/testing.hpp"
#include "support/threads.hpp"

using namespace lmrl;

namespace {

using prompt_list = std::vector<std::vector<std::int32_t>>;

// A small model with weights large enough that logits are far from uniform.
transformer_config test_config(bool tied = true, bool bias = true) {
  transformer_config c = testing::transformer_shape(37, 16, 2, 4, 2, 24, 64);
  c.tie_word_embeddings = tied;
  c.attention_bias = bias;
  return c;
}

template <class T>
transformer_parameters<T> test_parameters(bool tied = true, bool bias = true, std::uint64_t seed = 11) {
  transformer_parameters<T> p(test_config(tied, bias));
  p.initialize(seed, 0.3);
  // Biases and norm weights away from 0 / 1 so that they are exercised.
  for (const auto& e : p.layout().entries()) {
    if (e.role == parameter_entry::kind::weight) continue;
    auto t = p.tensor(e.name);
    for (std::size_t k = 0; k < t.size(); ++k)
      t[k] += static_cast<T>(0.1 * std::sin(static_cast<double>(k) + static_cast<double>(e.offset)));
  }
  return p;
}

// Logits of every position of one sequence, the whole sequence in one pass
// through `dec` (its cache emptied first).
template <class T>
dense<T, 2> full_logits(cached_decoder<T>& dec, const std::vector<std::int32_t>& ids) {
  dec.reset(1, static_cast<index_t>(ids.size()));
  std::vector<cached_token> rows;
  for (auto id : ids) rows.push_back({0, id, true});
  const auto logits = dec.forward(rows);
  dense<T, 2> out({logits.shape[0], logits.shape[1]});
  for (index_t i = 0; i < logits.shape[0]; ++i)
    for (index_t v = 0; v < logits.shape[1]; ++v) out(i, v) = logits(i, v);
  return out;
}
template <class T>
dense<T, 2> full_logits(const transformer_parameters<T>& params, const std::vector<std::int32_t>& ids) {
  cached_decoder<T> dec(params);
  return full_logits(dec, ids);
}

std::vector<std::int32_t> completion(const generation_result<float>& r, index_t b) {
  std::vector<std::int32_t> ids;
  for (index_t t = 0; t < r.lengths[static_cast<std::size_t>(b)]; ++t) ids.push_back(r.completion_ids(b, t));
  return ids;
}

// A detokenizer for the tests: id v is the letter 'a' + v % 26.
std::string letters(std::span<const std::int32_t> ids) {
  std::string s;
  for (auto id : ids) s += static_cast<char>('a' + id % 26);
  return s;
}

}  // namespace

TEST_CASE("kv_cache: one contiguous (max_len x head_dim) block per (layer, sequence, kv head), copy_sequence") {
  const transformer_config c = test_config();
  kv_cache<float> cache(c, 3, 10);
  CHECK(cache.bytes() == sizeof(float) * 2 * 2 * 3 * 2 * 10 * 4);  // layers x K/V x seqs x kv heads x len x hd
  CHECK(cache.keys(1, 2, 1).shape == std::array<index_t, 2>{10, 4});
  CHECK(cache.keys(0, 0, 1).data == cache.keys(0, 0, 0).data + 40);
  CHECK(cache.values(0, 0, 0).data == cache.keys(0, 0, 0).data + 3 * 2 * 10 * 4);
  CHECK(cache.key_row(1, 2, 1, 3) == cache.keys(1, 2, 1).data + 12);
  for (index_t l = 0; l < 2; ++l)
    for (index_t h = 0; h < 2; ++h)
      for (index_t j = 0; j < 10; ++j) {
        cache.key_row(l, 0, h, j)[1] = static_cast<float>(100 * l + 10 * h + j);
        cache.value_row(l, 0, h, j)[2] = -static_cast<float>(100 * l + 10 * h + j);
      }
  cache.set_length(0, 4);
  cache.copy_sequence(0, 2);
  CHECK(cache.length(2) == 4);
  CHECK(cache.length(1) == 0);
  CHECK(cache.keys(1, 2, 1)(3, 1) == 113.0f);
  CHECK(cache.values(1, 2, 0)(2, 2) == -102.0f);
  CHECK(cache.keys(1, 2, 1)(4, 1) == 0.0f);  // only the first length(0) rows are copied
  cache.clear();
  CHECK(cache.length(0) == 0);
  CHECK_THROWS_WITH_AS(cache.length(3), doctest::Contains("sequence 3 is outside [0, 3)"), error);
  CHECK_THROWS_WITH_AS(cache.set_length(0, 11), doctest::Contains("outside [0, max_len = 10]"), error);
  CHECK_THROWS_WITH_AS(kv_cache<float>(c, 2, 65), doctest::Contains("max_position_embeddings = 64"), error);
}

TEST_CASE("cached decoding token by token gives the logits of the whole sequence in one pass, bit for bit") {
  for (bool tied : {true, false})
    for (bool bias : {true, false}) {
      CAPTURE(tied);
      CAPTURE(bias);
      const auto params = test_parameters<float>(tied, bias);
      const std::vector<std::int32_t> ids = {3, 17, 5, 36, 0, 9, 9, 21, 14, 2, 30, 7};
      const dense<float, 2> full = full_logits(params, ids);
      cached_decoder<float> dec(params);
      dec.reset(2, 16);
      // Prefill 4 tokens of sequence 1, then one token per step.
      std::vector<cached_token> rows;
      for (int k = 0; k < 4; ++k) rows.push_back({1, ids[static_cast<std::size_t>(k)], k == 3});
      auto logits = dec.forward(rows);
      REQUIRE(logits.shape == std::array<index_t, 2>{1, 37});
      for (index_t k = 3; k < static_cast<index_t>(ids.size()); ++k) {
        if (k > 3) {
          const cached_token next{1, ids[static_cast<std::size_t>(k)], true};
          logits = dec.forward(std::span<const cached_token>(&next, 1));
        }
        CHECK(dec.cache().length(1) == k + 1);
        // Every row of a pass is computed alone (packed products, attention query by query), so the
        // prefill of all 12 tokens and the token-by-token decode agree to the bit.
        for (index_t v = 0; v < 37; ++v) CHECK(logits(0, v) == full(k, v));
      }
      CHECK(dec.cache().length(0) == 0);
    }
}

TEST_CASE("cached_decoder::forward rejects bad rows") {
  const auto params = test_parameters<float>();
  cached_decoder<float> dec(params);
  dec.reset(2, 3);
  const std::vector<cached_token> bad_id = {{0, 37, true}};
  CHECK_THROWS_WITH_AS(dec.forward(bad_id), doctest::Contains("token id 37 outside the vocabulary [0, 37)"), error);
  const std::vector<cached_token> bad_seq = {{2, 1, true}};
  CHECK_THROWS_WITH_AS(dec.forward(bad_seq), doctest::Contains("names sequence 2 but the cache holds 2"), error);
  const std::vector<cached_token> too_long = {{0, 1, false}, {0, 2, false}, {0, 3, false}, {0, 4, true}};
  CHECK_THROWS_WITH_AS(dec.forward(too_long), doctest::Contains("sequence 0 is full (max_len = 3)"), error);
}

TEST_CASE("greedy generation picks the argmax of the full-forward logits at every step") {
  const auto params = test_parameters<float>();
  generation_options o;
  o.max_new_tokens = 10;
  o.sampling.do_sample = false;
  const prompt_list prompts = {{1, 2, 3}, {30, 4, 4, 4, 8}};
  const auto r = generate(params, std::span<const std::vector<std::int32_t>>(prompts), o, counter_rng(0));
  for (index_t b = 0; b < 2; ++b) {
    std::vector<std::int32_t> seq = prompts[static_cast<std::size_t>(b)];
    const index_t n_prompt = static_cast<index_t>(seq.size());
    for (index_t t = 0; t < 10; ++t) seq.push_back(r.completion_ids(b, t));
    const dense<float, 2> full = full_logits(params, seq);
    for (index_t t = 0; t < 10; ++t) {
      const index_t row = n_prompt - 1 + t;  // the logits that predict completion token t
      CHECK(r.completion_ids(b, t) == greedy_token(full.view().row(row)));
      CHECK(r.sampling_logprobs(b, t) == 0.0f);  // greedy is a point mass
      CHECK(r.logprobs(b, t) < 0.0f);
    }
    CHECK(r.truncated[static_cast<std::size_t>(b)] == 1);
    CHECK(r.reasons[static_cast<std::size_t>(b)] == stop_reason::length);
  }
}

TEST_CASE("batched generation equals one-at-a-time generation (tokens and log-probs)") {
  const auto params = test_parameters<float>();
  generation_options o;
  o.max_new_tokens = 12;
  o.sampling.temperature = 0.9;
  o.sampling.top_k = 20;
  o.eos_token_ids = {5};
  const prompt_list prompts = {{1, 2, 3}, {30, 4, 4, 4, 8, 11, 12}, {7}, {22, 23}};
  const auto all = generate(params, std::span<const std::vector<std::int32_t>>(prompts), o, counter_rng(1234));
  index_t stopped_early = 0;
  for (index_t b = 0; b < 4; ++b) {
    generation_options one = o;
    one.first_sequence = static_cast<std::uint64_t>(b);
    const prompt_list single = {prompts[static_cast<std::size_t>(b)]};
    const auto r = generate(params, std::span<const std::vector<std::int32_t>>(single), one, counter_rng(1234));
    CHECK(r.lengths[0] == all.lengths[static_cast<std::size_t>(b)]);
    stopped_early += all.lengths[static_cast<std::size_t>(b)] < 12;
    for (index_t t = 0; t < 12; ++t) {
      CHECK(r.completion_ids(0, t) == all.completion_ids(b, t));
      CHECK(r.completion_mask(0, t) == all.completion_mask(b, t));
      CHECK(std::abs(r.logprobs(0, t) - all.logprobs(b, t)) <= 1e-5f);
      CHECK(std::abs(r.sampling_logprobs(0, t) - all.sampling_logprobs(b, t)) <= 1e-5f);
    }
  }
  CHECK(stopped_early >= 1);  // the batch mixes finished and live sequences
}

TEST_CASE("same seed, same tokens, another seed, other tokens, left-padded prompts are their real tokens") {
  const auto params = test_parameters<float>();
  generation_options o;
  o.max_new_tokens = 16;
  // Left-padded [2 x 5] prompts through unpad_prompts.
  Eigen::Matrix<std::int32_t, 2, 5, Eigen::RowMajor> ids;
  ids << 0, 0, 1, 2, 3, 30, 4, 4, 4, 8;
  Eigen::Matrix<float, 2, 5, Eigen::RowMajor> mask;
  mask << 0, 0, 1, 1, 1, 1, 1, 1, 1, 1;
  const prompt_list prompts = unpad_prompts(ids, mask);
  CHECK(prompts == prompt_list{{1, 2, 3}, {30, 4, 4, 4, 8}});
  const std::span<const std::vector<std::int32_t>> p(prompts);
  const auto a = generate(params, p, o, counter_rng(7));
  const auto b = generate(params, p, o, counter_rng(7));
  const auto c = generate(params, p, o, counter_rng(8));
  index_t differ = 0;
  for (index_t i = 0; i < 2; ++i)
    for (index_t t = 0; t < 16; ++t) {
      CHECK(a.completion_ids(i, t) == b.completion_ids(i, t));
      CHECK(a.logprobs(i, t) == b.logprobs(i, t));
      differ += a.completion_ids(i, t) != c.completion_ids(i, t);
    }
  CHECK(differ >= 8);  // 32 draws from ~37 tokens: most differ
  CHECK_THROWS_WITH_AS(unpad_prompts(ids, Eigen::Matrix<float, 2, 4, Eigen::RowMajor>::Zero().eval()),
                       doctest::Contains("attention_mask has shape [2 x 4] but prompt_ids has shape [2 x 5]"), error);
}

TEST_CASE("a group of G from one prompt equals G copies of the prompt, and group members differ") {
  const auto params = test_parameters<float>();
  generation_options o;
  o.max_new_tokens = 10;
  o.num_generations = 3;
  const prompt_list two = {{1, 2, 3}, {9, 8}};
  const auto grouped = generate(params, std::span<const std::vector<std::int32_t>>(two), o, counter_rng(3));
  REQUIRE(grouped.batch() == 6);
  CHECK(grouped.prompt_index == std::vector<index_t>{0, 0, 0, 1, 1, 1});
  // The same six sequences given one by one, each alone in its own call.
  for (index_t b = 0; b < 6; ++b) {
    generation_options one = o;
    one.num_generations = 1;
    one.first_sequence = static_cast<std::uint64_t>(b);
    const prompt_list single = {two[static_cast<std::size_t>(b / 3)]};
    const auto r = generate(params, std::span<const std::vector<std::int32_t>>(single), one, counter_rng(3));
    for (index_t t = 0; t < 10; ++t) {
      CHECK(r.completion_ids(0, t) == grouped.completion_ids(b, t));
      CHECK(std::abs(r.logprobs(0, t) - grouped.logprobs(b, t)) <= 1e-5f);
    }
  }
  // Sequences of one group draw different tokens.
  CHECK(completion(grouped, 0) != completion(grouped, 1));
  CHECK(completion(grouped, 1) != completion(grouped, 2));
}

TEST_CASE("EOS ends a completion and is kept in it, pad and mask 0 after it") {
  const auto params = test_parameters<float>();
  generation_options o;
  o.max_new_tokens = 12;
  o.pad_token_id = 36;
  const prompt_list prompts = {{4, 5, 6}};
  const std::span<const std::vector<std::int32_t>> p(prompts);
  const auto free_run = generate(params, p, o, counter_rng(5));
  // Make the 4th token an EOS (one not drawn before it).
  index_t t_eos = 3;
  while (std::find(&free_run.completion_ids(0, 0), &free_run.completion_ids(0, t_eos), free_run.completion_ids(0, t_eos)) !=
         &free_run.completion_ids(0, t_eos))
    ++t_eos;
  REQUIRE(t_eos < 12);
  // A second eos id that never appears up to t_eos: either one ends the completion.
  std::int32_t other = 0;
  while (std::find(&free_run.completion_ids(0, 0), &free_run.completion_ids(0, t_eos) + 1, other) !=
         &free_run.completion_ids(0, t_eos) + 1)
    ++other;
  o.eos_token_ids = {other, free_run.completion_ids(0, t_eos)};
  const auto r = generate(params, p, o, counter_rng(5));
  CHECK(r.lengths[0] == t_eos + 1);
  CHECK(r.reasons[0] == stop_reason::eos);
  CHECK(r.truncated[0] == 0);
  for (index_t t = 0; t < 12; ++t) {
    CHECK(r.completion_mask(0, t) == (t <= t_eos ? 1.0f : 0.0f));
    CHECK(r.completion_ids(0, t) == (t <= t_eos ? free_run.completion_ids(0, t) : 36));
    if (t > t_eos) CHECK(r.logprobs(0, t) == 0.0f);
  }
}

TEST_CASE("stop token sequences and stop strings end a completion where they first appear") {
  const auto params = test_parameters<float>();
  generation_options o;
  o.max_new_tokens = 14;
  const prompt_list prompts = {{4, 5, 6}, {20, 21}};
  const std::span<const std::vector<std::int32_t>> p(prompts);
  const auto free_run = generate(params, p, o, counter_rng(21));
  const auto free0 = completion(free_run, 0);
  // Stop sequence: tokens 4 and 5 of sequence 0's free completion.
  generation_options os = o;
  os.stop_token_sequences = {{free0[4], free0[5]}};
  const auto rs = generate(params, p, os, counter_rng(21));
  index_t first = 1;  // where the pair first ends in the free completion
  while (!(free0[static_cast<std::size_t>(first - 1)] == free0[4] && free0[static_cast<std::size_t>(first)] == free0[5])) ++first;
  CHECK(rs.lengths[0] == first + 1);
  CHECK(rs.reasons[0] == stop_reason::stop_sequence);
  // Stop string: the text of tokens 6..8 of the free completion.
  generation_options ot = o;
  ot.stop_strings = {letters(std::span<const std::int32_t>(free0).subspan(6, 3)), "no such text at all"};
  ot.detokenize = letters;
  const auto rt = generate(params, p, ot, counter_rng(21));
  const std::string text = letters(free0);
  const std::size_t at = text.find(ot.stop_strings[0]);  // one letter per token
  CHECK(rt.lengths[0] == static_cast<index_t>(at + 3));
  CHECK(rt.reasons[0] == stop_reason::stop_string);
  CHECK(rt.truncated[0] == 0);
  // Sequence 1 stops only if the string appears in its own text.
  const std::string text1 = letters(completion(free_run, 1));
  if (text1.find(ot.stop_strings[0]) == std::string::npos) CHECK(rt.truncated[1] == 1);
  generation_options missing = ot;
  missing.detokenize = nullptr;
  CHECK_THROWS_WITH_AS(generate(params, p, missing, counter_rng(21)),
                       doctest::Contains("2 stop strings need a detokenize callback"), error);
}

TEST_CASE("max_new_tokens bounds every completion, without a stop all are truncated at full length") {
  const auto params = test_parameters<float>();
  generation_options o;
  o.max_new_tokens = 5;
  o.num_generations = 4;
  const prompt_list prompts = {{1}, {2, 3}};
  const auto r = generate(params, std::span<const std::vector<std::int32_t>>(prompts), o, counter_rng(2));
  REQUIRE(r.completion_ids.shape() == std::array<index_t, 2>{8, 5});
  for (index_t b = 0; b < 8; ++b) {
    CHECK(r.lengths[static_cast<std::size_t>(b)] == 5);
    CHECK(r.truncated[static_cast<std::size_t>(b)] == 1);
    for (index_t t = 0; t < 5; ++t) CHECK(r.completion_mask(b, t) == 1.0f);
  }
}

TEST_CASE("the returned log-probs are log softmax(logits / T) and the warped distribution's, at each step") {
  const auto params = test_parameters<double>();
  generation_options o;
  o.max_new_tokens = 8;
  o.sampling.temperature = 0.7;
  o.sampling.top_p = 0.8;
  const prompt_list prompts = {{3, 1, 4, 1, 5}};
  const auto r = generate(params, std::span<const std::vector<std::int32_t>>(prompts), o, counter_rng(99));
  std::vector<std::int32_t> seq = prompts[0];
  for (index_t t = 0; t < 8; ++t) seq.push_back(r.completion_ids(0, t));
  const dense<double, 2> full = full_logits(params, seq);
  sampler_scratch<double> scratch(37);
  dense<double, 1> warped({37});
  for (index_t t = 0; t < 8; ++t) {
    const auto x = full.view().row(4 + t);
    double m = -INFINITY, z = 0;
    for (index_t v = 0; v < 37; ++v) m = std::max(m, x(v) / 0.7);
    for (index_t v = 0; v < 37; ++v) z += std::exp(x(v) / 0.7 - m);
    const std::int32_t tok = r.completion_ids(0, t);
    CHECK(r.logprobs(0, t) == doctest::Approx(x(tok) / 0.7 - m - std::log(z)).epsilon(1e-10));
    warped_logprobs(x, o.sampling, scratch.span(), warped.view());
    CHECK(r.sampling_logprobs(0, t) == doctest::Approx(warped(tok)).epsilon(1e-10));
    CHECK(r.sampling_logprobs(0, t) >= r.logprobs(0, t));  // the nucleus renormalizes upward
  }
}

TEST_CASE("generate rejects bad prompts and options with messages naming them") {
  const auto params = test_parameters<float>();
  generation_options o;
  o.max_new_tokens = 4;
  const auto run = [&](const prompt_list& prompts, const generation_options& opt) {
    return generate(params, std::span<const std::vector<std::int32_t>>(prompts), opt, counter_rng(0));
  };
  CHECK_THROWS_WITH_AS(run({{1}, {}}, o), doctest::Contains("prompt 1 is empty"), error);
  CHECK_THROWS_WITH_AS(run({{1, 40}}, o), doctest::Contains("prompt 0 has token id 40 at position 1"), error);
  CHECK_THROWS_WITH_AS(run({}, o), doctest::Contains("generate: no prompts"), error);
  generation_options long_run = o;
  long_run.max_new_tokens = 62;
  CHECK_THROWS_WITH_AS(run({{1, 2, 3}}, long_run), doctest::Contains("exceeds max_position_embeddings = 64"), error);
  generation_options zero = o;
  zero.max_new_tokens = 0;
  CHECK_THROWS_WITH_AS(run({{1}}, zero), doctest::Contains("max_new_tokens = 0 must be >= 1"), error);
  generation_options bad_eos = o;
  bad_eos.eos_token_ids = {37};
  CHECK_THROWS_WITH_AS(run({{1}}, bad_eos), doctest::Contains("eos token id 37 is outside the vocabulary"), error);
  generation_options bad_t = o;
  bad_t.sampling.temperature = 0;
  CHECK_THROWS_WITH_AS(run({{1}}, bad_t), doctest::Contains("temperature = 0"), error);
}

TEST_CASE("weight rounding: the decoder multiplies by the rounded projections and lm_head, the parameters stay") {
  // Rounding to multiples of 1/8 stands in for a quantizer (quant/'s round_through is one).
  const auto round_eighths = [](matrix_view<float> w) {
    for (index_t o = 0; o < w.shape[0]; ++o)
      for (index_t i = 0; i < w.shape[1]; ++i) w(o, i) = std::round(w(o, i) * 8) / 8;
  };
  auto params = test_parameters<float>(/*tied=*/false);
  const std::vector<float> before(params.values().begin(), params.values().end());
  // The same model with its projections and lm_head rounded ahead of time (embedding and norms as they are).
  auto rounded = test_parameters<float>(false);
  int matrices = 0;
  for (const auto& e : rounded.layout().entries()) {
    if (e.name.find("proj.weight") == std::string::npos && e.name != "lm_head.weight") continue;
    auto t = rounded.tensor(e.name);
    round_eighths(matrix_view<float>(t.data(), {1, static_cast<index_t>(t.size())}));
    ++matrices;
  }
  CHECK(matrices == 2 * 7 + 1);

  const std::vector<std::int32_t> ids = {3, 14, 15, 9, 2, 6};
  cached_decoder<float> dec(params);
  dec.set_weight_rounding(round_eighths);
  const auto got = full_logits(dec, ids);
  const auto want = full_logits(rounded, ids), plain = full_logits(params, ids);
  double differs_from_plain = 0;
  for (index_t i = 0; i < want.shape()[0]; ++i)
    for (index_t v = 0; v < want.shape()[1]; ++v) {
      CHECK(got(i, v) == want(i, v));
      differs_from_plain = std::max(differs_from_plain, static_cast<double>(std::fabs(got(i, v) - plain(i, v))));
    }
  CHECK(differs_from_plain > 1e-3);
  CHECK(std::equal(before.begin(), before.end(), params.values().begin()));  // the parameters were not touched

  // Generation through a rounding decoder equals generation from the rounded model.
  generation_options o;
  o.max_new_tokens = 10;
  const prompt_list prompts = {{1, 2, 3}, {7}};
  const auto from_rounded = generate(rounded, std::span<const std::vector<std::int32_t>>(prompts), o, counter_rng(5));
  const auto through = generate(dec, std::span<const std::vector<std::int32_t>>(prompts), o, counter_rng(5));
  for (index_t b = 0; b < 2; ++b) {
    CHECK(completion(through, b) == completion(from_rounded, b));
    for (index_t t = 0; t < through.lengths[static_cast<std::size_t>(b)]; ++t)
      CHECK(through.logprobs(b, t) == from_rounded.logprobs(b, t));
  }
}

TEST_CASE("kv_cache in q8_0 and q4_0: rows are stored as ggml blocks and read back as their dequantized values") {
  const transformer_config c = testing::transformer_shape(37, 128, 2, 2, 2, 48, 64);  // head_dim 64: two blocks a row
  for (kv_format format : {kv_format::q8_0, kv_format::q4_0}) {
    CAPTURE(kv_format_name(format));
    kv_cache<float> cache(c, 3, 10, format);
    const std::size_t row_bytes = format == kv_format::q8_0 ? 2 * 34 : 2 * 18;
    CHECK(cache.bytes() == 2 * 2 * 3 * 2 * 10 * row_bytes);  // layers x K/V x seqs x kv heads x len x row
    std::vector<float> row(64), expected(64);
    std::vector<std::vector<float>> written;
    for (index_t j = 0; j < 4; ++j) {
      for (index_t i = 0; i < 64; ++i) row[static_cast<std::size_t>(i)] = std::sin(0.37f * static_cast<float>(i + 64 * j)) * (1.0f + static_cast<float>(j));
      cache.store_key(1, 0, 1, j, row.data());
      for (float& x : row) x = -2 * x;
      cache.store_value(1, 0, 1, j, row.data());
      written.push_back(row);
    }
    cache.set_length(0, 4);
    cache.copy_sequence(0, 2);
    std::vector<float> scratch;
    const auto V = cache.load_values(1, 2, 1, 4, scratch);  // from the copy
    REQUIRE(V.shape == std::array<index_t, 2>{4, 64});
    for (index_t j = 0; j < 4; ++j) {
      // What the block format makes of the row, by quant/'s own quantize / dequantize.
      const auto& w = written[static_cast<std::size_t>(j)];
      std::vector<std::uint8_t> bytes(row_bytes);
      if (format == kv_format::q8_0) {
        quantize(q8_0{}, std::span<const float>(w), std::span<std::uint8_t>(bytes));
        dequantize(q8_0{}, std::span<const std::uint8_t>(bytes), std::span<float>(expected));
      } else {
        quantize(q4_0{}, std::span<const float>(w), std::span<std::uint8_t>(bytes));
        dequantize(q4_0{}, std::span<const std::uint8_t>(bytes), std::span<float>(expected));
      }
      double max_error = 0;
      for (index_t i = 0; i < 64; ++i) {
        CHECK(V(j, i) == expected[static_cast<std::size_t>(i)]);
        max_error = std::max(max_error, static_cast<double>(std::fabs(V(j, i) - w[static_cast<std::size_t>(i)])));
      }
      CHECK(max_error > 0);  // it was rounded
    }
    const auto K = cache.load_keys(1, 0, 1, 4, scratch);
    CHECK(K(0, 0) == doctest::Approx(0.0f).epsilon(0.01));  // sin 0, to within a step
    CHECK_THROWS_WITH_AS(cache.keys(0, 0, 0), doctest::Contains("load_keys"), error);
  }
  // A float cache's loads are views of its storage, no copy.
  kv_cache<float> plain(c, 1, 4);
  std::vector<float> scratch;
  CHECK(plain.load_keys(0, 0, 1, 3, scratch).data == plain.keys(0, 0, 1).data);
  CHECK(scratch.empty());
  CHECK_THROWS_WITH_AS(kv_cache<float>(test_config(), 1, 4, kv_format::q8_0),
                       doctest::Contains("head_dim = 4 is not a multiple of 32"), error);
  CHECK(kv_format_by_name("none") == kv_format::f32);
  CHECK(kv_format_by_name("q4_0") == kv_format::q4_0);
  CHECK_THROWS_WITH_AS(kv_format_by_name("q5_0"), doctest::Contains("known: none, q8_0, q4_0"), error);
}

TEST_CASE("a quantized kv cache changes the logits by a little, 4 bits more than 8, and generation still runs") {
  const transformer_config c = testing::transformer_shape(37, 64, 2, 2, 1, 48, 64);  // head_dim 32
  transformer_parameters<float> params(c);
  params.initialize(3, 0.1);
  const std::vector<std::int32_t> ids = {3, 14, 15, 9, 2, 6, 5, 35, 8, 9, 7, 9};
  const auto logits_with = [&](kv_format format) {
    cached_decoder<float> dec(params);
    dec.set_kv_format(format);
    dec.reset(1, 16);
    dense<float, 2> out({static_cast<index_t>(ids.size()), c.vocab_size});
    for (std::size_t t = 0; t < ids.size(); ++t) {  // token by token: each step reads the cached (rounded) rows
      const cached_token row{0, ids[t], true};
      const auto l = dec.forward(std::span<const cached_token>(&row, 1));
      for (index_t v = 0; v < c.vocab_size; ++v) out(static_cast<index_t>(t), v) = l(0, v);
    }
    return out;
  };
  const auto exact = logits_with(kv_format::f32), q8 = logits_with(kv_format::q8_0), q4 = logits_with(kv_format::q4_0);
  double e8 = 0, e4 = 0, scale = 0;
  for (index_t t = 0; t < exact.shape()[0]; ++t)
    for (index_t v = 0; v < c.vocab_size; ++v) {
      e8 = std::max(e8, static_cast<double>(std::fabs(q8(t, v) - exact(t, v))));
      e4 = std::max(e4, static_cast<double>(std::fabs(q4(t, v) - exact(t, v))));
      scale = std::max(scale, static_cast<double>(std::fabs(exact(t, v))));
    }
  CAPTURE(e8);
  CAPTURE(e4);
  CAPTURE(scale);
  CHECK(e8 > 0);
  CHECK(e8 < 0.05 * scale);  // measured: 0.036 of 2.55
  CHECK(e4 > 2 * e8);
  CHECK(e4 < 0.5 * scale);  // measured: 0.46 of 2.55

  cached_decoder<float> dec(params);
  dec.set_kv_format(kv_format::q4_0);
  generation_options o;
  o.max_new_tokens = 8;
  o.num_generations = 3;
  const prompt_list prompts = {{1, 2, 3}, {7}};
  const auto r = generate(dec, std::span<const std::vector<std::int32_t>>(prompts), o, counter_rng(5));
  CHECK(r.batch() == 6);
  CHECK(dec.cache().format() == kv_format::q4_0);
  for (index_t b = 0; b < 6; ++b) CHECK(r.lengths[static_cast<std::size_t>(b)] == 8);
}

TEST_CASE("integer weights: the decoder multiplies by q8_0, q4_0, int8 or q4_k weights with quantized activations") {
  const transformer_config c = testing::transformer_shape(37, 64, 2, 2, 1, 44, 64);  // ffn 44: a padded last block
  transformer_parameters<float> params(c);
  params.initialize(3, 0.1);
  const std::vector<float> before(params.values().begin(), params.values().end());
  const std::vector<std::int32_t> ids = {3, 14, 15, 9, 2, 6, 5, 35};
  const auto logits = [&](cached_decoder<float>& dec) { return full_logits(dec, ids); };
  cached_decoder<float> plain(params);
  const auto exact = logits(plain);
  const std::size_t float_bytes = plain.weight_bytes();
  for (const std::string name : {"q8_0", "q4_0", "int8", "q4_k"}) {
    CAPTURE(name);
    const integer_format format = *integer_format_by_name(name);
    // The same weights rounded through the format, multiplied in float: the integer
    // decoder differs from it only by its activations' Q8_0 rounding.
    cached_decoder<float> rounded(params);
    rounded.set_weight_rounding([&](matrix_view<float> w) {
      const integer_linear q(format, w);
      q.dequantize_to(w);
    });
    cached_decoder<float> dec(params);
    dec.set_weight_format(format);
    CHECK(dec.weight_format() == format);
    const auto got = logits(dec), want = logits(rounded);
    double from_rounded = 0, from_exact = 0, scale = 0;
    for (index_t i = 0; i < got.shape()[0]; ++i)
      for (index_t v = 0; v < got.shape()[1]; ++v) {
        from_rounded = std::max(from_rounded, static_cast<double>(std::fabs(got(i, v) - want(i, v))));
        from_exact = std::max(from_exact, static_cast<double>(std::fabs(got(i, v) - exact(i, v))));
        scale = std::max(scale, static_cast<double>(std::fabs(exact(i, v))));
      }
    CAPTURE(from_rounded);
    CAPTURE(from_exact);
    CHECK(from_rounded > 0);                  // the activations were quantized
    CHECK(from_rounded < 0.03 * scale);       // by 8 bits: a small change
    const bool four_bit = format == integer_format::q4_0 || format == integer_format::q4_k;
    CHECK(from_exact < (four_bit ? 0.3 : 0.05) * scale);
    // Bytes: 8.5 / 4.5 / ~8 bits per weight instead of 32.
    const double ratio = static_cast<double>(dec.weight_bytes()) / static_cast<double>(float_bytes);
    CAPTURE(ratio);
    // (q4_k pads this model's rows of 64 and 44 values to 256-value super-blocks: 0.6.)
    CHECK(ratio < (format == integer_format::q4_k ? 0.7 : four_bit ? 0.2 : 0.33));
    // A quantized kv cache on top changes the logits again (the two compose).
    cached_decoder<float> both(params);
    both.set_weight_format(format);
    both.set_kv_format(kv_format::q8_0);
    const auto with_cache = logits(both);
    double cache_change = 0;
    for (index_t i = 0; i < got.shape()[0]; ++i)
      for (index_t v = 0; v < got.shape()[1]; ++v)
        cache_change = std::max(cache_change, static_cast<double>(std::fabs(with_cache(i, v) - got(i, v))));
    CHECK(cache_change > 0);
    CHECK(cache_change < 0.05 * scale);
    // Generation runs from it; the parameters are untouched.
    generation_options o;
    o.max_new_tokens = 6;
    o.num_generations = 2;
    const prompt_list prompts = {{1, 2, 3}, {7}};
    const auto r = generate(dec, std::span<const std::vector<std::int32_t>>(prompts), o, counter_rng(5));
    CHECK(r.batch() == 4);
    CHECK(std::equal(before.begin(), before.end(), params.values().begin()));
  }
  // Back to float32 after a pass in q4_0: the plain decoder's logits, bit for bit, and its bytes (the
  // integer copy is dropped).
  cached_decoder<float> back(params);
  back.set_weight_format(integer_format::q4_0);
  logits(back);
  CHECK(back.weight_bytes() < float_bytes);
  back.set_weight_format(std::nullopt);
  const auto again = logits(back);
  for (index_t i = 0; i < again.shape()[0]; ++i)
    for (index_t v = 0; v < again.shape()[1]; ++v) CHECK(again(i, v) == exact(i, v));
  CHECK(back.weight_bytes() == float_bytes);
  // Rounding and integer weights do not mix; a double decoder has no integer weights.
  back.set_weight_format(integer_format::q8_0);
  CHECK_THROWS_WITH_AS(back.set_weight_rounding([](matrix_view<float>) {}), doctest::Contains("one or the other"), error);
  const auto dparams = test_parameters<double>();
  cached_decoder<double> ddec(dparams);
  CHECK_THROWS_WITH_AS(ddec.set_weight_format(integer_format::q8_0), doctest::Contains("float decoder"), error);
  CHECK_FALSE(integer_format_by_name("q5_k").has_value());
}

// The suite runs one OpenMP thread per test (scripts/run-tests.sh); here the
// decoder's parallel loops (runs of rows, the packed products past their
// thresholds, sampling) run with two, and give what one thread gives.
TEST_CASE("generation gives the same tokens and log-probs with one thread and with two") {
  transformer_parameters<float> params(testing::transformer_shape(1500, 64, 2, 4, 2, 160, 64));
  params.initialize(5, 0.3);
  generation_options o;
  o.max_new_tokens = 16;
  o.sampling.temperature = 0.9;
  o.sampling.top_p = 0.95;
  const prompt_list prompts = {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, {30, 4}, {7, 1400, 7, 1400, 7, 1400, 9}, {22}};
  std::vector<generation_result<float>> results;
  const testing::restore_threads restore;
  for (const int threads : testing::thread_counts()) {
    testing::set_threads(threads);
    results.push_back(generate(params, std::span<const std::vector<std::int32_t>>(prompts), o, counter_rng(99)));
  }
  for (std::size_t r = 1; r < results.size(); ++r)
    for (index_t b = 0; b < 4; ++b) {
      CHECK(results[r].lengths[static_cast<std::size_t>(b)] == results[0].lengths[static_cast<std::size_t>(b)]);
      for (index_t t = 0; t < o.max_new_tokens; ++t) {
        CHECK(results[r].completion_ids(b, t) == results[0].completion_ids(b, t));
        CHECK(results[r].logprobs(b, t) == results[0].logprobs(b, t));
      }
    }
}
