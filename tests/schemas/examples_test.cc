// The contract of schemas/ against the real codec:
//  - every schemas/examples/<type>*.json decodes (JSON) as its type, and
//    re-encoding (JSON and protobuf) decodes again to the same event;
//  - every schemas/examples/invalid/<reason>__<type>_<what>.json is rejected
//    with exactly <reason>;
//  - every schemas/json/v1/*.schema.json is JSON whose "properties" are
//    exactly the members the encoder writes for a fully populated event, whose
//    "required" entries are properties, and whose enums equal the codec's
//    wire names (so schemas and codec cannot drift apart).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "processor/codec/codec.h"
#include "processor/model/events.h"
#include "processor/model/ip_address.h"
#include "processor/model/money.h"
#include "processor/model/reject_reason.h"
#include "simdjson.h"

#ifndef TALLY_SOURCE_DIR
#error "TALLY_SOURCE_DIR must be defined (tests/schemas/CMakeLists.txt)"
#endif

namespace tally {
namespace {

namespace fs = std::filesystem;
using StringSet = std::set<std::string, std::less<>>;

const fs::path& SchemasDir() {
  static const fs::path kDir = fs::path(TALLY_SOURCE_DIR) / "schemas";
  return kDir;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Regular *.json files directly in `dir`, sorted by name.
std::vector<fs::path> JsonFilesIn(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file() && entry.path().extension() == ".json") {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string Describe(const std::optional<Invalid>& invalid) {
  if (!invalid.has_value()) return "ok";
  return absl::StrCat(std::string(RejectReasonName(invalid->reason)), " (", invalid->detail, ")");
}

// ---- JSON helpers (simdjson DOM) -------------------------------------------

// A parsed document that owns its parser (DOM elements point into it).
struct Dom {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  simdjson::error_code error = simdjson::SUCCESS;

  explicit Dom(std::string_view json) {
    simdjson::padded_string padded(json);
    error = parser.parse(padded).get(root);
  }
};

// Member names of a JSON object (empty set if `e` is not an object).
StringSet KeysOf(simdjson::dom::element e) {
  StringSet keys;
  simdjson::dom::object object;
  if (e.get_object().get(object) != simdjson::SUCCESS) return keys;
  for (auto field : object) keys.emplace(field.key);
  return keys;
}

std::vector<std::string> StringsOf(simdjson::dom::element e) {
  std::vector<std::string> out;
  simdjson::dom::array array;
  if (e.get_array().get(array) != simdjson::SUCCESS) return out;
  for (simdjson::dom::element item : array) {
    std::string_view s;
    if (item.get_string().get(s) == simdjson::SUCCESS) out.emplace_back(s);
  }
  return out;
}

// ---- A schema file, reduced to what the tests compare ---------------------

struct Schema {
  bool parsed = false;
  std::string id;
  std::string dialect;
  std::string type;
  bool additional_properties = false;
  StringSet properties;
  StringSet properties_without_description;
  StringSet properties_without_type;
  std::vector<std::string> required;
  std::vector<std::string> any_of_required;  // conversion: click_id / user_id
  // properties.<name>.enum, for every property that has one.
  std::vector<std::pair<std::string, std::vector<std::string>>> enums;
};

Schema LoadSchema(std::string_view name) {
  Schema s;
  const std::string text =
      ReadFile(SchemasDir() / "json" / "v1" / (std::string(name) + ".schema.json"));
  Dom dom(text);
  if (dom.error != simdjson::SUCCESS) return s;
  s.parsed = true;
  std::string_view sv;
  if (dom.root["$id"].get_string().get(sv) == simdjson::SUCCESS) s.id = sv;
  if (dom.root["$schema"].get_string().get(sv) == simdjson::SUCCESS) s.dialect = sv;
  if (dom.root["type"].get_string().get(sv) == simdjson::SUCCESS) s.type = sv;
  bool additional = false;
  if (dom.root["additionalProperties"].get_bool().get(additional) == simdjson::SUCCESS) {
    s.additional_properties = additional;
  }
  simdjson::dom::object properties;
  if (dom.root["properties"].get_object().get(properties) == simdjson::SUCCESS) {
    for (auto field : properties) {
      const std::string key(field.key);
      s.properties.insert(key);
      simdjson::dom::element unused;
      if (field.value["description"].get(unused) != simdjson::SUCCESS) {
        s.properties_without_description.insert(key);
      }
      if (field.value["type"].get(unused) != simdjson::SUCCESS &&
          field.value["$ref"].get(unused) != simdjson::SUCCESS) {
        s.properties_without_type.insert(key);
      }
      simdjson::dom::element values;
      if (field.value["enum"].get(values) == simdjson::SUCCESS) {
        s.enums.emplace_back(key, StringsOf(values));
      }
    }
  }
  simdjson::dom::element required;
  if (dom.root["required"].get(required) == simdjson::SUCCESS) s.required = StringsOf(required);
  simdjson::dom::array any_of;
  if (dom.root["anyOf"].get_array().get(any_of) == simdjson::SUCCESS) {
    for (simdjson::dom::element alternative : any_of) {
      simdjson::dom::element req;
      if (alternative["required"].get(req) == simdjson::SUCCESS) {
        for (std::string& r : StringsOf(req)) s.any_of_required.push_back(std::move(r));
      }
    }
  }
  return s;
}

std::vector<std::string> EnumOf(const Schema& s, std::string_view property) {
  for (const auto& [name, values] : s.enums) {
    if (name == property) return values;
  }
  return {};
}

constexpr std::string_view kSchemaNames[] = {"click", "conversion", "commission", "rejected",
                                             "unattributed"};

// ---- Fully populated events (every optional field set) ---------------------

IpAddress Ip(std::string_view text) {
  IpAddress ip;
  EXPECT_TRUE(IpAddress::Parse(text, &ip)) << text;
  return ip;
}

Currency Cur(std::string_view code) {
  Currency c;
  EXPECT_TRUE(Currency::Parse(code, &c)) << code;
  return c;
}

Click FullClick() {
  Click c;
  c.click_id = "c-5573252a56606f93";
  c.event_time_ms = 1'767'225'605'948;
  c.affiliate_id = "aff-48";
  c.offer_id = "off-2";
  c.user_id = "u-186";
  c.ip = Ip("65.3.72.22");
  c.user_agent = "Mozilla/5.0 (X11; Linux x86_64)";
  c.referrer = "https://blog.example/post";
  c.sub_ids = {"summer", "banner2"};
  c.country = "DE";
  return c;
}

Conversion FullConversion() {
  Conversion c;
  c.conversion_id = "ord-9912";
  c.event_time_ms = 1'767'227'405'948;
  c.offer_id = "off-2";
  c.click_id = "c-5573252a56606f93";
  c.user_id = "u-186";
  c.goal = "sale";
  c.amount = Money{4599, Cur("EUR")};
  c.status = ConversionStatus::kApproved;
  return c;
}

Commission FullCommission() {
  Commission c;
  c.commission_id = "cm-3f0c2a9be1d47a55";
  c.conversion_id = "ord-9912";
  c.offer_id = "off-2";
  c.goal = "sale";
  c.click_id = "c-5573252a56606f93";
  c.affiliate_id = "aff-48";
  c.sub_ids = {"summer", "banner2"};
  c.click_time_ms = 1'767'225'605'948;
  c.conversion_time_ms = 1'767'227'405'948;
  c.payout = Money{-2300, Cur("EUR")};
  c.status = ConversionStatus::kReversed;
  c.model = AttributionModel::kLinear;
  c.credit_ppm = 500'000;
  c.click_count = 2;
  c.basis = PayoutBasis::kRevshare;
  c.rate = 1'000;
  c.base = Money{46'000, Cur("EUR")};
  c.override_applied = true;
  c.offer_version = "9f2d0c3b7a6e5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a2918070605040";
  c.produced_at_ms = 1'767'227'406'001;
  return c;
}

RejectedEvent FullRejected() {
  RejectedEvent r;
  r.reason = RejectReason::kWrongType;
  r.detail = "field 'ts': expected an integer";
  r.source_topic = "clicks";
  r.source_partition = 3;
  r.source_offset = 1042;
  r.original_key = "c-1";
  r.original_value = std::string("{\"ts\":\"1\"}\xff\x00", 12);
  r.rejected_at_ms = 1'767'225'606'120;
  r.original_key_size = 3;
  r.original_key_sha256 = "6260cd1bca682c8e6d53f7bd48085059c4f9bbab010abf0200ccfae2567a6dda";
  r.original_key_truncated = true;
  r.original_value_size = 12;
  r.original_value_sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
  r.original_value_truncated = true;
  r.produced_at_ms = 1'767'225'606'120;
  return r;
}

UnattributedConversion FullUnattributed() {
  UnattributedConversion u;
  u.conversion = FullConversion();
  u.reason = UnattributedReason::kOutsideWindow;
  u.detail = "latest click 31 days before the conversion";
  u.produced_at_ms = 1'767'231'000'500;
  return u;
}

template <typename Event>
std::string EncodeJson(const Event& event) {
  EventEncoder encoder(WireFormat::kJson);
  std::string out;
  encoder.Encode(event, &out);
  return out;
}

template <typename Event>
StringSet EncodedMembers(const Event& event) {
  const std::string json = EncodeJson(event);
  Dom dom(json);
  EXPECT_EQ(dom.error, simdjson::SUCCESS) << "encoder wrote invalid JSON: " << json;
  return KeysOf(dom.root);
}

// ---- Valid examples --------------------------------------------------------

// Encodes `event` in `format`, decodes it again and expects the same event.
template <typename Event>
void ExpectRoundTrip(const Event& event, WireFormat format, const std::string& label) {
  EventEncoder encoder(format);
  EventDecoder decoder(format);
  std::string bytes;
  encoder.Encode(event, &bytes);
  Event again;
  const std::optional<Invalid> invalid = decoder.Decode(bytes, &again);
  ASSERT_FALSE(invalid.has_value()) << label << ": re-encoded as " << WireFormatName(format)
                                    << " it no longer decodes: " << Describe(invalid)
                                    << (format == WireFormat::kJson ? "\n" + bytes : std::string());
  EXPECT_TRUE(again == event) << label << ": " << WireFormatName(format)
                              << " round trip changed the event";
}

// Top-level members of an example, checked against its schema: no member the
// schema does not declare (the examples use none) and every required one.
void ExpectMembersMatchSchema(simdjson::dom::element object, std::string_view schema_name,
                              const std::string& label) {
  const Schema schema = LoadSchema(schema_name);
  const StringSet keys = KeysOf(object);
  for (const std::string& key : keys) {
    EXPECT_TRUE(schema.properties.contains(key))
        << label << ": member '" << key << "' not in " << schema_name << ".schema.json";
  }
  for (const std::string& r : schema.required) {
    EXPECT_TRUE(keys.contains(r)) << label << ": required member '" << r << "' absent";
  }
  if (!schema.any_of_required.empty()) {
    EXPECT_TRUE(std::any_of(schema.any_of_required.begin(), schema.any_of_required.end(),
                            [&](const std::string& k) { return keys.contains(k); }))
        << label << ": none of " << absl::StrJoin(schema.any_of_required, ", ");
  }
}

template <typename Event>
void CheckValidExample(const fs::path& path, std::string_view schema_name) {
  const std::string label = path.filename().string();
  const std::string text = ReadFile(path);
  EventDecoder decoder(WireFormat::kJson);
  Event event;
  const std::optional<Invalid> invalid = decoder.Decode(text, &event);
  ASSERT_FALSE(invalid.has_value()) << label << " must decode but: " << Describe(invalid);
  ExpectRoundTrip(event, WireFormat::kJson, label);
  ExpectRoundTrip(event, WireFormat::kProtobuf, label);

  Dom dom(text);
  ASSERT_EQ(dom.error, simdjson::SUCCESS) << label;
  ExpectMembersMatchSchema(dom.root, schema_name, label);
  if (schema_name == "unattributed") {
    simdjson::dom::element nested;
    ASSERT_EQ(dom.root["conversion"].get(nested), simdjson::SUCCESS) << label;
    ExpectMembersMatchSchema(nested, "conversion", label + " .conversion");
  }
}

// "conversion_user_id.json" -> "conversion"; "click.json" -> "click".
std::string_view TypePrefix(std::string_view stem) { return stem.substr(0, stem.find('_')); }

TEST(SchemaExamplesTest, EveryValidExampleDecodesAndRoundTrips) {
  const std::vector<fs::path> files = JsonFilesIn(SchemasDir() / "examples");
  StringSet covered;
  for (const fs::path& path : files) {
    SCOPED_TRACE(path.filename().string());
    const std::string stem = path.stem().string();
    const std::string_view type = TypePrefix(stem);
    covered.emplace(type);
    if (type == "click") {
      CheckValidExample<Click>(path, type);
    } else if (type == "conversion") {
      CheckValidExample<Conversion>(path, type);
    } else if (type == "commission") {
      CheckValidExample<Commission>(path, type);
    } else if (type == "rejected") {
      CheckValidExample<RejectedEvent>(path, type);
    } else if (type == "unattributed") {
      CheckValidExample<UnattributedConversion>(path, type);
    } else {
      ADD_FAILURE() << path << ": file name must start with a message type";
    }
  }
  for (std::string_view type : kSchemaNames) {
    EXPECT_TRUE(covered.contains(type)) << "no valid example of " << type;
  }
}

// ---- Invalid examples ------------------------------------------------------

TEST(SchemaExamplesTest, EveryInvalidExampleIsRejectedWithTheReasonInItsName) {
  const std::vector<fs::path> files = JsonFilesIn(SchemasDir() / "examples" / "invalid");
  ASSERT_FALSE(files.empty());
  StringSet reasons_covered;
  EventDecoder decoder(WireFormat::kJson);
  for (const fs::path& path : files) {
    const std::string name = path.filename().string();
    const std::string stem = path.stem().string();
    const size_t sep = stem.find("__");
    ASSERT_NE(sep, std::string::npos) << name << ": expected <reason>__<type>_<what>.json";
    const std::string expected = stem.substr(0, sep);
    RejectReason parsed;
    ASSERT_TRUE(ParseRejectReason(expected, &parsed)) << name << ": unknown reason " << expected;
    reasons_covered.insert(expected);
    const std::string_view type = TypePrefix(std::string_view(stem).substr(sep + 2));
    const std::string payload = ReadFile(path);
    std::optional<Invalid> invalid;
    if (type == "click") {
      Click click;
      invalid = decoder.Decode(payload, &click);
    } else if (type == "conversion") {
      Conversion conversion;
      invalid = decoder.Decode(payload, &conversion);
    } else {
      ADD_FAILURE() << name << ": <what> must start with click_ or conversion_";
      continue;
    }
    EXPECT_EQ(invalid.has_value() ? std::string(RejectReasonName(invalid->reason)) : "ok", expected)
        << name << " detail: " << (invalid ? invalid->detail : "");
  }
  // Every codec reason has an example, except payload_too_large (a 64 KiB
  // file is not an example anyone reads; the codec tests cover it).
  for (RejectReason r : AllRejectReasons()) {
    if (r >= RejectReason::kPayloadTooLarge) continue;
    EXPECT_TRUE(reasons_covered.contains(RejectReasonName(r)))
        << "no invalid example for " << RejectReasonName(r);
  }
}

TEST(SchemaExamplesTest, OversizedPayloadIsRejectedFirst) {
  // Not an example file (too big to read); the rule of step 1 of the order.
  std::string payload = EncodeJson(FullClick());
  payload.insert(payload.size() - 1, absl::StrCat(",\"pad\":\"", std::string(70'000, 'x'), "\""));
  EventDecoder decoder(WireFormat::kJson);
  Click click;
  const std::optional<Invalid> invalid = decoder.Decode(payload, &click);
  ASSERT_TRUE(invalid.has_value());
  EXPECT_EQ(RejectReasonName(invalid->reason), "payload_too_large");
}

// ---- Schemas ---------------------------------------------------------------

TEST(SchemaFilesTest, EverySchemaIsJsonWithIdAndOpenObject) {
  for (std::string_view name : kSchemaNames) {
    SCOPED_TRACE(name);
    const Schema s = LoadSchema(name);
    ASSERT_TRUE(s.parsed) << name << ".schema.json is not valid JSON";
    EXPECT_EQ(s.id, "https://tally.dev/schemas/json/v1/" + std::string(name) + ".schema.json");
    EXPECT_EQ(s.dialect, "https://json-schema.org/draft/2020-12/schema");
    EXPECT_EQ(s.type, "object");
    EXPECT_TRUE(s.additional_properties) << "readers ignore unknown members";
    EXPECT_FALSE(s.properties.empty());
    EXPECT_TRUE(s.properties_without_description.empty())
        << "without description: " << absl::StrJoin(s.properties_without_description, ", ");
    EXPECT_TRUE(s.properties_without_type.empty())
        << "without type: " << absl::StrJoin(s.properties_without_type, ", ");
    for (const std::string& r : s.required) {
      EXPECT_TRUE(s.properties.contains(r)) << "required '" << r << "' is not a property";
    }
    for (const std::string& r : s.any_of_required) {
      EXPECT_TRUE(s.properties.contains(r)) << "anyOf required '" << r << "' is not a property";
    }
  }
}

void ExpectSameMembers(std::string_view schema_name, const StringSet& encoded) {
  const Schema s = LoadSchema(schema_name);
  ASSERT_TRUE(s.parsed);
  std::vector<std::string> only_schema, only_encoder;
  std::set_difference(s.properties.begin(), s.properties.end(), encoded.begin(), encoded.end(),
                      std::back_inserter(only_schema));
  std::set_difference(encoded.begin(), encoded.end(), s.properties.begin(), s.properties.end(),
                      std::back_inserter(only_encoder));
  EXPECT_TRUE(only_schema.empty() && only_encoder.empty())
      << schema_name << ".schema.json properties vs encoder members: only in schema ["
      << absl::StrJoin(only_schema, ", ") << "], only written by the encoder ["
      << absl::StrJoin(only_encoder, ", ") << "]";
}

TEST(SchemaFilesTest, PropertiesAreExactlyWhatTheEncoderWrites) {
  ExpectSameMembers("click", EncodedMembers(FullClick()));
  ExpectSameMembers("conversion", EncodedMembers(FullConversion()));
  ExpectSameMembers("commission", EncodedMembers(FullCommission()));
  ExpectSameMembers("rejected", EncodedMembers(FullRejected()));
  ExpectSameMembers("unattributed", EncodedMembers(FullUnattributed()));
  // The nested conversion of an unattributed message is a full Conversion.
  const std::string json = EncodeJson(FullUnattributed());
  Dom dom(json);
  ASSERT_EQ(dom.error, simdjson::SUCCESS) << json;
  simdjson::dom::element nested;
  ASSERT_EQ(dom.root["conversion"].get(nested), simdjson::SUCCESS) << json;
  ExpectSameMembers("conversion", KeysOf(nested));
}

TEST(SchemaFilesTest, FullyPopulatedEventsRoundTrip) {
  for (WireFormat f : {WireFormat::kJson, WireFormat::kProtobuf}) {
    ExpectRoundTrip(FullClick(), f, "click");
    ExpectRoundTrip(FullConversion(), f, "conversion");
    ExpectRoundTrip(FullCommission(), f, "commission");
    ExpectRoundTrip(FullRejected(), f, "rejected");
    ExpectRoundTrip(FullUnattributed(), f, "unattributed");
  }
}

TEST(SchemaFilesTest, EnumsAreTheCodecWireNames) {
  std::vector<std::string> statuses;
  for (auto s :
       {ConversionStatus::kPending, ConversionStatus::kApproved, ConversionStatus::kReversed}) {
    statuses.emplace_back(ConversionStatusName(s));
  }
  EXPECT_EQ(EnumOf(LoadSchema("conversion"), "status"), statuses);
  EXPECT_EQ(EnumOf(LoadSchema("commission"), "status"), statuses);

  std::vector<std::string> models;
  for (int i = 0; i <= static_cast<int>(AttributionModel::kPositionBased); ++i) {
    models.emplace_back(AttributionModelName(static_cast<AttributionModel>(i)));
  }
  EXPECT_EQ(EnumOf(LoadSchema("commission"), "model"), models);

  std::vector<std::string> bases;
  for (auto b : {PayoutBasis::kCpa, PayoutBasis::kRevshare}) bases.emplace_back(PayoutBasisName(b));
  EXPECT_EQ(EnumOf(LoadSchema("commission"), "basis"), bases);

  std::vector<std::string> reasons;
  for (RejectReason r : AllRejectReasons()) reasons.emplace_back(RejectReasonName(r));
  EXPECT_EQ(EnumOf(LoadSchema("rejected"), "reason"), reasons);

  std::vector<std::string> unattributed;
  for (int i = 0; i <= static_cast<int>(UnattributedReason::kNoUserClicks); ++i) {
    unattributed.emplace_back(UnattributedReasonName(static_cast<UnattributedReason>(i)));
  }
  EXPECT_EQ(EnumOf(LoadSchema("unattributed"), "reason"), unattributed);
}

TEST(SchemaFilesTest, CurrencyEnumIsExactlyTheCodecList) {
  std::vector<std::string> accepted;  // every three-letter code Currency::Parse takes
  std::string code = "AAA";
  for (char a = 'A'; a <= 'Z'; ++a) {
    for (char b = 'A'; b <= 'Z'; ++b) {
      for (char c = 'A'; c <= 'Z'; ++c) {
        code = {a, b, c};
        Currency currency;
        if (Currency::Parse(code, &currency)) accepted.push_back(code);
      }
    }
  }
  std::vector<std::string> listed = EnumOf(LoadSchema("conversion"), "currency");
  std::sort(listed.begin(), listed.end());
  EXPECT_EQ(listed, accepted);
}

}  // namespace
}  // namespace tally
