// Why an input message was refused. The wire names are a public contract:
// they appear on the `rejected` topic, in the `reason` label of
// tally_events_rejected_total and in the load generator's ground truth. Add
// new values at the end; never rename one.
#ifndef TALLY_PROCESSOR_MODEL_REJECT_REASON_H_
#define TALLY_PROCESSOR_MODEL_REJECT_REASON_H_

#include <cstdint>
#include <span>
#include <string_view>

namespace tally {

enum class RejectReason : uint8_t {
  // Decoding and validation (codec).
  kMalformedPayload = 0,  // "malformed_payload": not parseable JSON / protobuf
  kMissingField,          // "missing_field": a required field is absent
  kWrongType,             // "wrong_type": a field has the wrong JSON type
  kInvalidUtf8,           // "invalid_utf8": a string is not valid UTF-8
  kFieldTooLong,          // "field_too_long": a string or list exceeds its limit
  kInvalidValue,          // "invalid_value": e.g. bad IP, bad country, bad goal
  kInvalidCurrency,       // "invalid_currency": not an ISO 4217 code
  kTimestampOutOfRange,   // "timestamp_out_of_range"
  kPayloadTooLarge,       // "payload_too_large": message exceeds max bytes
  // Pipeline rules (issue: pipeline core).
  kDuplicateClick,       // "duplicate_click"
  kBotUserAgent,         // "bot_user_agent"
  kIpBlocklisted,        // "ip_blocklisted"
  kIpClickFlood,         // "ip_click_flood"
  kDuplicateConversion,  // "duplicate_conversion"
  kCtitTooShort,         // "ctit_too_short"
  kCtitTooLong,          // "ctit_too_long"
  kUnknownConversion,    // "unknown_conversion"
};

inline constexpr int kRejectReasonCount = static_cast<int>(RejectReason::kUnknownConversion) + 1;

std::string_view RejectReasonName(RejectReason reason);
bool ParseRejectReason(std::string_view name, RejectReason* reason);
// Every reason, in enum order (for metrics pre-registration and reports).
std::span<const RejectReason> AllRejectReasons();

}  // namespace tally

#endif  // TALLY_PROCESSOR_MODEL_REJECT_REASON_H_
