// Exact, shared deduplication of clicks (by click id) and conversions (by
// identity and status), see dedup_key.h for the keys.
//
// Design. Three layers answer "was this key accepted before?":
//  1. a lock-free fingerprint table (internal/fingerprint_table.h): 8 bytes
//     per slot, a 43-bit fingerprint and the event hour. It is a set of
//     HINTS: absence is authoritative above the completeness watermark W,
//     presence only means "look closer";
//  2. the pending logs of the live batches (internal/pending_log.h): the full
//     keys accepted by batches whose state is not yet durable;
//  3. the DurableIdIndex: full keys of committed batches (RocksDB, owned by
//     the joiner).
// Fast path (the common case, a key never seen): append the key to the
// batch's pending log as tentative, find no fingerprint in the table, claim a
// slot with one CAS, confirm W did not move, mark the key accepted: kNew.
// Everything else takes the slow path, serialised per fingerprint stripe by a
// mutex: a fingerprint hit (a duplicate, or another key with the same
// fingerprint), an event time too close to or below W, a W change during the
// fast path, heavy CAS contention. The slow path decides by FULL KEY against
// the pending logs and then the durable index, so a fingerprint collision can
// cost a lookup but never rejects a new key.
//
// Definitions. t = the event time passed to Check. M = the event-time
// watermark, the largest t seen (never decreases). H = options.horizon_ms,
// S = options.repeat_skew_ms. W = the completeness watermark (never
// decreases; hour-aligned except before WarmUp, when it is +infinity).
//
// Invariants.
//  I1 (completeness) Every key accepted with event time >= W, and every
//     committed key loaded by WarmUp with event time >= W, has its
//     fingerprint in the table. W rises for two reasons only: expiry (to
//     M - H - S, rounded down to the hour) and memory pressure (see Eviction).
//  I2 (pending) Between kNew and Commit/Abort of its batch, a key is in the
//     batch's pending log; after Commit the caller guarantees it is in the
//     durable index (REQUIRES of Commit).
//  I3 (single winner) For one key, at most one Check returns kNew over the
//     lifetime of the durable index (absent aborts, see Abort). Two fast
//     paths racing on a key within one value of W target the same slot
//     (fingerprint_table.h, T3). A fast path racing with a slow path: the
//     fast path publishes its tentative key before it reads the table, the
//     slow path publishes the fingerprint before it reads the pending logs;
//     with seq_cst on both sides at least one sees the other (store
//     buffering), and a slow path that sees a tentative key waits for its
//     resolution. Two slow paths for one key hold the same stripe mutex.
//
// Exactness and its one assumption. A repeat of a key is detected when it
// carries an event time within S of the original's (at-least-once
// redelivery carries the SAME time, so any S >= 0 covers it). The fast path
// answers kNew only for t - S >= W, so by I1 the original, if any, would be in
// the table. A repeat whose event time is more than S later than its
// original's AND whose original was already evicted from the table can be
// missed; no other case is. Size the table so that pressure eviction does not
// happen (watch `pressure_evictions`) and choose S for the sources.
//
// Too old. An event with t < M - H is outside every attribution window of
// the stream (REQUIRES: H >= the longest window + the allowed lateness), so
// Check returns kTooOld without inserting or looking it up: the joiner routes
// such a conversion to `unattributed` (outside_window) and counts such a
// click. kTooOld depends on M, hence on processing order; WarmUp restores M.
//
// Eviction (bounded memory). The table has options.table_slots slots and
// never grows. Slots whose hour ends at or before W are reclaimable and are
// overwritten in place by later inserts; nothing is ever deleted eagerly.
// Expiry keeps W at M - H - S (hourly steps). When an insert finds its probe
// window (options.probe_limit slots) full of live entries, W is raised to the
// end of the oldest hour in that window: every entry of that hour or older,
// anywhere in the table, becomes reclaimable. So eviction is strictly oldest
// first globally, with a step chosen by a sample of probe_limit entries. Under
// sustained pressure W approaches M and more checks take the slow path (one
// durable lookup each): correctness is kept, throughput is paid. Memory is
// table_slots * 8 bytes plus the pending logs (~56 bytes + key per check of a
// live batch).
//
// Thread-safety. Check may be called concurrently from any number of threads
// for DIFFERENT batches; a DedupBatch is used by one thread at a time.
// WarmUp must not run concurrently with anything else. Counters may be read
// from any thread at any time.
#ifndef TALLY_PROCESSOR_DEDUP_DEDUPLICATOR_H_
#define TALLY_PROCESSOR_DEDUP_DEDUPLICATOR_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "processor/dedup/dedup_key.h"
#include "processor/dedup/durable_id_index.h"
#include "processor/model/events.h"

