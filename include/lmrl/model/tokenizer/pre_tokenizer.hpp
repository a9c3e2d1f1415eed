// The pre-tokenizer regexes of the byte-level BPE tokenizers, written as
// hand matchers (no regex engine) that give the same matches as the Rust
// `tokenizers` library (Oniguruma, leftmost-first alternation, backtracking).
//
// Supported patterns (tokenizer.json "Split" with behavior "Isolated"):
//   qwen2    (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   llama3   the same with \p{N}{1,3}
//   gpt2     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+   (ByteLevel use_regex)
//   digits3  \p{N}{1,3}                                                     (DeepSeek-V3, first split)
//   cjk      [\x{4e00}-\x{9fa5}\x{3040}-\x{309f}\x{30a0}-\x{30ff}]+         (DeepSeek-V3, second split)
//   deepseek [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+|
//            ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+                (DeepSeek-V3, third split)
//   literal  a fixed string ({"String": ...} patterns)
//
// "Isolated" splitting: every match is its own piece and so is every run of
// text between matches. A pattern sees one piece at a time: its end is the
// end of the string for (?!\S).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lmrl/model/tokenizer/unicode.hpp"

namespace lmrl::pretok {

enum class pattern { qwen2, llama3, gpt2, digits3, cjk, deepseek, literal };

// The regex strings as tokenizer.json spells them (after JSON unescaping).
inline constexpr std::string_view qwen2_regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view llama3_regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view gpt2_regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view digits3_regex = R"(\p{N}{1,3})";
inline constexpr std::string_view cjk_regex =
    "[\xE4\xB8\x80-\xE9\xBE\xA5\xE3\x81\x80-\xE3\x82\x9F\xE3\x82\xA0-\xE3\x83\xBF]+";
// DeepSeek-V3 writes \r and \n as the characters themselves in two places.
inline constexpr std::string_view deepseek_regex =
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
    "?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";

struct piece {
  std::size_t begin;
  std::size_t end;
};

namespace detail {

using unicode::decode_utf8;
using unicode::flags;

inline bool is_newline(char32_t c) { return c == '\r' || c == '\n'; }

// End of the run of characters from pos satisfying pred (at most max_count of them).
template <class Pred>
std::size_t run(std::string_view s, std::size_t pos, Pred pred, std::size_t max_count = SIZE_MAX) {
  std::size_t count = 0;
  while (pos < s.size() && count < max_count) {
    const auto d = decode_utf8(s, pos);
    if (!pred(d.cp)) break;
    pos += d.length;
    ++count;
  }
  return pos;
}

// The shared whitespace tail of the GPT-4 style patterns, at a white space
// character: \s*[\r\n]+ | \s+(?!\S) | \s+ (with_newline_rule false: only the last two).
inline std::size_t match_whitespace(std::string_view s, std::size_t pos, bool with_newline_rule) {
  std::size_t i = pos, last_start = pos, after_newline = 0;
  while (i < s.size()) {
    const auto d = decode_utf8(s, i);
    if (!(flags(d.cp) & unicode::white)) break;
    last_start = i;
    i += d.length;
    if (is_newline(d.cp)) after_newline = i;
  }
  // \s*[\r\n]+ : up to and including the last \r or \n of the run.
  if (with_newline_rule && after_newline != 0) return after_newline - pos;
  // \s+(?!\S) : the whole run at the end of the piece, else all but its last character.
  if (i == s.size() || last_start > pos) return (i == s.size() ? i : last_start) - pos;
  // \s+
  return i - pos;
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d) (case_insensitive) or the case-sensitive GPT-2 form.
inline std::size_t match_contraction(std::string_view s, std::size_t pos, bool case_insensitive) {
  if (s[pos] != '\'' || pos + 1 >= s.size()) return 0;
  const auto a = decode_utf8(s, pos + 1);
  auto is = [&](char32_t c, char lower) {
    return c == static_cast<char32_t>(lower) || (case_insensitive && c == static_cast<char32_t>(lower - 32));
  };
  // U+017F LATIN SMALL LETTER LONG S case-folds to 's' (Oniguruma applies Unicode folding).
  if (is(a.cp, 's') || (case_insensitive && a.cp == 0x17F) || is(a.cp, 't') || is(a.cp, 'm') || is(a.cp, 'd'))
    return 1 + a.length;
  const std::size_t next = pos + 1 + a.length;
  if (next >= s.size()) return 0;
  const auto b = decode_utf8(s, next);
  if ((is(a.cp, 'r') && is(b.cp, 'e')) || (is(a.cp, 'v') && is(b.cp, 'e')) || (is(a.cp, 'l') && is(b.cp, 'l')))
    return 1 + a.length + b.length;
  return 0;
}

inline std::size_t match_qwen2(std::string_view s, std::size_t pos, std::size_t max_digits) {
  using namespace unicode;
  if (std::size_t n = match_contraction(s, pos, true)) return n;
  const auto c = decode_utf8(s, pos);
  const std::uint8_t f = flags(c.cp);
  auto is_l = [](char32_t x) { return (flags(x) & letter) != 0; };
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (f & letter) return run(s, pos, is_l) - pos;
  if (!(f & number) && !is_newline(c.cp)) {
    const std::size_t e = run(s, pos + c.length, is_l);
    if (e > pos + c.length) return e - pos;
  }
  // \p{N} (or \p{N}{1,3})
  if (f & number) return run(s, pos, [](char32_t x) { return (flags(x) & number) != 0; }, max_digits) - pos;
  //  ?[^\s\p{L}\p{N}]+[\r\n]*
  auto is_other = [](char32_t x) { return (flags(x) & (white | letter | number)) == 0; };
  std::size_t start = pos;
  if (c.cp == ' ' && pos + 1 < s.size() && is_other(decode_utf8(s, pos + 1).cp)) start = pos + 1;
  if (start > pos || is_other(c.cp)) {
    const std::size_t e = run(s, start, is_other);
    return run(s, e, is_newline) - pos;
  }
  if (f & white) return match_whitespace(s, pos, true);
  return 0;
}

inline std::size_t match_gpt2(std::string_view s, std::size_t pos) {
  using namespace unicode;
  if (std::size_t n = match_contraction(s, pos, false)) return n;
  const auto c = decode_utf8(s, pos);
  //  ?\p{L}+ |  ?\p{N}+ |  ?[^\s\p{L}\p{N}]+
  std::size_t start = pos;
  std::uint8_t f = flags(c.cp);
  if (c.cp == ' ' && pos + 1 < s.size()) {
    const std::uint8_t g = flags(decode_utf8(s, pos + 1).cp);
    if (!(g & white)) {
      start = pos + 1;
      f = g;
    }
  }
  if (f & letter) return run(s, start, [](char32_t x) { return (flags(x) & letter) != 0; }) - pos;
  if (f & number) return run(s, start, [](char32_t x) { return (flags(x) & number) != 0; }) - pos;
  if (!(f & white)) return run(s, start, [](char32_t x) { return (flags(x) & (white | letter | number)) == 0; }) - pos;
  return match_whitespace(s, pos, false);
}

inline bool is_cjk(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FA5) || (c >= 0x3040 && c <= 0x309F) || (c >= 0x30A0 && c <= 0x30FF);
}

inline bool is_ascii_punct(char32_t c) {
  return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E);
}
inline bool is_ascii_alpha(char32_t c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }

