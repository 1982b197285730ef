// The ground truth against the real codec: every message tally-loadgen
// produces decodes exactly as its truth record says (valid ones to the same
// event, bad ones to exactly the recorded reject reason), in both formats.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "processor/codec/codec.h"
#include "processor/model/events.h"
#include "processor/model/reject_reason.h"
#include "tools/loadgen/codec_encoder.h"
#include "tools/loadgen/defects.h"
#include "tools/loadgen/generator.h"

namespace tally::loadgen {
namespace {

std::string ReasonOf(const std::optional<Invalid>& invalid) {
  return invalid.has_value() ? std::string(RejectReasonName(invalid->reason)) : "ok";
}

ClickSpec ClickTemplate() {
  return ClickSpec{"c-0123456789abcdef",
                   1'767'225'600'000,
                   "aff-17",
                   "off-3",
                   "u-8812",
                   "203.0.113.7",
                   "Mozilla/5.0 (X11; Linux x86_64)",
                   "https://blog.example/post",
                   {"summer", "banner2"},
                   "DE"};
}

ConversionSpec ConversionTemplate(bool with_click_id, bool with_user_id) {
  ConversionSpec c;
  c.conversion_id = "ord-9912";
  c.ts = 1'767'225'900'000;
  c.offer_id = "off-3";
  if (with_click_id) c.click_id = "c-0123456789abcdef";
  if (with_user_id) c.user_id = "u-8812";
  c.goal = "sale";
  c.amount = 4599;
  c.currency = "EUR";
  c.status = "approved";
  return c;
}

class LoadgenDecodeTest : public ::testing::TestWithParam<WireFormat> {};

TEST_P(LoadgenDecodeTest, EveryGeneratedMessageDecodesAsItsTruthSays) {
  for (const KeyMode mode : {KeyMode::kClickId, KeyMode::kUserId}) {
    LoadOptions o;
    o.clicks = 20'000;
    o.bad_share = 0.1;
    o.key_mode = mode;
    o.format = GetParam();
    auto gen = TrafficGenerator::Create(o, MakeCodecEncoder(o.format));
    ASSERT_TRUE(gen.ok()) << gen.status();
    EventDecoder decoder(o.format);
    GeneratedMessage m;
    Click click;
    Conversion conversion;
    uint64_t good = 0, bad = 0;
    while ((*gen)->Next(&m)) {
      const MessageTruth& t = m.truth;
      std::optional<Invalid> invalid = m.topic == Topic::kClicks
                                           ? decoder.Decode(m.value, &click)
                                           : decoder.Decode(m.value, &conversion);
      ASSERT_EQ(ReasonOf(invalid), t.decode)
          << "seq " << t.seq << " defect '" << t.defect << "' detail '"
          << (invalid ? invalid->detail : "") << "' key mode " << KeyModeName(mode) << "\n"
          << (o.format == WireFormat::kJson ? m.value.substr(0, 400) : "(protobuf)");
      if (t.decode != "ok") {
        ++bad;
        continue;
      }
      ++good;
      if (m.topic == Topic::kClicks) {
        EXPECT_EQ(click.click_id, t.click_id);
        EXPECT_EQ(click.event_time_ms, t.ts);
        EXPECT_EQ(click.offer_id, t.offer_id);
        EXPECT_EQ(click.affiliate_id, t.affiliate_id);
        EXPECT_EQ(click.user_id, t.user_id);
        EXPECT_EQ(click.ip.ToString(), t.ip);
      } else {
        EXPECT_EQ(conversion.conversion_id, t.conversion_id);
        EXPECT_EQ(conversion.event_time_ms, t.ts);
        EXPECT_EQ(conversion.offer_id, t.offer_id);
        EXPECT_EQ(conversion.user_id, t.user_id);
        EXPECT_EQ(conversion.click_id, mode == KeyMode::kClickId ? t.click_id : "");
        EXPECT_EQ(conversion.amount.minor, t.amount);
        EXPECT_EQ(conversion.amount.currency.code(), t.currency);
        EXPECT_EQ(ConversionStatusName(conversion.status), t.status);
      }
    }
    EXPECT_GT(good, 20'000u);
    EXPECT_GT(bad, 1'000u);
  }
}

// Each defect applied many times (every variant it picks from) to templates
// with and without the optional attribution fields.
TEST_P(LoadgenDecodeTest, EveryDefectGivesExactlyItsReason) {
  const WireFormat format = GetParam();
  auto encoder = MakeCodecEncoder(format);
  EventDecoder decoder(format);
  Rng rng(99);
  Click click;
  Conversion conversion;
  for (const auto& name : ClickDefectNames(format)) {
    for (int i = 0; i < 40; ++i) {
      BadPayload bad;
      ASSERT_TRUE(MakeBadClickNamed(name, ClickTemplate(), *encoder, rng, &bad)) << name;
      const auto invalid = decoder.Decode(bad.value, &click);
      ASSERT_EQ(ReasonOf(invalid), bad.reason)
          << "click defect " << name << ": " << (invalid ? invalid->detail : "")
          << (format == WireFormat::kJson ? "\n" + bad.value.substr(0, 300) : "");
    }
  }
  for (const auto& name : ConversionDefectNames(format)) {
    for (const auto& tmpl : {ConversionTemplate(true, true), ConversionTemplate(true, false),
                             ConversionTemplate(false, true)}) {
      for (int i = 0; i < 20; ++i) {
        BadPayload bad;
        ASSERT_TRUE(MakeBadConversionNamed(name, tmpl, *encoder, rng, &bad)) << name;
        const auto invalid = decoder.Decode(bad.value, &conversion);
        ASSERT_EQ(ReasonOf(invalid), bad.reason)
            << "conversion defect " << name << ": " << (invalid ? invalid->detail : "")
            << (format == WireFormat::kJson ? "\n" + bad.value.substr(0, 300) : "");
        if (name == "missing_click_id_and_user_id") {
          EXPECT_NE(invalid->detail.find("click_id or user_id"), std::string::npos)
              << invalid->detail;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, LoadgenDecodeTest,
                         ::testing::Values(WireFormat::kJson, WireFormat::kProtobuf),
                         [](const auto& p) {
                           return std::string(p.param == WireFormat::kJson ? "Json" : "Protobuf");
                         });

// The hand-written JSON encoder (used by the codec-free tests) writes what
// the codec reads back as the same event the codec's own encoder writes.
TEST(LoadgenHandJsonTest, AgreesWithTheCodec) {
  auto hand = MakeHandJsonEncoder();
  auto codec = MakeCodecEncoder(WireFormat::kJson);
  EventDecoder decoder(WireFormat::kJson);
  std::string a, b;
  Click ca, cb;
  ASSERT_TRUE(hand->Encode(ClickTemplate(), &a));
  ASSERT_TRUE(codec->Encode(ClickTemplate(), &b));
  ASSERT_FALSE(decoder.Decode(a, &ca).has_value()) << a;
  ASSERT_FALSE(decoder.Decode(b, &cb).has_value()) << b;
  EXPECT_EQ(ca, cb);
  Conversion va, vb;
  ASSERT_TRUE(hand->Encode(ConversionTemplate(true, true), &a));
  ASSERT_TRUE(codec->Encode(ConversionTemplate(true, true), &b));
  ASSERT_FALSE(decoder.Decode(a, &va).has_value()) << a;
  ASSERT_FALSE(decoder.Decode(b, &vb).has_value()) << b;
  EXPECT_EQ(va, vb);
}

}  // namespace
}  // namespace tally::loadgen
