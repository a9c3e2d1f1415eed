// What a generation is asked and what it returns, and the bookkeeping every
// decoder's generate() shares (model/generate.hpp on the CPU,
// model/generate.cuh on the GPU): the checks and the prefill plan before the
// first pass, the empty result, and the record-and-stop of each drawn token.
// No model here: this header is the contract of generate(), read
// model/generate.hpp for the algorithm.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "lmrl/error.hpp"
#include "lmrl/model/config.hpp"
#include "lmrl/sample/sampler_config.hpp"
#include "lmrl/sample/samplers.hpp"
#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/dense.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

// What generate() does. Names and defaults follow TRL's GRPOConfig and
// transformers' GenerationConfig where they have one.
struct generation_options {
  // Completion tokens per sequence at most. TRL GRPOConfig max_completion_length default 256.
  index_t max_new_tokens = 256;
  // Sequences per prompt, consecutive in the output (sequence b comes from
  // prompt b / num_generations), as TRL repeats each prompt. TRL's
  // GRPOConfig default is 8; here 1, so that plain generation is the default.
  index_t num_generations = 1;
  // Decoding: do_sample, temperature, top_k, top_p, min_p (TRL defaults).
  sampler_config sampling{};
  // Any of these ends a completion (and is kept in it, mask 1). Empty = none.
  std::vector<std::int32_t> eos_token_ids{};
  // A completion ends when its ids end with one of these sequences.
  std::vector<std::vector<std::int32_t>> stop_token_sequences{};
  // A completion ends when its text (detokenize(completion ids)) contains one
  // of these; the token that completes the string is kept.
  std::vector<std::string> stop_strings{};
  std::function<std::string(std::span<const std::int32_t>)> detokenize{};
  // Written after the end of a completion. HF pads with pad_token_id; 0 here.
  std::int32_t pad_token_id = 0;
  // Counter-RNG index of output sequence 0: a batch split across calls or
  // workers gives the same tokens when each part passes its global offset.
  std::uint64_t first_sequence = 0;

  void validate(index_t vocab) const {
    const char* f = "generation_options";
    detail::require(max_new_tokens >= 1, f, ": max_new_tokens = ", max_new_tokens, " must be >= 1");
    detail::require(num_generations >= 1, f, ": num_generations = ", num_generations, " must be >= 1");
    sampling.validate();
    for (auto id : eos_token_ids)
      detail::require(id >= 0 && id < vocab, f, ": eos token id ", id, " is outside the vocabulary [0, ", vocab, ")");
    for (const auto& s : stop_token_sequences)
      detail::require(!s.empty(), f, ": stop_token_sequences holds an empty sequence");
    for (const auto& s : stop_strings) detail::require(!s.empty(), f, ": stop_strings holds an empty string");
    detail::require(stop_strings.empty() || static_cast<bool>(detokenize), f, ": ", stop_strings.size(),
                    " stop strings need a detokenize callback");
  }
};

// Why a completion ended.
enum class stop_reason : std::uint8_t { eos, stop_sequence, stop_string, length };

// Per sequence b (B = prompts x num_generations rows), completion columns
// t < max_new_tokens.
template <Real T>
struct generation_result {
  dense<std::int32_t, 2> completion_ids;  // [B x max_new], pad_token_id after the end
  dense<T, 2> completion_mask;            // 1 up to and including the stop token, 0 after
  dense<T, 2> logprobs;                   // log softmax(logits / temperature)[token]: TRL's old log-probs; 0 past the end
  dense<T, 2> sampling_logprobs;          // log-prob under the warped sampling distribution; 0 past the end (and for greedy)
  std::vector<index_t> lengths;           // completion tokens (mask sum)
  std::vector<std::uint8_t> truncated;    // 1 = hit max_new_tokens without a stop
  std::vector<stop_reason> reasons;
  std::vector<index_t> prompt_index;      // which prompt each sequence continues

  index_t batch() const { return completion_ids.shape()[0]; }
};

// One token of a cached pass: sequence (cache slot) s, its token; its position
// is the cache length of s when the pass starts plus its rank among the rows
// of s in this pass.
struct cached_token {
  index_t sequence = 0;
  std::int32_t token = 0;
  bool want_logits = false;
};

