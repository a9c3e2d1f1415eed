// Answer extraction: each path, "no answer" vs the empty answer, malformed text.
#include "lmrl/reward/extract.hpp"

#include <string>

#include "support/testing.hpp"

using namespace lmrl;
using namespace std::string_literals;

TEST_CASE("extract_answer_tag takes the last <answer> pair, trimmed, empty is not none") {
  CHECK(extract_answer_tag("<think>x</think><answer> 42 </answer>") == "42"s);
  CHECK(extract_answer_tag("<answer>1</answer> then <answer>2</answer>") == "2"s);
  CHECK(extract_answer_tag("<answer></answer>") == ""s);
  CHECK(extract_answer_tag("<answer>\n\n</answer>") == ""s);
  CHECK_FALSE(extract_answer_tag("no tags at all").has_value());
  CHECK_FALSE(extract_answer_tag("<answer>never closed").has_value());
  CHECK_FALSE(extract_answer_tag("</answer> closed before <answer> opened").has_value());
  CHECK(extract_answer_tag("<answer><answer>x</answer>") == "x"s);  // the innermost (last) opening tag
  CHECK(extract_answer_tag("<answer>日本語 答え</answer>") == "日本語 答え"s);
  CHECK_FALSE(extract_answer_tag("").has_value());
}

TEST_CASE("extract_boxed handles nested braces, the last box, \\fbox and the brace-less form") {
  CHECK(extract_boxed("so \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}"s);
  CHECK(extract_boxed("\\boxed{1} and later \\boxed{2}") == "2"s);
  CHECK(extract_boxed("\\boxed{{a}{b{c}}}") == "{a}{b{c}}"s);
  CHECK(extract_boxed("\\boxed{}") == ""s);
  CHECK(extract_boxed("\\fbox{9}") == "9"s);
  CHECK(extract_boxed("\\boxed{1} \\fbox{3}") == "3"s);  // whichever comes last
  CHECK(extract_boxed("$\\boxed 5$ more") == "5"s);        // Hendrycks MATH: up to the next '$'
  CHECK(extract_boxed("\\boxed {7}") == "7"s);
  CHECK_FALSE(extract_boxed("\\boxed{1").has_value());      // unbalanced
  CHECK_FALSE(extract_boxed("\\boxed{1} \\boxed{2").has_value());  // the last box is malformed: no answer
  CHECK_FALSE(extract_boxed("nothing boxed").has_value());
  CHECK_FALSE(extract_boxed("\\boxed").has_value());
  CHECK_FALSE(extract_boxed("\\boxedx").has_value());
}

TEST_CASE("extract_gsm8k follows verl's strict regex '#### (-?(0-9.,)+)'") {
  CHECK(extract_gsm8k("so she has 5 left.\n#### 5") == "5"s);
  CHECK(extract_gsm8k("#### 1,234") == "1234"s);
  CHECK(extract_gsm8k("#### -7 then #### 8") == "8"s);
  CHECK(extract_gsm8k("#### 3.5") == "3.5"s);
  CHECK(extract_gsm8k("##### 6") == "6"s);  // the regex finds "#### " inside "##### "
  CHECK_FALSE(extract_gsm8k("####5").has_value());
  CHECK_FALSE(extract_gsm8k("#### five").has_value());
  CHECK_FALSE(extract_gsm8k("").has_value());
}

TEST_CASE("extract_last_number takes the last digit run, without trailing punctuation or commas") {
  CHECK(extract_last_number("3 apples and 4 pears, so 7.") == "7"s);
  CHECK(extract_last_number("costs $1,234.") == "1234"s);
  CHECK(extract_last_number("it is -2.5, I think") == "-2.5"s);
  CHECK(extract_last_number("12 - 3") == "3"s);
  CHECK_FALSE(extract_last_number("no digits here . , -").has_value());
  CHECK(extract_last_number("99999999999999999999999999999999999999999999") ==
        "99999999999999999999999999999999999999999999"s);  // huge numbers stay text
}

TEST_CASE("extract_answer: automatic order is tag (with its box), then box, then ####") {
  CHECK(extract_answer("<answer>The result is \\boxed{12}</answer>") == "12"s);
  CHECK(extract_answer("<answer>12</answer> \\boxed{13}") == "12"s);
  CHECK(extract_answer("reasoning \\boxed{13}\n#### 14") == "13"s);
  CHECK(extract_answer("reasoning\n#### 14") == "14"s);
  CHECK_FALSE(extract_answer("the answer is 15").has_value());
  CHECK(extract_answer("the answer is 15", answer_source::last_number) == "15"s);
  CHECK(extract_answer("<answer>1</answer>", answer_source::boxed) == std::nullopt);
  CHECK(extract_answer("\\boxed{2}", answer_source::answer_tag) == std::nullopt);
  CHECK(extract_answer("#### 3", answer_source::gsm8k) == "3"s);
}
