// libFuzzer target over the tokenizer.json reader (lmrl::bpe_tokenizer::from_json).
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
//     -Iinclude fuzz/tokenizer_json_fuzz.cpp -o /tmp/tokenizer_json_fuzz
//   /tmp/tokenizer_json_fuzz -max_total_time=60 -rss_limit_mb=2048 fuzz/corpus/tokenizer_json
// An input is either a tokenizer (then encoding and decoding must work) or an
// lmrl::error. Anything else is a finding: a crash, a sanitizer report, an
// exception of another type (std::bad_alloc from a huge size included), a hang.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "lmrl/data/json.hpp"
#include "lmrl/error.hpp"
#include "lmrl/model/tokenizer/bpe_tokenizer.hpp"

namespace {

[[noreturn]] void finding(const char* what, std::string_view text) {
  std::fprintf(stderr, "tokenizer_json_fuzz: %s for the text \"%.*s\"\n", what, static_cast<int>(text.size()),
               text.data());
  std::abort();
}

// True when decode(encode(s)) must give back the words of pre_tokenize(s): a
// vocabulary with every byte (nothing dropped, no unk), one token per id and
// per string, and no added tokens (which strip spaces and bypass the words).
bool round_trip_holds(const lmrl::json::value& doc, const lmrl::bpe_tokenizer& tok) {
  if (!tok.added_tokens().empty()) return false;
  const lmrl::json::value* model = doc.find("model");
  const lmrl::json::value* vocab = model ? model->find("vocab") : nullptr;
  if (vocab == nullptr || !vocab->is_object()) return false;
  std::set<std::int64_t> ids;
  std::set<std::string> keys;
  for (const auto& [key, id] : vocab->as_object())
    if (!ids.insert(id.as_int64()).second || !keys.insert(key).second) return false;
  const auto& alphabet = lmrl::byte_level_alphabet::get();
  for (int b = 0; b < 256; ++b)
    if (!tok.token_to_id(alphabet.encode(std::string(1, static_cast<char>(b))))) return false;
  return true;
}

void exercise(const lmrl::bpe_tokenizer& tok, std::string_view text, bool round_trip) {
  for (bool special_as_text : {false, true}) {
    const std::vector<lmrl::bpe_tokenizer::token_id> ids = tok.encode(text, special_as_text);
    // Every id encode gives is a token: decode must not throw.
    const std::string back = tok.decode(ids);
    const std::string skipped = tok.decode(ids, true);
    if (skipped.size() > back.size()) finding("decode(skip_special_tokens) is longer than decode", text);
    for (const auto id : ids) (void)tok.id_to_token(id);
    if (round_trip) {
      std::string words;
      for (const std::string& w : tok.pre_tokenize(text)) words += w;
      if (back != words) finding("decode(encode(s)) differs from the pre-tokenized words", text);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  lmrl::json::value doc;
  try {
    doc = lmrl::json::parse(text, "fuzz.json");
  } catch (const lmrl::error&) {
    return 0;  // not JSON: the reader said so
  }
  std::optional<lmrl::bpe_tokenizer> tok;
  try {
    tok.emplace(lmrl::json::node(doc, "fuzz.json"));
  } catch (const lmrl::error& e) {
    // A rejected file is named in the message.
    if (std::string_view(e.what()).find("fuzz.json") == std::string_view::npos)
      finding("an error message that does not name the file", e.what());
    return 0;
  }
  // from_json is parse + the constructor; check they agree once in a while.
  if (size % 16 == 0) (void)lmrl::bpe_tokenizer::from_json(text, "fuzz.json");

  const bool round_trip = round_trip_holds(doc, *tok);
  static const char* const samples[] = {
      "Hello world",
      "  two  spaces\tand a tab\n\nnew lines",
      "<think>2+2=4</think> <answer>4</answer>",
      "abc abc cab bca",
      "caf\xc3\xa9 cafe\xcc\x81 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x99\x82",  // NFC pair, CJK, emoji
      "123456789 3.14 -7",
      "\xff\xfe bad \xc3 utf8 \xe2\x82",
      "",
  };
  for (const char* s : samples) exercise(*tok, s, round_trip);
  // The file's own text is full of the vocabulary's tokens.
  exercise(*tok, text.substr(0, 512), round_trip);
  return 0;
}
