#include "tools/verify/classify.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tally::verify {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Optional;

// Guards against counting a replay (kill -9, at-least-once) as a defect.
TEST(ClassifyMultisetTest, IdenticalExtraRecordsAreCopiesNotMismatches) {
  const MultisetClassification c = ClassifyMultiset(
      {"c1 pending", "c1 approved", "c2 pending"},
      {"c1 pending", "c1 approved", "c1 pending", "c1 approved", "c2 pending", "c2 pending"});
  EXPECT_THAT(c.missing, IsEmpty());
  EXPECT_THAT(c.unexpected, IsEmpty());
  EXPECT_EQ(c.copies, 3u);
  EXPECT_THAT(c.copied, ElementsAre(std::pair<std::string, uint64_t>{"c1 approved", 1},
                                    std::pair<std::string, uint64_t>{"c1 pending", 1},
                                    std::pair<std::string, uint64_t>{"c2 pending", 1}));
}

// Guards against a changed record hiding as "one copy plus one loss".
TEST(ClassifyMultisetTest, ChangedRecordIsOneLossAndOneUnexpected) {
  const MultisetClassification c =
      ClassifyMultiset({"c1 pending payout=100"}, {"c1 pending payout=101"});
  EXPECT_THAT(c.missing, ElementsAre("c1 pending payout=100"));
  EXPECT_THAT(c.unexpected, ElementsAre("c1 pending payout=101"));
  EXPECT_EQ(c.copies, 0u);
}

TEST(ClassifyMultisetTest, LostRecordIsAMismatchEvenWhenOthersAreCopied) {
  const MultisetClassification c = ClassifyMultiset({"a", "b"}, {"a", "a"});
  EXPECT_THAT(c.missing, ElementsAre("b"));
  EXPECT_THAT(c.unexpected, IsEmpty());
  EXPECT_EQ(c.copies, 1u);
}

TEST(ClassifyMultisetTest, WronglyDecidedRecordRepeatedIsNotACopy) {
  // A record nobody expects stays unexpected however often it repeats.
  const MultisetClassification c = ClassifyMultiset({}, {"x", "x"});
  EXPECT_THAT(c.unexpected, ElementsAre("x", "x"));
  EXPECT_EQ(c.copies, 0u);
}

TEST(ClassifyMultisetTest, ExpectedTwiceSeenTwiceIsExact) {
  const MultisetClassification c = ClassifyMultiset({"a", "a"}, {"a", "a"});
  EXPECT_THAT(c.missing, IsEmpty());
  EXPECT_THAT(c.unexpected, IsEmpty());
  EXPECT_EQ(c.copies, 0u);
}

TEST(CheckStatusOrderTest, ExactSequenceIsFine) {
  EXPECT_EQ(CheckStatusOrder({"p", "a", "r"}, {"p", "a", "r"}), std::nullopt);
}

// A replay re-emits a suffix of what was emitted: an earlier status may
// follow a later one, and the replay ends with the latest status again.
TEST(CheckStatusOrderTest, ReplayedSuffixIsOnlyCopies) {
  EXPECT_EQ(CheckStatusOrder({"p", "a"}, {"p", "a", "p", "a"}), std::nullopt);
  EXPECT_EQ(CheckStatusOrder({"p", "a", "r"}, {"p", "a", "a", "r"}), std::nullopt);
  EXPECT_EQ(CheckStatusOrder({"p", "a", "r"}, {"p", "a", "r", "a", "r"}), std::nullopt);
}

TEST(CheckStatusOrderTest, StatusFirstAppearingOutOfOrderIsAMismatch) {
  EXPECT_THAT(CheckStatusOrder({"p", "a"}, {"a", "p"}), Optional(HasSubstr("wrong order")));
  EXPECT_THAT(CheckStatusOrder({"p", "a"}, {"a", "p", "a"}), Optional(HasSubstr("wrong order")));
}