namespace tally {

namespace dedup_internal {
class FingerprintTable;
class PendingLog;
}  // namespace dedup_internal

struct DedupOptions {
  // Config key dedup.table_slots. Power of two, 8 bytes each. The table
  // answers from memory for ids whose originals are still in it: at a load
  // of about 0.5, 2^24 slots (128 MiB, the default) cover 8M ids, i.e. the
  // whole 36-day horizon+skew at 2.7 ids/s or the last 2.3 hours at 1,000
  // ids/s. Older events then cost a durable lookup (see Eviction).
  uint64_t table_slots = uint64_t{1} << 24;
  // Config key dedup.horizon_ms. At least the longest attribution window plus
  // the allowed lateness of events. 35 days.
  int64_t horizon_ms = int64_t{35} * 24 * 3'600'000;
  // Config key dedup.repeat_skew_ms. How much later than its original a
  // repeat's event time may be and still be caught after the original was
  // evicted (see "Exactness"). Larger values send more old events through the
  // slow path once W has risen. 1 day.
  int64_t repeat_skew_ms = int64_t{24} * 3'600'000;
  // Config key dedup.probe_limit. Slots examined per insert. Longer windows
  // tolerate a higher load before pressure eviction; each costs a load.
  int probe_limit = 32;
  // Test seam: replaces DedupHash64 (e.g. to force fingerprint collisions).
  // Must be deterministic. nullptr = DedupHash64.
  uint64_t (*hash_fn)(std::string_view) = nullptr;

  absl::Status Validate() const;
  // For the start-up log, e.g. "table_slots=16777216 (128 MiB) horizon_ms=...".
  std::string ToString() const;
};

enum class DedupOutcome : uint8_t {
  kNew,        // first time: the caller must persist the key with its batch
  kDuplicate,  // accepted before: duplicate_click / duplicate_conversion
  kTooOld,     // t < M - horizon: outside every window; not recorded
};

// Monotonic statistics for the metrics component. Incremented with relaxed
// ordering: nothing is synchronised through them and readers only need each
// value to be eventually accurate.
struct DedupCounters {
  std::atomic<uint64_t> checks{0};
  std::atomic<uint64_t> new_keys{0};
  std::atomic<uint64_t> duplicates{0};
  std::atomic<uint64_t> too_old{0};
  // Slow paths by cause (each may or may not reach the durable index).
  std::atomic<uint64_t> slow_fingerprint_hit{0};
  std::atomic<uint64_t> slow_below_watermark{0};  // t - S < W, or t unrepresentable
  std::atomic<uint64_t> slow_contention{0};       // W moved mid-check, or CAS contention
  // Calls to DurableIdIndex::Contains, by the cause of the slow path.
  std::atomic<uint64_t> authority_lookups_fingerprint_hit{0};
  std::atomic<uint64_t> authority_lookups_below_watermark{0};
  std::atomic<uint64_t> authority_lookups_contention{0};
  // Fingerprint hits whose full key was found nowhere: another key shared
  // the fingerprint (or the hint outlived an aborted batch).
  std::atomic<uint64_t> false_positive_fingerprint_hits{0};
  // Times W was raised because a probe window was full of live entries.
  std::atomic<uint64_t> pressure_evictions{0};
  // Times W was raised by event-time expiry (M - H - S crossed an hour).
  std::atomic<uint64_t> expiry_advances{0};
};

class Deduplicator;

// The keys accepted by one processing batch until the batch's state is
// durable. Created by Deduplicator::BeginBatch; used by one thread at a time;
// ended by Commit or Abort (destroying it without either is an Abort).
class DedupBatch {
 public:
  ~DedupBatch();
  DedupBatch(const DedupBatch&) = delete;
  DedupBatch& operator=(const DedupBatch&) = delete;

  // The keys this batch reported kNew, with their event times: exactly what
  // the caller must write to the durable index before Commit.
  void ForEachAccepted(absl::FunctionRef<void(const DedupKey&, TimestampMs)> fn) const;
  size_t accepted_count() const;

 private:
  friend class Deduplicator;
  DedupBatch(Deduplicator* owner, std::unique_ptr<dedup_internal::PendingLog> log);

  Deduplicator* const owner_;
  const std::unique_ptr<dedup_internal::PendingLog> log_;
};

class Deduplicator {
 public:
  // `authority` must outlive the Deduplicator.
  static absl::StatusOr<std::unique_ptr<Deduplicator>> Create(const DedupOptions& options,
                                                              DurableIdIndex* authority);
  ~Deduplicator();
  Deduplicator(const Deduplicator&) = delete;
  Deduplicator& operator=(const Deduplicator&) = delete;

