// Named placeholders in templates: substitution, escapes, and errors for typos.
#include "lmrl/data/placeholders.hpp"

#include "support/testing.hpp"

using namespace lmrl::data;

TEST_CASE("placeholders are replaced, braces escaped, repeats allowed") {
  CHECK(fill_placeholders("What is {expression}?", {{"expression", "2 + 3"}}) == "What is 2 + 3?");
  CHECK(fill_placeholders("{a}-{b}-{a}", {{"a", "x"}, {"b", "y"}}) == "x-y-x");
  CHECK(fill_placeholders("{{literal}} {v}", {{"v", "1"}}) == "{literal} 1");
  CHECK(fill_placeholders("no placeholders", {}) == "no placeholders");
  CHECK(fill_placeholders("{p}", {{"p", "{not a placeholder}"}}) == "{not a placeholder}");  // values are not re-scanned
  const auto names = placeholder_names("{system} User: {prompt}. {{x}}");
  REQUIRE(names.size() == 2);
  CHECK(names[0] == "system");
  CHECK(names[1] == "prompt");
}

TEST_CASE("a bad template or a missing value is an error naming it") {
  CHECK_THROWS_WITH_AS(fill_placeholders("What is {expresion}?", {{"expression", "1"}}),
                       doctest::Contains("no value for placeholder {expresion}"), lmrl::error);
  CHECK_THROWS_WITH_AS(fill_placeholders("open {x", {{"x", "1"}}), doctest::Contains("unclosed '{' at character 5"),
                       lmrl::error);
  CHECK_THROWS_WITH_AS(fill_placeholders("close }", {}), doctest::Contains("stray '}' at character 6"), lmrl::error);
  CHECK_THROWS_WITH_AS(placeholder_names("{two words}"), doctest::Contains("bad placeholder name \"{two words}\""),
                       lmrl::error);
  CHECK_THROWS_WITH_AS(require_placeholders("Hi {name}", {"name", "prompt"}, "my_function"),
                       doctest::Contains("my_function: template has no {prompt} placeholder"), lmrl::error);
  CHECK_NOTHROW(require_placeholders("Hi {name} {prompt}", {"name", "prompt"}, "f"));
}
