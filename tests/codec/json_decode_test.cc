// JSON decoding: one test per reject reason (and per shape of it), limits at
// their boundaries, validation order, unknown members, decoder reuse.
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "processor/codec/codec.h"
#include "tests/codec/test_events.h"

namespace tally {
namespace {

using ::tally::testing::ClickMembers;
using ::tally::testing::ConversionMembers;
using ::tally::testing::Json;
using ::tally::testing::Members;
using ::tally::testing::Quote;
using ::tally::testing::ReasonOf;
using ::tally::testing::With;
using ::tally::testing::Without;
using ::testing::HasSubstr;

class JsonDecodeTest : public ::testing::Test {
 protected:
  std::string DecodeClick(const std::string& payload) {
    last_ = decoder_.Decode(payload, &click_);
    return ReasonOf(last_);
  }
  std::string DecodeConversion(const std::string& payload) {
    last_ = decoder_.Decode(payload, &conversion_);
    return ReasonOf(last_);
  }
  std::string Detail() const { return last_ ? last_->detail : ""; }

  EventDecoder decoder_{WireFormat::kJson};
  Click click_;
  Conversion conversion_;
  std::optional<Invalid> last_;
};

TEST_F(JsonDecodeTest, ValidClickDecodes) {
  ASSERT_EQ(DecodeClick(Json(ClickMembers())), "ok") << Detail();
  EXPECT_EQ(click_.click_id, "c-1");
  EXPECT_EQ(click_.event_time_ms, 1'767'225'600'000);
  EXPECT_EQ(click_.affiliate_id, "aff-17");
  EXPECT_EQ(click_.offer_id, "off-3");
  EXPECT_EQ(click_.user_id, "u-8812");
  EXPECT_EQ(click_.ip.ToString(), "203.0.113.7");
  EXPECT_EQ(click_.user_agent, "Mozilla/5.0");
  EXPECT_EQ(click_.referrer, "https://r.example/");
  EXPECT_THAT(click_.sub_ids, ::testing::ElementsAre("a", "b"));
  EXPECT_EQ(click_.country, "DE");
}

TEST_F(JsonDecodeTest, ValidConversionDecodes) {
  ASSERT_EQ(DecodeConversion(Json(ConversionMembers())), "ok") << Detail();
  EXPECT_EQ(conversion_.conversion_id, "ord-1");
  EXPECT_EQ(conversion_.amount.minor, 4599);
  EXPECT_EQ(conversion_.amount.currency.code(), "EUR");
  EXPECT_EQ(conversion_.status, ConversionStatus::kApproved);
  EXPECT_EQ(conversion_.click_id, "c-1");
  EXPECT_EQ(conversion_.user_id, "u-8812");
}

TEST_F(JsonDecodeTest, WhitespaceAndEscapesAreFine) {
  const std::string payload =
      " \n{ \"click_id\" : \"c\\u002d1\", \"ts\":1767225600000 , \"affiliate_id\":\"a\","
      "\"offer_id\":\"o\",\"user_id\":\"\\u00e9\\ud83d\\ude00\",\"ip\":\"::1\"}\t\r\n ";
  ASSERT_EQ(DecodeClick(payload), "ok") << Detail();
  EXPECT_EQ(click_.click_id, "c-1");
  EXPECT_EQ(click_.user_id, "\xC3\xA9\xF0\x9F\x98\x80");
}

// ---- payload_too_large ---------------------------------------------------------

TEST_F(JsonDecodeTest, PayloadTooLargeComesFirstAndBoundaryIsInclusive) {
  DecodeLimits limits;
  limits.max_payload_bytes = 400;
  EventDecoder decoder(WireFormat::kJson, limits);
  const size_t overhead = Json(With(ClickMembers(), "pad", Quote(""))).size();
  ASSERT_LT(overhead, 400u);
  std::string payload = Json(With(ClickMembers(), "pad", Quote(std::string(400 - overhead, 'x'))));
  ASSERT_EQ(payload.size(), 400u);
  EXPECT_EQ(ReasonOf(decoder.Decode(payload, &click_)), "ok");
  payload.insert(payload.size() - 2, "x");
  const auto invalid = decoder.Decode(payload, &click_);
  EXPECT_EQ(ReasonOf(invalid), "payload_too_large");
  EXPECT_EQ(invalid->detail, "payload of 401 bytes exceeds limits.max_payload_bytes=400");
  // Before parsing: garbage that large is too large, not malformed.
  EXPECT_EQ(ReasonOf(decoder.Decode(std::string(401, '<'), &conversion_)), "payload_too_large");
}

TEST_F(JsonDecodeTest, DefaultLimitIs64KiB) {
  const std::string payload = Json(With(ClickMembers(), "pad", Quote(std::string(70'000, 'x'))));
  EXPECT_EQ(DecodeClick(payload), "payload_too_large");
  EXPECT_THAT(Detail(), HasSubstr("exceeds limits.max_payload_bytes=65536"));
}

// ---- malformed_payload -----------------------------------------------------------

TEST_F(JsonDecodeTest, EveryTruncationIsMalformed) {
  const std::string valid = Json(ClickMembers());
  for (size_t n = 0; n < valid.size(); ++n) {
    EXPECT_EQ(DecodeClick(valid.substr(0, n)), "malformed_payload") << valid.substr(0, n);
  }
  const std::string conversion = Json(ConversionMembers());
  for (size_t n = 0; n < conversion.size(); ++n) {
    EXPECT_EQ(DecodeConversion(conversion.substr(0, n)), "malformed_payload")
        << conversion.substr(0, n);
  }
}

TEST_F(JsonDecodeTest, TopLevelMustBeAnObject) {
  const std::string valid = Json(ClickMembers());
  for (const std::string& payload : {"[" + valid + "]", Quote("x"), std::string("42"),
                                     std::string("null"), std::string("true"), std::string("[]")}) {
    EXPECT_EQ(DecodeClick(payload), "malformed_payload") << payload;
  }
}

TEST_F(JsonDecodeTest, TrailingContentIsMalformed) {
  const std::string valid = Json(ClickMembers());
  for (const std::string& payload :
       {valid + "}", valid + " x", valid + valid, valid + ",", valid + "[]", valid + "0"}) {
    EXPECT_EQ(DecodeClick(payload), "malformed_payload") << payload;
  }
  EXPECT_EQ(DecodeClick(valid + " \n\t"), "ok");
}

TEST_F(JsonDecodeTest, DuplicateKnownKeyIsMalformed) {
  Members m = ClickMembers();
  m.emplace_back("offer_id", "\"off-3\"");
  EXPECT_EQ(DecodeClick(Json(m)), "malformed_payload");
  EXPECT_THAT(Detail(), HasSubstr("duplicate key 'offer_id'"));
  Members c = ConversionMembers();
  c.emplace_back("amount", "1");
  EXPECT_EQ(DecodeConversion(Json(c)), "malformed_payload");
  // Even when the first one was null.
  Members n = With(ClickMembers(), "country", "null");
  n.emplace_back("country", "\"DE\"");
  EXPECT_EQ(DecodeClick(Json(n)), "malformed_payload");
}

TEST_F(JsonDecodeTest, SyntaxErrorsAreMalformed) {
  for (const std::string& payload : {
           std::string(""),
           std::string("   "),
           std::string("<html>"),
           std::string("{"),
           std::string("{\"click_id\":}"),
           std::string("{\"click_id\" \"c\"}"),
           std::string("{click_id:\"c\"}"),
           std::string("{\"a\":1,}"),
           std::string("{\"a\":1 \"b\":2}"),
           Json(With(ClickMembers(), "x", "tru")),
           Json(With(ClickMembers(), "x", "nul")),
           Json(With(ClickMembers(), "x", "01")),
           Json(With(ClickMembers(), "x", "1.")),
           Json(With(ClickMembers(), "x", "-")),
           Json(With(ClickMembers(), "x", "[1,]")),
           Json(With(ClickMembers(), "x", "{\"a\":[}")),
           Json(With(ClickMembers(), "x", "\"\\x\"")),
           Json(With(ClickMembers(), "ts", "12a")),
           Json(With(ClickMembers(), "user_agent", "\"tab\there\"")),
       }) {
    EXPECT_EQ(DecodeClick(payload), "malformed_payload") << payload;
  }
}

// ---- invalid_utf8 -------------------------------------------------------------------

TEST_F(JsonDecodeTest, InvalidUtf8AnywhereIsInvalidUtf8) {
  for (const std::string& bad : std::initializer_list<std::string>{
           "\xC3\x28", "\xFF", "\xED\xA0\x80", "\xC0\xAF", "\xF4\x90\x80\x80", "\xE2\x82"}) {
    EXPECT_EQ(DecodeClick(Json(With(ClickMembers(), "user_agent", Quote("Moz" + bad)))),
              "invalid_utf8");
    EXPECT_EQ(DecodeClick(Json(With(ClickMembers(), "unknown", Quote(bad)))), "invalid_utf8");
    EXPECT_EQ(DecodeClick(Json(With(ClickMembers(), "k" + bad, "1"))), "invalid_utf8");
    EXPECT_EQ(DecodeConversion(Json(With(ConversionMembers(), "goal", Quote("sa" + bad)))),
              "invalid_utf8");
  }
}

TEST_F(JsonDecodeTest, EscapedLoneSurrogateIsInvalidUtf8) {
  EXPECT_EQ(DecodeClick(Json(With(ClickMembers(), "user_id", "\"u\\ud800\""))), "invalid_utf8");
  EXPECT_EQ(DecodeClick(Json(With(ClickMembers(), "extra", "\"\\udc00x\""))), "invalid_utf8");
}

// ---- missing_field ----------------------------------------------------------------------

TEST_F(JsonDecodeTest, EachRequiredClickFieldAbsentOrNullIsMissing) {
  for (const char* field : {"click_id", "ts", "affiliate_id", "offer_id", "user_id", "ip"}) {
    EXPECT_EQ(DecodeClick(Json(Without(ClickMembers(), field))), "missing_field") << field;
    EXPECT_EQ(Detail(), std::string("missing required field '") + field + "'");
    EXPECT_EQ(DecodeClick(Json(With(ClickMembers(), field, "null"))), "missing_field") << field;
  }
}

TEST_F(JsonDecodeTest, EachRequiredConversionFieldAbsentOrNullIsMissing) {
  for (const char* field :
       {"conversion_id", "ts", "offer_id", "goal", "amount", "currency", "status"}) {
    EXPECT_EQ(DecodeConversion(Json(Without(ConversionMembers(), field))), "missing_field")
        << field;
    EXPECT_EQ(Detail(), std::string("missing required field '") + field + "'");
    EXPECT_EQ(DecodeConversion(Json(With(ConversionMembers(), field, "null"))), "missing_field")
        << field;
  }
}

TEST_F(JsonDecodeTest, ConversionNeedsClickIdOrUserId) {
  const Members both = ConversionMembers();
  EXPECT_EQ(DecodeConversion(Json(Without(Without(both, "click_id"), "user_id"))), "missing_field");
  EXPECT_THAT(Detail(), HasSubstr("click_id or user_id"));
  EXPECT_EQ(DecodeConversion(Json(With(With(both, "click_id", "null"), "user_id", "null"))),
            "missing_field");
  ASSERT_EQ(DecodeConversion(Json(Without(both, "click_id"))), "ok") << Detail();
  EXPECT_EQ(conversion_.click_id, "");
  EXPECT_EQ(conversion_.user_id, "u-8812");
  ASSERT_EQ(DecodeConversion(Json(Without(both, "user_id"))), "ok") << Detail();
  EXPECT_EQ(conversion_.click_id, "c-1");
  EXPECT_EQ(conversion_.user_id, "");
}

TEST_F(JsonDecodeTest, EmptyObjectReportsTheFirstRequiredField) {
  EXPECT_EQ(DecodeClick("{}"), "missing_field");
  EXPECT_EQ(Detail(), "missing required field 'click_id'");
  EXPECT_EQ(DecodeConversion("{}"), "missing_field");
  EXPECT_EQ(Detail(), "missing required field 'conversion_id'");
}

// ---- wrong_type -------------------------------------------------------------------------

TEST_F(JsonDecodeTest, ClickWrongTypes) {
  const std::pair<const char*, const char*> cases[] = {
      {"click_id", "12345"},  {"ts", "\"1767225600000\""}, {"ts", "1767225600000.5"},
      {"ts", "1e12"},         {"ts", "1767225600000.0"},   {"ts", "true"},
      {"ts", "[1]"},          {"affiliate_id", "true"},    {"offer_id", "{}"},
      {"user_id", "[\"u\"]"}, {"ip", "3232235777"},        {"user_agent", "{\"name\":\"x\"}"},
      {"referrer", "false"},  {"sub_ids", "\"summer\""},   {"sub_ids", "{}"},
      {"sub_ids", "[1,2]"},   {"sub_ids", "[\"a\",null]"}, {"sub_ids", "[[\"a\"]]"},
      {"country", "276"},
  };
  for (const auto& [field, raw] : cases) {
    EXPECT_EQ(DecodeClick(Json(With(ClickMembers(), field, raw))), "wrong_type")
        << field << "=" << raw;
    EXPECT_THAT(Detail(), HasSubstr(std::string("field '") + field + "'"));
  }
  EXPECT_EQ(DecodeClick(Json(With(ClickMembers(), "ts", "\"1\""))), "wrong_type");
  EXPECT_EQ(Detail(), "field 'ts': expected an integer");
}

TEST_F(JsonDecodeTest, ConversionWrongTypes) {
  const std::pair<const char*, const char*> cases[] = {
      {"conversion_id", "9912"}, {"ts", "\"1767225900000\""},
      {"offer_id", "[]"},        {"click_id", "8812"},
      {"user_id", "{}"},         {"goal", "[\"sale\"]"},
      {"amount", "4599.5"},      {"amount", "\"4599\""},
      {"amount", "4.599e3"},     {"currency", "978"},
      {"status", "1"},           {"status", "true"},
  };
  for (const auto& [field, raw] : cases) {
    EXPECT_EQ(DecodeConversion(Json(With(ConversionMembers(), field, raw))), "wrong_type")
        << field << "=" << raw;
  }
}

// ---- field_too_long -----------------------------------------------------------------------

TEST_F(JsonDecodeTest, ClickLengthLimitsAtTheirBoundaries) {
  const std::pair<const char*, size_t> limits[] = {{"click_id", 64},     {"affiliate_id", 64},
                                                   {"offer_id", 64},     {"user_id", 128},
                                                   {"user_agent", 1024}, {"referrer", 2048}};
  for (const auto& [field, max] : limits) {
    EXPECT_EQ(DecodeClick(Json(With(ClickMembers(), field, Quote(std::string(max, 'a'))))), "ok")
        << field;
    EXPECT_EQ(DecodeClick(Json(With(ClickMembers(), field, Quote(std::string(max + 1, 'a'))))),
              "field_too_long")
        << field;
    EXPECT_EQ(Detail(), std::string("field '") + field + "': " + std::to_string(max + 1) +
                            " bytes, at most " + std::to_string(max));
  }
}

TEST_F(JsonDecodeTest, UserIdLimitIsInBytesNotCharacters) {
  std::string two_byte;
  for (int i = 0; i < 64; ++i) two_byte += "\xC3\xA9";  // 64 characters, 128 bytes
  EXPECT_EQ(DecodeClick(Json(With(ClickMembers(), "user_id", Quote(two_byte)))), "ok");
  EXPECT_EQ(DecodeClick(Json(With(ClickMembers(), "user_id", Quote(two_byte + "x")))),
            "field_too_long");
}

TEST_F(JsonDecodeTest, SubIdLimits) {
  auto list = [](int n, size_t len) {
    std::string s = "[";
    for (int i = 0; i < n; ++i) s += (i ? ",\"" : "\"") + std::string(len, 's') + "\"";
    return s + "]";
  };
  EXPECT_EQ(DecodeClick(Json(With(ClickMembers(), "sub_ids", list(5, 128)))), "ok");
  EXPECT_EQ(click_.sub_ids.size(), 5u);
  EXPECT_EQ(DecodeClick(Json(With(ClickMembers(), "sub_ids", list(6, 1)))), "field_too_long");
  EXPECT_EQ(Detail(), "field 'sub_ids': 6 entries, at most 5");
  EXPECT_EQ(DecodeClick(Json(With(ClickMembers(), "sub_ids", list(7, 1)))), "field_too_long");
  EXPECT_EQ(Detail(), "field 'sub_ids': 7 entries, at most 5");
  EXPECT_EQ(DecodeClick(Json(With(ClickMembers(), "sub_ids", list(1, 129)))), "field_too_long");
  EXPECT_EQ(DecodeClick(Json(With(ClickMembers(), "sub_ids", "[]"))), "ok");
  EXPECT_TRUE(click_.sub_ids.empty());
}

TEST_F(JsonDecodeTest, ConversionLengthLimitsAtTheirBoundaries) {
  const std::pair<const char*, size_t> limits[] = {
      {"conversion_id", 64}, {"offer_id", 64}, {"click_id", 64}, {"user_id", 128}, {"goal", 32}};
  for (const auto& [field, max] : limits) {
    EXPECT_EQ(
        DecodeConversion(Json(With(ConversionMembers(), field, Quote(std::string(max, 'a'))))),
        "ok")
        << field;
    EXPECT_EQ(
        DecodeConversion(Json(With(ConversionMembers(), field, Quote(std::string(max + 1, 'a'))))),
        "field_too_long")
        << field;
  }
}

TEST_F(JsonDecodeTest, LengthIsCheckedBeforeCharacters) {
  EXPECT_EQ(DecodeClick(Json(With(ClickMembers(), "click_id", Quote(std::string(65, '/'))))),
            "field_too_long");
  EXPECT_EQ(DecodeConversion(Json(With(ConversionMembers(), "goal", Quote(std::string(33, 'A'))))),
            "field_too_long");
}

// ---- invalid_value ------------------------------------------------------------------------

TEST_F(JsonDecodeTest, ClickInvalidValues) {
  const std::pair<const char*, std::string> cases[] = {
      {"click_id", "\"c 1\""},       {"click_id", "\"c/1\""},      {"click_id", "\"c#1\""},
      {"click_id", "\"\""},          {"click_id", "\"\xC3\xA9\""}, {"affiliate_id", "\"\""},
      {"offer_id", "\"off-3!\""},    {"user_id", "\"\""},          {"user_id", "\"u\\u0007\""},
      {"user_id", "\"u\\u0000\""},   {"user_id", "\"u\x7f\""},     {"user_id", "\"u\\n\""},
      {"ip", "\"999.1.1.1\""},       {"ip", "\"1.2.3\""},          {"ip", "\"not-an-ip\""},
      {"ip", "\"2001:db8::g\""},     {"ip", "\"1.2.3.4:80\""},     {"ip", "\"[::1]\""},
      {"ip", "\"256.256.256.256\""}, {"ip", "\"::ffff::1\""},      {"ip", "\"\""},
      {"country", "\"de\""},         {"country", "\"D1\""},        {"country", "\"DEU\""},
      {"country", "\"1A\""},         {"country", "\"D\""},
  };
  for (const auto& [field, raw] : cases) {
    EXPECT_EQ(DecodeClick(Json(With(ClickMembers(), field, raw))), "invalid_value")
        << field << "=" << raw;
    EXPECT_THAT(Detail(), HasSubstr(std::string("field '") + field + "'"));
  }
  EXPECT_EQ(DecodeClick(Json(With(ClickMembers(), "ip", "\"10.1.2.3x\""))), "invalid_value");
  EXPECT_EQ(Detail(), "field 'ip': not an IPv4 or IPv6 address");
}

TEST_F(JsonDecodeTest, ConversionInvalidValues) {
  const std::pair<const char*, std::string> cases[] = {
      {"conversion_id", "\"\""},
      {"conversion_id", "\"order 1\""},
      {"conversion_id", "\"order/1\""},
      {"click_id", "\"c 1\""},
      {"user_id", "\"u\\u001f\""},
      {"goal", "\"\""},
      {"goal", "\"Sale!\""},
      {"goal", "\"sale goal\""},
      {"goal", "\"Sale\""},
      {"amount", "-1"},
      {"amount", "1000000000000001"},
      {"amount", "9223372036854775807"},
      {"amount", "9223372036854775808"},
      {"amount", "18446744073709551616"},
      {"amount", "123456789012345678901234567890"},
      {"amount", "-9223372036854775809"},
      {"status", "\"done\""},
      {"status", "\"APPROVED\""},
      {"status", "\"refunded\""},
      {"status", "\"\""},
  };
  for (const auto& [field, raw] : cases) {
    EXPECT_EQ(DecodeConversion(Json(With(ConversionMembers(), field, raw))), "invalid_value")
        << field << "=" << raw;
  }
}

TEST_F(JsonDecodeTest, AmountBoundaries) {
  ASSERT_EQ(DecodeConversion(Json(With(ConversionMembers(), "amount", "0"))), "ok");
  EXPECT_EQ(conversion_.amount.minor, 0);
  ASSERT_EQ(DecodeConversion(Json(With(ConversionMembers(), "amount", "-0"))), "ok");
  EXPECT_EQ(conversion_.amount.minor, 0);
  ASSERT_EQ(DecodeConversion(Json(With(ConversionMembers(), "amount", "1000000000000000"))), "ok");
  EXPECT_EQ(conversion_.amount.minor, 1'000'000'000'000'000);
}

TEST_F(JsonDecodeTest, StatusNames) {
  for (const auto& [name, status] : {std::pair{"pending", ConversionStatus::kPending},
                                     std::pair{"approved", ConversionStatus::kApproved},
                                     std::pair{"reversed", ConversionStatus::kReversed}}) {
    ASSERT_EQ(DecodeConversion(Json(With(ConversionMembers(), "status", Quote(name)))), "ok");
    EXPECT_EQ(conversion_.status, status);
  }
}

// ---- invalid_currency ----------------------------------------------------------------------

TEST_F(JsonDecodeTest, InvalidCurrency) {
  for (const char* code : {"XYZ", "usd", "EU", "EURO", "123", ""}) {
    EXPECT_EQ(DecodeConversion(Json(With(ConversionMembers(), "currency", Quote(code)))),
              "invalid_currency")
        << code;
    EXPECT_THAT(Detail(), HasSubstr("field 'currency'"));
  }
  ASSERT_EQ(DecodeConversion(Json(With(ConversionMembers(), "currency", "\"JPY\""))), "ok");
  EXPECT_EQ(conversion_.amount.currency.code(), "JPY");
}

// ---- timestamp_out_of_range -----------------------------------------------------------------

TEST_F(JsonDecodeTest, TimestampRangeIsInclusive) {
  const DecodeLimits limits;
  const int64_t min = limits.min_event_time_ms;
  const int64_t max = limits.max_event_time_ms;
  for (const int64_t ok : {min, max}) {
    ASSERT_EQ(DecodeClick(Json(With(ClickMembers(), "ts", std::to_string(ok)))), "ok");
    EXPECT_EQ(click_.event_time_ms, ok);
    EXPECT_EQ(DecodeConversion(Json(With(ConversionMembers(), "ts", std::to_string(ok)))), "ok");
  }
  for (const std::string& bad :
       {std::to_string(min - 1), std::to_string(max + 1), std::string("0"), std::string("-1"),
        std::string("9223372036854775807"), std::string("9223372036854775808"),
        std::string("-99999999999999999999")}) {
    EXPECT_EQ(DecodeClick(Json(With(ClickMembers(), "ts", bad))), "timestamp_out_of_range") << bad;
    EXPECT_EQ(DecodeConversion(Json(With(ConversionMembers(), "ts", bad))),
              "timestamp_out_of_range")
        << bad;
  }
}

TEST_F(JsonDecodeTest, TimestampRangeFollowsTheLimits) {
  DecodeLimits limits;
  limits.min_event_time_ms = 1000;
  limits.max_event_time_ms = 2000;
  EventDecoder decoder(WireFormat::kJson, limits);
  EXPECT_EQ(ReasonOf(decoder.Decode(Json(With(ClickMembers(), "ts", "1000")), &click_)), "ok");
  EXPECT_EQ(ReasonOf(decoder.Decode(Json(With(ClickMembers(), "ts", "2000")), &click_)), "ok");
  EXPECT_EQ(ReasonOf(decoder.Decode(Json(With(ClickMembers(), "ts", "999")), &click_)),
            "timestamp_out_of_range");
  EXPECT_EQ(ReasonOf(decoder.Decode(Json(With(ClickMembers(), "ts", "2001")), &click_)),
            "timestamp_out_of_range");
}

// ---- order, forward compatibility, optional fields ------------------------------------------

TEST_F(JsonDecodeTest, FirstFieldProblemInDocumentOrderWins) {
  Members m = With(With(ClickMembers(), "ip", "\"x\""), "country", "\"de\"");
  m = With(m, "user_agent", "1");  // user_agent comes after ip in this document
  EXPECT_EQ(DecodeClick(Json(m)), "invalid_value");
  EXPECT_THAT(Detail(), HasSubstr("'ip'"));
  Members reordered = {{"country", "\"de\""}, {"user_agent", "1"}};
  for (const auto& x : Without(Without(m, "country"), "user_agent")) reordered.push_back(x);
  EXPECT_EQ(DecodeClick(Json(reordered)), "invalid_value");
  EXPECT_THAT(Detail(), HasSubstr("'country'"));
}

TEST_F(JsonDecodeTest, FieldProblemsComeBeforeMissingFields) {
  EXPECT_EQ(DecodeClick(Json(With(Without(ClickMembers(), "ip"), "country", "\"de\""))),
            "invalid_value");
}

TEST_F(JsonDecodeTest, SyntaxErrorsWinOverEarlierFieldProblems) {
  // The field problem is seen first, but the document is not JSON at all.
  const std::string bad_ip = Json(With(ClickMembers(), "ip", "\"x\""));
  EXPECT_EQ(DecodeClick(bad_ip.substr(0, bad_ip.size() - 1)), "malformed_payload");
  EXPECT_EQ(DecodeClick(bad_ip + "x"), "malformed_payload");
  Members dup = With(ClickMembers(), "ip", "\"x\"");
  dup.emplace_back("ip", "\"1.2.3.4\"");
  EXPECT_EQ(DecodeClick(Json(dup)), "malformed_payload");
  EXPECT_EQ(DecodeClick(Json(With(With(ClickMembers(), "ip", "\"x\""), "y", "tru"))),
            "malformed_payload");
  // Inside a value of the wrong type, too.
  EXPECT_EQ(DecodeClick(Json(With(ClickMembers(), "user_agent", "{\"a\":01}"))),
            "malformed_payload");
}

TEST_F(JsonDecodeTest, UnknownMembersOfEveryTypeAreIgnored) {
  Members m = ClickMembers();
  m.insert(m.begin(), {"zzz", "{\"deep\":[1,2.5,-3e9,{\"x\":null}],\"b\":true,\"s\":\"\\u00e9\"}"});
  m.emplace_back("extra_string", "\"x\"");
  m.emplace_back("extra_number", "1e400");
  m.emplace_back("extra_big", "123456789012345678901234567890");
  m.emplace_back("extra_null", "null");
  m.emplace_back("extra_false", "false");
  m.emplace_back("extra_array", "[[],[[]],{}]");
  m.emplace_back("extra_string", "\"duplicate unknown keys are not checked\"");
  ASSERT_EQ(DecodeClick(Json(m)), "ok") << Detail();
  EXPECT_EQ(click_.click_id, "c-1");
  Members c = ConversionMembers();
  c.emplace_back("campaign", "{\"id\":7}");
  EXPECT_EQ(DecodeConversion(Json(c)), "ok") << Detail();
}

TEST_F(JsonDecodeTest, NullOrEmptyOptionalFieldsAreAbsent) {
  Members m = ClickMembers();
  for (const char* field : {"user_agent", "referrer", "sub_ids", "country"}) {
    m = With(m, field, "null");
  }
  ASSERT_EQ(DecodeClick(Json(m)), "ok") << Detail();
  EXPECT_EQ(click_.user_agent, "");
  EXPECT_TRUE(click_.sub_ids.empty());
  EXPECT_EQ(click_.country, "");
  ASSERT_EQ(DecodeClick(Json(With(With(ClickMembers(), "country", "\"\""), "referrer", "\"\""))),
            "ok")
      << Detail();
  EXPECT_EQ(click_.country, "");
  EXPECT_EQ(click_.referrer, "");
  ASSERT_EQ(DecodeConversion(Json(With(ConversionMembers(), "click_id", "\"\""))), "ok");
  EXPECT_EQ(conversion_.click_id, "");
}

TEST_F(JsonDecodeTest, DetailsNeverCarryPersonalValues) {
  EXPECT_EQ(DecodeClick(Json(With(ClickMembers(), "ip", "\"10.99.88.77x\""))), "invalid_value");
  EXPECT_THAT(Detail(), ::testing::Not(HasSubstr("10.99")));
  EXPECT_EQ(DecodeClick(Json(With(ClickMembers(), "user_id", "\"secret\\u0001\""))),
            "invalid_value");
  EXPECT_THAT(Detail(), ::testing::Not(HasSubstr("secret")));
}

// ---- reuse ----------------------------------------------------------------------------------

TEST_F(JsonDecodeTest, ReuseLeavesNothingBehind) {
  Members big = With(ClickMembers(), "sub_ids", "[\"a\",\"b\",\"c\",\"d\",\"e\"]");
  big = With(big, "user_agent", Quote(std::string(1000, 'u')));
  ASSERT_EQ(DecodeClick(Json(big)), "ok");
  ASSERT_EQ(click_.sub_ids.size(), 5u);
  Members small = ClickMembers();
  for (const char* f : {"user_agent", "referrer", "sub_ids", "country"}) small = Without(small, f);
  ASSERT_EQ(DecodeClick(Json(small)), "ok");
  Click expected;
  expected.click_id = "c-1";
  expected.event_time_ms = 1'767'225'600'000;
  expected.affiliate_id = "aff-17";
  expected.offer_id = "off-3";
  expected.user_id = "u-8812";
  expected.ip = testing::Ip("203.0.113.7");
  EXPECT_EQ(click_, expected);
  // Fewer sub_ids than last time.
  ASSERT_EQ(DecodeClick(Json(big)), "ok");
  ASSERT_EQ(DecodeClick(Json(With(ClickMembers(), "sub_ids", "[\"z\"]"))), "ok");
  EXPECT_THAT(click_.sub_ids, ::testing::ElementsAre("z"));
  // A failed decode in between does not matter either.
  EXPECT_EQ(DecodeClick(Json(With(big, "sub_ids", "[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\"]"))),
            "field_too_long");
  ASSERT_EQ(DecodeClick(Json(small)), "ok");
  EXPECT_EQ(click_, expected);

  ASSERT_EQ(DecodeConversion(Json(ConversionMembers())), "ok");
  ASSERT_EQ(DecodeConversion(Json(Without(ConversionMembers(), "click_id"))), "ok");
  EXPECT_EQ(conversion_.click_id, "");
  ASSERT_EQ(DecodeConversion(Json(Without(ConversionMembers(), "user_id"))), "ok");
  EXPECT_EQ(conversion_.user_id, "");
}

TEST_F(JsonDecodeTest, ShortPayloadAfterLongOneSeesNoStaleBytes) {
  // A number cut at the end of the input must not run on into the bytes of
  // the previous (longer) payload still in the reused buffer.
  ASSERT_EQ(DecodeClick(Json(With(ClickMembers(), "pad", Quote(std::string(500, '9'))))), "ok");
  EXPECT_EQ(DecodeClick("{\"ts\":17"), "malformed_payload");
  EXPECT_EQ(DecodeClick("{\"ts\":1767225600000"), "malformed_payload");
}

}  // namespace
}  // namespace tally
