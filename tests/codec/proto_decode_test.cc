// Protobuf decoding: wire-level errors, every reject reason protobuf can
// express, unknown fields of every wire type, proto3 presence rules, reuse.
// Bad payloads are built with the generated classes where they can express
// the defect, and byte by byte where they cannot.
#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "processor/codec/codec.h"
#include "tally/v1/events.pb.h"
#include "tests/codec/test_events.h"

namespace tally {
namespace {

using ::tally::testing::ReasonOf;
using ::testing::HasSubstr;

void Varint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

void Tag(std::string* out, uint32_t number, int wire_type) {
  Varint(out, (uint64_t{number} << 3) | static_cast<uint64_t>(wire_type));
}

void Bytes(std::string* out, uint32_t number, std::string_view bytes) {
  Tag(out, number, 2);
  Varint(out, bytes.size());
  out->append(bytes);
}

void Int(std::string* out, uint32_t number, uint64_t value) {
  Tag(out, number, 0);
  Varint(out, value);
}

v1::Click PbClick() {
  v1::Click c;
  c.set_click_id("c-1");
  c.set_ts(1'767'225'600'000);
  c.set_affiliate_id("aff-17");
  c.set_offer_id("off-3");
  c.set_user_id("u-8812");
  c.set_ip("203.0.113.7");
  c.set_user_agent("Mozilla/5.0");
  c.set_referrer("https://r.example/");
  c.add_sub_ids("a");
  c.add_sub_ids("b");
  c.set_country("DE");
  return c;
}

v1::Conversion PbConversion() {
  v1::Conversion c;
  c.set_conversion_id("ord-1");
  c.set_ts(1'767'225'900'000);
  c.set_offer_id("off-3");
  c.set_click_id("c-1");
  c.set_user_id("u-8812");
  c.set_goal("sale");
  c.set_amount(4599);
  c.set_currency("EUR");
  c.set_status(v1::CONVERSION_STATUS_APPROVED);
  return c;
}

class ProtoDecodeTest : public ::testing::Test {
 protected:
  std::string Decode(const v1::Click& c) { return DecodeClick(c.SerializeAsString()); }
  std::string Decode(const v1::Conversion& c) { return DecodeConversion(c.SerializeAsString()); }
  std::string DecodeClick(const std::string& payload) {
    last_ = decoder_.Decode(payload, &click_);
    return ReasonOf(last_);
  }
  std::string DecodeConversion(const std::string& payload) {
    last_ = decoder_.Decode(payload, &conversion_);
    return ReasonOf(last_);
  }
  std::string Detail() const { return last_ ? last_->detail : ""; }

