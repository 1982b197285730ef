// Encoding, round trips in both formats, compatibility with protoc's
// generated classes in both directions, the output types, wire format names.
#include "processor/codec/codec.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "processor/codec/internal/json_codec.h"
#include "tally/v1/events.pb.h"
#include "tests/codec/test_events.h"

namespace tally {
namespace {

using ::tally::testing::FullClick;
using ::tally::testing::FullCommission;
using ::tally::testing::FullConversion;
using ::tally::testing::FullRejected;
using ::tally::testing::FullUnattributed;
using ::tally::testing::MinimalClick;
using ::tally::testing::ReasonOf;
using ::testing::HasSubstr;

TEST(WireFormatTest, NamesRoundTrip) {
  for (const WireFormat f : {WireFormat::kJson, WireFormat::kProtobuf}) {
    auto parsed = ParseWireFormat(WireFormatName(f));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, f);
  }
  EXPECT_STREQ(WireFormatName(WireFormat::kJson), "json");
  EXPECT_STREQ(WireFormatName(WireFormat::kProtobuf), "protobuf");
  // The content-type header of the outputs (a contract, schemas/README.md).
  EXPECT_STREQ(WireFormatContentType(WireFormat::kJson), "application/json");
  EXPECT_STREQ(WireFormatContentType(WireFormat::kProtobuf), "application/x-protobuf");
}

TEST(WireFormatTest, UnknownNameIsInvalidArgumentNamingIt) {
  for (const char* name : {"JSON", "proto", "", "avro"}) {
    auto parsed = ParseWireFormat(name);
    ASSERT_FALSE(parsed.ok()) << name;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr(std::string("'") + name + "'"));
  }
}

// ---- round trips -----------------------------------------------------------------

class RoundTripTest : public ::testing::TestWithParam<WireFormat> {
 protected:
  template <typename Event>
  void ExpectRoundTrip(const Event& event) {
    EventEncoder encoder(GetParam());
    EventDecoder decoder(GetParam());
    std::string bytes;
    encoder.Encode(event, &bytes);
    Event decoded;
    const auto invalid = decoder.Decode(bytes, &decoded);
    ASSERT_FALSE(invalid.has_value()) << invalid->detail << "\n" << bytes;
    EXPECT_EQ(decoded, event) << bytes;
    // Encoding replaces the output.
    std::string again = "stale";
    encoder.Encode(decoded, &again);
    EXPECT_EQ(again, bytes);
  }
};

TEST_P(RoundTripTest, Click) {
  ExpectRoundTrip(FullClick());
  ExpectRoundTrip(MinimalClick());
  Click c = MinimalClick();
  c.user_agent = std::string("ctl\x01\x1f\x7f tab\t nl\n", 16);
  c.ip = testing::Ip("::ffff:10.0.0.1");
  ExpectRoundTrip(c);
}

TEST_P(RoundTripTest, Conversion) {
  ExpectRoundTrip(FullConversion());
  Conversion c = FullConversion();
  c.click_id.clear();
  c.amount.minor = 0;
  c.status = ConversionStatus::kPending;
  ExpectRoundTrip(c);
  c = FullConversion();
  c.user_id.clear();
  c.status = ConversionStatus::kReversed;
  c.amount.minor = 1'000'000'000'000'000;
  ExpectRoundTrip(c);
}

