#include "processor/fraud/fraud_rules.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace tally {
namespace {

constexpr std::string_view kBotKey = "fraud.bot_user_agents_file";
constexpr std::string_view kBlocklistKey = "fraud.ip_blocklist_file";

// Debian's Abseil has its own string_view; convert explicitly.
absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

absl::Status ReadFile(std::string_view key, const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat(Av(key), ": ", path, ": cannot open: ", std::strerror(errno)));
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) {
    return absl::DataLossError(absl::StrCat(Av(key), ": ", path, ": read error"));
  }
  *out = std::move(buf).str();
  return absl::OkStatus();
}

// Calls fn(line_number, content) for every non-blank, non-comment line, with
// surrounding whitespace removed. Stops at the first error fn returns.
template <typename Fn>
absl::Status ForEachEntry(std::string_view text, Fn fn) {
  int line_number = 0;
  for (const absl::string_view raw : absl::StrSplit(Av(text), '\n')) {
    ++line_number;
    const absl::string_view line = absl::StripAsciiWhitespace(raw);
    if (line.empty() || line.front() == '#') continue;
    absl::Status status = fn(line_number, std::string_view(line.data(), line.size()));
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status LineError(std::string_view key, std::string_view source, int line,
                       std::string_view entry, std::string_view problem) {
  return absl::InvalidArgumentError(
      absl::StrCat(Av(key), ": ", Av(source), ":", line, ": '", Av(entry), "' ", Av(problem)));
}

}  // namespace

absl::StatusOr<std::shared_ptr<const FraudRules>> FraudRules::Load(
    const std::string& bot_file, const std::string& blocklist_file) {
  std::string bots;
  std::string blocklist;
  if (absl::Status s = ReadFile(kBotKey, bot_file, &bots); !s.ok()) return s;
  if (absl::Status s = ReadFile(kBlocklistKey, blocklist_file, &blocklist); !s.ok()) return s;
  return FromText(bots, blocklist, bot_file, blocklist_file);
}

absl::StatusOr<std::shared_ptr<const FraudRules>> FraudRules::FromText(
    std::string_view bot_patterns, std::string_view blocklist, std::string_view bot_source,
    std::string_view blocklist_source) {
  std::vector<std::string> patterns;
  absl::Status status =
      ForEachEntry(bot_patterns, [&](int line, std::string_view pattern) -> absl::Status {
        if (pattern.size() > kMaxPatternBytes) {
          return LineError(kBotKey, bot_source, line, pattern.substr(0, 40),
                           absl::StrCat("(truncated) is longer than ", kMaxPatternBytes, " bytes"));
        }
        patterns.emplace_back(pattern);
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  absl::StatusOr<fraud_internal::UaMatcher> matcher = fraud_internal::UaMatcher::Build(patterns);
  if (!matcher.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Av(kBotKey), ": ", Av(bot_source), ": ", matcher.status().message()));
  }

  std::vector<fraud_internal::Cidr> cidrs;
  status = ForEachEntry(blocklist, [&](int line, std::string_view entry) -> absl::Status {
    // A trailing comment: '#' never occurs in an address.
    if (const size_t hash = entry.find('#'); hash != std::string_view::npos) {
      const absl::string_view trimmed =
          absl::StripTrailingAsciiWhitespace(Av(entry.substr(0, hash)));
      entry = std::string_view(trimmed.data(), trimmed.size());
    }
    fraud_internal::Cidr cidr;
    std::string_view problem;
    if (!fraud_internal::ParseCidr(entry, &cidr, &problem)) {
      return LineError(kBlocklistKey, blocklist_source, line, entry, problem);
    }
    cidrs.push_back(cidr);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;

  const size_t entries = cidrs.size();
  return std::shared_ptr<const FraudRules>(
      new FraudRules(*std::move(matcher), fraud_internal::CidrSet(cidrs), entries));
}

std::string FraudRules::Summary() const {
  return absl::StrCat("bot_patterns=", bots_.pattern_count(), " (automaton ", bots_.state_count(),
                      " states, ", bots_.memory_bytes() / 1024,
                      " KiB) blocklist=", blocklist_entries_, " entries (",
                      blocklist_.range_count(), " ranges)");
}

}  // namespace tally
