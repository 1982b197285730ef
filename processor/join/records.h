// The values the joiner keeps in its state store (processor/join/state_store.h),
// as plain structs. Their byte encodings live in internal/codec.h and are a
// storage format: see docs/design.md ("State layout") before changing one.
#ifndef TALLY_PROCESSOR_JOIN_RECORDS_H_
#define TALLY_PROCESSOR_JOIN_RECORDS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "processor/model/events.h"
#include "processor/model/reject_reason.h"

namespace tally {

// Identity of a conversion: status changes of one conversion share it.
struct ConversionIdentity {
  std::string offer_id;
  std::string goal;
  std::string conversion_id;

  static ConversionIdentity Of(const Conversion& conversion) {
    return {conversion.offer_id, conversion.goal, conversion.conversion_id};
  }
  friend bool operator==(const ConversionIdentity&, const ConversionIdentity&) = default;
};

// Where an input message came from, with its original bytes: a conversion
// that waits in `pending` may be rejected long after its batch, when the
// consumer's copy of the message is gone, and `rejected` must still carry
// the bytes exactly as consumed.
struct StoredSource {
  std::string topic;
  int32_t partition = -1;
  int64_t offset = -1;
  std::string key;
  std::string value;

  friend bool operator==(const StoredSource&, const StoredSource&) = default;
};

// A later status message of a conversion that was still pending when it
// arrived. Applied, in arrival order, when the conversion resolves.
struct QueuedStatus {
  Conversion conversion;
  StoredSource source;

  friend bool operator==(const QueuedStatus&, const QueuedStatus&) = default;
};

// A conversion waiting for a click (family `pending`).
struct PendingConversion {
  Conversion conversion;  // the first message of the identity
  StoredSource source;
  std::vector<QueuedStatus> queued;

  friend bool operator==(const PendingConversion&, const PendingConversion&) = default;
};

// What became of a conversion identity (family `ledger`).
enum class LedgerOutcome : uint8_t {
  kPending = 0,       // waiting in `pending` under `pending_key`
  kAttributed = 1,    // `commissions` were emitted
  kUnattributed = 2,  // went to `unattributed` with `unattributed_reason`
  kRejected = 3,      // went to `rejected` with `reject_reason`
};

struct LedgerEntry {
  TimestampMs conversion_time_ms = 0;                    // of the first message; drives the TTL
  ConversionStatus status = ConversionStatus::kPending;  // latest applied status
  LedgerOutcome outcome = LedgerOutcome::kPending;
  RejectReason reject_reason = RejectReason::kInvalidValue;                     // kRejected only
  UnattributedReason unattributed_reason = UnattributedReason::kClickNotFound;  // kUnattributed
  std::string detail;       // kRejected / kUnattributed: repeated for later statuses
  std::string pending_key;  // kPending: the record's key in `pending`
  // kAttributed: the commissions as first emitted (positive payouts, first
  // status). A status change re-emits them with the new status; a reversal
  // emits Reverse() of them.
  std::vector<Commission> commissions;

  friend bool operator==(const LedgerEntry&, const LedgerEntry&) = default;
};

}  // namespace tally

#endif  // TALLY_PROCESSOR_JOIN_RECORDS_H_
