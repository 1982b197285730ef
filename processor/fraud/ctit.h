// Click-to-install/conversion time (CTIT) bounds: the per-conversion fraud
// rule. It belongs to fraud but is evaluated by the joiner, which is the only
// stage that knows the candidate click (ctit = conversion time - click time).
//
// Too short a CTIT is the signature of click injection / click spamming (the
// click was fired after the conversion was already under way); too long of
// attribution by a stale click.
#ifndef TALLY_PROCESSOR_FRAUD_CTIT_H_
#define TALLY_PROCESSOR_FRAUD_CTIT_H_

#include <cstdint>
#include <optional>

#include "processor/model/reject_reason.h"

namespace tally {

enum class CtitVerdict : uint8_t {
  kOk,
  kTooShort,  // ctit_too_short
  kTooLong,   // ctit_too_long
};

// A bound <= 0 is disabled. Both bounds are inclusive (ctit == min is ok).
// Checked in this order, so with min > max (a configuration error the config
// loader should refuse) everything is kTooShort or kTooLong, never kOk.
constexpr CtitVerdict CheckCtit(int64_t ctit_ms, int64_t ctit_min_ms, int64_t ctit_max_ms) {
  if (ctit_min_ms > 0 && ctit_ms < ctit_min_ms) return CtitVerdict::kTooShort;
  if (ctit_max_ms > 0 && ctit_ms > ctit_max_ms) return CtitVerdict::kTooLong;
  return CtitVerdict::kOk;
}

// The reject reason of a verdict; nullopt for kOk.
constexpr std::optional<RejectReason> CtitRejectReason(CtitVerdict verdict) {
  switch (verdict) {
    case CtitVerdict::kTooShort:
      return RejectReason::kCtitTooShort;
    case CtitVerdict::kTooLong:
      return RejectReason::kCtitTooLong;
    case CtitVerdict::kOk:
      break;
  }
  return std::nullopt;
}

}  // namespace tally

#endif  // TALLY_PROCESSOR_FRAUD_CTIT_H_
