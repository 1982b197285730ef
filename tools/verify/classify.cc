#include "tools/verify/classify.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace tally::verify {

MultisetClassification ClassifyMultiset(const std::vector<std::string>& expected,
                                        const std::vector<std::string>& observed) {
  std::map<std::string, int64_t> want, got;
  for (const std::string& s : expected) ++want[s];
  for (const std::string& s : observed) ++got[s];
  MultisetClassification out;
  for (const auto& [record, n] : want) {
    auto it = got.find(record);
    const int64_t have = it == got.end() ? 0 : it->second;
    for (int64_t i = have; i < n; ++i) out.missing.push_back(record);
    if (have > n) {
      out.copies += static_cast<uint64_t>(have - n);
      out.copied.emplace_back(record, static_cast<uint64_t>(have - n));
    }
  }
  for (const auto& [record, n] : got) {
    if (want.contains(record)) continue;
    for (int64_t i = 0; i < n; ++i) out.unexpected.push_back(record);
  }
  return out;
}

std::optional<std::string> CheckStatusOrder(const std::vector<std::string>& expected,
                                            const std::vector<std::string>& observed) {
  if (observed.empty() || expected.empty()) return std::nullopt;
  std::vector<std::string> first_seen;
  std::set<std::string> seen;
  for (const std::string& s : observed) {
    if (seen.insert(s).second) first_seen.push_back(s);
  }
  if (!std::is_permutation(first_seen.begin(), first_seen.end(), expected.begin(),
                           expected.end())) {
    return std::nullopt;  // lost or changed records: reported by the multiset comparison
  }
  auto list = [](const std::vector<std::string>& v) {
    std::string out;
    for (const std::string& s : v) absl::StrAppend(&out, "\n    ", s);
    return out;
  };
  if (first_seen != expected) {
    return absl::StrCat("statuses first appear in the wrong order; on the topic:", list(observed),
                        "\n  expected:", list(expected));
  }
  if (observed.back() != expected.back()) {
    return absl::StrCat(
        "the last record (what an upserting consumer keeps) is not the expected "
        "last one; on the topic:",
        list(observed), "\n  expected:", list(expected));
  }
  return std::nullopt;
}

std::optional<StateGap> ParseStateGapLine(std::string_view line_in) {
  absl::string_view line(line_in.data(), line_in.size());
  const size_t at = line.find("state gap: ");
  if (at == absl::string_view::npos) return std::nullopt;
  line.remove_prefix(at + 11);
  StateGap gap;
  bool have_partition = false, have_topic = false, have_resume = false, have_end = false;
  for (absl::string_view field : absl::StrSplit(line, ' ', absl::SkipWhitespace())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(field, absl::MaxSplits('=', 1));
    if (kv.first == "partition") {
      have_partition = absl::SimpleAtoi(kv.second, &gap.partition);
    } else if (kv.first == "topic") {
      gap.topic = std::string(kv.second);
      have_topic = !gap.topic.empty();
    } else if (kv.first == "resumes_at") {
      have_resume = absl::SimpleAtoi(kv.second, &gap.resumes_at);
    } else if (kv.first == "local_state_ends_at") {
      int64_t end = 0;
      if (kv.second == "none") {
        have_end = true;
      } else if (absl::SimpleAtoi(kv.second, &end)) {
        gap.local_state_ends_at = end;
        have_end = true;
      }
    }
  }
  if (!have_partition || !have_topic || !have_resume || !have_end) return std::nullopt;
  return gap;
}

std::optional<std::vector<int32_t>> ParseUncommittedRevocationLine(std::string_view line) {
  std::string_view rest;
  for (std::string_view marker : {std::string_view("partitions revoked with uncommitted offsets: "),
                                  std::string_view("transaction aborted for tasks: ")}) {
    if (const size_t at = line.find(marker); at != std::string_view::npos) {
      rest = line.substr(at + marker.size());
      break;
    }
  }
  if (rest.empty()) return std::nullopt;
  rest = rest.substr(0, rest.find(';'));
  std::vector<int32_t> partitions;
  // Entries "topic[p]@offset", separated by ", ".
  for (size_t open = rest.find('['); open != std::string_view::npos;
       open = rest.find('[', open + 1)) {
    const size_t close = rest.find(']', open);
    if (close == std::string_view::npos) break;
    int32_t p = -1;
    if (absl::SimpleAtoi(absl::string_view(rest.data() + open + 1, close - open - 1), &p) &&
        p >= 0) {
      partitions.push_back(p);
    }
  }
  return partitions;
}

std::optional<std::string> CheckProducedAt(int64_t produced_at_ms, int64_t now_ms) {
  if (produced_at_ms < kEarliestProducedAtMs) {
    return absl::StrCat("produced_at ", produced_at_ms, " is missing or before 2020-01-01");
  }
  if (produced_at_ms > now_ms + kProducedAtSkewMs) {
    return absl::StrCat("produced_at ", produced_at_ms, " is in the future (verifier clock ",
                        now_ms, ")");
  }
  return std::nullopt;
}

}  // namespace tally::verify
