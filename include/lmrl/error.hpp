// lmrl::error — the one exception type the library throws for bad input.
//
// Every message names the function, the argument and the values involved, so a
// user can tell from the message alone what to fix.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace lmrl {

class error : public std::runtime_error {
 public:
  explicit error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {

// Builds a message from any streamable pieces: fail("grpo: rewards has ", n, " rows").
template <class... Parts>
[[noreturn]] void fail(Parts&&... parts) {
  std::ostringstream message;
  (message << ... << std::forward<Parts>(parts));
  throw error(message.str());
}

template <class... Parts>
void require(bool condition, Parts&&... parts) {
  if (!condition) fail(std::forward<Parts>(parts)...);
}

}  // namespace detail
}  // namespace lmrl
