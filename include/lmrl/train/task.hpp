// The flagship task of grpo_zero: R1-Zero in miniature.
//
// A problem is a sum of `operands` numbers of `digits` digits each, written
// without spaces ("47+18+93+25"). The R1-Zero prompt template (data/chat_template.hpp,
// with a short system line) ends in "Assistant: <think>", so a completion starts
// inside the think block. A solved example has one of two forms:
//
//   worked:  "\n47+18=65\n65+93=158\n158+25=183\n</think>\n<answer>\n183\n</answer><|endoftext|>"
//   direct:  "\n\n</think>\n<answer>\n183\n</answer><|endoftext|>"
//
// Why these formats:
//  - One small addition per line, always "running total + next operand =
//    new total": every step is the same two-operand addition of at most
//    (digits + 1) + digits digits, in a fixed layout, so a small model learns
//    it from few examples; the previous line's result is copied verbatim as
//    the next line's first operand (an easy attention pattern).
//  - The direct answer is the sum of all operands at once: carries from
//    several columns must be resolved without writing anything down, which a
//    small model learns slowly and gets wrong often. So "thinking" pays off,
//    and GRPO has something to amplify (see docs/r1_zero.md).
//  - The newlines make both forms pass the strict open-r1 format rule
//    (reward/format.hpp, prompt_ends_with_think): "<think>\n...\n</think>\n<answer>\n183\n</answer>".
//    The direct form's think block is empty ("<think>\n\n</think>": the strict
//    rule, like open-r1's regex, wants a newline after <think> and another
//    before </think>), which is what
//    "did not think" means in evaluate.hpp.
//
// Held-out split: a problem's key is its expression; data::split_of(key)
// decides train or test, so no held-out problem is ever drawn for training or
// pretraining, whatever the seeds (data/split.hpp).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lmrl/data/chat_template.hpp"
#include "lmrl/data/random.hpp"
#include "lmrl/data/split.hpp"
#include "lmrl/error.hpp"
#include "lmrl/reward/extract.hpp"

namespace lmrl {

struct zero_task_options {
  int operands = 4;  // numbers per problem, >= 2
  int digits = 2;    // digits of each number (no leading zeros), 1..9
  // The R1-Zero template's system text, shortened: the full DeepSeek text is
  // ~400 bytes, more than the whole completion, and every forward pass and
  // KV cache would pay for it. This keeps the template's structure and names the tags.
  std::string system = "Think in <think> </think>, then answer in <answer> </answer>.";
  data::split_options split{};  // test_fraction 0.1 of all problems are held out
  int max_attempts = 100000;    // draws before giving up (a split with almost no problems)
  // How a worked solution writes its steps (see zero_task::worked_steps):
  // "running" totals ("47+18=65" per line) or "rewrite" (the expression
  // rewritten with its first two numbers added, one line per step).
  std::string step_format = "rewrite";

  // The values of one operand: digits-digit numbers without a leading zero (0..9 for one digit).
  std::pair<std::int64_t, std::int64_t> operand_range() const {
    std::int64_t lo = 1;
    for (int d = 1; d < digits; ++d) lo *= 10;
    return {digits == 1 ? 0 : lo, lo * 10 - 1};
  }

  void validate() const {
    const char* f = "zero_task_options";
    detail::require(operands >= 2 && operands <= 64, f, ": operands = ", operands, " must be in [2, 64]");
    detail::require(digits >= 1 && digits <= 9, f, ": digits = ", digits, " must be in [1, 9]");
    detail::require(max_attempts >= 1, f, ": max_attempts = ", max_attempts, " must be >= 1");
    detail::require(step_format == "running" || step_format == "rewrite" || step_format == "remaining", f,
                    ": step_format = \"", step_format, "\"; allowed: running, rewrite, remaining");
    data::check_split_options(f, split);
  }
};

struct zero_problem {
  std::vector<std::int64_t> operands;
  std::string expression;  // "47+18+93+25"; also the split key
  std::string prompt;      // the rendered R1-Zero prompt, ending in "Assistant: <think>"
  std::string answer;      // gold answer, "183"
};

// The text forms of the task. Stateless apart from the options.
class zero_task {
 public:
  static constexpr std::string_view eos_text = "<|endoftext|>";

  explicit zero_task(zero_task_options options = {}) : options_(std::move(options)) {
    options_.validate();
    template_.system = options_.system;
  }

  const zero_task_options& options() const { return options_; }
  const data::r1_zero_template& chat_template() const { return template_; }

  // The problem with these operands (any count >= 2, values >= 0).
  zero_problem make(std::vector<std::int64_t> operands) const {
    const char* f = "zero_task::make";
    detail::require(operands.size() >= 2, f, ": ", operands.size(), " operands, need at least 2");
    zero_problem p;
    std::int64_t sum = 0;
    for (std::size_t k = 0; k < operands.size(); ++k) {
      detail::require(operands[k] >= 0, f, ": operands[", k, "] = ", operands[k], " is negative");
      if (k) p.expression += '+';
      p.expression += std::to_string(operands[k]);
      sum += operands[k];
    }
    p.operands = std::move(operands);
    p.answer = std::to_string(sum);
    p.prompt = template_.render(p.expression).text;
    return p;
  }

