// The pre-tokenizer regexes as hand matchers: pieces of small strings worked
// out from the regex by hand (the reference corpus in test_bpe_tokenizer
// checks them against the tokenizers library on thousands of strings).
#include "lmrl/model/tokenizer/pre_tokenizer.hpp"

#include <string>
#include <vector>

#include "support/testing.hpp"

using namespace lmrl::pretok;

namespace {
std::vector<std::string> split(pattern p, const std::string& s, const std::string& literal = "") {
  std::vector<piece> out;
  if (!s.empty()) split_isolated(p, s, {0, s.size()}, out, literal);
  std::vector<std::string> words;
  for (const auto& w : out) words.push_back(s.substr(w.begin, w.end - w.begin));
  return words;
}
using words = std::vector<std::string>;
}  // namespace

TEST_CASE("pre_tokenizer: Qwen2 pattern") {
  // "it's" -> it | 's (contraction); " 42" -> ' ' is not a letter before digits: space, then one digit at a time.
  CHECK(split(pattern::qwen2, "it's 42") == words{"it", "'s", " ", "4", "2"});
  CHECK(split(pattern::qwen2, "IT'S") == words{"IT", "'S"});  // (?i:...)
  // Punctuation takes one leading space and trailing newlines: " !!\n".
  CHECK(split(pattern::qwen2, "a !!\n\nb") == words{"a", " !!\n\n", "b"});
  // White space before a word: all but the last character (\s+(?!\S)), the last goes with the word.
  CHECK(split(pattern::qwen2, "a   b") == words{"a", "  ", " b"});
  // \s*[\r\n]+ ends at the last newline of the run.
  CHECK(split(pattern::qwen2, "a \n \n  b") == words{"a", " \n \n", " ", " b"});
  CHECK(split(pattern::qwen2, "x  ") == words{"x", "  "});  // trailing white space at the end
  CHECK(split(pattern::llama3, "12345") == words{"123", "45"});
  CHECK(split(pattern::qwen2, "\xE4\xBD\xA0\xE5\xA5\xBD!") == words{"\xE4\xBD\xA0\xE5\xA5\xBD", "!"});  // 你好!
}

TEST_CASE("pre_tokenizer: GPT-2 pattern (ByteLevel use_regex)") {
  CHECK(split(pattern::gpt2, "Hello world, it's 2024!") ==
        words{"Hello", " world", ",", " it", "'s", " 2024", "!"});
  CHECK(split(pattern::gpt2, "IT'S") == words{"IT", "'", "S"});  // case-sensitive contractions
  CHECK(split(pattern::gpt2, "a  \nb") == words{"a", "  ", "\n", "b"});
}

TEST_CASE("pre_tokenizer: DeepSeek-V3 patterns") {
  CHECK(split(pattern::digits3, "a1234567b") == words{"a", "123", "456", "7", "b"});
  CHECK(split(pattern::cjk, "ab\xE4\xB8\xAD\xE6\x96\x87\xE3\x81\x82" "cd") ==
        words{"ab", "\xE4\xB8\xAD\xE6\x96\x87\xE3\x81\x82", "cd"});  // 中文あ
  // ASCII punctuation glued to the following ASCII letters: ".append", "(y".
  CHECK(split(pattern::deepseek, "x.append(y)") == words{"x", ".append", "(y", ")"});
  // Letters with marks stay together: e + U+0301.
  CHECK(split(pattern::deepseek, "cafe\xCC\x81 ok") == words{"cafe\xCC\x81", " ok"});
  CHECK(split(pattern::deepseek, "a !?\n\nb") == words{"a", " !?\n\n", "b"});
}

TEST_CASE("pre_tokenizer: literal split and unmatched runs") {
  CHECK(split(pattern::literal, "a--b--", "--") == words{"a", "--", "b", "--"});
  // NUL is in no class of the DeepSeek pattern: it is a piece between matches.
  CHECK(split(pattern::deepseek, std::string("a\0\0!", 4)) == words{"a", std::string("\0\0", 2), "!"});
  CHECK(split(pattern::qwen2, "") == words{});
}
