// The byte-level tokenizer of the bundled models: fixed ids, special tokens
// recognized or not, exact round trip for any bytes (invalid UTF-8 included).
#include "lmrl/model/tokenizer/byte_tokenizer.hpp"

#include <random>
#include <string>
#include <vector>

#include "support/testing.hpp"

using lmrl::byte_tokenizer;
using ids = std::vector<byte_tokenizer::token_id>;

TEST_CASE("byte_tokenizer: bytes are their own ids, specials have fixed ids") {
  CHECK(byte_tokenizer::encode("Hi!") == ids{72, 105, 33});
  CHECK(byte_tokenizer::encode("\xC3\xA9") == ids{0xC3, 0xA9});  // é is two bytes
  CHECK(byte_tokenizer::encode(std::string("\0\xff", 2)) == ids{0, 255});
  CHECK(byte_tokenizer::encode("") == ids{});
  CHECK(byte_tokenizer::encode("<think>a</think><answer>4</answer><|endoftext|><|pad|>") ==
        ids{256, 97, 257, 258, 52, 259, 260, 261});
  CHECK(byte_tokenizer::vocab_size == 262);
  CHECK(byte_tokenizer::is_special(256));
  CHECK_FALSE(byte_tokenizer::is_special(255));
  CHECK_FALSE(byte_tokenizer::is_special(262));
}

TEST_CASE("byte_tokenizer: special strings as plain bytes, and near misses") {
  CHECK(byte_tokenizer::encode("<think>", false) == ids{'<', 't', 'h', 'i', 'n', 'k', '>'});
  // "<thin>" and "<think" are not special; "<<think>" is '<' then <think>.
  CHECK(byte_tokenizer::encode("<thin>") == ids{'<', 't', 'h', 'i', 'n', '>'});
  CHECK(byte_tokenizer::encode("<think") == ids{'<', 't', 'h', 'i', 'n', 'k'});
  CHECK(byte_tokenizer::encode("<<think>") == ids{'<', 256});
  ids appended{1};
  byte_tokenizer::encode("</answer>", appended);
  CHECK(appended == ids{1, 259});
}

TEST_CASE("byte_tokenizer: decode, skip_special, bad ids") {
  CHECK(byte_tokenizer::decode(ids{256, 'x', 257, 260}) == "<think>x</think><|endoftext|>");
  CHECK(byte_tokenizer::decode(ids{256, 'x', 257, 260, 261}, true) == "x");
  CHECK_THROWS_WITH_AS(byte_tokenizer::decode(ids{1, 262}),
                       doctest::Contains("byte_tokenizer::decode: ids[1] = 262 is outside [0, 262)"), lmrl::error);
  CHECK_THROWS_WITH_AS(byte_tokenizer::decode(ids{-1}), doctest::Contains("ids[0] = -1"), lmrl::error);
}

TEST_CASE("byte_tokenizer: exact round trip of random byte strings, invalid UTF-8 included") {
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int> byte(0, 255), len(0, 64), pick(0, 9);
  const std::string pieces[] = {"<think>", "</think>", "<answer>", "</answer>", "<|endoftext|>", "<|pad|>", "<",
                                "\xC3", "\xE4\xB8\xAD", "\xF0\x9F"};
  for (int trial = 0; trial < 2000; ++trial) {
    std::string s;
    const int n = len(rng);
    for (int k = 0; k < n; ++k) {
      if (pick(rng) == 0)
        s += pieces[static_cast<std::size_t>(pick(rng))];
      else
        s += static_cast<char>(byte(rng));
    }
    const ids with = byte_tokenizer::encode(s, true);
    const ids without = byte_tokenizer::encode(s, false);
    CHECK(byte_tokenizer::decode(with) == s);
    CHECK(byte_tokenizer::decode(without) == s);
    CHECK(without.size() == s.size());
    bool all_bytes = true;
    for (auto id : without) all_bytes = all_bytes && id >= 0 && id < 256;
    CHECK(all_bytes);
  }
}
