// Text templates with named placeholders: "What is {expression}?".
//
// A placeholder is {name} with name made of letters, digits and '_'; "{{" and
// "}}" stand for literal braces. A placeholder the caller gives no value for is
// an lmrl::error (a typo in a template must not silently reach a prompt), and so
// is a value the template never uses when the caller says it is required.
#pragma once

#include <cctype>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lmrl/error.hpp"

namespace lmrl::data {

using placeholder_values = std::vector<std::pair<std::string_view, std::string_view>>;

// Names of the placeholders in a template, in order of appearance (repeats kept).
inline std::vector<std::string> placeholder_names(std::string_view text, const char* function = "placeholder_names") {
  std::vector<std::string> names;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '{' && i + 1 < text.size() && text[i + 1] == '{') {
      ++i;
    } else if (c == '}' && i + 1 < text.size() && text[i + 1] == '}') {
      ++i;
    } else if (c == '{') {
      const std::size_t close = text.find('}', i + 1);
      if (close == std::string_view::npos)
        lmrl::detail::fail(function, ": template has an unclosed '{' at character ", i, ": \"", text, "\"");
      const std::string_view name = text.substr(i + 1, close - i - 1);
      bool valid = !name.empty();
      for (const char n : name) valid = valid && (std::isalnum(static_cast<unsigned char>(n)) || n == '_');
      if (!valid)
        lmrl::detail::fail(function, ": template has a bad placeholder name \"{", name, "}\" at character ", i,
                     " (use letters, digits and '_'; write {{ and }} for literal braces)");
      names.emplace_back(name);
      i = close;
    } else if (c == '}') {
      lmrl::detail::fail(function, ": template has a stray '}' at character ", i,
                   " (write }} for a literal brace): \"", text, "\"");
    }
  }
  return names;
}

// Requires that the template uses each of `names` at least once.
inline void require_placeholders(std::string_view text, std::initializer_list<std::string_view> names,
                                 const char* function) {
  const auto used = placeholder_names(text, function);
  for (const auto name : names) {
    bool found = false;
    for (const auto& u : used) found = found || u == name;
    if (!found) lmrl::detail::fail(function, ": template has no {", name, "} placeholder: \"", text, "\"");
  }
}

// Replaces every {name} with its value.
inline std::string fill_placeholders(std::string_view text, const placeholder_values& values,
                                     const char* function = "fill_placeholders") {
  placeholder_names(text, function);  // validates the whole template first
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if ((c == '{' || c == '}') && i + 1 < text.size() && text[i + 1] == c) {
      out += c;
      ++i;
    } else if (c == '{') {
      const std::size_t close = text.find('}', i + 1);
      const std::string_view name = text.substr(i + 1, close - i - 1);
      const std::string_view* value = nullptr;
      for (const auto& [key, v] : values)
        if (key == name) value = &v;
      if (value == nullptr) lmrl::detail::fail(function, ": no value for placeholder {", name, "} in \"", text, "\"");
      out += *value;
      i = close;
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace lmrl::data
