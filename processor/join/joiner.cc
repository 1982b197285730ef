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
  const TimestampMs before = store_->click_watermark();
  store_->AdvanceClickWatermark(click.event_time_ms);
  TALLY_RETURN_IF_ERROR(store_->PutClick(RecordOf(click)));
  sink.Retained(source);

  // The conversions that named this click (click_id mode) or this user on
  // this offer (user_id mode) and found no candidate so far.
  std::string prefix =
      options_.mode == AttributionMode::kClickId
          ? codec::PendingClickPrefix(click.click_id)
          : (click.user_id.empty() ? std::string()
                                   : codec::PendingUserPrefix(click.user_id, click.offer_id));
  if (prefix.empty()) return ResolvePassed(before, sink);
  absl::StatusOr<std::vector<std::pair<std::string, PendingConversion>>> waiting =
      store_->PendingWithPrefix(prefix);
  if (!waiting.ok()) return waiting.status();
  for (auto& [key, pending] : *waiting) {
    // user_id mode: not before the clicks input has passed the conversion
    // (see OnConversion); Advance takes it from there.
    if (options_.mode == AttributionMode::kUserId &&
        !ClicksPassed(pending.conversion.event_time_ms)) {
      continue;
    }
    absl::StatusOr<Evaluation> evaluation = Evaluate(pending.conversion);
    if (!evaluation.ok()) return evaluation.status();
    if (evaluation->kind == Evaluation::Kind::kNoCandidates) {
      // user_id mode: this click does not fit (after the conversion, outside
      // its window), but another click of the user still may: keep waiting.
      if (options_.mode == AttributionMode::kUserId) continue;
      // click_id mode: the one click the conversion names has arrived and
      // does not fit (click ids are unique after dedup): nothing can change.
      evaluation = UnattributedWhy(pending.conversion, "");
      if (!evaluation.ok()) return evaluation.status();
    }
    TALLY_RETURN_IF_ERROR(store_->DeletePending(key, pending.conversion.event_time_ms));
    TALLY_RETURN_IF_ERROR(Resolve(pending.conversion, Ref(pending.source), pending.queued,
                                  *evaluation, Phase::kFromPending, sink));
  }
  // Last: this click is visible to the conversions whose grace it ends.
  return ResolvePassed(before, sink);
}

absl::Status Joiner::ObserveClickTime(TimestampMs event_time_ms, JoinSink& sink) {
  const TimestampMs before = store_->click_watermark();
  store_->AdvanceClickWatermark(event_time_ms);
  return ResolvePassed(before, sink);
}

absl::Status Joiner::ResolvePassed(TimestampMs before, JoinSink& sink) {
  const TimestampMs now = store_->click_watermark();
  if (now == before || now == kNoWatermark) return absl::OkStatus();
  if (options_.mode == AttributionMode::kUserId) {
    // The conversions with before <= ts < now have just been passed by the
    // clicks input: all their candidates are here, and none has expired
    // (a candidate is at most `window` older than the conversion and clicks
    // are kept window + grace behind the watermark).
    absl::StatusOr<std::vector<TaskStore::PendingRef>> passed = store_->PendingBefore(now);
    if (!passed.ok()) return passed.status();
    for (const TaskStore::PendingRef& ref : *passed) {
      if (before != kNoWatermark && ref.event_time_ms < before) continue;
      TALLY_RETURN_IF_ERROR(ResolveIfCandidates(ref, sink));
    }
  }
  // Grace over (now > conv.ts + grace): given up right here, at the click
  // that ends it, not at batch end, so that a later click in the same batch
  // cannot change the outcome: results do not depend on batch boundaries.
  return ExpireBefore(now, sink);
}

absl::Status Joiner::ExpireBefore(TimestampMs click_wm, JoinSink& sink) {
  absl::StatusOr<std::vector<TaskStore::PendingRef>> expired =
      store_->PendingBefore(click_wm - options_.pending_grace_ms);
  if (!expired.ok()) return expired.status();
  for (const TaskStore::PendingRef& ref : *expired) {
    TALLY_RETURN_IF_ERROR(ExpirePending(ref, "", sink));
  }
  return absl::OkStatus();
}