TEST_P(RoundTripTest, Commission) {
  ExpectRoundTrip(FullCommission());
  Commission zeros;  // every implicit-presence field at its default
  zeros.credit_ppm = 0;
  zeros.click_count = 0;
  ExpectRoundTrip(zeros);
  Commission negative = FullCommission();
  negative.credit_ppm = -5;
  negative.click_count = INT32_MIN;
  negative.payout.minor = INT64_MIN;
  negative.sub_ids.clear();
  ExpectRoundTrip(negative);
  Commission revshare = FullCommission();
  revshare.basis = PayoutBasis::kRevshare;
  revshare.rate = 10'000;
  revshare.override_applied = true;
  ExpectRoundTrip(revshare);
  Commission unknown_basis = FullCommission();  // a re-emit of pre-v1.1 state
  unknown_basis.basis = PayoutBasis::kUnknown;
  unknown_basis.rate = 0;
  unknown_basis.base = Money{};
  unknown_basis.offer_version.clear();
  ExpectRoundTrip(unknown_basis);
  for (const AttributionModel m :
       {AttributionModel::kLastClick, AttributionModel::kFirstClick, AttributionModel::kLinear,
        AttributionModel::kTimeDecay, AttributionModel::kPositionBased}) {
    Commission c = FullCommission();
    c.model = m;
    ExpectRoundTrip(c);
  }
}

