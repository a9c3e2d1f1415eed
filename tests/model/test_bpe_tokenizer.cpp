// The byte-level BPE tokenizer: a tiny hand-made tokenizer.json checked on
// paper, added-token rules, bad files, and the real Qwen3 and DeepSeek-V3
// tokenizers against the ids of the Hugging Face `tokenizers` library
// (tests/data/tokenizer_*.txt, written by tools/make_tokenizer_reference.py).
#include "lmrl/model/tokenizer/bpe_tokenizer.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/testing.hpp"

using lmrl::bpe_tokenizer;
using ids = std::vector<bpe_tokenizer::token_id>;

namespace {

// vocab: a b c Ġ(space) ab abc bc Ġa y; merges by rank: 0 "a b", 1 "Ġ a", 2 ["ab","c"], 3 "b c".
std::string tiny(const std::string& added = "[]", const std::string& pre = R"({"type": "ByteLevel", "add_prefix_space": false, "use_regex": true})",
                 const std::string& merges = R"(["a b", "Ġ a", ["ab", "c"], "b c"])",
                 const std::string& model_type = "BPE", const std::string& normalizer = "null") {
  return R"({"version": "1.0", "added_tokens": )" + added + R"(, "normalizer": )" + normalizer +
         R"(, "pre_tokenizer": )" + pre + R"(, "decoder": {"type": "ByteLevel"}, "model": {"type": ")" + model_type +
         R"(", "vocab": {"a": 0, "b": 1, "c": 2, "Ġ": 3, "ab": 4, "abc": 5, "bc": 6, "Ġa": 7, "y": 10}, "merges": )" +
         merges + "}}";
}

std::string shared_dir() {
#ifdef LMRL_SHARED_DIR
  return LMRL_SHARED_DIR;
#else
  return "../shared";
#endif
}

}  // namespace

TEST_CASE("bpe_tokenizer: merges by rank on a hand-made vocabulary") {
  const auto tok = bpe_tokenizer::from_json(tiny());
  // "abc": pairs (a,b) rank 0 and (b,c) rank 3 -> merge a b first -> [ab c];
  //        (ab,c) rank 2 -> [abc] = 5.
  CHECK(tok.encode("abc") == ids{5});
  // " abc": Ġ a b c; (a,b) rank 0 beats (Ġ,a) rank 1 -> Ġ ab c; (Ġ,ab) is no merge,
  //         (ab,c) rank 2 -> Ġ abc = [3, 5].
  CHECK(tok.encode("abc abc") == ids{5, 3, 5});
  // " a": (Ġ,a) rank 1 -> Ġa = 7.  "bc": rank 3 -> 6.  "cab": c, (a,b) -> c ab = [2, 4].
  CHECK(tok.encode(" a") == ids{7});
  CHECK(tok.encode("bc") == ids{6});
  CHECK(tok.encode("cab") == ids{2, 4});
  // 'd' is not in the vocabulary and there is no unk_token: the library drops it.
  CHECK(tok.encode("dab") == ids{4});
  CHECK(tok.encode("") == ids{});
  CHECK(tok.decode(ids{5, 3, 5}) == "abc abc");
  CHECK(tok.decode(ids{7, 6}) == " abc");
  CHECK(tok.vocab_size() == 11);
  CHECK(tok.token_to_id("Ġa") == 7);
  CHECK_FALSE(tok.token_to_id("zz").has_value());
  CHECK(tok.id_to_token(7) == "Ġa");
  CHECK_THROWS_WITH_AS(tok.decode(ids{8}), doctest::Contains("ids[0] = 8 is not a token id"), lmrl::error);
  CHECK_THROWS_WITH_AS(tok.decode(ids{11}), doctest::Contains("is not a token id"), lmrl::error);
  // Rank order matters: with "b c" first, "abc" -> a bc = [0, 6].
  const auto other = bpe_tokenizer::from_json(tiny("[]", R"({"type": "ByteLevel", "use_regex": true})",
                                                    R"(["b c", "a b", "Ġ a", "ab c"])"));
  CHECK(other.encode("abc") == ids{0, 6});
}

