// Joins conversions to the clicks that earned them, for ONE input partition
// (task), on top of that partition's TaskStore. Called from the pipeline
// after dedup and fraud, single-threaded. See docs/design.md ("Joiner
// semantics") for the full rules; in short:
//
//  - event time: the partition's click watermark is its max click time
//    minus max_click_lateness; each stored click keeps the watermark it
//    arrived at, and a conversion is decided only from the clicks that had
//    arrived when the watermark passed conv.ts (first candidates) or
//    conv.ts + pending_grace (anything else), so the outcome does not depend
//    on how the two topics or the batches interleave;
//  - the identity of a conversion is (offer_id, goal, conversion_id); its
//    first message is attributed (commissions), rejected (ctit bounds, no
//    terms), left unattributed, or kept pending until it can be decided;
//  - a later status of a known identity follows the first message's fate:
//    commissions are re-emitted with the new status (negated for
//    `reversed`), or the message goes to unattributed / rejected with the
//    same reason, or it is queued behind the pending conversion;
//  - every input message ends in exactly one place, counted in
//    JoinCounters.
//
// Durability: every change goes to the TaskStore's uncommitted batch;
// Commit(positions) makes it durable together with the input positions.
// An error from any call leaves the batch half-applied: the caller must
// Abort (which restores the last commit) and replay the batch, discarding
// the outputs it had produced.
#ifndef TALLY_PROCESSOR_JOIN_JOINER_H_
#define TALLY_PROCESSOR_JOIN_JOINER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "processor/commission/commission_engine.h"
#include "processor/dedup/dedup_key.h"
#include "processor/join/records.h"
#include "processor/join/state_store.h"
#include "processor/model/events.h"
#include "processor/offers/offers.h"

namespace tally {

// Where an input message came from. The views are valid for the duration
// of the call that receives them; key/value are the original bytes.
struct SourceRef {
  std::string_view topic;
  int32_t partition = -1;
  int64_t offset = -1;
  std::string_view key;
  std::string_view value;
};

// The joiner's outputs. Deliberately narrow (no dependency on the app): the
// pipeline adapts it to its Outputs. Calls are made on the joiner's thread.
class JoinSink {
 public:
  virtual ~JoinSink() = default;
  virtual void Commission(const tally::Commission& commission) = 0;
  // For a conversion resolved after it waited in `pending`, `source` carries
  // the bytes stored with it.
  virtual void Reject(const SourceRef& source, RejectReason reason, std::string_view detail) = 0;
  virtual void Unattributed(const UnattributedConversion& conversion, const SourceRef& source) = 0;
  // The message was taken into state: an accepted click, a conversion (or a
  // status change of one) that now waits in `pending`.
  virtual void Retained(const SourceRef& source) = 0;
};

// config: processing.attribution_key.
enum class AttributionMode : uint8_t { kClickId, kUserId };

struct JoinOptions {
  AttributionMode mode = AttributionMode::kClickId;
  // processing.pending_grace: how far the click event-time watermark must
  // pass a conversion's event time before it is given up as unattributed.
  int64_t pending_grace_ms = 10 * 60'000;
  // This joiner's share of processing.max_pending_conversions. The app
  // divides the configured total by the number of input partitions (not by
  // the partitions this instance owns), so that a partition behaves the same
  // on whichever instance runs it. <= 0: unbounded.
  int64_t max_pending_conversions = 1'000'000;
  // processing.max_click_lateness: how far out of event-time order a
  // partition's clicks may arrive and change nothing.
  int64_t max_click_lateness_ms = 0;
  // processing.max_conversion_lateness (counted late beyond it; the store's
  // click retention follows the conversions input with the same bound).
  int64_t max_conversion_lateness_ms = kDayMs;
  // The store's click retention: clicks older than this before a conversion
  // are never visible to it (retention may or may not have dropped them, so
  // seeing them would depend on timing).
  int64_t click_retention_ms = 30 * kDayMs + 10 * 60'000;
};

// Monotonic counters of one joiner. Accounting invariants (tested):
//   conversions = conversions_attributed + conversions_rejected
//               + conversions_unattributed + conversions_pending
//   conversions_pending = pending_attributed + pending_rejected
//               + pending_unattributed + (messages still pending)
// where a status change queued behind a pending conversion is a pending
// message of its own. Abort restores the values of the last Commit, so the
// replay of a batch is not counted twice.
struct JoinCounters {
  uint64_t clicks = 0;  // every accepted click is Retained
  uint64_t conversions = 0;
  // Outcome of each conversion message when it was handled:
  uint64_t conversions_attributed = 0;  // commissions emitted (first or re-emitted)
  uint64_t conversions_rejected = 0;
  uint64_t conversions_unattributed = 0;
  uint64_t conversions_pending = 0;  // Retained into `pending`
  // Later outcome of pending messages:
  uint64_t pending_attributed = 0;
  uint64_t pending_rejected = 0;
  uint64_t pending_unattributed = 0;
  // Conversions resolved as unattributed because the pending share was full
  // (included in conversions_unattributed / pending_unattributed).
  uint64_t pending_capacity_resolutions = 0;
  uint64_t commissions = 0;  // Commission records emitted
  // Clicks that arrived behind the watermark (later than max_click_lateness)
  // and conversions more than max_conversion_lateness behind the newest of
  // their partition; both are processed (see README, Semantics).
  uint64_t late_clicks = 0;
  uint64_t late_conversions = 0;

