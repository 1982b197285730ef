#include "processor/fraud/internal/cidr_set.h"

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace tally::fraud_internal {
namespace {

IpAddress Ip(std::string_view text) {
  IpAddress ip;
  EXPECT_TRUE(IpAddress::Parse(text, &ip)) << text;
  return ip;
}

CidrSet Set(const std::vector<std::string>& texts) {
  std::vector<Cidr> cidrs;
  for (const std::string& t : texts) {
    Cidr c;
    std::string_view error;
    EXPECT_TRUE(ParseCidr(t, &c, &error)) << t << ": " << error;
    cidrs.push_back(c);
  }
  return CidrSet(cidrs);
}

bool Parses(std::string_view text) {
  Cidr c;
  std::string_view error;
  return ParseCidr(text, &c, &error);
}

TEST(CidrParseTest, AcceptsAddressesAndPrefixes) {
  EXPECT_TRUE(Parses("10.0.0.0/8"));
  EXPECT_TRUE(Parses("192.0.2.7"));
  EXPECT_TRUE(Parses("192.0.2.7/32"));
  EXPECT_TRUE(Parses("0.0.0.0/0"));
  EXPECT_TRUE(Parses("2001:db8::/32"));
  EXPECT_TRUE(Parses("::/0"));
  EXPECT_TRUE(Parses("2001:db8::1/128"));
  EXPECT_TRUE(Parses("::ffff:198.51.100.0/120"));
  Cidr c;
  std::string_view error;
  ASSERT_TRUE(ParseCidr("10.0.0.0/8", &c, &error));
  EXPECT_EQ(c.prefix, 96 + 8);  // IPv4 prefixes live inside ::ffff:0:0/96
  ASSERT_TRUE(ParseCidr("192.0.2.7", &c, &error));
  EXPECT_EQ(c.prefix, 128);
}

TEST(CidrParseTest, RejectsMalformed) {
  for (const char* bad :
       {"10.0.0.0/33", "2001:db8::/129", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/8/8",
        "10.0.0/8", "10.0.0.256", "/8", "", "10.0.0.0 /8", "010.0.0.0/8", "2001:db8::/0032",
        "fe80::1%eth0", "[2001:db8::1]", "10.0.0.0/8x", "host.example"}) {
    EXPECT_FALSE(Parses(bad)) << bad;
  }
}

TEST(CidrParseTest, RejectsHostBitsBelowThePrefix) {
  Cidr c;
  std::string_view error;
  EXPECT_FALSE(ParseCidr("10.0.0.1/8", &c, &error));
  EXPECT_EQ(error, "has host bits set below the prefix length");
  EXPECT_FALSE(ParseCidr("2001:db8::1/64", &c, &error));
  EXPECT_FALSE(ParseCidr("1.0.0.0/0", &c, &error));
}

TEST(CidrSetTest, FirstAndLastAddressInOneOutside) {
  const CidrSet s = Set({"198.51.100.0/24", "2001:db8:bad::/48"});
  EXPECT_FALSE(s.Contains(Ip("198.51.99.255")));
  EXPECT_TRUE(s.Contains(Ip("198.51.100.0")));
  EXPECT_TRUE(s.Contains(Ip("198.51.100.77")));
  EXPECT_TRUE(s.Contains(Ip("198.51.100.255")));
  EXPECT_FALSE(s.Contains(Ip("198.51.101.0")));

  EXPECT_FALSE(s.Contains(Ip("2001:db8:bac:ffff:ffff:ffff:ffff:ffff")));
  EXPECT_TRUE(s.Contains(Ip("2001:db8:bad::")));
  EXPECT_TRUE(s.Contains(Ip("2001:db8:bad:1234::5")));
  EXPECT_TRUE(s.Contains(Ip("2001:db8:bad:ffff:ffff:ffff:ffff:ffff")));
  EXPECT_FALSE(s.Contains(Ip("2001:db8:bae::")));
}

TEST(CidrSetTest, SingleAddresses) {
  const CidrSet s = Set({"192.0.2.7/32", "2001:db8::1/128", "203.0.113.9"});
  EXPECT_TRUE(s.Contains(Ip("192.0.2.7")));
  EXPECT_FALSE(s.Contains(Ip("192.0.2.6")));
  EXPECT_FALSE(s.Contains(Ip("192.0.2.8")));
  EXPECT_TRUE(s.Contains(Ip("2001:db8::1")));
  EXPECT_FALSE(s.Contains(Ip("2001:db8::")));
  EXPECT_FALSE(s.Contains(Ip("2001:db8::2")));
  EXPECT_TRUE(s.Contains(Ip("203.0.113.9")));
}

TEST(CidrSetTest, ZeroPrefixes) {
  // IPv4 /0 is every IPv4 address, i.e. ::ffff:0:0/96, and no IPv6 one.
  const CidrSet v4_all = Set({"0.0.0.0/0"});
  EXPECT_TRUE(v4_all.Contains(Ip("0.0.0.0")));
  EXPECT_TRUE(v4_all.Contains(Ip("255.255.255.255")));
  EXPECT_FALSE(v4_all.Contains(Ip("::")));
  EXPECT_FALSE(v4_all.Contains(Ip("2001:db8::1")));
  EXPECT_FALSE(v4_all.Contains(Ip("::fffe:ffff:ffff")));  // just below the mapped block
  const CidrSet all = Set({"::/0"});
  EXPECT_TRUE(all.Contains(Ip("::")));
  EXPECT_TRUE(all.Contains(Ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
  EXPECT_TRUE(all.Contains(Ip("10.1.2.3")));
  EXPECT_EQ(all.range_count(), 1u);
}

TEST(CidrSetTest, Ipv4MappedEquivalence) {
  const CidrSet v4 = Set({"198.51.100.0/24"});
  const CidrSet v6 = Set({"::ffff:198.51.100.0/120"});
  const CidrSet hex = Set({"::ffff:c633:6400/120"});
  for (const char* ip : {"198.51.100.0", "198.51.100.255", "::ffff:198.51.100.9", "198.51.99.255",
                         "198.51.101.0", "::198.51.100.9"}) {
    EXPECT_EQ(v4.Contains(Ip(ip)), v6.Contains(Ip(ip))) << ip;
    EXPECT_EQ(v4.Contains(Ip(ip)), hex.Contains(Ip(ip))) << ip;
  }
  EXPECT_TRUE(v4.Contains(Ip("::ffff:198.51.100.9")));
  EXPECT_FALSE(v4.Contains(Ip("::198.51.100.9")));  // IPv4-compatible, not mapped
}

TEST(CidrSetTest, OverlappingAndAdjacentRangesMerge) {
  const CidrSet s = Set({"10.0.0.0/8", "10.1.0.0/16", "10.255.255.255", "11.0.0.0/8", "12.0.0.0/9",
                         "12.128.0.0/9", "14.0.0.0/8", "2001:db8::/32", "2001:db8:1::/48"});
  // 10/8 + 11/8 (adjacent) + 12/8 (two adjacent halves) = 10.0.0.0-12.255.255.255;
  // 14/8 separate (13/8 missing); the IPv6 /48 is inside the /32.
  EXPECT_EQ(s.range_count(), 3u);
  EXPECT_TRUE(s.Contains(Ip("10.1.2.3")));
  EXPECT_TRUE(s.Contains(Ip("11.255.255.255")));
  EXPECT_TRUE(s.Contains(Ip("12.200.0.1")));
  EXPECT_FALSE(s.Contains(Ip("13.0.0.0")));
  EXPECT_TRUE(s.Contains(Ip("14.0.0.0")));
  EXPECT_FALSE(s.Contains(Ip("9.255.255.255")));
  EXPECT_TRUE(s.Contains(Ip("2001:db8:ffff::1")));
  EXPECT_FALSE(s.Contains(Ip("2001:db9::")));
}

TEST(CidrSetTest, EmptySetAndExtremes) {
  const CidrSet empty;
  EXPECT_FALSE(empty.Contains(Ip("::")));
  const CidrSet s = Set({"::/128", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"});
  EXPECT_TRUE(s.Contains(Ip("::")));
  EXPECT_FALSE(s.Contains(Ip("::1")));
  EXPECT_TRUE(s.Contains(Ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
  EXPECT_FALSE(s.Contains(Ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe")));
}

TEST(CidrSetTest, AgreesWithNaiveScanOnRandomCidrs) {
  std::mt19937_64 rng(11);
  for (int round = 0; round < 50; ++round) {
    std::vector<Cidr> cidrs;
    for (int i = 0; i < 40; ++i) {
      // IPv4 in a small space (10.0.0.0/16) so that ranges overlap often.
      const uint32_t v4 = 0x0a000000u | static_cast<uint32_t>(rng() & 0xffff);
      const int prefix = 16 + static_cast<int>(rng() % 17);
      const uint32_t mask = prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
      cidrs.push_back({IpAddress::FromV4(v4 & mask), 96 + prefix});
    }
    const CidrSet s(cidrs);
    for (int t = 0; t < 500; ++t) {
      const IpAddress ip = IpAddress::FromV4(0x0a000000u | static_cast<uint32_t>(rng() & 0x1ffff));
      bool expected = false;
      for (const Cidr& c : cidrs) {
        const Uint128 host = c.prefix == 0 ? ~Uint128{0} : (Uint128{1} << (128 - c.prefix)) - 1;
        expected |= (IpToUint128(ip) & ~host) == IpToUint128(c.base);
      }
      ASSERT_EQ(s.Contains(ip), expected) << ip.ToString();
    }
  }
}

}  // namespace
}  // namespace tally::fraud_internal
