// lmrl::json — a small, strict JSON reader (RFC 8259), no third-party library.
//
//   json::value doc = json::parse_file("tokenizer.json");
//   json::node root(doc, "tokenizer.json");             // a value with its source and path
//   const std::string& type = root.at("model").at("type").as_string();
//   // wrong type: "tokenizer.json: model.type: expected a string, got a number"
//
// What it accepts: exactly RFC 8259 JSON (one value, optional surrounding
// whitespace, an optional UTF-8 byte order mark). No comments, no trailing
// commas, no NaN/Infinity, no leading zeros, no control characters or invalid
// UTF-8 inside strings, no lone surrogates in \u escapes. Syntax errors say
// "<source>:<line>:<column>: ..." (line and column count from 1, the column in
// bytes). Objects keep their members in insertion order; a repeated key keeps
// both members and find() returns the last one (as Python's json and serde do).
//
// Numbers keep both a double and, when the literal is an integer that fits,
// its exact int64 (token ids, sizes). Nesting deeper than max_depth (512) is an
// error rather than a stack overflow.
#pragma once

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "lmrl/data/utf8.hpp"
#include "lmrl/error.hpp"

namespace lmrl::json {

class value;
using array = std::vector<value>;
using member = std::pair<std::string, value>;
using object = std::vector<member>;

enum class kind { null, boolean, number, string, array, object };

inline const char* kind_name(kind k) {
  switch (k) {
    case kind::null: return "null";
    case kind::boolean: return "a boolean";
    case kind::number: return "a number";
    case kind::string: return "a string";
    case kind::array: return "an array";
    case kind::object: return "an object";
  }
  return "?";
}

struct number {
  double real = 0;
  std::int64_t integer = 0;
  bool is_integer = false;  // the literal had no fraction/exponent and fits int64
};

// One JSON value. Accessors throw lmrl::error on a type mismatch; use json::node
// for messages that name the file and the path of the value.
class value {
 public:
  value() = default;
  value(std::nullptr_t) {}
  explicit value(bool b) : data_(b) {}
  explicit value(number n) : data_(n) {}
  explicit value(std::string s) : data_(std::move(s)) {}
  explicit value(array a) : data_(std::move(a)) {}
  explicit value(object o) : data_(std::move(o)) {}

  kind type() const { return static_cast<kind>(data_.index()); }
  bool is_null() const { return type() == kind::null; }
  bool is_bool() const { return type() == kind::boolean; }
  bool is_number() const { return type() == kind::number; }
  bool is_string() const { return type() == kind::string; }
  bool is_array() const { return type() == kind::array; }
  bool is_object() const { return type() == kind::object; }

  bool as_bool() const { return get<bool>(kind::boolean); }
  double as_double() const { return get<number>(kind::number).real; }
  const number& as_number() const { return get<number>(kind::number); }
  // The exact integer; throws when the number is not an integer that fits int64.
  std::int64_t as_int64() const {
    const number& n = get<number>(kind::number);
    if (!n.is_integer) detail::fail("json: expected an integer, got ", n.real);
    return n.integer;
  }
  const std::string& as_string() const { return get<std::string>(kind::string); }
  const array& as_array() const { return get<array>(kind::array); }
  const object& as_object() const { return get<object>(kind::object); }
  array& as_array() { return std::get<array>(data_); }
  object& as_object() { return std::get<object>(data_); }

  // Number of elements (array) or members (object); 0 for scalars.
  std::size_t size() const {
    if (is_array()) return std::get<array>(data_).size();
    if (is_object()) return std::get<object>(data_).size();
    return 0;
  }
  // Member lookup (linear; iterate as_object() for large objects). Null when
  // absent or when this is not an object. The last of repeated keys wins.
  const value* find(std::string_view key) const {
    if (!is_object()) return nullptr;
    const object& o = std::get<object>(data_);
    for (auto it = o.rbegin(); it != o.rend(); ++it)
      if (it->first == key) return &it->second;
    return nullptr;
  }

