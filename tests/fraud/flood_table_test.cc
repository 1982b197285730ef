#include "processor/fraud/internal/flood_table.h"

#include <vector>

#include "gtest/gtest.h"

namespace tally::fraud_internal {
namespace {

using Outcome = FloodTable::Outcome;

IpAddress V4(uint32_t n) { return IpAddress::FromV4(0x0b000000u + n); }

// Counts n clicks of (ip, window) and returns how many were rejected.
int Rejected(FloodTable& table, const IpAddress& ip, int64_t window, int n) {
  int rejected = 0;
  for (int i = 0; i < n; ++i) {
    const Outcome o = table.Add(ip, window);
    EXPECT_NE(o, Outcome::kOverflow);
    rejected += o == Outcome::kRejected;
  }
  return rejected;
}

TEST(FloodTableTest, ExactlyTheClicksBeyondTheLimitAreRejected) {
  FloodTable table(1024, 16, 3);
  const IpAddress ip = V4(1);
  EXPECT_EQ(table.Add(ip, 100), Outcome::kAccepted);
  EXPECT_EQ(table.Add(ip, 100), Outcome::kAccepted);
  EXPECT_EQ(table.Add(ip, 100), Outcome::kAccepted);
  EXPECT_EQ(table.Add(ip, 100), Outcome::kRejected);
  // Saturated: every later click is rejected too, however many.
  EXPECT_EQ(Rejected(table, ip, 100, 10'000), 10'000);
  // Another IP and another window are separate counters.
  EXPECT_EQ(Rejected(table, V4(2), 100, 5), 2);
  EXPECT_EQ(Rejected(table, ip, 101, 5), 2);
}

TEST(FloodTableTest, LimitOfOneAndTheMaximumLimit) {
  FloodTable one(64, 16, 1);
  EXPECT_EQ(one.Add(V4(1), 0), Outcome::kAccepted);
  EXPECT_EQ(one.Add(V4(1), 0), Outcome::kRejected);
  FloodTable max(64, 16, FloodTable::kMaxLimit);
  EXPECT_EQ(Rejected(max, V4(1), 0, FloodTable::kMaxLimit + 5), 5);
}

TEST(FloodTableTest, IpVersionsAreDistinctKeys) {
  FloodTable table(64, 16, 1);
  IpAddress v6;
  ASSERT_TRUE(IpAddress::Parse("::b00:1", &v6));  // same low 32 bits as 11.0.0.1
  EXPECT_EQ(table.Add(V4(1), 0), Outcome::kAccepted);
  EXPECT_EQ(table.Add(v6, 0), Outcome::kAccepted);
}

TEST(FloodTableTest, OldWindowsAreReclaimedNotNewerOnes) {
  // 4 slots, probe window 4: room for exactly 4 live keys.
  FloodTable table(4, 4, 2);
  for (uint32_t i = 0; i < 4; ++i) EXPECT_EQ(table.Add(V4(i), 10), Outcome::kAccepted);
  EXPECT_EQ(table.CountNonEmpty(), 4u);
  // Windows 11 and 12 still see window 10 as live (within 2): no room.
  EXPECT_EQ(table.Add(V4(9), 11), Outcome::kOverflow);
  EXPECT_EQ(table.Add(V4(9), 12), Outcome::kOverflow);
  // The counters of window 10 are intact.
  EXPECT_EQ(table.Add(V4(0), 10), Outcome::kAccepted);
  EXPECT_EQ(table.Add(V4(0), 10), Outcome::kRejected);
  // Window 13: window 10 is older than 13 - 2, its slots are reclaimable.
  for (uint32_t i = 10; i < 14; ++i) EXPECT_EQ(table.Add(V4(i), 13), Outcome::kAccepted);
  EXPECT_EQ(table.Add(V4(14), 13), Outcome::kOverflow);
  // Reclaimed slots start from scratch and count exactly.
  EXPECT_EQ(Rejected(table, V4(10), 13, 4), 3);  // 1 earlier + 4 = 5, limit 2
}

TEST(FloodTableTest, LatenessKeepsOlderWindowsLiveForLaggingPartitions) {
  // Lateness 60 windows: a partition an hour behind the newest click still
  // counts its window exactly, however many newer clicks came in between.
  FloodTable table(4, 4, 2, 60);
  for (uint32_t i = 0; i < 4; ++i) EXPECT_EQ(table.Add(V4(i), 100), Outcome::kAccepted);
  // Windows up to 160 see window 100 as live: no room, the counts survive.
  EXPECT_EQ(table.Add(V4(9), 160), Outcome::kOverflow);
  EXPECT_EQ(Rejected(table, V4(0), 100, 3), 2);  // 1 earlier + 3 = 4, limit 2
  // Window 161: window 100 is older than 161 - 60, reclaimable.
  EXPECT_EQ(table.Add(V4(9), 161), Outcome::kAccepted);
}

TEST(FloodTableTest, LateClickOfAnEvictedWindowUndercountsNeverOvercounts) {
  FloodTable table(2, 2, 1);
  EXPECT_EQ(table.Add(V4(1), 0), Outcome::kAccepted);
  EXPECT_EQ(table.Add(V4(2), 0), Outcome::kAccepted);
  EXPECT_EQ(table.Add(V4(3), 5), Outcome::kAccepted);  // reclaims one window-0 slot
  EXPECT_EQ(table.Add(V4(4), 5), Outcome::kAccepted);  // and the other
  // Window 0 is gone: a late repeat starts over (accepted: fail-open), and
  // it cannot take a window-5 slot (the future band is live for it).
  EXPECT_EQ(table.Add(V4(1), 0), Outcome::kOverflow);
  EXPECT_EQ(table.Add(V4(3), 5), Outcome::kRejected);
}

TEST(FloodTableTest, WrappedStaleSlotsAreReclaimable) {
  // 2^16 windows later the 16-bit window field wraps: the stale slot looks
  // like the same window but the tag (hash of the FULL window) differs, so
  // it is not mistaken for the new key's counter.
  FloodTable table(1024, 16, 1);
  EXPECT_EQ(table.Add(V4(1), 7), Outcome::kAccepted);
  EXPECT_EQ(table.Add(V4(1), 7 + (int64_t{1} << FloodTable::kWindowBits)), Outcome::kAccepted);
  // A long-idle table: everything older is reclaimable.
  FloodTable small(2, 2, 1);
  EXPECT_EQ(small.Add(V4(1), 100), Outcome::kAccepted);
  EXPECT_EQ(small.Add(V4(2), 100), Outcome::kAccepted);
  EXPECT_EQ(small.Add(V4(3), 100 + 5000), Outcome::kAccepted);
  EXPECT_EQ(small.Add(V4(4), 100 + 5000), Outcome::kAccepted);
}

TEST(FloodTableTest, NegativeAndExtremeWindows) {
  FloodTable table(64, 16, 1);
  for (const int64_t w : {int64_t{-1}, int64_t{0}, INT64_MIN, INT64_MAX}) {
    EXPECT_EQ(table.Add(V4(1), w), Outcome::kAccepted) << w;
    EXPECT_EQ(table.Add(V4(1), w), Outcome::kRejected) << w;
  }
}

TEST(FloodTableTest, ManyKeysAtModerateLoadNeverOverflow) {
  FloodTable table(1 << 12, 16, 2);
  // Load 0.5 (2048 keys in 4096 slots), every key 3 times.
  int rejected = 0;
  for (int round = 0; round < 3; ++round) {
    for (uint32_t i = 0; i < 2048; ++i) {
      const Outcome o = table.Add(V4(i), 42);
      ASSERT_NE(o, Outcome::kOverflow);
      rejected += o == Outcome::kRejected;
    }
  }
  EXPECT_EQ(rejected, 2048);
}

}  // namespace
}  // namespace tally::fraud_internal
