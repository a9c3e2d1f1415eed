// Language consistency (DeepSeek-R1 §2.3.3): the share of the completion's
// words written in the prompt's dominant script.
//
// Text is decoded as strict UTF-8 (overlong forms, surrogates, code points
// above U+10FFFF, stray continuation bytes and truncated sequences are
// invalid; each maximal invalid subpart counts once, as the Unicode standard
// recommends for replacement). Each code point gets a script from its Unicode
// block. A word is a maximal run of letters of one script (combining marks
// continue a word; digits, punctuation, symbols and spaces separate words);
// Han and kana are written without spaces, so each Han or kana character is a
// word of its own. By default Han, kana and Hangul form one "CJK" group
// (merge_cjk), so a Japanese prompt mixing kanji and kana has one dominant
// script; merge_cjk = false keeps them apart.
//
// reward = (completion words in the prompt's dominant script) / (completion words).
// Invalid UTF-8 in the prompt or the completion gives reward 0 and is counted
// in the report; a completion without words gives 0; a prompt without words
// gives NaN (no target language: the rule abstains).
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "lmrl/data/utf8.hpp"
#include "lmrl/reward/rule.hpp"

namespace lmrl {

enum class script : std::uint8_t {
  none,  // not a letter: digits, punctuation, symbols, spaces, emoji
  latin,
  cyrillic,
  greek,
  arabic,
  hebrew,
  devanagari,
  thai,
  han,
  kana,    // hiragana and katakana
  hangul,
  other,   // a letter of any other script
  count_,
};

inline constexpr std::size_t script_count = static_cast<std::size_t>(script::count_);

inline const char* script_name(script s) {
  constexpr const char* names[] = {"none", "latin", "cyrillic", "greek", "arabic", "hebrew", "devanagari",
                                   "thai", "han",   "kana",     "hangul", "other"};
  return s < script::count_ ? names[static_cast<std::size_t>(s)] : "?";
}

namespace detail {
inline bool in(char32_t c, char32_t lo, char32_t hi) { return c >= lo && c <= hi; }

// Combining marks continue the word of the letter they follow.
inline bool is_combining_mark(char32_t c) {
  return in(c, 0x0300, 0x036F) || in(c, 0x1AB0, 0x1AFF) || in(c, 0x1DC0, 0x1DFF) || in(c, 0x20D0, 0x20FF) ||
         in(c, 0xFE20, 0xFE2F);
}
}  // namespace detail

// The script of a code point, from its Unicode block.
inline script script_of(char32_t c) {
  using detail::in;
  if (c < 0x80) return ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ? script::latin : script::none;
  if (in(c, 0x80, 0xBF) || c == 0xD7 || c == 0xF7) return script::none;
  if (in(c, 0xC0, 0x24F) || in(c, 0x250, 0x2AF) || in(c, 0x1E00, 0x1EFF) || in(c, 0x2C60, 0x2C7F) ||
      in(c, 0xA720, 0xA7FF) || in(c, 0xFF21, 0xFF3A) || in(c, 0xFF41, 0xFF5A))
    return script::latin;
  if (in(c, 0x2B0, 0x36F)) return script::none;  // modifier letters, combining marks (handled by the caller)
  if (in(c, 0x370, 0x3FF) || in(c, 0x1F00, 0x1FFF)) return script::greek;
  if (in(c, 0x400, 0x52F) || in(c, 0x1C80, 0x1C8F) || in(c, 0x2DE0, 0x2DFF) || in(c, 0xA640, 0xA69F))
    return script::cyrillic;
  if (in(c, 0x590, 0x5FF) || in(c, 0xFB1D, 0xFB4F)) return script::hebrew;
  if (in(c, 0x600, 0x6FF) || in(c, 0x750, 0x77F) || in(c, 0x8A0, 0x8FF) || in(c, 0xFB50, 0xFDFF) ||
      in(c, 0xFE70, 0xFEFF)) {
    if (in(c, 0x660, 0x669) || in(c, 0x6F0, 0x6F9) || in(c, 0x60C, 0x60D) || c == 0x61F || c == 0x6D4)
      return script::none;  // Arabic digits and punctuation
    return script::arabic;
  }
  if (in(c, 0x900, 0x97F) || in(c, 0xA8E0, 0xA8FF)) {
    if (in(c, 0x964, 0x96F)) return script::none;  // dandas and digits
    return script::devanagari;
  }
  if (in(c, 0xE00, 0xE7F)) {
    if (in(c, 0xE50, 0xE59)) return script::none;  // Thai digits
    return script::thai;
  }
  if (in(c, 0x3040, 0x309F) || in(c, 0x30A0, 0x30FF) || in(c, 0x31F0, 0x31FF) || in(c, 0xFF66, 0xFF9F)) {
    if (c == 0x30FB) return script::none;  // katakana middle dot
    return script::kana;
  }
  if (in(c, 0xAC00, 0xD7AF) || in(c, 0x1100, 0x11FF) || in(c, 0x3130, 0x318F) || in(c, 0xA960, 0xA97F) ||
      in(c, 0xD7B0, 0xD7FF))
    return script::hangul;
  if (in(c, 0x4E00, 0x9FFF) || in(c, 0x3400, 0x4DBF) || in(c, 0xF900, 0xFAFF) || in(c, 0x20000, 0x3134F) ||
      c == 0x3005 || c == 0x3007)
    return script::han;
  // Punctuation, symbols, CJK punctuation, fullwidth forms, emoji, private use.
  if (in(c, 0x2000, 0x2BFF) || in(c, 0x3000, 0x303F) || in(c, 0xFF00, 0xFF20) || in(c, 0xFF3B, 0xFF40) ||
      in(c, 0xFF5B, 0xFF65) || in(c, 0xFE10, 0xFE1F) || in(c, 0xFE30, 0xFE6F) || in(c, 0x1F000, 0x1FAFF) ||
      in(c, 0xE000, 0xF8FF) || in(c, 0xF0000, 0x10FFFF) || c == 0xFEFF || c == 0xFFFD)
    return script::none;
  return script::other;
}

struct language_options {
  bool merge_cjk = true;    // Han, kana and Hangul count as one script (reported as han)
  bool think_only = false;  // score only the reasoning: the text before "</think>" (R1 scores the CoT)
};

// Words per script in a text, and the invalid UTF-8 subparts met on the way.
// The four R1 tags <think>, </think>, <answer>, </answer> are skipped.
struct script_words {
  std::array<std::size_t, script_count> words{};
  std::size_t total = 0;
  std::size_t invalid_sequences = 0;

