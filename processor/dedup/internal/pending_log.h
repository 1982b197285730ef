// The keys one DedupBatch accepted and whose durability is still pending
// (not yet in the DurableIdIndex), readable by other threads while the batch
// is registered with the Deduplicator. Internal to processor/dedup.
//
// Single writer (the batch's owner thread), many readers. Append-only: an
// entry is fully written before the size that covers it is published, and it
// is never moved (entries live in fixed chunks linked by atomic pointers), so
// a reader that loaded the size may read every entry below it without a lock.
// The only field that changes after publication is `state`.
//
// Entry states: a fast-path Check appends its key as kTentative BEFORE it
// looks at the fingerprint table and then resolves it to kAccepted (the key
// was new) or kWithdrawn (it took the slow path). A reader that meets a
// tentative entry with its own key waits for the resolution; the owner is then
// inside a lock-free, bounded sequence of table operations, so the wait is
// short unless the owner thread is descheduled.
#ifndef TALLY_PROCESSOR_DEDUP_INTERNAL_PENDING_LOG_H_
#define TALLY_PROCESSOR_DEDUP_INTERNAL_PENDING_LOG_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/functional/function_ref.h"
#include "processor/dedup/dedup_key.h"
#include "processor/model/events.h"

namespace tally::dedup_internal {

class PendingLog {
 public:
  enum class State : uint8_t { kTentative, kAccepted, kWithdrawn };

  class Entry {
   private:
    friend class PendingLog;
    uint64_t hash_ = 0;
    TimestampMs event_time_ = 0;
    DedupKey key_;
    std::atomic<State> state_{State::kTentative};
  };

  PendingLog();
  ~PendingLog();
  PendingLog(const PendingLog&) = delete;
  PendingLog& operator=(const PendingLog&) = delete;

  // Owner thread only. The returned entry stays valid for the log's lifetime.
  Entry* Append(uint64_t hash, const DedupKey& key, TimestampMs event_time, State state);
  // Owner thread only. REQUIRES: `entry` is tentative, `state` is not.
  void Resolve(Entry* entry, State state);

  // Any thread. Whether an entry with this key is (or resolves to) kAccepted.
  // Waits for tentative entries of the same key. REQUIRES: the caller has no
  // tentative entry of its own for this key (it would wait for itself).
  bool ContainsAccepted(uint64_t hash, const DedupKey& key) const;

  // Owner thread only: the accepted keys, in acceptance order.
  void ForEachAccepted(absl::FunctionRef<void(const DedupKey&, TimestampMs)> fn) const;
  size_t accepted_count() const { return accepted_; }

 private:
  // 256 entries (~14 KiB) per chunk: a batch of a few thousand events needs
  // a handful of allocations, and an idle batch costs one chunk.
  static constexpr size_t kChunkEntries = 256;
  struct Chunk {
    Entry entries[kChunkEntries];
    std::atomic<Chunk*> next{nullptr};
  };

  template <typename Fn>
  void ForEachPublished(Fn&& fn) const;

  Chunk* const head_;
  Chunk* tail_;          // owner thread only
  size_t accepted_ = 0;  // owner thread only
  // Number of published entries. seq_cst store (owner) and seq_cst load
  // (readers): the "publish"/"check" halves of the Dekker pattern with the
  // fingerprint table (see fingerprint_table.h); release/acquire alone would
  // also publish the entry contents, but not rule out both sides missing.
  std::atomic<size_t> size_{0};
};

}  // namespace tally::dedup_internal

#endif  // TALLY_PROCESSOR_DEDUP_INTERNAL_PENDING_LOG_H_
