// A case-insensitive multi-substring matcher for user agents: an Aho–Corasick
// automaton compiled into a dense DFA over ASCII-lowercased bytes. Internal to
// processor/fraud (FraudRules owns one).
//
// Why a dense DFA: matching is one table load per input byte, no allocation,
// no backtracking, no failure-link loops at match time; the cost is
// O(len(user_agent)) whatever the number of patterns. The table is kept small
// by an alphabet reduction: bytes that occur in no pattern share one class,
// so the DFA is states x (distinct pattern bytes + 1) entries, e.g. ~60
// patterns -> ~700 states x ~45 classes x 4 bytes = ~120 KiB.
//
// Case folding: patterns are lowercased at build time and every input byte is
// mapped through a 256-entry class table in which 'A'..'Z' and 'a'..'z' share
// a class, so folding costs nothing per byte. Only ASCII letters fold; other
// bytes (UTF-8 sequences included) match exactly.
//
// Immutable after Build: safe to use from any number of threads.
#ifndef TALLY_PROCESSOR_FRAUD_INTERNAL_UA_MATCHER_H_
#define TALLY_PROCESSOR_FRAUD_INTERNAL_UA_MATCHER_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tally::fraud_internal {

class UaMatcher {
 public:
  // Upper bound on DFA entries (states x classes), 64 MiB: a pattern file
  // large enough to exceed it is a mistake, not a configuration.
  static constexpr uint64_t kMaxTableEntries = uint64_t{16} << 20;

  // REQUIRES: every pattern is non-empty. Duplicates and patterns contained
  // in others are fine. No patterns: the matcher never matches.
  static absl::StatusOr<UaMatcher> Build(const std::vector<std::string>& patterns);

  // Whether any pattern occurs in `text`, ignoring ASCII case.
  bool Matches(std::string_view text) const {
    // next_ holds row offsets (state * classes), not state numbers, to save
    // a multiply per byte; kMatch marks transitions into accepting states,
    // which end the scan (we only need "some pattern occurs").
    uint32_t row = 0;
    for (const char c : text) {
      const uint32_t next = next_[row + class_of_[static_cast<uint8_t>(c)]];
      if (next == kMatch) return true;
      row = next;
    }
    return false;
  }

  size_t pattern_count() const { return pattern_count_; }
  size_t state_count() const { return state_count_; }
  size_t memory_bytes() const { return next_.size() * sizeof(uint32_t); }

 private:
  static constexpr uint32_t kMatch = UINT32_MAX;

  UaMatcher() = default;

  std::array<uint8_t, 256> class_of_{};
  std::vector<uint32_t> next_;  // never empty after Build (the root row)
  size_t pattern_count_ = 0;
  size_t state_count_ = 0;
};

}  // namespace tally::fraud_internal

#endif  // TALLY_PROCESSOR_FRAUD_INTERNAL_UA_MATCHER_H_
