// Minimal structured logging to stderr: one line per event, in one of two
// formats (log.format):
//   text: "<RFC3339 time> <LEVEL> <component>: <message>[ key=value]..."
//   json: {"time":"...","level":"...","component":"...","message":"...",
//          "fields":{"key":"value",...}}
// Either way an event is exactly one line: control characters in the text
// format are escaped like JSON's, so a message or value with a newline never
// starts a line without a timestamp. Thread-safe; a line is written with a
// single write(2) so lines from different threads never interleave. Abseil
// 20220623 (Debian 12) has no absl/log, hence this.
//
// Privacy: never pass raw IPs or user ids here (message or fields) unless the
// operator enabled it (see processor/config: log.pii); use RedactForLog().
#ifndef TALLY_PROCESSOR_COMMON_LOG_H_
#define TALLY_PROCESSOR_COMMON_LOG_H_

#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

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
enum class LogFormat { kText, kJson };

// One structured key/value pair of an event. Values are text: the caller
// formats numbers, which keeps the JSON schema of a field stable (always a
// string) whatever the value.
struct LogField {
  std::string key;
  std::string value;
};
using LogFields = std::vector<LogField>;

// Lines below this level are discarded. Default kInfo. Thread-safe.
void SetLogLevel(LogLevel level);
bool ParseLogLevel(std::string_view name, LogLevel* level);
bool LogEnabled(LogLevel level);
// Default kText. Thread-safe; set once at start-up, before other threads.
void SetLogFormat(LogFormat format);
void LogLine(LogLevel level, std::string_view component, std::string_view message);
void LogEvent(LogLevel level, std::string_view component, std::string_view message,
              const LogFields& fields);

// The line LogEvent writes (with its trailing '\n'), for tests and for
// callers that write elsewhere. Pure.
std::string FormatLogLine(LogFormat format, absl::Time time, LogLevel level,
                          std::string_view component, std::string_view message,
                          const LogFields& fields);

// Appends `s` as a JSON string literal (with its quotes): '"', '\\' and
// control characters escaped, invalid UTF-8 replaced by U+FFFD, so that the
// result is valid JSON whatever the bytes.
void AppendJsonString(std::string* out, std::string_view s);

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

// TALLY_LOG_FIELDS(kInfo, "kafka", "message", {"client", name}, {"facility", fac}):
// a message plus structured fields; the fields are only built when the level
// is enabled.
#define TALLY_LOG_FIELDS(level, component, message, ...)              \
  do {                                                                \
    if (::tally::LogEnabled(::tally::LogLevel::level)) {              \
      ::tally::LogEvent(::tally::LogLevel::level, component, message, \
                        ::tally::LogFields{__VA_ARGS__});             \
    }                                                                 \
  } while (false)

#endif  // TALLY_PROCESSOR_COMMON_LOG_H_
