// Unicode for the tokenizers: lenient UTF-8 decoding, character classes, NFC.
#include "lmrl/model/tokenizer/unicode.hpp"

#include <string>

#include "support/testing.hpp"

namespace u = lmrl::unicode;

TEST_CASE("unicode: UTF-8 decoding, invalid bytes as pseudo code points") {
  CHECK(u::decode_utf8("A", 0).cp == U'A');
  CHECK(u::decode_utf8("\xC3\xA9", 0).cp == 0xE9);
  CHECK(u::decode_utf8("\xE4\xB8\xAD", 0).length == 3);
  CHECK(u::decode_utf8("\xF0\x9F\x98\x80", 0).cp == 0x1F600);
  // A lone continuation byte, a truncated sequence, an overlong form, a surrogate: one byte each.
  for (const char* bad : {"\x80", "\xE4\xB8", "\xC0\xAF", "\xED\xA0\x80"}) {
    const auto d = u::decode_utf8(bad, 0);
    CHECK(d.length == 1);
    CHECK(d.cp == u::invalid_base + static_cast<unsigned char>(bad[0]));
  }
  std::string out;
  u::append_utf8(out, 0x1F600);
  u::append_utf8(out, u::invalid_base + 0xFF);
  CHECK(out == "\xF0\x9F\x98\x80\xFF");
}

TEST_CASE("unicode: character classes") {
  CHECK(u::flags(U'a') == (u::letter | u::word));
  CHECK((u::flags(0x4E2D) & u::letter) != 0);       // 中 Lo
  CHECK((u::flags(U'7') & u::number) != 0);
  CHECK((u::flags(0x0661) & u::number) != 0);       // Arabic-Indic one, Nd
  CHECK((u::flags(0x00BD) & u::number) != 0);       // ½ No
  CHECK((u::flags(0x1D2C0) & u::number) != 0);      // Kaktovik zero: Unicode 15, \p{N} in the reference
  CHECK((u::flags(0x0301) & u::mark) != 0);
  CHECK(u::flags(U',') == u::punct);
  CHECK(u::flags(0x1F600) == u::symbol);     // 😀 So
  CHECK(u::flags(U'$') == u::symbol);
  for (char32_t w : {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x3000, 0x2028, 0x2029})
    CHECK(u::is_white(w));
  CHECK_FALSE(u::is_white(0x200B));          // zero width space is Cf, not \s
  CHECK(u::flags(0x200D) == u::word);        // ZWJ: only \w
  CHECK(u::flags(0xE000) == 0);              // private use: no class
  CHECK(u::flags(u::invalid_base + 0x80) == u::symbol);
  CHECK(u::combining_class(0x0301) == 230);
  CHECK(u::combining_class(0x0323) == 220);
  CHECK(u::combining_class(U'a') == 0);
}

TEST_CASE("unicode: NFC") {
  CHECK(u::nfc("e\xCC\x81") == "\xC3\xA9");                      // e + U+0301 -> é
  CHECK(u::nfc("\xE2\x84\xAB") == "\xC3\x85");                   // Ångström sign (singleton) -> Å
  CHECK(u::nfc("a\xCC\x82\xCC\xA3") == "\xE1\xBA\xAD");          // a + ^ + dot below -> ậ (reordered, composed)
  CHECK(u::nfc("a\xCC\xA3\xCC\x82") == "\xE1\xBA\xAD");
  CHECK(u::nfc("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8") == "\xEA\xB0\x81");  // Hangul jamo -> 각
  CHECK(u::nfc("\xE0\xA5\x98") == "\xE0\xA4\x95\xE0\xA4\xBC");   // U+0958 is a composition exclusion
  CHECK(u::nfc("\xEF\xAC\x81") == "\xEF\xAC\x81");               // ﬁ: compatibility only, unchanged by NFC
  CHECK(u::nfc("\xCC\x81x") == "\xCC\x81x");                     // a leading mark stays
  CHECK(u::nfc("plain ascii") == "plain ascii");
  CHECK(u::nfc("\xFF" "e\xCC\x81\x80") == "\xFF\xC3\xA9\x80");   // invalid bytes kept exactly
  CHECK(u::nfc_quick_check("abc \xE4\xB8\xAD"));
  CHECK_FALSE(u::nfc_quick_check("e\xCC\x81"));
}
