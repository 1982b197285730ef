#include "processor/dedup/internal/pending_log.h"

#include <thread>

namespace tally::dedup_internal {

PendingLog::PendingLog() : head_(new Chunk), tail_(head_) {}

PendingLog::~PendingLog() {
  // Only destroyed after the batch was unregistered under the registry's
  // writer lock, so no reader is inside ForEachPublished.
  Chunk* chunk = head_;
  while (chunk != nullptr) {
    Chunk* next = chunk->next.load(std::memory_order_relaxed);
    delete chunk;
    chunk = next;
  }
}

PendingLog::Entry* PendingLog::Append(uint64_t hash, const DedupKey& key, TimestampMs event_time,
                                      State state) {
  // relaxed: only the owner thread writes size_.
  const size_t n = size_.load(std::memory_order_relaxed);
  const size_t slot = n % kChunkEntries;
  if (n > 0 && slot == 0) {
    Chunk* next = new Chunk;
    // release: a reader that follows this pointer (after seeing a size that
    // covers its entries) sees a constructed chunk. The seq_cst size store
    // below also orders it; the release documents the intent locally.
    tail_->next.store(next, std::memory_order_release);
    tail_ = next;
  }
  Entry& entry = tail_->entries[slot];
  entry.hash_ = hash;
  entry.event_time_ = event_time;
  entry.key_ = key;
  // relaxed: not yet published; the size store below publishes it.
  entry.state_.store(state, std::memory_order_relaxed);
  if (state == State::kAccepted) ++accepted_;
  size_.store(n + 1, std::memory_order_seq_cst);  // see size_
  return &entry;
}

void PendingLog::Resolve(Entry* entry, State state) {
  if (state == State::kAccepted) ++accepted_;
  // release: pairs with the acquire load of a waiting reader. The reader
  // needs nothing else from us (the key was published with the size), but
  // it keeps the resolution ordered after the owner's table operations.
  entry->state_.store(state, std::memory_order_release);
}

template <typename Fn>
void PendingLog::ForEachPublished(Fn&& fn) const {
  const size_t n = size_.load(std::memory_order_seq_cst);  // see size_
  const Chunk* chunk = head_;
  for (size_t i = 0; i < n; ++i) {
    const size_t slot = i % kChunkEntries;
    if (i > 0 && slot == 0) {
      // acquire: pairs with the release store in Append.
      chunk = chunk->next.load(std::memory_order_acquire);
    }
    if (!fn(chunk->entries[slot])) return;
  }
}

bool PendingLog::ContainsAccepted(uint64_t hash, const DedupKey& key) const {
  bool found = false;
  ForEachPublished([&](const Entry& entry) {
    if (entry.hash_ != hash || entry.key_ != key) return true;
    // acquire: pairs with Entry::Resolve.
    State state = entry.state_.load(std::memory_order_acquire);
    for (int spins = 0; state == State::kTentative; ++spins) {
      if (spins > 64) std::this_thread::yield();
      state = entry.state_.load(std::memory_order_acquire);
    }
    if (state == State::kAccepted) {
      found = true;
      return false;
    }
    return true;
  });
  return found;
}

void PendingLog::ForEachAccepted(absl::FunctionRef<void(const DedupKey&, TimestampMs)> fn) const {
  ForEachPublished([&](const Entry& entry) {
    // relaxed: owner thread, which wrote the state itself.
    if (entry.state_.load(std::memory_order_relaxed) == State::kAccepted) {
      fn(entry.key_, entry.event_time_);
    }
    return true;
  });
}

}  // namespace tally::dedup_internal
