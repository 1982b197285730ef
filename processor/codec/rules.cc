#include "processor/codec/internal/rules.h"

#include <array>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace tally::codec_internal {
namespace {

constexpr std::array<bool, 256> MakeTable(std::string_view ranges) {
  std::array<bool, 256> t{};
  for (size_t i = 0; i + 1 < ranges.size(); i += 2) {
    for (int c = static_cast<unsigned char>(ranges[i]);
         c <= static_cast<unsigned char>(ranges[i + 1]); ++c) {
      t[static_cast<size_t>(c)] = true;
    }
  }
  return t;
}

// Pairs of inclusive byte ranges.
constexpr std::array<bool, 256> kIdChars = MakeTable("AZaz09..__::--");
constexpr std::array<bool, 256> kGoalChars = MakeTable("az09__");
constexpr std::array<bool, 256> kLowerHexChars = MakeTable("09af");

bool AllIn(const std::array<bool, 256>& table, std::string_view s) {
  for (const char c : s) {
    if (!table[static_cast<unsigned char>(c)]) return false;
  }
  return true;
}

}  // namespace

std::string Quoted(FieldName field) {
  return absl::StrCat("field '", AsAbsl(field.prefix), AsAbsl(field.name), "'");
}

void TooLong(Verdict* v, FieldName field, size_t size, size_t max) {
  v->Field(RejectReason::kFieldTooLong,
           absl::StrCat(Quoted(field), ": ", size, " bytes, at most ", max));
}

void WrongType(Verdict* v, FieldName field, std::string_view expected) {
  v->Field(RejectReason::kWrongType, absl::StrCat(Quoted(field), ": expected ", AsAbsl(expected)));
}

void BadValue(Verdict* v, RejectReason reason, FieldName field, std::string_view why) {
  v->Field(reason, absl::StrCat(Quoted(field), ": ", AsAbsl(why)));
}

void Missing(Verdict* v, FieldName field) {
  v->Field(RejectReason::kMissingField,
           absl::StrCat("missing required field '", AsAbsl(field.prefix), AsAbsl(field.name), "'"));
}

void NotUtf8(Verdict* v, FieldName field) {
  v->Field(RejectReason::kInvalidUtf8, absl::StrCat(Quoted(field), ": not valid UTF-8"));
}

bool IsValidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* const end = p + s.size();
  while (p < end) {
    // ASCII runs dominate real traffic: take them 8 bytes at a time.
    if (end - p >= 8) {
      uint64_t word;
      std::memcpy(&word, p, 8);
      if ((word & 0x8080808080808080ULL) == 0) {
        p += 8;
        continue;
      }
    }
    const unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    // Table 3-7 of the Unicode standard: well-formed byte sequences, which
    // excludes overlongs, surrogates and code points above U+10FFFF.
    auto in = [](unsigned char b, unsigned char lo, unsigned char hi) {
      return b >= lo && b <= hi;
    };
    const ptrdiff_t left = end - p;
    if (in(c, 0xC2, 0xDF)) {
      if (left < 2 || !in(p[1], 0x80, 0xBF)) return false;
      p += 2;
    } else if (in(c, 0xE0, 0xEF)) {
      if (left < 3) return false;
      const unsigned char lo = c == 0xE0 ? 0xA0 : 0x80;
      const unsigned char hi = c == 0xED ? 0x9F : 0xBF;
      if (!in(p[1], lo, hi) || !in(p[2], 0x80, 0xBF)) return false;
      p += 3;
    } else if (in(c, 0xF0, 0xF4)) {
      if (left < 4) return false;
      const unsigned char lo = c == 0xF0 ? 0x90 : 0x80;
      const unsigned char hi = c == 0xF4 ? 0x8F : 0xBF;
      if (!in(p[1], lo, hi) || !in(p[2], 0x80, 0xBF) || !in(p[3], 0x80, 0xBF)) return false;
      p += 4;
    } else {
      return false;
    }
  }
  return true;
}

bool CheckId(Verdict* v, FieldName field, std::string_view value) {
  if (value.empty()) {
    BadValue(v, RejectReason::kInvalidValue, field, "must not be empty");
    return false;
  }
  if (value.size() > kMaxIdBytes) {
    TooLong(v, field, value.size(), kMaxIdBytes);
    return false;
  }
  if (!AllIn(kIdChars, value)) {
    BadValue(v, RejectReason::kInvalidValue, field, "characters outside [A-Za-z0-9._:-]");
    return false;
  }
  return true;
}

bool CheckUserId(Verdict* v, FieldName field, std::string_view value) {
  if (value.empty()) {
    BadValue(v, RejectReason::kInvalidValue, field, "must not be empty");
    return false;
  }
  if (value.size() > kMaxUserIdBytes) {
    TooLong(v, field, value.size(), kMaxUserIdBytes);
    return false;
  }
  for (const char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) {
      BadValue(v, RejectReason::kInvalidValue, field, "contains control characters");
      return false;
    }
  }
  return true;
}

