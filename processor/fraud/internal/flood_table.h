// Lock-free per-(IP, window) click counters for the ip_click_flood rule.
// Internal to processor/fraud (FraudFilter owns one; it is NOT replaced on
// reload, so counts survive a rules change).
//
// Slot layout: one std::atomic<uint64_t> per slot, 8 bytes:
//   bits 63..28  tag: the top 36 bits of Hash(ip, window) (full window index)
//   bits 27..12  the window index modulo 2^16 (for eviction decisions)
//   bits 11..0   count, 1..limit+1 (saturates: once a click was rejected
//                every later one is too, the exact count is not needed)
// 0 is the empty slot (a live slot has count >= 1). Key and count share one
// word, so a single CAS claims, reclaims or increments a slot and no reader
// can see a torn (key, count) pair.
//
// Memory orderings: every slot access is RELAXED. The word carries all of a
// counter's state and publishes no other memory, so the only guarantees we
// need are those of a single atomic object: one modification order per slot
// and CAS comparing against the latest value in it. The exactness arguments
// below are statements about those modification orders only.
//
// Eviction (bounded memory). The table never grows. A slot of window ws is
// FREE for a click of window w (may be claimed for it) iff it is empty, or
// ws < w - L, or ws > w + kFutureWindows (stale slots whose 16-bit window has
// wrapped), where L = lateness_windows (fraud.flood_lateness / flood_window,
// at least 2). In event-time order w is the newest window, so this is the
// "older than (max window seen - L)" policy. L must cover how far the
// partitions of one instance can be apart in event time: they are consumed
// concurrently, and after a lag one may be hours behind another; deciding by the click's own
// window rather than by a shared max makes two clicks of the same window
// agree on which slots are free, which exactness relies on (E2). Nothing is
// deleted eagerly: free slots are overwritten by later claims.
//
// Overflow. When the probe window (probe_limit slots from the home slot)
// holds neither the key nor a free slot, Add returns kOverflow and the caller
// accepts the click (fail-open, see FraudFilter). Linear probing with a
// window of 64 (8 cache lines, touched only when that crowded): measured on
// 2^20 slots, 0 overflows at a live load of 0.5 and 190 per 786k keys at 0.75
// (a window of 16: 177 at 0.5). The scan stops at the first free slot, so
// the common case reads one or two slots.
//
// Exactness. For a key K = (ip, w), let n be the number of Add calls. If none
// of them overflowed, K's slot was not reclaimed while they ran (no click of
// a window > w + L needed it, i.e. clicks of K are at most L windows behind
// the newest ones) and no click more than kFutureWindows windows older than w
// ran concurrently, exactly max(0, n - limit) of them return kRejected,
// whatever the interleaving. Argument:
//  E1 A slot never becomes empty again, and for a fixed w a slot that is not
//     free for w stays not free for w: increments keep the key, and a
//     reclaim by a click of window w' writes w' > ws + L >= w, still not
//     free for w (w' <= w + kFutureWindows: clicks of K are not that late)
//     and not K (other window).
//  E2 An Add scans K's probe sequence from the home slot and stops at the
//     first slot that holds K (and counts there) or is free for w (and
//     claims it by CAS; a failed CAS re-examines the slot's new value). Every
//     slot it passed was seen neither free nor K, which by E1 stays so. A
//     claim CAS succeeds only if the slot is free in its LATEST value, so a
//     claimer of K saw every earlier slot non-free: K can never sit beyond a
//     slot that is free for w now, and the scan may stop there. Two claims of
//     K at different slots are impossible: the later one would have passed
//     the earlier one's slot, which holds K. All Adds for K meet on one slot.
//  E3 On that slot each Add is one successful CAS from count c to c + 1
//     (accepted iff c + 1 <= limit) or a load of c = limit + 1 (rejected).
//     The counts 1..limit are each produced by exactly one CAS: min(n, limit)
//     accepted, the rest rejected.
// When the assumptions do not hold the only possible error is an
// UNDERCOUNT (a reclaimed slot restarts at 1): more clicks accepted, never a
// good click rejected. Over-counting needs two keys with equal 36-bit tags
// and 16-bit windows in one probe window (probability ~2^-36 per probe).
//
// Progress: lock-free (a CAS fails only because another thread changed the
// same slot, i.e. made progress).
#ifndef TALLY_PROCESSOR_FRAUD_INTERNAL_FLOOD_TABLE_H_
#define TALLY_PROCESSOR_FRAUD_INTERNAL_FLOOD_TABLE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>

