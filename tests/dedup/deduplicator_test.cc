#include "processor/dedup/deduplicator.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/dedup/fake_durable_id_index.h"

namespace tally {
namespace {

using ::tally::testing::FakeDurableIdIndex;

constexpr int64_t kHour = 3'600'000;
constexpr int64_t kDay = 24 * kHour;
constexpr TimestampMs kT0 = 1'704'067'200'000;  // 2024-01-01T00:00Z, hour-aligned

uint64_t ConstantHash(std::string_view) { return 0x1234'5678'9abc'def0ULL; }

DedupOptions SmallOptions() {
  DedupOptions options;
  options.table_slots = 1024;
  options.probe_limit = 16;
  return options;
}

class DeduplicatorTest : public ::testing::Test {
 protected:
  // Given a deduplicator over index_, warmed up from `since` (a start-up).
  std::unique_ptr<Deduplicator> MakeTestee(DedupOptions options = SmallOptions(),
                                           bool warm_up = true) {
    absl::StatusOr<std::unique_ptr<Deduplicator>> dedup = Deduplicator::Create(options, &index_);
    EXPECT_TRUE(dedup.ok()) << dedup.status();
    if (!dedup.ok()) return nullptr;
    if (warm_up) {
      absl::Status s = (*dedup)->WarmUp(kT0 - kDay);
      EXPECT_TRUE(s.ok()) << s;
    }
    return *std::move(dedup);
  }

  static DedupOutcome Check(Deduplicator& dedup, DedupBatch& batch, const DedupKey& key,
                            TimestampMs t) {
    absl::StatusOr<DedupOutcome> outcome = dedup.Check(batch, key, t);
    EXPECT_TRUE(outcome.ok()) << outcome.status();
    return outcome.value_or(DedupOutcome::kTooOld);
  }

  FakeDurableIdIndex index_;
};

TEST_F(DeduplicatorTest, RepeatedClickIdIsDuplicateWithinBatch) {
  auto dedup = MakeTestee();
  auto batch = dedup->BeginBatch();
  EXPECT_EQ(Check(*dedup, *batch, ClickKey("c1"), kT0), DedupOutcome::kNew);
  EXPECT_EQ(Check(*dedup, *batch, ClickKey("c2"), kT0), DedupOutcome::kNew);
  EXPECT_EQ(Check(*dedup, *batch, ClickKey("c1"), kT0), DedupOutcome::kDuplicate);
  // The first sightings took the fast path; the repeat was settled by the
  // batch's pending log, so the durable index was never asked.
  EXPECT_EQ(index_.lookups(), 0u);
  EXPECT_EQ(dedup->counters().new_keys.load(), 2u);
  EXPECT_EQ(dedup->counters().duplicates.load(), 1u);
  EXPECT_EQ(dedup->counters().slow_fingerprint_hit.load(), 1u);
  EXPECT_EQ(batch->accepted_count(), 2u);
  dedup->Abort(std::move(batch));
}

TEST_F(DeduplicatorTest, AcceptedKeysAreReportedForPersistence) {
  auto dedup = MakeTestee();
  auto batch = dedup->BeginBatch();
  Check(*dedup, *batch, ClickKey("a"), kT0 + 1);
  Check(*dedup, *batch, ClickKey("a"), kT0 + 1);
  Check(*dedup, *batch, ClickKey("b"), kT0 + 2);
  std::vector<std::pair<std::string, TimestampMs>> accepted;
  batch->ForEachAccepted([&](const DedupKey& key, TimestampMs t) {
    accepted.emplace_back(std::string(key.encoded()), t);
  });
  EXPECT_EQ(accepted,
            (std::vector<std::pair<std::string, TimestampMs>>{{"ca", kT0 + 1}, {"cb", kT0 + 2}}));
  dedup->Abort(std::move(batch));
}

TEST_F(DeduplicatorTest, DuplicateAcrossCommittedBatchesIsConfirmedByIndex) {
  auto dedup = MakeTestee();
  auto first = dedup->BeginBatch();
  ASSERT_EQ(Check(*dedup, *first, ClickKey("c1"), kT0), DedupOutcome::kNew);
  index_.PersistAndCommit(*dedup, std::move(first));

  auto second = dedup->BeginBatch();
  EXPECT_EQ(Check(*dedup, *second, ClickKey("c1"), kT0), DedupOutcome::kDuplicate);
  EXPECT_EQ(index_.lookups(), 1u);
  EXPECT_EQ(dedup->counters().authority_lookups_fingerprint_hit.load(), 1u);
  EXPECT_EQ(dedup->counters().false_positive_fingerprint_hits.load(), 0u);
  dedup->Abort(std::move(second));
}

// Guards against a key accepted by a batch that is not yet durable being
// accepted again by a concurrent batch (the index does not have it yet).
TEST_F(DeduplicatorTest, DuplicateOfKeyPendingInAnotherBatch) {
  auto dedup = MakeTestee();
  auto a = dedup->BeginBatch();
  auto b = dedup->BeginBatch();
  ASSERT_EQ(Check(*dedup, *a, ClickKey("c1"), kT0), DedupOutcome::kNew);
  EXPECT_EQ(Check(*dedup, *b, ClickKey("c1"), kT0), DedupOutcome::kDuplicate);
  EXPECT_EQ(b->accepted_count(), 0u);
  index_.PersistAndCommit(*dedup, std::move(a));
  index_.PersistAndCommit(*dedup, std::move(b));
  EXPECT_EQ(index_.size(), 1u);
}

TEST_F(DeduplicatorTest, ConversionStatusChangeIsNotADuplicate) {
  auto dedup = MakeTestee();
  auto batch = dedup->BeginBatch();
  auto key = [](ConversionStatus s) { return ConversionKey("offer-1", "sale", "order-7", s); };
  EXPECT_EQ(Check(*dedup, *batch, key(ConversionStatus::kPending), kT0), DedupOutcome::kNew);
  EXPECT_EQ(Check(*dedup, *batch, key(ConversionStatus::kPending), kT0), DedupOutcome::kDuplicate);
  EXPECT_EQ(Check(*dedup, *batch, key(ConversionStatus::kApproved), kT0 + kHour),
            DedupOutcome::kNew);
  EXPECT_EQ(Check(*dedup, *batch, key(ConversionStatus::kApproved), kT0 + kHour),
            DedupOutcome::kDuplicate);
  EXPECT_EQ(Check(*dedup, *batch, key(ConversionStatus::kReversed), kT0 + 2 * kHour),
            DedupOutcome::kNew);
  // Same order id under another goal or offer is another conversion.
  EXPECT_EQ(Check(*dedup, *batch,
                  ConversionKey("offer-1", "lead", "order-7", ConversionStatus::kPending), kT0),
            DedupOutcome::kNew);
  EXPECT_EQ(Check(*dedup, *batch,
                  ConversionKey("offer-2", "sale", "order-7", ConversionStatus::kPending), kT0),
            DedupOutcome::kNew);
  dedup->Abort(std::move(batch));
}

// Guards against rejecting a new id because its fingerprint equals another
// id's: every key here has the same 64-bit hash.
TEST_F(DeduplicatorTest, FingerprintCollisionNeverRejectsNewKey) {
  DedupOptions options = SmallOptions();
  options.hash_fn = &ConstantHash;
  auto dedup = MakeTestee(options);
  auto batch = dedup->BeginBatch();
  EXPECT_EQ(Check(*dedup, *batch, ClickKey("c1"), kT0), DedupOutcome::kNew);
  EXPECT_EQ(Check(*dedup, *batch, ClickKey("c2"), kT0), DedupOutcome::kNew);
  EXPECT_EQ(dedup->counters().false_positive_fingerprint_hits.load(), 1u);
  EXPECT_EQ(Check(*dedup, *batch, ClickKey("c2"), kT0), DedupOutcome::kDuplicate);
  EXPECT_EQ(Check(*dedup, *batch, ClickKey("c1"), kT0), DedupOutcome::kDuplicate);
  index_.PersistAndCommit(*dedup, std::move(batch));

  auto next = dedup->BeginBatch();
  EXPECT_EQ(Check(*dedup, *next, ClickKey("c3"), kT0), DedupOutcome::kNew);
  EXPECT_EQ(Check(*dedup, *next, ClickKey("c1"), kT0), DedupOutcome::kDuplicate);
  EXPECT_EQ(Check(*dedup, *next, ClickKey("c2"), kT0), DedupOutcome::kDuplicate);
  EXPECT_EQ(dedup->counters().false_positive_fingerprint_hits.load(), 2u);
  dedup->Abort(std::move(next));
}

TEST_F(DeduplicatorTest, EventOlderThanHorizonIsTooOld) {
  DedupOptions options = SmallOptions();
  options.horizon_ms = 35 * kDay;
  auto dedup = MakeTestee(options);
  auto batch = dedup->BeginBatch();
  ASSERT_EQ(Check(*dedup, *batch, ClickKey("recent"), kT0 + 40 * kDay), DedupOutcome::kNew);
  EXPECT_EQ(Check(*dedup, *batch, ClickKey("old"), kT0 + 5 * kDay - 1), DedupOutcome::kTooOld);
  EXPECT_EQ(Check(*dedup, *batch, ClickKey("edge"), kT0 + 5 * kDay), DedupOutcome::kNew);
  EXPECT_EQ(dedup->counters().too_old.load(), 1u);
  EXPECT_EQ(batch->accepted_count(), 2u);  // the too-old one is not recorded
  dedup->Abort(std::move(batch));
}

TEST_F(DeduplicatorTest, ExpiryAdvancesCompletenessWatermark) {
  DedupOptions options = SmallOptions();
  options.horizon_ms = 2 * kDay;
  options.repeat_skew_ms = kHour;
  auto dedup = MakeTestee(options);
  EXPECT_EQ(dedup->completeness_watermark(), kT0 - kDay);
  auto batch = dedup->BeginBatch();
  Check(*dedup, *batch, ClickKey("a"), kT0 + 3 * kDay + 30 * 60'000);
  // W = M - H - S rounded down to the hour.
  EXPECT_EQ(dedup->completeness_watermark(), kT0 + kDay - kHour);
  EXPECT_EQ(dedup->counters().expiry_advances.load(), 1u);
  // In steady state W + S == M - H: every event that is not too old is at
  // least S above W and is answered from memory.
  EXPECT_EQ(Check(*dedup, *batch, ClickKey("b"), kT0 + kDay + 30 * 60'000), DedupOutcome::kNew);
  EXPECT_EQ(Check(*dedup, *batch, ClickKey("c"), kT0 + kDay + 30 * 60'000 - 1),
            DedupOutcome::kTooOld);
  EXPECT_EQ(dedup->counters().slow_below_watermark.load(), 0u);
  EXPECT_EQ(index_.lookups(), 0u);
  dedup->Abort(std::move(batch));
}

// Guards both directions of exactness under memory pressure: evicted ids are
// still duplicates (via the index), and nothing unseen becomes a duplicate.
TEST_F(DeduplicatorTest, PressureEvictionKeepsExactness) {
  DedupOptions options;
  options.table_slots = 8;
  options.probe_limit = 8;
  options.repeat_skew_ms = 0;
  auto dedup = MakeTestee(options);
  auto batch = dedup->BeginBatch();
  for (int i = 0; i < 8; ++i) {
    ASSERT_EQ(Check(*dedup, *batch, ClickKey(absl::StrCat("k", i)), kT0 + i * kHour),
              DedupOutcome::kNew);
  }
  index_.PersistAndCommit(*dedup, std::move(batch));
  EXPECT_EQ(dedup->counters().pressure_evictions.load(), 0u);

  batch = dedup->BeginBatch();
  EXPECT_EQ(Check(*dedup, *batch, ClickKey("k8"), kT0 + 8 * kHour), DedupOutcome::kNew);
  EXPECT_EQ(dedup->counters().pressure_evictions.load(), 1u);
  // Oldest first: exactly hour 0 was given up.
  EXPECT_EQ(dedup->completeness_watermark(), kT0 + kHour);
  const uint64_t lookups_before = index_.lookups();
  // k0 was evicted: below W, the index still knows it.
  EXPECT_EQ(Check(*dedup, *batch, ClickKey("k0"), kT0), DedupOutcome::kDuplicate);
  // An unseen id below W is new, not a false duplicate.
  EXPECT_EQ(Check(*dedup, *batch, ClickKey("fresh-old"), kT0 + 10), DedupOutcome::kNew);
  EXPECT_EQ(index_.lookups(), lookups_before + 2);
  EXPECT_EQ(dedup->counters().authority_lookups_below_watermark.load(), 2u);
  // k5 is still in the table: a duplicate too.
  EXPECT_EQ(Check(*dedup, *batch, ClickKey("k5"), kT0 + 5 * kHour), DedupOutcome::kDuplicate);
  // And k8, the newest, is a duplicate within its batch.
  EXPECT_EQ(Check(*dedup, *batch, ClickKey("k8"), kT0 + 8 * kHour), DedupOutcome::kDuplicate);
  dedup->Abort(std::move(batch));
}

TEST_F(DeduplicatorTest, WarmUpAfterRestartRemembersAndAcceptsNewIds) {
  constexpr int kIds = 100;
  {
    auto before = MakeTestee();
    auto batch = before->BeginBatch();
    for (int i = 0; i < kIds; ++i) {
      ASSERT_EQ(Check(*before, *batch, ClickKey(absl::StrCat("c", i)), kT0 + i * 1000),
                DedupOutcome::kNew);
    }
    index_.PersistAndCommit(*before, std::move(batch));
  }  // "restart"
  auto after = MakeTestee();
  EXPECT_EQ(after->event_time_watermark(), kT0 + (kIds - 1) * 1000);
  auto batch = after->BeginBatch();
  const uint64_t lookups_before = index_.lookups();
  for (int i = 0; i < kIds; ++i) {
    EXPECT_EQ(Check(*after, *batch, ClickKey(absl::StrCat("n", i)), kT0 + i * 1000),
              DedupOutcome::kNew);
  }
  // New ids after the restart need no durable lookup: the table was refilled
  // and W is the warm-up horizon, not +infinity.
  EXPECT_EQ(index_.lookups(), lookups_before);
  for (int i = 0; i < kIds; ++i) {
    EXPECT_EQ(Check(*after, *batch, ClickKey(absl::StrCat("c", i)), kT0 + i * 1000),
              DedupOutcome::kDuplicate);
  }
  after->Abort(std::move(batch));
}

TEST_F(DeduplicatorTest, WithoutWarmUpEveryCheckAsksTheIndex) {
  index_.Put(ClickKey("known"), kT0);
  auto dedup = MakeTestee(SmallOptions(), /*warm_up=*/false);
  auto batch = dedup->BeginBatch();
  EXPECT_EQ(Check(*dedup, *batch, ClickKey("known"), kT0), DedupOutcome::kDuplicate);
  EXPECT_EQ(Check(*dedup, *batch, ClickKey("unknown"), kT0), DedupOutcome::kNew);
  EXPECT_EQ(index_.lookups(), 2u);
  dedup->Abort(std::move(batch));
}

TEST_F(DeduplicatorTest, AbortForgetsTheBatchKeys) {
  auto dedup = MakeTestee();
  auto failed = dedup->BeginBatch();
  ASSERT_EQ(Check(*dedup, *failed, ClickKey("c1"), kT0), DedupOutcome::kNew);
  dedup->Abort(std::move(failed));
  // The replayed batch sees c1 as new again (the stale hint costs a lookup).
  auto replay = dedup->BeginBatch();
  EXPECT_EQ(Check(*dedup, *replay, ClickKey("c1"), kT0), DedupOutcome::kNew);
  EXPECT_EQ(Check(*dedup, *replay, ClickKey("c1"), kT0), DedupOutcome::kDuplicate);
  EXPECT_EQ(dedup->counters().false_positive_fingerprint_hits.load(), 1u);
  dedup->Abort(std::move(replay));
}

TEST_F(DeduplicatorTest, IndexErrorPropagatesAndRecordsNothing) {
  DedupOptions options = SmallOptions();
  options.hash_fn = &ConstantHash;  // second key takes the slow path
  auto dedup = MakeTestee(options);
  auto batch = dedup->BeginBatch();
  ASSERT_EQ(Check(*dedup, *batch, ClickKey("c1"), kT0), DedupOutcome::kNew);
  index_.FailWith(absl::UnavailableError("disk on fire"));
  absl::StatusOr<DedupOutcome> failed = dedup->Check(*batch, ClickKey("c2"), kT0);
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(batch->accepted_count(), 1u);
  index_.FailWith(absl::OkStatus());
  EXPECT_EQ(Check(*dedup, *batch, ClickKey("c2"), kT0), DedupOutcome::kNew);
  dedup->Abort(std::move(batch));
}

TEST_F(DeduplicatorTest, WarmUpErrorPropagates) {
  index_.FailWith(absl::DataLossError("corrupt"));
  absl::StatusOr<std::unique_ptr<Deduplicator>> dedup =
      Deduplicator::Create(SmallOptions(), &index_);
  ASSERT_TRUE(dedup.ok());
  EXPECT_EQ((*dedup)->WarmUp(kT0).code(), absl::StatusCode::kDataLoss);
}

TEST(DedupOptionsTest, ValidateRejectsBadValues) {
  DedupOptions options;
  EXPECT_TRUE(options.Validate().ok());
  options.table_slots = 1000;
  EXPECT_FALSE(options.Validate().ok());
  options = DedupOptions();
  options.horizon_ms = 0;
  EXPECT_FALSE(options.Validate().ok());
  options = DedupOptions();
  options.probe_limit = 0;
  EXPECT_FALSE(options.Validate().ok());
  options = DedupOptions();
  options.repeat_skew_ms = -1;
  EXPECT_FALSE(options.Validate().ok());
  EXPECT_NE(DedupOptions().ToString().find("table_slots=16777216 (128 MiB)"), std::string::npos);
  FakeDurableIdIndex index;
  EXPECT_FALSE(Deduplicator::Create(DedupOptions(), nullptr).ok());
}

}  // namespace
}  // namespace tally
