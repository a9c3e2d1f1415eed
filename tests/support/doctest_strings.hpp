// doctest, with C strings shown as text: without this, CAPTURE(name) and
// MESSAGE(what, ...) print a const char*'s address (doctest 2.4's
// DOCTEST_CONFIG_TREAT_CHAR_STAR_AS_STRING does not compile), which leaves a
// failure's labels unreadable.
#pragma once

#include <doctest/doctest.h>

namespace doctest {
template <>
struct StringMaker<const char*> {
  static String convert(const char* s) { return s == nullptr ? String("(null)") : String(s); }
};
template <>
struct StringMaker<char*> {
  static String convert(const char* s) { return s == nullptr ? String("(null)") : String(s); }
};
}  // namespace doctest
