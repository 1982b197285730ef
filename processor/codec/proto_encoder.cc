// Protobuf encoding, proto3 canonical: fields in number order, implicit-
// presence fields omitted when they hold their default, explicit-presence
// fields (Click.ts, Conversion.ts, Conversion.amount) always written.
#include "processor/codec/internal/proto_codec.h"
#include "processor/codec/internal/wire.h"

namespace tally::codec_internal {
namespace {

using wire::AppendBytes;
using wire::AppendInt;

void BytesIfSet(std::string* out, uint32_t number, std::string_view value) {
  if (!value.empty()) AppendBytes(out, number, value);
}

void IntIfSet(std::string* out, uint32_t number, int64_t value) {
  if (value != 0) AppendInt(out, number, value);
}

// tally.v1.ConversionStatus numbers (0 is "unspecified", never written).
int64_t StatusNumber(ConversionStatus status) {
  switch (status) {
    case ConversionStatus::kPending:
      return 1;
    case ConversionStatus::kApproved:
      return 2;
    case ConversionStatus::kReversed:
      return 3;
  }
  return 0;
}

std::string_view CurrencyCode(const Currency& currency) {
  return currency.empty() ? std::string_view() : currency.code();
}

void AppendConversion(const Conversion& c, std::string* out) {
  BytesIfSet(out, 1, c.conversion_id);
  AppendInt(out, 2, c.event_time_ms);
  BytesIfSet(out, 3, c.offer_id);
  BytesIfSet(out, 4, c.click_id);
  BytesIfSet(out, 5, c.user_id);
  BytesIfSet(out, 6, c.goal);
  AppendInt(out, 7, c.amount.minor);
  BytesIfSet(out, 8, CurrencyCode(c.amount.currency));
  IntIfSet(out, 9, StatusNumber(c.status));
}

}  // namespace

void ProtoEncoder::Encode(const Click& c, std::string* out) {
  out->clear();
  BytesIfSet(out, 1, c.click_id);
  AppendInt(out, 2, c.event_time_ms);
  BytesIfSet(out, 3, c.affiliate_id);
  BytesIfSet(out, 4, c.offer_id);
  BytesIfSet(out, 5, c.user_id);
  BytesIfSet(out, 6, c.ip.ToString());
  BytesIfSet(out, 7, c.user_agent);
  BytesIfSet(out, 8, c.referrer);
  // Repeated: every element is written, empty ones included.
  for (const auto& sub_id : c.sub_ids) AppendBytes(out, 9, sub_id);
  BytesIfSet(out, 10, c.country);
}

void ProtoEncoder::Encode(const Conversion& c, std::string* out) {
  out->clear();
  AppendConversion(c, out);
}

void ProtoEncoder::Encode(const Commission& c, std::string* out) {
  out->clear();
  BytesIfSet(out, 1, c.commission_id);
  BytesIfSet(out, 2, c.conversion_id);
  BytesIfSet(out, 3, c.offer_id);
  BytesIfSet(out, 4, c.goal);
  BytesIfSet(out, 5, c.click_id);
  BytesIfSet(out, 6, c.affiliate_id);
  for (const auto& sub_id : c.sub_ids) AppendBytes(out, 7, sub_id);
  IntIfSet(out, 8, c.click_time_ms);
  IntIfSet(out, 9, c.conversion_time_ms);
  IntIfSet(out, 10, c.payout.minor);
  BytesIfSet(out, 11, CurrencyCode(c.payout.currency));
  IntIfSet(out, 12, StatusNumber(c.status));
  BytesIfSet(out, 13, AttributionModelName(c.model));
  IntIfSet(out, 14, c.credit_ppm);
  IntIfSet(out, 15, c.click_count);
  // v1.1 (see the JSON encoder: no basis members when it is unknown).
  if (c.basis != PayoutBasis::kUnknown) {
    BytesIfSet(out, 16, PayoutBasisName(c.basis));
    IntIfSet(out, 17, c.rate);
    IntIfSet(out, 18, c.base.minor);
    BytesIfSet(out, 19, CurrencyCode(c.base.currency));
    IntIfSet(out, 20, c.override_applied ? 1 : 0);
    BytesIfSet(out, 21, c.offer_version);
  }
  IntIfSet(out, 22, c.produced_at_ms);
}

void ProtoEncoder::Encode(const RejectedEvent& r, std::string* out) {
  out->clear();
  BytesIfSet(out, 1, RejectReasonName(r.reason));
  BytesIfSet(out, 2, r.detail);
  BytesIfSet(out, 3, r.source_topic);
  IntIfSet(out, 4, r.source_partition);
  IntIfSet(out, 5, r.source_offset);
  BytesIfSet(out, 6, r.original_key);
  BytesIfSet(out, 7, r.original_value);
  IntIfSet(out, 8, r.rejected_at_ms);
  IntIfSet(out, 9, r.original_key_size);
  BytesIfSet(out, 10, r.original_key_sha256);
  IntIfSet(out, 11, r.original_key_truncated ? 1 : 0);
  IntIfSet(out, 12, r.original_value_size);
  BytesIfSet(out, 13, r.original_value_sha256);
  IntIfSet(out, 14, r.original_value_truncated ? 1 : 0);
  IntIfSet(out, 15, r.produced_at_ms);
}

void ProtoEncoder::Encode(const UnattributedConversion& u, std::string* out) {
  out->clear();
  // The length prefix needs the embedded message's size first.
  nested_.clear();
  AppendConversion(u.conversion, &nested_);
  AppendBytes(out, 1, nested_);
  BytesIfSet(out, 2, UnattributedReasonName(u.reason));
  BytesIfSet(out, 3, u.detail);
  IntIfSet(out, 4, u.produced_at_ms);
}

}  // namespace tally::codec_internal