inline std::size_t match_deepseek(std::string_view s, std::size_t pos) {
  using namespace unicode;
  const auto c = decode_utf8(s, pos);
  // [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+
  if (is_ascii_punct(c.cp) && pos + 1 < s.size() && is_ascii_alpha(static_cast<unsigned char>(s[pos + 1])))
    return run(s, pos + 1, is_ascii_alpha) - pos;
  // [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
  const std::uint8_t f = flags(c.cp);
  auto is_lm = [](char32_t x) { return (flags(x) & (letter | mark)) != 0; };
  if (!(f & (letter | punct | symbol)) && !is_newline(c.cp)) {
    const std::size_t e = run(s, pos + c.length, is_lm);
    if (e > pos + c.length) return e - pos;
  }
  if (f & (letter | mark)) return run(s, pos, is_lm) - pos;
  //  ?[\p{P}\p{S}]+[\r\n]*
  auto is_ps = [](char32_t x) { return (flags(x) & (punct | symbol)) != 0; };
  std::size_t start = pos;
  if (c.cp == ' ' && pos + 1 < s.size() && is_ps(decode_utf8(s, pos + 1).cp)) start = pos + 1;
  if (start > pos || (f & (punct | symbol))) return run(s, run(s, start, is_ps), is_newline) - pos;
  if (f & white) return match_whitespace(s, pos, true);
  return 0;
}

}  // namespace detail

// Length of the match of p at s[pos] (pos < s.size()), 0 when none.
inline std::size_t match(pattern p, std::string_view s, std::size_t pos, std::string_view literal = {}) {
  switch (p) {
    case pattern::qwen2: return detail::match_qwen2(s, pos, 1);
    case pattern::llama3: return detail::match_qwen2(s, pos, 3);
    case pattern::gpt2: return detail::match_gpt2(s, pos);
    case pattern::digits3:
      return detail::run(s, pos, [](char32_t x) { return (unicode::flags(x) & unicode::number) != 0; }, 3) - pos;
    case pattern::cjk: return detail::run(s, pos, detail::is_cjk) - pos;
    case pattern::deepseek: return detail::match_deepseek(s, pos);
    case pattern::literal: return !literal.empty() && s.substr(pos).starts_with(literal) ? literal.size() : 0;
  }
  return 0;
}

// Splits text[in.begin, in.end) into the matches of p and the runs between
// them ("Isolated"), appending the pieces (offsets into text) to out.
inline void split_isolated(pattern p, std::string_view text, piece in, std::vector<piece>& out,
                           std::string_view literal = {}) {
  const std::string_view s = text.substr(in.begin, in.end - in.begin);
  std::size_t gap = 0;
  for (std::size_t pos = 0; pos < s.size();) {
    const std::size_t n = match(p, s, pos, literal);
    if (n == 0) {
      pos += unicode::decode_utf8(s, pos).length;
      continue;
    }
    if (gap < pos) out.push_back({in.begin + gap, in.begin + pos});
    out.push_back({in.begin + pos, in.begin + pos + n});
    pos += n;
    gap = pos;
  }
  if (gap < s.size()) out.push_back({in.begin + gap, in.end});
}

}  // namespace lmrl::pretok
