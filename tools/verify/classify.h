// Telling replays from defects. Tally is at-least-once until transactions
// arrive: after a crash (kill -9) it replays the batch whose state it had not
// written, and re-emits that batch's outputs with the same ids and bytes.
// The verifier therefore sorts every output record that is not exactly what
// the oracle expects into one of two kinds:
//
//  - an IDENTICAL COPY: a record equal, field for field, to one the oracle
//    expects for the same identity, beyond the number of times it expects it.
//    Identities: a commission is (commission_id, status) with its money and
//    click fields; a rejection is its source message (topic, partition,
//    offset) with its reason and original key and bytes; an unattributed
//    record is the conversion (every field, its status) with its reason.
//    At-least-once allows copies; they are counted per topic and fail the
//    run only beyond --max-copies.
//  - a MISMATCH: anything lost (expected, not on the topic), changed (on the
//    topic with fields no expected record of that identity has) or wrongly
//    decided (a record the oracle does not expect at all, e.g. a click
//    rejected that should have been accepted, or a second rejection of one
//    message with another reason). Mismatches fail the run.
//
// Status order per commission_id with copies. A downstream consumer upserts
// by commission_id (or a compacted topic keeps the latest record), so what
// it ends with is the LAST record of each id, and what it has ever shown is
// each status in the order it FIRST appeared. A replay re-emits a suffix of
// what was already emitted, so it can put an earlier status after a later
// one (pending, approved, pending, approved) — harmless as long as the
// replay runs to its end. The rule, per commission_id:
//  1. the observed statuses with copies removed (first occurrence of each
//     record kept) are exactly the expected sequence: no status appears for
//     the first time before one that must precede it;
//  2. the last observed record is the expected last one: an upserting
//     consumer ends with the right status and money.
// Breaking either is a mismatch ("status order"); a copy that sits between
// records but leaves both true is only a copy.
#ifndef TALLY_TOOLS_VERIFY_CLASSIFY_H_
#define TALLY_TOOLS_VERIFY_CLASSIFY_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tally::verify {

// The outcome of comparing the expected records of one topic with the
// observed ones, both given as canonical record descriptions (equal strings
// = identical records).
struct MultisetClassification {
  // Expected records missing from the topic, once per missing copy.
  std::vector<std::string> missing;
  // Records on the topic that no expected record equals, once per copy.
  std::vector<std::string> unexpected;
  // Records on the topic more often than expected: identical copies.
  uint64_t copies = 0;
  // The distinct records that have copies, with how many extra.
  std::vector<std::pair<std::string, uint64_t>> copied;
};

MultisetClassification ClassifyMultiset(const std::vector<std::string>& expected,
                                        const std::vector<std::string>& observed);

// Checks the status-order rule above for one commission_id. `expected` is the
// oracle's sequence (distinct records), `observed` the records on the topic
// in offset order. Returns a description of the violation, or nullopt.
// Only meaningful once the multisets agree up to copies (a lost or changed
// record is reported as such, not as an order problem): it returns nullopt
// when the distinct observed records are not a permutation of `expected`.
std::optional<std::string> CheckStatusOrder(const std::vector<std::string>& expected,
                                            const std::vector<std::string>& observed);

// A processor's state-gap log line:
//   ... state gap: partition=<p> topic=<t> resumes_at=<offset> local_state_ends_at=<offset|none>
struct StateGap {
  int32_t partition = -1;
  std::string topic;
  int64_t resumes_at = -1;
  std::optional<int64_t> local_state_ends_at;  // none: no local state at all
};
std::optional<StateGap> ParseStateGapLine(std::string_view line);

// A processor's log line for partitions revoked while their last offsets
// could not be committed (the broker refused the commit during the
// rebalance; the new owner repeats that range's outputs):
//   ... partitions revoked with uncommitted offsets: clicks[3]@1125, conversions[4]@35; ...
// and its line for an aborted transaction (on a broker without transaction
// isolation its records stay visible and its replay repeats them):
//   ... transaction aborted for tasks: task[3], task[7]; ...
// Returns the input partitions (tasks) it names; nullopt for other lines.
std::optional<std::vector<int32_t>> ParseUncommittedRevocationLine(std::string_view line);

// produced_at (contract v1.1, every output) is processing time: it cannot
// be compared with an expected value, only checked to be a real wall-clock
// time of the run, i.e. at or after 2020-01-01T00:00:00Z (no Tally output
// is older: a 0 or an event time in seconds is caught) and at most
// kProducedAtSkewMs after `now_ms`, the verifier's clock (hosts' clocks
// differ a little). Returns the problem, or nullopt.
inline constexpr int64_t kEarliestProducedAtMs = 1'577'836'800'000;  // 2020-01-01
inline constexpr int64_t kProducedAtSkewMs = 5 * 60 * 1000;
std::optional<std::string> CheckProducedAt(int64_t produced_at_ms, int64_t now_ms);

}  // namespace tally::verify

#endif  // TALLY_TOOLS_VERIFY_CLASSIFY_H_
