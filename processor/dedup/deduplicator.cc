#include "processor/dedup/deduplicator.h"

#include <algorithm>
#include <atomic>
#include <utility>

#include "absl/strings/str_cat.h"
#include "processor/dedup/internal/fingerprint_table.h"
#include "processor/dedup/internal/pending_log.h"

namespace tally {

using dedup_internal::FingerprintTable;
using dedup_internal::PendingLog;

namespace {

constexpr TimestampMs kMinTime = std::numeric_limits<TimestampMs>::min();
constexpr TimestampMs kMaxTime = std::numeric_limits<TimestampMs>::max();

// Fast-path rounds (a round ends in a pressure eviction or CAS contention)
// before giving up to the slow path.
constexpr int kMaxFastRounds = 3;

TimestampMs SubSat(TimestampMs a, int64_t b) {
  TimestampMs out;
  if (__builtin_sub_overflow(a, b, &out)) return b > 0 ? kMinTime : kMaxTime;
  return out;
}

TimestampMs AlignDown(TimestampMs t, int64_t granule) {
  if (t < kMinTime + granule) return kMinTime;  // "minus infinity" stays so
  TimestampMs q = t / granule;
  if (t % granule != 0 && t < 0) --q;
  return q * granule;
}

TimestampMs AlignUp(TimestampMs t, int64_t granule) {
  const TimestampMs down = AlignDown(t, granule);
  return down == t ? t : SubSat(down, -granule);
}

// fetch_max on an atomic; returns true when this call raised the value.
bool FetchMax(std::atomic<TimestampMs>& a, TimestampMs v, std::memory_order order) {
  TimestampMs cur = a.load(order);
  while (cur < v) {
    if (a.compare_exchange_weak(cur, v, order)) return true;
  }
  return false;
}

void Bump(std::atomic<uint64_t>& counter) {
  counter.fetch_add(1, std::memory_order_relaxed);  // statistic, see DedupCounters
}

}  // namespace

absl::Status DedupOptions::Validate() const {
  if (table_slots < 2 || (table_slots & (table_slots - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("dedup.table_slots must be a power of two >= 2, got ", table_slots));
  }
  if (table_slots > (uint64_t{1} << 36)) {
    return absl::InvalidArgumentError("dedup.table_slots is larger than 2^36 (512 GiB)");
  }
  if (probe_limit < 1 || static_cast<uint64_t>(probe_limit) > table_slots) {
    return absl::InvalidArgumentError(
        absl::StrCat("dedup.probe_limit must be in [1, table_slots], got ", probe_limit));
  }
  if (horizon_ms <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("dedup.horizon_ms must be positive, got ", horizon_ms));
  }
  if (repeat_skew_ms < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("dedup.repeat_skew_ms must be >= 0, got ", repeat_skew_ms));
  }
  return absl::OkStatus();
}

std::string DedupOptions::ToString() const {
  return absl::StrCat("table_slots=", table_slots, " (", (table_slots * 8) >> 20,
                      " MiB) horizon_ms=", horizon_ms, " repeat_skew_ms=", repeat_skew_ms,
                      " probe_limit=", probe_limit, hash_fn != nullptr ? " hash=injected" : "");
}

// ---------------------------------------------------------------------------
// DedupBatch

DedupBatch::DedupBatch(Deduplicator* owner, std::unique_ptr<PendingLog> log)
    : owner_(owner), log_(std::move(log)) {}

DedupBatch::~DedupBatch() { owner_->Unregister(log_.get()); }

void DedupBatch::ForEachAccepted(absl::FunctionRef<void(const DedupKey&, TimestampMs)> fn) const {
  log_->ForEachAccepted(fn);
}

size_t DedupBatch::accepted_count() const { return log_->accepted_count(); }

// ---------------------------------------------------------------------------
// Deduplicator

Deduplicator::Deduplicator(const DedupOptions& options, DurableIdIndex* authority)
    : options_(options),
      authority_(authority),
      hash_fn_(options.hash_fn != nullptr ? options.hash_fn : &DedupHash64),
      table_(std::make_unique<FingerprintTable>(options.table_slots, options.probe_limit)) {}

Deduplicator::~Deduplicator() = default;

absl::StatusOr<std::unique_ptr<Deduplicator>> Deduplicator::Create(const DedupOptions& options,
                                                                   DurableIdIndex* authority) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  if (authority == nullptr) return absl::InvalidArgumentError("dedup: no durable index");
  return std::unique_ptr<Deduplicator>(new Deduplicator(options, authority));
}

TimestampMs Deduplicator::completeness_watermark() const {
  return completeness_.load(std::memory_order_seq_cst);  // see completeness_
}

TimestampMs Deduplicator::event_time_watermark() const {
  return event_watermark_.load(std::memory_order_relaxed);  // see event_watermark_
}

