#include "processor/config/internal/values.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace tally::config_internal {
namespace {

absl::string_view ToAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

absl::Status Expected(std::string_view what, std::string_view text) {
  return absl::InvalidArgumentError(
      absl::StrCat("expected ", ToAbsl(what), ", got '", ToAbsl(text), "'"));
}

bool AllDigits(absl::string_view s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](char c) { return absl::ascii_isdigit(c); });
}

constexpr int64_t kMillisPerDay = 24 * 3600 * 1000;

}  // namespace

absl::StatusOr<int64_t> ParseInteger(std::string_view text) {
  int64_t value = 0;
  if (!absl::SimpleAtoi(ToAbsl(text), &value)) return Expected("an integer", text);
  return value;
}

absl::StatusOr<bool> ParseBool(std::string_view text) {
  const std::string lower = absl::AsciiStrToLower(absl::StripAsciiWhitespace(ToAbsl(text)));
  if (lower == "true" || lower == "yes" || lower == "on" || lower == "1") return true;
  if (lower == "false" || lower == "no" || lower == "off" || lower == "0") return false;
  return Expected("true or false", text);
}

absl::StatusOr<absl::Duration> ParseDurationValue(std::string_view text) {
  absl::string_view rest = absl::StripAsciiWhitespace(ToAbsl(text));
  const auto error = [&] { return Expected("a duration (e.g. 100ms, 30s, 10m, 35d)", text); };
  if (rest.empty()) return error();
  absl::Duration total = absl::ZeroDuration();
  bool negative = absl::ConsumePrefix(&rest, "-");
  // A leading "<digits>d": days, which absl::ParseDuration does not know.
  size_t digits = 0;
  while (digits < rest.size() && absl::ascii_isdigit(rest[digits])) ++digits;
  if (digits > 0 && digits < rest.size() && rest[digits] == 'd') {
    int64_t days = 0;
    // Bound the day count so that days * 24h cannot overflow absl::Duration's
    // finite range (about 292 billion years; 10^9 days is plenty).
    if (!absl::SimpleAtoi(rest.substr(0, digits), &days) || days > 1'000'000'000) return error();
    total = absl::Milliseconds(days * kMillisPerDay);
    rest.remove_prefix(digits + 1);
    if (absl::StartsWith(rest, "-") || absl::StartsWith(rest, "+")) return error();
  }
  if (!rest.empty()) {
    absl::Duration part;
    if (!absl::ParseDuration(rest, &part)) return error();
    total += part;
  }
  return negative ? -total : total;
}

std::string FormatDurationValue(absl::Duration d) {
  const absl::Duration day = absl::Hours(24);
  if (d > absl::ZeroDuration() && d != absl::InfiniteDuration()) {
    absl::Duration remainder;
    const int64_t days = absl::IDivDuration(d, day, &remainder);
    if (remainder == absl::ZeroDuration()) return absl::StrCat(days, "d");
  }
  return absl::FormatDuration(d);
}

absl::StatusOr<uint64_t> ParseSize(std::string_view text) {
  absl::string_view s = absl::StripAsciiWhitespace(ToAbsl(text));
  size_t digits = 0;
  while (digits < s.size() && absl::ascii_isdigit(s[digits])) ++digits;
  const auto error = [&] { return Expected("a size in bytes (e.g. 65536, 64KiB, 256MiB)", text); };
  if (digits == 0) return error();
  uint64_t number = 0;
  if (!absl::SimpleAtoi(s.substr(0, digits), &number)) return error();
  const absl::string_view suffix = absl::StripAsciiWhitespace(s.substr(digits));
  int shift = 0;
  if (suffix.empty() || suffix == "B") {
    shift = 0;
  } else if (suffix == "KiB") {
    shift = 10;
  } else if (suffix == "MiB") {
    shift = 20;
  } else if (suffix == "GiB") {
    shift = 30;
  } else if (suffix == "TiB") {
    shift = 40;
  } else {
    return error();
  }
  if (shift > 0 && number > (std::numeric_limits<uint64_t>::max() >> shift)) return error();
  return number << shift;
}

std::string FormatSize(uint64_t bytes) {
  if (bytes == 0) return "0";
  static constexpr struct {
    int shift;
    const char* suffix;
  } kUnits[] = {{40, "TiB"}, {30, "GiB"}, {20, "MiB"}, {10, "KiB"}};
  for (const auto& unit : kUnits) {
    const uint64_t size = uint64_t{1} << unit.shift;
    if (bytes % size == 0) return absl::StrCat(bytes / size, unit.suffix);
  }
  return absl::StrCat(bytes);
}

absl::StatusOr<int64_t> ParseTimestampMs(std::string_view text) {
  absl::string_view s = absl::StripAsciiWhitespace(ToAbsl(text));
  absl::string_view unsigned_part = s;
  absl::ConsumePrefix(&unsigned_part, "-");
  if (AllDigits(unsigned_part)) {
    int64_t ms = 0;
    if (absl::SimpleAtoi(s, &ms)) return ms;
  } else {
    absl::Time t;
    std::string err;
    if (absl::ParseTime(absl::RFC3339_full, s, &t, &err)) return absl::ToUnixMillis(t);
  }
  return Expected(
      "an RFC 3339 time (e.g. 2000-01-01T00:00:00Z) or integer milliseconds since the epoch", text);
}

std::string FormatTimestampMs(int64_t ms) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", absl::FromUnixMillis(ms), absl::UTCTimeZone());
}

absl::StatusOr<HostPort> ParseHostPort(std::string_view text) {
  const absl::string_view s = ToAbsl(text);
  const auto error = [&] { return Expected("host:port (e.g. 0.0.0.0:9464)", text); };
  HostPort result;
  absl::string_view port;
  if (absl::StartsWith(s, "[")) {
    const size_t close = s.find(']');
    if (close == absl::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') {
      return error();
    }
    result.host = std::string(s.substr(1, close - 1));
    port = s.substr(close + 2);
  } else {
    const size_t colon = s.rfind(':');
    if (colon == absl::string_view::npos) return error();
    result.host = std::string(s.substr(0, colon));
    if (result.host.find(':') != std::string::npos) return error();  // bare IPv6
    port = s.substr(colon + 1);
  }
  if (result.host.empty() || !AllDigits(port) || port.size() > 5 ||
      !absl::SimpleAtoi(port, &result.port) || result.port > 65535) {
    return error();
  }
  return result;
}

bool IsValidTopicName(std::string_view name) {
  if (name.empty() || name.size() > 249 || name == "." || name == "..") return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-';
  });
}

bool IsSecretKey(std::string_view key) {
  const std::string lower = absl::AsciiStrToLower(ToAbsl(key));
  for (const char* marker : {"password", "secret", "token", "sasl.oauthbearer", "ssl.key"}) {
    if (absl::StrContains(lower, marker)) return true;
  }
  return false;
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace tally::config_internal
