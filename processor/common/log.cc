#include "processor/common/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/hash/hash.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace tally {
namespace {

// Relaxed: the level is a filter, not a synchronisation point; a line logged
// just around a level change may go either way.
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
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

void LogLine(LogLevel level, std::string_view component, std::string_view message) {
  std::string line =
      absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()), " ",
                   LevelName(level), " ", AsAbsl(component), ": ", AsAbsl(message), "\n");
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

void SetLogPii(bool enabled) { g_pii.store(enabled, std::memory_order_relaxed); }

std::string RedactForLog(std::string_view value) {
  if (g_pii.load(std::memory_order_relaxed)) return std::string(value);
  // absl::Hash is salted per process, which is what we want: correlation
  // inside one process's logs, nothing reversible across deployments.
  return absl::StrFormat("h:%08x", static_cast<uint32_t>(absl::Hash<std::string_view>{}(value)));
}

}  // namespace tally
