// The durable authority behind the deduplicator: the set of keys that were
// accepted (reported kNew) by batches that committed. The in-memory table of
// the deduplicator is only a cache of hints; this index decides.
//
// Implemented by the joiner's RocksDB state store (processor/join), which
// writes the encoded keys of a batch's accepted ids, with their event times,
// in the same atomic WriteBatch as the rest of the batch's state and its
// input offsets. Tests use an in-memory fake (tests/dedup).
#ifndef TALLY_PROCESSOR_DEDUP_DURABLE_ID_INDEX_H_
#define TALLY_PROCESSOR_DEDUP_DURABLE_ID_INDEX_H_

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "processor/dedup/dedup_key.h"
#include "processor/model/events.h"

namespace tally {

class DurableIdIndex {
 public:
  virtual ~DurableIdIndex() = default;

  // Whether `key` belongs to a committed batch. Called concurrently from
  // several threads (one per lock stripe of the deduplicator): must be
  // thread-safe. A key whose WriteBatch was acknowledged before the call
  // started must be reported (read-your-writes across threads).
  virtual absl::StatusOr<bool> Contains(const DedupKey& key) = 0;

  // Calls `fn` for every committed key whose stored event time is >= since,
  // in any order, possibly from several threads at once (fn must be
  // thread-safe). Used by Deduplicator::WarmUp, never concurrently with
  // Contains. An error aborts the warm-up.
  virtual absl::Status ForEachSince(
      TimestampMs since,
      absl::FunctionRef<void(const DedupKey& key, TimestampMs event_time)> fn) = 0;
};

}  // namespace tally

#endif  // TALLY_PROCESSOR_DEDUP_DURABLE_ID_INDEX_H_
