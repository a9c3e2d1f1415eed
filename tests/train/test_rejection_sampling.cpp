// train/rejection_sampling.hpp: the kept set against generate() run directly
// and filtered by hand, batching independence, the per-prompt cap, mix_in, and
// the SFT JSONL round trip.
#include "lmrl/train/rejection_sampling.hpp"

#include "lmrl/model/transformer.hpp"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "support/model_shapes.hpp"
#include "support/testing.hpp"

using namespace lmrl;

namespace {

// A fake tokenizer over 8 ids. Encoding: newline = 1, 'a'..'f' = 2..7. Decoding: the eos ids 0 and 3
// are stripped, 1 and 7 are newlines, the other ids write only 'a' (even) and 'b' (odd), so that short
// completions collide and repeat lines.
std::vector<std::int32_t> encode_letters(std::string_view text) {
  std::vector<std::int32_t> ids;
  for (char c : text) ids.push_back(c == '\n' ? 1 : static_cast<std::int32_t>(c - 'a' + 2));
  return ids;
}

std::string decode_letters(std::span<const std::int32_t> ids) {
  std::string s;
  for (auto id : ids)
    if (id == 1 || id == 7) s += '\n';
    else if (id >= 2 && id != 3) s += static_cast<char>('a' + id % 2);
  return s;
}

// The rule: depends on the prompt index and the text.
bool accept_rule(std::size_t prompt, std::string_view text) { return (prompt + text.size()) % 3 != 0; }

// An independent line counter (the fake tokenizer makes no spaces, so no trimming is needed).
bool repeats_a_line(const std::string& text, int max_repeats) {
  std::map<std::string, int> count;
  std::size_t start = 0;
  for (;;) {
    const std::size_t end = text.find('\n', start);
    const std::string line = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!line.empty() && ++count[line] > max_repeats) return true;
    if (end == std::string::npos) return false;
    start = end + 1;
  }
}

const std::vector<std::string> prompt_texts = {"ab", "c", "dd\ne", "f", "abc", "e"};

rejection_sampling_options small_options() {
  rejection_sampling_options o;
  o.samples_per_prompt = 8;
  o.max_new_tokens = 6;
  o.temperature = 1.3;
  o.seed = 2024;
  o.eos_token_ids = {0, 3};
  o.max_line_repeats = 1;
  return o;
}

std::vector<sft_record> run(const transformer<float>& model, const rejection_sampling_options& o,
                            rejection_sampling_stats* stats = nullptr) {
  return rejection_sample<float>(model.parameters(), prompt_texts, encode_letters, decode_letters, accept_rule, o,
                                 stats);
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("lmrl_rs_" + std::to_string(::getpid()) + "_" + name)).string();
}

}  // namespace

TEST_CASE("is_repetitive counts trimmed non-blank lines") {
  CHECK_FALSE(is_repetitive("a\nb\na", 2));
  CHECK(is_repetitive("a\nb\na\n  a  ", 2));  // "a" three times once trimmed
  CHECK_FALSE(is_repetitive("a\nb\na\n  a  ", 3));
  CHECK_FALSE(is_repetitive("\n\n  \n\t\n", 1));  // blank lines never count
  CHECK(is_repetitive("step\r\nstep\r\n", 1));    // CRLF: the '\r' is trimmed
  CHECK_FALSE(is_repetitive("ab\nab a\nab b", 1));
  CHECK_FALSE(is_repetitive("x\nx\nx\nx", 0));  // 0: no filter
  CHECK(is_repetitive("x\nx", 1));
  CHECK_FALSE(is_repetitive("", 1));
  CHECK_THROWS_AS(is_repetitive("x", -1), lmrl::error);
}

