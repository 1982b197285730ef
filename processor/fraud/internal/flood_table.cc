#include "processor/fraud/internal/flood_table.h"

#include <algorithm>
#include <cstring>
#include <optional>

namespace tally::fraud_internal {
namespace {

// SplitMix64 / MurmurHash3 finaliser: full avalanche, so both the low bits
// (home slot) and the high bits (tag) depend on every input bit.
uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

}  // namespace

FloodTable::FloodTable(uint64_t slots, int probe_limit, int64_t limit, int64_t lateness_windows)
    : mask_(slots - 1),
      probe_limit_(probe_limit),
      limit_(static_cast<uint64_t>(limit)),
      lateness_windows_(static_cast<uint64_t>(lateness_windows)),
      slots_(std::make_unique<std::atomic<uint64_t>[]>(slots)) {
  // make_unique<T[]> value-initialises: every slot starts empty (0).
}

uint64_t FloodTable::Hash(const IpAddress& ip, int64_t window) {
  uint64_t hi;
  uint64_t lo;
  std::memcpy(&hi, ip.bytes().data(), 8);
  std::memcpy(&lo, ip.bytes().data() + 8, 8);
  return Mix(hi ^ Mix(lo ^ Mix(static_cast<uint64_t>(window) + 0x9e3779b97f4a7c15ULL)));
}

bool FloodTable::IsFreeFor(uint64_t word, uint64_t wlow) const {
  if (word == 0) return true;
  const uint64_t slot_wlow = (word >> kCountBits) & kWindowMask;
  // Distance from the slot's window back to the click's, modulo 2^16:
  // 0..L = the click's window or the L before it (live); the top
  // kFutureWindows values = a slot ahead of the click (live); anything else
  // is an older window (or a wrapped stale one): free.
  const uint64_t behind = (wlow - slot_wlow) & kWindowMask;
  return behind > lateness_windows_ &&
         behind < (kWindowMask + 1) - static_cast<uint64_t>(kFutureWindows);
}

FloodTable::Outcome FloodTable::Add(const IpAddress& ip, int64_t window) {
  return AddN(ip, window, 1);
}

bool FloodTable::Restore(const IpAddress& ip, int64_t window, uint64_t count) {
  if (count == 0) return true;
  return AddN(ip, window, count) != Outcome::kOverflow;
}

void FloodTable::Clear() {
  // relaxed: the caller guarantees no concurrent access; the next batch's
  // threads are started (or handed work) through synchronising operations.
  for (uint64_t i = 0; i <= mask_; ++i) slots_[i].store(0, std::memory_order_relaxed);
}

FloodTable::Outcome FloodTable::AddN(const IpAddress& ip, int64_t window, uint64_t n) {
  const uint64_t hash = Hash(ip, window);
  const uint64_t wlow = static_cast<uint64_t>(window) & kWindowMask;
  const uint64_t key =
      (hash >> (kWindowBits + kCountBits) << (kWindowBits + kCountBits)) | (wlow << kCountBits);
  const uint64_t home = hash & mask_;

  // Restarts from the home slot only when our key's slot is reclaimed under
  // us (the undercount case of the header).
  for (;;) {
    const std::optional<Outcome> outcome = TryAdd(key, wlow, home, n);
    if (outcome.has_value()) return *outcome;
  }
}

std::optional<FloodTable::Outcome> FloodTable::TryAdd(uint64_t key, uint64_t wlow, uint64_t home,
                                                      uint64_t n) {
  // Saturation: a count never exceeds limit + 1 (12 bits).
  const uint64_t add = std::min<uint64_t>(n, limit_ + 1);
  for (int i = 0; i < probe_limit_; ++i) {
    std::atomic<uint64_t>& slot = slots_[(home + static_cast<uint64_t>(i)) & mask_];
    uint64_t word = slot.load(std::memory_order_relaxed);
    // Each pass re-examines this slot with the latest value a failed CAS
    // returned in `word`.
    for (;;) {
      if (word != 0 && (word & ~kCountMask) == key) {
        // Our key: count this click (E3).
        const uint64_t count = word & kCountMask;
        if (count > limit_) return Outcome::kRejected;  // saturated
        const uint64_t next = std::min<uint64_t>(count + add, limit_ + 1);
        if (slot.compare_exchange_weak(word, (word & ~kCountMask) | next,
                                       std::memory_order_relaxed)) {
          return next > limit_ ? Outcome::kRejected : Outcome::kAccepted;
        }
        // Reclaimed under us? Then start over from the home slot.
        if ((word & ~kCountMask) != key) return std::nullopt;
        continue;
      }
      if (!IsFreeFor(word, wlow)) break;  // another live key: next slot
      // The first free slot: the key is not beyond it (E2), claim it. The
      // first click of a key is always accepted (count 1 <= limit).
      if (slot.compare_exchange_strong(word, key | add, std::memory_order_relaxed)) {
        return add > limit_ ? Outcome::kRejected : Outcome::kAccepted;
      }
      // Changed since we looked (claimed, maybe for our key, or reclaimed):
      // examine the new value.
    }
  }
  return Outcome::kOverflow;
}

uint64_t FloodTable::CountNonEmpty() const {
  uint64_t n = 0;
  for (uint64_t i = 0; i <= mask_; ++i) {
    if (slots_[i].load(std::memory_order_relaxed) != 0) ++n;
  }
  return n;
}

}  // namespace tally::fraud_internal
