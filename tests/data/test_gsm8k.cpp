// The GSM8K format: final-answer extraction as verl does it, calculator
// annotations, the shipped sample, and bad files.
#include "lmrl/data/gsm8k.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "lmrl/data/expression.hpp"
#include "support/testing.hpp"

using namespace lmrl;
using namespace lmrl::data;

namespace {

std::string temp_file(const std::string& name, const std::string& text) {
  const auto dir = std::filesystem::temp_directory_path() / "lmrl_test_gsm8k";
  std::filesystem::create_directories(dir);
  const auto path = (dir / name).string();
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

doctest::Contains has(const std::string& text) { return doctest::Contains(doctest::String(text.c_str())); }

const std::string sample = std::string(LMRL_TEST_DATA_DIR) + "/gsm8k_sample.jsonl";

}  // namespace

TEST_CASE("the final answer: after the last ####, thousands separators removed") {
  CHECK(extract_gsm8k_answer("so 3 + 4 = 7\n#### 7") == "7");
  CHECK(extract_gsm8k_answer("#### 1,234") == "1234");
  CHECK(extract_gsm8k_answer("#### 1,234,567 apples") == "1234567");
  CHECK(extract_gsm8k_answer("#### -5") == "-5");
  CHECK(extract_gsm8k_answer("####72") == "72");
  CHECK(extract_gsm8k_answer("#### 3.50") == "3.50");  // kept as written, as verl does
  CHECK(extract_gsm8k_answer("#### 1\n#### 2") == "2");  // the last one
  CHECK_FALSE(extract_gsm8k_answer("no marker 42").has_value());
  CHECK_FALSE(extract_gsm8k_answer("#### abc").has_value());
  CHECK_FALSE(extract_gsm8k_answer("#### -").has_value());
  CHECK(gsm8k_final_answer("x\n#### 9") == "9");
  CHECK_THROWS_WITH_AS(gsm8k_final_answer("The answer is 9."),
                       doctest::Contains("gsm8k_final_answer: answer has no final \"#### <number>\" line (it ends "
                                         "\"The answer is 9.\")"),
                       lmrl::error);
}

TEST_CASE("calculator annotations and the #### line are removed from the solution") {
  CHECK(strip_calculator_annotations("Half of 48 is 48/2 = <<48/2=24>>24.") == "Half of 48 is 48/2 = 24.");
  CHECK(strip_calculator_annotations("a <<1+1=2>>2 b <<2*3=6>>6") == "a 2 b 6");
  CHECK(strip_calculator_annotations("unclosed << stays") == "unclosed << stays");
  CHECK(gsm8k_solution_text("48/2 = <<48/2=24>>24 cups.\n#### 24") == "48/2 = 24 cups.");
}

TEST_CASE("the shipped sample: 32 problems, answers extracted") {
  const auto all = read_gsm8k(sample);
  REQUIRE(all.size() == 32);
  CHECK(all[0].question ==
        "Mara bakes 3 trays of rolls with 12 rolls on each tray. Her family eats 7 rolls. How many rolls are left?");
  CHECK(all[0].answer == "29");
  CHECK(all[0].solution == "Mara bakes 3*12 = 36 rolls.\nAfter her family eats some, 36-7 = 29 rolls are left.");
  CHECK(all[0].line == 1);
  CHECK(all[15].answer == "4032");  // written "#### 4,032" in the file
  CHECK(all[30].answer == "-2");
  CHECK(all[31].line == 32);
  for (const auto& ex : all) {
    INFO("line ", ex.line);
    CHECK(ex.solution.find("<<") == std::string::npos);
    CHECK(ex.solution.find("####") == std::string::npos);
    CHECK(ex.solution.find(ex.answer) != std::string::npos);  // the last step states the answer
  }
}

TEST_CASE("every calculator annotation in the sample is arithmetically right") {
  // <<a*b=c>>: parse a*b with the library's expression parser and compare with c.
  const auto raw = read_examples(sample, {"question", "answer"});
  int annotations = 0;
  for (const auto& ex : raw) {
    std::size_t at = 0;
    while ((at = ex.answer.find("<<", at)) != std::string::npos) {
      const std::size_t eq = ex.answer.find('=', at), close = ex.answer.find(">>", at);
      REQUIRE(eq < close);
      const std::string lhs = ex.answer.substr(at + 2, eq - at - 2), rhs = ex.answer.substr(eq + 1, close - eq - 1);
      parse_options o;
      o.allow_unary_minus = true;
      const auto parsed = parse_expression(lhs, o);
      INFO("line ", ex.line, ": <<", lhs, "=", rhs, ">>");
      REQUIRE(parsed.ok);
      CHECK(evaluate(parsed.expr).value.to_string() == rhs);
      ++annotations;
      at = close;
    }
  }
  CHECK(annotations > 60);
}

TEST_CASE("bad GSM8K lines name the file, the line and the field") {
  const auto path = temp_file("no_marker.jsonl", "{\"question\": \"q1\", \"answer\": \"1 + 1 = 2\\n#### 2\"}\n"
                                                 "{\"question\": \"q2\", \"answer\": \"The answer is 3.\"}\n");
  CHECK_THROWS_WITH_AS(read_gsm8k(path), has(path + ":2: field \"answer\": answer has no final"), lmrl::error);
  const auto missing = temp_file("missing.jsonl", "{\"problem\": \"q1\", \"answer\": \"#### 2\"}\n");
  CHECK_THROWS_WITH_AS(read_gsm8k(missing), has(missing + ":1: missing field \"question\""), lmrl::error);
  CHECK(read_gsm8k(missing, {"problem", "answer"}).at(0).answer == "2");
  const auto broken = temp_file("broken.jsonl", "{\"question\": \"q1\", \"answer\": \"#### 2\"\n");
  CHECK_THROWS_WITH_AS(read_gsm8k(broken), has(broken + ":1:"), lmrl::error);

  std::istringstream in("{\"question\": \"q\", \"answer\": \"#### 10\"}\n");
  gsm8k_reader reader(in, "memory");
  gsm8k_example ex;
  REQUIRE(reader.next(ex));
  CHECK(ex.answer == "10");
  CHECK(ex.solution.empty());
  CHECK_FALSE(reader.next(ex));
}
