// The strict JSON reader: every value kind, exact integers, escapes and
// surrogate pairs, UTF-8 validation, error positions and JSON paths, and the
// real 11 MB Qwen3 tokenizer.json parsed quickly.
#include "lmrl/data/json.hpp"

#include <chrono>
#include <filesystem>
#include <string>

#include "support/testing.hpp"

using namespace lmrl;

namespace {
json::value parse(std::string_view s) { return json::parse(s, "t.json"); }
}  // namespace

TEST_CASE("json: scalars") {
  CHECK(parse("null").is_null());
  CHECK(parse(" true ").as_bool() == true);
  CHECK(parse("\tfalse\r\n").as_bool() == false);
  CHECK(parse("\"hi\"").as_string() == "hi");
  CHECK(parse("0").as_int64() == 0);
  CHECK(parse("-12").as_int64() == -12);
  CHECK(parse("1.5").as_double() == 1.5);
  CHECK(parse("-2.5e3").as_double() == -2500.0);
  CHECK(parse("1E-2").as_double() == 0.01);
  CHECK(parse("-0").as_double() == 0.0);
  CHECK(parse("\xEF\xBB\xBF" "7").as_int64() == 7);  // a UTF-8 byte order mark is skipped
}

TEST_CASE("json: integers are exact beyond 2^53, non-integers are not integers") {
  // 2^53 + 1 = 9007199254740993 is not representable as a double.
  const json::value v = parse("9007199254740993");
  CHECK(v.as_number().is_integer);
  CHECK(v.as_int64() == 9007199254740993LL);
  CHECK(parse("-9223372036854775808").as_int64() == INT64_MIN);
  // One more than INT64_MAX: still a number, but not an exact integer.
  const json::value big = parse("9223372036854775808");
  CHECK_FALSE(big.as_number().is_integer);
  CHECK(big.as_double() == 9223372036854775808.0);
  CHECK_THROWS_WITH_AS(big.as_int64(), doctest::Contains("expected an integer"), lmrl::error);
  CHECK_FALSE(parse("2.0").as_number().is_integer);  // a fraction makes it a real
  CHECK_THROWS_WITH_AS(parse("1e400"), doctest::Contains("out of the range of a double"), lmrl::error);
}

TEST_CASE("json: string escapes, surrogate pairs and raw UTF-8") {
  CHECK(parse(R"("a\"b\\c\/d\b\f\n\r\t")").as_string() == "a\"b\\c/d\b\f\n\r\t");
  CHECK(parse(R"("\u0041\u00e9\u4e2d")").as_string() == "A\xC3\xA9\xE4\xB8\xAD");  // A é 中
  // U+1F600 😀 = D83D DE00 as UTF-16 = F0 9F 98 80 in UTF-8.
  CHECK(parse(R"("\ud83d\uDE00")").as_string() == "\xF0\x9F\x98\x80");
  CHECK(parse("\"\xF0\x9F\x98\x80 \xE2\x96\x81\"").as_string() == "\xF0\x9F\x98\x80 \xE2\x96\x81");
  CHECK(parse(R"("\u0000")").as_string() == std::string(1, '\0'));
  CHECK_THROWS_WITH_AS(parse(R"("\ud83d")"), doctest::Contains("high surrogate"), lmrl::error);
  CHECK_THROWS_WITH_AS(parse(R"("\ud83d\u0041")"), doctest::Contains("low surrogate"), lmrl::error);
  CHECK_THROWS_WITH_AS(parse(R"("\ude00")"), doctest::Contains("lone low surrogate"), lmrl::error);
  CHECK_THROWS_WITH_AS(parse(R"("\u12G4")"), doctest::Contains("invalid hex digit"), lmrl::error);
  CHECK_THROWS_WITH_AS(parse(R"("\x")"), doctest::Contains("invalid escape \\x"), lmrl::error);
  CHECK_THROWS_WITH_AS(parse("\"a\nb\""), doctest::Contains("control character"), lmrl::error);
  CHECK_THROWS_WITH_AS(parse("\"abc"), doctest::Contains("unterminated string"), lmrl::error);
  // Invalid UTF-8: a lone continuation byte, an overlong '/', a UTF-8 encoded surrogate, a truncated sequence.
  for (const char* bad : {"\"\x80\"", "\"\xC0\xAF\"", "\"\xED\xA0\x80\"", "\"\xE4\xB8\"", "\"\xF5\x80\x80\x80\""})
    CHECK_THROWS_WITH_AS(parse(bad), doctest::Contains("invalid UTF-8"), lmrl::error);
}

