// Chat templates: turns rendered to the text a model is trained on, with the
// character offsets of the completion so that only completion tokens are
// trained (the prompt part gets a 0 loss mask).
//
// Two renderers:
//  - r1_zero_template: the DeepSeek-R1-Zero prompt for a base model (DeepSeek-AI
//    2025, Table 1), with {system} and {prompt} placeholders; the rendered prompt
//    ends with "Assistant: <think>", so the completion starts inside the think tag.
//  - chatml_template: Qwen-style ChatML, "<|im_start|>role\n...<|im_end|>\n" per
//    turn, the generation prompt "<|im_start|>assistant\n" (what Qwen2/2.5's
//    tokenizer chat_template and TRL's apply_chat_template produce).
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lmrl/data/placeholders.hpp"
#include "lmrl/error.hpp"

namespace lmrl::data {

struct chat_message {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// text[completion_offset, completion_end) is the completion (the tokens to
// train); text[0, completion_offset) is the prompt. With no completion the two
// offsets are both text.size().
struct rendered_chat {
  std::string text;
  std::size_t completion_offset = 0;
  std::size_t completion_end = 0;

  std::string_view prompt() const { return std::string_view(text).substr(0, completion_offset); }
  std::string_view completion() const {
    return std::string_view(text).substr(completion_offset, completion_end - completion_offset);
  }
};

namespace internal {

inline void check_role(const char* function, const chat_message& m, std::size_t index) {
  if (m.role != "system" && m.role != "user" && m.role != "assistant")
    lmrl::detail::fail(function, ": message ", index, " has role \"", m.role,
                       "\" but a role is \"system\", \"user\" or \"assistant\"");
}

}  // namespace internal

// DeepSeek-R1-Zero template. The default text renders exactly
// "A conversation between User and Assistant. ... <answer> answer here </answer>. User: {prompt}. Assistant: <think>".
struct r1_zero_template {
  std::string system =
      "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
      "assistant first thinks about the reasoning process in the mind and then provides the user with the answer. "
      "The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, "
      "respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>.";
  std::string text = "{system} User: {prompt}. Assistant: <think>";  // placeholders: {prompt}, optional {system}

  // The prompt for one question, followed by `completion` (may be empty).
  rendered_chat render(std::string_view prompt, std::string_view completion = {}) const {
    return render_with(system, prompt, completion);
  }

  // [system], user, [assistant]: a system message replaces `system`; a final
  // assistant message is the completion. Other conversations (several user turns)
  // have no rendering in this template and are an error.
  rendered_chat render(std::span<const chat_message> messages) const {
    const char* f = "r1_zero_template::render";
    std::size_t k = 0;
    std::string_view sys = system;
    for (std::size_t i = 0; i < messages.size(); ++i) internal::check_role(f, messages[i], i);
    if (k < messages.size() && messages[k].role == "system") sys = messages[k++].content;
    lmrl::detail::require(k < messages.size() && messages[k].role == "user", f,
                          ": expected a user message at position ", k, " of ", messages.size(), " messages");
    const std::string_view prompt = messages[k++].content;
    std::string_view completion;
    if (k < messages.size() && messages[k].role == "assistant") completion = messages[k++].content;
    lmrl::detail::require(k == messages.size(), f, ": message ", k, " (role \"",
                          k < messages.size() ? messages[k].role : std::string(),
                          "\") is past the single [system], user, [assistant] exchange this template renders");
    return render_with(sys, prompt, completion);
  }

 private:
  rendered_chat render_with(std::string_view sys, std::string_view prompt, std::string_view completion) const {
    require_placeholders(text, {"prompt"}, "r1_zero_template");
    rendered_chat out;
    out.text = fill_placeholders(text, {{"system", sys}, {"prompt", prompt}}, "r1_zero_template");
    out.completion_offset = out.text.size();
    out.text += completion;
    out.completion_end = out.text.size();
    return out;
  }
};

// Qwen-style ChatML.
struct chatml_template {
  // Inserted as the system turn when the conversation has none; empty: no system
  // turn. Qwen2.5-Instruct's own template uses "You are Qwen, created by Alibaba
  // Cloud. You are a helpful assistant.", Qwen2's "You are a helpful assistant.".
  std::string default_system;
  bool add_generation_prompt = true;  // end an unanswered conversation with "<|im_start|>assistant\n"
  std::string assistant_prefix;       // prompt text forced at the start of the answer, e.g. "<think>"

  // A final assistant message is the completion: its content and the closing
  // "<|im_end|>" are trained (so the model learns to stop), the newline after it
  // is not. Earlier assistant turns are part of the prompt.
  rendered_chat render(std::span<const chat_message> messages) const {
    const char* f = "chatml_template::render";
    rendered_chat out;
    for (std::size_t i = 0; i < messages.size(); ++i) {
      internal::check_role(f, messages[i], i);
      for (const std::string_view token : {"<|im_start|>", "<|im_end|>"})
        lmrl::detail::require(messages[i].content.find(token) == std::string::npos, f, ": message ", i, " (role ",
                              messages[i].role, ") contains the control token ", token);
    }
    if (!default_system.empty() && (messages.empty() || messages[0].role != "system"))
      out.text += "<|im_start|>system\n" + default_system + "<|im_end|>\n";
    const bool answered = !messages.empty() && messages.back().role == "assistant";
    for (std::size_t i = 0; i < messages.size(); ++i) {
      const bool completion = answered && i + 1 == messages.size();
      out.text += "<|im_start|>" + messages[i].role + "\n";
      if (completion) {
        out.text += assistant_prefix;
        out.completion_offset = out.text.size();
      }
      out.text += messages[i].content + "<|im_end|>";
      if (completion) out.completion_end = out.text.size();
      out.text += "\n";
    }
    if (!answered) {
      if (add_generation_prompt) out.text += "<|im_start|>assistant\n" + assistant_prefix;
      out.completion_offset = out.completion_end = out.text.size();
    }
    return out;
  }

  // A user prompt (with an optional system turn) and an optional completion.
  rendered_chat render(std::string_view prompt, std::string_view completion = {},
                       std::string_view system = {}) const {
    std::vector<chat_message> messages;
    if (!system.empty()) messages.push_back({"system", std::string(system)});
    messages.push_back({"user", std::string(prompt)});
    if (!completion.empty()) messages.push_back({"assistant", std::string(completion)});
    return render(messages);
  }
};

}  // namespace lmrl::data
