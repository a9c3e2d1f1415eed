// Rejection sampling: the stage of DeepSeek-R1 (2025, section 2.3.3) that
// turns the reasoning-RL checkpoint into SFT data for the next round.
//
// R1 samples several completions per training prompt from the RL checkpoint,
// keeps only those its rules accept (the answer is correct; the output is
// well-formed, neither mixed-language nor long repetitive paragraphs), drops
// duplicates, and mixes the ~600k reasoning samples with ~200k general
// (non-reasoning) samples into the SFT set the base model is fine-tuned on.
//
//   rejection_sampling_stats stats;
//   auto kept = rejection_sample(params, prompts, encode, decode, accept, options, &stats);
//   auto data = mix_in(std::move(kept), general, 0.33, seed);
//   write_sft_jsonl("sft.jsonl", data);   // {"prompt": ..., "completion": ..., "source": ...}
//
// Each generated completion meets these filters in order and is counted under
// the first that rejects it: truncated (hit max_new_tokens with no eos), the
// caller's rule (accept), repetitive (a line repeated too often), duplicate
// (the same prompt and completion kept before), over the per-prompt cap.
// Sampling draws come from counter_rng(seed) addressed by (prompt index x
// samples_per_prompt + sample, position), as evaluate.hpp does, so the kept
// set does not depend on prompts_per_batch.
//
// rejection_sample decodes on the CPU (model/generate.hpp);
// rejection_sample_with takes the batches' generation as a function, e.g.
// lmrl::cuda::generate over a GPU decoder (model/generate.cuh), whose draws
// come from the same generator.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lmrl/data/json.hpp"
#include "lmrl/data/jsonl.hpp"
#include "lmrl/data/random.hpp"
#include "lmrl/data/utf8.hpp"
#include "lmrl/error.hpp"
#include "lmrl/model/generate.hpp"
#include "lmrl/model/safetensors.hpp"
#include "lmrl/sample/philox.hpp"

namespace lmrl {

// One SFT example in TRL's prompt-completion form; source says where it came
// from ("rejection_sampling", "general", ...).
struct sft_record {
  std::string prompt;
  std::string completion;
  std::string source;

  bool operator==(const sft_record&) const = default;
};

struct rejection_sampling_options {
  index_t samples_per_prompt = 4;
  index_t max_new_tokens = 256;
  double temperature = 1.0;
  std::uint64_t seed = 0;
  std::vector<std::int32_t> eos_token_ids{};
  std::int32_t pad_token_id = 0;
  index_t prompts_per_batch = 16;  // prompts decoded together (the KV cache holds this many x samples_per_prompt)
  index_t max_per_prompt = 0;      // 0: every distinct accepted completion; else the first this many in sample order
  bool deduplicate = true;         // drop exact duplicate (prompt, completion) pairs
  index_t max_line_repeats = 2;    // repetitive: a non-blank line occurs more often than this (0: no filter)
  bool drop_truncated = true;      // reject completions that hit max_new_tokens without an eos

  void validate() const {
    const char* f = "rejection_sampling_options";
    detail::require(samples_per_prompt >= 1, f, ": samples_per_prompt = ", samples_per_prompt, " must be >= 1");
    detail::require(max_new_tokens >= 1, f, ": max_new_tokens = ", max_new_tokens, " must be >= 1");
    detail::require(std::isfinite(temperature) && temperature > 0, f, ": temperature = ", temperature,
                    " must be finite and > 0");
    detail::require(prompts_per_batch >= 1, f, ": prompts_per_batch = ", prompts_per_batch, " must be >= 1");
    detail::require(max_per_prompt >= 0, f, ": max_per_prompt = ", max_per_prompt, " must be >= 0 (0 = no cap)");
    detail::require(max_line_repeats >= 0, f, ": max_line_repeats = ", max_line_repeats,
                    " must be >= 0 (0 = no repetition filter)");
    detail::require(!drop_truncated || !eos_token_ids.empty(), f,
                    ": drop_truncated is set but eos_token_ids is empty, so every completion would run to "
                    "max_new_tokens and be dropped");
  }
};

// True when some non-blank line, trimmed of surrounding whitespace, occurs
// more than max_line_repeats times (max_line_repeats = 0: never).
inline bool is_repetitive(std::string_view text, index_t max_line_repeats) {
  detail::require(max_line_repeats >= 0, "is_repetitive: max_line_repeats = ", max_line_repeats, " must be >= 0");
  if (max_line_repeats == 0) return false;
  constexpr std::string_view space = " \t\r\f\v";
  std::map<std::string_view, index_t> count;
  for (std::size_t start = 0; start <= text.size();) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    const std::size_t first = line.find_first_not_of(space);
    if (first != std::string_view::npos) {
      line = line.substr(first, line.find_last_not_of(space) - first + 1);
      if (++count[line] > max_line_repeats) return true;
    }
    start = end + 1;
  }
  return false;
}