TEST_CASE("json: arrays and objects keep order, repeated keys: the last wins in find") {
  const json::value v = parse(R"({"b": [1, [2, []], {}], "a": {"x": null}, "b": "again"})");
  REQUIRE(v.is_object());
  const json::object& o = v.as_object();
  REQUIRE(o.size() == 3);
  CHECK(o[0].first == "b");
  CHECK(o[1].first == "a");
  CHECK(o[2].first == "b");
  CHECK(o[0].second.as_array().size() == 3);
  CHECK(o[0].second.as_array()[1].as_array()[0].as_int64() == 2);
  CHECK(o[0].second.as_array()[1].as_array()[1].size() == 0);
  CHECK(o[0].second.as_array()[2].is_object());
  CHECK(v.find("b")->as_string() == "again");
  CHECK(v.find("a")->find("x")->is_null());
  CHECK(v.find("zz") == nullptr);
  CHECK(parse("[]").size() == 0);
  CHECK(parse("{}").size() == 0);
}

TEST_CASE("json: syntax errors name line and column") {
  // Line 3, column 5 is the stray '}' after the trailing comma.
  CHECK_THROWS_WITH_AS(parse("{\n  \"a\": 1,\n    }"), doctest::Contains("t.json:3:5: expected a string key"),
                       lmrl::error);
  CHECK_THROWS_WITH_AS(parse("[1, 2,]"), doctest::Contains("t.json:1:7: unexpected character ']'"), lmrl::error);
  CHECK_THROWS_WITH_AS(parse("[1 2]"), doctest::Contains("t.json:1:4: expected ',' or ']'"), lmrl::error);
  CHECK_THROWS_WITH_AS(parse("{\"a\" 1}"), doctest::Contains("expected ':'"), lmrl::error);
  CHECK_THROWS_WITH_AS(parse("// c\n1"), doctest::Contains("t.json:1:1: unexpected character '/'"), lmrl::error);
  CHECK_THROWS_WITH_AS(parse("01"), doctest::Contains("leading zero"), lmrl::error);
  CHECK_THROWS_WITH_AS(parse("1."), doctest::Contains("digit after '.'"), lmrl::error);
  CHECK_THROWS_WITH_AS(parse("-"), doctest::Contains("expected a digit"), lmrl::error);
  CHECK_THROWS_WITH_AS(parse("1e+"), doctest::Contains("exponent"), lmrl::error);
  CHECK_THROWS_WITH_AS(parse("NaN"), doctest::Contains("unexpected character 'N'"), lmrl::error);
  CHECK_THROWS_WITH_AS(parse("tru"), doctest::Contains("expected true"), lmrl::error);
  CHECK_THROWS_WITH_AS(parse("1 2"), doctest::Contains("t.json:1:3: unexpected text after"), lmrl::error);
  CHECK_THROWS_WITH_AS(parse(""), doctest::Contains("unexpected end of input"), lmrl::error);
  CHECK_THROWS_WITH_AS(parse("[1,"), doctest::Contains("unexpected end of input"), lmrl::error);
  CHECK_THROWS_WITH_AS(parse("{\"a\":1"), doctest::Contains("unexpected end of input inside an object"), lmrl::error);
  CHECK_THROWS_WITH_AS(parse(std::string(600, '[') + std::string(600, ']')), doctest::Contains("deeper than 512"),
                       lmrl::error);
  CHECK(parse(std::string(500, '[') + std::string(500, ']')).is_array());
}

