#include "processor/config/internal/values.h"

#include <gtest/gtest.h>

namespace tally::config_internal {
namespace {

TEST(ParseDurationTest, AcceptsAbseilSyntaxAndDays) {
  EXPECT_EQ(*ParseDurationValue("100ms"), absl::Milliseconds(100));
  EXPECT_EQ(*ParseDurationValue("1h30m"), absl::Minutes(90));
  EXPECT_EQ(*ParseDurationValue("0"), absl::ZeroDuration());
  EXPECT_EQ(*ParseDurationValue("35d"), absl::Hours(35 * 24));
  EXPECT_EQ(*ParseDurationValue("1d12h"), absl::Hours(36));
  EXPECT_EQ(*ParseDurationValue(" 10m "), absl::Minutes(10));
}

TEST(ParseDurationTest, RejectsBareNumbersAndGarbage) {
  for (const char* bad : {"", "100", "abc", "d", "1.5d", "5x", "1d-2h", "99999999999d"}) {
    absl::StatusOr<absl::Duration> d = ParseDurationValue(bad);
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_NE(d.status().message().find("expected a duration"), std::string::npos);
  }
}

TEST(FormatDurationTest, RoundTripsThroughParse) {
  for (absl::Duration d : {absl::Milliseconds(100), absl::Hours(35 * 24), absl::Minutes(1),
                           absl::ZeroDuration(), absl::Hours(36)}) {
    EXPECT_EQ(*ParseDurationValue(FormatDurationValue(d)), d) << FormatDurationValue(d);
  }
  EXPECT_EQ(FormatDurationValue(absl::Hours(35 * 24)), "35d");
  EXPECT_EQ(FormatDurationValue(absl::Milliseconds(100)), "100ms");
}

TEST(ParseSizeTest, AcceptsBytesAndBinarySuffixes) {
  EXPECT_EQ(*ParseSize("65536"), 65536u);
  EXPECT_EQ(*ParseSize("256MiB"), 256ull << 20);
  EXPECT_EQ(*ParseSize("64 KiB"), 64ull << 10);
  EXPECT_EQ(*ParseSize("2GiB"), 2ull << 30);
  EXPECT_EQ(*ParseSize("1TiB"), 1ull << 40);
  EXPECT_EQ(*ParseSize("7B"), 7u);
}

TEST(ParseSizeTest, RejectsDecimalUnitsNegativesAndOverflow) {
  for (const char* bad : {"", "256MB", "1kib", "-1", "MiB", "1.5GiB", "99999999999999999TiB"}) {
    absl::StatusOr<uint64_t> s = ParseSize(bad);
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_NE(s.status().message().find("expected a size"), std::string::npos);
  }
}

TEST(FormatSizeTest, UsesLargestExactUnit) {
  EXPECT_EQ(FormatSize(256ull << 20), "256MiB");
  EXPECT_EQ(FormatSize(65536), "64KiB");
  EXPECT_EQ(FormatSize(1000), "1000");
  EXPECT_EQ(FormatSize(0), "0");
}

TEST(ParseTimestampMsTest, AcceptsRfc3339AndMilliseconds) {
  EXPECT_EQ(*ParseTimestampMs("2000-01-01T00:00:00Z"), 946'684'800'000);
  EXPECT_EQ(*ParseTimestampMs("2000-01-01T01:00:00+01:00"), 946'684'800'000);
  EXPECT_EQ(*ParseTimestampMs("946684800000"), 946'684'800'000);
  EXPECT_EQ(*ParseTimestampMs("-5"), -5);
  EXPECT_FALSE(ParseTimestampMs("2000-01-01").ok());
  EXPECT_FALSE(ParseTimestampMs("yesterday").ok());
  EXPECT_EQ(FormatTimestampMs(4'102'444'800'000), "2100-01-01T00:00:00Z");
}

TEST(ParseHostPortTest, AcceptsV4V6AndNames) {
  EXPECT_EQ(ParseHostPort("0.0.0.0:9464")->port, 9464);
  EXPECT_EQ(ParseHostPort("[::1]:0")->host, "::1");
  EXPECT_EQ(ParseHostPort("localhost:65535")->host, "localhost");
  for (const char* bad : {"9464", ":9464", "host:", "host:65536", "::1:80", "host:x", "[::1]80"}) {
    EXPECT_FALSE(ParseHostPort(bad).ok()) << bad;
  }
}

TEST(ParseBoolAndIntegerTest, StrictSyntax) {
  EXPECT_TRUE(*ParseBool("TRUE"));
  EXPECT_FALSE(*ParseBool("off"));
  EXPECT_FALSE(ParseBool("maybe").ok());
  EXPECT_EQ(*ParseInteger("-42"), -42);
  absl::StatusOr<int64_t> bad = ParseInteger("12abc");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "expected an integer, got '12abc'");
}

TEST(TopicNameTest, FollowsKafkaRules) {
  EXPECT_TRUE(IsValidTopicName("clicks.v1_a-b"));
  EXPECT_FALSE(IsValidTopicName(""));
  EXPECT_FALSE(IsValidTopicName(".."));
  EXPECT_FALSE(IsValidTopicName("has space"));
  EXPECT_FALSE(IsValidTopicName(std::string(250, 'a')));
}

TEST(SecretKeyTest, MatchesDocumentedMarkers) {
  for (const char* key :
       {"kafka.sasl.password", "kafka.ssl.key.pem", "producer.ssl.keystore.password",
        "kafka.sasl.oauthbearer.config", "consumer.client_secret", "kafka.SASL.Token"}) {
    EXPECT_TRUE(IsSecretKey(key)) << key;
  }
  EXPECT_FALSE(IsSecretKey("kafka.bootstrap.servers"));
  EXPECT_FALSE(IsSecretKey("kafka.sasl.username"));
}

}  // namespace
}  // namespace tally::config_internal
