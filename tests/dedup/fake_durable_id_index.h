// An in-memory DurableIdIndex for tests: what the joiner's RocksDB store does
// for the deduplicator, minus the disk. Thread-safe.
#ifndef TALLY_TESTS_DEDUP_FAKE_DURABLE_ID_INDEX_H_
#define TALLY_TESTS_DEDUP_FAKE_DURABLE_ID_INDEX_H_

#include <atomic>
#include <cstdint>
#include <mutex>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "processor/dedup/deduplicator.h"
#include "processor/dedup/durable_id_index.h"

namespace tally::testing {

class FakeDurableIdIndex : public DurableIdIndex {
 public:
  absl::StatusOr<bool> Contains(const DedupKey& key) override {
    lookups_.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard lock(mu_);
    if (!fail_with_.ok()) return fail_with_;
    return keys_.contains(key);
  }

  absl::Status ForEachSince(TimestampMs since,
                            absl::FunctionRef<void(const DedupKey&, TimestampMs)> fn) override {
    std::lock_guard lock(mu_);
    if (!fail_with_.ok()) return fail_with_;
    for (const auto& [key, t] : keys_) {
      if (t >= since) fn(key, t);
    }
    return absl::OkStatus();
  }

  // What the joiner does at the end of a batch: write the accepted keys
  // (atomically with its state), then tell the deduplicator.
  void PersistAndCommit(Deduplicator& dedup, std::unique_ptr<DedupBatch> batch) {
    {
      std::lock_guard lock(mu_);
      batch->ForEachAccepted([&](const DedupKey& key, TimestampMs t) { keys_[key] = t; });
    }
    dedup.Commit(std::move(batch));
  }

  void Put(const DedupKey& key, TimestampMs t) {
    std::lock_guard lock(mu_);
    keys_[key] = t;
  }
  size_t size() {
    std::lock_guard lock(mu_);
    return keys_.size();
  }
  void FailWith(absl::Status status) {
    std::lock_guard lock(mu_);
    fail_with_ = std::move(status);
  }
  uint64_t lookups() const { return lookups_.load(std::memory_order_relaxed); }

 private:
  std::mutex mu_;  // not absl::Mutex: see deduplicator.h (TSan)
  absl::flat_hash_map<DedupKey, TimestampMs> keys_ ABSL_GUARDED_BY(mu_);
  absl::Status fail_with_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> lookups_{0};
};

}  // namespace tally::testing

#endif  // TALLY_TESTS_DEDUP_FAKE_DURABLE_ID_INDEX_H_