TEST_P(RoundTripTest, Rejected) {
  ExpectRoundTrip(FullRejected());
  for (const RejectReason r : AllRejectReasons()) {
    RejectedEvent e = FullRejected();
    e.reason = r;
    e.source_partition = 0;
    e.source_offset = 0;
    e.original_key.clear();
    ExpectRoundTrip(e);
  }
  // Base64 of every remainder length.
  for (size_t n = 0; n < 7; ++n) {
    RejectedEvent e = FullRejected();
    e.original_value = std::string(n, '\xfb');
    ExpectRoundTrip(e);
  }
  // Larger than any input limit: the limit is for input topics only.
  RejectedEvent big = FullRejected();
  big.reason = RejectReason::kPayloadTooLarge;
  big.original_value = std::string(200'000, '{');
  ExpectRoundTrip(big);
}

TEST_P(RoundTripTest, Unattributed) {
  ExpectRoundTrip(FullUnattributed());
  for (const UnattributedReason r :
       {UnattributedReason::kClickNotFound, UnattributedReason::kOutsideWindow,
        UnattributedReason::kNoUserClicks}) {
    UnattributedConversion u = FullUnattributed();
    u.reason = r;
    u.detail.clear();
    ExpectRoundTrip(u);
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, RoundTripTest,
                         ::testing::Values(WireFormat::kJson, WireFormat::kProtobuf),
                         [](const auto& p) {
                           return std::string(p.param == WireFormat::kJson ? "Json" : "Protobuf");
                         });

// ---- JSON text --------------------------------------------------------------------

TEST(JsonEncodeTest, ClickMembersInContractOrder) {
  EventEncoder encoder(WireFormat::kJson);
  std::string out;
  encoder.Encode(FullClick(), &out);
  EXPECT_EQ(
      out,
      "{\"click_id\":\"c-0123456789abcdef\",\"ts\":1767225600000,\"affiliate_id\":\"aff-17\","
      "\"offer_id\":\"off-3\",\"user_id\":\"u-8812 \xC3\xA9t\xC3\xA9\",\"ip\":\"203.0.113.7\","
      "\"user_agent\":\"Mozilla/5.0 (X11; Linux x86_64) \\\"quoted\\\" \\\\ back\","
      "\"referrer\":\"https://blog.example/post?a=1&b=2\","
      "\"sub_ids\":[\"summer\",\"banner2\",\"\"],\"country\":\"DE\"}");
  encoder.Encode(MinimalClick(), &out);
  EXPECT_EQ(out,
            "{\"click_id\":\"c1\",\"ts\":946684800000,\"affiliate_id\":\"a\",\"offer_id\":\"o\","
            "\"user_id\":\"u\",\"ip\":\"2001:db8::1\"}");
}

TEST(JsonEncodeTest, ConversionAndOutputShapes) {
  EventEncoder encoder(WireFormat::kJson);
  std::string out;
  Conversion c = FullConversion();
  c.user_id.clear();
  encoder.Encode(c, &out);
  EXPECT_EQ(out,
            "{\"conversion_id\":\"ord-9912\",\"ts\":1767225900000,\"offer_id\":\"off-3\","
            "\"click_id\":\"c-0123456789abcdef\",\"goal\":\"sale\",\"amount\":4599,"
            "\"currency\":\"EUR\",\"status\":\"approved\"}");
  encoder.Encode(FullCommission(), &out);
  EXPECT_EQ(out,
            "{\"commission_id\":\"cm-1\",\"conversion_id\":\"ord-9912\",\"offer_id\":\"off-3\","
            "\"goal\":\"sale\",\"click_id\":\"c-1\",\"affiliate_id\":\"aff-17\","
            "\"sub_ids\":[\"s1\",\"s2\"],\"click_ts\":1767225600000,"
            "\"conversion_ts\":1767225900000,\"amount\":-1250,\"currency\":\"JPY\","
            "\"status\":\"reversed\",\"model\":\"position_based\",\"credit_ppm\":400000,"
            "\"click_count\":3,\"basis\":\"cpa\",\"rate\":3750,\"base_amount\":129900,"
            "\"base_currency\":\"JPY\",\"override_applied\":false,\"offer_version\":"
            "\"0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0\","
            "\"produced_at\":1767225901234}");
  RejectedEvent r;
  r.reason = RejectReason::kMissingField;
  r.detail = "missing required field 'ip'";
  r.source_topic = "clicks";
  r.source_partition = 2;
  r.source_offset = 41;
  r.original_key = "k1";
  r.original_value = "{\"a\"}";
  r.rejected_at_ms = 5;
  encoder.Encode(r, &out);
  EXPECT_EQ(out,
            "{\"reason\":\"missing_field\",\"detail\":\"missing required field 'ip'\","
            "\"source_topic\":\"clicks\",\"source_partition\":2,\"source_offset\":41,"
            "\"original_key_b64\":\"azE=\",\"original_value_b64\":\"eyJhIn0=\","
            "\"rejected_at\":5,\"original_key_size\":0,\"original_key_sha256\":\"\","
            "\"original_key_truncated\":false,\"original_value_size\":0,"
            "\"original_value_sha256\":\"\",\"original_value_truncated\":false,"
            "\"produced_at\":0}");
  r.original_value_size = 900'000;
  r.original_value_sha256 = std::string(64, 'f');
  r.original_value_truncated = true;
  encoder.Encode(r, &out);
  EXPECT_THAT(out,
              ::testing::EndsWith("\"original_value_size\":900000,\"original_value_sha256\":\"" +
                                  std::string(64, 'f') +
                                  "\",\"original_value_truncated\":true,\"produced_at\":0}"));
  UnattributedConversion u;
  u.conversion = c;
  u.reason = UnattributedReason::kOutsideWindow;
  u.detail = "d";
  encoder.Encode(u, &out);
  EXPECT_THAT(out, ::testing::StartsWith("{\"conversion\":{\"conversion_id\":\"ord-9912\","));
  EXPECT_THAT(out, ::testing::EndsWith(
                       "},\"reason\":\"outside_window\",\"detail\":\"d\",\"produced_at\":0}"));
}

// Contract v1.1 is additions only: a v1.0 commission (no basis, no
// produced_at) still decodes, as basis unknown; and a commission whose basis
// is unknown (a status change of one a v1.0 build emitted) is written without
// the basis members rather than with made-up ones.
TEST(JsonEncodeTest, CommissionWithoutBasisIsTheV10Shape) {
  EventDecoder decoder(WireFormat::kJson);
  EventEncoder encoder(WireFormat::kJson);
  const std::string v10 =
      "{\"commission_id\":\"cm-1\",\"conversion_id\":\"o\",\"offer_id\":\"f\",\"goal\":\"sale\","
      "\"click_id\":\"c\",\"affiliate_id\":\"a\",\"click_ts\":1767225600000,"
      "\"conversion_ts\":1767225900000,\"amount\":-1250,\"currency\":\"JPY\","
      "\"status\":\"reversed\",\"model\":\"last_click\",\"credit_ppm\":1000000,"
      "\"click_count\":1}";
  Commission c;
  ASSERT_EQ(ReasonOf(decoder.Decode(v10, &c)), "ok");
  EXPECT_EQ(c.basis, PayoutBasis::kUnknown);
  EXPECT_EQ(c.produced_at_ms, 0);
  c.produced_at_ms = 1'767'225'901'234;
  std::string out;
  encoder.Encode(c, &out);
  EXPECT_EQ(out, v10.substr(0, v10.size() - 1) + ",\"produced_at\":1767225901234}");
  EXPECT_EQ(ReasonOf(decoder.Decode(
                "{\"status\":\"approved\",\"model\":\"linear\",\"basis\":\"flat\"}", &c)),
            "invalid_value");
  EXPECT_EQ(ReasonOf(decoder.Decode("{\"status\":\"approved\",\"model\":\"linear\","
                                    "\"override_applied\":1}",
                                    &c)),
            "wrong_type");
}

TEST(JsonEncodeTest, EscapesPerRfc8259) {
  std::string out;
  codec_internal::AppendJsonString(&out, std::string("a\"b\\c/\x01\x1f\n\x7f\xC3\xA9", 12));
  EXPECT_EQ(out, "\"a\\\"b\\\\c/\\u0001\\u001f\\u000a\x7f\xC3\xA9\"");
}

// ---- output types: decoding is structural -------------------------------------------

TEST(OutputDecodeTest, JsonRejectsBadNamesAndTypes) {
  EventDecoder decoder(WireFormat::kJson);
  RejectedEvent r;
  EXPECT_EQ(ReasonOf(decoder.Decode("{\"reason\":\"nope\"}", &r)), "invalid_value");
  EXPECT_EQ(
      ReasonOf(decoder.Decode("{\"reason\":\"missing_field\",\"original_value_b64\":\"abc\"}", &r)),
      "invalid_value");
  EXPECT_EQ(
      ReasonOf(decoder.Decode("{\"reason\":\"missing_field\",\"source_partition\":\"1\"}", &r)),
      "wrong_type");
  EXPECT_EQ(ReasonOf(decoder.Decode("{\"detail\":\"x\"}", &r)), "missing_field");
  EXPECT_EQ(ReasonOf(decoder.Decode(
                "{\"reason\":\"missing_field\",\"original_value_sha256\":\"ABC\"}", &r)),
            "invalid_value");
  EXPECT_EQ(
      ReasonOf(decoder.Decode("{\"reason\":\"missing_field\",\"original_value_size\":-1}", &r)),
      "invalid_value");
  EXPECT_EQ(
      ReasonOf(decoder.Decode("{\"reason\":\"missing_field\",\"original_key_truncated\":1}", &r)),
      "wrong_type");
  // A record from before the size/hash/truncated members: whole bytes.
  ASSERT_EQ(ReasonOf(decoder.Decode("{\"reason\":\"missing_field\",\"original_value_b64\":"
                                    "\"YWJj\"}",
                                    &r)),
            "ok");
  EXPECT_EQ(r.original_value, "abc");
  EXPECT_EQ(r.original_value_size, 0);
  EXPECT_FALSE(r.original_value_truncated);
  EXPECT_EQ(ReasonOf(decoder.Decode("[]", &r)), "malformed_payload");
  Commission c;
  EXPECT_EQ(ReasonOf(decoder.Decode("{\"status\":\"approved\",\"model\":\"best\"}", &c)),
            "invalid_value");
  EXPECT_EQ(ReasonOf(decoder.Decode("{\"status\":\"approved\",\"model\":\"linear\","
                                    "\"credit_ppm\":2147483648}",
                                    &c)),
            "invalid_value");
  EXPECT_EQ(ReasonOf(decoder.Decode("{\"status\":\"approved\",\"model\":\"linear\"}", &c)), "ok");
  UnattributedConversion u;
  EXPECT_EQ(ReasonOf(decoder.Decode("{\"conversion\":[],\"reason\":\"outside_window\"}", &u)),
            "wrong_type");
  EXPECT_EQ(ReasonOf(decoder.Decode("{\"conversion\":{\"status\":\"pending\",\"currency\":\"EUX\"},"
                                    "\"reason\":\"outside_window\"}",
                                    &u)),
            "invalid_currency");
  EXPECT_EQ(ReasonOf(decoder.Decode("{\"reason\":\"outside_window\"}", &u)), "missing_field");
}

TEST(OutputDecodeTest, ProtobufRejectsBadNames) {
  EventDecoder decoder(WireFormat::kProtobuf);
  v1::Rejected r;
  r.set_reason("nope");
  RejectedEvent event;
  EXPECT_EQ(ReasonOf(decoder.Decode(r.SerializeAsString(), &event)), "invalid_value");
  r.clear_reason();
  EXPECT_EQ(ReasonOf(decoder.Decode(r.SerializeAsString(), &event)), "missing_field");
  v1::Commission c;
  c.set_status(v1::CONVERSION_STATUS_PENDING);
  c.set_model("best");
  Commission commission;
  EXPECT_EQ(ReasonOf(decoder.Decode(c.SerializeAsString(), &commission)), "invalid_value");
  v1::Unattributed u;
  u.set_reason("outside_window");
  UnattributedConversion unattributed;
  EXPECT_EQ(ReasonOf(decoder.Decode(u.SerializeAsString(), &unattributed)), "missing_field");
  std::string nested_garbage = u.SerializeAsString() + std::string("\x0a\x02\x07\x00", 4);
  EXPECT_EQ(ReasonOf(decoder.Decode(nested_garbage, &unattributed)), "malformed_payload");
}

// ---- compatibility with protoc's generated classes ------------------------------------

v1::ConversionStatus PbStatus(ConversionStatus s) {
  switch (s) {
    case ConversionStatus::kPending:
      return v1::CONVERSION_STATUS_PENDING;
    case ConversionStatus::kApproved:
      return v1::CONVERSION_STATUS_APPROVED;
    case ConversionStatus::kReversed:
      return v1::CONVERSION_STATUS_REVERSED;
  }
  return v1::CONVERSION_STATUS_UNSPECIFIED;
}

void ExpectSame(const v1::Conversion& pb, const Conversion& c) {
  EXPECT_EQ(pb.conversion_id(), c.conversion_id);
  ASSERT_TRUE(pb.has_ts());
  EXPECT_EQ(pb.ts(), c.event_time_ms);
  EXPECT_EQ(pb.offer_id(), c.offer_id);
  EXPECT_EQ(pb.click_id(), c.click_id);
  EXPECT_EQ(pb.user_id(), c.user_id);
  EXPECT_EQ(pb.goal(), c.goal);
  ASSERT_TRUE(pb.has_amount());
  EXPECT_EQ(pb.amount(), c.amount.minor);
  EXPECT_EQ(pb.currency(), c.amount.currency.code());
  EXPECT_EQ(pb.status(), PbStatus(c.status));
}

v1::Conversion ToPb(const Conversion& c) {
  v1::Conversion pb;
  pb.set_conversion_id(c.conversion_id);
  pb.set_ts(c.event_time_ms);
  pb.set_offer_id(c.offer_id);
  pb.set_click_id(c.click_id);
  pb.set_user_id(c.user_id);
  pb.set_goal(c.goal);
  pb.set_amount(c.amount.minor);
  pb.set_currency(std::string(c.amount.currency.code()));
  pb.set_status(PbStatus(c.status));
  return pb;
}

class ProtocCompatTest : public ::testing::Test {
 protected:
  EventEncoder encoder_{WireFormat::kProtobuf};
  EventDecoder decoder_{WireFormat::kProtobuf};
  std::string bytes_;
};

TEST_F(ProtocCompatTest, Click) {
  for (const Click& c : {FullClick(), MinimalClick()}) {
    encoder_.Encode(c, &bytes_);
    v1::Click pb;
    ASSERT_TRUE(pb.ParseFromString(bytes_));
    EXPECT_EQ(pb.click_id(), c.click_id);
    ASSERT_TRUE(pb.has_ts());
    EXPECT_EQ(pb.ts(), c.event_time_ms);
    EXPECT_EQ(pb.affiliate_id(), c.affiliate_id);
    EXPECT_EQ(pb.offer_id(), c.offer_id);
    EXPECT_EQ(pb.user_id(), c.user_id);
    EXPECT_EQ(pb.ip(), c.ip.ToString());
    EXPECT_EQ(pb.user_agent(), c.user_agent);
    EXPECT_EQ(pb.referrer(), c.referrer);
    EXPECT_THAT(pb.sub_ids(), ::testing::ElementsAreArray(c.sub_ids));
    EXPECT_EQ(pb.country(), c.country);
    // protoc writes the very same bytes (field order, proto3 defaults).
    EXPECT_EQ(pb.SerializeAsString(), bytes_);
    // And the other way round.
    Click decoded;
    ASSERT_EQ(ReasonOf(decoder_.Decode(pb.SerializeAsString(), &decoded)), "ok");
    EXPECT_EQ(decoded, c);
  }
}

TEST_F(ProtocCompatTest, Conversion) {
  Conversion user_only = FullConversion();
  user_only.click_id.clear();
  user_only.amount.minor = 0;  // explicit presence: still written
  for (const Conversion& c : {FullConversion(), user_only}) {
    encoder_.Encode(c, &bytes_);
    v1::Conversion pb;
    ASSERT_TRUE(pb.ParseFromString(bytes_));
    ExpectSame(pb, c);
    EXPECT_EQ(pb.SerializeAsString(), bytes_);
    Conversion decoded;
    ASSERT_EQ(ReasonOf(decoder_.Decode(ToPb(c).SerializeAsString(), &decoded)), "ok");
    EXPECT_EQ(decoded, c);
  }
}

TEST_F(ProtocCompatTest, Commission) {
  Commission negative = FullCommission();
  negative.credit_ppm = -1;
  negative.click_count = 0;
  for (const Commission& c : {FullCommission(), negative}) {
    encoder_.Encode(c, &bytes_);
    v1::Commission pb;
    ASSERT_TRUE(pb.ParseFromString(bytes_));
    EXPECT_EQ(pb.commission_id(), c.commission_id);
    EXPECT_EQ(pb.conversion_id(), c.conversion_id);
    EXPECT_EQ(pb.offer_id(), c.offer_id);
    EXPECT_EQ(pb.goal(), c.goal);
    EXPECT_EQ(pb.click_id(), c.click_id);
    EXPECT_EQ(pb.affiliate_id(), c.affiliate_id);
    EXPECT_THAT(pb.sub_ids(), ::testing::ElementsAreArray(c.sub_ids));
    EXPECT_EQ(pb.click_ts(), c.click_time_ms);
    EXPECT_EQ(pb.conversion_ts(), c.conversion_time_ms);
    EXPECT_EQ(pb.amount(), c.payout.minor);
    EXPECT_EQ(pb.currency(), c.payout.currency.code());
    EXPECT_EQ(pb.status(), PbStatus(c.status));
    EXPECT_EQ(pb.model(), AttributionModelName(c.model));
    EXPECT_EQ(pb.credit_ppm(), c.credit_ppm);
    EXPECT_EQ(pb.click_count(), c.click_count);
    EXPECT_EQ(pb.basis(), PayoutBasisName(c.basis));
    EXPECT_EQ(pb.rate(), c.rate);
    EXPECT_EQ(pb.base_amount(), c.base.minor);
    EXPECT_EQ(pb.base_currency(), c.base.currency.code());
    EXPECT_EQ(pb.override_applied(), c.override_applied);
    EXPECT_EQ(pb.offer_version(), c.offer_version);
    EXPECT_EQ(pb.produced_at(), c.produced_at_ms);
    EXPECT_EQ(pb.SerializeAsString(), bytes_);
    Commission decoded;
    ASSERT_EQ(ReasonOf(decoder_.Decode(pb.SerializeAsString(), &decoded)), "ok");
    EXPECT_EQ(decoded, c);
  }
}

TEST_F(ProtocCompatTest, Rejected) {
  RejectedEvent negative = FullRejected();
  negative.source_partition = -1;
  negative.source_offset = -1;
  for (const RejectedEvent& r : {FullRejected(), negative}) {
    encoder_.Encode(r, &bytes_);
    v1::Rejected pb;
    ASSERT_TRUE(pb.ParseFromString(bytes_));
    EXPECT_EQ(pb.reason(), RejectReasonName(r.reason));
    EXPECT_EQ(pb.detail(), r.detail);
    EXPECT_EQ(pb.source_topic(), r.source_topic);
    EXPECT_EQ(pb.source_partition(), r.source_partition);
    EXPECT_EQ(pb.source_offset(), r.source_offset);
    EXPECT_EQ(pb.original_key(), r.original_key);
    EXPECT_EQ(pb.original_value(), r.original_value);
    EXPECT_EQ(pb.rejected_at(), r.rejected_at_ms);
    EXPECT_EQ(pb.original_key_size(), r.original_key_size);
    EXPECT_EQ(pb.original_key_sha256(), r.original_key_sha256);
    EXPECT_EQ(pb.original_key_truncated(), r.original_key_truncated);
    EXPECT_EQ(pb.original_value_size(), r.original_value_size);
    EXPECT_EQ(pb.original_value_sha256(), r.original_value_sha256);
    EXPECT_EQ(pb.original_value_truncated(), r.original_value_truncated);
    EXPECT_EQ(pb.produced_at(), r.produced_at_ms);
    EXPECT_EQ(pb.SerializeAsString(), bytes_);
    RejectedEvent decoded;
    ASSERT_EQ(ReasonOf(decoder_.Decode(pb.SerializeAsString(), &decoded)), "ok");
    EXPECT_EQ(decoded, r);
  }
}

TEST_F(ProtocCompatTest, Unattributed) {
  const UnattributedConversion u = FullUnattributed();
  encoder_.Encode(u, &bytes_);
  v1::Unattributed pb;
  ASSERT_TRUE(pb.ParseFromString(bytes_));
  ASSERT_TRUE(pb.has_conversion());
  ExpectSame(pb.conversion(), u.conversion);
  EXPECT_EQ(pb.reason(), UnattributedReasonName(u.reason));
  EXPECT_EQ(pb.detail(), u.detail);
  EXPECT_EQ(pb.produced_at(), u.produced_at_ms);
  EXPECT_EQ(pb.SerializeAsString(), bytes_);
  UnattributedConversion decoded;
  ASSERT_EQ(ReasonOf(decoder_.Decode(pb.SerializeAsString(), &decoded)), "ok");
  EXPECT_EQ(decoded, u);
}

TEST_F(ProtocCompatTest, GeneratedMessagesWithUnknownFieldsStillDecode) {
  // A newer writer's field (number 11) arrives as an unknown field.
  v1::Click pb;
  ASSERT_TRUE(pb.ParseFromString([&] {
    encoder_.Encode(FullClick(), &bytes_);
    return bytes_;
  }()));
  std::string with_future = pb.SerializeAsString() + std::string("\x58\x01\x62\x03new", 7);
  Click decoded;
  ASSERT_EQ(ReasonOf(decoder_.Decode(with_future, &decoded)), "ok");
  EXPECT_EQ(decoded, FullClick());
}

}  // namespace
}  // namespace tally
