// signals: Ctrl-C (SIGINT) and SIGTERM ask a trainer to stop cleanly.
//
// The handler only sets a flag (the one thing a signal handler may safely do);
// the trainer checks stop_requested() between steps, saves a checkpoint and
// returns. A second Ctrl-C restores the default action, so a stuck program
// can still be interrupted.
#pragma once

#include <csignal>

namespace lmrl {

namespace detail {
inline volatile std::sig_atomic_t stop_signal = 0;

extern "C" inline void lmrl_stop_handler(int sig) {
  if (stop_signal != 0) std::signal(sig, SIG_DFL);  // second signal: next one kills
  stop_signal = sig;
}
}  // namespace detail

// Installs the handler for SIGINT and SIGTERM.
inline void install_stop_handlers() {
  std::signal(SIGINT, detail::lmrl_stop_handler);
  std::signal(SIGTERM, detail::lmrl_stop_handler);
}

inline bool stop_requested() { return detail::stop_signal != 0; }
inline int stop_signal_number() { return static_cast<int>(detail::stop_signal); }

// Clears the flag (tests; a trainer that resumes in the same process).
inline void clear_stop_request() { detail::stop_signal = 0; }

// Sets the flag as a signal would (tests).
inline void request_stop(int sig = SIGINT) { detail::stop_signal = sig; }

}  // namespace lmrl