 private:
  template <class T>
  const T& get(kind k) const {
    if (type() != k) detail::fail("json: expected ", kind_name(k), ", got ", kind_name(type()));
    return std::get<T>(data_);
  }
  std::variant<std::nullptr_t, bool, number, std::string, array, object> data_;
};

// A value seen from the document root: carries the source name and the path
// ("model.merges[12]") so that type errors say where they are.
class node {
 public:
  node(const value& v, std::string source, std::string path = "")
      : v_(&v), source_(std::move(source)), path_(std::move(path)) {}

  const value& get() const { return *v_; }
  const std::string& path() const { return path_; }
  const std::string& source() const { return source_; }
  kind type() const { return v_->type(); }

  // Throws "<source>: <path>: <message...>".
  template <class... Parts>
  [[noreturn]] void fail(Parts&&... parts) const {
    detail::fail(source_, ": ", path_.empty() ? std::string("(root)") : path_, ": ",
                 std::forward<Parts>(parts)...);
  }
  void expect(kind k) const {
    if (v_->type() != k) fail("expected ", kind_name(k), ", got ", kind_name(v_->type()));
  }

  bool has(std::string_view key) const { return v_->find(key) != nullptr; }
  // Member that must exist.
  node at(std::string_view key) const {
    expect(kind::object);
    const value* m = v_->find(key);
    if (m == nullptr) fail("missing field \"", key, "\"");
    return child(*m, key);
  }
  // Member that may be absent or null: returns false then.
  bool maybe(std::string_view key, node& out) const {
    expect(kind::object);
    const value* m = v_->find(key);
    if (m == nullptr || m->is_null()) return false;
    out = child(*m, key);
    return true;
  }
  node operator[](std::size_t i) const {
    expect(kind::array);
    const array& a = v_->as_array();
    if (i >= a.size()) fail("index ", i, " out of range (size ", a.size(), ")");
    return node(a[i], source_, path_ + "[" + std::to_string(i) + "]");
  }
  std::size_t size() const { return v_->size(); }
  // Members of an object, each with its path.
  node member_value(const member& m) const { return child(m.second, m.first); }

  bool as_bool() const { expect(kind::boolean); return v_->as_bool(); }
  double as_double() const { expect(kind::number); return v_->as_double(); }
  std::int64_t as_int64() const {
    expect(kind::number);
    if (!v_->as_number().is_integer) fail("expected an integer, got ", v_->as_double());
    return v_->as_number().integer;
  }
  const std::string& as_string() const { expect(kind::string); return v_->as_string(); }
  const array& as_array() const { expect(kind::array); return v_->as_array(); }
  const object& as_object() const { expect(kind::object); return v_->as_object(); }

 private:
  node child(const value& v, std::string_view key) const {
    std::string p = path_;
    if (!p.empty()) p += '.';
    p += key;
    return node(v, source_, std::move(p));
  }
  const value* v_;
  std::string source_;
  std::string path_;
};

namespace detail {

class parser {
 public:
  static constexpr int max_depth = 512;

  parser(std::string_view text, std::string_view source) : s_(text), source_(source) {}