std::unique_ptr<DedupBatch> Deduplicator::BeginBatch() {
  auto log = std::make_unique<PendingLog>();
  {
    std::unique_lock lock(registry_mu_);
    live_.push_back(log.get());
  }
  return std::unique_ptr<DedupBatch>(new DedupBatch(this, std::move(log)));
}

void Deduplicator::Unregister(const PendingLog* log) {
  std::unique_lock lock(registry_mu_);
  auto it = std::find(live_.begin(), live_.end(), log);
  if (it != live_.end()) live_.erase(it);
}

void Deduplicator::Commit(std::unique_ptr<DedupBatch> batch) {
  // Unregistering is all there is to do: the keys are in the durable index
  // (REQUIRES), so a slow path that no longer finds the log finds the index.
  // The registry mutex orders the caller's durable write before any slow
  // path that scans the registry afterwards.
  batch.reset();
}

void Deduplicator::Abort(std::unique_ptr<DedupBatch> batch) { batch.reset(); }

TimestampMs Deduplicator::AdvanceEventWatermark(TimestampMs t) {
  // relaxed: see event_watermark_.
  TimestampMs cur = event_watermark_.load(std::memory_order_relaxed);
  while (cur < t) {
    if (event_watermark_.compare_exchange_weak(cur, t, std::memory_order_relaxed)) return t;
  }
  return cur;
}

void Deduplicator::RaiseCompleteness(TimestampMs w, std::atomic<uint64_t>* counter) {
  if (FetchMax(completeness_, w, std::memory_order_seq_cst) && counter != nullptr) {
    Bump(*counter);
  }
}

void Deduplicator::MaybeExpire(TimestampMs event_watermark) {
  const TimestampMs target =
      AlignDown(SubSat(SubSat(event_watermark, options_.horizon_ms), options_.repeat_skew_ms),
                FingerprintTable::kGranuleMs);
  // relaxed pre-check: the common case (nothing to do) costs one plain load;
  // the raise itself is a seq_cst RMW.
  if (target > completeness_.load(std::memory_order_relaxed)) {
    RaiseCompleteness(target, &counters_.expiry_advances);
  }
}

bool Deduplicator::TryFastInsert(PendingLog& log, const DedupKey& key, uint64_t hash, TimestampMs t,
                                 SlowCause* cause) {
  // Read-only pre-checks: a key that will take the slow path anyway must not
  // leave a (withdrawn) entry in the pending log, which every slow path scans.
  // They decide nothing: the checks below are repeated after publication.
  if (SubSat(t, options_.repeat_skew_ms) < completeness_.load(std::memory_order_seq_cst)) {
    *cause = SlowCause::kBelowWatermark;
    return false;
  }
  if (table_->MayContain(hash)) {
    *cause = SlowCause::kFingerprintHit;
    return false;
  }
  // Publish the key (tentative) BEFORE reading the table: see I3.
  PendingLog::Entry* entry = log.Append(hash, key, t, PendingLog::State::kTentative);
  for (int round = 0; round < kMaxFastRounds; ++round) {
    const TimestampMs w1 = completeness_.load(std::memory_order_seq_cst);  // see completeness_
    if (SubSat(t, options_.repeat_skew_ms) < w1) {
      *cause = SlowCause::kBelowWatermark;
      break;
    }
    const FingerprintTable::Outcome r = table_->InsertIfAbsent(hash, t, w1);
    switch (r.result) {
      case FingerprintTable::Result::kPresent:
        *cause = SlowCause::kFingerprintHit;
        log.Resolve(entry, PendingLog::State::kWithdrawn);
        return false;
      case FingerprintTable::Result::kInserted:
        // The first-free argument (T3) holds only if W was the same value
        // throughout; otherwise a racer may have claimed a different slot.
        if (completeness_.load(std::memory_order_seq_cst) == w1) {
          log.Resolve(entry, PendingLog::State::kAccepted);
          return true;
        }
        *cause = SlowCause::kContention;
        log.Resolve(entry, PendingLog::State::kWithdrawn);
        return false;
      case FingerprintTable::Result::kFull:
        RaiseCompleteness(r.min_live_end_ms, &counters_.pressure_evictions);
        *cause = SlowCause::kBelowWatermark;  // if the rounds run out
        continue;
      case FingerprintTable::Result::kContended:
        *cause = SlowCause::kContention;
        continue;
    }
  }
  log.Resolve(entry, PendingLog::State::kWithdrawn);
  return false;
}

