// A fixed-size, lock-free open-addressing set of 64-bit key hashes, each with
// a coarse event time. Internal to processor/dedup: the Deduplicator gives it
// its meaning (it is a set of HINTS; every hit is confirmed by full key).
//
// Slot layout: one std::atomic<uint64_t> per slot, 8 bytes:
//   bits 63..21  fingerprint (43 top bits of the key hash; 0 is remapped to 1)
//   bits 20..0   event hour (event time / kGranuleMs, clamped up to 0)
// 0 is the empty slot. Fingerprint and time share one word so that a single
// CAS claims, overwrites or ages a slot; there is no torn (fp, time) state and
// no "busy" marker for readers to interpret.
//
// Invariants (the Deduplicator's exactness argument rests on them):
//  T1 A slot never returns to empty. Slots are only claimed (empty or
//     reclaimable -> live word), overwritten (reclaimable -> live word) or aged
//     (hour raised in place). Hence a key claimed in its probe sequence sits
//     before the first empty slot of that sequence, and lookups stop there.
//  T2 Given a completeness watermark W (owned by the caller), a slot whose
//     whole hour lies before W (end of hour <= W) is reclaimable. For a fixed
//     W the set of free slots (empty or reclaimable) only shrinks: claims
//     write hours >= W, ageing only raises hours. It grows only when W does.
//  T3 InsertIfAbsent claims the FIRST free slot of the probe window after
//     checking every slot up to the first empty one. Two threads inserting the
//     same hash with the same W therefore race for the same slot, and exactly
//     one CAS wins (the loser rescans and finds the winner's fingerprint).
//
// Thread-safety: every method may be called concurrently from any thread.
// All slot accesses are sequentially consistent: the Deduplicator pairs the
// slot stores of one thread with stores to its pending log (and the loads of
// the other thread in the opposite order), a store-buffering (Dekker) pattern
// that only seq_cst rules out (acquire/release would allow both threads to
// miss each other's store).
#ifndef TALLY_PROCESSOR_DEDUP_INTERNAL_FINGERPRINT_TABLE_H_
#define TALLY_PROCESSOR_DEDUP_INTERNAL_FINGERPRINT_TABLE_H_

#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>

#include "processor/model/events.h"

namespace tally::dedup_internal {

class FingerprintTable {
 public:
  // Time granule of the table. Coarser granules let 21 bits cover 239 years
  // (to 2209) and leave 43 fingerprint bits; the price is that the
  // completeness watermark moves in whole hours, i.e. eviction drops up to
  // an hour more than strictly needed.
  static constexpr int64_t kGranuleMs = 3'600'000;
  static constexpr int kHourBits = 21;
  static constexpr int64_t kMaxHour = (int64_t{1} << kHourBits) - 1;

  enum class Result {
    kPresent,   // the fingerprint is in the window (maybe another key's)
    kInserted,  // this call claimed a slot for the fingerprint
    kFull,      // no free slot in the window; see min_live_end_ms
    kContended  // CASes kept failing; caller decides (retry or slow path)
  };
  struct Outcome {
    Result result;
    // For kFull: the smallest end-of-hour (ms) of the window's live slots.
    // Raising W to it makes at least that slot reclaimable.
    TimestampMs min_live_end_ms = std::numeric_limits<TimestampMs>::max();
  };

  // REQUIRES: slots is a power of two >= 2; 1 <= probe_limit <= slots.
  FingerprintTable(uint64_t slots, int probe_limit);

  FingerprintTable(const FingerprintTable&) = delete;
  FingerprintTable& operator=(const FingerprintTable&) = delete;

  // Whether `t` can be stored without rounding its hour DOWN (which would make
  // the slot reclaimable too early). Times past 2209 cannot; callers route
  // them around the table.
  static bool Representable(TimestampMs t) { return t < (kMaxHour + 1) * kGranuleMs; }

  // Insert-if-absent (T3). `w` is the completeness watermark the caller read;
  // slots reclaimable under `w` are free. REQUIRES: Representable(t), t >= w.
  Outcome InsertIfAbsent(uint64_t hash, TimestampMs t, TimestampMs w);

  // Makes sure a slot that is not reclaimable under `w` holds the fingerprint
  // of `hash` with an hour >= hour(t): ages a live slot with that fingerprint
  // in place, or claims a free one (kInserted). kPresent when an existing slot
  // was used. REQUIRES: Representable(t), t >= w.
  Outcome Upsert(uint64_t hash, TimestampMs t, TimestampMs w);

  // Whether any slot of the window holds the fingerprint (live or not).
  bool MayContain(uint64_t hash) const;

  uint64_t slots() const { return mask_ + 1; }
  // Slots that are not empty (live or reclaimable). O(slots); for tests and
  // occasional gauges only.
  uint64_t CountNonEmpty() const;

 private:
  static uint64_t Fingerprint(uint64_t hash);
  static uint64_t Hour(TimestampMs t);
  static uint64_t Pack(uint64_t fp, uint64_t hour) { return (fp << kHourBits) | hour; }
  static uint64_t FpOf(uint64_t word) { return word >> kHourBits; }
  static uint64_t HourOf(uint64_t word) { return word & kMaxHour; }
  static TimestampMs EndMs(uint64_t word) {
    return static_cast<TimestampMs>(HourOf(word) + 1) * kGranuleMs;
  }
  uint64_t Home(uint64_t hash) const;

  // The slots live in 2 MiB-aligned memory advised for transparent huge
  // pages (see the constructor); released with free().
  struct SlotsDeleter {
    void operator()(std::atomic<uint64_t>* slots) const;
  };

  const uint64_t mask_;
  const int probe_limit_;
  std::unique_ptr<std::atomic<uint64_t>[], SlotsDeleter> slots_;
};

}  // namespace tally::dedup_internal

#endif  // TALLY_PROCESSOR_DEDUP_INTERNAL_FINGERPRINT_TABLE_H_
