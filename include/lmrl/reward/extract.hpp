// Answer extraction: find the final answer in a completion.
//
// Each extractor returns std::nullopt when the text holds no answer of its
// kind and a (possibly empty) string when it does: "<answer></answer>" is an
// empty answer, "no tag at all" is no answer. Malformed text is never an
// error, it is "no answer". The rules follow the open R1 reproductions and
// verl's reward_score modules; docs/rewards.md lists where lmrl differs.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace lmrl {

namespace detail {

inline bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

inline std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// Index of the '}' closing the '{' at s[open], counting raw braces as verl's
// last_boxed_only_string does; npos when the braces never balance.
inline std::size_t matching_brace(std::string_view s, std::size_t open) {
  int depth = 0;
  for (std::size_t i = open; i < s.size(); ++i) {
    if (s[i] == '{') ++depth;
    if (s[i] == '}' && --depth == 0) return i;
  }
  return std::string_view::npos;
}

// Last position of needle in s before `end` (npos if none).
inline std::size_t rfind_before(std::string_view s, std::string_view needle, std::size_t end) {
  if (end < needle.size()) return std::string_view::npos;
  return s.substr(0, end).rfind(needle);
}

}  // namespace detail

// Content of the last <answer>...</answer> pair, whitespace-trimmed: the last
// "</answer>" and the last "<answer>" before it. An opening tag without a
// closing one is malformed: no answer.
inline std::optional<std::string> extract_answer_tag(std::string_view text) {
  constexpr std::string_view open = "<answer>", close = "</answer>";
  const std::size_t end = text.rfind(close);
  if (end == std::string_view::npos) return std::nullopt;
  const std::size_t begin = detail::rfind_before(text, open, end);
  if (begin == std::string_view::npos) return std::nullopt;
  return std::string(detail::trim(text.substr(begin + open.size(), end - begin - open.size())));
}

// Content of the last \boxed{...} (or \fbox{...}, whichever comes last), with
// nested braces: "\boxed{\frac{1}{2}}" gives "\frac{1}{2}". The brace-less
// form "\boxed 5" (Hendrycks MATH / verl) gives the text up to the next '$' or
// newline. Unbalanced braces, or anything else after the keyword, give no
// answer. The content is whitespace-trimmed; "\boxed{}" is an empty answer.
inline std::optional<std::string> extract_boxed(std::string_view text) {
  const std::size_t boxed = text.rfind("\\boxed");
  const std::size_t fbox = text.rfind("\\fbox");
  std::size_t at = boxed;
  std::size_t skip = 6;
  if (boxed == std::string_view::npos || (fbox != std::string_view::npos && fbox > boxed)) {
    at = fbox;
    skip = 5;
  }
  if (at == std::string_view::npos) return std::nullopt;
  std::size_t i = at + skip;
  if (i < text.size() && text[i] == '{') {
    const std::size_t close = detail::matching_brace(text, i);
    if (close == std::string_view::npos) return std::nullopt;
    return std::string(detail::trim(text.substr(i + 1, close - i - 1)));
  }
  if (i < text.size() && text[i] == ' ') {
    while (i < text.size() && text[i] == ' ') ++i;
    if (i < text.size() && text[i] == '{') {  // "\boxed {x}" is \boxed{x}
      const std::size_t close = detail::matching_brace(text, i);
      if (close == std::string_view::npos) return std::nullopt;
      return std::string(detail::trim(text.substr(i + 1, close - i - 1)));
    }
    std::size_t end = i;
    while (end < text.size() && text[end] != '$' && text[end] != '\n') ++end;
    return std::string(detail::trim(text.substr(i, end - i)));
  }
  return std::nullopt;
}

// GSM8K's final-answer line, as verl's gsm8k.extract_solution(method="strict"):
// the last match of the regex "#### (-?[0-9.,]+)", with the commas removed.
// ("#### 1,234" gives "1234"; "####42" without the space is no answer.)
inline std::optional<std::string> extract_gsm8k(std::string_view text) {
  constexpr std::string_view marker = "#### ";
  std::optional<std::string> last;
  auto in_class = [](char c) { return detail::is_digit(c) || c == '.' || c == ','; };
  for (std::size_t at = text.find(marker); at != std::string_view::npos; at = text.find(marker, at + 1)) {
    std::size_t i = at + marker.size();
    std::string answer;
    if (i < text.size() && text[i] == '-' && i + 1 < text.size() && in_class(text[i + 1])) answer += text[i++];
    const std::size_t start = i;
    while (i < text.size() && in_class(text[i])) {
      if (text[i] != ',') answer += text[i];
      ++i;
    }
    if (i > start) last = std::move(answer);
  }
  return last;
}

// The last number in the text (verl's gsm8k "flexible" method, made stricter):
// the last run matching -?[0-9.,]+ that holds a digit, with trailing '.' and
// ',' dropped and thousands commas removed ("costs $1,234." gives "1234").
inline std::optional<std::string> extract_last_number(std::string_view text) {
  auto in_class = [](char c) { return detail::is_digit(c) || c == '.' || c == ','; };
  std::optional<std::string_view> last;
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t start = i;
    if (text[i] == '-' && i + 1 < text.size() && in_class(text[i + 1])) ++i;
    if (i < text.size() && in_class(text[i])) {
      bool digit = false;
      while (i < text.size() && in_class(text[i])) digit |= detail::is_digit(text[i++]);
      if (digit) last = text.substr(start, i - start);
    } else {
      i = start + 1;
    }
  }
  if (!last) return std::nullopt;
  std::string_view token = *last;
  while (!token.empty() && (token.back() == '.' || token.back() == ',')) token.remove_suffix(1);
  std::string answer;
  for (char c : token)
    if (c != ',') answer += c;
  return answer;
}

// Where accuracy rules look for the answer.
enum class answer_source {
  automatic,    // <answer> tag (its \boxed if it holds one), else last \boxed, else "#### n"
  answer_tag,   // extract_answer_tag only
  boxed,        // extract_boxed only
  gsm8k,        // extract_gsm8k only
  last_number,  // extract_last_number only (lenient: any number in the text counts)
};

inline std::optional<std::string> extract_answer(std::string_view text,
                                                 answer_source source = answer_source::automatic) {
  switch (source) {
    case answer_source::answer_tag: return extract_answer_tag(text);
    case answer_source::boxed: return extract_boxed(text);
    case answer_source::gsm8k: return extract_gsm8k(text);
    case answer_source::last_number: return extract_last_number(text);
    case answer_source::automatic: break;
  }
  if (auto tagged = extract_answer_tag(text)) {
    if (auto inner = extract_boxed(*tagged)) return inner;
    return tagged;
  }
  if (auto boxed = extract_boxed(text)) return boxed;
  return extract_gsm8k(text);
}

}  // namespace lmrl
