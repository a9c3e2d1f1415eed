// bpe_tokenizer — a Hugging Face tokenizer.json with a byte-level BPE model
// (Qwen2/Qwen3, DeepSeek-V3/R1, Llama 3, GPT-2 style), encoding exactly as
// `tokenizers.Tokenizer.from_file(path).encode(text, add_special_tokens=False).ids`.
//
//   auto tok = lmrl::bpe_tokenizer::from_file("qwen3/tokenizer.json");
//   std::vector<std::int32_t> ids = tok.encode("<think>2+2=4</think>");
//   std::string text = tok.decode(ids);
//
// The pipeline, as in the Rust library:
//   1. added tokens with normalized=false are found in the raw text, leftmost-
//      longest, with their single_word / lstrip / rstrip rules;
//   2. the text between them is normalized (NFC or nothing);
//   3. added tokens with normalized=true are found in the normalized text;
//   4. the rest is pre-tokenized (Split regexes, then ByteLevel) into words;
//   5. each word is BPE-merged by merge rank (lowest rank first, leftmost on ties).
// encode_special_tokens=true treats special added tokens as plain text (the
// library's `encode_special_tokens`).
//
// Supported tokenizer.json parts (anything else is a clear lmrl::error):
// model BPE (no dropout, empty continuing_subword_prefix / end_of_word_suffix,
// ignore_merges, unk_token); normalizer null, NFC, Sequence of those;
// pre_tokenizer Sequence of Split (the patterns of pre_tokenizer.hpp or a
// String, behavior Isolated, invert false) ending with ByteLevel
// (add_prefix_space, use_regex); decoder ByteLevel or null. Text that is not
// valid UTF-8 is accepted (each bad byte is a symbol character; see unicode.hpp).
//
// decode() returns the exact bytes (the library replaces invalid UTF-8 with
// U+FFFD); decode(encode(s)) == normalize(s) for every s.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "lmrl/data/json.hpp"
#include "lmrl/error.hpp"
#include "lmrl/model/tokenizer/pre_tokenizer.hpp"
#include "lmrl/model/tokenizer/unicode.hpp"

namespace lmrl {

// GPT-2's map between bytes and printable characters (the "ByteLevel" alphabet):
// printable Latin-1 bytes map to themselves, the others to U+0100 + k.
struct byte_level_alphabet {
  std::array<char32_t, 256> byte_to_char{};
  std::unordered_map<char32_t, std::uint8_t> char_to_byte;

  byte_level_alphabet() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      byte_to_char[static_cast<std::size_t>(b)] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
      char_to_byte[byte_to_char[static_cast<std::size_t>(b)]] = static_cast<std::uint8_t>(b);
    }
  }
  static const byte_level_alphabet& get() {
    static const byte_level_alphabet a;
    return a;
  }
  // Raw bytes -> the byte-level string (what tokenizer.json's vocab holds).
  std::string encode(std::string_view bytes) const {
    std::string out;
    for (unsigned char b : bytes) unicode::append_utf8(out, byte_to_char[b]);
    return out;
  }
  // Byte-level string -> raw bytes; nullopt when a character is not in the alphabet.
  std::optional<std::string> decode(std::string_view token) const {
    std::string out;
    for (std::size_t i = 0; i < token.size();) {
      const auto d = unicode::decode_utf8(token, i);
      i += d.length;
      const auto it = char_to_byte.find(d.cp);
      if (it == char_to_byte.end()) return std::nullopt;
      out += static_cast<char>(it->second);
    }
    return out;
  }
};

struct added_token {
  std::int32_t id = 0;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;  // the library's default for a non-special token
  bool special = false;
};

class bpe_tokenizer {
 public:
  using token_id = std::int32_t;

  static bpe_tokenizer from_file(const std::string& path) {
    const json::value doc = json::parse_file(path);
    return bpe_tokenizer(json::node(doc, path));
  }
  static bpe_tokenizer from_json(std::string_view text, std::string_view source = "tokenizer.json") {
    const json::value doc = json::parse(text, source);
    return bpe_tokenizer(json::node(doc, std::string(source)));
  }
  explicit bpe_tokenizer(const json::node& root) { load(root); }

