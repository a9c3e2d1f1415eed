// The GSM8K format: JSONL lines {"question": ..., "answer": ...} whose answer
// is a worked solution ending in "#### <number>", with calculator annotations
// "<<48/2=24>>" inside it.
//
// The final answer is extracted as verl does (verl/utils/reward_score/gsm8k.py
// and examples/data_preprocess/gsm8k.py): the number after the last "####",
// matched as -?[0-9.,]+, with the thousands separators (commas) removed, so
// "#### 1,234" gives "1234". lmrl also skips spaces after "####" (verl needs
// exactly one).
#pragma once

#include <cstddef>
#include <istream>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lmrl/data/jsonl.hpp"
#include "lmrl/error.hpp"

namespace lmrl::data {

// The final answer after the last "####", or nullopt when there is none.
inline std::optional<std::string> extract_gsm8k_answer(std::string_view text) {
  const std::size_t mark = text.rfind("####");
  if (mark == std::string_view::npos) return std::nullopt;
  std::size_t i = mark + 4;
  while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
  std::string out;
  if (i < text.size() && text[i] == '-') out += text[i++];
  bool digit = false;
  for (; i < text.size(); ++i) {
    const char c = text[i];
    if (c >= '0' && c <= '9') {
      out += c;
      digit = true;
    } else if (c == '.') {
      out += c;
    } else if (c != ',') {
      break;
    }
  }
  if (!digit) return std::nullopt;
  return out;
}

// The final answer of a GSM8K answer field; an error when it has none.
inline std::string gsm8k_final_answer(std::string_view answer, std::string_view where = "gsm8k_final_answer") {
  auto a = extract_gsm8k_answer(answer);
  if (!a) {
    const std::string_view tail = answer.size() > 60 ? answer.substr(answer.size() - 60) : answer;
    lmrl::detail::fail(where, ": answer has no final \"#### <number>\" line (it ends \"", tail, "\")");
  }
  return *a;
}

// The worked solution without the "#### N" line and the calculator annotations:
// "Half of 48 is 48/2 = <<48/2=24>>24.\n#### 24" gives "Half of 48 is 48/2 = 24.".
inline std::string strip_calculator_annotations(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  std::size_t i = 0;
  while (i < text.size()) {
    if (text.substr(i, 2) == "<<") {
      const std::size_t close = text.find(">>", i + 2);
      if (close != std::string_view::npos) {
        i = close + 2;
        continue;
      }
    }
    out += text[i++];
  }
  return out;
}

inline std::string gsm8k_solution_text(std::string_view answer) {
  const std::size_t mark = answer.rfind("####");
  std::string_view body = answer.substr(0, mark == std::string_view::npos ? answer.size() : mark);
  while (!body.empty() && (body.back() == '\n' || body.back() == ' ' || body.back() == '\r')) body.remove_suffix(1);
  return strip_calculator_annotations(body);
}

struct gsm8k_example {
  std::string question;
  std::string solution;  // the worked solution, annotations and "#### N" removed
  std::string answer;    // the final answer, e.g. "1234"
  std::size_t line = 0;
};

struct gsm8k_fields {
  std::string question = "question";
  std::string answer = "answer";
};

// Streams GSM8K-format examples; a line without "#### N" is an error naming the
// file and the line.
class gsm8k_reader {
 public:
  explicit gsm8k_reader(const std::string& path, gsm8k_fields fields = {})
      : reader_(path), fields_(std::move(fields)) {}
  gsm8k_reader(std::istream& in, std::string source, gsm8k_fields fields = {})
      : reader_(in, std::move(source)), fields_(std::move(fields)) {}

  bool next(gsm8k_example& out) {
    json::value v;
    if (!reader_.next(v)) return false;
    const std::string where = reader_.where();
    out.question = field_text(v, fields_.question, where);
    const std::string full = field_text(v, fields_.answer, where);
    out.answer = gsm8k_final_answer(full, where + ": field \"" + fields_.answer + "\"");
    out.solution = gsm8k_solution_text(full);
    out.line = reader_.line_number();
    return true;
  }

 private:
  jsonl_reader reader_;
  gsm8k_fields fields_;
};

inline std::vector<gsm8k_example> read_gsm8k(const std::string& path, const gsm8k_fields& fields = {}) {
  gsm8k_reader reader(path, fields);
  std::vector<gsm8k_example> out;
  gsm8k_example ex;
  while (reader.next(ex)) out.push_back(ex);
  return out;
}

}  // namespace lmrl::data
