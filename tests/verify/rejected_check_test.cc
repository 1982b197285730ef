// tally-verify's check of a `rejected` record's original bytes, whole and
// truncated (regression: issue 6, oversized messages are now kept as a
// prefix + size + SHA-256, and verify must still prove they are the input).
#include "tools/verify/rejected_check.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "processor/model/rejected_builder.h"

namespace tally::verify {
namespace {

using ::testing::HasSubstr;

RejectedEvent Built(std::string_view key, std::string_view value, size_t value_limit) {
  RejectedLimits limits;
  limits.max_value_bytes = value_limit;
  limits.max_key_bytes = 4;
  return BuildRejectedEvent({"clicks", 0, 7, key, value}, RejectReason::kPayloadTooLarge, "d",
                            limits, 1);
}

TEST(RejectedCheckTest, WholeAndTruncatedRecordsOfTheInputMatch) {
  EXPECT_EQ(CheckRejectedOriginal(Built("k", "value", 100), "k", "value"), "");
  EXPECT_EQ(CheckRejectedOriginal(Built("k", "value", 5), "k", "value"), "");
  EXPECT_EQ(CheckRejectedOriginal(Built("k", "value", 4), "k", "value"), "");
  EXPECT_EQ(CheckRejectedOriginal(Built("k", "value", 0), "k", "value"), "");
  EXPECT_EQ(CheckRejectedOriginal(Built("key-long", "v", 9), "key-long", "v"), "");
}

TEST(RejectedCheckTest, EveryDifferenceIsNamed) {
  EXPECT_THAT(CheckRejectedOriginal(Built("k", "value", 100), "k", "valuE"),
              HasSubstr("original value: its 5 bytes differ"));
  EXPECT_THAT(CheckRejectedOriginal(Built("k", "value", 100), "K", "value"),
              HasSubstr("original key:"));
  // Same prefix and size, different tail: only the hash tells.
  EXPECT_THAT(CheckRejectedOriginal(Built("k", "value", 2), "k", "vaLUE"),
              HasSubstr("original value: sha256"));
  EXPECT_THAT(CheckRejectedOriginal(Built("k", "value", 2), "k", "valu"),
              HasSubstr("original value: size 5, the input has 4 bytes"));
  EXPECT_THAT(CheckRejectedOriginal(Built("k", "value", 2), "k", "xalue"),
              HasSubstr("not a strict prefix"));
  RejectedEvent whole_but_marked = Built("k", "value", 100);
  whole_but_marked.original_value_truncated = true;
  EXPECT_THAT(CheckRejectedOriginal(whole_but_marked, "k", "value"),
              HasSubstr("not a strict prefix"));
  RejectedEvent no_hash = Built("k", "value", 100);
  no_hash.original_value_sha256.clear();
  EXPECT_THAT(CheckRejectedOriginal(no_hash, "k", "value"), HasSubstr("sha256"));
}

}  // namespace
}  // namespace tally::verify
