#include "processor/dedup/internal/fingerprint_table.h"

#include "gtest/gtest.h"

namespace tally::dedup_internal {
namespace {

constexpr int64_t kHour = FingerprintTable::kGranuleMs;
constexpr TimestampMs kT0 = 1'704'067'200'000;  // 2024-01-01T00:00Z, hour-aligned
constexpr TimestampMs kNoW = std::numeric_limits<TimestampMs>::min();

// Hashes with the same home slot (low bits 0) and distinct fingerprints.
uint64_t SameHome(uint64_t i) { return (i + 1) << 32; }

TEST(FingerprintTableTest, InsertThenPresent) {
  FingerprintTable table(16, 4);
  EXPECT_EQ(table.InsertIfAbsent(SameHome(1), kT0, kNoW).result,
            FingerprintTable::Result::kInserted);
  EXPECT_EQ(table.InsertIfAbsent(SameHome(1), kT0, kNoW).result,
            FingerprintTable::Result::kPresent);
  EXPECT_TRUE(table.MayContain(SameHome(1)));
  EXPECT_FALSE(table.MayContain(SameHome(2)));
  EXPECT_EQ(table.CountNonEmpty(), 1u);
}

TEST(FingerprintTableTest, FullWindowReportsOldestLiveHour) {
  FingerprintTable table(16, 4);
  for (uint64_t i = 0; i < 4; ++i) {
    ASSERT_EQ(
        table.InsertIfAbsent(SameHome(i), kT0 + static_cast<int64_t>(3 - i) * kHour, kNoW).result,
        FingerprintTable::Result::kInserted);
  }
  const FingerprintTable::Outcome full = table.InsertIfAbsent(SameHome(9), kT0 + 5 * kHour, kNoW);
  EXPECT_EQ(full.result, FingerprintTable::Result::kFull);
  EXPECT_EQ(full.min_live_end_ms, kT0 + kHour);  // SameHome(3) sits in hour kT0
}

TEST(FingerprintTableTest, RaisingWatermarkReclaimsOldestInPlace) {
  FingerprintTable table(16, 4);
  for (uint64_t i = 0; i < 4; ++i) {
    ASSERT_EQ(table.InsertIfAbsent(SameHome(i), kT0 + static_cast<int64_t>(i) * kHour, kNoW).result,
              FingerprintTable::Result::kInserted);
  }
  // W = end of the oldest hour: only SameHome(0)'s slot is reclaimable.
  EXPECT_EQ(table.InsertIfAbsent(SameHome(9), kT0 + 5 * kHour, kT0 + kHour).result,
            FingerprintTable::Result::kInserted);
  EXPECT_FALSE(table.MayContain(SameHome(0)));
  EXPECT_TRUE(table.MayContain(SameHome(1)));
  EXPECT_TRUE(table.MayContain(SameHome(9)));
  EXPECT_EQ(table.CountNonEmpty(), 4u);  // T1: no slot went back to empty
}

TEST(FingerprintTableTest, UpsertAgesExistingSlot) {
  FingerprintTable table(16, 2);
  ASSERT_EQ(table.InsertIfAbsent(SameHome(0), kT0, kNoW).result,
            FingerprintTable::Result::kInserted);
  ASSERT_EQ(table.InsertIfAbsent(SameHome(1), kT0 + 2 * kHour, kNoW).result,
            FingerprintTable::Result::kInserted);
  EXPECT_EQ(table.Upsert(SameHome(0), kT0 + 5 * kHour, kNoW).result,
            FingerprintTable::Result::kPresent);
  // Aged to hour 5, SameHome(0) survives a W that reclaims hour 2.
  const FingerprintTable::Outcome r =
      table.InsertIfAbsent(SameHome(7), kT0 + 6 * kHour, kT0 + 3 * kHour);
  EXPECT_EQ(r.result, FingerprintTable::Result::kInserted);
  EXPECT_TRUE(table.MayContain(SameHome(0)));
  EXPECT_FALSE(table.MayContain(SameHome(1)));
}

TEST(FingerprintTableTest, UpsertClaimsWhenAbsent) {
  FingerprintTable table(16, 4);
  EXPECT_EQ(table.Upsert(SameHome(3), kT0, kNoW).result, FingerprintTable::Result::kInserted);
  EXPECT_TRUE(table.MayContain(SameHome(3)));
}

TEST(FingerprintTableTest, RepresentableUntil2209) {
  EXPECT_TRUE(FingerprintTable::Representable(kT0));
  EXPECT_TRUE(FingerprintTable::Representable(-5));
  EXPECT_FALSE(FingerprintTable::Representable(int64_t{8'000'000'000'000}));  // year 2223
}

}  // namespace
}  // namespace tally::dedup_internal
