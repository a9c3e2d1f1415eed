// Unicode for the tokenizers: lenient UTF-8 decoding, the character classes
// the pre-tokenizer regexes use (\p{L}, \p{M}, \p{N}, \p{P}, \p{S}, \s, \w) and
// NFC normalization, from the tables that tools/make_unicode_tables.py writes.
//
// Invalid UTF-8 is not an error here: each byte that does not start a valid
// sequence decodes to its own pseudo code point invalid_base + byte (outside
// Unicode), classed as a symbol (as U+FFFD is) and kept byte-exact by NFC, so
// a byte-level tokenizer round-trips any bytes.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lmrl/data/utf8.hpp"
#include "lmrl/model/tokenizer/unicode_tables.hpp"

namespace lmrl::unicode {

enum flag : std::uint8_t {
  letter = 1,      // \p{L}
  mark = 2,        // \p{M}
  number = 4,      // \p{N}
  punct = 8,       // \p{P}
  symbol = 16,     // \p{S}
  white = 32,      // \s as Oniguruma's Unicode \s: U+0009-000D, U+0085, Zs, Zl, Zp
  word = 64,       // \w (approximation of Rust regex's: L, M, Nd, Nl, Pc, ZWNJ, ZWJ)
  nfc_check = 128  // NFC may change text containing this code point
};

inline constexpr char32_t invalid_base = 0x110000;  // + byte value, for invalid UTF-8 bytes

struct decoded {
  char32_t cp;
  std::uint32_t length;  // bytes consumed, >= 1
};

// Decodes the code point at s[pos] (pos < s.size()); an invalid byte is its own
// pseudo code point, so any bytes survive a round trip.
inline decoded decode_utf8(std::string_view s, std::size_t pos) {
  const utf8_char c = lmrl::decode_utf8(s, pos);
  if (c.valid) return {c.code_point, static_cast<std::uint32_t>(c.length)};
  return {invalid_base + static_cast<unsigned char>(s[pos]), 1};
}

// Appends the UTF-8 of cp (an invalid_base pseudo code point as its raw byte).
inline void append_utf8(std::string& out, char32_t cp) {
  if (cp >= invalid_base)
    out += static_cast<char>(cp - invalid_base);
  else
    lmrl::append_utf8(out, cp);
}

namespace detail {

// Value of a step table (first << 8 | value) at cp.
template <std::size_t N>
std::uint8_t step_lookup(const std::uint32_t (&table)[N], char32_t cp) {
  const std::uint32_t key = (static_cast<std::uint32_t>(cp) << 8) | 0xFF;
  const auto it = std::upper_bound(std::begin(table), std::end(table), key);
  return it == std::begin(table) ? 0 : static_cast<std::uint8_t>(*(it - 1) & 0xFF);
}

// The flags of the Basic Multilingual Plane, expanded once (64 KiB) so that
// the common case is one load.
inline const std::array<std::uint8_t, 0x10000>& bmp_flags() {
  static const std::array<std::uint8_t, 0x10000> table = [] {
    std::array<std::uint8_t, 0x10000> t{};
    constexpr std::size_t n = std::size(tables::char_flags);
    for (std::size_t k = 0; k < n; ++k) {
      const std::uint32_t first = tables::char_flags[k] >> 8;
      const std::uint32_t last = k + 1 < n ? (tables::char_flags[k + 1] >> 8) : 0x110000;
      for (std::uint32_t cp = first; cp < last && cp < 0x10000; ++cp)
        t[cp] = static_cast<std::uint8_t>(tables::char_flags[k] & 0xFF);
    }
    return t;
  }();
  return table;
}

}  // namespace detail

inline std::uint8_t flags(char32_t cp) {
  if (cp < 0x10000) return detail::bmp_flags()[cp];
  if (cp >= invalid_base) return symbol;
  return detail::step_lookup(tables::char_flags, cp);
}

inline bool is_letter(char32_t cp) { return flags(cp) & letter; }
inline bool is_number(char32_t cp) { return flags(cp) & number; }
inline bool is_white(char32_t cp) { return flags(cp) & white; }

inline std::uint8_t combining_class(char32_t cp) {
  if (cp < 0x300 || cp >= invalid_base) return 0;
  return detail::step_lookup(tables::ccc, cp);
}

namespace detail {

constexpr char32_t hangul_s = 0xAC00, hangul_l = 0x1100, hangul_v = 0x1161, hangul_t = 0x11A7;
constexpr char32_t hangul_l_count = 19, hangul_v_count = 21, hangul_t_count = 28;
constexpr char32_t hangul_n = hangul_v_count * hangul_t_count, hangul_s_count = hangul_l_count * hangul_n;

inline void decompose(char32_t cp, std::vector<char32_t>& out) {
  if (cp >= hangul_s && cp < hangul_s + hangul_s_count) {
    const char32_t s = cp - hangul_s;
    out.push_back(hangul_l + s / hangul_n);
    out.push_back(hangul_v + (s % hangul_n) / hangul_t_count);
    if (s % hangul_t_count != 0) out.push_back(hangul_t + s % hangul_t_count);
    return;
  }
  const auto* first = std::begin(tables::decomp_index);
  const auto* last = std::end(tables::decomp_index);
  const auto* it = std::lower_bound(first, last, cp, [](const tables::decomposition& d, char32_t c) {
    return d.code_point < c;
  });
  if (it != last && it->code_point == cp) {
    for (std::uint32_t k = 0; k < it->length; ++k) out.push_back(tables::decomp_data[it->offset + k]);
  } else {
    out.push_back(cp);
  }
}

// The primary composite of (a, b), or 0.
inline char32_t compose(char32_t a, char32_t b) {
  if (a >= hangul_l && a < hangul_l + hangul_l_count && b >= hangul_v && b < hangul_v + hangul_v_count)
    return hangul_s + ((a - hangul_l) * hangul_v_count + (b - hangul_v)) * hangul_t_count;
  if (a >= hangul_s && a < hangul_s + hangul_s_count && (a - hangul_s) % hangul_t_count == 0 && b > hangul_t &&
      b < hangul_t + hangul_t_count)
    return a + (b - hangul_t);
  if (a >= 0x110000 || b >= 0x110000) return 0;
  const std::uint64_t key = (static_cast<std::uint64_t>(a) << 21) | b;
  const auto* first = std::begin(tables::compose);
  const auto* last = std::end(tables::compose);
  const auto* it =
      std::lower_bound(first, last, key, [](const tables::composition& c, std::uint64_t k) { return c.pair < k; });
  return it != last && it->pair == key ? it->composite : 0;
}

}  // namespace detail

// True when NFC leaves s unchanged for certain (no code point that NFC could
// touch); false means "maybe".
inline bool nfc_quick_check(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {  // ASCII: never touched
      ++i;
      continue;
    }
    const decoded d = decode_utf8(s, i);
    if (flags(d.cp) & nfc_check) return false;
    i += d.length;
  }
  return true;
}