// Where the generated completions went; kept + the rejection counts = generated.
struct rejection_sampling_stats {
  index_t prompts = 0;
  index_t generated = 0;
  index_t truncated = 0;
  index_t rejected_by_rule = 0;
  index_t repetitive = 0;
  index_t duplicates = 0;
  index_t over_per_prompt_cap = 0;
  index_t kept = 0;

  std::string summary() const {
    std::ostringstream s;
    s << "rejection sampling: " << prompts << " prompts, " << generated << " completions, " << kept << " kept";
    if (generated > 0) s << " (" << std::round(1000.0 * static_cast<double>(kept) / static_cast<double>(generated)) / 10 << "%)";
    s << "; rejected: " << truncated << " truncated, " << rejected_by_rule << " by rule, " << repetitive
      << " repetitive, " << duplicates << " duplicates, " << over_per_prompt_cap << " over the per-prompt cap";
    return s.str();
  }
};

// rejection_sample with the completions of `generate_batch(prompts, generation_options, counter_rng)`, which
// returns a generation_result (model/generate.hpp's generate over a decoder, or cuda::generate's).
template <class Generate>
std::vector<sft_record> rejection_sample_with(Generate&& generate_batch, std::span<const std::string> prompt_texts,
                                              const std::function<std::vector<std::int32_t>(std::string_view)>& encode,
                                              const std::function<std::string(std::span<const std::int32_t>)>& decode,
                                              const std::function<bool(std::size_t, std::string_view)>& accept,
                                              const rejection_sampling_options& options,
                                              rejection_sampling_stats* stats = nullptr) {
  const char* f = "rejection_sample";
  options.validate();
  detail::require(!prompt_texts.empty(), f, ": no prompts");
  detail::require(static_cast<bool>(encode), f, ": no encode function");
  detail::require(static_cast<bool>(decode), f, ": no decode function");
  detail::require(static_cast<bool>(accept), f, ": no accept function");
  std::vector<std::vector<std::int32_t>> prompts;
  prompts.reserve(prompt_texts.size());
  for (std::size_t i = 0; i < prompt_texts.size(); ++i) {
    prompts.push_back(encode(prompt_texts[i]));
    detail::require(!prompts.back().empty(), f, ": prompt ", i, " encodes to no tokens");
  }

  rejection_sampling_stats st;
  st.prompts = static_cast<index_t>(prompts.size());
  std::vector<sft_record> kept;
  std::set<std::pair<std::string_view, std::string>> seen;  // (prompt text, completion) kept or capped
  std::vector<index_t> kept_of(prompts.size(), 0);
  const index_t k = options.samples_per_prompt;
  generation_options o;
  o.max_new_tokens = options.max_new_tokens;
  o.num_generations = k;
  o.sampling.do_sample = true;
  o.sampling.temperature = options.temperature;
  o.eos_token_ids = options.eos_token_ids;
  o.pad_token_id = options.pad_token_id;
  const std::span<const std::vector<std::int32_t>> all(prompts);
  const auto per_batch = static_cast<std::size_t>(options.prompts_per_batch);
  std::vector<std::int32_t> ids;
  for (std::size_t first = 0; first < prompts.size(); first += per_batch) {
    const std::size_t count = std::min(prompts.size() - first, per_batch);
    o.first_sequence = first * static_cast<std::size_t>(k);
    const auto r = generate_batch(all.subspan(first, count), std::as_const(o), counter_rng(options.seed));
    for (index_t b = 0; b < r.batch(); ++b) {
      const std::size_t p = first + static_cast<std::size_t>(b / k);
      ++st.generated;
      if (options.drop_truncated && r.truncated[static_cast<std::size_t>(b)]) {
        ++st.truncated;
        continue;
      }
      ids.assign(&r.completion_ids(b, 0), &r.completion_ids(b, 0) + r.lengths[static_cast<std::size_t>(b)]);
      std::string text = decode(ids);
      if (!accept(p, text)) {
        ++st.rejected_by_rule;
      } else if (is_repetitive(text, options.max_line_repeats)) {
        ++st.repetitive;
      } else if (options.deduplicate && !seen.emplace(prompt_texts[p], text).second) {
        ++st.duplicates;
      } else if (options.max_per_prompt > 0 && kept_of[p] >= options.max_per_prompt) {
        ++st.over_per_prompt_cap;
      } else {
        ++kept_of[p];
        kept.push_back({prompt_texts[p], std::move(text), "rejection_sampling"});
      }
    }
  }
  st.kept = static_cast<index_t>(kept.size());
  if (stats != nullptr) *stats = st;
  return kept;
}