  value parse_document() {
    if (s_.size() >= 3 && static_cast<unsigned char>(s_[0]) == 0xEF &&
        static_cast<unsigned char>(s_[1]) == 0xBB && static_cast<unsigned char>(s_[2]) == 0xBF)
      pos_ = 3;
    skip_ws();
    value v = parse_value(0);
    skip_ws();
    if (pos_ != s_.size()) error("unexpected text after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void error_at(std::size_t at, std::string_view what) const {
    std::size_t line = 1, col = 1;
    for (std::size_t i = 0; i < at && i < s_.size(); ++i) {
      if (s_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    lmrl::detail::fail(source_, ":", line, ":", col, ": ", what);
  }
  [[noreturn]] void error(std::string_view what) const { error_at(pos_, what); }

  void skip_ws() {
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
        ++pos_;
      else
        break;
    }
  }

  value parse_value(int depth) {
    if (pos_ >= s_.size()) error("unexpected end of input, expected a value");
    switch (s_[pos_]) {
      case '{': return parse_object(depth);
      case '[': return parse_array(depth);
      case '"': return value(parse_string());
      case 't': literal("true"); return value(true);
      case 'f': literal("false"); return value(false);
      case 'n': literal("null"); return value(nullptr);
      default:
        if (s_[pos_] == '-' || (s_[pos_] >= '0' && s_[pos_] <= '9')) return value(parse_number());
        error(std::string("unexpected character '") + printable(s_[pos_]) + "', expected a value");
    }
  }

  static std::string printable(char c) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) return std::string(1, c);
    static const char* hex = "0123456789abcdef";
    return std::string("\\x") + hex[u >> 4] + hex[u & 15];
  }

  void literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) error("invalid literal, expected " + std::string(word));
    pos_ += word.size();
  }

  value parse_object(int depth) {
    if (depth >= max_depth) error("nesting deeper than 512 levels");
    ++pos_;  // '{'
    object members;
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return value(std::move(members));
    }
    for (;;) {
      skip_ws();
      if (pos_ >= s_.size()) error("unexpected end of input inside an object");
      if (s_[pos_] != '"') error("expected a string key in an object");
      std::string key = parse_string();
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != ':') error("expected ':' after an object key");
      ++pos_;
      skip_ws();
      members.emplace_back(std::move(key), parse_value(depth + 1));
      skip_ws();
      if (pos_ >= s_.size()) error("unexpected end of input inside an object");
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (s_[pos_] == '}') {
        ++pos_;
        return value(std::move(members));
      }
      error("expected ',' or '}' in an object");
    }
  }

  value parse_array(int depth) {
    if (depth >= max_depth) error("nesting deeper than 512 levels");
    ++pos_;  // '['
    array items;
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return value(std::move(items));
    }
    for (;;) {
      skip_ws();
      items.push_back(parse_value(depth + 1));
      skip_ws();
      if (pos_ >= s_.size()) error("unexpected end of input inside an array");
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (s_[pos_] == ']') {
        ++pos_;
        return value(std::move(items));
      }
      error("expected ',' or ']' in an array");
    }
  }

  number parse_number() {
    const std::size_t start = pos_;
    bool integral = true;
    if (s_[pos_] == '-') ++pos_;
    if (pos_ >= s_.size() || !is_digit(s_[pos_])) error("invalid number: expected a digit");
    if (s_[pos_] == '0') {
      ++pos_;
      if (pos_ < s_.size() && is_digit(s_[pos_])) error_at(start, "invalid number: leading zero");
    } else {
      while (pos_ < s_.size() && is_digit(s_[pos_])) ++pos_;
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      integral = false;
      ++pos_;
      if (pos_ >= s_.size() || !is_digit(s_[pos_])) error("invalid number: expected a digit after '.'");
      while (pos_ < s_.size() && is_digit(s_[pos_])) ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      integral = false;
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (pos_ >= s_.size() || !is_digit(s_[pos_])) error("invalid number: expected a digit in the exponent");
      while (pos_ < s_.size() && is_digit(s_[pos_])) ++pos_;
    }
    const char* first = s_.data() + start;
    const char* last = s_.data() + pos_;
    number n;
    if (integral) {
      auto [p, ec] = std::from_chars(first, last, n.integer);
      n.is_integer = ec == std::errc() && p == last;
    }
    if (n.is_integer) {
      n.real = static_cast<double>(n.integer);
    } else {
      auto [p, ec] = std::from_chars(first, last, n.real);
      if (ec == std::errc::result_out_of_range) error_at(start, "number out of the range of a double");
      if (ec != std::errc() || p != last) error_at(start, "invalid number");
    }
    return n;
  }

  static bool is_digit(char c) { return c >= '0' && c <= '9'; }

  unsigned hex4() {
    if (s_.size() - pos_ < 4) error("truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f')
        v |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        v |= static_cast<unsigned>(c - 'A' + 10);
      else
        error_at(pos_ - 1, "invalid hex digit in a \\u escape");
    }
    return v;
  }

  // Length of the valid UTF-8 sequence at pos_ (non-ASCII lead byte), or 0.
  std::size_t utf8_length() const {
    const utf8_char c = decode_utf8(s_, pos_);
    return c.valid ? c.length : 0;
  }

  std::string parse_string() {
    ++pos_;  // opening quote
    std::string out;
    for (;;) {
      // Copy the run of plain ASCII characters in one go (most of a tokenizer file).
      const std::size_t run = pos_;
      while (pos_ < s_.size()) {
        const auto c = static_cast<unsigned char>(s_[pos_]);
        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) break;
        ++pos_;
      }
      out.append(s_.data() + run, pos_ - run);
      if (pos_ >= s_.size()) error("unterminated string");
      const auto c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) error("control character " + printable(static_cast<char>(c)) + " inside a string (must be escaped)");
      if (c >= 0x80) {
        const std::size_t n = utf8_length();
        if (n == 0) error("invalid UTF-8 byte " + printable(static_cast<char>(c)) + " inside a string");
        out.append(s_.data() + pos_, n);
        pos_ += n;
        continue;
      }
      // backslash escape
      const std::size_t escape_at = pos_;
      ++pos_;
      if (pos_ >= s_.size()) error("unterminated escape");
      const char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          std::uint32_t cp = hex4();
          if (cp >= 0xDC00 && cp <= 0xDFFF) error_at(escape_at, "lone low surrogate in a \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s_.size() - pos_ < 6 || s_[pos_] != '\\' || s_[pos_ + 1] != 'u')
              error_at(escape_at, "high surrogate not followed by a \\u low surrogate");
            pos_ += 2;
            const std::uint32_t low = hex4();
            if (low < 0xDC00 || low > 0xDFFF)
              error_at(escape_at, "high surrogate not followed by a low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default: error_at(escape_at, "invalid escape \\" + printable(e));
      }
    }
  }

  std::string_view s_;
  std::string_view source_;
  std::size_t pos_ = 0;
};

}  // namespace detail

