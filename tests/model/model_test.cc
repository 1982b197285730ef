#include <set>
#include <string>

#include "gtest/gtest.h"
#include "processor/model/events.h"
#include "processor/model/ip_address.h"
#include "processor/model/money.h"
#include "processor/model/reject_reason.h"

namespace tally {
namespace {

TEST(IpAddressTest, ParsesIpv4AsMappedAndPrintsDottedQuad) {
  IpAddress ip;
  ASSERT_TRUE(IpAddress::Parse("203.0.113.7", &ip));
  EXPECT_TRUE(ip.is_v4());
  EXPECT_EQ(ip.ToString(), "203.0.113.7");
  EXPECT_EQ(ip, IpAddress::FromV4(0xCB007107));
  EXPECT_EQ(ip.bytes()[10], 0xff);
}

TEST(IpAddressTest, ParsesIpv6InCanonicalForm) {
  IpAddress ip;
  ASSERT_TRUE(IpAddress::Parse("2001:DB8:0:0:0:0:0:1", &ip));
  EXPECT_FALSE(ip.is_v4());
  EXPECT_EQ(ip.ToString(), "2001:db8::1");
  ASSERT_TRUE(IpAddress::Parse("::ffff:198.51.100.1", &ip));
  EXPECT_TRUE(ip.is_v4());  // one code path for both families
  EXPECT_EQ(ip.ToString(), "198.51.100.1");
  ASSERT_TRUE(IpAddress::Parse("::", &ip));
  EXPECT_EQ(ip.ToString(), "::");
}

TEST(IpAddressTest, RejectsEverythingElse) {
  for (const char* bad : {"", "999.1.1.1", "1.2.3", "not-an-ip", "2001:db8::g", "1.2.3.4:80",
                          "[::1]", "256.256.256.256", "::ffff::1", "fe80::1%eth0", " 1.2.3.4",
                          "1.2.3.4 ", "1111:2222:3333:4444:5555:6666:7777:8888:9999",
                          "0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000"}) {
    IpAddress ip = IpAddress::FromV4(1);
    EXPECT_FALSE(IpAddress::Parse(bad, &ip)) << bad;
    EXPECT_EQ(ip, IpAddress::FromV4(1)) << "output touched on failure: " << bad;
  }
}

TEST(CurrencyTest, AcceptsActiveCodesWithTheirMinorUnits) {
  Currency c;
  ASSERT_TRUE(Currency::Parse("EUR", &c));
  EXPECT_EQ(c.code(), "EUR");
  EXPECT_EQ(c.minor_unit_digits(), 2);
  ASSERT_TRUE(Currency::Parse("JPY", &c));
  EXPECT_EQ(c.minor_unit_digits(), 0);
  ASSERT_TRUE(Currency::Parse("KWD", &c));
  EXPECT_EQ(c.minor_unit_digits(), 3);
  ASSERT_TRUE(Currency::Parse("CLF", &c));
  EXPECT_EQ(c.minor_unit_digits(), 4);
  for (const char* code : {"USD", "GBP", "SEK", "CHF", "ZAR"}) {
    EXPECT_TRUE(Currency::Parse(code, &c)) << code;
  }
}

TEST(CurrencyTest, RejectsNonCodes) {
  for (const char* bad : {"XYZ", "usd", "EU", "EURO", "123", "", "E\0R", "XTS", "XXX", "XAU"}) {
    Currency c;
    EXPECT_FALSE(Currency::Parse(bad, &c)) << bad;
    EXPECT_TRUE(c.empty());
  }
  Currency empty;
  EXPECT_EQ(empty.minor_unit_digits(), 0);
}

TEST(RejectReasonTest, WireNamesAreUniqueAndRoundTrip) {
  std::set<std::string> names;
  for (RejectReason reason : AllRejectReasons()) {
    const std::string name(RejectReasonName(reason));
    EXPECT_TRUE(names.insert(name).second) << name;
    RejectReason parsed;
    ASSERT_TRUE(ParseRejectReason(name, &parsed)) << name;
    EXPECT_EQ(parsed, reason);
  }
  EXPECT_EQ(names.size(), static_cast<size_t>(kRejectReasonCount));
  EXPECT_EQ(RejectReasonName(RejectReason::kMalformedPayload), "malformed_payload");
  EXPECT_EQ(RejectReasonName(RejectReason::kTimestampOutOfRange), "timestamp_out_of_range");
  EXPECT_EQ(RejectReasonName(RejectReason::kUnknownConversion), "unknown_conversion");
  RejectReason r;
  EXPECT_FALSE(ParseRejectReason("Malformed_Payload", &r));
}

TEST(EventNamesTest, StatusModelAndUnattributedRoundTrip) {
  for (auto s :
       {ConversionStatus::kPending, ConversionStatus::kApproved, ConversionStatus::kReversed}) {
    ConversionStatus parsed;
    ASSERT_TRUE(ParseConversionStatus(ConversionStatusName(s), &parsed));
    EXPECT_EQ(parsed, s);
  }
  EXPECT_STREQ(ConversionStatusName(ConversionStatus::kApproved), "approved");
  ConversionStatus status;
  EXPECT_FALSE(ParseConversionStatus("APPROVED", &status));
  EXPECT_FALSE(ParseConversionStatus("", &status));

  for (int i = 0; i < 5; ++i) {
    const auto m = static_cast<AttributionModel>(i);
    AttributionModel parsed;
    ASSERT_TRUE(ParseAttributionModel(AttributionModelName(m), &parsed));
    EXPECT_EQ(parsed, m);
  }
  EXPECT_STREQ(AttributionModelName(AttributionModel::kPositionBased), "position_based");

  for (int i = 0; i < 3; ++i) {
    const auto u = static_cast<UnattributedReason>(i);
    UnattributedReason parsed;
    ASSERT_TRUE(ParseUnattributedReason(UnattributedReasonName(u), &parsed));
    EXPECT_EQ(parsed, u);
  }
  EXPECT_STREQ(UnattributedReasonName(UnattributedReason::kNoUserClicks), "no_user_clicks");
}

}  // namespace
}  // namespace tally