absl::Status Joiner::ResolveIfCandidates(const TaskStore::PendingRef& ref, JoinSink& sink) {
  absl::StatusOr<std::optional<PendingConversion>> pending = store_->GetPending(ref.key);
  if (!pending.ok()) return pending.status();
  if (!pending->has_value()) {
    return absl::DataLossError("state store: pending_by_time names a missing pending record");
  }
  absl::StatusOr<Evaluation> evaluation = Evaluate((*pending)->conversion);
  if (!evaluation.ok()) return evaluation.status();
  if (evaluation->kind == Evaluation::Kind::kNoCandidates) return absl::OkStatus();
  TALLY_RETURN_IF_ERROR(store_->DeletePending(ref.key, ref.event_time_ms));
  return Resolve((*pending)->conversion, Ref((*pending)->source), (*pending)->queued, *evaluation,
                 Phase::kFromPending, sink);
}

absl::Status Joiner::RecordDedupKey(const DedupKey& key, TimestampMs event_time_ms) {
  return store_->PutDedupKey(key, event_time_ms);
}

absl::Status Joiner::OnConversion(const Conversion& conversion, const SourceRef& source,
                                  JoinSink& sink) {
  ++counters_.conversions;
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

  const std::string prefix = PendingPrefixOf(conversion);
  if (options_.mode == AttributionMode::kUserId && !prefix.empty() &&
      !ClicksPassed(conversion.event_time_ms)) {
    // Multi-touch credits EVERY click of the user up to the conversion, and
    // the conversions input often runs ahead of the clicks input: evaluating
    // now would credit whichever clicks happen to be here, so the result
    // would depend on consumption speed. Wait until the clicks input is past
    // the conversion's time (clicks of a partition arrive in event-time
    // order), then evaluate (Advance). Offers without terms decide now.
    if (offers_->Find(conversion.offer_id) != nullptr) {
      return AddPending(conversion, source, prefix, sink);
    }
  }
  absl::StatusOr<Evaluation> evaluation = Evaluate(conversion);
  if (!evaluation.ok()) return evaluation.status();
  if (evaluation->kind != Evaluation::Kind::kNoCandidates) {
    return Resolve(conversion, source, {}, *evaluation, Phase::kNow, sink);
  }
  const TimestampMs click_wm = store_->click_watermark();
  // Waiting is pointless when no click can ever match (the mode's field is
  // missing) or when the grace has already passed: the clicks input is
  // beyond conv.ts + grace, which is exactly when Advance would give up.
  // Deciding now also keeps the outcome independent of batch boundaries.
  const bool grace_passed =
      click_wm != kNoWatermark && click_wm - options_.pending_grace_ms > conversion.event_time_ms;
  bool can_wait = !prefix.empty() && !grace_passed;
  if (can_wait && options_.mode == AttributionMode::kClickId) {
    // The named click is already here and does not fit (other offer,
    // outside the window): click ids are unique after dedup, so no later
    // click can change that. Only an absent click is worth waiting for.
    absl::StatusOr<std::optional<ClickRecord>> click = store_->GetClick(conversion.click_id);
    if (!click.ok()) return click.status();
    can_wait = !click->has_value();
  }
  if (!can_wait) {
    absl::StatusOr<Evaluation> why = UnattributedWhy(conversion, "");
    if (!why.ok()) return why.status();
    return Resolve(conversion, source, {}, *why, Phase::kNow, sink);
  }
  return AddPending(conversion, source, prefix, sink);
}