namespace detail {

inline bool ends_with_tokens(std::span<const std::int32_t> ids, const std::vector<std::int32_t>& tail) {
  if (tail.size() > ids.size()) return false;
  return std::equal(tail.begin(), tail.end(), ids.end() - static_cast<std::ptrdiff_t>(tail.size()));
}

// What every generate() (this file's, and the GPU's in model/generate.cuh)
// does before its first pass: the checks, the batch's shape and the prefill
// of each distinct prompt once, into the slot of its first sequence.
struct generation_plan {
  index_t batch = 0;    // B = prompts x num_generations
  index_t max_len = 0;  // the longest prompt + max_new_tokens: the cache length per sequence
  std::vector<index_t> source;              // sequence -> the slot its prompt was prefilled into
  std::vector<cached_token> prefill;        // the distinct prompts' tokens; each one's last token wants logits
  std::vector<index_t> logits_row_of_slot;  // a prefilled slot -> its row of the prefill's logits, else -1
};

inline generation_plan plan_generation(std::span<const std::vector<std::int32_t>> prompts,
                                       const generation_options& options, const transformer_config& c,
                                       const char* f) {
  options.validate(c.vocab_size);
  const index_t n_prompts = static_cast<index_t>(prompts.size());
  require(n_prompts >= 1, f, ": no prompts");
  const index_t G = options.num_generations, max_new = options.max_new_tokens;
  index_t longest = 0;
  for (index_t i = 0; i < n_prompts; ++i) {
    const auto& p = prompts[static_cast<std::size_t>(i)];
    require(!p.empty(), f, ": prompt ", i, " is empty (a prompt needs at least one token)");
    longest = std::max<index_t>(longest, static_cast<index_t>(p.size()));
  }
  require(longest + max_new <= c.max_position_embeddings, f, ": the longest prompt (", longest,
          " tokens) + max_new_tokens = ", max_new, " exceeds max_position_embeddings = ", c.max_position_embeddings);
  generation_plan plan;
  plan.batch = n_prompts * G;
  plan.max_len = longest + max_new;
  plan.source.resize(static_cast<std::size_t>(plan.batch));
  plan.logits_row_of_slot.assign(static_cast<std::size_t>(plan.batch), -1);
  std::map<std::vector<std::int32_t>, index_t> first_of;  // prompt -> its first sequence
  index_t n_prefilled = 0;
  for (index_t i = 0; i < n_prompts; ++i) {
    const auto& p = prompts[static_cast<std::size_t>(i)];
    for (index_t k = 0; k < static_cast<index_t>(p.size()); ++k)
      require(p[static_cast<std::size_t>(k)] >= 0 && p[static_cast<std::size_t>(k)] < c.vocab_size, f, ": prompt ", i,
              " has token id ", p[static_cast<std::size_t>(k)], " at position ", k, " outside the vocabulary [0, ",
              c.vocab_size, ")");
    auto [it, inserted] = first_of.try_emplace(p, i * G);
    for (index_t g = 0; g < G; ++g) plan.source[static_cast<std::size_t>(i * G + g)] = it->second;
    if (!inserted) continue;
    plan.logits_row_of_slot[static_cast<std::size_t>(i * G)] = n_prefilled++;
    for (std::size_t k = 0; k < p.size(); ++k) plan.prefill.push_back({i * G, p[k], k + 1 == p.size()});
  }
  return plan;
}

// The result before the first token: pads everywhere, every completion empty.
template <Real T>
generation_result<T> empty_generation_result(const generation_plan& plan, const generation_options& options) {
  const index_t B = plan.batch, max_new = options.max_new_tokens;
  generation_result<T> out;
  out.completion_ids = dense<std::int32_t, 2>({B, max_new});
  out.completion_mask = dense<T, 2>({B, max_new});
  out.logprobs = dense<T, 2>({B, max_new});
  out.sampling_logprobs = dense<T, 2>({B, max_new});
  out.lengths.assign(static_cast<std::size_t>(B), 0);
  out.truncated.assign(static_cast<std::size_t>(B), 0);
  out.reasons.assign(static_cast<std::size_t>(B), stop_reason::length);
  out.prompt_index.resize(static_cast<std::size_t>(B));
  for (index_t b = 0; b < B; ++b) out.prompt_index[static_cast<std::size_t>(b)] = b / options.num_generations;
  std::fill(out.completion_ids.data(), out.completion_ids.data() + out.completion_ids.size(), options.pad_token_id);
  return out;
}

// Records s as completion token t of sequence b and checks the stops; true
// when the sequence goes on to token t + 1.
template <Real T>
bool record_token(generation_result<T>& out, const generation_options& options, index_t b, index_t t,
                  const sampled_token& s) {
  const auto token = static_cast<std::int32_t>(s.token);
  out.completion_ids(b, t) = token;
  out.completion_mask(b, t) = T(1);
  out.logprobs(b, t) = static_cast<T>(s.tempered_logprob);
  out.sampling_logprobs(b, t) = static_cast<T>(s.logprob);
  out.lengths[static_cast<std::size_t>(b)] = t + 1;
  const std::span<const std::int32_t> ids(&out.completion_ids(b, 0), static_cast<std::size_t>(t + 1));
  stop_reason& reason = out.reasons[static_cast<std::size_t>(b)];
  if (std::find(options.eos_token_ids.begin(), options.eos_token_ids.end(), token) != options.eos_token_ids.end()) {
    reason = stop_reason::eos;
    return false;
  }
  for (const auto& seq : options.stop_token_sequences)
    if (ends_with_tokens(ids, seq)) {
      reason = stop_reason::stop_sequence;
      return false;
    }
  if (!options.stop_strings.empty()) {
    const std::string text = options.detokenize(ids);
    for (const auto& str : options.stop_strings)
      if (text.find(str) != std::string::npos) {
        reason = stop_reason::stop_string;
        return false;
      }
  }
  if (t + 1 == options.max_new_tokens) {
    out.truncated[static_cast<std::size_t>(b)] = 1;
    return false;
  }
  return true;
}

}  // namespace detail

}  // namespace lmrl
