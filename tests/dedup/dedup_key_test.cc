#include "processor/dedup/dedup_key.h"

#include <string>

#include "gtest/gtest.h"

namespace tally {
namespace {

TEST(DedupKeyTest, ClickKeyEncodingIsStable) {
  EXPECT_EQ(ClickKey("abc").encoded(), std::string("cabc"));
  EXPECT_EQ(ClickKey("abc").kind(), DedupKey::Kind::kClick);
}

TEST(DedupKeyTest, ConversionKeyEncodingIsStable) {
  const DedupKey key = ConversionKey("o1", "sale", "ord-9", ConversionStatus::kApproved);
  EXPECT_EQ(key.encoded(), std::string("v\x02o1\x04sale\x05ord-9\x01", 16));
  EXPECT_EQ(key.kind(), DedupKey::Kind::kConversion);
}

// Guards against a naive concatenation where ("ab","c") == ("a","bc").
TEST(DedupKeyTest, ConversionKeyIsInjective) {
  EXPECT_NE(ConversionKey("ab", "c", "x", ConversionStatus::kPending),
            ConversionKey("a", "bc", "x", ConversionStatus::kPending));
  EXPECT_NE(ConversionKey("o", "sale", "1", ConversionStatus::kPending),
            ConversionKey("o", "sale", "1", ConversionStatus::kApproved));
}

TEST(DedupKeyTest, ClickAndConversionNamespacesDiffer) {
  EXPECT_NE(ClickKey("v").encoded().substr(0, 1),
            ConversionKey("", "", "", {}).encoded().substr(0, 1));
}

TEST(DedupKeyTest, FromEncodedRoundTrips) {
  const std::string long_id(300, 'z');  // two-byte varint length
  for (const DedupKey& key : {ClickKey("c-1"), ClickKey(""),
                              ConversionKey("o", "lead", long_id, ConversionStatus::kReversed)}) {
    absl::StatusOr<DedupKey> parsed = DedupKey::FromEncoded(key.encoded());
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, key);
  }
}

TEST(DedupKeyTest, FromEncodedRejectsGarbage) {
  EXPECT_FALSE(DedupKey::FromEncoded("").ok());
  EXPECT_FALSE(DedupKey::FromEncoded("x123").ok());
  EXPECT_FALSE(DedupKey::FromEncoded(std::string("v\x05o1", 4)).ok());  // length past end
  EXPECT_FALSE(DedupKey::FromEncoded(std::string("v\x01o\x01g\x01"
                                                 "c\x07",
                                                 8))
                   .ok());  // status
  EXPECT_FALSE(DedupKey::FromEncoded(std::string("v\x01o\x01g\x01"
                                                 "c\x01z",
                                                 9))
                   .ok());  // trailing
}

// The hash must not change between builds or processes (it is documented as
// fixed). The values were cross-checked with an independent Python
// implementation of the algorithm described in dedup_key.h.
TEST(DedupHash64Test, GoldenValues) {
  EXPECT_EQ(DedupHash64(""), 0x9ca066f1a4ab2eeaULL);
  EXPECT_EQ(DedupHash64("cabc"), 0x01ebc5d021315931ULL);
  EXPECT_EQ(DedupHash64("c0123456789abcdef0123"), 0x442fcd0cca7ef8d8ULL);  // 2 blocks + tail
  EXPECT_EQ(DedupHash64("vconversion-key-17"), 0xcc704939e9d4bb01ULL);
}

}  // namespace
}  // namespace tally