  // The worked steps, one line each, in options().step_format:
  //   running: "47+18=65\n65+93=158\n158+25=183"
  //   rewrite: "47+18+93+25\n=65+93+25\n=158+25\n=183"
  //   remaining: "47+18+93+25\n47+18=65 +93+25\n65+93=158 +25\n158+25=183"
  //            (each addition written out beside the numbers still to add:
  //            the operands of the next addition are the line above's result
  //            and first remaining number, both next to each other)
  std::string worked_steps(const zero_problem& p) const {
    std::string s;
    std::int64_t total = p.operands.at(0);
    if (options_.step_format == "remaining") {
      s = p.expression;
      for (std::size_t k = 1; k < p.operands.size(); ++k) {
        s += '\n';
        s += std::to_string(total) + '+' + std::to_string(p.operands[k]) + '=' + std::to_string(total + p.operands[k]);
        total += p.operands[k];
        if (k + 1 < p.operands.size()) s += ' ';
        for (std::size_t j = k + 1; j < p.operands.size(); ++j) {
          s += '+';
          s += std::to_string(p.operands[j]);
        }
      }
      return s;
    }
    if (options_.step_format == "rewrite") {
      s = p.expression;
      for (std::size_t k = 1; k < p.operands.size(); ++k) {
        total += p.operands[k];
        s += "\n=";
        s += std::to_string(total);
        for (std::size_t j = k + 1; j < p.operands.size(); ++j) {
          s += '+';
          s += std::to_string(p.operands[j]);
        }
      }
      return s;
    }
    for (std::size_t k = 1; k < p.operands.size(); ++k) {
      if (k > 1) s += '\n';
      const std::int64_t next = total + p.operands[k];
      s += std::to_string(total) + '+' + std::to_string(p.operands[k]) + '=' + std::to_string(next);
      total = next;
    }
    return s;
  }

  // Completions (what follows the prompt's "<think>"), with or without the
  // end-of-text token that a trained model must learn to emit.
  std::string worked_completion(const zero_problem& p, bool with_eos = true) const {
    std::string think = "\n";
    think += worked_steps(p);
    think += '\n';
    return completion(think, p.answer, with_eos);
  }
  static std::string direct_completion(const zero_problem& p, bool with_eos = true) {
    return completion("\n\n", p.answer, with_eos);  // an empty think block, as the strict format spells it
  }

  // prompt + completion, with the offset where the completion starts.
  data::rendered_chat example(const zero_problem& p, bool worked) const {
    return template_.render(p.expression, worked ? worked_completion(p) : direct_completion(p));
  }

 private:
  static std::string completion(const std::string& think, const std::string& answer, bool with_eos) {
    std::string s = think + "</think>\n<answer>\n" + answer + "\n</answer>";
    if (with_eos) s += eos_text;
    return s;
  }

  zero_task_options options_;
  data::r1_zero_template template_{};
};

// Did this completion think? True when it closes the think block and the
// block holds something other than whitespace; a completion that never
// closes it (truncated, or malformed) counts as thinking only if it wrote
// something before running out.
inline bool completion_thinks(std::string_view completion) {
  const std::size_t end = completion.find("</think>");
  return !detail::trim(completion.substr(0, end)).empty();
}

// One problem of the split `which`, drawn with `rng` (operands in order,
// redrawn while the problem belongs to the other split).
inline zero_problem draw_zero_problem(const zero_task& task, data::task_rng& rng, data::split which) {
  const zero_task_options& o = task.options();
  const auto [lo, hi] = o.operand_range();
  for (int attempt = 0; attempt < o.max_attempts; ++attempt) {
    std::vector<std::int64_t> xs(static_cast<std::size_t>(o.operands));
    for (auto& x : xs) x = data::uniform_int(rng, lo, hi);
    zero_problem p = task.make(std::move(xs));
    if (data::split_of(p.expression, o.split) == which) return p;
  }
  detail::fail("zero_task_generator: no ", data::split_name(which), " problem in max_attempts = ", o.max_attempts,
               " draws (test_fraction = ", o.split.test_fraction, ")");
}

// Draws problems of one split, deterministically from a seed: the same
// options, seed and split give the same problems on every platform.
class zero_task_generator {
 public:
  zero_task_generator(zero_task_options options, std::uint64_t seed, data::split which = data::split::train)
      : task_(std::move(options)), rng_(seed), which_(which) {}

  zero_problem next() { return draw_zero_problem(task_, rng_, which_); }