  // Appends the ids of text to out.
  void encode(std::string_view text, std::vector<token_id>& out, bool encode_special_tokens = false) const {
    scratch s;
    find_added(text, raw_trie_, encode_special_tokens, out, [&](std::string_view segment) {
      if (nfc_) {
        std::string normalized;
        unicode::nfc(segment, normalized);
        find_added(normalized, normalized_trie_, encode_special_tokens, out,
                   [&](std::string_view piece) { encode_plain(piece, out, s); });
      } else {
        find_added(segment, normalized_trie_, encode_special_tokens, out,
                   [&](std::string_view piece) { encode_plain(piece, out, s); });
      }
    });
  }
  std::vector<token_id> encode(std::string_view text, bool encode_special_tokens = false) const {
    std::vector<token_id> out;
    encode(text, out, encode_special_tokens);
    return out;
  }

  // The bytes of ids (added tokens as their content); special tokens left out
  // with skip_special_tokens. An id with no token is an error.
  std::string decode(std::span<const token_id> ids, bool skip_special_tokens = false) const {
    std::string out;
    for (std::size_t k = 0; k < ids.size(); ++k) {
      const token_id id = ids[k];
      if (id < 0 || static_cast<std::size_t>(id) >= decoded_.size() || !has_token_[static_cast<std::size_t>(id)])
        detail::fail("bpe_tokenizer::decode: ids[", k, "] = ", id, " is not a token id (vocabulary size ",
                     decoded_.size(), ")");
      if (skip_special_tokens && special_[static_cast<std::size_t>(id)]) continue;
      out += decoded_[static_cast<std::size_t>(id)];
    }
    return out;
  }

  // The normalizer alone (NFC or identity).
  std::string normalize(std::string_view text) const { return nfc_ ? unicode::nfc(text) : std::string(text); }

  // The pre-tokenizer alone: the words (raw bytes) BPE would see for a text
  // without added tokens, after normalization.
  std::vector<std::string> pre_tokenize(std::string_view text) const {
    std::vector<std::string> words;
    const std::string normalized = normalize(text);
    scratch s;
    split_words(normalized, s);
    for (const auto& p : s.pieces) words.emplace_back(s.view.substr(p.begin, p.end - p.begin));
    return words;
  }

  // One more than the largest id.
  std::size_t vocab_size() const { return decoded_.size(); }
  // The id of a token: an added token's content or a model token in its
  // byte-level spelling ("Ġthe").
  std::optional<token_id> token_to_id(std::string_view token) const {
    for (const auto& a : added_)
      if (a.content == token) return a.id;
    const auto it = vocab_.find(std::string(token));
    if (it == vocab_.end()) return std::nullopt;
    return it->second;
  }
  // The token of an id as tokenizer.json spells it.
  std::string id_to_token(token_id id) const {
    if (id < 0 || static_cast<std::size_t>(id) >= decoded_.size() || !has_token_[static_cast<std::size_t>(id)])
      detail::fail("bpe_tokenizer::id_to_token: ", id, " is not a token id");
    for (const auto& a : added_)
      if (a.id == id) return a.content;
    return model_tokens_[static_cast<std::size_t>(id)];
  }
  bool is_special(token_id id) const {
    return id >= 0 && static_cast<std::size_t>(id) < special_.size() && special_[static_cast<std::size_t>(id)];
  }
  const std::vector<added_token>& added_tokens() const { return added_; }
  bool normalizes_nfc() const { return nfc_; }