bool CheckGoal(Verdict* v, FieldName field, std::string_view value) {
  if (value.empty()) {
    BadValue(v, RejectReason::kInvalidValue, field, "must not be empty");
    return false;
  }
  if (value.size() > kMaxGoalBytes) {
    TooLong(v, field, value.size(), kMaxGoalBytes);
    return false;
  }
  if (!AllIn(kGoalChars, value)) {
    BadValue(v, RejectReason::kInvalidValue, field, "characters outside [a-z0-9_]");
    return false;
  }
  return true;
}

bool CheckCountry(Verdict* v, FieldName field, std::string_view value) {
  // Not a length limit (a 3-letter code is a wrong value, not a long one).
  if (value.size() != 2 || value[0] < 'A' || value[0] > 'Z' || value[1] < 'A' || value[1] > 'Z') {
    BadValue(v, RejectReason::kInvalidValue, field, "not an ISO 3166-1 alpha-2 code in upper case");
    return false;
  }
  return true;
}

bool CheckSha256Hex(Verdict* v, FieldName field, std::string_view value) {
  const bool ok = value.empty() || (value.size() == 64 && AllIn(kLowerHexChars, value));
  if (!ok) BadValue(v, RejectReason::kInvalidValue, field, "not 64 lowercase hex digits");
  return ok;
}

bool CheckByteCount(Verdict* v, FieldName field, int64_t count) {
  if (count < 0) BadValue(v, RejectReason::kInvalidValue, field, "must not be negative");
  return count >= 0;
}

bool CheckMaxBytes(Verdict* v, FieldName field, std::string_view value, size_t max) {
  if (value.size() > max) {
    TooLong(v, field, value.size(), max);
    return false;
  }
  return true;
}

bool CheckTimestamp(Verdict* v, FieldName field, int64_t ms, const DecodeLimits& limits) {
  if (ms < limits.min_event_time_ms || ms > limits.max_event_time_ms) {
    v->Field(RejectReason::kTimestampOutOfRange,
             absl::StrCat(Quoted(field), ": outside [", limits.min_event_time_ms, ", ",
                          limits.max_event_time_ms, "] ms"));
    return false;
  }
  return true;
}

bool CheckAmount(Verdict* v, FieldName field, int64_t minor) {
  if (minor < 0 || minor > kMaxAmountMinor) {
    BadValue(v, RejectReason::kInvalidValue, field,
             absl::StrCat("outside 0..", kMaxAmountMinor, " minor units"));
    return false;
  }
  return true;
}

bool ParseIp(Verdict* v, FieldName field, std::string_view text, IpAddress* out) {
  if (!IpAddress::Parse(text, out)) {
    BadValue(v, RejectReason::kInvalidValue, field, "not an IPv4 or IPv6 address");
    return false;
  }
  return true;
}

bool ParseCurrency(Verdict* v, FieldName field, std::string_view code, Currency* out) {
  if (!Currency::Parse(code, out)) {
    BadValue(v, RejectReason::kInvalidCurrency, field, "not an active ISO 4217 currency code");
    return false;
  }
  return true;
}

namespace {
constexpr char kBase64Alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<int8_t, 256> MakeBase64Table() {
  std::array<int8_t, 256> t{};
  for (auto& x : t) x = -1;
  for (int i = 0; i < 64; ++i)
    t[static_cast<unsigned char>(kBase64Alphabet[i])] = static_cast<int8_t>(i);
  return t;
}
constexpr std::array<int8_t, 256> kBase64Values = MakeBase64Table();
}  // namespace

void AppendBase64(std::string* out, std::string_view bytes) {
  const size_t start = out->size();
  out->resize(start + (bytes.size() + 2) / 3 * 4);
  char* w = out->data() + start;
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t n = (uint32_t{p[i]} << 16) | (uint32_t{p[i + 1]} << 8) | p[i + 2];
    *w++ = kBase64Alphabet[(n >> 18) & 63];
    *w++ = kBase64Alphabet[(n >> 12) & 63];
    *w++ = kBase64Alphabet[(n >> 6) & 63];
    *w++ = kBase64Alphabet[n & 63];
  }
  const size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t n = uint32_t{p[i]} << 16;
    if (rest == 2) n |= uint32_t{p[i + 1]} << 8;
    *w++ = kBase64Alphabet[(n >> 18) & 63];
    *w++ = kBase64Alphabet[(n >> 12) & 63];
    *w++ = rest == 2 ? kBase64Alphabet[(n >> 6) & 63] : '=';
    *w++ = '=';
  }
}

bool DecodeBase64(std::string_view text, std::string* out) {
  out->clear();
  if (text.size() % 4 != 0) return false;
  out->reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    int pad = 0;
    if (last && text[i + 3] == '=') pad = text[i + 2] == '=' ? 2 : 1;
    uint32_t n = 0;
    for (int k = 0; k < 4 - pad; ++k) {
      const int8_t d = kBase64Values[static_cast<unsigned char>(text[i + static_cast<size_t>(k)])];
      if (d < 0) return false;
      n = (n << 6) | static_cast<uint32_t>(d);
    }
    n <<= 6 * pad;
    out->push_back(static_cast<char>(n >> 16));
    if (pad < 2) out->push_back(static_cast<char>((n >> 8) & 0xff));
    if (pad < 1) out->push_back(static_cast<char>(n & 0xff));
  }
  return true;
}

}  // namespace tally::codec_internal