  // Refills the table from the durable index (keys with event time >= since)
  // and sets W to `since` (rounded up to the hour) unless pressure during the
  // load raised it further, and M to the largest loaded time. Pass
  // since = (latest event time processed) - horizon - skew: events less than
  // `repeat_skew_ms` above `since` take the slow path. Call once,
  // before any Check; until then W is +infinity and every check consults the
  // durable index (correct, slow). A fresh deployment calls it too (the
  // index is empty). REQUIRES: no concurrent calls of any kind.
  absl::Status WarmUp(TimestampMs since);

  // Every batch must be ended before the Deduplicator is destroyed.
  std::unique_ptr<DedupBatch> BeginBatch();

  // Classifies one event. kNew records the key in `batch` (persist it, see
  // DedupBatch::ForEachAccepted). An error (only from the durable index)
  // leaves nothing recorded for this key; the caller fails the batch.
  absl::StatusOr<DedupOutcome> Check(DedupBatch& batch, const DedupKey& key,
                                     TimestampMs event_time);

  // The batch's accepted keys are durable. REQUIRES: every key of
  // batch->ForEachAccepted is in the durable index (written and acknowledged).
  void Commit(std::unique_ptr<DedupBatch> batch);
  // The batch's state was NOT persisted: its accepted keys are forgotten (a
  // later Check of them is kNew again). Their fingerprints stay in the table
  // as harmless hints (removing them could remove a slot another key relies
  // on). REQUIRES: the batch's events are replayed, because a concurrent batch
  // may have reported one of its keys as kDuplicate in the meantime (the
  // pipeline replays every failed batch).
  void Abort(std::unique_ptr<DedupBatch> batch);

  const DedupCounters& counters() const { return counters_; }
  TimestampMs completeness_watermark() const;  // W
  TimestampMs event_time_watermark() const;    // M
  const DedupOptions& options() const { return options_; }

 private:
  enum class SlowCause { kFingerprintHit, kBelowWatermark, kContention };
  static constexpr int kStripes = 64;

  Deduplicator(const DedupOptions& options, DurableIdIndex* authority);
  friend class DedupBatch;
  void Unregister(const dedup_internal::PendingLog* log);
  TimestampMs AdvanceEventWatermark(TimestampMs t);
  void MaybeExpire(TimestampMs event_watermark);
  void RaiseCompleteness(TimestampMs w, std::atomic<uint64_t>* counter);
  // REQUIRES: Representable(t). Best-effort fast path; nullopt-like false
  // return with *cause set means "take the slow path".
  bool TryFastInsert(dedup_internal::PendingLog& log, const DedupKey& key, uint64_t hash,
                     TimestampMs t, SlowCause* cause);
  absl::StatusOr<DedupOutcome> SlowCheck(dedup_internal::PendingLog& log, const DedupKey& key,
                                         uint64_t hash, TimestampMs t, SlowCause cause);
  // Puts the fingerprint in the table (ageing or claiming) when t >= W.
  void EnsureHint(uint64_t hash, TimestampMs t);

  const DedupOptions options_;
  DurableIdIndex* const authority_;
  uint64_t (*const hash_fn_)(std::string_view);
  const std::unique_ptr<dedup_internal::FingerprintTable> table_;

  // W. seq_cst everywhere: a fast path's two loads of W bracket its table
  // operations, and the single-winner argument (I3) needs them in the same
  // total order as the slot and pending-log accesses.
  std::atomic<TimestampMs> completeness_{std::numeric_limits<TimestampMs>::max()};
  // M. relaxed: it only steers kTooOld and expiry, both of which are decided
  // again by W for correctness; a slightly stale M is harmless.
  std::atomic<TimestampMs> event_watermark_{std::numeric_limits<TimestampMs>::min()};

  // std:: rather than absl::Mutex: Debian's prebuilt Abseil is not built
  // with ThreadSanitizer, which then cannot see absl::Mutex's ordering and
  // reports false races; pthread-based std::mutex it intercepts.
  //
  // Serialises slow paths per fingerprint so that two of them for one key
  // cannot both miss each other's acceptance. Held across the durable lookup.
  // Lock order: stripes_[i] before registry_mu_.
  std::array<std::mutex, kStripes> stripes_;

  // Live batches. Writer lock to (un)register (once per batch), reader lock
  // while a slow path scans the logs, so a log is never freed under a reader.
  std::shared_mutex registry_mu_;
  std::vector<const dedup_internal::PendingLog*> live_ ABSL_GUARDED_BY(registry_mu_);

  DedupCounters counters_;
};

}  // namespace tally

#endif  // TALLY_PROCESSOR_DEDUP_DEDUPLICATOR_H_