// A double as text that reads back to the same double (17 significant digits).
inline std::string number_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// Appends `s` as a JSON string literal: '"' and '\\' escaped, newline as \n and
// the other control bytes as \u00XX, so that the result always parses back to
// `s`. With escape_non_ascii, DEL and every byte >= 0x80 are written as \u00XX
// too: the line stays ASCII and valid JSON even when `s` is not valid UTF-8
// (text a model generated), at the price of reading back bytes >= 0x80 as the
// code points U+0080..U+00FF.
inline void append_string(std::string& out, std::string_view s, bool escape_non_ascii = false) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (u < 0x20 || (escape_non_ascii && u >= 0x7f)) {
      out += "\\u00";
      out += hex[u >> 4];
      out += hex[u & 15];
    } else {
      out += c;
    }
  }
  out += '"';
}

inline std::string quoted(std::string_view s, bool escape_non_ascii = false) {
  std::string out;
  append_string(out, s, escape_non_ascii);
  return out;
}

// Parses one JSON document. source names the text in error messages.
inline value parse(std::string_view text, std::string_view source = "json") {
  return detail::parser(text, source).parse_document();
}

// Reads and parses a file; errors name the path.
inline value parse_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) lmrl::detail::fail("json: cannot open ", path);
  std::string text;
  in.seekg(0, std::ios::end);
  const auto size = in.tellg();
  if (size < 0) lmrl::detail::fail("json: cannot read ", path);
  text.resize(static_cast<std::size_t>(size));
  in.seekg(0, std::ios::beg);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (!in) lmrl::detail::fail("json: cannot read ", path);
  return parse(text, path);
}

}  // namespace lmrl::json
