#include "processor/model/reject_reason.h"

#include <array>

namespace tally {
namespace {

// Indexed by the enum value; the order is the enum's.
constexpr std::array<std::string_view, kRejectReasonCount> kNames = {
    "malformed_payload",  "missing_field",        "wrong_type",       "invalid_utf8",
    "field_too_long",     "invalid_value",        "invalid_currency", "timestamp_out_of_range",
    "payload_too_large",  "duplicate_click",      "bot_user_agent",   "ip_blocklisted",
    "ip_click_flood",     "duplicate_conversion", "ctit_too_short",   "ctit_too_long",
    "unknown_conversion",
};

constexpr std::array<RejectReason, kRejectReasonCount> MakeAll() {
  std::array<RejectReason, kRejectReasonCount> all{};
  for (int i = 0; i < kRejectReasonCount; ++i) all[i] = static_cast<RejectReason>(i);
  return all;
}
constexpr std::array<RejectReason, kRejectReasonCount> kAll = MakeAll();

}  // namespace

std::string_view RejectReasonName(RejectReason reason) {
  const auto i = static_cast<size_t>(reason);
  return i < kNames.size() ? kNames[i] : std::string_view("unknown");
}

bool ParseRejectReason(std::string_view name, RejectReason* reason) {
  for (size_t i = 0; i < kNames.size(); ++i) {
    if (kNames[i] == name) {
      *reason = static_cast<RejectReason>(i);
      return true;
    }
  }
  return false;
}

std::span<const RejectReason> AllRejectReasons() { return kAll; }

}  // namespace tally
