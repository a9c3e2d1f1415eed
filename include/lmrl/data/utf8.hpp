// UTF-8 decoding and encoding, strict as Unicode's Table 3-7 defines
// well-formed UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
// The JSON reader, the tokenizers and the language reward all read text
// through these two functions.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace lmrl {

// One decoded code point: its value, how many bytes it (or the invalid
// subpart) took, and whether it was well-formed.
struct utf8_char {
  char32_t code_point = 0;
  std::size_t length = 1;
  bool valid = true;
};

// Decodes the code point starting at text[at] (at < text.size()). An
// ill-formed sequence gives U+FFFD, valid = false, and the length of its
// maximal subpart (Unicode's "substitution of maximal subparts"), so a decoder
// that steps by length replaces each bad stretch as browsers and Python do.
inline utf8_char decode_utf8(std::string_view text, std::size_t at) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(at);
  if (lead < 0x80) return {lead, 1, true};
  std::size_t need = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // range of the first continuation byte (Unicode Table 3-7)
  char32_t cp = 0;
  if (lead >= 0xC2 && lead <= 0xDF) {
    need = 1;
    cp = lead & 0x1F;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    need = 2;
    cp = lead & 0x0F;
    if (lead == 0xE0) lo = 0xA0;  // overlong
    if (lead == 0xED) hi = 0x9F;  // surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    need = 3;
    cp = lead & 0x07;
    if (lead == 0xF0) lo = 0x90;  // overlong
    if (lead == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return {0xFFFD, 1, false};  // continuation byte, C0/C1 (overlong), F5..FF
  }
  for (std::size_t k = 1; k <= need; ++k) {
    if (at + k >= text.size()) return {0xFFFD, k, false};  // truncated
    const unsigned char c = byte(at + k);
    const unsigned char low = k == 1 ? lo : 0x80, high = k == 1 ? hi : 0xBF;
    if (c < low || c > high) return {0xFFFD, k, false};
    cp = (cp << 6) | (c & 0x3F);
  }
  return {cp, need + 1, true};
}

// Number of maximal invalid subparts in the text (0 for valid UTF-8).
inline std::size_t count_invalid_utf8(std::string_view text) {
  std::size_t invalid = 0;
  for (std::size_t i = 0; i < text.size();) {
    const utf8_char c = decode_utf8(text, i);
    invalid += !c.valid;
    i += c.length;
  }
  return invalid;
}

// Appends the UTF-8 encoding of a scalar value (cp <= U+10FFFF).
inline void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

}  // namespace lmrl