TEST_CASE("rejection_sample keeps exactly the accepted, complete, non-repetitive, distinct generations") {
  const transformer_config c = testing::transformer_shape(8, 16, 1, 2, 1, 16);
  const transformer<float> model(c, 7, 0.5);
  rejection_sampling_options o = small_options();
  o.prompts_per_batch = 4;  // two batches, the second partial
  rejection_sampling_stats stats;
  const std::vector<sft_record> kept = run(model, o, &stats);

  // The same completions from one generate() over all prompts, filtered by hand.
  std::vector<std::vector<std::int32_t>> prompts;
  for (const auto& p : prompt_texts) prompts.push_back(encode_letters(p));
  generation_options g;
  g.max_new_tokens = o.max_new_tokens;
  g.num_generations = o.samples_per_prompt;
  g.sampling.do_sample = true;
  g.sampling.temperature = o.temperature;
  g.eos_token_ids = o.eos_token_ids;
  const auto out = generate(model.parameters(), std::span<const std::vector<std::int32_t>>(prompts), g,
                            counter_rng(o.seed));
  std::vector<sft_record> expected, expected_with_duplicates;
  std::set<std::pair<std::string, std::string>> seen;
  index_t truncated = 0, by_rule = 0, repetitive = 0, duplicates = 0;
  for (index_t b = 0; b < out.batch(); ++b) {
    const std::size_t p = static_cast<std::size_t>(b / o.samples_per_prompt);
    if (out.truncated[static_cast<std::size_t>(b)]) {
      ++truncated;
      continue;
    }
    std::vector<std::int32_t> ids;
    for (index_t t = 0; t < out.lengths[static_cast<std::size_t>(b)]; ++t) ids.push_back(out.completion_ids(b, t));
    const std::string text = decode_letters(ids);
    if (!accept_rule(p, text)) {
      ++by_rule;
    } else if (repeats_a_line(text, 1)) {
      ++repetitive;
    } else {
      expected_with_duplicates.push_back({prompt_texts[p], text, "rejection_sampling"});
      if (!seen.insert({prompt_texts[p], text}).second) ++duplicates;
      else expected.push_back({prompt_texts[p], text, "rejection_sampling"});
    }
  }
  CHECK(kept == expected);
  CHECK(stats.prompts == 6);
  CHECK(stats.generated == 48);
  CHECK(stats.truncated == truncated);
  CHECK(stats.rejected_by_rule == by_rule);
  CHECK(stats.repetitive == repetitive);
  CHECK(stats.duplicates == duplicates);
  CHECK(stats.over_per_prompt_cap == 0);
  CHECK(stats.kept == static_cast<index_t>(kept.size()));
  CHECK(stats.kept + stats.truncated + stats.rejected_by_rule + stats.repetitive + stats.duplicates +
            stats.over_per_prompt_cap ==
        stats.generated);
  // Every filter had something to do on this model and seed, so each branch above was exercised.
  CHECK(truncated > 0);
  CHECK(by_rule > 0);
  CHECK(repetitive > 0);
  CHECK(duplicates > 0);
  CHECK(expected.size() > 0);
  CHECK(stats.summary().find(std::to_string(stats.kept) + " kept") != std::string::npos);

  SUBCASE("the same set for any prompts_per_batch") {
    for (index_t per_batch : {1, 16}) {
      rejection_sampling_options other = o;
      other.prompts_per_batch = per_batch;
      CHECK(run(model, other) == kept);
    }
  }
  SUBCASE("deduplicate = false keeps the duplicates") {
    rejection_sampling_options other = o;
    other.deduplicate = false;
    rejection_sampling_stats s;
    CHECK(run(model, other, &s) == expected_with_duplicates);
    CHECK(s.duplicates == 0);
  }
  SUBCASE("drop_truncated = false lets truncated completions reach the rule") {
    rejection_sampling_options other = o;
    other.drop_truncated = false;
    rejection_sampling_stats s;
    const auto all = run(model, other, &s);
    CHECK(s.truncated == 0);
    CHECK(all.size() > kept.size());
  }
}

