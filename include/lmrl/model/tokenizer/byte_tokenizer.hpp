// byte_tokenizer — the tokenizer of the bundled small models: one id per byte,
// plus six special tokens for the R1 recipe.
//
//   id 0..255  the byte with that value (any bytes, valid UTF-8 or not)
//   256 <think>   257 </think>   258 <answer>   259 </answer>
//   260 <|endoftext|> (end of sequence)   261 <|pad|> (padding)
//
// encode() recognizes the special-token strings in the text (parse_special,
// the default) or treats them as plain bytes; decode() writes each special
// token back as its string, so decode(encode(s)) == s for every byte string s
// in both modes. The ids are fixed: a checkpoint of a bundled model depends on them.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lmrl/error.hpp"

namespace lmrl {

struct byte_tokenizer {
  using token_id = std::int32_t;

  static constexpr token_id think = 256;
  static constexpr token_id think_end = 257;
  static constexpr token_id answer = 258;
  static constexpr token_id answer_end = 259;
  static constexpr token_id eos = 260;
  static constexpr token_id pad = 261;
  static constexpr token_id vocab_size = 262;
  static constexpr token_id first_special = 256;

  // The text of each special token, indexed by id - first_special.
  static constexpr std::array<std::string_view, 6> special_texts = {
      "<think>", "</think>", "<answer>", "</answer>", "<|endoftext|>", "<|pad|>"};

  static constexpr bool is_special(token_id id) { return id >= first_special && id < vocab_size; }

  // Appends the ids of text to out.
  static void encode(std::string_view text, std::vector<token_id>& out, bool parse_special = true) {
    out.reserve(out.size() + text.size());
    for (std::size_t i = 0; i < text.size();) {
      if (parse_special && text[i] == '<') {
        const token_id id = special_at(text.substr(i));
        if (id >= 0) {
          out.push_back(id);
          i += special_texts[static_cast<std::size_t>(id - first_special)].size();
          continue;
        }
      }
      out.push_back(static_cast<token_id>(static_cast<unsigned char>(text[i])));
      ++i;
    }
  }
  static std::vector<token_id> encode(std::string_view text, bool parse_special = true) {
    std::vector<token_id> out;
    encode(text, out, parse_special);
    return out;
  }

  // Appends the bytes of ids to out; special tokens as their text unless
  // skip_special. An id outside [0, vocab_size) is an error.
  static void decode(std::span<const token_id> ids, std::string& out, bool skip_special = false) {
    for (std::size_t k = 0; k < ids.size(); ++k) {
      const token_id id = ids[k];
      if (id < 0 || id >= vocab_size)
        detail::fail("byte_tokenizer::decode: ids[", k, "] = ", id, " is outside [0, ", vocab_size, ")");
      if (id < first_special)
        out += static_cast<char>(static_cast<unsigned char>(id));
      else if (!skip_special)
        out += special_texts[static_cast<std::size_t>(id - first_special)];
    }
  }
  static std::string decode(std::span<const token_id> ids, bool skip_special = false) {
    std::string out;
    decode(ids, out, skip_special);
    return out;
  }

  // The special token whose text starts s, or -1. No special text is a prefix
  // of another, so the first match is the only one.
  static token_id special_at(std::string_view s) {
    for (std::size_t k = 0; k < special_texts.size(); ++k)
      if (s.starts_with(special_texts[k])) return first_special + static_cast<token_id>(k);
    return -1;
  }
};

}  // namespace lmrl