void Deduplicator::EnsureHint(uint64_t hash, TimestampMs t) {
  if (!FingerprintTable::Representable(t)) return;
  for (int round = 0; round < 16; ++round) {
    const TimestampMs w = completeness_.load(std::memory_order_seq_cst);  // see completeness_
    if (t < w) return;  // I1 does not cover t; nothing to keep
    const FingerprintTable::Outcome r = table_->Upsert(hash, t, w);
    switch (r.result) {
      case FingerprintTable::Result::kPresent:
      case FingerprintTable::Result::kInserted:
        return;
      case FingerprintTable::Result::kFull:
        RaiseCompleteness(r.min_live_end_ms, &counters_.pressure_evictions);
        continue;
      case FingerprintTable::Result::kContended:
        continue;
    }
  }
  // Persistent contention on one window: make I1 true by raising W past t
  // instead (every check at or below t then consults the pending logs and
  // the durable index).
  RaiseCompleteness(AlignUp(SubSat(t, -1), FingerprintTable::kGranuleMs),
                    &counters_.pressure_evictions);
}

absl::StatusOr<DedupOutcome> Deduplicator::SlowCheck(PendingLog& log, const DedupKey& key,
                                                     uint64_t hash, TimestampMs t,
                                                     SlowCause cause) {
  std::atomic<uint64_t>* lookups = nullptr;
  switch (cause) {
    case SlowCause::kFingerprintHit:
      Bump(counters_.slow_fingerprint_hit);
      lookups = &counters_.authority_lookups_fingerprint_hit;
      break;
    case SlowCause::kBelowWatermark:
      Bump(counters_.slow_below_watermark);
      lookups = &counters_.authority_lookups_below_watermark;
      break;
    case SlowCause::kContention:
      Bump(counters_.slow_contention);
      lookups = &counters_.authority_lookups_contention;
      break;
  }
  std::lock_guard stripe_lock(stripes_[(hash >> 7) % kStripes]);
  // Publish the fingerprint BEFORE reading the pending logs: see I3.
  EnsureHint(hash, t);
  {
    std::shared_lock registry_lock(registry_mu_);
    for (const PendingLog* pending : live_) {
      if (pending->ContainsAccepted(hash, key)) {
        Bump(counters_.duplicates);
        return DedupOutcome::kDuplicate;
      }
    }
  }
  Bump(*lookups);
  absl::StatusOr<bool> durable = authority_->Contains(key);
  if (!durable.ok()) return durable.status();
  if (*durable) {
    Bump(counters_.duplicates);
    return DedupOutcome::kDuplicate;
  }
  if (cause == SlowCause::kFingerprintHit) Bump(counters_.false_positive_fingerprint_hits);
  // Still under the stripe lock: the next slow path for this key sees it.
  log.Append(hash, key, t, PendingLog::State::kAccepted);
  Bump(counters_.new_keys);
  return DedupOutcome::kNew;
}

absl::StatusOr<DedupOutcome> Deduplicator::Check(DedupBatch& batch, const DedupKey& key,
                                                 TimestampMs event_time) {
  Bump(counters_.checks);
  const TimestampMs m = AdvanceEventWatermark(event_time);
  if (event_time < SubSat(m, options_.horizon_ms)) {
    Bump(counters_.too_old);
    return DedupOutcome::kTooOld;
  }
  MaybeExpire(m);
  const uint64_t hash = hash_fn_(key.encoded());
  SlowCause cause = SlowCause::kBelowWatermark;
  if (FingerprintTable::Representable(event_time) &&
      TryFastInsert(*batch.log_, key, hash, event_time, &cause)) {
    Bump(counters_.new_keys);
    return DedupOutcome::kNew;
  }
  return SlowCheck(*batch.log_, key, hash, event_time, cause);
}

absl::Status Deduplicator::WarmUp(TimestampMs since) {
  // Nothing runs concurrently (REQUIRES), so W may be lowered here.
  completeness_.store(kMinTime, std::memory_order_seq_cst);
  // The index may call back from several threads: EnsureHint is the hot
  // path's own (lock-free) insertion; the maximum needs no ordering, only
  // atomicity (it is read after ForEachSince joined its threads).
  std::atomic<TimestampMs> max_seen{kMinTime};
  absl::Status status = authority_->ForEachSince(since, [&](const DedupKey& key, TimestampMs t) {
    if (t < since) return;  // tolerate an index that over-delivers
    TimestampMs seen = max_seen.load(std::memory_order_relaxed);
    while (t > seen && !max_seen.compare_exchange_weak(seen, t, std::memory_order_relaxed)) {
    }
    EnsureHint(hash_fn_(key.encoded()), t);
  });
  if (!status.ok()) {
    completeness_.store(kMaxTime, std::memory_order_seq_cst);
    return status;
  }
  // Only keys with t >= since were loaded, so only those are covered (I1);
  // pressure during the load may already have raised W further.
  RaiseCompleteness(AlignUp(since, FingerprintTable::kGranuleMs), nullptr);
  if (const TimestampMs m = max_seen.load(std::memory_order_relaxed); m != kMinTime) {
    AdvanceEventWatermark(m);
  }
  MaybeExpire(event_watermark_.load(std::memory_order_relaxed));
  return absl::OkStatus();
}

}  // namespace tally
