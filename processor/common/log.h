// Minimal structured logging to stderr: one line per event,
// "<RFC3339 time> <LEVEL> <component>: <message>". Thread-safe; a line is
// written with a single write(2) so lines from different threads never
// interleave. Abseil 20220623 (Debian 12) has no absl/log, hence this.
//
// Privacy: never pass raw IPs or user ids here unless the operator enabled
// it (see processor/config: log.pii); use RedactForLog().
#ifndef TALLY_PROCESSOR_COMMON_LOG_H_
#define TALLY_PROCESSOR_COMMON_LOG_H_

#include <string>
#include <string_view>
#include <type_traits>

#include "absl/strings/str_cat.h"

namespace tally {

// Debian 12's Abseil has its own absl::string_view, which does not convert
// from std::string_view; these bridge the two for StrCat and friends.
inline absl::string_view AsAbsl(std::string_view s) { return {s.data(), s.size()}; }
namespace log_internal {
template <typename T>
decltype(auto) Bridge(const T& value) {
  if constexpr (std::is_convertible_v<const T&, std::string_view> &&
                !std::is_convertible_v<const T&, absl::string_view>) {
    return AsAbsl(value);
  } else {
    return (value);
  }
}
template <typename... Args>
std::string Concat(const Args&... args) {
  return absl::StrCat(Bridge(args)...);
}
}  // namespace log_internal

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Lines below this level are discarded. Default kInfo. Thread-safe.
void SetLogLevel(LogLevel level);
bool ParseLogLevel(std::string_view name, LogLevel* level);
bool LogEnabled(LogLevel level);
void LogLine(LogLevel level, std::string_view component, std::string_view message);

// Whether RedactForLog passes values through (log.pii=true) or hashes them.
void SetLogPii(bool enabled);
// Returns the value itself when PII logging is on, otherwise a short stable
// hash ("h:3f2a9c1b") that still lets an operator correlate lines.
std::string RedactForLog(std::string_view value);

}  // namespace tally

#define TALLY_LOG(level, component, ...)                            \
  do {                                                              \
    if (::tally::LogEnabled(::tally::LogLevel::level)) {            \
      ::tally::LogLine(::tally::LogLevel::level, component,         \
                       ::tally::log_internal::Concat(__VA_ARGS__)); \
    }                                                               \
  } while (false)

#endif  // TALLY_PROCESSOR_COMMON_LOG_H_