 private:
  // ------------------------------------------------------------ loading
  void load(const json::node& root) {
    const json::node model = root.at("model");
    const std::string& type = model.has("type") ? model.at("type").as_string() : std::string("BPE");
    if (type != "BPE") model.at("type").fail("unsupported model type \"", type, "\" (only BPE is supported)");
    json::node opt = model;
    if (model.maybe("dropout", opt) && opt.as_double() != 0.0) opt.fail("BPE dropout is not supported");
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (model.maybe(key, opt) && !opt.as_string().empty()) opt.fail("a non-empty value is not supported");
    if (model.maybe("ignore_merges", opt)) ignore_merges_ = opt.as_bool();
    if (model.maybe("byte_fallback", opt) && opt.as_bool()) opt.fail("byte_fallback is not supported");
    if (model.maybe("fuse_unk", opt)) fuse_unk_ = opt.as_bool();

    const byte_level_alphabet& alphabet = byte_level_alphabet::get();
    // vocab
    const json::node vocab = model.at("vocab");
    // Ids index dense tables (id -> token), so an id far beyond the number of
    // tokens in the file (a corrupt file: {"a": 2000000000}) would allocate
    // tens of gigabytes. Real vocabularies are dense; allow 2^20 unused ids.
    std::size_t tokens_in_file = vocab.as_object().size();
    if (json::node a = root; root.maybe("added_tokens", a)) tokens_in_file += a.size();
    const auto id_limit = static_cast<std::int64_t>(std::min<std::size_t>(tokens_in_file + (std::size_t{1} << 20),
                                                                          std::size_t{INT32_MAX} + 1));
    std::size_t size = 0;
    for (const auto& m : vocab.as_object()) {
      const std::int64_t id = vocab.member_value(m).as_int64();
      if (id < 0 || id >= id_limit)
        vocab.member_value(m).fail("token id ", id, " is out of range (0 to ", id_limit - 1, " for ", tokens_in_file,
                                   " tokens)");
      size = std::max(size, static_cast<std::size_t>(id) + 1);
    }
    model_tokens_.assign(size, std::string());
    vocab_.reserve(vocab.size() * 2);
    for (const auto& m : vocab.as_object()) {
      const auto id = static_cast<token_id>(vocab.member_value(m).as_int64());
      vocab_[m.first] = id;
      model_tokens_[static_cast<std::size_t>(id)] = m.first;
    }
    byte_ids_.fill(-1);
    for (int b = 0; b < 256; ++b) {
      const auto it = vocab_.find(alphabet.encode(std::string(1, static_cast<char>(b))));
      if (it != vocab_.end()) byte_ids_[static_cast<std::size_t>(b)] = it->second;
    }
    if (model.maybe("unk_token", opt)) {
      const auto it = vocab_.find(opt.as_string());
      if (it == vocab_.end()) opt.fail("unk_token \"", opt.as_string(), "\" is not in model.vocab");
      unk_id_ = it->second;
    }
    // merges: "a b" strings or ["a", "b"] pairs; the rank is the position.
    const json::node merges = model.at("merges");
    merges.expect(json::kind::array);
    merges_.reserve(merges.size());
    for (std::size_t r = 0; r < merges.size(); ++r) {
      const json::node m = merges[r];
      std::string a, b;
      if (m.type() == json::kind::string) {
        const std::string& s = m.as_string();
        const std::size_t space = s.find(' ');
        if (space == std::string::npos) m.fail("expected \"a b\" (two tokens separated by a space), got \"", s, "\"");
        a = s.substr(0, space);
        b = s.substr(space + 1);
      } else if (m.type() == json::kind::array && m.size() == 2) {
        a = m[0].as_string();
        b = m[1].as_string();
      } else {
        m.fail("expected a string or a 2-array, got ", json::kind_name(m.type()),
               m.type() == json::kind::array ? " of size " + std::to_string(m.size()) : std::string());
      }
      const auto ia = vocab_.find(a);
      if (ia == vocab_.end()) m.fail("token \"", a, "\" is not in model.vocab");
      const auto ib = vocab_.find(b);
      if (ib == vocab_.end()) m.fail("token \"", b, "\" is not in model.vocab");
      const auto ic = vocab_.find(a + b);
      if (ic == vocab_.end()) m.fail("merged token \"", a + b, "\" is not in model.vocab");
      merges_.insert(ia->second, ib->second, static_cast<std::uint32_t>(r), ic->second);  // a later duplicate wins
    }

    load_normalizer(root);
    load_pre_tokenizer(root);
    json::node dec = root;
    if (root.maybe("decoder", dec)) {
      const std::string& t = dec.at("type").as_string();
      if (t != "ByteLevel") dec.at("type").fail("unsupported decoder type \"", t, "\" (only ByteLevel)");
    }

    // added tokens
    json::node added = root;
    std::vector<added_token> list;
    if (root.maybe("added_tokens", added)) {
      for (std::size_t k = 0; k < added.size(); ++k) {
        const json::node a = added[k];
        added_token t;
        const std::int64_t id = a.at("id").as_int64();
        if (id < 0 || id >= id_limit)
          a.at("id").fail("token id ", id, " is out of range (0 to ", id_limit - 1, " for ", tokens_in_file, " tokens)");
        t.id = static_cast<token_id>(id);
        t.content = a.at("content").as_string();
        json::node f = a;
        if (a.maybe("special", f)) t.special = f.as_bool();
        t.normalized = !t.special;
        if (a.maybe("single_word", f)) t.single_word = f.as_bool();
        if (a.maybe("lstrip", f)) t.lstrip = f.as_bool();
        if (a.maybe("rstrip", f)) t.rstrip = f.as_bool();
        if (a.maybe("normalized", f)) t.normalized = f.as_bool();
        if (t.content.empty()) continue;  // the library ignores empty tokens
        // As the library does: a content already in the model vocabulary keeps its model id.
        if (const auto it = vocab_.find(t.content); it != vocab_.end()) t.id = it->second;
        bool duplicate = false;
        for (const auto& o : list)
          duplicate = duplicate || (o.content == t.content && o.single_word == t.single_word && o.lstrip == t.lstrip &&
                                    o.rstrip == t.rstrip && o.normalized == t.normalized && o.special == t.special);
        if (!duplicate) list.push_back(t);
      }
    }
    added_ = std::move(list);

    // id -> bytes for decode
    std::size_t total = model_tokens_.size();
    for (const auto& a : added_) total = std::max(total, static_cast<std::size_t>(a.id) + 1);
    decoded_.assign(total, std::string());
    has_token_.assign(total, false);
    special_.assign(total, false);
    for (const auto& [tok, id] : vocab_) {
      auto bytes = alphabet.decode(tok);
      decoded_[static_cast<std::size_t>(id)] = bytes ? *bytes : tok;
      has_token_[static_cast<std::size_t>(id)] = true;
    }
    for (const auto& a : added_) {
      auto bytes = alphabet.decode(a.content);
      decoded_[static_cast<std::size_t>(a.id)] = bytes ? *bytes : a.content;
      has_token_[static_cast<std::size_t>(a.id)] = true;
      special_[static_cast<std::size_t>(a.id)] = a.special;
    }
    // Matching tries: normalized=false tokens on the raw text, the others on
    // the normalized text (their content normalized too).
    for (std::size_t k = 0; k < added_.size(); ++k) {
      const added_token& a = added_[k];
      if (a.normalized)
        normalized_trie_.insert(normalize(a.content), k);
      else
        raw_trie_.insert(a.content, k);
    }
    cache_ = std::make_unique<word_cache>();
  }