// An upserting consumer would end with "pending" although "approved" is
// the truth: money owed reported wrongly.
TEST(CheckStatusOrderTest, EndingOnAnEarlierStatusIsAMismatch) {
  EXPECT_THAT(CheckStatusOrder({"p", "a"}, {"p", "a", "p"}), Optional(HasSubstr("last record")));
}

TEST(CheckStatusOrderTest, LostOrChangedRecordsAreLeftToTheMultisetComparison) {
  EXPECT_EQ(CheckStatusOrder({"p", "a"}, {"a"}), std::nullopt);
  EXPECT_EQ(CheckStatusOrder({"p", "a"}, {"a", "x"}), std::nullopt);
}

TEST(ParseUncommittedRevocationLineTest, ParsesTheProcessorsLine) {
  auto parts = ParseUncommittedRevocationLine(
      "2026-12-02T01:39:20.543Z WARN processor: partitions revoked with uncommitted offsets: "
      "clicks[3]@1125, clicks[4]@1118, conversions[12]@35; their new owner repeats the outputs "
      "of that range (identical copies)");
  ASSERT_TRUE(parts.has_value());
  EXPECT_EQ(*parts, (std::vector<int32_t>{3, 4, 12}));
  EXPECT_FALSE(ParseUncommittedRevocationLine("INFO processor: revoked 16 partitions").has_value());
  auto aborted = ParseUncommittedRevocationLine(
      "2026-12-02T16:54:37.200Z INFO processor: transaction aborted for tasks: task[0], task[5], "
      "task[11]; without transaction isolation its records stay visible (identical copies)");
  ASSERT_TRUE(aborted.has_value());
  EXPECT_EQ(*aborted, (std::vector<int32_t>{0, 5, 11}));
}

TEST(ParseStateGapLineTest, ParsesTheProcessorsLine) {
  auto gap = ParseStateGapLine(
      "W 2026-12-02T01:00:00Z tally: state gap: partition=3 topic=clicks resumes_at=1042 "
      "local_state_ends_at=900");
  ASSERT_TRUE(gap.has_value());
  EXPECT_EQ(gap->partition, 3);
  EXPECT_EQ(gap->topic, "clicks");
  EXPECT_EQ(gap->resumes_at, 1042);
  EXPECT_THAT(gap->local_state_ends_at, Optional(900));
}

TEST(ParseStateGapLineTest, NoLocalState) {
  auto gap = ParseStateGapLine(
      "state gap: partition=0 topic=conversions resumes_at=7 local_state_ends_at=none");
  ASSERT_TRUE(gap.has_value());
  EXPECT_EQ(gap->local_state_ends_at, std::nullopt);
}

TEST(ParseStateGapLineTest, RejectsOtherLinesAndIncompleteOnes) {
  EXPECT_EQ(ParseStateGapLine("assigned partitions 0,1"), std::nullopt);
  EXPECT_EQ(ParseStateGapLine("state gap: partition=1 topic=clicks"), std::nullopt);
  EXPECT_EQ(ParseStateGapLine("state gap: partition=x topic=clicks resumes_at=1 "
                              "local_state_ends_at=none"),
            std::nullopt);
}

// produced_at is ignored when outputs are compared, so this check is all
// that catches an output path that forgets to set it (0) or sets an event
// time in seconds or a bogus future value.
TEST(CheckProducedAtTest, AcceptsWallClockTimesOfTheRunOnly) {
  const int64_t now = 1'780'000'000'000;
  EXPECT_EQ(CheckProducedAt(now, now), std::nullopt);
  EXPECT_EQ(CheckProducedAt(now - 3'600'000, now), std::nullopt);  // verified an hour later
  EXPECT_EQ(CheckProducedAt(now + kProducedAtSkewMs, now), std::nullopt);
  EXPECT_THAT(CheckProducedAt(0, now), Optional(HasSubstr("missing")));
  EXPECT_THAT(CheckProducedAt(1'780'000'000, now), Optional(HasSubstr("before 2020")));
  EXPECT_THAT(CheckProducedAt(now + kProducedAtSkewMs + 1, now), Optional(HasSubstr("future")));
}

}  // namespace
}  // namespace tally::verify