  friend bool operator==(const JoinCounters&, const JoinCounters&) = default;
};

class Joiner {
 public:
  // `store` and `offers` must outlive the joiner; the store is used only
  // through this joiner between Commits.
  Joiner(TaskStore* store, const OffersCatalog* offers, const JoinOptions& options);

  absl::Status OnClick(const Click& click, const SourceRef& source, JoinSink& sink);
  absl::Status OnConversion(const Conversion& conversion, const SourceRef& source, JoinSink& sink);
  // A click of this partition that dedup or fraud rejected still advances
  // the click event-time watermark (it shows how far the clicks input is).
  // Conversions the watermark passes (user_id mode) or whose grace it ends
  // are resolved here and in OnClick, so both may emit.
  absl::Status ObserveClickTime(TimestampMs event_time_ms, JoinSink& sink);
  // A dedup key accepted for an event of this partition: persisted with the
  // batch (the DurableIdIndex reads it after Commit).
  absl::Status RecordDedupKey(const DedupKey& key, TimestampMs event_time_ms);

  // Batch end: decides the pending conversions whose grace has passed
  // (watermark > conv.ts + pending_grace); a safety net, the click that
  // moves the watermark does it.
  absl::Status Advance(JoinSink& sink);
  // Makes every change since the last Commit durable, atomically with the
  // partition's next input offsets.
  absl::Status Commit(const std::vector<InputPosition>& positions);
  // The store committed this joiner's batch by itself (TaskStore::
  // PrepareCommit + ApplyCommit around the changelog transaction).
  void Committed() { committed_counters_ = counters_; }
  // Drops every change since the last Commit (state and counters).
  void Abort();

  const JoinCounters& counters() const { return counters_; }
  TaskStore& store() { return *store_; }

 private:
  // The outcome of evaluating a conversion against the clicks in state.
  struct Evaluation {
    enum class Kind { kAttributed, kRejected, kUnattributed };
    Kind kind = Kind::kUnattributed;
    std::vector<tally::Commission> commissions;  // kAttributed
    RejectReason reject_reason = RejectReason::kInvalidValue;
    UnattributedReason unattributed_reason = UnattributedReason::kClickNotFound;
    std::string detail;
  };
  enum class Phase { kNow, kFromPending };

  // The partition's click watermark: max click time - max_click_lateness.
  TimestampMs Watermark() const;
  // Whether the watermark has passed `t`.
  bool Passed(TimestampMs t) const;
  // The decision for a conversion (its identity's first message), or
  // nullopt while it must wait. The same answer whenever it is asked.
  absl::StatusOr<std::optional<Evaluation>> Decide(const Conversion& conversion);
  // The conversion's named click, if visible to it (click_id mode).
  absl::StatusOr<std::optional<ClickRecord>> VisibleClick(const Conversion& conversion);
  bool Visible(const ClickRecord& click, const Conversion& conversion) const;
  // ctit bounds, then the attribution model over `candidates`.
  Evaluation EvaluateCandidates(const OfferTerms& terms, const Conversion& conversion,
                                std::vector<ClickRecord> candidates);
  // Unattributed, with the reason the visible clicks give.
  absl::StatusOr<Evaluation> Why(const Conversion& conversion, std::string_view extra_detail);
  // After the watermark moved from `before`: user_id mode asks the pending
  // conversions it has just passed; both modes decide those whose grace it
  // has ended.
  absl::Status ResolvePassed(TimestampMs before, JoinSink& sink);
  absl::Status DecidePassedGrace(TimestampMs watermark, JoinSink& sink);
  // Decides a pending conversion if it can be decided now.
  absl::Status TryResolvePending(const TaskStore::PendingRef& ref, JoinSink& sink);
  // The `pending` key part for the conversion's attribution key.
  std::string PendingPrefixOf(const Conversion& conversion) const;

  // Applies a final evaluation to the identity's first message and its
  // queued statuses (in order), writes the ledger and emits the outputs.
  absl::Status Resolve(const Conversion& conversion, const SourceRef& source,
                       const std::vector<QueuedStatus>& queued, const Evaluation& evaluation,
                       Phase phase, JoinSink& sink);
  absl::Status AddPending(const Conversion& conversion, const SourceRef& source,
                          std::string_view prefix, JoinSink& sink);
  // Resolves one pending record as unattributed (grace or capacity).
  absl::Status ExpirePending(const TaskStore::PendingRef& ref, std::string_view extra_detail,
                             JoinSink& sink);
  absl::Status ApplyStatusChange(const Conversion& conversion, const SourceRef& source,
                                 LedgerEntry& entry, JoinSink& sink);
  // Emits the stored commissions of an attributed identity with `status`.
  void EmitWithStatus(const LedgerEntry& entry, ConversionStatus status, JoinSink& sink);

  TaskStore* const store_;
  const OffersCatalog* const offers_;
  const JoinOptions options_;
  JoinCounters counters_;
  JoinCounters committed_counters_;
};

}  // namespace tally

#endif  // TALLY_PROCESSOR_JOIN_JOINER_H_