TEST_CASE("bpe_tokenizer: ByteLevel add_prefix_space and use_regex=false") {
  // add_prefix_space: "abc" is seen as " abc" -> Ġ abc.
  const auto prefixed = bpe_tokenizer::from_json(
      tiny("[]", R"({"type": "ByteLevel", "add_prefix_space": true, "use_regex": true})"));
  CHECK(prefixed.encode("abc") == ids{3, 5});
  CHECK(prefixed.encode(" abc") == ids{3, 5});
  // use_regex false: one word "abc abc": a b c Ġ a b c -> (a,b)x2 -> ab c Ġ ab c -> (ab,c)x2 -> abc Ġ abc.
  const auto whole = bpe_tokenizer::from_json(tiny("[]", R"({"type": "ByteLevel", "use_regex": false})"));
  CHECK(whole.encode("abc abc") == ids{5, 3, 5});
  // " ab": one word Ġ a b: (a,b) rank 0 first -> Ġ ab (no Ġa!) = [3, 4]; with the
  // regex the word is the same, so the same ids.
  CHECK(whole.encode(" ab") == ids{3, 4});
}

TEST_CASE("bpe_tokenizer: added tokens, special or not, lstrip/rstrip/single_word") {
  const std::string added = R"([
    {"id": 8, "content": "<x>", "single_word": false, "lstrip": true, "rstrip": false, "normalized": false, "special": true},
    {"id": 9, "content": "yy", "single_word": true, "lstrip": false, "rstrip": true, "normalized": false, "special": false},
    {"id": 11, "content": "<x>y", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": false}])";
  const auto tok = bpe_tokenizer::from_json(tiny(added));
  // lstrip: the space before <x> goes with it: "a" <x> " b"... " b" is Ġ b = [3, 1].
  CHECK(tok.encode("a <x> b") == ids{0, 8, 3, 1});
  // leftmost-longest: "<x>y" (11) wins over "<x>" (8).
  CHECK(tok.encode("<x>yb") == ids{11, 1});
  // single_word: "ayy" is inside a word, so yy is plain text: a y y.
  CHECK(tok.encode("ayy") == ids{0, 10, 10});
  // rstrip: the spaces after yy go with it.
  CHECK(tok.encode("a yy  b") == ids{0, 3, 9, 1});
  // encode_special_tokens: <x> is text; '<', 'x', '>' are not in the vocabulary and are dropped.
  CHECK(tok.encode("a<x>", true) == ids{0});
  CHECK(tok.decode(ids{0, 8, 9}) == "a<x>yy");
  CHECK(tok.decode(ids{0, 8, 9}, true) == "ayy");
  CHECK(tok.is_special(8));
  CHECK_FALSE(tok.is_special(9));
  CHECK(tok.token_to_id("<x>") == 8);
  CHECK(tok.id_to_token(11) == "<x>y");
  CHECK(tok.added_tokens().size() == 3);
  CHECK(tok.vocab_size() == 12);
}

TEST_CASE("bpe_tokenizer: Split pre-tokenizers and the NFC normalizer") {
  const auto tok = bpe_tokenizer::from_json(
      tiny("[]",
           R"({"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"String": "b"}, "behavior": "Isolated", "invert": false},
               {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]})",
           R"(["a b", "Ġ a", ["ab", "c"], "b c"])", "BPE", R"({"type": "NFC"})"));
  // Splitting on "b" isolates it: "abc" -> "a" "b" "c", no merge can cross.
  CHECK(tok.encode("abc") == ids{0, 1, 2});
  CHECK(tok.pre_tokenize("abcab") == std::vector<std::string>{"a", "b", "ca", "b"});
  CHECK(tok.normalizes_nfc());
  CHECK(tok.normalize("e\xCC\x81") == "\xC3\xA9");  // e + U+0301 -> é
}

