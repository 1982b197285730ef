// JSON decoding with simdjson On-Demand.
//
// Each object is walked once, member by member (no find_field: one pass is
// faster, sees members in document order, and is how duplicate keys are
// caught). On-Demand validates lazily: stage 1 checks UTF-8 and the string
// structure of the whole input up front, but a value is only fully checked
// when it is read. So every value is read exactly once, known or not: known
// members by their field rule, unknown ones (and every member after the
// first field problem) by SkipValue, which walks and checks without keeping
// anything. That way a syntax error anywhere wins over a field problem, as
// the validation order of the contract requires.
#include <array>
#include <cstring>
#include <initializer_list>
#include <span>
#include <utility>

#include "absl/strings/str_cat.h"
#include "processor/codec/internal/json_codec.h"
#include "processor/codec/internal/rules.h"
#include "simdjson.h"

namespace tally::codec_internal {
namespace {

namespace od = simdjson::ondemand;
using simdjson::error_code;

// Deeper nesting in an unknown member is refused rather than recursed into
// (the payload limit alone would allow thousands of levels).
constexpr int kMaxDepth = 64;

void FromSimdjson(Verdict* v, error_code ec) {
  if (ec == simdjson::UTF8_ERROR) {
    v->Fatal(RejectReason::kInvalidUtf8, "payload is not valid UTF-8");
  } else {
    v->Fatal(RejectReason::kMalformedPayload,
             absl::StrCat("malformed JSON: ", simdjson::error_message(ec)));
  }
}

bool IsHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// simdjson refuses a string both for a bad escape (a syntax error) and for an
// escaped lone surrogate such as "\ud800", which is well-formed JSON text but
// cannot become UTF-8. `token` starts at the opening quote.
bool EscapesWellFormed(std::string_view token) {
  for (size_t i = 1; i < token.size(); ++i) {
    const char c = token[i];
    if (c == '"') return true;
    if (c != '\\') continue;
    if (++i >= token.size()) return false;
    switch (token[i]) {
      case '"':
      case '\\':
      case '/':
      case 'b':
      case 'f':
      case 'n':
      case 'r':
      case 't':
        break;
      case 'u':
        if (i + 4 >= token.size()) return false;
        for (size_t k = 1; k <= 4; ++k) {
          if (!IsHex(token[i + k])) return false;
        }
        i += 4;
        break;
      default:
        return false;
    }
  }
  return false;
}

void StringError(Verdict* v, error_code ec, std::string_view token) {
  if (ec == simdjson::STRING_ERROR && EscapesWellFormed(token)) {
    v->Fatal(RejectReason::kInvalidUtf8, "a string escapes a lone UTF-16 surrogate");
  } else {
    FromSimdjson(v, ec);
  }
}

enum class Number : uint8_t { kInvalid, kInteger, kBigInteger, kFraction };

// Numbers are classified from their text: simdjson's parsers would blur the
// difference between 1e3 (not an integer), 1.0 and an integer beyond 64 bits,
// which the contract keeps apart. `token` may carry trailing whitespace.
Number ClassifyNumber(std::string_view token, int64_t* value) {
  size_t i = 0;
  const size_t n = token.size();
  const bool negative = i < n && token[i] == '-';
  if (negative) ++i;
  const size_t digits_begin = i;
  while (i < n && token[i] >= '0' && token[i] <= '9') ++i;
  const size_t digits_end = i;
  if (digits_end == digits_begin) return Number::kInvalid;
  if (token[digits_begin] == '0' && digits_end - digits_begin > 1) return Number::kInvalid;
  bool fraction = false;
  if (i < n && token[i] == '.') {
    fraction = true;
    const size_t b = ++i;
    while (i < n && token[i] >= '0' && token[i] <= '9') ++i;
    if (i == b) return Number::kInvalid;
  }
  if (i < n && (token[i] == 'e' || token[i] == 'E')) {
    fraction = true;
    ++i;
    if (i < n && (token[i] == '+' || token[i] == '-')) ++i;
    const size_t b = i;
    while (i < n && token[i] >= '0' && token[i] <= '9') ++i;
    if (i == b) return Number::kInvalid;
  }
  for (; i < n; ++i) {
    const char c = token[i];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return Number::kInvalid;
  }
  if (fraction) return Number::kFraction;
  // |value| <= 2^63 accumulated unsigned, so INT64_MIN fits too.
  uint64_t magnitude = 0;
  const uint64_t limit = negative ? uint64_t{1} << 63 : (uint64_t{1} << 63) - 1;
  for (size_t k = digits_begin; k < digits_end; ++k) {
    const auto d = static_cast<uint64_t>(token[k] - '0');
    if (magnitude > (limit - d) / 10) return Number::kBigInteger;
    magnitude = magnitude * 10 + d;
  }
  *value = negative ? static_cast<int64_t>(~magnitude + 1) : static_cast<int64_t>(magnitude);
  return Number::kInteger;
}

// The key of a member. Keys without escapes (all real ones) are read in
// place: stage 1 has already checked their UTF-8 and that they end with a
// quote, so only keys with a backslash need simdjson's unescaping.
bool ReadKey(od::field& field, Verdict* v, std::string_view* key) {
  const char* const raw = field.key().raw();
  for (const char* p = raw;; ++p) {
    if (*p == '"') {
      *key = std::string_view(raw, static_cast<size_t>(p - raw));
      return true;
    }
    if (*p == '\\') break;
  }
  if (auto ec = field.unescaped_key().get(*key); ec) {
    FromSimdjson(v, ec);
    return false;
  }
  return true;
}

// Reads and checks a value of any type, keeping nothing.
bool SkipValue(od::value& value, Verdict* v, int depth) {
  if (depth > kMaxDepth) {
    v->Fatal(RejectReason::kMalformedPayload, "malformed JSON: nested too deeply");
    return false;
  }
  od::json_type type;
  if (auto ec = value.type().get(type); ec) {
    FromSimdjson(v, ec);
    return false;
  }
  switch (type) {
    case od::json_type::object: {
      od::object object;
      if (auto ec = value.get_object().get(object); ec) {
        FromSimdjson(v, ec);
        return false;
      }
      for (auto member : object) {
        od::field field;
        std::string_view key;
        if (auto ec = std::move(member).get(field); ec) {
          FromSimdjson(v, ec);
          return false;
        }
        if (!ReadKey(field, v, &key)) return false;
        if (!SkipValue(field.value(), v, depth + 1)) return false;
      }
      return true;
    }
    case od::json_type::array: {
      od::array array;
      if (auto ec = value.get_array().get(array); ec) {
        FromSimdjson(v, ec);
        return false;
      }
      for (auto element : array) {
        od::value item;
        if (auto ec = std::move(element).get(item); ec) {
          FromSimdjson(v, ec);
          return false;
        }
        if (!SkipValue(item, v, depth + 1)) return false;
      }
      return true;
    }
    case od::json_type::string: {
      const std::string_view token = value.raw_json_token();
      std::string_view s;
      if (auto ec = value.get_string().get(s); ec) {
        StringError(v, ec, token);
        return false;
      }
      return true;
    }
    case od::json_type::number: {
      int64_t ignored;
      if (ClassifyNumber(value.raw_json_token(), &ignored) == Number::kInvalid) {
        v->Fatal(RejectReason::kMalformedPayload, "malformed JSON: invalid number");
        return false;
      }
      return true;
    }
    case od::json_type::boolean: {
      bool b;
      if (auto ec = value.get_bool().get(b); ec) {
        FromSimdjson(v, ec);
        return false;
      }
      return true;
    }
    case od::json_type::null: {
      bool is_null = false;
      if (auto ec = value.is_null().get(is_null); ec || !is_null) {
        FromSimdjson(v, ec ? ec : simdjson::TAPE_ERROR);
        return false;
      }
      return true;
    }
  }
  FromSimdjson(v, simdjson::TAPE_ERROR);
  return false;
}

enum class Got : uint8_t {
  kValue,
  kNull,
  kBad,  // a problem was recorded (see Verdict::fatal())
};

// A value of the wrong type is still read through (SkipValue) so that a
// syntax error inside it is not missed.
Got WrongTypeOf(od::value& value, FieldName f, Verdict* v, std::string_view expected) {
  if (SkipValue(value, v, 1)) WrongType(v, f, expected);
  return Got::kBad;
}

Got NullOr(od::value& value, Verdict* v) {
  bool is_null = false;
  if (auto ec = value.is_null().get(is_null); ec || !is_null) {
    FromSimdjson(v, ec ? ec : simdjson::TAPE_ERROR);
    return Got::kBad;
  }
  return Got::kNull;
}

Got ReadString(od::value& value, FieldName f, Verdict* v, std::string_view* s) {
  od::json_type type;
  if (auto ec = value.type().get(type); ec) {
    FromSimdjson(v, ec);
    return Got::kBad;
  }
  if (type == od::json_type::string) {
    const std::string_view token = value.raw_json_token();
    if (auto ec = value.get_string().get(*s); ec) {
      StringError(v, ec, token);
      return Got::kBad;
    }
    return Got::kValue;
  }
  if (type == od::json_type::null) return NullOr(value, v);
  return WrongTypeOf(value, f, v, "a string");
}

// kValue with *too_big set for an integer outside int64.
Got ReadInt(od::value& value, FieldName f, Verdict* v, int64_t* n, bool* too_big) {
  od::json_type type;
  if (auto ec = value.type().get(type); ec) {
    FromSimdjson(v, ec);
    return Got::kBad;
  }
  if (type == od::json_type::number) {
    *too_big = false;
    switch (ClassifyNumber(value.raw_json_token(), n)) {
      case Number::kInteger:
        return Got::kValue;
      case Number::kBigInteger:
        *too_big = true;
        return Got::kValue;
      case Number::kFraction:
        WrongType(v, f, "an integer");
        return Got::kBad;
      case Number::kInvalid:
        v->Fatal(RejectReason::kMalformedPayload, "malformed JSON: invalid number");
        return Got::kBad;
    }
  }
  if (type == od::json_type::null) return NullOr(value, v);
  return WrongTypeOf(value, f, v, "an integer");
}

// Output types: any int32.
Got ReadInt32(od::value& value, FieldName f, Verdict* v, int32_t* out) {
  int64_t n = 0;
  bool too_big = false;
  const Got got = ReadInt(value, f, v, &n, &too_big);
  if (got != Got::kValue) return got;
  if (too_big || n < INT32_MIN || n > INT32_MAX) {
    BadValue(v, RejectReason::kInvalidValue, f, "outside the int32 range");
    return Got::kBad;
  }
  *out = static_cast<int32_t>(n);
  return Got::kValue;
}

Got ReadInt64(od::value& value, FieldName f, Verdict* v, int64_t* out) {
  bool too_big = false;
  const Got got = ReadInt(value, f, v, out, &too_big);
  if (got != Got::kValue) return got;
  if (too_big) {
    BadValue(v, RejectReason::kInvalidValue, f, "outside the int64 range");
    return Got::kBad;
  }
  return Got::kValue;
}

Got ReadBool(od::value& value, FieldName f, Verdict* v, bool* out) {
  od::json_type type;
  if (auto ec = value.type().get(type); ec) {
    FromSimdjson(v, ec);
    return Got::kBad;
  }
  if (type == od::json_type::boolean) {
    if (auto ec = value.get_bool().get(*out); ec) {
      FromSimdjson(v, ec);
      return Got::kBad;
    }
    return Got::kValue;
  }
  if (type == od::json_type::null) return NullOr(value, v);
  return WrongTypeOf(value, f, v, "a boolean");
}

// Fills *list from a JSON array of strings, reusing its elements' buffers.
// `max_entries` / `max_bytes` of 0 mean unlimited.
Got ReadStringList(od::value& value, FieldName f, Verdict* v, size_t max_entries, size_t max_bytes,
                   std::vector<std::string>* list) {
  od::json_type type;
  if (auto ec = value.type().get(type); ec) {
    FromSimdjson(v, ec);
    return Got::kBad;
  }
  if (type == od::json_type::null) return NullOr(value, v);
  if (type != od::json_type::array) return WrongTypeOf(value, f, v, "an array of strings");
  od::array array;
  if (auto ec = value.get_array().get(array); ec) {
    FromSimdjson(v, ec);
    return Got::kBad;
  }
  size_t count = 0;
  bool problem = false;  // keep reading (and checking syntax) to the end
  for (auto element : array) {
    od::value item;
    if (auto ec = std::move(element).get(item); ec) {
      FromSimdjson(v, ec);
      return Got::kBad;
    }
    ++count;
    if (problem || (max_entries != 0 && count > max_entries)) {
      problem = true;
      if (!SkipValue(item, v, 1)) return Got::kBad;
      continue;
    }
    std::string_view s;
    const Got got = ReadString(item, f, v, &s);
    if (got == Got::kBad && v->fatal()) return Got::kBad;
    if (got == Got::kNull) WrongType(v, f, "an array of strings");
    if (got != Got::kValue || (max_bytes != 0 && !CheckMaxBytes(v, f, s, max_bytes))) {
      problem = true;
      continue;
    }
    if (count <= list->size()) {
      (*list)[count - 1].assign(s);
    } else {
      list->emplace_back(s);
    }
  }
  if (!problem) {
    list->resize(count);
    return Got::kValue;
  }
  if (max_entries != 0 && count > max_entries && !v->failed()) {
    v->Field(RejectReason::kFieldTooLong,
             absl::StrCat(Quoted(f), ": ", count, " entries, at most ", max_entries));
  }
  return Got::kBad;
}

// Members usually arrive in contract order, so the one after the previous
// match is tried first.
template <size_t N>
int Lookup(const std::array<std::string_view, N>& names, std::string_view key, int hint) {
  if (hint >= 0 && hint < static_cast<int>(N) && names[static_cast<size_t>(hint)] == key) {
    return hint;
  }
  for (size_t i = 0; i < N; ++i) {
    if (names[i].size() == key.size() && names[i] == key) return static_cast<int>(i);
  }
  return -1;
}

// Walks an object's members once. `on_known(index, value)` handles a known,
// first-seen member while no problem is recorded; it returns false only on a
// fatal error. Returns false on a fatal error (the verdict says which).
template <size_t N, typename OnKnown>
bool ForEachMember(od::object& object, const std::array<std::string_view, N>& names, Verdict* v,
                   OnKnown&& on_known) {
  static_assert(N <= 32);
  uint32_t seen = 0;
  int hint = 0;
  for (auto member : object) {
    od::field field;
    std::string_view key;
    if (auto ec = std::move(member).get(field); ec) {
      FromSimdjson(v, ec);
      return false;
    }
    if (!ReadKey(field, v, &key)) return false;
    const int index = Lookup(names, key, hint);
    if (index >= 0) hint = index + 1;
    if (index >= 0) {
      const uint32_t bit = uint32_t{1} << index;
      if (seen & bit) {
        v->Fatal(RejectReason::kMalformedPayload,
                 absl::StrCat("malformed JSON: duplicate key '",
                              AsAbsl(names[static_cast<size_t>(index)]), "'"));
        return false;
      }
      seen |= bit;
      if (!v->failed()) {
        if (!on_known(index, field.value())) return false;
        continue;
      }
    }
    if (!SkipValue(field.value(), v, 1)) return false;
  }
  return true;
}

// ---- Click -----------------------------------------------------------------

enum ClickField {
  kClickId,
  kClickTs,
  kClickAffiliateId,
  kClickOfferId,
  kClickUserId,
  kClickIp,
  kClickUserAgent,
  kClickReferrer,
  kClickSubIds,
  kClickCountry,
};
constexpr std::array<std::string_view, 10> kClickNames = {
    "click_id", "ts",         "affiliate_id", "offer_id", "user_id",
    "ip",       "user_agent", "referrer",     "sub_ids",  "country"};

// Reports the first absent required field (in schema order).
void CheckRequired(std::span<const std::string_view> names, uint32_t present,
                   std::initializer_list<int> required, std::string_view prefix, Verdict* v) {
  for (const int i : required) {
    if (!(present & (uint32_t{1} << i))) {
      Missing(v, FieldName{prefix, names[static_cast<size_t>(i)]});
      return;
    }
  }
}

bool DecodeClick(od::object& object, const DecodeLimits& limits, Verdict* v, Click* out) {
  out->user_agent.clear();
  out->referrer.clear();
  out->country.clear();
  // sub_ids is not cleared up front: ReadStringList assigns into the
  // existing elements, which keeps their buffers from the previous click.
  uint32_t present = 0;
  const bool ok = ForEachMember(object, kClickNames, v, [&](int i, od::value& value) {
    const FieldName f{{}, kClickNames[static_cast<size_t>(i)]};
    std::string_view s;
    Got got;
    if (i == kClickTs) {
      int64_t ts = 0;
      bool too_big = false;
      got = ReadInt(value, f, v, &ts, &too_big);
      if (got == Got::kValue) {
        if (too_big) {
          CheckTimestamp(v, f, INT64_MAX, limits);
        } else if (CheckTimestamp(v, f, ts, limits)) {
          out->event_time_ms = ts;
          present |= 1u << i;
        }
      }
    } else if (i == kClickSubIds) {
      got = ReadStringList(value, f, v, kMaxSubIds, kMaxSubIdBytes, &out->sub_ids);
      if (got == Got::kValue) present |= 1u << i;
    } else {
      got = ReadString(value, f, v, &s);
      if (got == Got::kValue) {
        bool good = true;
        std::string* target = nullptr;
        switch (i) {
          case kClickId:
            good = CheckId(v, f, s);
            target = &out->click_id;
            break;
          case kClickAffiliateId:
            good = CheckId(v, f, s);
            target = &out->affiliate_id;
            break;
          case kClickOfferId:
            good = CheckId(v, f, s);
            target = &out->offer_id;
            break;
          case kClickUserId:
            good = CheckUserId(v, f, s);
            target = &out->user_id;
            break;
          case kClickIp:
            good = ParseIp(v, f, s, &out->ip);
            break;
          case kClickUserAgent:
            good = CheckMaxBytes(v, f, s, kMaxUserAgentBytes);
            target = &out->user_agent;
            break;
          case kClickReferrer:
            good = CheckMaxBytes(v, f, s, kMaxReferrerBytes);
            target = &out->referrer;
            break;
          case kClickCountry:
            // An empty optional string is the same as an absent one (as in
            // protobuf, where the two cannot be told apart).
            good = s.empty() || CheckCountry(v, f, s);
            target = &out->country;
            break;
        }
        if (good) {
          if (target != nullptr) target->assign(s);
          present |= 1u << i;
        }
      }
    }
    return !v->fatal();
  });
  if (!ok || v->failed()) return false;
  if (!(present & (1u << kClickSubIds))) out->sub_ids.clear();
  CheckRequired(kClickNames, present,
                {kClickId, kClickTs, kClickAffiliateId, kClickOfferId, kClickUserId, kClickIp}, {},
                v);
  return !v->failed();
}

// ---- Conversion --------------------------------------------------------------

enum ConversionField {
  kConvId,
  kConvTs,
  kConvOfferId,
  kConvClickId,
  kConvUserId,
  kConvGoal,
  kConvAmount,
  kConvCurrency,
  kConvStatus,
};
constexpr std::array<std::string_view, 9> kConversionNames = {
    "conversion_id", "ts",     "offer_id", "click_id", "user_id",
    "goal",          "amount", "currency", "status"};

// `limits` null: lenient (an output type's nested conversion), where only
// types, the currency and the status are checked.
bool DecodeConversion(od::object& object, const DecodeLimits* limits, std::string_view prefix,
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
  }
  uint32_t present = 0;
  const bool ok = ForEachMember(object, kConversionNames, v, [&](int i, od::value& value) {
    const FieldName f{prefix, kConversionNames[static_cast<size_t>(i)]};
    std::string_view s;
    if (i == kConvTs || i == kConvAmount) {
      int64_t n = 0;
      bool too_big = false;
      if (ReadInt(value, f, v, &n, &too_big) != Got::kValue) return !v->fatal();
      if (i == kConvTs) {
        if (too_big) {
          strict ? CheckTimestamp(v, f, INT64_MAX, *limits)
                 : (BadValue(v, RejectReason::kInvalidValue, f, "outside the int64 range"), false);
          return !v->fatal();
        }
        if (strict && !CheckTimestamp(v, f, n, *limits)) return true;
        out->event_time_ms = n;
      } else {
        if (too_big) {
          BadValue(v, RejectReason::kInvalidValue, f, "outside the int64 range");
          return true;
        }
        if (strict && !CheckAmount(v, f, n)) return true;
        out->amount.minor = n;
      }
      present |= 1u << i;
      return true;
    }
    if (ReadString(value, f, v, &s) != Got::kValue) return !v->fatal();
    bool good = true;
    std::string* target = nullptr;
    switch (i) {
      case kConvId:
        good = !strict || CheckId(v, f, s);
        target = &out->conversion_id;
        break;
      case kConvOfferId:
        good = !strict || CheckId(v, f, s);
        target = &out->offer_id;
        break;
      case kConvClickId:
        if (s.empty()) return true;  // optional: "" is absent
        good = !strict || CheckId(v, f, s);
        target = &out->click_id;
        break;
      case kConvUserId:
        if (s.empty()) return true;
        good = !strict || CheckUserId(v, f, s);
        target = &out->user_id;
        break;
      case kConvGoal:
        good = !strict || CheckGoal(v, f, s);
        target = &out->goal;
        break;
      case kConvCurrency:
        if (!strict && s.empty()) {
          out->amount.currency = Currency();
          return true;
        }
        good = ParseCurrency(v, f, s, &out->amount.currency);
        break;
      case kConvStatus:
        good = ParseConversionStatus(s, &out->status);
        if (!good) {
          BadValue(v, RejectReason::kInvalidValue, f,
                   "not one of \"pending\", \"approved\", \"reversed\"");
        }
        break;
    }
    if (good) {
      if (target != nullptr) target->assign(s);
      present |= 1u << i;
    }
    return true;
  });
  if (!ok || v->failed()) return false;
  if (strict) {
    CheckRequired(kConversionNames, present, {kConvId, kConvTs, kConvOfferId}, prefix, v);
    if (!v->failed() && !(present & ((1u << kConvClickId) | (1u << kConvUserId)))) {
      v->Field(RejectReason::kMissingField,
               absl::StrCat("missing required field: click_id or user_id (at least one)"));
    }
    if (!v->failed()) {
      CheckRequired(kConversionNames, present, {kConvGoal, kConvAmount, kConvCurrency, kConvStatus},
                    prefix, v);
    }
  } else {
    CheckRequired(kConversionNames, present, {kConvStatus}, prefix, v);
  }
  return !v->failed();
}

// ---- Commission --------------------------------------------------------------

enum CommissionField {
  kComId,
  kComConversionId,
  kComOfferId,
  kComGoal,
  kComClickId,
  kComAffiliateId,
  kComSubIds,
  kComClickTs,
  kComConversionTs,
  kComAmount,
  kComCurrency,
  kComStatus,
  kComModel,
  kComCreditPpm,
  kComClickCount,
  kComBasis,  // v1.1 from here on
  kComRate,
  kComBaseAmount,
  kComBaseCurrency,
  kComOverrideApplied,
  kComOfferVersion,
  kComProducedAt,
};
constexpr std::array<std::string_view, 22> kCommissionNames = {
    "commission_id", "conversion_id",    "offer_id",      "goal",       "click_id", "affiliate_id",
    "sub_ids",       "click_ts",         "conversion_ts", "amount",     "currency", "status",
    "model",         "credit_ppm",       "click_count",   "basis",      "rate",     "base_amount",
    "base_currency", "override_applied", "offer_version", "produced_at"};

bool DecodeCommission(od::object& object, Verdict* v, Commission* out) {
  *out = Commission{};
  out->credit_ppm = 0;
  out->click_count = 0;
  uint32_t present = 0;
  const bool ok = ForEachMember(object, kCommissionNames, v, [&](int i, od::value& value) {
    const FieldName f{{}, kCommissionNames[static_cast<size_t>(i)]};
    Got got = Got::kBad;
    std::string_view s;
    switch (i) {
      case kComSubIds:
        got = ReadStringList(value, f, v, 0, 0, &out->sub_ids);
        break;
      case kComClickTs:
        got = ReadInt64(value, f, v, &out->click_time_ms);
        break;
      case kComConversionTs:
        got = ReadInt64(value, f, v, &out->conversion_time_ms);
        break;
      case kComAmount:
        got = ReadInt64(value, f, v, &out->payout.minor);
        break;
      case kComCreditPpm:
        got = ReadInt32(value, f, v, &out->credit_ppm);
        break;
      case kComClickCount:
        got = ReadInt32(value, f, v, &out->click_count);
        break;
      case kComRate:
        got = ReadInt64(value, f, v, &out->rate);
        break;
      case kComBaseAmount:
        got = ReadInt64(value, f, v, &out->base.minor);
        break;
      case kComOverrideApplied:
        got = ReadBool(value, f, v, &out->override_applied);
        break;
      case kComProducedAt:
        got = ReadInt64(value, f, v, &out->produced_at_ms);
        break;
      default: {
        got = ReadString(value, f, v, &s);
        if (got != Got::kValue) break;
        switch (i) {
          case kComId:
            out->commission_id.assign(s);
            break;
          case kComConversionId:
            out->conversion_id.assign(s);
            break;
          case kComOfferId:
            out->offer_id.assign(s);
            break;
          case kComGoal:
            out->goal.assign(s);
            break;
          case kComClickId:
            out->click_id.assign(s);
            break;
          case kComAffiliateId:
            out->affiliate_id.assign(s);
            break;
          case kComCurrency:
            if (!s.empty() && !ParseCurrency(v, f, s, &out->payout.currency)) got = Got::kBad;
            break;
          case kComStatus:
            if (!ParseConversionStatus(s, &out->status)) {
              BadValue(v, RejectReason::kInvalidValue, f, "unknown conversion status");
              got = Got::kBad;
            }
            break;
          case kComModel:
            if (!ParseAttributionModel(s, &out->model)) {
              BadValue(v, RejectReason::kInvalidValue, f, "unknown attribution model");
              got = Got::kBad;
            }
            break;
          case kComBasis:
            if (!ParsePayoutBasis(s, &out->basis)) {
              BadValue(v, RejectReason::kInvalidValue, f, "unknown payout basis");
              got = Got::kBad;
            }
            break;
          case kComBaseCurrency:
            if (!s.empty() && !ParseCurrency(v, f, s, &out->base.currency)) got = Got::kBad;
            break;
          case kComOfferVersion:
            out->offer_version.assign(s);
            break;
        }
      }
    }
    if (got == Got::kValue) present |= 1u << i;
    return !v->fatal();
  });
  if (!ok || v->failed()) return false;
  CheckRequired(kCommissionNames, present, {kComStatus, kComModel}, {}, v);
  return !v->failed();
}

// ---- Rejected ----------------------------------------------------------------

enum RejectedField {
  kRejReason,
  kRejDetail,
  kRejTopic,
  kRejPartition,
  kRejOffset,
  kRejKey,
  kRejValue,
  kRejAt,
  kRejKeySize,
  kRejKeySha256,
  kRejKeyTruncated,
  kRejValueSize,
  kRejValueSha256,
  kRejValueTruncated,
  kRejProducedAt,  // v1.1
};
constexpr std::array<std::string_view, 15> kRejectedNames = {"reason",
                                                             "detail",
                                                             "source_topic",
                                                             "source_partition",
                                                             "source_offset",
                                                             "original_key_b64",
                                                             "original_value_b64",
                                                             "rejected_at",
                                                             "original_key_size",
                                                             "original_key_sha256",
                                                             "original_key_truncated",
                                                             "original_value_size",
                                                             "original_value_sha256",
                                                             "original_value_truncated",
                                                             "produced_at"};

bool DecodeRejected(od::object& object, Verdict* v, RejectedEvent* out) {
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
  uint32_t present = 0;
  const bool ok = ForEachMember(object, kRejectedNames, v, [&](int i, od::value& value) {
    const FieldName f{{}, kRejectedNames[static_cast<size_t>(i)]};
    Got got = Got::kBad;
    std::string_view s;
    switch (i) {
      case kRejPartition:
        got = ReadInt32(value, f, v, &out->source_partition);
        break;
      case kRejOffset:
        got = ReadInt64(value, f, v, &out->source_offset);
        break;
      case kRejAt:
        got = ReadInt64(value, f, v, &out->rejected_at_ms);
        break;
      case kRejProducedAt:
        got = ReadInt64(value, f, v, &out->produced_at_ms);
        break;
      case kRejKeySize:
      case kRejValueSize: {
        int64_t* size = i == kRejKeySize ? &out->original_key_size : &out->original_value_size;
        got = ReadInt64(value, f, v, size);
        if (got == Got::kValue && !CheckByteCount(v, f, *size)) got = Got::kBad;
        break;
      }
      case kRejKeyTruncated:
        got = ReadBool(value, f, v, &out->original_key_truncated);
        break;
      case kRejValueTruncated:
        got = ReadBool(value, f, v, &out->original_value_truncated);
        break;
      default:
        got = ReadString(value, f, v, &s);
        if (got != Got::kValue) break;
        switch (i) {
          case kRejReason:
            if (!ParseRejectReason(s, &out->reason)) {
              BadValue(v, RejectReason::kInvalidValue, f, "unknown reject reason");
              got = Got::kBad;
            }
            break;
          case kRejDetail:
            out->detail.assign(s);
            break;
          case kRejTopic:
            out->source_topic.assign(s);
            break;
          case kRejKey:
          case kRejValue:
            if (!DecodeBase64(s, i == kRejKey ? &out->original_key : &out->original_value)) {
              BadValue(v, RejectReason::kInvalidValue, f, "not base64 with padding");
              got = Got::kBad;
            }
            break;
          case kRejKeySha256:
          case kRejValueSha256:
            if (!CheckSha256Hex(v, f, s)) {
              got = Got::kBad;
            } else {
              (i == kRejKeySha256 ? out->original_key_sha256 : out->original_value_sha256)
                  .assign(s);
            }
            break;
        }
    }
    if (got == Got::kValue) present |= 1u << i;
    return !v->fatal();
  });
  if (!ok || v->failed()) return false;
  CheckRequired(kRejectedNames, present, {kRejReason}, {}, v);
  return !v->failed();
}

// ---- Unattributed --------------------------------------------------------------

constexpr std::array<std::string_view, 4> kUnattributedNames = {"conversion", "reason", "detail",
                                                                "produced_at"};

bool DecodeUnattributed(od::object& object, Verdict* v, UnattributedConversion* out) {
  out->detail.clear();
  out->produced_at_ms = 0;
  uint32_t present = 0;
  const bool ok = ForEachMember(object, kUnattributedNames, v, [&](int i, od::value& value) {
    const FieldName f{{}, kUnattributedNames[static_cast<size_t>(i)]};
    if (i == 0) {
      od::json_type type;
      if (auto ec = value.type().get(type); ec) {
        FromSimdjson(v, ec);
        return false;
      }
      if (type == od::json_type::null) return NullOr(value, v) == Got::kNull;
      if (type != od::json_type::object) {
        WrongTypeOf(value, f, v, "an object");
        return !v->fatal();
      }
      od::object nested;
      if (auto ec = value.get_object().get(nested); ec) {
        FromSimdjson(v, ec);
        return false;
      }
      if (DecodeConversion(nested, nullptr, "conversion.", v, &out->conversion)) {
        present |= 1u;
      }
      return !v->fatal();
    }
    if (i == 3) {
      if (ReadInt64(value, f, v, &out->produced_at_ms) == Got::kValue) present |= 1u << i;
      return !v->fatal();
    }
    std::string_view s;
    if (ReadString(value, f, v, &s) != Got::kValue) return !v->fatal();
    if (i == 1) {
      if (!ParseUnattributedReason(s, &out->reason)) {
        BadValue(v, RejectReason::kInvalidValue, f, "unknown unattributed reason");
        return true;
      }
    } else {
      out->detail.assign(s);
    }
    present |= 1u << i;
    return true;
  });
  if (!ok || v->failed()) return false;
  CheckRequired(kUnattributedNames, present, {0, 1}, {}, v);
  return !v->failed();
}

}  // namespace

