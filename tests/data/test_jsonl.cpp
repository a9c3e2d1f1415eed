// JSONL reading: streaming, configurable and dotted field names, and errors
// that name the file, the line and the field.
#include "lmrl/data/jsonl.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "support/testing.hpp"

using namespace lmrl;
using namespace lmrl::data;

namespace {

// Writes `text` to a fresh file in the temp directory and returns its path.
std::string temp_file(const std::string& name, const std::string& text) {
  const auto dir = std::filesystem::temp_directory_path() / "lmrl_test_jsonl";
  std::filesystem::create_directories(dir);
  const auto path = (dir / name).string();
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// doctest::Contains from a std::string (doctest::String copies the text).
doctest::Contains has(const std::string& text) { return doctest::Contains(doctest::String(text.c_str())); }

const std::string sample = std::string(LMRL_TEST_DATA_DIR) + "/gsm8k_sample.jsonl";

}  // namespace

TEST_CASE("the shipped sample reads with configured field names, line by line") {
  example_reader reader(sample, {"question", "answer"});
  example ex;
  std::size_t count = 0;
  while (reader.next(ex)) {
    ++count;
    CHECK(ex.line == count);
    CHECK_FALSE(ex.prompt.empty());
    CHECK(ex.answer.find("####") != std::string::npos);
  }
  CHECK(count == 32);
  const auto all = read_examples(sample, {"question", "answer"});
  REQUIRE(all.size() == 32);
  CHECK(all[0].prompt ==
        "Mara bakes 3 trays of rolls with 12 rolls on each tray. Her family eats 7 rolls. How many rolls are left?");
  CHECK(all[0].answer.ends_with("\n#### 29"));
}

TEST_CASE("blank lines are skipped but counted, CRLF is accepted, integers read as text") {
  std::istringstream in("{\"prompt\": \"a\", \"answer\": \"1\"}\r\n\n   \n{\"prompt\": \"b\", \"answer\": 42}\n");
  example_reader reader(in, "memory");
  example ex;
  REQUIRE(reader.next(ex));
  CHECK(ex.prompt == "a");
  CHECK(ex.answer == "1");
  CHECK(ex.line == 1);
  REQUIRE(reader.next(ex));
  CHECK(ex.prompt == "b");
  CHECK(ex.answer == "42");
  CHECK(ex.line == 4);
  CHECK_FALSE(reader.next(ex));
}

TEST_CASE("dotted field names reach into nested objects") {
  std::istringstream in(R"({"q": "2 + 2?", "reward_model": {"style": "rule", "ground_truth": "4"}})" "\n");
  example_reader reader(in, "nested.jsonl", {"q", "reward_model.ground_truth"});
  example ex;
  REQUIRE(reader.next(ex));
  CHECK(ex.prompt == "2 + 2?");
  CHECK(ex.answer == "4");
}

TEST_CASE("the raw reader gives every value and its line") {
  std::istringstream in("1\n\"two\"\n[3]\n{}\n");
  jsonl_reader reader(in, "values");
  json::value v;
  REQUIRE(reader.next(v));
  CHECK(v.as_int64() == 1);
  REQUIRE(reader.next(v));
  CHECK(v.as_string() == "two");
  REQUIRE(reader.next(v));
  CHECK(v.is_array());
  REQUIRE(reader.next(v));
  CHECK(v.is_object());
  CHECK(reader.line_number() == 4);
  CHECK(reader.where() == "values:4");
  CHECK_FALSE(reader.next(v));
}

TEST_CASE("a malformed line is an error naming the file, the line and the column") {
  const auto path = temp_file("bad_syntax.jsonl", "{\"prompt\": \"a\", \"answer\": \"1\"}\n"
                                                  "{\"prompt\": \"b\", \"answer\": }\n");
  example_reader reader(path);
  example ex;
  REQUIRE(reader.next(ex));
  // {"prompt": "b", "answer": }  -- '{' is column 1, "answer" ends at 24, ':' 25, ' ' 26, '}' 27.
  CHECK_THROWS_WITH_AS(reader.next(ex), has(path + ":2:27: unexpected character '}'"), lmrl::error);

  const auto trailing = temp_file("trailing.jsonl", "{\"prompt\": \"a\", \"answer\": \"1\"} x\n");
  CHECK_THROWS_WITH_AS(read_examples(trailing), has(trailing + ":1:"), lmrl::error);
}

TEST_CASE("a missing or mistyped field is an error naming the field and the line") {
  const auto path = temp_file("missing.jsonl", "{\"prompt\": \"a\", \"answer\": \"1\"}\n"
                                               "{\"prompt\": \"b\", \"answer\": \"2\"}\n"
                                               "{\"prompt\": \"c\", \"solution\": \"3\"}\n");
  CHECK_THROWS_WITH_AS(read_examples(path), has(path + ":3: missing field \"answer\""), lmrl::error);
  CHECK_THROWS_WITH_AS(read_examples(path, {"question", "answer"}),
                       has(path + ":1: missing field \"question\""), lmrl::error);
  const auto array = temp_file("array.jsonl", "[1, 2]\n");
  CHECK_THROWS_WITH_AS(read_examples(array),
                       has(array + ":1: the line is an array, not an object, so it has no field \"prompt\""),
                       lmrl::error);
  const auto real = temp_file("real.jsonl", "{\"prompt\": \"a\", \"answer\": 2.5}\n");
  CHECK_THROWS_WITH_AS(read_examples(real),
                       has(real + ":1: field \"answer\" is a number but a string or an integer is expected"),
                       lmrl::error);
  std::istringstream nested(R"({"prompt": "p", "reward_model": {"style": "rule"}})" "\n");
  example_reader reader(nested, "n.jsonl", {"prompt", "reward_model.ground_truth"});
  example ex;
  CHECK_THROWS_WITH_AS(reader.next(ex), doctest::Contains("n.jsonl:1: missing field \"reward_model.ground_truth\""),
                       lmrl::error);
  CHECK_THROWS_WITH_AS(jsonl_reader("/nonexistent/lmrl/file.jsonl"),
                       doctest::Contains("jsonl_reader: cannot open /nonexistent/lmrl/file.jsonl"), lmrl::error);
}