TEST_CASE("bpe_tokenizer: malformed tokenizer.json files give clear errors") {
  using lmrl::error;
  const std::string bytelevel = R"({"type": "ByteLevel"})";
  CHECK_THROWS_WITH_AS(bpe_tokenizer::from_json(tiny("[]", bytelevel, "[]", "WordPiece")),
                       doctest::Contains("tokenizer.json: model.type: unsupported model type \"WordPiece\""), error);
  CHECK_THROWS_WITH_AS(bpe_tokenizer::from_json(tiny("[]", bytelevel, "[\"a b\", 3]")),
                       doctest::Contains("tokenizer.json: model.merges[1]: expected a string or a 2-array, got a number"),
                       error);
  CHECK_THROWS_WITH_AS(bpe_tokenizer::from_json(tiny("[]", bytelevel, "[[\"a\", \"b\", \"c\"]]")),
                       doctest::Contains("model.merges[0]: expected a string or a 2-array, got an array of size 3"), error);
  CHECK_THROWS_WITH_AS(bpe_tokenizer::from_json(tiny("[]", bytelevel, "[\"ab\"]")),
                       doctest::Contains("model.merges[0]: expected \"a b\""), error);
  CHECK_THROWS_WITH_AS(bpe_tokenizer::from_json(tiny("[]", bytelevel, "[\"a q\"]")),
                       doctest::Contains("model.merges[0]: token \"q\" is not in model.vocab"), error);
  CHECK_THROWS_WITH_AS(bpe_tokenizer::from_json(tiny("[]", bytelevel, "[\"c a\"]")),
                       doctest::Contains("model.merges[0]: merged token \"ca\" is not in model.vocab"), error);
  CHECK_THROWS_WITH_AS(bpe_tokenizer::from_json(tiny("[]", bytelevel, "{}")),
                       doctest::Contains("model.merges: expected an array, got an object"), error);
  CHECK_THROWS_WITH_AS(bpe_tokenizer::from_json(R"({"model": {"type": "BPE", "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}})"),
                       doctest::Contains("model: missing field \"vocab\""), error);
  CHECK_THROWS_WITH_AS(bpe_tokenizer::from_json(R"({"pre_tokenizer": null})"),
                       doctest::Contains("(root): missing field \"model\""), error);
  CHECK_THROWS_WITH_AS(bpe_tokenizer::from_json(R"({"model": {"type": "BPE", "vocab": {"a": "0"}, "merges": []}})"),
                       doctest::Contains("model.vocab.a: expected a number, got a string"), error);
  CHECK_THROWS_WITH_AS(bpe_tokenizer::from_json(tiny("[]", "null")),
                       doctest::Contains("missing pre_tokenizer: only byte-level BPE"), error);
  CHECK_THROWS_WITH_AS(
      bpe_tokenizer::from_json(tiny("[]", R"({"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated"})")),
      doctest::Contains("pre_tokenizer.pattern.Regex: unsupported Split regex"), error);
  CHECK_THROWS_WITH_AS(bpe_tokenizer::from_json(tiny("[]", R"({"type": "Whitespace"})")),
                       doctest::Contains("unsupported pre-tokenizer type \"Whitespace\""), error);
  CHECK_THROWS_WITH_AS(
      bpe_tokenizer::from_json(tiny("[]", R"({"type": "Split", "pattern": {"String": "b"}, "behavior": "Isolated"})")),
      doctest::Contains("no ByteLevel pre-tokenizer"), error);
  CHECK_THROWS_WITH_AS(bpe_tokenizer::from_json(tiny("[]", bytelevel, "[]", "BPE", R"({"type": "NFKC"})")),
                       doctest::Contains("normalizer.type: unsupported normalizer type \"NFKC\""), error);
  CHECK_THROWS_WITH_AS(bpe_tokenizer::from_json(tiny(R"([{"content": "x"}])")),
                       doctest::Contains("added_tokens[0]: missing field \"id\""), error);
  CHECK_THROWS_WITH_AS(bpe_tokenizer::from_json(tiny(R"([{"id": -1, "content": "x"}])")),
                       doctest::Contains("added_tokens[0].id: token id -1 is out of range"), error);
  CHECK_THROWS_WITH_AS(bpe_tokenizer::from_json("{\"model\": [1,]}"), doctest::Contains("tokenizer.json:1:14"), error);
  CHECK_THROWS_WITH_AS(bpe_tokenizer::from_file("/nonexistent/tokenizer.json"), doctest::Contains("cannot open"), error);
}