struct JsonDecoder::State {
  explicit State(const DecodeLimits& l) : limits(l) {}

  // Copies the payload into the reused, padded buffer and walks the root
  // object with `decode(object, verdict)`.
  template <typename Decode>
  std::optional<Invalid> Run(std::string_view payload, Decode&& decode) {
    const size_t needed = payload.size() + simdjson::SIMDJSON_PADDING;
    if (capacity < needed) {
      // Grow geometrically: a few sizes in, no more allocations.
      capacity = std::max(needed, capacity * 2);
      buffer.reset(new char[capacity]);
    }
    std::memcpy(buffer.get(), payload.data(), payload.size());
    // The padding must not hold a previous payload's bytes: a number cut off
    // at the end of the input would read on into them.
    std::memset(buffer.get() + payload.size(), 0, simdjson::SIMDJSON_PADDING);

    Verdict v;
    od::document doc;
    if (auto ec = parser.iterate(buffer.get(), payload.size(), capacity).get(doc); ec) {
      FromSimdjson(&v, ec);
      return v.Take();
    }
    od::object object;
    if (auto ec = doc.get_object().get(object); ec) {
      if (ec == simdjson::INCORRECT_TYPE) {
        v.Fatal(RejectReason::kMalformedPayload, "malformed JSON: top level is not an object");
      } else {
        FromSimdjson(&v, ec);
      }
      return v.Take();
    }
    decode(object, &v);
    if (v.fatal()) return v.Take();
    // Anything after the object (another value, a stray brace) is a syntax
    // error and wins over the field problem, if any.
    const char* location = nullptr;
    if (auto ec = doc.current_location().get(location); ec != simdjson::OUT_OF_BOUNDS) {
      v.Fatal(RejectReason::kMalformedPayload, "malformed JSON: content after the object");
    }
    return v.Take();
  }