#include "processor/model/ip_address.h"

namespace tally::fraud_internal {

class FloodTable {
 public:
  static constexpr int kCountBits = 12;
  static constexpr int kWindowBits = 16;
  static constexpr int kTagBits = 64 - kWindowBits - kCountBits;  // 36
  // Largest supported limit: the count must reach limit + 1.
  static constexpr int64_t kMaxLimit = (int64_t{1} << kCountBits) - 2;  // 4094
  // How far ahead of a click's window a slot may be and still be live (out
  // of order arrival across partitions); beyond, it is taken for a stale slot
  // whose 16-bit window wrapped. 1024 windows = 17 hours at 1-minute windows.
  static constexpr int64_t kFutureWindows = 1024;
  static constexpr int kDefaultProbeLimit = 64;

  enum class Outcome : uint8_t {
    kAccepted,  // the click's count is within the limit
    kRejected,  // the click's count exceeds the limit
    kOverflow,  // no slot for the key in its probe window; not counted
  };

  // Largest lateness: live distances and future distances must not overlap
  // in the 16-bit window ring.
  static constexpr int64_t kMaxLatenessWindows = (int64_t{1} << kWindowBits) - kFutureWindows - 2;

  // REQUIRES: slots a power of two >= 2; 1 <= probe_limit <= slots;
  // 1 <= limit <= kMaxLimit; 2 <= lateness_windows <= kMaxLatenessWindows.
  FloodTable(uint64_t slots, int probe_limit, int64_t limit, int64_t lateness_windows = 2);

  FloodTable(const FloodTable&) = delete;
  FloodTable& operator=(const FloodTable&) = delete;

  // Counts one click of `ip` in tumbling window `window` (any int64).
  Outcome Add(const IpAddress& ip, int64_t window);
  // Adds `count` clicks at once (counts saturate at limit + 1), rebuilding
  // the counters from durable state. Same slot discipline as Add; returns
  // false when the probe window had no room (the count is then lost: an
  // undercount, never an overcount).
  bool Restore(const IpAddress& ip, int64_t window, uint64_t count);
  // Empties every slot. REQUIRES: no concurrent Add/Restore (the rebuild
  // runs between batches, when no thread counts).
  void Clear();

  uint64_t slots() const { return mask_ + 1; }
  // Non-empty slots (live or reclaimable). O(slots): tests and gauges only.
  uint64_t CountNonEmpty() const;

  // Exposed for tests: the 64-bit hash that picks the home slot and the tag.
  static uint64_t Hash(const IpAddress& ip, int64_t window);

 private:
  static constexpr uint64_t kCountMask = (uint64_t{1} << kCountBits) - 1;
  static constexpr uint64_t kWindowMask = (uint64_t{1} << kWindowBits) - 1;

  // Whether `word` (non-empty) may be claimed by a click of window whose low
  // bits are `wlow` (see Eviction).
  bool IsFreeFor(uint64_t word, uint64_t wlow) const;
  // One probe pass; nullopt when the key's slot was reclaimed mid-increment.
  // Adds n >= 1 clicks; with n > 1 the outcome only tells overflow apart.
  std::optional<Outcome> TryAdd(uint64_t key, uint64_t wlow, uint64_t home, uint64_t n);
  Outcome AddN(const IpAddress& ip, int64_t window, uint64_t n);

  const uint64_t mask_;
  const int probe_limit_;
  const uint64_t limit_;
  const uint64_t lateness_windows_;
  std::unique_ptr<std::atomic<uint64_t>[]> slots_;
};

}  // namespace tally::fraud_internal

#endif  // TALLY_PROCESSOR_FRAUD_INTERNAL_FLOOD_TABLE_H_
