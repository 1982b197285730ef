// Field rules of the event contracts (schemas/tally/v1/events.proto, the
// JSON contract) shared by the JSON and protobuf decoders, so that both
// formats reject the same values for the same reasons with the same details.
//
// Details name the field and sizes only, never values: rejected events are
// published and logged, and values may be personal data (IPs, user ids).
#ifndef TALLY_PROCESSOR_CODEC_INTERNAL_RULES_H_
#define TALLY_PROCESSOR_CODEC_INTERNAL_RULES_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"
#include "processor/codec/codec.h"
#include "processor/model/events.h"

namespace tally::codec_internal {

inline constexpr size_t kMaxIdBytes = 64;
inline constexpr size_t kMaxUserIdBytes = 128;
inline constexpr size_t kMaxUserAgentBytes = 1024;
inline constexpr size_t kMaxReferrerBytes = 2048;
inline constexpr size_t kMaxSubIdBytes = 128;
inline constexpr size_t kMaxGoalBytes = 32;
inline constexpr int64_t kMaxAmountMinor = 1'000'000'000'000'000;

// This abseil build keeps its own string_view type; StrCat needs it.
inline absl::string_view AsAbsl(std::string_view s) { return {s.data(), s.size()}; }

// Collects the verdict of one decode. Document-level errors (syntax, wire
// format, invalid UTF-8) end decoding and take precedence over field
// problems; among field problems the first one in document order wins, so
// that an input with exactly one defect always gets that defect's reason.
class Verdict {
 public:
  void Fatal(RejectReason reason, std::string detail) {
    fatal_ = true;
    result_ = Invalid{reason, std::move(detail)};
  }
  void Field(RejectReason reason, std::string detail) {
    if (!result_.has_value()) result_ = Invalid{reason, std::move(detail)};
  }
  bool fatal() const { return fatal_; }
  // True once anything was recorded: later fields are then only skipped.
  bool failed() const { return result_.has_value(); }
  std::optional<Invalid>& result() { return result_; }
  std::optional<Invalid> Take() { return std::move(result_); }

 private:
  bool fatal_ = false;
  std::optional<Invalid> result_;
};

// A field name as it appears in details: "conversion.amount" for the
// conversion nested in an unattributed event.
struct FieldName {
  std::string_view prefix;
  std::string_view name;
};

std::string Quoted(FieldName field);  // "field 'x'"

void TooLong(Verdict* v, FieldName field, size_t size, size_t max);
void WrongType(Verdict* v, FieldName field, std::string_view expected);
void BadValue(Verdict* v, RejectReason reason, FieldName field, std::string_view why);
void Missing(Verdict* v, FieldName field);
void NotUtf8(Verdict* v, FieldName field);

bool IsValidUtf8(std::string_view s);

// Each Check* records a field problem in *v and returns false if `value`
// breaks the rule. The length limit is checked before the character set.
// [A-Za-z0-9._:-]{1,max}
bool CheckId(Verdict* v, FieldName field, std::string_view value);
// 1..128 bytes, no control characters (< 0x20, 0x7f). UTF-8 is the caller's.
bool CheckUserId(Verdict* v, FieldName field, std::string_view value);
// [a-z0-9_]{1,32}
bool CheckGoal(Verdict* v, FieldName field, std::string_view value);
// [A-Z]{2}
bool CheckCountry(Verdict* v, FieldName field, std::string_view value);
bool CheckMaxBytes(Verdict* v, FieldName field, std::string_view value, size_t max);
bool CheckTimestamp(Verdict* v, FieldName field, int64_t ms, const DecodeLimits& limits);
// Rejected output: "" (a record from before the field existed) or 64
// lowercase hex digits.
bool CheckSha256Hex(Verdict* v, FieldName field, std::string_view value);
// Rejected output: a byte count, >= 0.
bool CheckByteCount(Verdict* v, FieldName field, int64_t count);
// 0..kMaxAmountMinor.
bool CheckAmount(Verdict* v, FieldName field, int64_t minor);
bool ParseIp(Verdict* v, FieldName field, std::string_view text, IpAddress* out);
bool ParseCurrency(Verdict* v, FieldName field, std::string_view code, Currency* out);

// Standard base64 (RFC 4648) with padding.
void AppendBase64(std::string* out, std::string_view bytes);
// Strict: length a multiple of 4, padding only at the end. Replaces *out.
bool DecodeBase64(std::string_view text, std::string* out);

}  // namespace tally::codec_internal

#endif  // TALLY_PROCESSOR_CODEC_INTERNAL_RULES_H_
