// libFuzzer target over answer extraction, math equivalence and the text rules.
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude fuzz/answer_parser_fuzz.cpp -o /tmp/answer_fuzz
//   /tmp/answer_fuzz -max_total_time=30
// Any input must give an answer or none, never a crash, a sanitizer report or an exception.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "lmrl/reward/accuracy.hpp"
#include "lmrl/reward/extract.hpp"
#include "lmrl/reward/format.hpp"
#include "lmrl/reward/language.hpp"
#include "lmrl/reward/math_equal.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // Split the input at the first tab into (gold, completion).
  const std::size_t tab = text.find('\t');
  const std::string_view gold = tab == std::string_view::npos ? text : text.substr(0, tab);
  const std::string_view completion = tab == std::string_view::npos ? text : text.substr(tab + 1);
  for (auto source : {lmrl::answer_source::automatic, lmrl::answer_source::answer_tag, lmrl::answer_source::boxed,
                      lmrl::answer_source::gsm8k, lmrl::answer_source::last_number}) {
    if (auto answer = lmrl::extract_answer(completion, source)) {
      (void)lmrl::math_equal(gold, *answer);
      lmrl::math_equal_options o;
      o.percent = lmrl::percent_rule::either;
      o.relative_tolerance = 1e-3;
      (void)lmrl::math_equal(*answer, gold, o);
    }
  }
  (void)lmrl::math_equal(gold, completion);
  (void)lmrl::parse_math_number(completion);
  (void)lmrl::is_strict_format(completion, size % 2 == 0);
  (void)lmrl::is_open_r1_format(completion);
  (void)lmrl::is_soft_format(completion);
  (void)lmrl::tag_count_score(completion);
  (void)lmrl::language_consistency_report(gold, completion);
  return 0;
}
