// BuildRejectedEvent: the `rejected` record of any input stays within its
// bounds (regression: issue 6, a 750 KB input whose rejected record exceeded
// message.max.bytes stopped the pipeline on every restart).
#include "processor/model/rejected_builder.h"

#include <string>

#include "gtest/gtest.h"
#include "processor/model/sha256.h"

namespace tally {
namespace {

RejectedLimits SmallLimits() {
  RejectedLimits limits;
  limits.max_value_bytes = 8;
  limits.max_key_bytes = 4;
  limits.max_detail_bytes = 6;
  return limits;
}

RejectedEvent Build(std::string_view key, std::string_view value,
                    const RejectedLimits& limits = SmallLimits(), std::string_view detail = "d") {
  return BuildRejectedEvent({"clicks", 3, 1042, key, value}, RejectReason::kPayloadTooLarge, detail,
                            limits, 1767225606120);
}

TEST(Sha256HexTest, GoldenValues) {
  // FIPS 180-2 appendix B.1 and the empty message.
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex(std::string("\0\xff", 2)),
            Sha256Hex(std::string_view("\0\xff\x01", 3).substr(0, 2)));
}

TEST(RejectedBuilderTest, CopiesTheSourceAndReason) {
  const RejectedEvent r = Build("k", "{}");
  EXPECT_EQ(r.reason, RejectReason::kPayloadTooLarge);
  EXPECT_EQ(r.detail, "d");
  EXPECT_EQ(r.source_topic, "clicks");
  EXPECT_EQ(r.source_partition, 3);
  EXPECT_EQ(r.source_offset, 1042);
  EXPECT_EQ(r.rejected_at_ms, 1767225606120);
}

TEST(RejectedBuilderTest, ValueIsKeptWholeUpToTheLimitAndCutAfterIt) {
  for (size_t n : {size_t{0}, size_t{7}, size_t{8}, size_t{9}, size_t{100}}) {
    SCOPED_TRACE(n);
    const std::string value(n, '\xe9');  // not UTF-8: bytes are bytes
    const RejectedEvent r = Build("", value);
    EXPECT_EQ(r.original_value_truncated, n > 8);
    EXPECT_EQ(r.original_value, value.substr(0, 8));
    EXPECT_EQ(r.original_value_size, static_cast<int64_t>(n));
    EXPECT_EQ(r.original_value_sha256, Sha256Hex(value));
  }
}

TEST(RejectedBuilderTest, KeyIsKeptWholeUpToTheLimitAndCutAfterIt) {
  for (size_t n : {size_t{0}, size_t{3}, size_t{4}, size_t{5}}) {
    SCOPED_TRACE(n);
    const std::string key(n, 'k');
    const RejectedEvent r = Build(key, "v");
    EXPECT_EQ(r.original_key_truncated, n > 4);
    EXPECT_EQ(r.original_key, key.substr(0, 4));
    EXPECT_EQ(r.original_key_size, static_cast<int64_t>(n));
    EXPECT_EQ(r.original_key_sha256, Sha256Hex(key));
    EXPECT_FALSE(r.original_value_truncated);
  }
}

TEST(RejectedBuilderTest, ZeroValueLimitKeepsOnlySizeAndHash) {
  RejectedLimits limits = SmallLimits();
  limits.max_value_bytes = 0;
  const RejectedEvent r = Build("k", "abc", limits);
  EXPECT_TRUE(r.original_value_truncated);
  EXPECT_EQ(r.original_value, "");
  EXPECT_EQ(r.original_value_size, 3);
  EXPECT_EQ(r.original_value_sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(RejectedBuilderTest, DetailIsCutAtACharacterBoundary) {
  EXPECT_EQ(Build("", "", SmallLimits(), "abcdef").detail, "abcdef");
  EXPECT_EQ(Build("", "", SmallLimits(), "abcdefg").detail, "abcdef");
  // "abcd" + U+00E9 (2 bytes) fits exactly; "abcde" + U+00E9 would split it.
  EXPECT_EQ(Build("", "", SmallLimits(), "abcd\xc3\xa9xyz").detail, "abcd\xc3\xa9");
  EXPECT_EQ(Build("", "", SmallLimits(), "abcde\xc3\xa9").detail, "abcde");
  // A 4-byte character that would straddle the cut is dropped whole.
  EXPECT_EQ(Build("", "", SmallLimits(), "abc\xf0\x9f\x98\x80").detail, "abc");
}

TEST(RejectedBuilderTest, DefaultLimitsKeepEveryMessageWithinTheDefaultPayloadLimitWhole) {
  const std::string value(64 * 1024, 'x');
  const RejectedEvent r = BuildRejectedEvent({"clicks", 0, 0, "c-1", value},
                                             RejectReason::kMalformedPayload, "d", {}, 1);
  EXPECT_FALSE(r.original_value_truncated);
  EXPECT_EQ(r.original_value, value);
}

}  // namespace
}  // namespace tally