namespace {

struct reference_case {
  std::string text;
  std::string normalized;
  ids expected;
};

std::vector<reference_case> load_cases(const std::string& file) {
  const std::string path = std::string(LMRL_TEST_DATA_DIR) + "/" + file;
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "missing reference file ", path, " (run tools/make_tokenizer_reference.py)");
  std::vector<reference_case> cases;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line.rfind("t ", 0) == 0) {
      cases.push_back({});
      cases.back().text = lmrl::json::parse(line.substr(2), path).as_string();
      cases.back().normalized = cases.back().text;
    } else if (line.rfind("n ", 0) == 0) {
      cases.back().normalized = lmrl::json::parse(line.substr(2), path).as_string();
    } else if (line.rfind("i", 0) == 0) {
      std::istringstream s(line.substr(1));
      bpe_tokenizer::token_id id;
      while (s >> id) cases.back().expected.push_back(id);
    }
  }
  return cases;
}

void check_reference(const std::string& name) {
  const std::string path = shared_dir() + "/tokenizers/" + name + "/tokenizer.json";
  REQUIRE_MESSAGE(std::filesystem::exists(path), "the shared tokenizer file is missing: ", path,
                  " (the tests read ../shared/tokenizers next to the repository)");
  const auto tok = bpe_tokenizer::from_file(path);
  const auto cases = load_cases("tokenizer_" + name + ".txt");
  REQUIRE(cases.size() > 3000);
  int mismatches = 0, round_trip_failures = 0;
  for (const auto& c : cases) {
    const ids got = tok.encode(c.text);
    if (got != c.expected && ++mismatches <= 10) {
      INFO("text: ", lmrl::json::value(c.text).as_string());
      CHECK(got == c.expected);
    }
    if (tok.decode(got) != c.normalized && ++round_trip_failures <= 10) CHECK(tok.decode(got) == c.normalized);
    if (tok.normalize(c.text) != c.normalized) CHECK(tok.normalize(c.text) == c.normalized);
  }
  CHECK(mismatches == 0);
  CHECK(round_trip_failures == 0);
}

}  // namespace

TEST_CASE("bpe_tokenizer: Qwen3 ids equal the tokenizers library's on the reference corpus") {
  check_reference("qwen3");
}

TEST_CASE("bpe_tokenizer: DeepSeek-V3 ids equal the tokenizers library's on the reference corpus") {
  check_reference("deepseek_v3");
}

TEST_CASE("bpe_tokenizer: a huge token id is an error, not a huge allocation (found by fuzz/tokenizer_json_fuzz)") {
  using lmrl::error;
  // tiny() has 9 vocabulary tokens: ids up to 9 + 2^20 - 1 = 1048584 are accepted
  // (holes are allowed), beyond that the dense id tables would be the file's fault.
  std::string huge = tiny();
  huge.replace(huge.find("\"y\": 10"), 7, "\"y\": 2000000000");
  CHECK_THROWS_WITH_AS(bpe_tokenizer::from_json(huge),
                       doctest::Contains("model.vocab.y: token id 2000000000 is out of range (0 to 1048584 for 9 tokens)"),
                       error);
  std::string sparse = tiny();
  sparse.replace(sparse.find("\"y\": 10"), 7, "\"y\": 1048584");
  const auto tok = bpe_tokenizer::from_json(sparse);
  CHECK(tok.vocab_size() == 1048585);
  CHECK(tok.encode("yab") == ids{1048584, 4});
  // The added tokens count, and their ids have the same limit.
  CHECK_THROWS_WITH_AS(bpe_tokenizer::from_json(tiny(R"([{"id": 1048586, "content": "<x>"}])")),
                       doctest::Contains("added_tokens[0].id: token id 1048586 is out of range (0 to 1048585 for 10 tokens)"),
                       error);
  CHECK(bpe_tokenizer::from_json(tiny(R"([{"id": 1048585, "content": "<x>"}])")).encode("<x>") == ids{1048585});
}