// Samples options.samples_per_prompt completions of every prompt with the CPU
// decoder over `params` and returns those that pass the filters (see the top
// of this file), in (prompt, sample) order, with source "rejection_sampling".
// decode gets the completion's ids as generated (the eos included);
// accept(prompt index, completion text) is the caller's rule (R1: the answer
// is right and the format is kept).
template <Real T>
std::vector<sft_record> rejection_sample(const transformer_parameters<T>& params,
                                         std::span<const std::string> prompt_texts,
                                         const std::function<std::vector<std::int32_t>(std::string_view)>& encode,
                                         const std::function<std::string(std::span<const std::int32_t>)>& decode,
                                         const std::function<bool(std::size_t, std::string_view)>& accept,
                                         const rejection_sampling_options& options,
                                         rejection_sampling_stats* stats = nullptr) {
  cached_decoder<T> decoder(params);
  return rejection_sample_with(
      [&](std::span<const std::vector<std::int32_t>> batch, const generation_options& o, const counter_rng& rng) {
        return generate(decoder, batch, o, rng);
      },
      prompt_texts, encode, decode, accept, options, stats);
}

namespace detail {

// Fisher-Yates with data/random.hpp's platform-independent draws.
template <class V>
void shuffle_in_place(std::vector<V>& v, data::task_rng& rng) {
  for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[data::uniform_below(rng, i)]);
}

}  // namespace detail

// Appends round(fraction x records.size()) records of `general`, drawn without
// replacement in a seeded order (an empty source becomes "general"), then
// shuffles the whole set with the same seed.
inline std::vector<sft_record> mix_in(std::vector<sft_record> records, const std::vector<sft_record>& general,
                                      double fraction, std::uint64_t seed) {
  detail::require(std::isfinite(fraction) && fraction >= 0, "mix_in: fraction = ", fraction,
                  " must be finite and >= 0");
  const double wanted = std::round(fraction * static_cast<double>(records.size()));
  detail::require(wanted <= static_cast<double>(general.size()), "mix_in: fraction = ", fraction, " of ",
                  records.size(), " records asks for ", wanted, " general records but only ", general.size(),
                  " are given");
  const auto n = static_cast<std::size_t>(wanted);
  data::task_rng rng(seed);
  std::vector<std::size_t> order(general.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  detail::shuffle_in_place(order, rng);
  records.reserve(records.size() + n);
  for (std::size_t i = 0; i < n; ++i) {
    records.push_back(general[order[i]]);
    if (records.back().source.empty()) records.back().source = "general";
  }
  detail::shuffle_in_place(records, rng);
  return records;
}

// One JSON object per line, {"prompt": ..., "completion": ..., "source": ...},
// written atomically (a crash leaves the previous file). Text must be valid
// UTF-8 (the JSON reader rejects anything else): a record that is not is an
// error naming it, and nothing is written.
inline void write_sft_jsonl(const std::string& path, std::span<const sft_record> records) {
  std::string out;
  const auto add = [&](std::size_t i, const char* name, const std::string& text) {
    const std::size_t bad = count_invalid_utf8(text);
    detail::require(bad == 0, "write_sft_jsonl: ", path, ": record ", i, " field \"", name, "\" has ", bad,
                    " invalid UTF-8 sequences");
    out += '"';
    out += name;
    out += "\": ";
    json::append_string(out, text);
  };
  for (std::size_t i = 0; i < records.size(); ++i) {
    out += '{';
    add(i, "prompt", records[i].prompt);
    out += ", ";
    add(i, "completion", records[i].completion);
    out += ", ";
    add(i, "source", records[i].source);
    out += "}\n";
  }
  write_file_atomically(path, out);
}

// Reads write_sft_jsonl's files (or any JSONL with string "prompt" and
// "completion" fields; "source" is optional, default empty). Errors name the
// file and the line.
inline std::vector<sft_record> read_sft_jsonl(const std::string& path) {
  data::jsonl_reader reader(path);
  std::vector<sft_record> out;
  json::value v;
  const auto text = [&](std::string_view name) -> const std::string& {
    const json::value& f = data::field(v, name, reader.where());
    if (!f.is_string())
      detail::fail(reader.where(), ": field \"", name, "\" is ", json::kind_name(f.type()), ", not a string");
    return f.as_string();
  };
  while (reader.next(v)) {
    sft_record r;
    r.prompt = text("prompt");
    r.completion = text("completion");
    if (v.find("source") != nullptr) r.source = text("source");
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace lmrl
