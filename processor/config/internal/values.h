// Parsers and printers for configuration value syntaxes. Internal to
// processor/config (tests include it directly).
//
// Parse errors are InvalidArgument with a message of the form
// "expected <what>, got '<text>'"; the caller prefixes the key.
#ifndef TALLY_PROCESSOR_CONFIG_INTERNAL_VALUES_H_
#define TALLY_PROCESSOR_CONFIG_INTERNAL_VALUES_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tally::config_internal {

absl::StatusOr<int64_t> ParseInteger(std::string_view text);

// true|false|yes|no|on|off|1|0, case-insensitive.
absl::StatusOr<bool> ParseBool(std::string_view text);

// absl::ParseDuration syntax ("100ms", "1h30m", "0") plus a leading whole
// number of days ("35d", "1d12h").
absl::StatusOr<absl::Duration> ParseDurationValue(std::string_view text);
// Inverse of ParseDuration: whole days as "<n>d", otherwise absl's form.
std::string FormatDurationValue(absl::Duration d);

// Bytes, optionally with a B, KiB, MiB, GiB or TiB suffix ("256MiB"). Decimal
// (KB, MB) suffixes are rejected on purpose: they are ambiguous in practice.
absl::StatusOr<uint64_t> ParseSize(std::string_view text);
// Largest exact binary unit ("256MiB"), plain bytes otherwise.
std::string FormatSize(uint64_t bytes);

// RFC 3339 ("2000-01-01T00:00:00Z") or integer milliseconds since the epoch;
// returns milliseconds since the epoch.
absl::StatusOr<int64_t> ParseTimestampMs(std::string_view text);
// RFC 3339 in UTC with a "Z" suffix.
std::string FormatTimestampMs(int64_t ms);

struct HostPort {
  std::string host;  // brackets of an IPv6 literal removed
  int port = 0;
};
// "host:port" or "[v6]:port", port 0..65535, host non-empty.
absl::StatusOr<HostPort> ParseHostPort(std::string_view text);

// Kafka's rule: 1..249 characters of [a-zA-Z0-9._-], not "." or "..".
bool IsValidTopicName(std::string_view name);

// Whether a key's value must not appear in logs.
bool IsSecretKey(std::string_view key);

// Levenshtein distance, for "did you mean" hints.
size_t EditDistance(std::string_view a, std::string_view b);

}  // namespace tally::config_internal

#endif  // TALLY_PROCESSOR_CONFIG_INTERNAL_VALUES_H_