  void load_normalizer(const json::node& root) {
    json::node n = root;
    if (root.maybe("normalizer", n)) add_normalizer(n);
  }
  void add_normalizer(const json::node& n) {
    const std::string& t = n.at("type").as_string();
    if (t == "NFC") {
      nfc_ = true;
    } else if (t == "Sequence") {
      const json::node list = n.at("normalizers");
      for (std::size_t k = 0; k < list.size(); ++k) add_normalizer(list[k]);
      list.expect(json::kind::array);
    } else {
      n.at("type").fail("unsupported normalizer type \"", t, "\" (supported: NFC, Sequence)");
    }
  }

  struct split_step {
    pretok::pattern pattern;
    std::string literal;
  };

  void load_pre_tokenizer(const json::node& root) {
    json::node p = root;
    if (!root.maybe("pre_tokenizer", p)) root.fail("missing pre_tokenizer: only byte-level BPE is supported");
    std::vector<json::node> steps;
    if (p.at("type").as_string() == "Sequence") {
      const json::node list = p.at("pretokenizers");
      for (std::size_t k = 0; k < list.size(); ++k) steps.push_back(list[k]);
    } else {
      steps.push_back(p);
    }
    bool byte_level = false;
    for (const json::node& s : steps) {
      const std::string& t = s.at("type").as_string();
      if (byte_level) s.fail("a pre-tokenizer after ByteLevel is not supported");
      if (t == "Split") {
        const std::string& behavior = s.at("behavior").as_string();
        if (behavior != "Isolated") s.at("behavior").fail("unsupported Split behavior \"", behavior, "\" (only Isolated)");
        json::node inv = s;
        if (s.maybe("invert", inv) && inv.as_bool()) inv.fail("invert: true is not supported");
        const json::node pat = s.at("pattern");
        json::node v = pat;
        if (pat.maybe("Regex", v)) {
          const std::string& re = v.as_string();
          split_step step{pretok::pattern::literal, {}};
          if (re == pretok::qwen2_regex)
            step.pattern = pretok::pattern::qwen2;
          else if (re == pretok::llama3_regex)
            step.pattern = pretok::pattern::llama3;
          else if (re == pretok::gpt2_regex)
            step.pattern = pretok::pattern::gpt2;
          else if (re == pretok::digits3_regex)
            step.pattern = pretok::pattern::digits3;
          else if (re == pretok::cjk_regex)
            step.pattern = pretok::pattern::cjk;
          else if (re == pretok::deepseek_regex)
            step.pattern = pretok::pattern::deepseek;
          else
            v.fail("unsupported Split regex (not one of the Qwen2/Llama3/GPT-2/DeepSeek-V3 patterns): ", re);
          splits_.push_back(step);
        } else if (pat.maybe("String", v)) {
          splits_.push_back({pretok::pattern::literal, v.as_string()});
        } else {
          pat.fail("expected {\"Regex\": ...} or {\"String\": ...}");
        }
      } else if (t == "ByteLevel") {
        byte_level = true;
        json::node f = s;
        add_prefix_space_ = s.maybe("add_prefix_space", f) && f.as_bool();
        use_regex_ = !s.maybe("use_regex", f) || f.as_bool();  // the library's default is true
      } else {
        s.at("type").fail("unsupported pre-tokenizer type \"", t, "\" (supported: Sequence, Split, ByteLevel)");
      }
    }
    if (!byte_level) p.fail("no ByteLevel pre-tokenizer: only byte-level BPE is supported");
  }

