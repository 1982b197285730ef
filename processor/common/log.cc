#include "processor/common/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace tally {
namespace {

// Relaxed: the level and format are filters, not synchronisation points; a
// line logged just around a change may go either way.
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<int> g_format{static_cast<int>(LogFormat::kText)};
std::atomic<bool> g_pii{false};

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kWarning:
      return "WARN";
    case LogLevel::kError:
      return "ERROR";
  }
  return "?";
}

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD in UTF-8

// The length of the well-formed UTF-8 sequence at the start of `s` (1-4), or
// 0 if it is not one (overlong forms, surrogates and code points above
// U+10FFFF included, per RFC 3629).
size_t Utf8SequenceLength(std::string_view s) {
  const auto byte = [&s](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char b0 = byte(0);
  if (b0 < 0x80) return 1;
  size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (s.size() < n || byte(1) < lo || byte(1) > hi) return 0;
  for (size_t i = 2; i < n; ++i) {
    if (byte(i) < 0x80 || byte(i) > 0xBF) return 0;
  }
  return n;
}

// JSON's two-character escapes of control characters, or null (those
// become \u00XX).
const char* ShortEscape(unsigned char c) {
  static constexpr std::pair<char, const char*> kEscapes[] = {
      {'\n', "\\n"}, {'\r', "\\r"}, {'\t', "\\t"}, {'\b', "\\b"}, {'\f', "\\f"}};
  for (const auto& [raw, escaped] : kEscapes) {
    if (static_cast<char>(c) == raw) return escaped;
  }
  return nullptr;
}

// Appends `s` with control characters escaped as in JSON and invalid UTF-8
// replaced by U+FFFD; `json` also escapes '"' and '\\'.
void AppendEscaped(std::string* out, std::string_view s, bool json) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const size_t n = Utf8SequenceLength(s.substr(i));
      if (n == 0) {
        out->append(kReplacement);
        ++i;
      } else {
        out->append(s.data() + i, n);
        i += n;
      }
      continue;
    }
    ++i;
    if (c == '"' || c == '\\') {
      if (json) out->push_back('\\');
      out->push_back(static_cast<char>(c));
    } else if (const char* escape = ShortEscape(c); escape != nullptr) {
      out->append(escape);
    } else if (c < 0x20 || c == 0x7F) {
      absl::StrAppendFormat(out, "\\u%04x", c);
    } else {
      out->push_back(static_cast<char>(c));
    }
  }
}

// A text-format field value stays bare when that cannot be misread (no
// spaces, quotes, '=' or bytes that need escaping), otherwise it is quoted.
bool NeedsQuotes(std::string_view v) {
  if (v.empty()) return true;
  for (char ch : v) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c == '"' || c == '=' || c == '\\' || c >= 0x7F) return true;
  }
  return false;
}

void WriteLine(const std::string& line) {
  // One write(2) per line: atomic with respect to other writers for the
  // line lengths we produce (below PIPE_BUF for pipes, always for files
  // opened O_APPEND).
  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = ::write(STDERR_FILENO, line.data() + done, line.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
}

}  // namespace

void SetLogLevel(LogLevel level) {
  g_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

bool ParseLogLevel(std::string_view name, LogLevel* level) {
  if (name == "debug") {
    *level = LogLevel::kDebug;
  } else if (name == "info") {
    *level = LogLevel::kInfo;
  } else if (name == "warning" || name == "warn") {
    *level = LogLevel::kWarning;
  } else if (name == "error") {
    *level = LogLevel::kError;
  } else {
    return false;
  }
  return true;
}

bool LogEnabled(LogLevel level) {
  return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

void SetLogFormat(LogFormat format) {
  g_format.store(static_cast<int>(format), std::memory_order_relaxed);
}

void AppendJsonString(std::string* out, std::string_view s) {
  out->push_back('"');
  AppendEscaped(out, s, /*json=*/true);
  out->push_back('"');
}

std::string FormatLogLine(LogFormat format, absl::Time time, LogLevel level,
                          std::string_view component, std::string_view message,
                          const LogFields& fields) {
  const std::string when = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", time, absl::UTCTimeZone());
  std::string line;
  switch (format) {
    case LogFormat::kJson:
      absl::StrAppend(&line, "{\"time\":\"", when, "\",\"level\":\"", LevelName(level),
                      "\",\"component\":");
      AppendJsonString(&line, component);
      line.append(",\"message\":");
      AppendJsonString(&line, message);
      line.append(",\"fields\":{");
      for (size_t i = 0; i < fields.size(); ++i) {
        if (i > 0) line.push_back(',');
        AppendJsonString(&line, fields[i].key);
        line.push_back(':');
        AppendJsonString(&line, fields[i].value);
      }
      line.append("}}\n");
      return line;
    case LogFormat::kText:
      absl::StrAppend(&line, when, " ", LevelName(level), " ");
      AppendEscaped(&line, component, /*json=*/false);
      line.append(": ");
      AppendEscaped(&line, message, /*json=*/false);
      for (const LogField& field : fields) {
        line.push_back(' ');
        AppendEscaped(&line, field.key, /*json=*/false);
        line.push_back('=');
        if (NeedsQuotes(field.value)) {
          AppendJsonString(&line, field.value);
        } else {
          line.append(field.value);
        }
      }
      line.push_back('\n');
      return line;
  }
  return line;
}

void LogEvent(LogLevel level, std::string_view component, std::string_view message,
              const LogFields& fields) {
  const auto format = static_cast<LogFormat>(g_format.load(std::memory_order_relaxed));
  WriteLine(FormatLogLine(format, absl::Now(), level, component, message, fields));
}

void LogLine(LogLevel level, std::string_view component, std::string_view message) {
  LogEvent(level, component, message, {});
}

void SetLogPii(bool enabled) { g_pii.store(enabled, std::memory_order_relaxed); }

std::string RedactForLog(std::string_view value) {
  if (g_pii.load(std::memory_order_relaxed)) return std::string(value);
  // absl::Hash is salted per process, which is what we want: correlation
  // inside one process's logs, nothing reversible across deployments.
  return absl::StrFormat("h:%08x", static_cast<uint32_t>(absl::Hash<std::string_view>{}(value)));
}

}  // namespace tally
