// The domain events Tally consumes and produces. These are plain values: the
// codec fills them from the wire (JSON or protobuf, see schemas/), the
// pipeline reads them, and nothing here knows about Kafka or storage.
//
// Invariants established by the codec for every decoded event (the pipeline
// relies on them and does not re-check):
//  - every string is valid UTF-8 and within the length limits of schemas/;
//  - identifiers (click_id, affiliate_id, offer_id, goal, ...) are non-empty;
//  - event times lie inside the configured plausible range;
//  - money amounts carry an ISO 4217 currency.
#ifndef TALLY_PROCESSOR_MODEL_EVENTS_H_
#define TALLY_PROCESSOR_MODEL_EVENTS_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "processor/model/ip_address.h"
#include "processor/model/money.h"
#include "processor/model/reject_reason.h"

namespace tally {

// Event time: milliseconds since the Unix epoch, UTC, as stamped by the
// tracker (click) or the advertiser (conversion). Never the Kafka timestamp.
using TimestampMs = int64_t;

inline constexpr int kMaxSubIds = 5;

struct Click {
  std::string click_id;  // tracker-generated transaction id, unique
  TimestampMs event_time_ms = 0;
  std::string affiliate_id;
  std::string offer_id;
  std::string user_id;  // visitor / device id
  IpAddress ip;
  std::string user_agent;            // may be empty
  std::string referrer;              // may be empty
  std::vector<std::string> sub_ids;  // at most kMaxSubIds
  std::string country;               // ISO 3166-1 alpha-2, upper case, or empty

  friend bool operator==(const Click&, const Click&) = default;
};

enum class ConversionStatus : uint8_t {
  kPending = 0,
  kApproved = 1,
  kReversed = 2,
};
// Stable wire names: "pending", "approved", "reversed".
const char* ConversionStatusName(ConversionStatus status);
bool ParseConversionStatus(std::string_view name, ConversionStatus* status);

struct Conversion {
  // The advertiser's order / transaction id. Identity of a conversion is
  // (offer_id, goal, conversion_id).
  std::string conversion_id;
  TimestampMs event_time_ms = 0;
  std::string offer_id;
  std::string click_id;  // may be empty when user_id is set
  std::string user_id;   // may be empty when click_id is set
  std::string goal;      // "sale", "lead", "install", ...: [a-z0-9_]{1,32}
  Money amount;          // amount >= 0; 0 allowed (e.g. a lead)
  ConversionStatus status = ConversionStatus::kPending;

  friend bool operator==(const Conversion&, const Conversion&) = default;
};

enum class AttributionModel : uint8_t {
  kLastClick = 0,
  kFirstClick = 1,
  kLinear = 2,
  kTimeDecay = 3,
  kPositionBased = 4,
};
// Stable wire names: "last_click", "first_click", "linear", "time_decay",
// "position_based".
const char* AttributionModelName(AttributionModel model);
bool ParseAttributionModel(std::string_view name, AttributionModel* model);

// How a commission's payout was computed (contract v1.1). kUnknown only on
// the status changes of a commission first emitted by a processor older
// than v1.1: its stored state does not have the basis, and a guess from
// today's offers could name terms that were never applied.
enum class PayoutBasis : uint8_t {
  kUnknown = 0,
  kCpa = 1,       // a fixed amount per conversion (also: a goal the offer does not pay, rate 0)
  kRevshare = 2,  // basis points of the conversion amount
};
// Stable wire names: "cpa", "revshare" (kUnknown has none: the basis
// members are omitted).
const char* PayoutBasisName(PayoutBasis basis);
bool ParsePayoutBasis(std::string_view name, PayoutBasis* basis);

// One credited click of one conversion. Emitted again, with the same
// commission_id, whenever the conversion's status changes.
struct Commission {
  std::string commission_id;  // deterministic: same inputs, same id
  std::string conversion_id;
  std::string offer_id;
  std::string goal;
  std::string click_id;
  std::string affiliate_id;
  std::vector<std::string> sub_ids;
  TimestampMs click_time_ms = 0;
  TimestampMs conversion_time_ms = 0;
  Money payout;  // negative for a reversal
  ConversionStatus status = ConversionStatus::kPending;
  AttributionModel model = AttributionModel::kLastClick;
  // This click's share of the conversion's credit, in parts per million
  // (1'000'000 = all of it). Informational; payout is authoritative.
  int32_t credit_ppm = 1'000'000;
  int32_t click_count = 1;  // clicks that shared the credit
  // The payout basis (v1.1; all unset when basis is kUnknown). rate: kCpa,
  // the whole conversion's fixed amount in minor units of payout.currency
  // (a multi-touch share is a part of it); kRevshare, basis points
  // (0..10000) of base. base: the conversion amount the share is taken
  // from (for kCpa the conversion's amount, informational).
  PayoutBasis basis = PayoutBasis::kUnknown;
  int64_t rate = 0;
  Money base;
  bool override_applied = false;  // an affiliate_payouts entry replaced the offer's payout
  std::string offer_version;      // OfferTerms::version of the terms applied
  // Processing time (v1.1): the processor's wall clock when the record was
  // handed to the producer, ms. Not part of the commission's identity or
  // state; 0 until the output path sets it.
  TimestampMs produced_at_ms = 0;

  friend bool operator==(const Commission&, const Commission&) = default;
};

// An input message that Tally refused, with the bytes as consumed: whole,
// or (when `*_truncated`) a prefix, so that the record always fits the
// output topic. Built by BuildRejectedEvent (processor/model/rejected_builder.h).
// The size and SHA-256 always describe the whole original key / value; a
// record decoded from an older producer has size 0, empty hash and
// truncated false (its bytes are whole).
struct RejectedEvent {
  RejectReason reason = RejectReason::kMalformedPayload;
  std::string detail;  // human-readable, names the field; bounded
  std::string source_topic;
  int32_t source_partition = -1;
  int64_t source_offset = -1;
  std::string original_key;         // raw bytes, or a prefix when original_key_truncated
  std::string original_value;       // raw bytes, or a prefix when original_value_truncated
  TimestampMs rejected_at_ms = 0;   // wall clock of the processor
  int64_t original_key_size = 0;    // bytes of the whole original key
  std::string original_key_sha256;  // lowercase hex of the whole key ("" if unknown)
  bool original_key_truncated = false;
  int64_t original_value_size = 0;    // bytes of the whole original value
  std::string original_value_sha256;  // lowercase hex of the whole value ("" if unknown)
  bool original_value_truncated = false;
  TimestampMs produced_at_ms = 0;  // v1.1: wall clock when handed to the producer

  friend bool operator==(const RejectedEvent&, const RejectedEvent&) = default;
};

enum class UnattributedReason : uint8_t {
  kClickNotFound = 0,  // click_id mode: the named click never arrived
  kOutsideWindow = 1,  // a candidate exists but outside the window
  kNoUserClicks = 2,   // user_id mode: no accepted click of the user on the offer
};
// Stable wire names: "click_not_found", "outside_window", "no_user_clicks".
const char* UnattributedReasonName(UnattributedReason reason);
bool ParseUnattributedReason(std::string_view name, UnattributedReason* reason);

struct UnattributedConversion {
  Conversion conversion;
  UnattributedReason reason = UnattributedReason::kClickNotFound;
  std::string detail;
  TimestampMs produced_at_ms = 0;  // v1.1: wall clock when handed to the producer

  friend bool operator==(const UnattributedConversion&, const UnattributedConversion&) = default;
};

}  // namespace tally

#endif  // TALLY_PROCESSOR_MODEL_EVENTS_H_