  // ------------------------------------------------------------ added tokens
  // A byte trie of added-token contents for leftmost-longest matching.
  struct trie {
    std::vector<std::unordered_map<unsigned char, std::uint32_t>> next{1};
    std::vector<std::int64_t> terminal{-1};  // index into added_, or -1
    std::array<bool, 256> first{};

    void insert(std::string_view s, std::size_t index) {
      if (s.empty()) return;
      std::uint32_t node = 0;
      first[static_cast<unsigned char>(s[0])] = true;
      for (unsigned char c : s) {
        auto it = next[node].find(c);
        if (it == next[node].end()) {
          next[node][c] = static_cast<std::uint32_t>(next.size());
          next.emplace_back();
          terminal.push_back(-1);
          it = next[node].find(c);
        }
        node = it->second;
      }
      if (terminal[node] < 0) terminal[node] = static_cast<std::int64_t>(index);  // the first of equal contents
    }
    // Longest token starting at s[pos]: (length, index) or (0, -1).
    std::pair<std::size_t, std::int64_t> longest(std::string_view s, std::size_t pos) const {
      std::pair<std::size_t, std::int64_t> best{0, -1};
      std::uint32_t node = 0;
      for (std::size_t i = pos; i < s.size(); ++i) {
        const auto it = next[node].find(static_cast<unsigned char>(s[i]));
        if (it == next[node].end()) break;
        node = it->second;
        if (terminal[node] >= 0) best = {i + 1 - pos, terminal[node]};
      }
      return best;
    }
  };