  // The script with most words (ties: the first in enum order); none if no words.
  script dominant() const {
    std::size_t best = 0;
    script s = script::none;
    for (std::size_t k = 1; k < script_count; ++k)
      if (words[k] > best) {
        best = words[k];
        s = static_cast<script>(k);
      }
    return s;
  }
};

inline script_words count_words(std::string_view text, bool merge_cjk = true) {
  script_words out;
  script current = script::none;  // script of the word being read
  auto close_word = [&] {
    if (current != script::none) {
      ++out.words[static_cast<std::size_t>(current)];
      ++out.total;
    }
    current = script::none;
  };
  for (std::size_t i = 0; i < text.size();) {
    if (text[i] == '<') {
      bool tag = false;
      for (std::string_view t : {"<think>", "</think>", "<answer>", "</answer>"})
        if (text.substr(i, t.size()) == t) {
          close_word();
          i += t.size();
          tag = true;
          break;
        }
      if (tag) continue;
    }
    const utf8_char c = decode_utf8(text, i);
    i += c.length;
    if (!c.valid) {
      ++out.invalid_sequences;
      close_word();
      continue;
    }
    if (detail::is_combining_mark(c.code_point)) continue;  // continues the current word (or nothing)
    script s = script_of(c.code_point);
    if (merge_cjk && (s == script::kana || s == script::hangul)) s = script::han;
    if (s == script::none) {
      close_word();
    } else if (s == script::han || s == script::kana) {
      close_word();  // one character, one word
      current = s;
      close_word();
    } else if (s != current) {
      close_word();
      current = s;
    }
  }
  close_word();
  return out;
}

struct language_report {
  double reward = 0;
  script target = script::none;       // the prompt's dominant script
  std::size_t words = 0;              // completion words
  std::size_t matching_words = 0;     // completion words in the target script
  std::size_t invalid_sequences = 0;  // invalid UTF-8 subparts in prompt and completion
};

inline language_report language_consistency_report(std::string_view prompt, std::string_view completion,
                                                   const language_options& options = {}) {
  if (options.think_only) {
    const std::size_t end = completion.find("</think>");
    if (end != std::string_view::npos) completion = completion.substr(0, end);
  }
  const script_words p = count_words(prompt, options.merge_cjk);
  const script_words c = count_words(completion, options.merge_cjk);
  language_report r;
  r.target = p.dominant();
  r.words = c.total;
  r.matching_words = r.target == script::none ? 0 : c.words[static_cast<std::size_t>(r.target)];
  r.invalid_sequences = p.invalid_sequences + c.invalid_sequences;
  if (r.invalid_sequences > 0)
    r.reward = 0;
  else if (r.target == script::none)
    r.reward = std::nan("");
  else
    r.reward = c.total == 0 ? 0.0 : static_cast<double>(r.matching_words) / static_cast<double>(c.total);
  return r;
}

struct language_consistency {
  language_options options{};
  reward_outcome evaluate(const reward_context& ctx) const {
    const language_report r = language_consistency_report(ctx.prompt, ctx.completion, options);
    if (r.invalid_sequences > 0) return {0.0, "invalid UTF-8"};
    if (r.target == script::none) return {r.reward, "prompt has no words"};
    if (r.words == 0) return {0.0, "completion has no words"};
    return {r.reward, r.matching_words == r.words ? "consistent" : "mixed languages"};
  }
  double operator()(const reward_context& ctx) const { return evaluate(ctx).value; }
};

}  // namespace lmrl
