// The reloadable part of the fraud filter: the compiled bot user-agent
// matcher and the IP blocklist. Immutable once built, so any number of
// threads may use one concurrently; a reload builds a new FraudRules and the
// FraudFilter swaps it in.
//
// File formats (config keys fraud.bot_user_agents_file and
// fraud.ip_blocklist_file), UTF-8 text, one entry per line, surrounding
// whitespace (and a CR of CRLF files) ignored, blank lines and lines whose
// first non-blank character is '#' ignored:
//  - bot user agents: a pattern per line, matched as a case-insensitive
//    (ASCII) substring of the user agent; at most kMaxPatternBytes bytes.
//    '#' inside a pattern is literal.
//  - IP blocklist: an IPv4 or IPv6 address or CIDR per line ("10.0.0.0/8",
//    "2001:db8::/32", "192.0.2.7"); a trailing "# comment" is allowed. Host
//    bits below the prefix must be zero. Overlapping entries are fine.
// Errors name the config key, the file and the line:
//   fraud.ip_blocklist_file: /path:12: '10.0.0.0/33' is not an IPv4/IPv6
//   address or CIDR
#ifndef TALLY_PROCESSOR_FRAUD_FRAUD_RULES_H_
#define TALLY_PROCESSOR_FRAUD_FRAUD_RULES_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "processor/fraud/internal/cidr_set.h"
#include "processor/fraud/internal/ua_matcher.h"
#include "processor/model/ip_address.h"

namespace tally {

class FraudRules {
 public:
  static constexpr size_t kMaxPatternBytes = 1024;

  // Reads and compiles both files.
  static absl::StatusOr<std::shared_ptr<const FraudRules>> Load(const std::string& bot_file,
                                                                const std::string& blocklist_file);
  // Compiles file contents; the names only appear in error messages.
  static absl::StatusOr<std::shared_ptr<const FraudRules>> FromText(
      std::string_view bot_patterns, std::string_view blocklist,
      std::string_view bot_source = "<bot_user_agents>",
      std::string_view blocklist_source = "<ip_blocklist>");

  // Rule 1 (bot_user_agent). No allocation; O(user_agent.size()).
  bool IsBotUserAgent(std::string_view user_agent) const { return bots_.Matches(user_agent); }
  // Rule 2 (ip_blocklisted). No allocation; O(log ranges).
  bool IsBlocklisted(const IpAddress& ip) const { return blocklist_.Contains(ip); }

  size_t bot_pattern_count() const { return bots_.pattern_count(); }
  size_t blocklist_entry_count() const { return blocklist_entries_; }
  size_t blocklist_range_count() const { return blocklist_.range_count(); }
  // For the start-up and reload log lines, e.g. "bot_patterns=63
  // (automaton 712 states, 121 KiB) blocklist=2 entries (2 ranges)".
  std::string Summary() const;

 private:
  FraudRules(fraud_internal::UaMatcher bots, fraud_internal::CidrSet blocklist, size_t entries)
      : bots_(std::move(bots)), blocklist_(std::move(blocklist)), blocklist_entries_(entries) {}

  const fraud_internal::UaMatcher bots_;
  const fraud_internal::CidrSet blocklist_;
  const size_t blocklist_entries_;
};

}  // namespace tally

#endif  // TALLY_PROCESSOR_FRAUD_FRAUD_RULES_H_
