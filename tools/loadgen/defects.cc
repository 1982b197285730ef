#include "tools/loadgen/defects.h"

#include <algorithm>
#include <initializer_list>
#include <span>
#include <type_traits>

#include "absl/strings/str_cat.h"

namespace tally::loadgen {
namespace {

using Members = std::vector<JsonMember>;

constexpr std::string_view kIdAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
constexpr std::string_view kTextAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 ;/().,-_";

constexpr char kMalformed[] = "malformed_payload";
constexpr char kMissing[] = "missing_field";
constexpr char kWrongType[] = "wrong_type";
constexpr char kInvalidUtf8[] = "invalid_utf8";
constexpr char kTooLong[] = "field_too_long";
constexpr char kInvalidValue[] = "invalid_value";
constexpr char kInvalidCurrency[] = "invalid_currency";
constexpr char kTsRange[] = "timestamp_out_of_range";
constexpr char kTooLarge[] = "payload_too_large";

// Maximum payload accepted by default (DecodeLimits::max_payload_bytes).
constexpr size_t kMaxPayload = 64 * 1024;

std::string RandomText(Rng& rng, size_t n, std::string_view alphabet) {
  std::string s(n, ' ');
  for (char& c : s) c = alphabet[rng.Below(alphabet.size())];
  return s;
}

template <typename T>
T Pick(Rng& rng, std::initializer_list<T> items) {
  return *(items.begin() + rng.Below(items.size()));
}

// Timestamps outside 2000-01-01 .. 2100-01-01, the boundaries included.
int64_t BadTimestamp(Rng& rng) {
  return Pick<int64_t>(rng, {946'684'799'999, 0, 1000, -1, 4'102'444'800'001, 9'999'999'999'999});
}

std::string* Find(Members* m, std::string_view name) {
  for (auto& member : *m) {
    if (member.name == name) return &member.raw_value;
  }
  return nullptr;
}

// Replaces a member's value, or appends the member if absent.
void Set(Members* m, std::string_view name, std::string raw) {
  if (std::string* v = Find(m, name)) {
    *v = std::move(raw);
  } else {
    m->push_back({std::string(name), std::move(raw)});
  }
}

void Remove(Members* m, std::string_view name) {
  m->erase(
      std::remove_if(m->begin(), m->end(), [&](const JsonMember& x) { return x.name == name; }),
      m->end());
}

// ---- Whole-payload defects, shared by both topics (JSON) -------------------

std::string Truncated(const std::string& valid, Rng& rng) {
  // Any proper prefix of a JSON object is incomplete; every byte we write is
  // ASCII outside deliberate UTF-8 defects, so no cut splits a character.
  return valid.substr(0,
                      static_cast<size_t>(rng.Between(1, static_cast<int64_t>(valid.size()) - 1)));
}

std::string NotObject(const std::string& valid, Rng& rng) {
  switch (rng.Below(5)) {
    case 0:
      return absl::StrCat("[", valid, "]");
    case 1:
      return JsonString(valid);
    case 2:
      return "42";
    case 3:
      return "null";
    default:
      return "true";
  }
}

std::string Garbage(Rng& rng) {
  // '<' can start no JSON value; the rest is printable ASCII, hence valid
  // UTF-8, so the reason is malformed_payload and not invalid_utf8.
  std::string s = "<";
  const size_t n = static_cast<size_t>(rng.Between(10, 200));
  for (size_t i = 0; i < n; ++i) s.push_back(static_cast<char>(rng.Between(0x20, 0x7e)));
  return s;
}

std::string Trailing(const std::string& valid, Rng& rng) {
  // Never whitespace: trailing whitespace is legal JSON.
  switch (rng.Below(3)) {
    case 0:
      return valid + "}";
    case 1:
      return valid + " x";
    default:
      return valid + valid;
  }
}

std::string Oversized(Members m, Rng& rng) {
  // An unknown member makes it big: the size check comes before everything.
  const size_t pad = kMaxPayload + static_cast<size_t>(rng.Between(1, 30'000));
  m.push_back({"padding", JsonString(std::string(pad, 'x'))});
  return SerializeObject(m);
}

// Inserts bytes that are not UTF-8 into a string value.
std::string WithBadUtf8(std::string_view s, Rng& rng) {
  const std::string_view bad = Pick<std::string_view>(rng, {
                                                               "\xC3\x28",      // bad continuation
                                                               "\xFF",          // never valid
                                                               "\xED\xA0\x80",  // surrogate
                                                               "\xC0\xAF",      // overlong '/'
                                                           });
  const size_t at = static_cast<size_t>(rng.Below(s.size() + 1));
  std::string out(s.substr(0, at));
  out.append(bad);
  out.append(s.substr(at));
  return out;
}

// ---- Defect tables ----------------------------------------------------------
//
// The tables are function-local statics allocated once and never destroyed
// (no destruction-order hazards at exit).

template <typename Spec>
using MakeFn = bool (*)(const Spec&, PayloadEncoder&, Rng&, std::string*);

template <typename Spec>
struct Defect {
  const char* name;
  const char* reason;
  bool id_intact;
  MakeFn<Spec> make;
};

// Builds a JSON payload from the template's members after `edit`.
template <typename Spec, typename Edit>
bool JsonEdit(const Spec& t, Rng& rng, std::string* out, Edit edit) {
  Members m;
  if constexpr (std::is_same_v<Spec, ClickSpec>) {
    m = ClickMembers(t);
  } else {
    m = ConversionMembers(t);
  }
  edit(&m, rng);
  *out = SerializeObject(m);
  return true;
}

std::string ValidJson(const ClickSpec& t) { return SerializeObject(ClickMembers(t)); }
std::string ValidJson(const ConversionSpec& t) { return SerializeObject(ConversionMembers(t)); }
Members MembersOf(const ClickSpec& t) { return ClickMembers(t); }
Members MembersOf(const ConversionSpec& t) { return ConversionMembers(t); }

#define TALLY_JSON_EDIT(SPEC, ...)                                       \
  [](const SPEC& t, PayloadEncoder&, Rng& r, std::string* out) -> bool { \
    return JsonEdit(t, r, out, [&](Members* m, Rng& rng) {               \
      (void)t;                                                           \
      (void)rng;                                                         \
      __VA_ARGS__;                                                       \
    });                                                                  \
  }

#define TALLY_JSON_WHOLE(SPEC, ...)                                        \
  [](const SPEC& t, PayloadEncoder&, Rng& rng, std::string* out) -> bool { \
    (void)t;                                                               \
    *out = __VA_ARGS__;                                                    \
    return true;                                                           \
  }

template <typename Spec>
std::vector<Defect<Spec>> CommonJsonDefects(const char* duplicated_key) {
  // Function pointers cannot capture; the duplicated key is chosen by topic.
  std::vector<Defect<Spec>> d = {
      {"truncated", kMalformed, false, TALLY_JSON_WHOLE(Spec, Truncated(ValidJson(t), rng))},
      {"not_object", kMalformed, false, TALLY_JSON_WHOLE(Spec, NotObject(ValidJson(t), rng))},
      {"garbage", kMalformed, false, TALLY_JSON_WHOLE(Spec, Garbage(rng))},
      {"trailing_content", kMalformed, false, TALLY_JSON_WHOLE(Spec, Trailing(ValidJson(t), rng))},
      {"payload_too_large", kTooLarge, false, TALLY_JSON_WHOLE(Spec, Oversized(MembersOf(t), rng))},
      {"timestamp_out_of_range", kTsRange, true,
       TALLY_JSON_EDIT(Spec, Set(m, "ts", absl::StrCat(BadTimestamp(rng))))},
      {"wrong_type_ts_string", kWrongType, true,
       TALLY_JSON_EDIT(Spec, Set(m, "ts", absl::StrCat("\"", t.ts, "\"")))},
      {"wrong_type_ts_float", kWrongType, true,
       TALLY_JSON_EDIT(Spec, Set(m, "ts", absl::StrCat(t.ts, ".5")))},
      {"missing_ts", kMissing, true, TALLY_JSON_EDIT(Spec, Remove(m, "ts"))},
      {"null_ts", kMissing, true, TALLY_JSON_EDIT(Spec, Set(m, "ts", "null"))},
      {"missing_offer_id", kMissing, true, TALLY_JSON_EDIT(Spec, Remove(m, "offer_id"))},
      {"too_long_offer_id", kTooLong, true,
       TALLY_JSON_EDIT(Spec, Set(m, "offer_id",
                                 JsonString(RandomText(rng, rng.Between(65, 100), kIdAlphabet))))},
      {"bad_offer_id_chars", kInvalidValue, true,
       TALLY_JSON_EDIT(
           Spec, Set(m, "offer_id",
                     JsonString(Pick<std::string_view>(rng, {"off 3", "off/3", "off-3!", "é"}))))},
  };
  // Duplicate of a known key: same value again at the end.
  if (std::string_view(duplicated_key) == "offer_id") {
    d.push_back({"duplicate_key", kMalformed, false,
                 TALLY_JSON_EDIT(Spec, m->push_back({"offer_id", *Find(m, "offer_id")}))});
  } else {
    d.push_back({"duplicate_key", kMalformed, false,
                 TALLY_JSON_EDIT(Spec, m->push_back({"amount", *Find(m, "amount")}))});
  }
  return d;
}

const std::vector<Defect<ClickSpec>>& JsonClickDefects() {
  static const auto* const kDefects = [] {
    auto d = new std::vector<Defect<ClickSpec>>(CommonJsonDefects<ClickSpec>("offer_id"));
    const std::vector<Defect<ClickSpec>> more = {
        // invalid_utf8
        {"invalid_utf8_user_agent", kInvalidUtf8, false,
         TALLY_JSON_EDIT(ClickSpec,
                         Set(m, "user_agent", JsonString(WithBadUtf8(t.user_agent, rng))))},
        {"invalid_utf8_referrer", kInvalidUtf8, false,
         TALLY_JSON_EDIT(ClickSpec, Set(m, "referrer", JsonString(WithBadUtf8(t.referrer, rng))))},
        {"invalid_utf8_user_id", kInvalidUtf8, false,
         TALLY_JSON_EDIT(ClickSpec, Set(m, "user_id", JsonString(WithBadUtf8(t.user_id, rng))))},
        // missing_field
        {"missing_click_id", kMissing, false, TALLY_JSON_EDIT(ClickSpec, Remove(m, "click_id"))},
        {"missing_affiliate_id", kMissing, true,
         TALLY_JSON_EDIT(ClickSpec, Remove(m, "affiliate_id"))},
        {"missing_user_id", kMissing, true, TALLY_JSON_EDIT(ClickSpec, Remove(m, "user_id"))},
        {"missing_ip", kMissing, true, TALLY_JSON_EDIT(ClickSpec, Remove(m, "ip"))},
        {"null_ip", kMissing, true, TALLY_JSON_EDIT(ClickSpec, Set(m, "ip", "null"))},
        // wrong_type
        {"wrong_type_click_id", kWrongType, false,
         TALLY_JSON_EDIT(ClickSpec, Set(m, "click_id", "12345"))},
        {"wrong_type_ip", kWrongType, true, TALLY_JSON_EDIT(ClickSpec, Set(m, "ip", "3232235777"))},
        {"wrong_type_affiliate_id", kWrongType, true,
         TALLY_JSON_EDIT(ClickSpec, Set(m, "affiliate_id", "true"))},
        {"wrong_type_user_agent", kWrongType, true,
         TALLY_JSON_EDIT(ClickSpec, Set(m, "user_agent", "{\"name\":\"x\"}"))},
        {"wrong_type_sub_ids", kWrongType, true,
         TALLY_JSON_EDIT(ClickSpec, Set(m, "sub_ids", JsonString(t.sub_ids.front())))},
        {"wrong_type_sub_id_element", kWrongType, true,
         TALLY_JSON_EDIT(ClickSpec, Set(m, "sub_ids", "[1,2]"))},
        {"wrong_type_country", kWrongType, true,
         TALLY_JSON_EDIT(ClickSpec, Set(m, "country", "276"))},
        // field_too_long
        {"too_long_click_id", kTooLong, false,
         TALLY_JSON_EDIT(ClickSpec, Set(m, "click_id",
                                        JsonString("c-" + RandomText(rng, rng.Between(63, 198),
                                                                     kIdAlphabet))))},
        {"too_long_affiliate_id", kTooLong, true,
         TALLY_JSON_EDIT(ClickSpec,
                         Set(m, "affiliate_id", JsonString(RandomText(rng, 65, kIdAlphabet))))},
        {"too_long_user_id", kTooLong, true,
         TALLY_JSON_EDIT(
             ClickSpec,
             Set(m, "user_id", JsonString(RandomText(rng, rng.Between(129, 300), kIdAlphabet))))},
        {"too_long_user_agent", kTooLong, true,
         TALLY_JSON_EDIT(ClickSpec, Set(m, "user_agent",
                                        JsonString(RandomText(rng, Pick<size_t>(rng, {1025, 5000}),
                                                              kTextAlphabet))))},
        {"too_long_referrer", kTooLong, true,
         TALLY_JSON_EDIT(ClickSpec, Set(m, "referrer",
                                        JsonString("https://ref.example/" +
                                                   RandomText(rng, Pick<size_t>(rng, {2029, 3000}),
                                                              kIdAlphabet))))},
        {"too_many_sub_ids", kTooLong, true,
         TALLY_JSON_EDIT(ClickSpec,
                         {
                           std::string list = "[";
                           const int64_t n = rng.Between(6, 8);
                           for (int64_t i = 0; i < n; ++i) {
                             if (i > 0) list.push_back(',');
                             AppendJsonString(&list, absl::StrCat("s", i));
                           }
                           list.push_back(']');
                           Set(m, "sub_ids", list);
                         })},
        {"too_long_sub_id", kTooLong, true,
         TALLY_JSON_EDIT(
             ClickSpec,
             Set(m, "sub_ids",
                 absl::StrCat("[", JsonString(RandomText(rng, rng.Between(129, 200), kIdAlphabet)),
                              "]")))},
        // invalid_value
        {"bad_ip", kInvalidValue, true,
         TALLY_JSON_EDIT(ClickSpec,
                         Set(m, "ip",
                             JsonString(Pick<std::string_view>(
                                 rng, {"999.1.1.1", "1.2.3", "not-an-ip", "2001:db8::g",
                                       "1.2.3.4:80", "[::1]", "256.256.256.256", "::ffff::1"}))))},
        {"bad_country", kInvalidValue, true,
         TALLY_JSON_EDIT(ClickSpec,
                         Set(m, "country",
                             JsonString(Pick<std::string_view>(rng, {"de", "D1", "DEU", "1A"}))))},
        {"bad_click_id_chars", kInvalidValue, false,
         TALLY_JSON_EDIT(ClickSpec, Set(m, "click_id",
                                        JsonString(Pick<std::string_view>(
                                            rng, {"c 1", "c/1", "c#1", "c-1?"}))))},
        {"empty_click_id", kInvalidValue, false,
         TALLY_JSON_EDIT(ClickSpec, Set(m, "click_id", "\"\""))},
        {"empty_affiliate_id", kInvalidValue, true,
         TALLY_JSON_EDIT(ClickSpec, Set(m, "affiliate_id", "\"\""))},
        {"control_char_user_id", kInvalidValue, true,
         TALLY_JSON_EDIT(ClickSpec, Set(m, "user_id", JsonString(t.user_id + "\x07")))},
    };
    d->insert(d->end(), more.begin(), more.end());
    return d;
  }();
  return *kDefects;
}

const std::vector<Defect<ConversionSpec>>& JsonConversionDefects() {
  static const auto* const kDefects = [] {
    auto d = new std::vector<Defect<ConversionSpec>>(CommonJsonDefects<ConversionSpec>("amount"));
    const std::vector<Defect<ConversionSpec>> more = {
        // invalid_utf8
        {"invalid_utf8_conversion_id", kInvalidUtf8, false,
         TALLY_JSON_EDIT(ConversionSpec,
                         Set(m, "conversion_id", JsonString(WithBadUtf8(t.conversion_id, rng))))},
        {"invalid_utf8_goal", kInvalidUtf8, false,
         TALLY_JSON_EDIT(ConversionSpec, Set(m, "goal", JsonString(WithBadUtf8(t.goal, rng))))},
        // missing_field
        {"missing_conversion_id", kMissing, false,
         TALLY_JSON_EDIT(ConversionSpec, Remove(m, "conversion_id"))},
        {"missing_goal", kMissing, true, TALLY_JSON_EDIT(ConversionSpec, Remove(m, "goal"))},
        {"missing_amount", kMissing, true, TALLY_JSON_EDIT(ConversionSpec, Remove(m, "amount"))},
        {"null_amount", kMissing, true, TALLY_JSON_EDIT(ConversionSpec, Set(m, "amount", "null"))},
        {"missing_currency", kMissing, true,
         TALLY_JSON_EDIT(ConversionSpec, Remove(m, "currency"))},
        {"null_currency", kMissing, true,
         TALLY_JSON_EDIT(ConversionSpec, Set(m, "currency", "null"))},
        {"missing_status", kMissing, true, TALLY_JSON_EDIT(ConversionSpec, Remove(m, "status"))},
        {"missing_click_id_and_user_id", kMissing, true,
         TALLY_JSON_EDIT(ConversionSpec,
                         {
                           Remove(m, "click_id");
                           Remove(m, "user_id");
                         })},
        // wrong_type
        {"wrong_type_amount_float", kWrongType, true,
         TALLY_JSON_EDIT(ConversionSpec, Set(m, "amount", absl::StrCat(t.amount, ".5")))},
        {"wrong_type_amount_string", kWrongType, true,
         TALLY_JSON_EDIT(ConversionSpec, Set(m, "amount", absl::StrCat("\"", t.amount, "\"")))},
        {"wrong_type_currency", kWrongType, true,
         TALLY_JSON_EDIT(ConversionSpec, Set(m, "currency", "978"))},
        {"wrong_type_status", kWrongType, true,
         TALLY_JSON_EDIT(ConversionSpec, Set(m, "status", "1"))},
        {"wrong_type_conversion_id", kWrongType, false,
         TALLY_JSON_EDIT(ConversionSpec, Set(m, "conversion_id", "9912"))},
        {"wrong_type_goal", kWrongType, true,
         TALLY_JSON_EDIT(ConversionSpec, Set(m, "goal", "[\"sale\"]"))},
        {"wrong_type_attribution_key", kWrongType, true,
         TALLY_JSON_EDIT(ConversionSpec,
                         Set(m, t.click_id.empty() ? "user_id" : "click_id", "8812"))},
        // field_too_long
        {"too_long_conversion_id", kTooLong, false,
         TALLY_JSON_EDIT(
             ConversionSpec,
             Set(m, "conversion_id",
                 JsonString(RandomText(rng, Pick<size_t>(rng, {65, 200}), kIdAlphabet))))},
        {"too_long_attribution_key", kTooLong, true,
         TALLY_JSON_EDIT(ConversionSpec,
                         {
                           if (t.click_id.empty()) {
                             Set(m, "user_id",
                                 JsonString(RandomText(rng, rng.Between(129, 200), kIdAlphabet)));
                           } else {
                             Set(m, "click_id",
                                 JsonString(RandomText(rng, rng.Between(65, 100), kIdAlphabet)));
                           }
                         })},
        // invalid_value
        {"negative_amount", kInvalidValue, true,
         TALLY_JSON_EDIT(ConversionSpec, Set(m, "amount", absl::StrCat(-rng.Between(1, 100'000))))},
        {"amount_too_large", kInvalidValue, true,
         TALLY_JSON_EDIT(ConversionSpec,
                         Set(m, "amount",
                             std::string(Pick<std::string_view>(
                                 rng, {"1000000000000001", "9223372036854775807"}))))},
        {"bad_status", kInvalidValue, true,
         TALLY_JSON_EDIT(ConversionSpec, Set(m, "status",
                                             JsonString(Pick<std::string_view>(
                                                 rng, {"done", "APPROVED", "refunded", ""}))))},
        {"bad_goal", kInvalidValue, true,
         TALLY_JSON_EDIT(
             ConversionSpec,
             Set(m, "goal", JsonString(Pick<std::string_view>(rng, {"Sale!", "sale goal", ""}))))},
        {"empty_conversion_id", kInvalidValue, false,
         TALLY_JSON_EDIT(ConversionSpec, Set(m, "conversion_id", "\"\""))},
        {"bad_conversion_id_chars", kInvalidValue, false,
         TALLY_JSON_EDIT(ConversionSpec,
                         Set(m, "conversion_id",
                             JsonString(Pick<std::string_view>(rng, {"order 1", "order/1"}))))},
        // invalid_currency
        {"invalid_currency", kInvalidCurrency, true,
         TALLY_JSON_EDIT(ConversionSpec, Set(m, "currency",
                                             JsonString(Pick<std::string_view>(
                                                 rng, {"XYZ", "usd", "EU", "EURO", "123"}))))},
    };
    d->insert(d->end(), more.begin(), more.end());
    return d;
  }();
  return *kDefects;
}

// ---- Protobuf ---------------------------------------------------------------
//
// Only the defects that exist in protobuf: no JSON syntax, no JSON types.
// Values the model types can carry (long strings, bad countries, negative
// amounts, out-of-range times) go through the real encoder; the rest are
// wire-level edits that need no field numbers.

template <typename Spec>
bool EncodeWith(const Spec& spec, PayloadEncoder& encoder, std::string* out) {
  return encoder.Encode(spec, out);
}

template <typename Spec>
bool ProtoTruncated(const Spec& t, PayloadEncoder& encoder, Rng& rng, std::string* out) {
  std::string valid;
  if (!encoder.Encode(t, &valid)) return false;
  std::vector<pb::WireField> fields;
  if (!pb::ParseFields(valid, &fields)) return false;
  // Cut inside a length-delimited value: the declared length then runs past
  // the end, which no parser accepts (a cut between fields would merely
  // drop fields).
  std::vector<pb::WireField> cuttable;
  for (const auto& f : fields) {
    if (f.wire_type == 2 && f.end - f.payload_begin >= 2) cuttable.push_back(f);
  }
  if (cuttable.empty()) return false;
  const auto& f = cuttable[rng.Below(cuttable.size())];
  const size_t len = f.end - f.payload_begin;
  *out = valid.substr(0, f.payload_begin + static_cast<size_t>(rng.Between(1, len - 1)));
  return true;
}

template <typename Spec>
bool ProtoGarbage(const Spec&, PayloadEncoder&, Rng& rng, std::string* out) {
  // 0x07: field number 0 with wire type 7, invalid on both counts.
  *out = "\x07";
  const size_t n = static_cast<size_t>(rng.Between(10, 200));
  for (size_t i = 0; i < n; ++i) out->push_back(static_cast<char>(rng.Below(256)));
  return true;
}

template <typename Spec>
bool ProtoOversized(const Spec& t, PayloadEncoder& encoder, Rng& rng, std::string* out) {
  if (!encoder.Encode(t, out)) return false;
  // An unknown field (number 2047, far above any schema field).
  const size_t pad = kMaxPayload + static_cast<size_t>(rng.Between(1, 30'000));
  pb::AppendBytesField(out, 2047, std::string(pad, 'x'));
  return true;
}

#define TALLY_PROTO_EDIT(SPEC, ...)                                               \
  [](const SPEC& tmpl, PayloadEncoder& enc, Rng& rng, std::string* out) -> bool { \
    SPEC t = tmpl;                                                                \
    (void)rng;                                                                    \
    __VA_ARGS__;                                                                  \
    return EncodeWith(t, enc, out);                                               \
  }

template <typename Spec>
std::vector<Defect<Spec>> CommonProtoDefects() {
  return {
      {"truncated", kMalformed, false, &ProtoTruncated<Spec>},
      {"garbage", kMalformed, false, &ProtoGarbage<Spec>},
      {"payload_too_large", kTooLarge, false, &ProtoOversized<Spec>},
      {"timestamp_out_of_range", kTsRange, true, TALLY_PROTO_EDIT(Spec, t.ts = BadTimestamp(rng))},
      {"too_long_offer_id", kTooLong, true,
       TALLY_PROTO_EDIT(Spec, t.offer_id = RandomText(rng, rng.Between(65, 100), kIdAlphabet))},
      {"bad_offer_id_chars", kInvalidValue, true,
       TALLY_PROTO_EDIT(Spec, t.offer_id = Pick<std::string>(rng, {"off 3", "off/3", "off-3!"}))},
  };
}

const std::vector<Defect<ClickSpec>>& ProtoClickDefects() {
  static const auto* const kDefects = [] {
    auto d = new std::vector<Defect<ClickSpec>>(CommonProtoDefects<ClickSpec>());
    const std::vector<Defect<ClickSpec>> more = {
        {"too_long_click_id", kTooLong, false,
         TALLY_PROTO_EDIT(ClickSpec,
                          t.click_id = "c-" + RandomText(rng, rng.Between(63, 198), kIdAlphabet))},
        {"too_long_user_id", kTooLong, true,
         TALLY_PROTO_EDIT(ClickSpec,
                          t.user_id = RandomText(rng, rng.Between(129, 300), kIdAlphabet))},
        {"too_long_user_agent", kTooLong, true,
         TALLY_PROTO_EDIT(ClickSpec, t.user_agent = RandomText(rng, Pick<size_t>(rng, {1025, 5000}),
                                                               kTextAlphabet))},
        {"too_long_referrer", kTooLong, true,
         TALLY_PROTO_EDIT(
             ClickSpec, t.referrer = "https://ref.example/" + RandomText(rng, 3000, kIdAlphabet))},
        {"too_many_sub_ids", kTooLong, true,
         TALLY_PROTO_EDIT(ClickSpec,
                          {
                            t.sub_ids.clear();
                            const int64_t n = rng.Between(6, 8);
                            for (int64_t i = 0; i < n; ++i)
                              t.sub_ids.push_back(absl::StrCat("s", i));
                          })},
        {"too_long_sub_id", kTooLong, true,
         TALLY_PROTO_EDIT(ClickSpec,
                          t.sub_ids = {RandomText(rng, rng.Between(129, 200), kIdAlphabet)})},
        {"bad_country", kInvalidValue, true,
         TALLY_PROTO_EDIT(ClickSpec,
                          t.country = Pick<std::string>(rng, {"de", "D1", "DEU", "1A"}))},
        {"bad_click_id_chars", kInvalidValue, false,
         TALLY_PROTO_EDIT(ClickSpec, t.click_id = Pick<std::string>(rng, {"c 1", "c/1", "c#1"}))},
        {"control_char_user_id", kInvalidValue, true,
         TALLY_PROTO_EDIT(ClickSpec, t.user_id += "\x07")},
    };
    d->insert(d->end(), more.begin(), more.end());
    return d;
  }();
  return *kDefects;
}

const std::vector<Defect<ConversionSpec>>& ProtoConversionDefects() {
  static const auto* const kDefects = [] {
    auto d = new std::vector<Defect<ConversionSpec>>(CommonProtoDefects<ConversionSpec>());
    const std::vector<Defect<ConversionSpec>> more = {
        {"too_long_conversion_id", kTooLong, false,
         TALLY_PROTO_EDIT(ConversionSpec, t.conversion_id = RandomText(
                                              rng, Pick<size_t>(rng, {65, 200}), kIdAlphabet))},
        {"negative_amount", kInvalidValue, true,
         TALLY_PROTO_EDIT(ConversionSpec, t.amount = -rng.Between(1, 100'000))},
        {"amount_too_large", kInvalidValue, true,
         TALLY_PROTO_EDIT(ConversionSpec, t.amount = 1'000'000'000'000'001)},
        {"bad_goal", kInvalidValue, true,
         TALLY_PROTO_EDIT(ConversionSpec, t.goal = Pick<std::string>(rng, {"Sale!", "sale goal"}))},
        {"bad_conversion_id_chars", kInvalidValue, false,
         TALLY_PROTO_EDIT(ConversionSpec,
                          t.conversion_id = Pick<std::string>(rng, {"order 1", "order/1"}))},
    };
    d->insert(d->end(), more.begin(), more.end());
    return d;
  }();
  return *kDefects;
}

template <typename Spec>
std::span<const Defect<Spec>> DefectsFor(WireFormat format) {
  if constexpr (std::is_same_v<Spec, ClickSpec>) {
    return format == WireFormat::kProtobuf ? ProtoClickDefects() : JsonClickDefects();
  } else {
    return format == WireFormat::kProtobuf ? ProtoConversionDefects() : JsonConversionDefects();
  }
}

template <typename Spec>
std::vector<std::string> Names(WireFormat format) {
  std::vector<std::string> names;
  for (const auto& d : DefectsFor<Spec>(format)) names.emplace_back(d.name);
  return names;
}

template <typename Spec>
bool Apply(const Defect<Spec>& d, const Spec& tmpl, PayloadEncoder& encoder, Rng& rng,
           BadPayload* out) {
  out->value.clear();
  if (!d.make(tmpl, encoder, rng, &out->value)) return false;
  out->reason = d.reason;
  out->defect = d.name;
  out->id_intact = d.id_intact;
  return true;
}

template <typename Spec>
BadPayload MakeBad(const Spec& tmpl, PayloadEncoder& encoder, Rng& rng) {
  const auto defects = DefectsFor<Spec>(encoder.format());
  BadPayload out;
  // A defect that cannot apply to this template (never expected with a
  // complete template) falls back to garbage, which always applies.
  if (!Apply(defects[rng.Below(defects.size())], tmpl, encoder, rng, &out)) {
    for (const auto& d : defects) {
      if (std::string_view(d.name) == "garbage" && Apply(d, tmpl, encoder, rng, &out)) break;
    }
  }
  return out;
}

template <typename Spec>
bool MakeNamed(std::string_view name, const Spec& tmpl, PayloadEncoder& encoder, Rng& rng,
               BadPayload* out) {
  for (const auto& d : DefectsFor<Spec>(encoder.format())) {
    if (name == d.name) return Apply(d, tmpl, encoder, rng, out);
  }
  return false;
}

}  // namespace

std::vector<std::string> ClickDefectNames(WireFormat format) { return Names<ClickSpec>(format); }
std::vector<std::string> ConversionDefectNames(WireFormat format) {
  return Names<ConversionSpec>(format);
}

BadPayload MakeBadClick(const ClickSpec& tmpl, PayloadEncoder& encoder, Rng& rng) {
  return MakeBad(tmpl, encoder, rng);
}
BadPayload MakeBadConversion(const ConversionSpec& tmpl, PayloadEncoder& encoder, Rng& rng) {
  return MakeBad(tmpl, encoder, rng);
}

bool MakeBadClickNamed(std::string_view defect, const ClickSpec& tmpl, PayloadEncoder& encoder,
                       Rng& rng, BadPayload* out) {
  return MakeNamed(defect, tmpl, encoder, rng, out);
}
bool MakeBadConversionNamed(std::string_view defect, const ConversionSpec& tmpl,
                            PayloadEncoder& encoder, Rng& rng, BadPayload* out) {
  return MakeNamed(defect, tmpl, encoder, rng, out);
}

}  // namespace tally::loadgen
