// Language consistency: UTF-8 decoding (every kind of invalid sequence),
// script classification, word splitting, and the reward.
#include "lmrl/reward/language.hpp"

#include <cmath>
#include <string>

#include "support/testing.hpp"

using namespace lmrl;

static_assert(ExplainingRewardRule<language_consistency>);

TEST_CASE("decode_utf8 decodes 1- to 4-byte sequences") {
  CHECK(decode_utf8("A", 0).code_point == U'A');
  const std::string e = "\xC3\xA9";  // é
  CHECK(decode_utf8(e, 0).code_point == 0xE9);
  CHECK(decode_utf8(e, 0).length == 2);
  CHECK(decode_utf8("\xE4\xB8\xAD", 0).code_point == 0x4E2D);   // 中
  CHECK(decode_utf8("\xF0\x9F\x98\x80", 0).code_point == 0x1F600);  // 😀
  CHECK(decode_utf8("\xF4\x8F\xBF\xBF", 0).code_point == 0x10FFFF);  // the last code point
  CHECK(decode_utf8("\xED\x9F\xBF", 0).code_point == 0xD7FF);       // just below the surrogates
  CHECK(count_invalid_utf8("plain ascii, 中文, русский, 😀") == 0);
}

TEST_CASE("every kind of invalid UTF-8 is rejected and counted once per maximal subpart") {
  struct bad {
    std::string bytes;
    std::size_t length;  // bytes the decoder consumes for the invalid subpart
  };
  const bad cases[] = {
      {"\x80", 1},                  // lone continuation byte
      {"\xBF", 1},
      {"\xC0\xAF", 1},              // overlong '/' (C0 is never valid)
      {"\xC1\xBF", 1},
      {"\xE0\x80\xAF", 1},          // overlong 3-byte: E0 needs A0..BF next
      {"\xF0\x80\x80\xAF", 1},      // overlong 4-byte: F0 needs 90..BF next
      {"\xED\xA0\x80", 1},          // high surrogate U+D800
      {"\xED\xBF\xBF", 1},          // low surrogate U+DFFF
      {"\xF4\x90\x80\x80", 1},      // U+110000, above the last code point
      {"\xF5\x80\x80\x80", 1},      // F5..FF never start a sequence
      {"\xFF", 1},
      {"\xC3", 1},                  // truncated at the end of the text
      {"\xE4\xB8", 2},              // truncated 3-byte
      {"\xF0\x9F\x98", 3},          // truncated 4-byte
      {"\xE4\x41", 1},              // a non-continuation byte interrupts
  };
  for (const auto& b : cases) {
    INFO("bytes of size ", b.bytes.size());
    const utf8_char c = decode_utf8(b.bytes, 0);
    CHECK_FALSE(c.valid);
    CHECK(c.length == b.length);
  }
  CHECK(count_invalid_utf8("\xE4\xB8" "A") == 1);           // the 'A' survives
  CHECK(count_invalid_utf8("\x80\x80\x80") == 3);
  // ED A0 80 is three subparts (ED cannot be followed by A0; A0 and 80 are lone continuations), FF one more.
  CHECK(count_invalid_utf8("ok \xED\xA0\x80 ok \xFF") == 3 + 1);
}

TEST_CASE("script_of classifies by Unicode block") {
  CHECK(script_of(U'a') == script::latin);
  CHECK(script_of(U'é') == script::latin);
  CHECK(script_of(U'7') == script::none);
  CHECK(script_of(U'Ж') == script::cyrillic);
  CHECK(script_of(U'λ') == script::greek);
  CHECK(script_of(U'ب') == script::arabic);
  CHECK(script_of(U'ש') == script::hebrew);
  CHECK(script_of(U'क') == script::devanagari);
  CHECK(script_of(U'ก') == script::thai);
  CHECK(script_of(U'中') == script::han);
  CHECK(script_of(U'か') == script::kana);
  CHECK(script_of(U'カ') == script::kana);
  CHECK(script_of(U'한') == script::hangul);
  CHECK(script_of(U'。') == script::none);
  CHECK(script_of(U'😀') == script::none);
  CHECK(script_of(U'ა') == script::other);  // Georgian
}

