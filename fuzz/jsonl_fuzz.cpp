// libFuzzer target over the JSON reader (lmrl::json::parse) and the JSONL
// readers of lmrl/data/jsonl.hpp (istream form).
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
//     -Iinclude fuzz/jsonl_fuzz.cpp -o /tmp/jsonl_fuzz
//   /tmp/jsonl_fuzz -max_total_time=60 -rss_limit_mb=2048 fuzz/corpus/jsonl
// Bad input must be an lmrl::error naming where it is; anything else (a crash, a
// sanitizer report, another exception type, a hang) is a finding. A document
// that parses must survive a write-and-read-back with the same values.
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <string_view>

#include "lmrl/data/json.hpp"
#include "lmrl/data/jsonl.hpp"
#include "lmrl/error.hpp"

namespace json = lmrl::json;

namespace {

[[noreturn]] void finding(const char* what, std::string_view detail) {
  std::fprintf(stderr, "jsonl_fuzz: %s: \"%.*s\"\n", what, static_cast<int>(detail.size()), detail.data());
  std::abort();
}

// A minimal JSON writer: integers as their digits, other numbers in the
// shortest form that reads back to the same double, strings through
// json::append_string (the reader guarantees valid UTF-8).
void write(const json::value& v, std::string& out) {
  switch (v.type()) {
    case json::kind::null: out += "null"; break;
    case json::kind::boolean: out += v.as_bool() ? "true" : "false"; break;
    case json::kind::number: {
      char buf[64];
      const json::number& n = v.as_number();
      const auto r = n.is_integer ? std::to_chars(buf, buf + sizeof buf, n.integer)
                                  : std::to_chars(buf, buf + sizeof buf, n.real);
      out.append(buf, r.ptr);
      break;
    }
    case json::kind::string:
      json::append_string(out, v.as_string());
      break;
    case json::kind::array: {
      out += '[';
      bool first = true;
      for (const json::value& e : v.as_array()) {
        if (!first) out += ',';
        first = false;
        write(e, out);
      }
      out += ']';
      break;
    }
    case json::kind::object: {
      out += '{';
      bool first = true;
      for (const auto& [key, e] : v.as_object()) {
        if (!first) out += ',';
        first = false;
        write(json::value(key), out);
        out += ':';
        write(e, out);
      }
      out += '}';
      break;
    }
  }
}

bool same(const json::value& a, const json::value& b) {
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case json::kind::null: return true;
    case json::kind::boolean: return a.as_bool() == b.as_bool();
    case json::kind::number: {
      const json::number &x = a.as_number(), &y = b.as_number();
      // "1.0" is written "1" and reads back as an integer; the value is what counts.
      if (x.is_integer && (!y.is_integer || x.integer != y.integer)) return false;
      return x.real == y.real;
    }
    case json::kind::string: return a.as_string() == b.as_string();
    case json::kind::array:
      if (a.size() != b.size()) return false;
      for (std::size_t i = 0; i < a.size(); ++i)
        if (!same(a.as_array()[i], b.as_array()[i])) return false;
      return true;
    case json::kind::object:
      if (a.size() != b.size()) return false;
      for (std::size_t i = 0; i < a.size(); ++i)
        if (a.as_object()[i].first != b.as_object()[i].first || !same(a.as_object()[i].second, b.as_object()[i].second))
          return false;
      return true;
  }
  return false;
}

void expect_named(const lmrl::error& e, std::string_view name) {
  if (!std::string_view(e.what()).starts_with(name)) finding("an error message that does not start with the source", e.what());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  // 1. The whole input as one JSON document.
  try {
    const json::value doc = json::parse(text, "fuzz.json");
    std::string written;
    write(doc, written);
    json::value again;
    try {
      again = json::parse(written, "written");
    } catch (const lmrl::error& e) {
      finding("the written document does not read back", e.what());
    }
    if (!same(doc, again)) finding("the written document reads back different", written);
  } catch (const lmrl::error& e) {
    expect_named(e, "fuzz.json:");
  }

  // 2. Line by line; a bad line is an error naming the line, and the next line
  //    is read after it.
  {
    std::istringstream in{std::string(text)};
    lmrl::data::jsonl_reader reader(in, "fuzz.jsonl");
    json::value v;
    for (int lines = 0; lines < 10000; ++lines) {
      try {
        if (!reader.next(v)) break;
        // The dotted-path accessors on whatever the line holds.
        for (const char* path : {"question", "answer", "reward_model.ground_truth", "extra_info.index"}) {
          try {
            (void)lmrl::data::field_text(v, path, reader.where());
          } catch (const lmrl::error& e) {
            expect_named(e, reader.where());
          }
        }
      } catch (const lmrl::error& e) {
        expect_named(e, "fuzz.jsonl:" + std::to_string(reader.line_number()) + ":");
      }
    }
  }

  // 3. (prompt, answer) examples with configurable fields.
  {
    std::istringstream in{std::string(text)};
    lmrl::data::example_reader reader(in, "fuzz.jsonl", {"question", "answer"});
    lmrl::data::example ex;
    for (int lines = 0; lines < 10000; ++lines) {
      try {
        if (!reader.next(ex)) break;
      } catch (const lmrl::error& e) {
        expect_named(e, "fuzz.jsonl:");
      }
    }
  }
  return 0;
}
