#include "processor/join/joiner.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "processor/join/internal/codec.h"

namespace tally {
namespace {

namespace codec = join_internal;

#define TALLY_RETURN_IF_ERROR(expr)           \
  do {                                        \
    if (absl::Status _s = (expr); !_s.ok()) { \
      return _s;                              \
    }                                         \
  } while (0)

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

StoredSource Store(const SourceRef& ref) {
  return StoredSource{std::string(ref.topic), ref.partition, ref.offset, std::string(ref.key),
                      std::string(ref.value)};
}

SourceRef Ref(const StoredSource& s) {
  return SourceRef{s.topic, s.partition, s.offset, s.key, s.value};
}

// t + delta, clamped to the representable range (event times are validated,
// durations are not bounded by them).
TimestampMs SaturatingAdd(TimestampMs t, int64_t delta) {
  constexpr TimestampMs kMin = std::numeric_limits<TimestampMs>::min();
  constexpr TimestampMs kMax = std::numeric_limits<TimestampMs>::max();
  if (delta > 0 && t > kMax - delta) return kMax;
  if (delta < 0 && t < kMin - delta) return kMin;
  return t + delta;
}

ClickRecord RecordOf(const Click& click) {
  return ClickRecord{click.click_id, click.event_time_ms, click.affiliate_id,
                     click.offer_id, click.user_id,       click.sub_ids};
}

}  // namespace

Joiner::Joiner(TaskStore* store, const OffersCatalog* offers, const JoinOptions& options)
    : store_(store), offers_(offers), options_(options) {}

std::string Joiner::PendingPrefixOf(const Conversion& conversion) const {
  if (options_.mode == AttributionMode::kClickId) {
    return conversion.click_id.empty() ? std::string()
                                       : codec::PendingClickPrefix(conversion.click_id);
  }
  return conversion.user_id.empty()
             ? std::string()
             : codec::PendingUserPrefix(conversion.user_id, conversion.offer_id);
}

absl::Status Joiner::OnClick(const Click& click, const SourceRef& source, JoinSink& sink) {
  ++counters_.clicks;
  const TimestampMs before = Watermark();
  if (before != kNoWatermark && click.event_time_ms < before) ++counters_.late_clicks;
  ClickRecord record = RecordOf(click);
  record.arrival_watermark_ms = before;
  store_->AdvanceClickWatermark(click.event_time_ms);
  TALLY_RETURN_IF_ERROR(store_->PutClick(record));
  sink.Retained(source);

  // click_id mode: the conversions that named this click were waiting for
  // exactly it. (user_id mode decides when the watermark passes, below: a
  // click that arrives once a conversion's time is passed is not one of its
  // first candidates anyway.)
  if (options_.mode == AttributionMode::kClickId) {
    absl::StatusOr<std::vector<std::pair<std::string, PendingConversion>>> waiting =
        store_->PendingWithPrefix(codec::PendingClickPrefix(click.click_id));
    if (!waiting.ok()) return waiting.status();
    for (const auto& [key, pending] : *waiting) {
      TALLY_RETURN_IF_ERROR(
          TryResolvePending(TaskStore::PendingRef{pending.conversion.event_time_ms, key}, sink));
    }
  }
  return ResolvePassed(before, sink);
}

absl::Status Joiner::ObserveClickTime(TimestampMs event_time_ms, JoinSink& sink) {
  const TimestampMs before = Watermark();
  store_->AdvanceClickWatermark(event_time_ms);
  return ResolvePassed(before, sink);
}

TimestampMs Joiner::Watermark() const {
  const TimestampMs max_click = store_->click_watermark();
  if (max_click == kNoWatermark) return kNoWatermark;
  return SaturatingAdd(max_click, -options_.max_click_lateness_ms);
}

bool Joiner::Passed(TimestampMs t) const {
  const TimestampMs watermark = Watermark();
  return watermark != kNoWatermark && watermark > t;
}

absl::Status Joiner::ResolvePassed(TimestampMs before, JoinSink& sink) {
  const TimestampMs now = Watermark();
  if (now == before || now == kNoWatermark) return absl::OkStatus();
  if (options_.mode == AttributionMode::kUserId) {
    // Conversions with before <= ts < now: their first candidates are all
    // here now (any click up to ts arrives before the watermark passes ts,
    // unless it is later than max_click_lateness).
    // (before == kNoWatermark, the lowest time: every pending conversion.)
    for (const TaskStore::PendingRef& ref : store_->PendingBetween(before, now)) {
      TALLY_RETURN_IF_ERROR(TryResolvePending(ref, sink));
    }
  }
  // Grace over (ts + grace < now): every one of them is decided here, at the
  // click that ends it; deciding later would give the same outcome (the
  // arrival rule), but not in bounded time.
  return DecidePassedGrace(now, sink);
}

absl::Status Joiner::DecidePassedGrace(TimestampMs watermark, JoinSink& sink) {
  absl::StatusOr<std::vector<TaskStore::PendingRef>> passed =
      store_->PendingBefore(SaturatingAdd(watermark, -options_.pending_grace_ms));
  if (!passed.ok()) return passed.status();
  for (const TaskStore::PendingRef& ref : *passed) {
    TALLY_RETURN_IF_ERROR(TryResolvePending(ref, sink));
  }
  return absl::OkStatus();
}

absl::Status Joiner::TryResolvePending(const TaskStore::PendingRef& ref, JoinSink& sink) {
  absl::StatusOr<std::optional<PendingConversion>> pending = store_->GetPending(ref.key);
  if (!pending.ok()) return pending.status();
  if (!pending->has_value()) {
    return absl::DataLossError("state store: pending index names a missing pending record");
  }
  absl::StatusOr<std::optional<Evaluation>> decision = Decide((*pending)->conversion);
  if (!decision.ok()) return decision.status();
  if (!decision->has_value()) return absl::OkStatus();  // still waiting
  TALLY_RETURN_IF_ERROR(store_->DeletePending(ref.key, ref.event_time_ms));
  return Resolve((*pending)->conversion, Ref((*pending)->source), (*pending)->queued, **decision,
                 Phase::kFromPending, sink);
}

absl::Status Joiner::RecordDedupKey(const DedupKey& key, TimestampMs event_time_ms) {
  return store_->PutDedupKey(key, event_time_ms);
}

absl::Status Joiner::OnConversion(const Conversion& conversion, const SourceRef& source,
                                  JoinSink& sink) {
  ++counters_.conversions;
  const TimestampMs newest = store_->conversion_watermark();
  if (newest != kNoWatermark &&
      conversion.event_time_ms < SaturatingAdd(newest, -options_.max_conversion_lateness_ms)) {
    ++counters_.late_conversions;
  }
  store_->AdvanceConversionWatermark(conversion.event_time_ms);
  const ConversionIdentity identity = ConversionIdentity::Of(conversion);
  absl::StatusOr<std::optional<LedgerEntry>> entry = store_->GetLedger(identity);
  if (!entry.ok()) return entry.status();
  if (entry->has_value()) return ApplyStatusChange(conversion, source, **entry, sink);

  if (conversion.status == ConversionStatus::kReversed) {
    // Nothing to reverse. Not recorded: a later first message of the
    // identity is handled as new.
    ++counters_.conversions_rejected;
    sink.Reject(source, RejectReason::kUnknownConversion,
                "a status change for an unknown conversion");
    return absl::OkStatus();
  }
  absl::StatusOr<std::optional<Evaluation>> decision = Decide(conversion);
  if (!decision.ok()) return decision.status();
  if (decision->has_value()) {
    return Resolve(conversion, source, {}, **decision, Phase::kNow, sink);
  }
  return AddPending(conversion, source, PendingPrefixOf(conversion), sink);
}

// The one rule that decides a conversion (docs/design.md §6). It reads only
// what the clicks input has shown up to fixed points of its own progress —
// the clicks that ARRIVED before the watermark passed conv.ts (first
// candidates) or conv.ts + grace (everything else), by each click's stored
// arrival watermark — so it gives the same answer whenever it is asked,
// however the two topics and the batches interleave; nullopt means "not
// yet", and it is asked again when the watermark passes those points (or,
// in click_id mode, when the named click arrives).
absl::StatusOr<std::optional<Joiner::Evaluation>> Joiner::Decide(const Conversion& conversion) {
  const OfferTerms* terms = offers_->Find(conversion.offer_id);
  if (terms == nullptr) {
    // Without terms there is no window and no payout: nothing to attribute
    // and nothing that a later click could change. Rejected (and recorded,
    // so its status changes follow) rather than unattributed, because the
    // fix is in the offers file, not in the traffic.
    Evaluation result;
    result.kind = Evaluation::Kind::kRejected;
    result.reject_reason = RejectReason::kInvalidValue;
    result.detail = absl::StrCat("offer '", AV(conversion.offer_id), "' has no configured terms");
    return result;
  }
  const TimestampMs ts = conversion.event_time_ms;
  const TimestampMs grace_end = SaturatingAdd(ts, options_.pending_grace_ms);
  const int64_t window = terms->attribution_window_ms;
  auto in_window = [&](const ClickRecord& click) {
    const int64_t delta = ts - click.event_time_ms;
    return delta >= 0 && delta <= window;
  };
  if (options_.mode == AttributionMode::kClickId) {
    if (conversion.click_id.empty()) return Why(conversion, "");
    absl::StatusOr<std::optional<ClickRecord>> click = VisibleClick(conversion);
    if (!click.ok()) return click.status();
    if (!click->has_value()) {
      if (!Passed(grace_end)) return std::nullopt;  // it may still arrive
      return Why(conversion, "");
    }
    // Click ids are unique after dedup: the named click decides alone.
    if ((*click)->offer_id != conversion.offer_id || !in_window(**click)) {
      return Why(conversion, "");
    }
    return EvaluateCandidates(*terms, conversion, {**std::move(click)});
  }

  if (conversion.user_id.empty()) return Why(conversion, "");
  if (!Passed(ts)) return std::nullopt;
  absl::StatusOr<std::vector<ClickRecord>> clicks =
      store_->UserClicks(conversion.user_id, conversion.offer_id, SaturatingAdd(ts, -window), ts);
  if (!clicks.ok()) return clicks.status();
  // Multi-touch credits every click up to the conversion: its candidates
  // are the in-window clicks that arrived before the watermark passed it.
  std::vector<ClickRecord> candidates;
  for (const ClickRecord& click : *clicks) {
    if (click.arrival_watermark_ms <= ts && in_window(click)) candidates.push_back(click);
  }
  if (!candidates.empty()) return EvaluateCandidates(*terms, conversion, std::move(candidates));
  // None: the clicks later than the lateness bound that arrive until the
  // grace ends count, together.
  if (!Passed(grace_end)) return std::nullopt;
  for (const ClickRecord& click : *clicks) {
    if (click.arrival_watermark_ms <= grace_end && in_window(click)) candidates.push_back(click);
  }
  if (!candidates.empty()) return EvaluateCandidates(*terms, conversion, std::move(candidates));
  return Why(conversion, "");
}

absl::StatusOr<std::optional<ClickRecord>> Joiner::VisibleClick(const Conversion& conversion) {
  absl::StatusOr<std::optional<ClickRecord>> click = store_->GetClick(conversion.click_id);
  if (!click.ok() || !click->has_value()) return click;
  if (!Visible(**click, conversion)) return std::nullopt;
  return click;
}

bool Joiner::Visible(const ClickRecord& click, const Conversion& conversion) const {
  // Arrived before the watermark passed the conversion's grace, and not so
  // old that retention may already have dropped it (click_retention_ms
  // behind the conversion is what the store keeps for it).
  return click.arrival_watermark_ms <=
             SaturatingAdd(conversion.event_time_ms, options_.pending_grace_ms) &&
         click.event_time_ms >=
             SaturatingAdd(conversion.event_time_ms, -options_.click_retention_ms);
}

Joiner::Evaluation Joiner::EvaluateCandidates(const OfferTerms& terms, const Conversion& conversion,
                                              std::vector<ClickRecord> candidates) {
  Evaluation result;
  const TimestampMs latest = std::max_element(candidates.begin(), candidates.end(),
                                              [](const ClickRecord& a, const ClickRecord& b) {
                                                return a.event_time_ms < b.event_time_ms;
                                              })
                                 ->event_time_ms;
  const int64_t ctit = conversion.event_time_ms - latest;
  if (terms.ctit_min_ms > 0 && ctit < terms.ctit_min_ms) {
    result.kind = Evaluation::Kind::kRejected;
    result.reject_reason = RejectReason::kCtitTooShort;
    result.detail = absl::StrFormat("click-to-conversion time %d ms is below the minimum %d ms",
                                    ctit, terms.ctit_min_ms);
    return result;
  }
  if (terms.ctit_max_ms > 0 && ctit > terms.ctit_max_ms) {
    result.kind = Evaluation::Kind::kRejected;
    result.reject_reason = RejectReason::kCtitTooLong;
    result.detail = absl::StrFormat("click-to-conversion time %d ms is above the maximum %d ms",
                                    ctit, terms.ctit_max_ms);
    return result;
  }
  result.commissions = Attribute(terms, conversion, candidates);
  if (result.commissions.empty()) {
    // The engine credits every click of weight > 0 and every model gives
    // at least one click a positive weight; kept as a safe landing.
    result.kind = Evaluation::Kind::kUnattributed;
    result.unattributed_reason = UnattributedReason::kOutsideWindow;
    result.detail = "attribution credited no click";
    return result;
  }
  result.kind = Evaluation::Kind::kAttributed;
  return result;
}

absl::StatusOr<Joiner::Evaluation> Joiner::Why(const Conversion& conversion,
                                               std::string_view extra_detail) {
  Evaluation result;
  result.kind = Evaluation::Kind::kUnattributed;
  std::string why;
  if (options_.mode == AttributionMode::kClickId) {
    result.unattributed_reason = UnattributedReason::kClickNotFound;
    if (conversion.click_id.empty()) {
      why = "conversion has no click_id";
    } else {
      absl::StatusOr<std::optional<ClickRecord>> click = VisibleClick(conversion);
      if (!click.ok()) return click.status();
      if (!click->has_value()) {
        why = absl::StrCat("click '", AV(conversion.click_id), "' not found");
      } else if ((*click)->offer_id != conversion.offer_id) {
        why = absl::StrCat("click '", AV(conversion.click_id), "' is for offer '",
                           AV((*click)->offer_id), "'");
      } else {
        result.unattributed_reason = UnattributedReason::kOutsideWindow;
        const OfferTerms* terms = offers_->Find(conversion.offer_id);
        const int64_t delta = conversion.event_time_ms - (*click)->event_time_ms;
        why = delta < 0
                  ? absl::StrFormat("click '%s' is %d ms after the conversion", conversion.click_id,
                                    -delta)
                  : absl::StrFormat("click '%s' is %d ms before the conversion, window %d ms",
                                    conversion.click_id, delta,
                                    terms == nullptr ? int64_t{0} : terms->attribution_window_ms);
      }
    }
  } else {
    result.unattributed_reason = UnattributedReason::kNoUserClicks;
    if (conversion.user_id.empty()) {
      why = "conversion has no user_id";
    } else {
      absl::StatusOr<std::vector<ClickRecord>> clicks =
          store_->UserClicks(conversion.user_id, conversion.offer_id,
                             SaturatingAdd(conversion.event_time_ms, -options_.click_retention_ms),
                             std::numeric_limits<TimestampMs>::max());
      if (!clicks.ok()) return clicks.status();
      const bool any = std::any_of(clicks->begin(), clicks->end(), [&](const ClickRecord& click) {
        return Visible(click, conversion);
      });
      if (any) {
        result.unattributed_reason = UnattributedReason::kOutsideWindow;
        why = "no click of the user on the offer inside the window";
      } else {
        why = absl::StrCat("the user has no click on offer '", AV(conversion.offer_id), "'");
      }
    }
  }
  result.detail = extra_detail.empty() ? why : absl::StrCat(AV(extra_detail), ": ", why);
  return result;
}

absl::Status Joiner::Resolve(const Conversion& conversion, const SourceRef& source,
                             const std::vector<QueuedStatus>& queued, const Evaluation& evaluation,
                             Phase phase, JoinSink& sink) {
  const bool now = phase == Phase::kNow;
  LedgerEntry entry;
  entry.conversion_time_ms = conversion.event_time_ms;
  entry.status = conversion.status;
  switch (evaluation.kind) {
    case Evaluation::Kind::kAttributed:
      entry.outcome = LedgerOutcome::kAttributed;
      entry.commissions = evaluation.commissions;
      for (const tally::Commission& c : entry.commissions) sink.Commission(c);
      counters_.commissions += entry.commissions.size();
      ++(now ? counters_.conversions_attributed : counters_.pending_attributed);
      // Then each status that arrived while the conversion waited, in order.
      for (const QueuedStatus& q : queued) {
        EmitWithStatus(entry, q.conversion.status, sink);
        entry.status = q.conversion.status;
        ++counters_.pending_attributed;
      }
      break;
    case Evaluation::Kind::kRejected:
      entry.outcome = LedgerOutcome::kRejected;
      entry.reject_reason = evaluation.reject_reason;
      entry.detail = evaluation.detail;
      sink.Reject(source, entry.reject_reason, entry.detail);
      ++(now ? counters_.conversions_rejected : counters_.pending_rejected);
      for (const QueuedStatus& q : queued) {
        sink.Reject(Ref(q.source), entry.reject_reason, entry.detail);
        entry.status = q.conversion.status;
        ++counters_.pending_rejected;
      }
      break;
    case Evaluation::Kind::kUnattributed:
      entry.outcome = LedgerOutcome::kUnattributed;
      entry.unattributed_reason = evaluation.unattributed_reason;
      entry.detail = evaluation.detail;
      sink.Unattributed(UnattributedConversion{conversion, entry.unattributed_reason, entry.detail},
                        source);
      ++(now ? counters_.conversions_unattributed : counters_.pending_unattributed);
      for (const QueuedStatus& q : queued) {
        sink.Unattributed(
            UnattributedConversion{q.conversion, entry.unattributed_reason, entry.detail},
            Ref(q.source));
        entry.status = q.conversion.status;
        ++counters_.pending_unattributed;
      }
      break;
  }
  return store_->PutLedger(ConversionIdentity::Of(conversion), entry);
}

absl::Status Joiner::AddPending(const Conversion& conversion, const SourceRef& source,
                                std::string_view prefix, JoinSink& sink) {
  constexpr std::string_view kCapacity = "pending capacity reached";
  if (options_.max_pending_conversions > 0 &&
      store_->pending_count() >= options_.max_pending_conversions) {
    absl::StatusOr<std::optional<TaskStore::PendingRef>> oldest = store_->OldestPending();
    if (!oldest.ok()) return oldest.status();
    ++counters_.pending_capacity_resolutions;
    if (!oldest->has_value() || (*oldest)->event_time_ms > conversion.event_time_ms) {
      // The newcomer is the oldest of all: it is the one given up.
      absl::StatusOr<Evaluation> why = Why(conversion, kCapacity);
      if (!why.ok()) return why.status();
      return Resolve(conversion, source, {}, *why, Phase::kNow, sink);
    }
    TALLY_RETURN_IF_ERROR(ExpirePending(**oldest, kCapacity, sink));
  }
  const ConversionIdentity identity = ConversionIdentity::Of(conversion);
  const std::string key = codec::PendingKey(prefix, identity);
  TALLY_RETURN_IF_ERROR(
      store_->InsertPending(key, PendingConversion{conversion, Store(source), {}}));
  LedgerEntry entry;
  entry.conversion_time_ms = conversion.event_time_ms;
  entry.status = conversion.status;
  entry.outcome = LedgerOutcome::kPending;
  entry.pending_key = key;
  TALLY_RETURN_IF_ERROR(store_->PutLedger(identity, entry));
  ++counters_.conversions_pending;
  sink.Retained(source);
  return absl::OkStatus();
}

absl::Status Joiner::ExpirePending(const TaskStore::PendingRef& ref, std::string_view extra_detail,
                                   JoinSink& sink) {
  absl::StatusOr<std::optional<PendingConversion>> pending = store_->GetPending(ref.key);
  if (!pending.ok()) return pending.status();
  if (!pending->has_value()) {
    return absl::DataLossError("state store: pending_by_time names a missing pending record");
  }
  TALLY_RETURN_IF_ERROR(store_->DeletePending(ref.key, ref.event_time_ms));
  absl::StatusOr<Evaluation> why = Why((*pending)->conversion, extra_detail);
  if (!why.ok()) return why.status();
  return Resolve((*pending)->conversion, Ref((*pending)->source), (*pending)->queued, *why,
                 Phase::kFromPending, sink);
}

absl::Status Joiner::ApplyStatusChange(const Conversion& conversion, const SourceRef& source,
                                       LedgerEntry& entry, JoinSink& sink) {
  const ConversionIdentity identity = ConversionIdentity::Of(conversion);
  switch (entry.outcome) {
    case LedgerOutcome::kPending: {
      absl::StatusOr<std::optional<PendingConversion>> pending =
          store_->GetPending(entry.pending_key);
      if (!pending.ok()) return pending.status();
      if (!pending->has_value()) {
        return absl::DataLossError("state store: ledger names a missing pending record");
      }
      (*pending)->queued.push_back(QueuedStatus{conversion, Store(source)});
      TALLY_RETURN_IF_ERROR(store_->UpdatePending(entry.pending_key, **pending));
      ++counters_.conversions_pending;
      sink.Retained(source);
      return absl::OkStatus();  // the ledger changes when the conversion resolves
    }
    case LedgerOutcome::kAttributed:
      EmitWithStatus(entry, conversion.status, sink);
      ++counters_.conversions_attributed;
      break;
    case LedgerOutcome::kUnattributed:
      sink.Unattributed(UnattributedConversion{conversion, entry.unattributed_reason, entry.detail},
                        source);
      ++counters_.conversions_unattributed;
      break;
    case LedgerOutcome::kRejected:
      sink.Reject(source, entry.reject_reason, entry.detail);
      ++counters_.conversions_rejected;
      break;
  }
  entry.status = conversion.status;
  return store_->PutLedger(identity, entry);
}

void Joiner::EmitWithStatus(const LedgerEntry& entry, ConversionStatus status, JoinSink& sink) {
  // The ledger keeps the commissions as first emitted (positive payouts):
  // a reversal negates them, any other status (including an un-reversal)
  // re-emits them as they were. Same ids either way.
  std::vector<tally::Commission> out;
  if (status == ConversionStatus::kReversed) {
    out = Reverse(entry.commissions);
  } else {
    out = entry.commissions;
    for (tally::Commission& c : out) c.status = status;
  }
  for (const tally::Commission& c : out) sink.Commission(c);
  counters_.commissions += out.size();
}

absl::Status Joiner::Advance(JoinSink& sink) {
  // Normally a no-op: the click that ends a grace decides it (ResolvePassed).
  const TimestampMs watermark = Watermark();
  if (watermark == kNoWatermark) return absl::OkStatus();
  return DecidePassedGrace(watermark, sink);
}

absl::Status Joiner::Commit(const std::vector<InputPosition>& positions) {
  TALLY_RETURN_IF_ERROR(store_->Commit(positions));
  committed_counters_ = counters_;
  return absl::OkStatus();
}

void Joiner::Abort() {
  store_->Discard();
  counters_ = committed_counters_;
}

}  // namespace tally