// Unicode Normalization Form C (canonical decomposition, canonical ordering,
// canonical composition), appended to out.
inline void nfc(std::string_view s, std::string& out) {
  if (nfc_quick_check(s)) {
    out.append(s);
    return;
  }
  std::vector<char32_t> d;
  d.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const decoded c = decode_utf8(s, i);
    i += c.length;
    if (c.cp >= invalid_base)
      d.push_back(c.cp);
    else
      detail::decompose(c.cp, d);
  }
  // Canonical ordering: a stable sort by combining class of each run of non-starters.
  for (std::size_t i = 0; i < d.size();) {
    if (combining_class(d[i]) == 0) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < d.size() && combining_class(d[j]) != 0) ++j;
    std::stable_sort(d.begin() + static_cast<std::ptrdiff_t>(i), d.begin() + static_cast<std::ptrdiff_t>(j),
                     [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
    i = j;
  }
  // Canonical composition: a character composes with the last starter unless
  // a character between them has class 0 or a class >= its own (blocked).
  std::vector<char32_t> r;
  r.reserve(d.size());
  std::size_t starter = SIZE_MAX;
  int between = -1;  // class of the last character kept after the starter; -1: none
  for (char32_t c : d) {
    const int cc = combining_class(c);
    if (starter != SIZE_MAX && !(between != -1 && (between == 0 || between >= cc))) {
      const char32_t composite = detail::compose(r[starter], c);
      if (composite != 0) {
        r[starter] = composite;
        continue;
      }
    }
    if (cc == 0) {
      starter = r.size();
      between = -1;
    } else {
      between = cc;
    }
    r.push_back(c);
  }
  for (char32_t c : r) append_utf8(out, c);
}

inline std::string nfc(std::string_view s) {
  std::string out;
  nfc(s, out);
  return out;
}

}  // namespace lmrl::unicode