  static bool ends_with_word(std::string_view s) {
    if (s.empty()) return false;
    std::size_t i = s.size() - 1;
    while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80 && s.size() - i < 4) --i;
    const auto d = unicode::decode_utf8(s, i);
    if (i + d.length != s.size()) return false;  // the last byte is an invalid one
    return (unicode::flags(d.cp) & unicode::word) != 0;
  }
  static bool starts_with_word(std::string_view s) {
    return !s.empty() && (unicode::flags(unicode::decode_utf8(s, 0).cp) & unicode::word) != 0;
  }

  // Splits text on the added tokens of t (the library's find_matches), calling
  // plain(segment) for text between tokens and appending token ids to out.
  template <class Plain>
  void find_added(std::string_view text, const trie& t, bool encode_special_tokens, std::vector<token_id>& out,
                  Plain&& plain) const {
    if (t.next.size() == 1) {
      if (!text.empty()) plain(text);
      return;
    }
    std::size_t start_offset = 0;
    for (std::size_t pos = 0; pos < text.size();) {
      if (!t.first[static_cast<unsigned char>(text[pos])]) {
        ++pos;
        continue;
      }
      const auto [length, index] = t.longest(text, pos);
      if (length == 0) {
        ++pos;
        continue;
      }
      const added_token& a = added_[static_cast<std::size_t>(index)];
      std::size_t start = pos, stop = pos + length;
      pos = stop;  // the search goes on after this match whatever happens to it
      if (encode_special_tokens && a.special) continue;
      if (a.single_word) {
        const bool start_space = start == 0 || !ends_with_word(text.substr(0, start));
        const bool stop_space = stop == text.size() || !starts_with_word(text.substr(stop));
        if (!start_space || !stop_space) continue;
      }
      if (a.lstrip) {
        std::size_t s = start;  // leftmost start of the white space that ends at start
        while (s > 0) {
          std::size_t b = s - 1;
          while (b > 0 && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80 && s - b < 4) --b;
          const auto d = unicode::decode_utf8(text, b);
          if (b + d.length != s || !(unicode::flags(d.cp) & unicode::white)) break;
          s = b;
        }
        start = std::max(s, start_offset);
      }
      if (a.rstrip) {
        while (stop < text.size()) {
          const auto d = unicode::decode_utf8(text, stop);
          if (!(unicode::flags(d.cp) & unicode::white)) break;
          stop += d.length;
        }  // the search still goes on from the end of the match, as the library's does
      }
      if (start_offset < start) plain(text.substr(start_offset, start - start_offset));
      out.push_back(a.id);
      start_offset = stop;
    }
    if (start_offset < text.size()) plain(text.substr(start_offset));
  }

  // ------------------------------------------------------------ pre-tokenizer and BPE
  struct scratch {
    std::string buffer;  // the text with prefix spaces, when add_prefix_space
    std::string_view view;
    std::vector<pretok::piece> pieces, next;
    std::vector<token_id> symbols_id;
    std::vector<std::int32_t> prev, nxt;
    std::vector<std::uint32_t> len;
    struct entry {
      std::uint32_t rank;
      std::uint32_t pos;
      token_id new_id;
    };
    std::vector<entry> heap;
    std::vector<token_id> word_ids;
  };

  void split_words(std::string_view text, scratch& s) const {
    s.view = text;
    s.pieces.clear();
    if (!text.empty()) s.pieces.push_back({0, text.size()});
    for (const split_step& step : splits_) {
      s.next.clear();
      for (const auto& p : s.pieces) pretok::split_isolated(step.pattern, s.view, p, s.next, step.literal);
      std::swap(s.pieces, s.next);
    }
    if (add_prefix_space_) {
      s.buffer.clear();
      s.next.clear();
      for (const auto& p : s.pieces) {
        const std::size_t b = s.buffer.size();
        if (s.view[p.begin] != ' ') s.buffer += ' ';
        s.buffer.append(s.view.substr(p.begin, p.end - p.begin));
        s.next.push_back({b, s.buffer.size()});
      }
      std::swap(s.pieces, s.next);
      s.view = s.buffer;
    }
    if (use_regex_) {
      s.next.clear();
      for (const auto& p : s.pieces) pretok::split_isolated(pretok::pattern::gpt2, s.view, p, s.next);
      std::swap(s.pieces, s.next);
    }
  }

  void encode_plain(std::string_view text, std::vector<token_id>& out, scratch& s) const {
    split_words(text, s);
    for (const auto& p : s.pieces) bpe_word(s.view.substr(p.begin, p.end - p.begin), out, s);
  }

  struct word_cache {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<token_id>> map;
  };
  static constexpr std::size_t cache_max_word = 64;
  static constexpr std::size_t cache_capacity = 100000;

  void bpe_word(std::string_view word, std::vector<token_id>& out, scratch& s) const {
    if (word.size() == 1 && byte_ids_[static_cast<unsigned char>(word[0])] >= 0) {
      out.push_back(byte_ids_[static_cast<unsigned char>(word[0])]);
      return;
    }
    const bool cacheable = word.size() <= cache_max_word;
    if (cacheable) {
      std::lock_guard<std::mutex> lock(cache_->mutex);
      const auto it = cache_->map.find(std::string(word));
      if (it != cache_->map.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    s.word_ids.clear();
    merge_word(word, s);
    out.insert(out.end(), s.word_ids.begin(), s.word_ids.end());
    if (cacheable) {
      std::lock_guard<std::mutex> lock(cache_->mutex);
      if (cache_->map.size() >= cache_capacity) cache_->map.clear();
      cache_->map.emplace(std::string(word), s.word_ids);
    }
  }

  // The library's BPE: symbols in a linked list, a heap of candidate merges
  // ordered by (rank, position); stale entries are skipped.
  void merge_word(std::string_view word, scratch& s) const {
    if (ignore_merges_) {
      const auto it = vocab_.find(byte_level_alphabet::get().encode(word));
      if (it != vocab_.end()) {
        s.word_ids.push_back(it->second);
        return;
      }
    }
    s.symbols_id.clear();
    s.len.clear();
    bool last_unk = false;
    for (unsigned char b : word) {
      const token_id id = byte_ids_[b];
      if (id >= 0) {
        s.symbols_id.push_back(id);
        s.len.push_back(1);
        last_unk = false;
      } else if (unk_id_ >= 0) {  // a byte missing from the vocabulary
        if (fuse_unk_ && last_unk) {
          ++s.len.back();
        } else {
          s.symbols_id.push_back(unk_id_);
          s.len.push_back(1);
        }
        last_unk = true;
      }  // else dropped, as the library does without an unk_token
    }
    const auto n = static_cast<std::int32_t>(s.symbols_id.size());
    s.prev.resize(static_cast<std::size_t>(n));
    s.nxt.resize(static_cast<std::size_t>(n));
    for (std::int32_t i = 0; i < n; ++i) {
      s.prev[static_cast<std::size_t>(i)] = i - 1;
      s.nxt[static_cast<std::size_t>(i)] = i + 1 < n ? i + 1 : -1;
    }
    auto later = [](const scratch::entry& a, const scratch::entry& b) {
      return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
    };
    s.heap.clear();
    for (std::int32_t i = 0; i + 1 < n; ++i) {
      const auto m = merges_.find(s.symbols_id[static_cast<std::size_t>(i)], s.symbols_id[static_cast<std::size_t>(i + 1)]);
      if (m.new_id >= 0) s.heap.push_back({m.rank, static_cast<std::uint32_t>(i), m.new_id});
    }
    std::make_heap(s.heap.begin(), s.heap.end(), later);
    while (!s.heap.empty()) {
      std::pop_heap(s.heap.begin(), s.heap.end(), later);
      const scratch::entry top = s.heap.back();
      s.heap.pop_back();
      const auto pos = static_cast<std::size_t>(top.pos);
      if (s.len[pos] == 0) continue;  // merged into its left neighbor
      const std::int32_t right = s.nxt[pos];
      if (right < 0) continue;
      const auto r = static_cast<std::size_t>(right);
      const auto m = merges_.find(s.symbols_id[pos], s.symbols_id[r]);
      if (m.new_id != top.new_id) continue;  // stale entry
      s.symbols_id[pos] = top.new_id;
      s.len[pos] += s.len[r];
      s.len[r] = 0;
      s.nxt[pos] = s.nxt[r];
      if (s.nxt[r] >= 0) s.prev[static_cast<std::size_t>(s.nxt[r])] = static_cast<std::int32_t>(pos);
      if (const std::int32_t p = s.prev[pos]; p >= 0) {
        const auto pm = merges_.find(s.symbols_id[static_cast<std::size_t>(p)], s.symbols_id[pos]);
        if (pm.new_id >= 0) {
          s.heap.push_back({pm.rank, static_cast<std::uint32_t>(p), pm.new_id});
          std::push_heap(s.heap.begin(), s.heap.end(), later);
        }
      }
      if (const std::int32_t q = s.nxt[pos]; q >= 0) {
        const auto nm = merges_.find(s.symbols_id[pos], s.symbols_id[static_cast<std::size_t>(q)]);
        if (nm.new_id >= 0) {
          s.heap.push_back({nm.rank, static_cast<std::uint32_t>(pos), nm.new_id});
          std::push_heap(s.heap.begin(), s.heap.end(), later);
        }
      }
    }
    for (std::int32_t i = 0; i >= 0 && i < n; i = s.nxt[static_cast<std::size_t>(i)])
      s.word_ids.push_back(s.symbols_id[static_cast<std::size_t>(i)]);
  }

  // (left id, right id) -> (rank, merged id): open addressing, linear probing.
  struct merge_table {
    struct slot {
      std::uint64_t key = ~0ULL;
      std::uint32_t rank = 0;
      token_id new_id = -1;
    };
    struct result {
      std::uint32_t rank;
      token_id new_id;  // -1: no such merge
    };
    std::vector<slot> slots;
    std::size_t count = 0;

    static std::uint64_t hash(std::uint64_t k) {
      k ^= k >> 33;
      k *= 0xff51afd7ed558ccdULL;
      k ^= k >> 33;
      return k;
    }
    void reserve(std::size_t n) {
      std::size_t cap = 16;
      while (cap < 2 * n) cap *= 2;
      slots.assign(cap, slot{});
    }
    void insert(token_id a, token_id b, std::uint32_t rank, token_id new_id) {
      if (2 * (count + 1) > slots.size()) grow();
      const std::uint64_t key = (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) |
                                static_cast<std::uint32_t>(b);
      std::size_t i = hash(key) & (slots.size() - 1);
      while (slots[i].key != ~0ULL && slots[i].key != key) i = (i + 1) & (slots.size() - 1);
      if (slots[i].key == ~0ULL) ++count;
      slots[i] = {key, rank, new_id};
    }
    result find(token_id a, token_id b) const {
      if (slots.empty()) return {0, -1};
      const std::uint64_t key = (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) |
                                static_cast<std::uint32_t>(b);
      std::size_t i = hash(key) & (slots.size() - 1);
      while (slots[i].key != ~0ULL) {
        if (slots[i].key == key) return {slots[i].rank, slots[i].new_id};
        i = (i + 1) & (slots.size() - 1);
      }
      return {0, -1};
    }
    void grow() {
      std::vector<slot> old = std::move(slots);
      slots.assign(std::max<std::size_t>(16, old.size() * 2), slot{});
      count = 0;
      for (const slot& s : old)
        if (s.key != ~0ULL)
          insert(static_cast<token_id>(s.key >> 32), static_cast<token_id>(s.key & 0xFFFFFFFFULL), s.rank, s.new_id);
    }
  };

  std::unordered_map<std::string, token_id> vocab_;  // byte-level spelling -> id
  std::vector<std::string> model_tokens_;            // id -> byte-level spelling
  std::array<token_id, 256> byte_ids_{};
  merge_table merges_;
  token_id unk_id_ = -1;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  bool nfc_ = false;
  std::vector<split_step> splits_;
  bool add_prefix_space_ = false;
  bool use_regex_ = true;
  std::vector<added_token> added_;
  trie raw_trie_, normalized_trie_;
  std::vector<std::string> decoded_;  // id -> bytes
  std::vector<bool> has_token_, special_;
  std::unique_ptr<word_cache> cache_;
};

}  // namespace lmrl
