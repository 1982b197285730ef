// Turns one attributed conversion into its commissions: which of the
// candidate clicks are credited (attribution model), what the conversion
// pays (payout per goal, per-affiliate override, revshare), and how the
// payout is split so that the parts add up exactly.
//
// Pure and deterministic: no clock, no randomness, no state. The same
// inputs give the same commissions (ids included) on any instance, which is
// what makes a replayed batch produce identical output.
#ifndef TALLY_PROCESSOR_COMMISSION_COMMISSION_ENGINE_H_
#define TALLY_PROCESSOR_COMMISSION_COMMISSION_ENGINE_H_

#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "processor/model/events.h"
#include "processor/offers/offers.h"

namespace tally {

// What the joiner keeps of an accepted click: enough to credit it.
struct ClickRecord {
  std::string click_id;
  TimestampMs event_time_ms = 0;
  std::string affiliate_id;
  std::string offer_id;
  std::string user_id;
  std::vector<std::string> sub_ids;
  // The joiner's: its partition's click watermark when the click arrived
  // (before the click itself moved it), which decides the conversions it is
  // visible to (docs/design.md §6); min(): visible to every conversion.
  TimestampMs arrival_watermark_ms = std::numeric_limits<TimestampMs>::min();

  friend bool operator==(const ClickRecord&, const ClickRecord&) = default;
};

// commission_id (contract v1.1, schemas/README.md): lowercase hex of the
// first 16 bytes of SHA-256 over offer_id, goal, conversion_id and click_id,
// each preceded by its length in bytes as a 4-byte big-endian integer, so
// that any language can recompute it (golden-value test, with the README's
// Python one-liner). Status is NOT part of the id. Only new commissions get
// it: a status change or reversal re-emits the id stored in the ledger with
// the commission, so a commission first emitted before v1.1 keeps its v1.0
// id (a home-made hash, also 32 hex digits) for every later status.
std::string CommissionId(std::string_view offer_id, std::string_view goal,
                         std::string_view conversion_id, std::string_view click_id);

// Rounds numerator/denominator half away from zero (denominator > 0).
int64_t DivideRoundHalfAwayFromZero(__int128 numerator, int64_t denominator);

// The conversion's total payout for a single credited affiliate (pass "" for
// the offer's own payout, as used by multi-touch splits). CPA: the fixed
// amount and its currency. Revshare: conversion.amount * bps / 10000,
// rounded half away from zero, in the conversion's currency. A goal the
// offer does not pay: 0 in the conversion's currency.
Money ConversionPayout(const OfferTerms& terms, const Conversion& conversion,
                       std::string_view affiliate_id);

// Splits `total` into parts proportional to `weights` (non-negative, not all
// zero) by the largest-remainder method, in integer arithmetic: integral
// weights are used as they are; otherwise every weight is first quantised
// deterministically to an integer (llround(w / max_w * 2^40)). Then each part gets
// floor(total*w/W), the leftover units go one each to the largest remainders; ties go to the lower
// index (callers order clicks so that lower index = earlier click, then smaller click id). Works
// for negative totals symmetrically (splits |total| and negates). The parts always add up to
// `total` exactly.
std::vector<int64_t> SplitLargestRemainder(int64_t total, std::span<const double> weights);

// Unnormalised weights of the model for `clicks`, which must be ordered by
// (event_time, click_id) ascending, relative to the conversion time:
//  last_click: 1 for the click with the latest timestamp (equal timestamps:
//    the smaller click id), 0 for the others; first_click: 1 for the
//    earliest (equal: the smaller click id);
//  linear: 1 each;
//  position_based: 1 click: 1; 2 clicks: 1, 1; n > 2: first and last
//    2*(n-2) each, every click between 1 (= 40% / 40% / 20% shared evenly);
//  time_decay: 2^(-(newest_click_ts - click_ts)/half_life), i.e.
//    2^(-(conv_ts - click_ts)/half_life) up to a common factor (the same
//    shares), so that the newest click weighs exactly 1 and the weights
//    cannot all underflow to 0 when the conversion comes many half-lives
//    after the clicks. Computed in integer fixed point (no libm: identical
//    on every machine) and returned as exact multiples of 2^-40, so the
//    quantisation of SplitLargestRemainder reproduces them exactly. A click
//    whose weight rounds to 0 (older than ~41 half-lives) gets no credit.
// Every model but time_decay has small integral weights, which
// SplitLargestRemainder handles in exact integer arithmetic.
// conversion_time_ms is not needed by any model today (kept for models that
// weigh by the click's age at conversion).
std::vector<double> ModelWeights(const OfferTerms& terms, std::span<const ClickRecord> clicks,
                                 TimestampMs conversion_time_ms);

// The commissions of `conversion`, one per credited click (weight > 0 after
// the quantisation of SplitLargestRemainder), with
// `status` = conversion.status. `clicks` are the candidates inside the
// attribution window (any order; the engine sorts a copy). Single credited
// click: the affiliate override applies. Several: the offer's own payout is
// split. credit_ppm = the click's weight share in parts per million (rounded
// half away from zero), click_count = number of credited clicks. Returns
// the commissions ordered by (click time, click id). The basis fields say
// which payout was applied (Commission::basis..offer_version);
// produced_at_ms stays 0.
std::vector<Commission> Attribute(const OfferTerms& terms, const Conversion& conversion,
                                  std::span<const ClickRecord> clicks);

// The reversal of previously emitted commissions: same ids, negated
// payout, status kReversed.
std::vector<Commission> Reverse(std::span<const Commission> emitted);

}  // namespace tally

#endif  // TALLY_PROCESSOR_COMMISSION_COMMISSION_ENGINE_H_