  EventDecoder decoder_{WireFormat::kProtobuf};
  Click click_;
  Conversion conversion_;
  std::optional<Invalid> last_;
};

TEST_F(ProtoDecodeTest, ValidEventsDecode) {
  ASSERT_EQ(Decode(PbClick()), "ok") << Detail();
  EXPECT_EQ(click_.click_id, "c-1");
  EXPECT_EQ(click_.event_time_ms, 1'767'225'600'000);
  EXPECT_EQ(click_.ip.ToString(), "203.0.113.7");
  EXPECT_THAT(click_.sub_ids, ::testing::ElementsAre("a", "b"));
  EXPECT_EQ(click_.country, "DE");
  ASSERT_EQ(Decode(PbConversion()), "ok") << Detail();
  EXPECT_EQ(conversion_.amount.minor, 4599);
  EXPECT_EQ(conversion_.amount.currency.code(), "EUR");
  EXPECT_EQ(conversion_.status, ConversionStatus::kApproved);
}

// ---- payload_too_large ----------------------------------------------------------

TEST_F(ProtoDecodeTest, PayloadTooLargeComesFirst) {
  DecodeLimits limits;
  limits.max_payload_bytes = 100;
  EventDecoder decoder(WireFormat::kProtobuf, limits);
  std::string payload = PbClick().SerializeAsString();
  Bytes(&payload, 2047, std::string(100 - payload.size() - 3, 'x'));  // 2-byte tag, 1-byte length
  ASSERT_EQ(payload.size(), 100u);
  EXPECT_EQ(ReasonOf(decoder.Decode(payload, &click_)), "ok");
  payload.push_back('\x07');  // also malformed, but too large first
  auto invalid = decoder.Decode(payload, &click_);
  EXPECT_EQ(ReasonOf(invalid), "payload_too_large");
  EXPECT_EQ(invalid->detail, "payload of 101 bytes exceeds limits.max_payload_bytes=100");
}

// ---- malformed_payload ----------------------------------------------------------

TEST_F(ProtoDecodeTest, WireLevelErrorsAreMalformed) {
  const std::string valid = PbClick().SerializeAsString();
  std::string long_varint = valid;
  Tag(&long_varint, 99, 0);
  long_varint += std::string(10, '\x80') + '\x01';  // 11 bytes
  std::string group = valid;
  Tag(&group, 99, 3);
  Tag(&group, 99, 4);
  std::string end_group = valid;
  Tag(&end_group, 99, 4);
  std::string field_zero = valid;
  Tag(&field_zero, 0, 0);
  Varint(&field_zero, 1);
  std::string wire6 = valid;
  Tag(&wire6, 99, 6);
  std::string wire7 = valid;
  Tag(&wire7, 99, 7);
  std::string cut_varint = valid;
  Tag(&cut_varint, 99, 0);
  cut_varint += '\x80';
  std::string cut_tag = valid + '\x80';
  std::string cut_fixed64 = valid;
  Tag(&cut_fixed64, 99, 1);
  cut_fixed64 += "1234567";
  std::string cut_fixed32 = valid;
  Tag(&cut_fixed32, 99, 5);
  cut_fixed32 += "123";
  std::string cut_length = valid;
  Tag(&cut_length, 99, 2);
  Varint(&cut_length, 10);
  cut_length += "123";
  std::string huge_length = valid;
  Tag(&huge_length, 99, 2);
  Varint(&huge_length, uint64_t{1} << 62);
  std::string huge_number = valid;
  Varint(&huge_number, (uint64_t{1} << 35) | 0);  // field number beyond 2^29-1
  Varint(&huge_number, 1);
  for (const std::string& payload :
       {long_varint, group, end_group, field_zero, wire6, wire7, cut_varint, cut_tag, cut_fixed64,
        cut_fixed32, cut_length, huge_length, huge_number, std::string("\x07garbage")}) {
    EXPECT_EQ(DecodeClick(payload), "malformed_payload");
    EXPECT_THAT(Detail(), HasSubstr("malformed protobuf"));
    EXPECT_EQ(DecodeConversion(payload), "malformed_payload");
  }
}

TEST_F(ProtoDecodeTest, TenByteVarintsAreFine) {
  v1::Click c = PbClick();
  std::string payload = c.SerializeAsString();
  Int(&payload, 99, ~uint64_t{0});  // 10 bytes
  EXPECT_EQ(DecodeClick(payload), "ok");
}

// Offsets where a field starts or the message ends, for a valid message of
// varint and length-delimited fields only.
std::set<size_t> FieldBoundaries(const std::string& bytes) {
  std::set<size_t> boundaries = {0};
  size_t pos = 0;
  auto varint = [&] {
    uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      const auto b = static_cast<uint8_t>(bytes[pos++]);
      v |= uint64_t{b & 0x7fu} << shift;
      if (b < 0x80) return v;
    }
  };
  while (pos < bytes.size()) {
    if ((varint() & 7) == 0) {
      varint();
    } else {
      pos += varint();
    }
    boundaries.insert(pos);
  }
  return boundaries;
}

TEST_F(ProtoDecodeTest, TruncationInsideAValueIsMalformed) {
  const std::string valid = PbClick().SerializeAsString();
  const std::set<size_t> boundaries = FieldBoundaries(valid);
  ASSERT_EQ(boundaries.size(), 12u);  // 11 fields (two sub_ids), plus 0
  for (size_t n = 0; n < valid.size(); ++n) {
    const std::string reason = DecodeClick(valid.substr(0, n));
    if (boundaries.count(n)) {
      // Fields dropped: fine if only optional ones went.
      EXPECT_NE(reason, "malformed_payload") << n;
    } else {
      EXPECT_EQ(reason, "malformed_payload") << n;
    }
  }
}

TEST_F(ProtoDecodeTest, WireErrorsWinOverEarlierFieldProblems) {
  v1::Click c = PbClick();
  c.set_ip("bad");
  std::string payload = c.SerializeAsString();
  payload += '\x07';
  EXPECT_EQ(DecodeClick(payload), "malformed_payload");
}

// ---- invalid_utf8 ---------------------------------------------------------------

TEST_F(ProtoDecodeTest, InvalidUtf8InAStringField) {
  for (const std::string& bad :
       std::initializer_list<std::string>{"\xC3\x28", "\xFF", "\xED\xA0\x80", "\xC0\xAF"}) {
    for (uint32_t number : {1u, 5u, 7u, 8u, 9u, 10u}) {
      std::string payload = PbClick().SerializeAsString();
      Bytes(&payload, number, "x" + bad);
      EXPECT_EQ(DecodeClick(payload), "invalid_utf8") << number;
    }
    std::string conversion = PbConversion().SerializeAsString();
    Bytes(&conversion, 6, "sale" + bad);
    EXPECT_EQ(DecodeConversion(conversion), "invalid_utf8");
    // Unknown fields are not looked into.
    std::string unknown = PbClick().SerializeAsString();
    Bytes(&unknown, 500, bad);
    EXPECT_EQ(DecodeClick(unknown), "ok");
  }
}

// ---- missing_field --------------------------------------------------------------

TEST_F(ProtoDecodeTest, EachRequiredClickFieldAbsentOrEmptyIsMissing) {
  const std::pair<const char*, void (*)(v1::Click*)> cases[] = {
      {"click_id", [](v1::Click* c) { c->clear_click_id(); }},
      {"ts", [](v1::Click* c) { c->clear_ts(); }},
      {"affiliate_id", [](v1::Click* c) { c->clear_affiliate_id(); }},
      {"offer_id", [](v1::Click* c) { c->clear_offer_id(); }},
      {"user_id", [](v1::Click* c) { c->clear_user_id(); }},
      {"ip", [](v1::Click* c) { c->clear_ip(); }},
  };
  for (const auto& [name, clear] : cases) {
    v1::Click c = PbClick();
    clear(&c);
    EXPECT_EQ(Decode(c), "missing_field") << name;
    EXPECT_EQ(Detail(), std::string("missing required field '") + name + "'");
  }
  // An explicitly written empty string is the same as none in proto3.
  std::string payload = PbClick().SerializeAsString();
  Bytes(&payload, 4, "");
  EXPECT_EQ(DecodeClick(payload), "missing_field");
  EXPECT_EQ(Detail(), "missing required field 'offer_id'");
}

TEST_F(ProtoDecodeTest, EachRequiredConversionFieldAbsentIsMissing) {
  const std::pair<const char*, void (*)(v1::Conversion*)> cases[] = {
      {"conversion_id", [](v1::Conversion* c) { c->clear_conversion_id(); }},
      {"ts", [](v1::Conversion* c) { c->clear_ts(); }},
      {"offer_id", [](v1::Conversion* c) { c->clear_offer_id(); }},
      {"goal", [](v1::Conversion* c) { c->clear_goal(); }},
      {"amount", [](v1::Conversion* c) { c->clear_amount(); }},
      {"currency", [](v1::Conversion* c) { c->clear_currency(); }},
      {"status", [](v1::Conversion* c) { c->clear_status(); }},
  };
  for (const auto& [name, clear] : cases) {
    v1::Conversion c = PbConversion();
    clear(&c);
    EXPECT_EQ(Decode(c), "missing_field") << name;
    EXPECT_EQ(Detail(), std::string("missing required field '") + name + "'");
  }
  v1::Conversion neither = PbConversion();
  neither.clear_click_id();
  neither.clear_user_id();
  EXPECT_EQ(Decode(neither), "missing_field");
  EXPECT_THAT(Detail(), HasSubstr("click_id or user_id"));
  // Status 0 written explicitly is still unspecified.
  std::string zero = PbConversion().SerializeAsString();
  Int(&zero, 9, 0);
  EXPECT_EQ(DecodeConversion(zero), "missing_field");
}

TEST_F(ProtoDecodeTest, ExplicitZeroTimestampAndAmountArePresent) {
  v1::Click c = PbClick();
  c.set_ts(0);
  EXPECT_EQ(Decode(c), "timestamp_out_of_range");
  v1::Conversion v = PbConversion();
  v.set_amount(0);
  ASSERT_EQ(Decode(v), "ok") << Detail();
  EXPECT_EQ(conversion_.amount.minor, 0);
}

// ---- wrong_type -----------------------------------------------------------------

TEST_F(ProtoDecodeTest, WrongWireTypeForAKnownFieldIsWrongType) {
  const std::pair<uint32_t, int> click_cases[] = {{1, 0}, {2, 2}, {2, 1}, {2, 5},
                                                  {6, 0}, {9, 0}, {10, 5}};
  for (const auto& [number, wire_type] : click_cases) {
    std::string payload = PbClick().SerializeAsString();
    Tag(&payload, number, wire_type);
    payload += wire_type == 0   ? std::string("\x01")
               : wire_type == 1 ? std::string(8, '\0')
               : wire_type == 5 ? std::string(4, '\0')
                                : std::string("\x01x");
    EXPECT_EQ(DecodeClick(payload), "wrong_type") << number << "/" << wire_type;
  }
  std::string status = PbConversion().SerializeAsString();
  Bytes(&status, 9, "approved");
  EXPECT_EQ(DecodeConversion(status), "wrong_type");
  EXPECT_THAT(Detail(), HasSubstr("field 'status'"));
  std::string amount = PbConversion().SerializeAsString();
  Tag(&amount, 7, 1);
  amount += std::string(8, '\0');
  EXPECT_EQ(DecodeConversion(amount), "wrong_type");
}

// ---- field_too_long ---------------------------------------------------------------

TEST_F(ProtoDecodeTest, LengthLimitsAtTheirBoundaries) {
  const std::pair<uint32_t, size_t> click_limits[] = {{1, 64},  {3, 64},   {4, 64},
                                                      {5, 128}, {7, 1024}, {8, 2048}};
  for (const auto& [number, max] : click_limits) {
    std::string ok = PbClick().SerializeAsString();
    Bytes(&ok, number, std::string(max, 'a'));
    EXPECT_EQ(DecodeClick(ok), "ok") << number;
    std::string too_long = PbClick().SerializeAsString();
    Bytes(&too_long, number, std::string(max + 1, 'a'));
    EXPECT_EQ(DecodeClick(too_long), "field_too_long") << number;
  }
  const std::pair<uint32_t, size_t> conversion_limits[] = {
      {1, 64}, {3, 64}, {4, 64}, {5, 128}, {6, 32}};
  for (const auto& [number, max] : conversion_limits) {
    std::string ok = PbConversion().SerializeAsString();
    Bytes(&ok, number, std::string(max, 'a'));
    EXPECT_EQ(DecodeConversion(ok), "ok") << number;
    std::string too_long = PbConversion().SerializeAsString();
    Bytes(&too_long, number, std::string(max + 1, 'a'));
    EXPECT_EQ(DecodeConversion(too_long), "field_too_long") << number;
  }
  v1::Click bad_chars = PbClick();
  bad_chars.set_click_id(std::string(65, '/'));
  EXPECT_EQ(Decode(bad_chars), "field_too_long");
}

TEST_F(ProtoDecodeTest, SubIdLimits) {
  v1::Click c = PbClick();
  c.clear_sub_ids();
  for (int i = 0; i < 5; ++i) c.add_sub_ids(std::string(128, 's'));
  EXPECT_EQ(Decode(c), "ok");
  c.add_sub_ids("6");
  EXPECT_EQ(Decode(c), "field_too_long");
  EXPECT_EQ(Detail(), "field 'sub_ids': 6 entries, at most 5");
  c.add_sub_ids("7");
  EXPECT_EQ(Decode(c), "field_too_long");
  EXPECT_EQ(Detail(), "field 'sub_ids': 7 entries, at most 5");
  c.clear_sub_ids();
  c.add_sub_ids(std::string(129, 's'));
  EXPECT_EQ(Decode(c), "field_too_long");
  EXPECT_THAT(Detail(), HasSubstr("129 bytes, at most 128"));
}

// ---- invalid_value / invalid_currency / timestamp_out_of_range -----------------------

TEST_F(ProtoDecodeTest, InvalidValues) {
  for (const char* country : {"de", "D1", "DEU", "1A"}) {
    v1::Click c = PbClick();
    c.set_country(country);
    EXPECT_EQ(Decode(c), "invalid_value") << country;
  }
  for (const char* ip : {"999.1.1.1", "1.2.3.4:80", "[::1]", "x"}) {
    v1::Click c = PbClick();
    c.set_ip(ip);
    EXPECT_EQ(Decode(c), "invalid_value") << ip;
    EXPECT_EQ(Detail(), "field 'ip': not an IPv4 or IPv6 address");
  }
  v1::Click control = PbClick();
  control.set_user_id("u\x07");
  EXPECT_EQ(Decode(control), "invalid_value");
  v1::Click chars = PbClick();
  chars.set_click_id("c 1");
  EXPECT_EQ(Decode(chars), "invalid_value");
  for (const int64_t amount : {int64_t{-1}, int64_t{1'000'000'000'000'001}, INT64_MAX, INT64_MIN}) {
    v1::Conversion v = PbConversion();
    v.set_amount(amount);
    EXPECT_EQ(Decode(v), "invalid_value") << amount;
  }
  v1::Conversion max = PbConversion();
  max.set_amount(1'000'000'000'000'000);
  EXPECT_EQ(Decode(max), "ok");
  for (const char* goal : {"Sale!", "sale goal"}) {
    v1::Conversion v = PbConversion();
    v.set_goal(goal);
    EXPECT_EQ(Decode(v), "invalid_value") << goal;
  }
  for (const uint64_t status : {uint64_t{4}, uint64_t{99}, ~uint64_t{0}}) {
    std::string payload = PbConversion().SerializeAsString();
    Int(&payload, 9, status);
    EXPECT_EQ(DecodeConversion(payload), "invalid_value") << status;
  }
}

TEST_F(ProtoDecodeTest, InvalidCurrency) {
  for (const char* code : {"XYZ", "usd", "EU", "EURO"}) {
    v1::Conversion v = PbConversion();
    v.set_currency(code);
    EXPECT_EQ(Decode(v), "invalid_currency") << code;
  }
}

TEST_F(ProtoDecodeTest, TimestampRangeIsInclusive) {
  const DecodeLimits limits;
  for (const int64_t ts : {limits.min_event_time_ms, limits.max_event_time_ms}) {
    v1::Click c = PbClick();
    c.set_ts(ts);
    EXPECT_EQ(Decode(c), "ok");
    v1::Conversion v = PbConversion();
    v.set_ts(ts);
    EXPECT_EQ(Decode(v), "ok");
  }
  for (const int64_t ts : {limits.min_event_time_ms - 1, limits.max_event_time_ms + 1, int64_t{-1},
                           INT64_MIN, INT64_MAX}) {
    v1::Click c = PbClick();
    c.set_ts(ts);
    EXPECT_EQ(Decode(c), "timestamp_out_of_range") << ts;
    v1::Conversion v = PbConversion();
    v.set_ts(ts);
    EXPECT_EQ(Decode(v), "timestamp_out_of_range") << ts;
  }
}

// ---- forward compatibility, protobuf semantics ------------------------------------

TEST_F(ProtoDecodeTest, UnknownFieldsOfEveryWireTypeAreSkipped) {
  std::string payload;
  Int(&payload, 11, 12345);
  payload += PbClick().SerializeAsString();
  Tag(&payload, 12, 1);
  payload += std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8);
  Bytes(&payload, 13, std::string("\x00\xff nested", 9));
  Tag(&payload, 14, 5);
  payload += std::string("\xff\xff\xff\xff", 4);
  Int(&payload, 536'870'911, 1);  // the largest field number
  ASSERT_EQ(DecodeClick(payload), "ok") << Detail();
  EXPECT_EQ(click_.click_id, "c-1");
  std::string conversion = PbConversion().SerializeAsString();
  Bytes(&conversion, 100, "future");
  Int(&conversion, 10, 1);
  EXPECT_EQ(DecodeConversion(conversion), "ok") << Detail();
}

TEST_F(ProtoDecodeTest, FieldsInAnyOrderAndLastOneWins) {
  std::string payload;
  Bytes(&payload, 10, "FR");
  Bytes(&payload, 6, "10.0.0.1");
  Bytes(&payload, 5, "u");
  Bytes(&payload, 4, "o");
  Bytes(&payload, 3, "a");
  Int(&payload, 2, 1'767'225'600'000);
  Bytes(&payload, 1, "first");
  Bytes(&payload, 1, "second");
  Bytes(&payload, 10, "DE");
  ASSERT_EQ(DecodeClick(payload), "ok") << Detail();
  EXPECT_EQ(click_.click_id, "second");
  EXPECT_EQ(click_.country, "DE");
  EXPECT_EQ(click_.ip.ToString(), "10.0.0.1");
}

TEST_F(ProtoDecodeTest, ReuseLeavesNothingBehind) {
  ASSERT_EQ(Decode(PbClick()), "ok");
  v1::Click small = PbClick();
  small.clear_user_agent();
  small.clear_referrer();
  small.clear_sub_ids();
  small.clear_country();
  ASSERT_EQ(Decode(small), "ok");
  EXPECT_EQ(click_.user_agent, "");
  EXPECT_EQ(click_.referrer, "");
  EXPECT_TRUE(click_.sub_ids.empty());
  EXPECT_EQ(click_.country, "");
  v1::Click one = PbClick();
  one.clear_sub_ids();
  one.add_sub_ids("z");
  ASSERT_EQ(Decode(PbClick()), "ok");
  ASSERT_EQ(Decode(one), "ok");
  EXPECT_THAT(click_.sub_ids, ::testing::ElementsAre("z"));

  ASSERT_EQ(Decode(PbConversion()), "ok");
  v1::Conversion user_only = PbConversion();
  user_only.clear_click_id();
  ASSERT_EQ(Decode(user_only), "ok");
  EXPECT_EQ(conversion_.click_id, "");
  EXPECT_EQ(conversion_.user_id, "u-8812");
}

}  // namespace
}  // namespace tally
