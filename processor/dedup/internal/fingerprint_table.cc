#include "processor/dedup/internal/fingerprint_table.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <new>

namespace tally::dedup_internal {
namespace {

// Bounded CAS retries per call: a CAS fails only when another thread changed
// the same slot between our load and our CAS, so repeated failure means heavy
// contention on one window; the caller then takes its slow path instead of
// spinning here.
constexpr int kMaxCasRetries = 8;

// Every probe starts at a random slot of a table far larger than the CPU
// caches; with 4 KiB pages nearly each one also misses the TLB. On 2 MiB
// pages the page walk mostly hits (measured: Upsert was half of the dedup
// warm-up of 10M keys at a restart). The advice is best effort: without
// transparent huge pages the table works the same, only slower.
constexpr size_t kHugePage = size_t{2} << 20;

std::atomic<uint64_t>* AllocateSlots(uint64_t slots) {
  const size_t bytes = static_cast<size_t>(slots) * sizeof(std::atomic<uint64_t>);
  const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  void* memory = std::aligned_alloc(kHugePage, rounded);
  if (memory == nullptr) throw std::bad_alloc();
  (void)madvise(memory, rounded, MADV_HUGEPAGE);
  auto* out = static_cast<std::atomic<uint64_t>*>(memory);
  // Every slot starts empty (0).
  for (uint64_t i = 0; i < slots; ++i) new (&out[i]) std::atomic<uint64_t>(0);
  return out;
}

}  // namespace

// std::atomic<uint64_t> is trivially destructible: no destructor to run.
void FingerprintTable::SlotsDeleter::operator()(std::atomic<uint64_t>* slots) const {
  std::free(slots);
}

FingerprintTable::FingerprintTable(uint64_t slots, int probe_limit)
    : mask_(slots - 1), probe_limit_(probe_limit), slots_(AllocateSlots(slots)) {}

uint64_t FingerprintTable::Fingerprint(uint64_t hash) {
  const uint64_t fp = hash >> kHourBits;
  return fp == 0 ? 1 : fp;
}

uint64_t FingerprintTable::Hour(TimestampMs t) {
  // Rounding negative times UP to hour 0 keeps the stored hour >= the true
  // one, which only delays reclamation (safe); see Representable for the top.
  return t <= 0 ? 0 : static_cast<uint64_t>(t / kGranuleMs);
}

uint64_t FingerprintTable::Home(uint64_t hash) const {
  // The index uses the low bits, the fingerprint the high ones; for tables of
  // up to 2^21 slots the two are disjoint and a false fingerprint hit needs
  // all 64 hash bits to agree.
  return hash & mask_;
}

FingerprintTable::Outcome FingerprintTable::InsertIfAbsent(uint64_t hash, TimestampMs t,
                                                           TimestampMs w) {
  const uint64_t fp = Fingerprint(hash);
  const uint64_t desired = Pack(fp, Hour(t));
  const uint64_t home = Home(hash);
  for (int attempt = 0; attempt < kMaxCasRetries; ++attempt) {
    uint64_t free_index = 0;
    uint64_t free_word = 0;
    bool have_free = false;
    TimestampMs min_live_end = std::numeric_limits<TimestampMs>::max();
    for (int i = 0; i < probe_limit_; ++i) {
      const uint64_t index = (home + static_cast<uint64_t>(i)) & mask_;
      // seq_cst: this load is the "check" half of the Dekker pattern
      // described in the header.
      const uint64_t word = slots_[index].load(std::memory_order_seq_cst);
      if (word == 0) {
        if (!have_free) {
          have_free = true;
          free_index = index;
          free_word = 0;
        }
        break;  // T1: nothing with this fingerprint lies beyond an empty slot
      }
      if (FpOf(word) == fp) return {Result::kPresent};
      if (EndMs(word) <= w) {
        if (!have_free) {
          have_free = true;
          free_index = index;
          free_word = word;
        }
        continue;  // keep looking for the fingerprint up to the first empty slot
      }
      min_live_end = std::min(min_live_end, EndMs(word));
    }
    if (!have_free) return {Result::kFull, min_live_end};
    // seq_cst: the "publish" half of the Dekker pattern. Failure ordering
    // seq_cst too, because we rescan based on what we saw.
    if (slots_[free_index].compare_exchange_strong(free_word, desired, std::memory_order_seq_cst)) {
      return {Result::kInserted};
    }
  }
  return {Result::kContended};
}

FingerprintTable::Outcome FingerprintTable::Upsert(uint64_t hash, TimestampMs t, TimestampMs w) {
  const uint64_t fp = Fingerprint(hash);
  const uint64_t hour = Hour(t);
  const uint64_t desired = Pack(fp, hour);
  const uint64_t home = Home(hash);
  for (int attempt = 0; attempt < kMaxCasRetries; ++attempt) {
    uint64_t free_index = 0;
    uint64_t free_word = 0;
    bool have_free = false;
    bool restart = false;
    TimestampMs min_live_end = std::numeric_limits<TimestampMs>::max();
    for (int i = 0; i < probe_limit_ && !restart; ++i) {
      const uint64_t index = (home + static_cast<uint64_t>(i)) & mask_;
      uint64_t word = slots_[index].load(std::memory_order_seq_cst);  // see header
      if (word == 0) {
        if (!have_free) {
          have_free = true;
          free_index = index;
          free_word = 0;
        }
        break;
      }
      const bool reclaimable = EndMs(word) <= w;
      if (FpOf(word) == fp && !reclaimable) {
        // Age the live slot in place. If it changes under us (overwritten
        // after W moved, or aged by another thread) re-evaluate.
        while (HourOf(word) < hour) {
          if (slots_[index].compare_exchange_weak(word, desired, std::memory_order_seq_cst)) {
            return {Result::kPresent};
          }
          if (FpOf(word) != fp || EndMs(word) <= w) {
            restart = true;
            break;
          }
        }
        if (!restart) return {Result::kPresent};
        continue;
      }
      if (reclaimable) {
        if (!have_free) {
          have_free = true;
          free_index = index;
          free_word = word;
        }
        continue;
      }
      min_live_end = std::min(min_live_end, EndMs(word));
    }
    if (restart) continue;
    if (!have_free) return {Result::kFull, min_live_end};
    if (slots_[free_index].compare_exchange_strong(free_word, desired, std::memory_order_seq_cst)) {
      return {Result::kInserted};
    }
  }
  return {Result::kContended};
}

bool FingerprintTable::MayContain(uint64_t hash) const {
  const uint64_t fp = Fingerprint(hash);
  const uint64_t home = Home(hash);
  for (int i = 0; i < probe_limit_; ++i) {
    const uint64_t word =
        slots_[(home + static_cast<uint64_t>(i)) & mask_].load(std::memory_order_seq_cst);
    if (word == 0) return false;
    if (FpOf(word) == fp) return true;
  }
  return false;
}

uint64_t FingerprintTable::CountNonEmpty() const {
  uint64_t n = 0;
  for (uint64_t i = 0; i <= mask_; ++i) {
    // relaxed: a statistic; no decision is taken on it.
    if (slots_[i].load(std::memory_order_relaxed) != 0) ++n;
  }
  return n;
}

}  // namespace tally::dedup_internal