  std::vector<zero_problem> take(std::size_t count) {
    std::vector<zero_problem> out;
    out.reserve(count);
    for (std::size_t k = 0; k < count; ++k) out.push_back(next());
    return out;
  }

  const zero_task& task() const { return task_; }

 private:
  zero_task task_;
  data::task_rng rng_;
  data::split which_;
};

// The held-out evaluation set: `count` distinct test-split problems (a fixed
// seed, so every run and every seed of the trainer evaluates the same set).
inline std::vector<zero_problem> zero_held_out(const zero_task_options& options, std::size_t count,
                                               std::uint64_t seed = 20250122) {
  zero_task_generator gen(options, seed, data::split::test);
  std::vector<zero_problem> out;
  std::set<std::string> seen;
  out.reserve(count);
  const std::size_t max_draws = count * 100 + 1000;
  for (std::size_t draws = 0; out.size() < count; ++draws) {
    detail::require(draws < max_draws, "zero_held_out: only ", out.size(), " distinct held-out problems in ",
                    max_draws, " draws, ", count, " requested");
    zero_problem p = gen.next();
    if (!seen.insert(p.expression).second) continue;
    out.push_back(std::move(p));
  }
  return out;
}

// One pretraining example: the text and where its completion starts
// (0 for a practice pack, which is all completion).
struct corpus_example {
  std::string text;
  std::size_t completion_offset = 0;
  bool worked = false;
  bool practice = false;
};

// A practice pack: `lines` solved steps as plain text, no template, loss on
// every token: the corpus's "plain problems with answers". It is the skill of
// the worked form, densely, without raising how often the templated examples
// think:
//   running: one addition per line, "\n{a}+{b}={a+b}", where a ranges over the
//            running totals a solution meets and b over one operand;
//   rewrite, remaining: whole worked chains of training-split problems,
//            "\n47+18+93+25\n=65+93+25\n=158+25\n=183", `lines` steps in all
//            (whole chains, at least one); no held-out problem is ever in one.
inline std::string practice_pack(const zero_task& task, data::task_rng& rng, int lines) {
  const zero_task_options& o = task.options();
  const auto [lo, hi] = o.operand_range();
  std::string s;
  if (o.step_format != "running") {  // whole chains
    for (int steps = 0; steps < std::max(lines, 1); steps += o.operands - 1) {
      s += '\n';
      s += task.worked_steps(draw_zero_problem(task, rng, data::split::train));
    }
    return s;
  }
  for (int k = 0; k < lines; ++k) {
    const std::int64_t a = data::uniform_int(rng, lo, hi * (o.operands - 1));
    const std::int64_t b = data::uniform_int(rng, lo, hi);
    s += '\n' + std::to_string(a) + '+' + std::to_string(b) + '=' + std::to_string(a + b);
  }
  return s;
}

// The pretraining corpus: training-split problems, a `worked_fraction`
// minority solved with worked steps and the rest answered directly, all in the
// R1-Zero template so the base knows the tag layout. Deterministic from a seed.
class zero_corpus {
 public:
  // practice_fraction of the examples are practice packs of practice_lines lines.
  zero_corpus(zero_task_options options, double worked_fraction, std::uint64_t seed, double practice_fraction = 0.0,
              int practice_lines = 8)
      : gen_(std::move(options), seed, data::split::train), worked_fraction_(worked_fraction),
        practice_fraction_(practice_fraction), practice_lines_(practice_lines),
        rng_(data::mix64(seed ^ 0x636f72707573ULL)) {
    detail::require(worked_fraction >= 0 && worked_fraction <= 1, "zero_corpus: worked_fraction = ",
                    worked_fraction, " must be in [0, 1]");
    detail::require(practice_fraction >= 0 && practice_fraction <= 1, "zero_corpus: practice_fraction = ",
                    practice_fraction, " must be in [0, 1]");
    detail::require(practice_lines >= 1 && practice_lines <= 1000, "zero_corpus: practice_lines = ", practice_lines,
                    " must be in [1, 1000]");
  }

  corpus_example next() {
    if (practice_fraction_ > 0 && data::bernoulli(rng_, practice_fraction_))
      return {practice_pack(gen_.task(), rng_, practice_lines_), 0, false, true};
    const zero_problem p = gen_.next();
    const bool worked = data::bernoulli(rng_, worked_fraction_);
    data::rendered_chat r = gen_.task().example(p, worked);
    return {std::move(r.text), r.completion_offset, worked, false};
  }

  std::vector<corpus_example> take(std::size_t count) {
    std::vector<corpus_example> out;
    out.reserve(count);
    for (std::size_t k = 0; k < count; ++k) out.push_back(next());
    return out;
  }

  const zero_task& task() const { return gen_.task(); }

 private:
  zero_task_generator gen_;
  double worked_fraction_;
  double practice_fraction_;
  int practice_lines_;
  data::task_rng rng_;
};

}  // namespace lmrl
