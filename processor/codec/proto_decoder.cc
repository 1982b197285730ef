// Protobuf decoding, in the same order as JSON: wire-level errors anywhere
// (malformed_payload) win over field problems; among field problems the
// first in wire order wins; missing fields come last. A non-repeated field
// that appears twice is not an error: the last value wins, as in protobuf.
#include "absl/strings/str_cat.h"
#include "processor/codec/internal/proto_codec.h"
#include "processor/codec/internal/rules.h"
#include "processor/codec/internal/wire.h"

namespace tally::codec_internal {
namespace {

using wire::Field;

// Walks every field of `data`, calling on_field(field) for each. Stops with a
// fatal verdict on a wire-level error. Handlers check v->failed() themselves
// (after a field problem the rest is only parsed, for wire errors).
template <typename OnField>
bool ForEachField(std::string_view data, Verdict* v, OnField&& on_field) {
  wire::Reader reader(data);
  Field f;
  while (!reader.done()) {
    const char* error = nullptr;
    if (!reader.Next(&f, &error)) {
      v->Fatal(RejectReason::kMalformedPayload, absl::StrCat("malformed protobuf: ", error));
      return false;
    }
    on_field(f);
    if (v->fatal()) return false;
  }
  return true;
}

const char* WireTypeMeaning(uint8_t wire_type) {
  return wire_type == wire::kVarint ? "an integer (wire type 0)" : "a string (wire type 2)";
}

bool Expect(const Field& f, uint8_t wire_type, FieldName name, Verdict* v) {
  if (f.wire_type == wire_type) return true;
  v->Field(RejectReason::kWrongType,
           absl::StrCat(Quoted(name), ": expected ", WireTypeMeaning(wire_type), ", got wire type ",
                        f.wire_type));
  return false;
}

bool ReadString(const Field& f, FieldName name, Verdict* v, std::string_view* s) {
  if (!Expect(f, wire::kLengthDelimited, name, v)) return false;
  if (!IsValidUtf8(f.bytes)) {
    NotUtf8(v, name);
    return false;
  }
  *s = f.bytes;
  return true;
}

bool ReadInt64(const Field& f, FieldName name, Verdict* v, int64_t* out) {
  if (!Expect(f, wire::kVarint, name, v)) return false;
  *out = static_cast<int64_t>(f.varint);
  return true;
}

// int32 on the wire is a varint truncated to 32 bits (negative values are
// sign-extended to 64 bits by writers).
bool ReadInt32(const Field& f, FieldName name, Verdict* v, int32_t* out) {
  if (!Expect(f, wire::kVarint, name, v)) return false;
  *out = static_cast<int32_t>(static_cast<uint32_t>(f.varint));
  return true;
}

// ConversionStatus: 0 (unspecified) is absent. Returns false on a problem.
bool ReadStatus(const Field& f, FieldName name, Verdict* v, ConversionStatus* out, bool* present) {
  int32_t n;
  if (!ReadInt32(f, name, v, &n)) return false;
  switch (n) {
    case 0:
      *present = false;
      return true;
    case 1:
      *out = ConversionStatus::kPending;
      break;
    case 2:
      *out = ConversionStatus::kApproved;
      break;
    case 3:
      *out = ConversionStatus::kReversed;
      break;
    default:
      BadValue(v, RejectReason::kInvalidValue, name, absl::StrCat("unknown ConversionStatus ", n));
      return false;
  }
  *present = true;
  return true;
}

void SetBit(uint32_t* present, uint32_t number, bool on) {
  if (on) {
    *present |= 1u << number;
  } else {
    *present &= ~(1u << number);
  }
}

void CheckRequired(uint32_t present, std::initializer_list<std::pair<uint32_t, const char*>> fields,
                   std::string_view prefix, Verdict* v) {
  for (const auto& [number, name] : fields) {
    if (!(present & (1u << number))) {
      Missing(v, FieldName{prefix, name});
      return;
    }
  }
}

// ---- Click -----------------------------------------------------------------

bool DecodeClick(std::string_view data, const DecodeLimits& limits, Verdict* v, Click* out) {
  out->user_agent.clear();
  out->referrer.clear();
  out->country.clear();
  uint32_t present = 0;  // bit n: field number n
  size_t sub_ids = 0;
  const bool ok = ForEachField(data, v, [&](const Field& f) {
    if (f.number == 9 && f.wire_type == wire::kLengthDelimited) ++sub_ids;
    if (v->failed()) return;
    std::string_view s;
    switch (f.number) {
      case 2: {
        const FieldName name{{}, "ts"};
        int64_t ts;
        if (ReadInt64(f, name, v, &ts) && CheckTimestamp(v, name, ts, limits)) {
          out->event_time_ms = ts;
          SetBit(&present, 2, true);
        }
        return;
      }
      case 1:
      case 3:
      case 4: {
        const FieldName name{{},
                             f.number == 1   ? "click_id"
                             : f.number == 3 ? "affiliate_id"
                                             : "offer_id"};
        if (!ReadString(f, name, v, &s)) return;
        // proto3: an empty string is indistinguishable from an absent one.
        SetBit(&present, f.number, false);
        if (s.empty() || !CheckId(v, name, s)) return;
        (f.number == 1   ? out->click_id
         : f.number == 3 ? out->affiliate_id
                         : out->offer_id)
            .assign(s);
        SetBit(&present, f.number, true);
        return;
      }
      case 5: {
        const FieldName name{{}, "user_id"};
        if (!ReadString(f, name, v, &s)) return;
        SetBit(&present, 5, false);
        if (s.empty() || !CheckUserId(v, name, s)) return;
        out->user_id.assign(s);
        SetBit(&present, 5, true);
        return;
      }
      case 6: {
        const FieldName name{{}, "ip"};
        if (!ReadString(f, name, v, &s)) return;
        SetBit(&present, 6, false);
        if (s.empty() || !ParseIp(v, name, s, &out->ip)) return;
        SetBit(&present, 6, true);
        return;
      }
      case 7:
      case 8: {
        const FieldName name{{}, f.number == 7 ? "user_agent" : "referrer"};
        if (!ReadString(f, name, v, &s) ||
            !CheckMaxBytes(v, name, s, f.number == 7 ? kMaxUserAgentBytes : kMaxReferrerBytes)) {
          return;
        }
        (f.number == 7 ? out->user_agent : out->referrer).assign(s);
        return;
      }
      case 9: {
        const FieldName name{{}, "sub_ids"};
        if (!ReadString(f, name, v, &s)) return;
        if (sub_ids > static_cast<size_t>(kMaxSubIds)) {
          // The detail is completed with the total count below.
          v->Field(RejectReason::kFieldTooLong, "");
          return;
        }
        if (!CheckMaxBytes(v, name, s, kMaxSubIdBytes)) return;
        // Assign into existing elements: their buffers survive from the
        // previous click.
        if (sub_ids <= out->sub_ids.size()) {
          out->sub_ids[sub_ids - 1].assign(s);
        } else {
          out->sub_ids.emplace_back(s);
        }
        return;
      }
      case 10: {
        const FieldName name{{}, "country"};
        if (!ReadString(f, name, v, &s) || (!s.empty() && !CheckCountry(v, name, s))) return;
        out->country.assign(s);
        return;
      }
      default:
        return;  // unknown: forward compatibility
    }
  });
  if (!ok) return false;
  if (v->failed()) {
    auto& result = v->result();
    if (result->reason == RejectReason::kFieldTooLong && result->detail.empty()) {
      result->detail = absl::StrCat("field 'sub_ids': ", sub_ids, " entries, at most ", kMaxSubIds);
    }
    return false;
  }
  out->sub_ids.resize(sub_ids);
  CheckRequired(
      present,
      {{1, "click_id"}, {2, "ts"}, {3, "affiliate_id"}, {4, "offer_id"}, {5, "user_id"}, {6, "ip"}},
      {}, v);
  return !v->failed();
}

// ---- Conversion --------------------------------------------------------------

constexpr const char* kConversionNames[] = {"",         "conversion_id", "ts",   "offer_id",
                                            "click_id", "user_id",       "goal", "amount",
                                            "currency", "status"};

// `limits` null: lenient (embedded in an output type): types, UTF-8, the
// currency and the status are checked, values are not.
bool DecodeConversion(std::string_view data, const DecodeLimits* limits, std::string_view prefix,
                      Verdict* v, Conversion* out) {
  const bool strict = limits != nullptr;
  out->click_id.clear();
  out->user_id.clear();
  if (!strict) {
    out->conversion_id.clear();
    out->offer_id.clear();
    out->goal.clear();
    out->event_time_ms = 0;
    out->amount = Money{};
    out->status = ConversionStatus::kPending;
  }
  uint32_t present = 0;
  const bool ok = ForEachField(data, v, [&](const Field& f) {
    if (v->failed() || f.number == 0 || f.number > 9) return;
    const FieldName name{prefix, kConversionNames[f.number]};
    std::string_view s;
    int64_t n;
    switch (f.number) {
      case 2:
        if (!ReadInt64(f, name, v, &n) || (strict && !CheckTimestamp(v, name, n, *limits))) return;
        out->event_time_ms = n;
        SetBit(&present, 2, true);
        return;
      case 7:
        if (!ReadInt64(f, name, v, &n) || (strict && !CheckAmount(v, name, n))) return;
        out->amount.minor = n;
        SetBit(&present, 7, true);
        return;
      case 9: {
        bool set = false;
        if (!ReadStatus(f, name, v, &out->status, &set)) return;
        SetBit(&present, 9, set);
        return;
      }
      default:
        break;
    }
    if (!ReadString(f, name, v, &s)) return;
    SetBit(&present, f.number, false);
    std::string* target = nullptr;
    bool good = true;
    switch (f.number) {
      case 1:
        target = &out->conversion_id;
        break;
      case 3:
        target = &out->offer_id;
        break;
      case 4:
        target = &out->click_id;
        break;
      case 5:
        target = &out->user_id;
        break;
      case 6:
        target = &out->goal;
        break;
      case 8:
        if (s.empty()) {
          out->amount.currency = Currency();
          return;
        }
        good = ParseCurrency(v, name, s, &out->amount.currency);
        break;
    }
    if (target != nullptr) {
      target->clear();
      if (s.empty()) return;
      if (strict) {
        switch (f.number) {
          case 5:
            good = CheckUserId(v, name, s);
            break;
          case 6:
            good = CheckGoal(v, name, s);
            break;
          default:
            good = CheckId(v, name, s);
        }
      }
      if (good) target->assign(s);
    }
    SetBit(&present, f.number, good);
  });
  if (!ok || v->failed()) return false;
  if (strict) {
    CheckRequired(present, {{1, "conversion_id"}, {2, "ts"}, {3, "offer_id"}}, prefix, v);
    if (!v->failed() && !(present & ((1u << 4) | (1u << 5)))) {
      v->Field(RejectReason::kMissingField,
               "missing required field: click_id or user_id (at least one)");
    }
    if (!v->failed()) {
      CheckRequired(present, {{6, "goal"}, {7, "amount"}, {8, "currency"}, {9, "status"}}, prefix,
                    v);
    }
  } else {
    CheckRequired(present, {{9, "status"}}, prefix, v);
  }
  return !v->failed();
}

// ---- Commission --------------------------------------------------------------

constexpr const char* kCommissionNames[] = {"", "commission_id", "conversion_id", "offer_id",
                                            "goal", "click_id", "affiliate_id", "sub_ids",
                                            "click_ts", "conversion_ts", "amount", "currency",
                                            "status", "model", "credit_ppm", "click_count",
                                            // v1.1
                                            "basis", "rate", "base_amount", "base_currency",
                                            "override_applied", "offer_version", "produced_at"};

bool DecodeCommission(std::string_view data, Verdict* v, Commission* out) {
  *out = Commission{};
  out->credit_ppm = 0;
  out->click_count = 0;
  uint32_t present = 0;
  const bool ok = ForEachField(data, v, [&](const Field& f) {
    if (v->failed() || f.number == 0 || f.number > 22) return;
    const FieldName name{{}, kCommissionNames[f.number]};
    std::string_view s;
    switch (f.number) {
      case 8:
        ReadInt64(f, name, v, &out->click_time_ms);
        return;
      case 9:
        ReadInt64(f, name, v, &out->conversion_time_ms);
        return;
      case 10:
        ReadInt64(f, name, v, &out->payout.minor);
        return;
      case 12: {
        bool set = false;
        if (ReadStatus(f, name, v, &out->status, &set)) SetBit(&present, 12, set);
        return;
      }
      case 14:
        ReadInt32(f, name, v, &out->credit_ppm);
        return;
      case 15:
        ReadInt32(f, name, v, &out->click_count);
        return;
      case 17:
        ReadInt64(f, name, v, &out->rate);
        return;
      case 18:
        ReadInt64(f, name, v, &out->base.minor);
        return;
      case 20:
        // proto3 bool: any non-zero varint is true.
        if (Expect(f, wire::kVarint, name, v)) out->override_applied = f.varint != 0;
        return;
      case 22:
        ReadInt64(f, name, v, &out->produced_at_ms);
        return;
      default:
        break;
    }
    if (!ReadString(f, name, v, &s)) return;
    switch (f.number) {
      case 1:
        out->commission_id.assign(s);
        break;
      case 2:
        out->conversion_id.assign(s);
        break;
      case 3:
        out->offer_id.assign(s);
        break;
      case 4:
        out->goal.assign(s);
        break;
      case 5:
        out->click_id.assign(s);
        break;
      case 6:
        out->affiliate_id.assign(s);
        break;
      case 7:
        out->sub_ids.emplace_back(s);
        break;
      case 11:
        if (s.empty()) {
          out->payout.currency = Currency();
        } else {
          ParseCurrency(v, name, s, &out->payout.currency);
        }
        break;
      case 13:
        SetBit(&present, 13, false);
        if (s.empty()) break;
        if (ParseAttributionModel(s, &out->model)) {
          SetBit(&present, 13, true);
        } else {
          BadValue(v, RejectReason::kInvalidValue, name, "unknown attribution model");
        }
        break;
      case 16:
        if (!s.empty() && !ParsePayoutBasis(s, &out->basis)) {
          BadValue(v, RejectReason::kInvalidValue, name, "unknown payout basis");
        }
        break;
      case 19:
        if (!s.empty()) ParseCurrency(v, name, s, &out->base.currency);
        break;
      case 21:
        out->offer_version.assign(s);
        break;
    }
  });
  if (!ok || v->failed()) return false;
  CheckRequired(present, {{12, "status"}, {13, "model"}}, {}, v);
  return !v->failed();
}

// ---- Rejected ----------------------------------------------------------------

bool DecodeRejected(std::string_view data, Verdict* v, RejectedEvent* out) {
  out->detail.clear();
  out->source_topic.clear();
  out->source_partition = 0;
  out->source_offset = 0;
  out->original_key.clear();
  out->original_value.clear();
  out->rejected_at_ms = 0;
  out->original_key_size = 0;
  out->original_key_sha256.clear();
  out->original_key_truncated = false;
  out->original_value_size = 0;
  out->original_value_sha256.clear();
  out->original_value_truncated = false;
  out->produced_at_ms = 0;
  bool has_reason = false;
  const bool ok = ForEachField(data, v, [&](const Field& f) {
    if (v->failed()) return;
    std::string_view s;
    switch (f.number) {
      case 1: {
        const FieldName name{{}, "reason"};
        if (!ReadString(f, name, v, &s)) return;
        has_reason = false;
        if (s.empty()) return;
        if (!ParseRejectReason(s, &out->reason)) {
          BadValue(v, RejectReason::kInvalidValue, name, "unknown reject reason");
          return;
        }
        has_reason = true;
        return;
      }
      case 2:
        if (ReadString(f, {{}, "detail"}, v, &s)) out->detail.assign(s);
        return;
      case 3:
        if (ReadString(f, {{}, "source_topic"}, v, &s)) out->source_topic.assign(s);
        return;
      case 4:
        ReadInt32(f, {{}, "source_partition"}, v, &out->source_partition);
        return;
      case 5:
        ReadInt64(f, {{}, "source_offset"}, v, &out->source_offset);
        return;
      case 6:
      case 7:
        // bytes: no UTF-8 requirement.
        if (Expect(f, wire::kLengthDelimited,
                   {{}, f.number == 6 ? "original_key" : "original_value"}, v)) {
          (f.number == 6 ? out->original_key : out->original_value).assign(f.bytes);
        }
        return;
      case 8:
        ReadInt64(f, {{}, "rejected_at"}, v, &out->rejected_at_ms);
        return;
      case 15:
        ReadInt64(f, {{}, "produced_at"}, v, &out->produced_at_ms);
        return;
      case 9:
      case 12: {
        const FieldName name{{}, f.number == 9 ? "original_key_size" : "original_value_size"};
        int64_t* size = f.number == 9 ? &out->original_key_size : &out->original_value_size;
        if (ReadInt64(f, name, v, size)) CheckByteCount(v, name, *size);
        return;
      }
      case 10:
      case 13: {
        const FieldName name{{}, f.number == 10 ? "original_key_sha256" : "original_value_sha256"};
        if (ReadString(f, name, v, &s) && CheckSha256Hex(v, name, s)) {
          (f.number == 10 ? out->original_key_sha256 : out->original_value_sha256).assign(s);
        }
        return;
      }
      case 11:
      case 14: {
        const FieldName name{
            {}, f.number == 11 ? "original_key_truncated" : "original_value_truncated"};
        // proto3 bool: any non-zero varint is true.
        if (Expect(f, wire::kVarint, name, v)) {
          (f.number == 11 ? out->original_key_truncated : out->original_value_truncated) =
              f.varint != 0;
        }
        return;
      }
      default:
        return;
    }
  });
  if (!ok || v->failed()) return false;
  if (!has_reason) Missing(v, {{}, "reason"});
  return !v->failed();
}

// ---- Unattributed --------------------------------------------------------------

bool DecodeUnattributed(std::string_view data, Verdict* v, UnattributedConversion* out) {
  out->detail.clear();
  out->produced_at_ms = 0;
  bool has_conversion = false;
  bool has_reason = false;
  const bool ok = ForEachField(data, v, [&](const Field& f) {
    if (v->failed() && f.number != 1) return;
    std::string_view s;
    switch (f.number) {
      case 1:
        // Parsed even after a problem: a wire error inside it still wins.
        if (f.wire_type != wire::kLengthDelimited) {
          Expect(f, wire::kLengthDelimited, {{}, "conversion"}, v);
          return;
        }
        has_conversion = DecodeConversion(f.bytes, nullptr, "conversion.", v, &out->conversion);
        return;
      case 2: {
        const FieldName name{{}, "reason"};
        if (!ReadString(f, name, v, &s)) return;
        has_reason = false;
        if (s.empty()) return;
        if (!ParseUnattributedReason(s, &out->reason)) {
          BadValue(v, RejectReason::kInvalidValue, name, "unknown unattributed reason");
          return;
        }
        has_reason = true;
        return;
      }
      case 3:
        if (ReadString(f, {{}, "detail"}, v, &s)) out->detail.assign(s);
        return;
      case 4:
        ReadInt64(f, {{}, "produced_at"}, v, &out->produced_at_ms);
        return;
      default:
        return;
    }
  });
  if (!ok || v->failed()) return false;
  if (!has_conversion) {
    Missing(v, {{}, "conversion"});
  } else if (!has_reason) {
    Missing(v, {{}, "reason"});
  }
  return !v->failed();
}

}  // namespace

std::optional<Invalid> ProtoDecoder::Decode(std::string_view payload, Click* out) {
  Verdict v;
  DecodeClick(payload, limits_, &v, out);
  return v.Take();
}

std::optional<Invalid> ProtoDecoder::Decode(std::string_view payload, Conversion* out) {
  Verdict v;
  DecodeConversion(payload, &limits_, {}, &v, out);
  return v.Take();
}

std::optional<Invalid> ProtoDecoder::Decode(std::string_view payload, Commission* out) {
  Verdict v;
  DecodeCommission(payload, &v, out);
  return v.Take();
}

std::optional<Invalid> ProtoDecoder::Decode(std::string_view payload, RejectedEvent* out) {
  Verdict v;
  DecodeRejected(payload, &v, out);
  return v.Take();
}

std::optional<Invalid> ProtoDecoder::Decode(std::string_view payload, UnattributedConversion* out) {
  Verdict v;
  DecodeUnattributed(payload, &v, out);
  return v.Take();
}

}  // namespace tally::codec_internal