TEST_CASE("rejection_sample's max_per_prompt keeps the first distinct accepted completions of each prompt") {
  const transformer_config c = testing::transformer_shape(8, 16, 1, 2, 1, 16);
  const transformer<float> model(c, 7, 0.5);
  rejection_sampling_options o = small_options();
  rejection_sampling_stats full_stats, capped_stats;
  const auto full = run(model, o, &full_stats);
  o.max_per_prompt = 1;
  const auto capped = run(model, o, &capped_stats);
  std::vector<sft_record> expected;
  std::set<std::string> prompts_seen;
  for (const auto& r : full)
    if (prompts_seen.insert(r.prompt).second) expected.push_back(r);
  CHECK(capped == expected);
  CHECK(capped.size() < full.size());  // some prompt had more than one
  CHECK(capped_stats.over_per_prompt_cap == full_stats.kept - capped_stats.kept);
  CHECK(capped_stats.duplicates == full_stats.duplicates);
}

TEST_CASE("rejection_sample_with keeps the same records from the batches its generator gives") {
  const transformer_config c = testing::transformer_shape(8, 16, 1, 2, 1, 16);
  const transformer<float> model(c, 7, 0.5);
  rejection_sampling_options o = small_options();
  o.prompts_per_batch = 4;  // 6 prompts: two batches
  rejection_sampling_stats expected_stats, stats;
  const auto expected = run(model, o, &expected_stats);
  cached_decoder<float> decoder(model.parameters());
  std::vector<std::size_t> batches;
  const auto got = rejection_sample_with(
      [&](std::span<const std::vector<std::int32_t>> batch, const generation_options& g, const counter_rng& rng) {
        batches.push_back(batch.size());
        return generate(decoder, batch, g, rng);
      },
      prompt_texts, encode_letters, decode_letters, accept_rule, o, &stats);
  CHECK(got == expected);
  CHECK(stats.kept == expected_stats.kept);
  CHECK(stats.generated == expected_stats.generated);
  CHECK(batches == std::vector<std::size_t>{4, 2});
}

TEST_CASE("rejection_sample and its options reject bad input with the field named") {
  const transformer_config c = testing::transformer_shape(8, 16, 1, 2, 1, 16);
  const transformer<float> model(c, 7, 0.5);
  rejection_sampling_options o = small_options();
  o.samples_per_prompt = 0;
  CHECK_THROWS_WITH_AS(o.validate(), doctest::Contains("samples_per_prompt = 0"), lmrl::error);
  o = small_options();
  o.temperature = 0;
  CHECK_THROWS_WITH_AS(o.validate(), doctest::Contains("temperature = 0"), lmrl::error);
  o = small_options();
  o.max_per_prompt = -1;
  CHECK_THROWS_WITH_AS(o.validate(), doctest::Contains("max_per_prompt = -1"), lmrl::error);
  o = small_options();
  o.eos_token_ids.clear();
  CHECK_THROWS_WITH_AS(o.validate(), doctest::Contains("drop_truncated"), lmrl::error);
  o = small_options();
  CHECK_THROWS_WITH_AS(rejection_sample<float>(model.parameters(), {}, encode_letters, decode_letters, accept_rule, o),
                       doctest::Contains("no prompts"), lmrl::error);
  CHECK_THROWS_WITH_AS(rejection_sample<float>(model.parameters(), prompt_texts, encode_letters, decode_letters, {}, o),
                       doctest::Contains("no accept function"), lmrl::error);
  const std::vector<std::string> with_empty = {"ab", ""};
  CHECK_THROWS_WITH_AS(rejection_sample<float>(model.parameters(), with_empty, encode_letters, decode_letters,
                                               accept_rule, o),
                       doctest::Contains("prompt 1 encodes to no tokens"), lmrl::error);
}

