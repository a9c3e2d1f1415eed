// JSON Lines datasets: one JSON object per line, read as a stream (a line at a
// time, never the whole file), with configurable field names.
//
//   data::example_reader reader("train.jsonl", {"question", "answer"});
//   data::example ex;
//   while (reader.next(ex)) use(ex.prompt, ex.answer);
//
// Errors name the file and the line: "train.jsonl:12:7: expected ',' or '}' in
// an object", "train.jsonl:3: missing field \"question\"". Blank lines are
// skipped; a trailing '\r' (CRLF files) is ignored.
#pragma once

#include <cstddef>
#include <fstream>
#include <istream>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lmrl/data/json.hpp"
#include "lmrl/error.hpp"

namespace lmrl::data {

class jsonl_reader {
 public:
  // Reads the file at `path`; errors name it.
  explicit jsonl_reader(const std::string& path) : owned_(std::make_unique<std::ifstream>(path)), source_(path) {
    if (!*owned_) lmrl::detail::fail("jsonl_reader: cannot open ", path);
    in_ = owned_.get();
  }
  // Reads from a stream that outlives the reader; `source` names it in errors.
  jsonl_reader(std::istream& in, std::string source) : in_(&in), source_(std::move(source)) {}

  // The next value, or false at the end. A malformed line throws
  // "<source>:<line>:<column>: <what>".
  bool next(json::value& out) {
    std::string line;
    while (std::getline(*in_, line)) {
      ++line_;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      try {
        out = json::parse(line, "");
      } catch (const lmrl::error& e) {
        // json::parse says ":1:<column>: <what>" for a one-line text with no source name.
        const std::string_view m = e.what();
        if (m.starts_with(":1:")) lmrl::detail::fail(source_, ":", line_, ":", m.substr(3));
        lmrl::detail::fail(source_, ":", line_, ": ", m);
      }
      return true;
    }
    if (in_->bad()) lmrl::detail::fail("jsonl_reader: ", source_, ": read error after line ", line_);
    return false;
  }

  std::size_t line_number() const { return line_; }  // of the last line read (1-based)
  const std::string& source() const { return source_; }
  // "<source>:<line>", the prefix of errors about the last value.
  std::string where() const { return source_ + ":" + std::to_string(line_); }

 private:
  std::unique_ptr<std::ifstream> owned_;
  std::istream* in_ = nullptr;
  std::string source_;
  std::size_t line_ = 0;
};

// A dotted path into an object ("reward_model.ground_truth"); the error names
// the file, the line and the missing or mistyped field.
inline const json::value& field(const json::value& v, std::string_view path, const std::string& where) {
  const json::value* cur = &v;
  std::string walked;
  std::size_t start = 0;
  for (;;) {
    const std::size_t dot = path.find('.', start);
    const std::string_view key = path.substr(start, dot == std::string_view::npos ? path.npos : dot - start);
    if (!cur->is_object())
      lmrl::detail::fail(where, ": ", walked.empty() ? std::string("the line") : "field \"" + walked + "\"",
                         " is ", json::kind_name(cur->type()), ", not an object, so it has no field \"", key, "\"");
    const json::value* next = cur->find(key);
    if (!walked.empty()) walked += '.';
    walked += key;
    if (next == nullptr) lmrl::detail::fail(where, ": missing field \"", walked, "\"");
    cur = next;
    if (dot == std::string_view::npos) return *cur;
    start = dot + 1;
  }
}

// A field's text: a string as is, an integer as its decimal digits (datasets
// often store numeric answers as numbers); anything else is an error.
inline std::string field_text(const json::value& v, std::string_view path, const std::string& where) {
  const json::value& f = field(v, path, where);
  if (f.is_string()) return f.as_string();
  if (f.is_number() && f.as_number().is_integer) return std::to_string(f.as_number().integer);
  lmrl::detail::fail(where, ": field \"", path, "\" is ", json::kind_name(f.type()),
                     " but a string or an integer is expected");
}

struct example_fields {
  std::string prompt = "prompt";  // TRL's prompt-only dataset column; GSM8K and MATH use "question"/"problem"
  std::string answer = "answer";
};

struct example {
  std::string prompt;
  std::string answer;
  std::size_t line = 0;  // where it came from, for messages
};

// Streams (prompt, answer) pairs out of a JSONL file.
class example_reader {
 public:
  explicit example_reader(const std::string& path, example_fields fields = {})
      : reader_(path), fields_(std::move(fields)) {}
  example_reader(std::istream& in, std::string source, example_fields fields = {})
      : reader_(in, std::move(source)), fields_(std::move(fields)) {}

  bool next(example& out) {
    json::value v;
    if (!reader_.next(v)) return false;
    const std::string where = reader_.where();
    out.prompt = field_text(v, fields_.prompt, where);
    out.answer = field_text(v, fields_.answer, where);
    out.line = reader_.line_number();
    return true;
  }

 private:
  jsonl_reader reader_;
  example_fields fields_;
};

inline std::vector<example> read_examples(const std::string& path, const example_fields& fields = {}) {
  example_reader reader(path, fields);
  std::vector<example> out;
  example ex;
  while (reader.next(ex)) out.push_back(ex);
  return out;
}

}  // namespace lmrl::data