TEST_CASE("json: node gives type errors with the file and the JSON path") {
  const json::value doc = parse(R"({"model": {"merges": ["a b", 3], "vocab": {"a": 0}}, "n": 1.5})");
  const json::node root(doc, "tokenizer.json");
  const json::node merges = root.at("model").at("merges");
  CHECK(merges.path() == "model.merges");
  CHECK(merges[0].as_string() == "a b");
  CHECK_THROWS_WITH_AS(merges[1].as_string(),
                       doctest::Contains("tokenizer.json: model.merges[1]: expected a string, got a number"),
                       lmrl::error);
  CHECK_THROWS_WITH_AS(merges[2], doctest::Contains("model.merges: index 2 out of range (size 2)"), lmrl::error);
  CHECK_THROWS_WITH_AS(root.at("model").at("type"),
                       doctest::Contains("tokenizer.json: model: missing field \"type\""), lmrl::error);
  CHECK_THROWS_WITH_AS(root.at("n").as_int64(), doctest::Contains("n: expected an integer, got 1.5"), lmrl::error);
  CHECK_THROWS_WITH_AS(root.at("n").at("x"), doctest::Contains("n: expected an object, got a number"), lmrl::error);
  CHECK_THROWS_WITH_AS(merges.fail("bad merge"), doctest::Contains("tokenizer.json: model.merges: bad merge"),
                       lmrl::error);
  json::node out = root;
  CHECK(root.maybe("model", out));
  CHECK(out.path() == "model");
  CHECK_FALSE(root.maybe("absent", out));
  const json::object& vocab = root.at("model").at("vocab").as_object();
  CHECK(root.at("model").at("vocab").member_value(vocab[0]).path() == "model.vocab.a");
  CHECK_THROWS_WITH_AS(json::parse_file("/nonexistent/x.json"), doctest::Contains("cannot open /nonexistent/x.json"),
                       lmrl::error);
}

#ifdef LMRL_SHARED_DIR
TEST_CASE("json: the real Qwen3 tokenizer.json parses in well under a second") {
  const std::string path = std::string(LMRL_SHARED_DIR) + "/tokenizers/qwen3/tokenizer.json";
  INFO("path: ", path);
  REQUIRE_MESSAGE(std::filesystem::exists(path), "the shared tokenizer folder is missing: ", path);
  const auto t0 = std::chrono::steady_clock::now();
  const json::value doc = json::parse_file(path);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE("parsed ", path, " in ", seconds, " s");
  const json::node root(doc, path);
  CHECK(root.at("model").at("type").as_string() == "BPE");
  CHECK(root.at("model").at("vocab").size() == 151643);
  CHECK(root.at("model").at("merges").size() == 151387);
  CHECK(root.at("added_tokens")[0].at("content").as_string() == "<|endoftext|>");
  CHECK(root.at("added_tokens")[0].at("id").as_int64() == 151643);
  CHECK(seconds < 2.0);  // generous for a loaded -O1 debug build; ~0.1 s optimized
}
#endif

TEST_CASE("json::append_string: every byte string reads back, and escape_non_ascii keeps the line ASCII") {
  const std::string text = std::string("a\"b\\c\nd\te\x01\x1f") + '\0' + "é\x7f";
  CHECK(json::quoted("plain") == "\"plain\"");
  CHECK(json::quoted("q\"\\\n\x01") == R"("q\"\\\n\u0001")");
  CHECK(parse(json::quoted(text)).as_string() == text);
  const std::string ascii = json::quoted("é\x7f", true);
  CHECK(ascii == R"("\u00c3\u00a9\u007f")");
  for (const char c : ascii) CHECK(static_cast<unsigned char>(c) < 0x80);
  // Invalid UTF-8 (a lone continuation byte) still makes valid JSON.
  CHECK(parse(json::quoted("x\x80y", true)).as_string() == "x\u0080y");
  std::string out = "[";
  json::append_string(out, "k");
  CHECK(out == "[\"k\"");
}
