// data/utf8.hpp: strict decoding with maximal-subpart replacement, and encoding.
#include <string>

#include "lmrl/data/utf8.hpp"
#include "support/testing.hpp"

using namespace lmrl;

TEST_CASE("well-formed sequences of each length decode to their code point") {
  const std::string text = "a\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80";  // a é 中 😀
  const char32_t expected[] = {U'a', U'\u00E9', U'\u4E2D', U'\U0001F600'};
  std::size_t at = 0;
  for (char32_t cp : expected) {
    const utf8_char c = decode_utf8(text, at);
    CHECK(c.valid);
    CHECK(c.code_point == cp);
    at += c.length;
  }
  CHECK(at == text.size());
  CHECK(count_invalid_utf8(text) == 0);
}

TEST_CASE("ill-formed sequences give U+FFFD over their maximal subpart") {
  struct bad {
    std::string bytes;
    std::size_t length;
  };
  const bad cases[] = {
      {"\x80", 1},              // lone continuation byte
      {"\xC0\xAF", 1},          // overlong lead byte C0
      {"\xE0\x80\xAF", 1},      // overlong: E0 needs A0..BF next
      {"\xED\xA0\x80", 1},      // surrogate U+D800
      {"\xF4\x90\x80\x80", 1},  // above U+10FFFF
      {"\xF5", 1},              // never a lead byte
      {"\xE4\xB8", 2},          // truncated 3-byte sequence: its two bytes are one subpart
      {"\xF0\x9F\x98!", 3},     // 4-byte sequence cut by an ASCII byte
  };
  for (const auto& b : cases) {
    const utf8_char c = decode_utf8(b.bytes, 0);
    INFO("bytes of length ", b.bytes.size());
    CHECK(!c.valid);
    CHECK(c.code_point == 0xFFFD);
    CHECK(c.length == b.length);
  }
  CHECK(count_invalid_utf8("ok\x80\x80ok\xE4\xB8") == 3);
}

TEST_CASE("append_utf8 is the inverse of decode_utf8 on every scalar value") {
  std::string out;
  for (char32_t cp = 0; cp <= 0x10FFFF; cp += (cp < 0x800 ? 1 : 97)) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    out.clear();
    append_utf8(out, cp);
    const utf8_char c = decode_utf8(out, 0);
    REQUIRE(c.valid);
    REQUIRE(c.code_point == cp);
    REQUIRE(c.length == out.size());
  }
}