TEST_CASE("count_words: runs of one script, each Han or kana character is a word") {
  auto w = count_words("Hello, world 42!");
  CHECK(w.total == 2);
  CHECK(w.words[static_cast<std::size_t>(script::latin)] == 2);
  w = count_words("我爱数学");  // 4 Han characters
  CHECK(w.total == 4);
  w = count_words("abcабв");  // a script change splits the run: 1 Latin + 1 Cyrillic
  CHECK(w.total == 2);
  CHECK(w.words[static_cast<std::size_t>(script::cyrillic)] == 1);
  w = count_words("e\xCC\x81te");  // e + combining acute + te: one word
  CHECK(w.total == 1);
  w = count_words("<think>x</think><answer>y</answer>");  // tags are not words
  CHECK(w.total == 2);
  w = count_words("ひらがな漢字", false);
  CHECK(w.words[static_cast<std::size_t>(script::kana)] == 4);
  CHECK(w.words[static_cast<std::size_t>(script::han)] == 2);
  w = count_words("ひらがな漢字");  // merged into the CJK group, reported as han
  CHECK(w.words[static_cast<std::size_t>(script::han)] == 6);
  CHECK(w.dominant() == script::han);
}

TEST_CASE("language_consistency: share of completion words in the prompt's script") {
  reward_context ctx;
  ctx.prompt = "Solve: what is two plus two?";
  ctx.completion = "Two plus two is four.";
  CHECK(language_consistency{}(ctx) == 1.0);
  // 3 Latin words + 2 Han words: 3 / 5.
  ctx.completion = "the answer 是 四 ok";
  CHECK(language_consistency{}(ctx) == doctest::Approx(3.0 / 5.0));
  const auto r = language_consistency_report(ctx.prompt, ctx.completion);
  CHECK(r.target == script::latin);
  CHECK(r.words == 5);
  CHECK(r.matching_words == 3);
  // Chinese prompt, English completion: 0.
  ctx.prompt = "计算二加二";
  ctx.completion = "two plus two";
  CHECK(language_consistency{}(ctx) == 0.0);
  // Only numbers: no words, reward 0.
  ctx.completion = "4";
  CHECK(language_consistency{}(ctx) == 0.0);
  CHECK(std::string(language_consistency{}.evaluate(ctx).reason) == "completion has no words");
  // A prompt without words has no target language: NaN (the rule abstains).
  ctx.prompt = "1 + 1 = ?";
  CHECK(std::isnan(language_consistency{}(ctx)));
}

TEST_CASE("think_only scores only the reasoning") {
  reward_context ctx;
  ctx.prompt = "Quelle est la réponse?";
  ctx.completion = "<think>je pense</think><answer>答案</answer>";
  CHECK(language_consistency{}(ctx) == doctest::Approx(2.0 / 4.0));
  language_consistency cot{{true, true}};
  CHECK(cot(ctx) == 1.0);
}

TEST_CASE("invalid UTF-8 gives reward 0 and is counted, never a crash") {
  reward_context ctx;
  ctx.prompt = "English prompt";
  ctx.completion = "fine \xC0\xAF text \xED\xA0\x80";
  const auto r = language_consistency_report(ctx.prompt, ctx.completion);
  CHECK(r.invalid_sequences == 2 + 3);  // C0 AF: two subparts; ED A0 80: three
  CHECK(r.reward == 0.0);
  CHECK(language_consistency{}(ctx) == 0.0);
  CHECK(std::string(language_consistency{}.evaluate(ctx).reason) == "invalid UTF-8");
  ctx.prompt = "\xFF";
  ctx.completion = "ok";
  CHECK(language_consistency{}(ctx) == 0.0);
  // Every single byte value alone: decoded without crashing.
  for (int b = 0; b < 256; ++b) {
    const std::string one(1, static_cast<char>(b));
    CHECK(count_invalid_utf8(one) == (b < 0x80 ? 0u : 1u));
  }
}