absl::StatusOr<Joiner::Evaluation> Joiner::Evaluate(const Conversion& conversion) {
  Evaluation result;
  const OfferTerms* terms = offers_->Find(conversion.offer_id);
  if (terms == nullptr) {
    // Without terms there is no window and no payout: nothing to attribute
    // and nothing that a later click could change. Rejected (and recorded,
    // so its status changes follow) rather than unattributed, because the
    // fix is in the offers file, not in the traffic.
    result.kind = Evaluation::Kind::kRejected;
    result.reject_reason = RejectReason::kInvalidValue;
    result.detail = absl::StrCat("offer '", AV(conversion.offer_id), "' has no configured terms");
    return result;
  }
  const int64_t window = terms->attribution_window_ms;
  std::vector<ClickRecord> candidates;
  if (options_.mode == AttributionMode::kClickId) {
    if (!conversion.click_id.empty()) {
      absl::StatusOr<std::optional<ClickRecord>> click = store_->GetClick(conversion.click_id);
      if (!click.ok()) return click.status();
      if (click->has_value() && (*click)->offer_id == conversion.offer_id) {
        const int64_t delta = conversion.event_time_ms - (*click)->event_time_ms;
        if (delta >= 0 && delta <= window) candidates.push_back(**std::move(click));
      }
    }
  } else if (!conversion.user_id.empty()) {
    absl::StatusOr<std::vector<ClickRecord>> clicks =
        store_->UserClicks(conversion.user_id, conversion.offer_id,
                           conversion.event_time_ms - window, conversion.event_time_ms);
    if (!clicks.ok()) return clicks.status();
    candidates = *std::move(clicks);
  }
  if (candidates.empty()) return result;  // kNoCandidates

  const TimestampMs latest = std::max_element(candidates.begin(), candidates.end(),
                                              [](const ClickRecord& a, const ClickRecord& b) {
                                                return a.event_time_ms < b.event_time_ms;
                                              })
                                 ->event_time_ms;
  const int64_t ctit = conversion.event_time_ms - latest;
  if (terms->ctit_min_ms > 0 && ctit < terms->ctit_min_ms) {
    result.kind = Evaluation::Kind::kRejected;
    result.reject_reason = RejectReason::kCtitTooShort;
    result.detail = absl::StrFormat("click-to-conversion time %d ms is below the minimum %d ms",
                                    ctit, terms->ctit_min_ms);
    return result;
  }
  if (terms->ctit_max_ms > 0 && ctit > terms->ctit_max_ms) {
    result.kind = Evaluation::Kind::kRejected;
    result.reject_reason = RejectReason::kCtitTooLong;
    result.detail = absl::StrFormat("click-to-conversion time %d ms is above the maximum %d ms",
                                    ctit, terms->ctit_max_ms);
    return result;
  }
  result.commissions = Attribute(*terms, conversion, candidates);
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

absl::StatusOr<Joiner::Evaluation> Joiner::UnattributedWhy(const Conversion& conversion,
                                                           std::string_view extra_detail) {
  Evaluation result;
  result.kind = Evaluation::Kind::kUnattributed;
  std::string why;
  if (options_.mode == AttributionMode::kClickId) {
    result.unattributed_reason = UnattributedReason::kClickNotFound;
    if (conversion.click_id.empty()) {
      why = "conversion has no click_id";
    } else {
      absl::StatusOr<std::optional<ClickRecord>> click = store_->GetClick(conversion.click_id);
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
      absl::StatusOr<bool> has = store_->HasUserClicks(conversion.user_id, conversion.offer_id);
      if (!has.ok()) return has.status();
      if (*has) {
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
    case Evaluation::Kind::kNoCandidates:  // callers pass UnattributedWhy's result
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
      absl::StatusOr<Evaluation> why = UnattributedWhy(conversion, kCapacity);
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
  absl::StatusOr<Evaluation> why = UnattributedWhy((*pending)->conversion, extra_detail);
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

bool Joiner::ClicksPassed(TimestampMs t) const {
  const TimestampMs click_wm = store_->click_watermark();
  return click_wm != kNoWatermark && click_wm > t;
}

absl::Status Joiner::Advance(JoinSink& sink) {
  // Normally a no-op: the click that ends a grace expires it (ResolvePassed).
  const TimestampMs click_wm = store_->click_watermark();
  if (click_wm == kNoWatermark) return absl::OkStatus();
  return ExpireBefore(click_wm, sink);
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