TEST_CASE("mix_in adds round(fraction x records) general records and shuffles with the seed") {
  std::vector<sft_record> rs, general;
  for (int i = 0; i < 10; ++i) rs.push_back({std::string(1, 'p').append(std::to_string(i)), "c", "rejection_sampling"});
  for (int i = 0; i < 6; ++i) general.push_back({std::string(1, 'g').append(std::to_string(i)), "x", i == 0 ? "chat" : ""});

  const auto mixed = mix_in(rs, general, 0.34, 7);  // round(3.4) = 3
  REQUIRE(mixed.size() == 13);
  std::multiset<std::string> prompts;
  int from_general = 0;
  for (const auto& r : mixed) {
    prompts.insert(r.prompt);
    if (r.prompt[0] == 'g') {
      ++from_general;
      CHECK(r.source == (r.prompt == "g0" ? "chat" : "general"));  // an empty source becomes "general"
    }
  }
  CHECK(from_general == 3);
  for (const auto& r : rs) CHECK(prompts.count(r.prompt) == 1);  // every record kept once
  for (const auto& g : general) CHECK(prompts.count(g.prompt) <= 1);  // without replacement

  CHECK(mix_in(rs, general, 0.34, 7) == mixed);  // same seed, same set and order
  std::vector<sft_record> input_order = rs;
  CHECK(mix_in(rs, general, 0.0, 7) != input_order);  // shuffled even with nothing mixed in
  CHECK(mix_in(rs, general, 0.0, 7).size() == 10);
  CHECK(mix_in(rs, general, 0.34, 8) != mixed);
  CHECK(mix_in(rs, general, 0.6, 1).size() == 16);  // all of general
  CHECK_THROWS_WITH_AS(mix_in(rs, general, 0.7, 1), doctest::Contains("of 10 records asks for 7 general records but only 6"),
                       lmrl::error);
  CHECK_THROWS_AS(mix_in(rs, general, -0.1, 1), lmrl::error);
}

TEST_CASE("write_sft_jsonl then read_sft_jsonl gives the records back") {
  const std::vector<sft_record> records = {
      {"say \"hi\" \\ then\nnewline\tand tab", "ok \"quoted\"\n", "rejection_sampling"},
      {"Größe 大きさ 🙂", "ünïcödé", "general"},
      {"", "", ""},
      {"ctrl \x01 char", "x", "chat"},
  };
  const std::string path = temp_path("round_trip.jsonl");
  write_sft_jsonl(path, records);
  CHECK(read_sft_jsonl(path) == records);
  {
    std::ifstream in(path);
    std::string first;
    std::getline(in, first);
    CHECK(first == R"({"prompt": "say \"hi\" \\ then\nnewline\u0009and tab", "completion": "ok \"quoted\"\n", )"
                   R"("source": "rejection_sampling"})");
  }

  // Invalid UTF-8 is refused on write, and the previous file stays.
  const std::vector<sft_record> bad = {{"fine", "fine", ""}, {"ok", "broken \xC3", ""}};
  CHECK_THROWS_WITH_AS(write_sft_jsonl(path, bad), doctest::Contains("record 1 field \"completion\""), lmrl::error);
  CHECK(read_sft_jsonl(path) == records);
  std::filesystem::remove(path);
}

TEST_CASE("read_sft_jsonl names the file and line of a bad record") {
  const std::string path = temp_path("bad.jsonl");
  {
    std::ofstream out(path);
    out << R"({"prompt": "a", "completion": "b"})" << "\n\n"
        << R"({"prompt": "a", "completion": "b", "source": "s"})" << "\n"
        << R"({"prompt": "a" "completion": "b"})" << "\n";
  }
  CHECK_THROWS_WITH_AS(read_sft_jsonl(path), doctest::Contains((path + ":4:").c_str()), lmrl::error);
  {
    std::ofstream out(path);
    out << R"({"prompt": "a", "completion": "b"})" << "\n" << R"({"prompt": "a"})" << "\n";
  }
  CHECK_THROWS_WITH_AS(read_sft_jsonl(path), doctest::Contains((path + ":2: missing field \"completion\"").c_str()), lmrl::error);
  {
    std::ofstream out(path);
    out << R"({"prompt": 3, "completion": "b"})" << "\n";
  }
  CHECK_THROWS_WITH_AS(read_sft_jsonl(path), doctest::Contains((path + ":1: field \"prompt\" is a number").c_str()), lmrl::error);
  {
    std::ofstream out(path);
    out << R"({"prompt": "a", "completion": "b"})" << "\n";
  }
  const auto read = read_sft_jsonl(path);
  REQUIRE(read.size() == 1);
  CHECK(read[0].source.empty());  // source is optional
  std::filesystem::remove(path);
  CHECK_THROWS_WITH_AS(read_sft_jsonl(path), doctest::Contains(path.c_str()), lmrl::error);
}