  DecodeLimits limits;
  od::parser parser;
  std::unique_ptr<char[]> buffer;
  size_t capacity = 0;
};

JsonDecoder::JsonDecoder(const DecodeLimits& limits) : state_(std::make_unique<State>(limits)) {}
JsonDecoder::~JsonDecoder() = default;

std::optional<Invalid> JsonDecoder::Decode(std::string_view payload, Click* out) {
  return state_->Run(payload,
                     [&](od::object& o, Verdict* v) { DecodeClick(o, state_->limits, v, out); });
}

std::optional<Invalid> JsonDecoder::Decode(std::string_view payload, Conversion* out) {
  return state_->Run(payload, [&](od::object& o, Verdict* v) {
    DecodeConversion(o, &state_->limits, {}, v, out);
  });
}

std::optional<Invalid> JsonDecoder::Decode(std::string_view payload, Commission* out) {
  return state_->Run(payload, [&](od::object& o, Verdict* v) { DecodeCommission(o, v, out); });
}

std::optional<Invalid> JsonDecoder::Decode(std::string_view payload, RejectedEvent* out) {
  return state_->Run(payload, [&](od::object& o, Verdict* v) { DecodeRejected(o, v, out); });
}

std::optional<Invalid> JsonDecoder::Decode(std::string_view payload, UnattributedConversion* out) {
  return state_->Run(payload, [&](od::object& o, Verdict* v) { DecodeUnattributed(o, v, out); });
}

}  // namespace tally::codec_internal
