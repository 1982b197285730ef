#include "processor/join/state_store.h"

#include <atomic>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "processor/dedup/dedup_key.h"
#include "processor/join/internal/codec.h"
#include "tests/join/test_dir.h"

namespace tally {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

constexpr TimestampMs kT0 = 1'700'000'000'000;
constexpr int64_t kHour = 3'600'000;

class StateStoreTest : public ::testing::Test {
 protected:
  StateStoreOptions Options() const {
    StateStoreOptions o;
    o.dir = dir_.path();
    o.block_cache_bytes = 8 << 20;
    o.write_buffer_bytes = 2 << 20;
    o.max_open_files = 64;
    o.click_retention_ms = 10 * kHour;
    o.conversion_lateness_ms = 0;
    o.ledger_retention_ms = 100 * kHour;
    o.dedup_retention_ms = 20 * kHour;
    return o;
  }
  std::unique_ptr<StateStores> MakeStores() {
    auto stores = StateStores::Create(Options());
    EXPECT_TRUE(stores.ok()) << stores.status();
    return *std::move(stores);
  }
  TaskStore* OpenStore(StateStores& stores, int32_t partition) {
    auto store = stores.Open(partition);
    EXPECT_TRUE(store.ok()) << store.status();
    return *store;
  }

  testing::TestDir dir_;
};

ClickRecord MakeClick(std::string id, TimestampMs t, std::string user = "u1",
                      std::string offer = "off-1") {
  return ClickRecord{std::move(id), t, "aff-1", std::move(offer), std::move(user), {"s1"}};
}

PendingConversion MakePending(std::string id, TimestampMs t) {
  PendingConversion p;
  p.conversion.conversion_id = std::move(id);
  p.conversion.event_time_ms = t;
  p.conversion.offer_id = "off-1";
  p.conversion.click_id = "clk";
  p.conversion.goal = "sale";
  p.source = {"conversions", 0, 7, "k", "v"};
  return p;
}

TEST(StateStoreOptionsTest, Validate) {
  StateStoreOptions o;
  EXPECT_TRUE(o.Validate().ok());
  o.write_buffer_bytes = o.block_cache_bytes;
  EXPECT_FALSE(o.Validate().ok());
  o = StateStoreOptions();
  o.max_open_files = 0;
  EXPECT_FALSE(o.Validate().ok());
  o.max_open_files = -1;
  EXPECT_TRUE(o.Validate().ok());
  o.click_retention_ms = 0;
  EXPECT_FALSE(o.Validate().ok());
}

TEST_F(StateStoreTest, OnePartitionOneDirectory) {
  auto stores = MakeStores();
  TaskStore* p0 = OpenStore(*stores, 0);
  TaskStore* p3 = OpenStore(*stores, 3);
  EXPECT_NE(p0, p3);
  EXPECT_EQ(OpenStore(*stores, 3), p3);  // idempotent
  EXPECT_EQ(p3->directory(), dir_.path() + "/p-3");
  EXPECT_TRUE(std::filesystem::exists(dir_.path() + "/p-0/CURRENT"));
  EXPECT_THAT(stores->open_partitions(), ElementsAre(0, 3));
  EXPECT_EQ(stores->Find(3), p3);
  ASSERT_TRUE(stores->Close(3).ok());
  EXPECT_EQ(stores->Find(3), nullptr);
  EXPECT_TRUE(std::filesystem::exists(dir_.path() + "/p-3"));  // close keeps the data
  ASSERT_TRUE(stores->Delete(0).ok());
  EXPECT_FALSE(std::filesystem::exists(dir_.path() + "/p-0"));
  EXPECT_TRUE(stores->open_partitions().empty());
}

TEST_F(StateStoreTest, AStoreBelongsToItsPartition) {
  {
    auto stores = MakeStores();
    OpenStore(*stores, 1);
  }
  std::filesystem::rename(dir_.path() + "/p-1", dir_.path() + "/p-2");
  auto stores = MakeStores();
  auto store = stores->Open(2);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(StateStoreTest, ReadYourWritesBeforeCommitAndAtomicCommit) {
  auto stores = MakeStores();
  TaskStore* store = OpenStore(*stores, 0);
  ASSERT_TRUE(store->PutClick(MakeClick("c1", kT0)).ok());
  auto got = store->GetClick("c1");
  ASSERT_TRUE(got.ok());
  ASSERT_TRUE(got->has_value());  // visible to the batch before Commit
  EXPECT_EQ(**got, MakeClick("c1", kT0));
  EXPECT_TRUE(store->has_uncommitted_changes());

  store->AdvanceClickWatermark(kT0);
  ASSERT_TRUE(store->Commit({{"clicks", 11}, {"conversions", 5}}).ok());
  EXPECT_FALSE(store->has_uncommitted_changes());
  ASSERT_TRUE(store->PutClick(MakeClick("c2", kT0 + 1)).ok());
  store->AdvanceClickWatermark(kT0 + 1);
  // "Crash": the store goes away without committing c2.
  stores.reset();

  stores = MakeStores();
  store = OpenStore(*stores, 0);
  EXPECT_TRUE((*store->GetClick("c1")).has_value());
  EXPECT_FALSE((*store->GetClick("c2")).has_value());
  EXPECT_EQ(store->click_watermark(), kT0);
  EXPECT_EQ(store->NextOffset("clicks"), 11);
  EXPECT_EQ(store->NextOffset("conversions"), 5);
  EXPECT_EQ(store->NextOffset("other"), std::nullopt);
  EXPECT_EQ(store->positions(), (std::vector<InputPosition>{{"clicks", 11}, {"conversions", 5}}));
}

TEST_F(StateStoreTest, DiscardRestoresTheLastCommit) {
  auto stores = MakeStores();
  TaskStore* store = OpenStore(*stores, 0);
  ASSERT_TRUE(store->InsertPending("k1", MakePending("o1", kT0)).ok());
  store->AdvanceConversionWatermark(kT0);
  ASSERT_TRUE(store->Commit({}).ok());
  ASSERT_TRUE(store->InsertPending("k2", MakePending("o2", kT0 - 5)).ok());
  ASSERT_TRUE(store->PutClick(MakeClick("c1", kT0)).ok());
  store->AdvanceClickWatermark(kT0);
  store->AdvanceConversionWatermark(kT0 + 9);
  EXPECT_EQ(store->pending_count(), 2);
  store->Discard();
  EXPECT_EQ(store->pending_count(), 1);
  EXPECT_EQ(store->click_watermark(), kNoWatermark);
  EXPECT_EQ(store->conversion_watermark(), kT0);
  EXPECT_FALSE((*store->GetClick("c1")).has_value());
  EXPECT_FALSE((*store->GetPending("k2")).has_value());
  auto oldest = store->OldestPending();
  ASSERT_TRUE(oldest.ok());
  ASSERT_TRUE(oldest->has_value());
  EXPECT_EQ((*oldest)->key, "k1");
}

TEST_F(StateStoreTest, PendingIndexByTime) {
  auto stores = MakeStores();
  TaskStore* store = OpenStore(*stores, 0);
  ASSERT_TRUE(store->InsertPending("b", MakePending("o1", kT0 + 20)).ok());
  ASSERT_TRUE(store->InsertPending("a", MakePending("o2", kT0 + 10)).ok());
  ASSERT_TRUE(store->InsertPending("c", MakePending("o3", kT0 + 30)).ok());
  EXPECT_EQ(store->pending_count(), 3);
  auto oldest = store->OldestPending();
  ASSERT_TRUE(oldest.ok() && oldest->has_value());
  EXPECT_EQ((*oldest)->key, "a");
  ASSERT_TRUE(store->DeletePending("a", kT0 + 10).ok());
  // A later insert older than the previous oldest is still found.
  ASSERT_TRUE(store->InsertPending("z", MakePending("o4", kT0 + 5)).ok());
  oldest = store->OldestPending();
  ASSERT_TRUE(oldest.ok() && oldest->has_value());
  EXPECT_EQ((*oldest)->key, "z");
  auto before = store->PendingBefore(kT0 + 30);
  ASSERT_TRUE(before.ok());
  ASSERT_EQ(before->size(), 2u);
  EXPECT_EQ((*before)[0].key, "z");
  EXPECT_EQ((*before)[1].key, "b");
  EXPECT_EQ((*before)[1].event_time_ms, kT0 + 20);
  ASSERT_TRUE(store->Commit({}).ok());
  stores.reset();
  stores = MakeStores();
  store = OpenStore(*stores, 0);
  EXPECT_EQ(store->pending_count(), 3);  // recounted on open
  auto p = store->GetPending("c");
  ASSERT_TRUE(p.ok() && p->has_value());
  EXPECT_EQ(**p, MakePending("o3", kT0 + 30));
  auto prefixed = store->PendingWithPrefix("b");
  ASSERT_TRUE(prefixed.ok());
  ASSERT_EQ(prefixed->size(), 1u);
  EXPECT_EQ((*prefixed)[0].first, "b");
}

TEST_F(StateStoreTest, UserClicksByTimeRange) {
  auto stores = MakeStores();
  TaskStore* store = OpenStore(*stores, 0);
  ASSERT_TRUE(store->PutClick(MakeClick("c3", kT0 + 300)).ok());
  ASSERT_TRUE(store->PutClick(MakeClick("c1", kT0 + 100)).ok());
  ASSERT_TRUE(store->PutClick(MakeClick("c2", kT0 + 200)).ok());
  ASSERT_TRUE(store->PutClick(MakeClick("other-offer", kT0 + 150, "u1", "off-2")).ok());
  ASSERT_TRUE(store->PutClick(MakeClick("other-user", kT0 + 150, "u2")).ok());
  ASSERT_TRUE(store->Commit({}).ok());
  ASSERT_TRUE(store->PutClick(MakeClick("c4", kT0 + 250)).ok());  // uncommitted: seen too
  auto clicks = store->UserClicks("u1", "off-1", kT0 + 100, kT0 + 250);
  ASSERT_TRUE(clicks.ok());
  std::vector<std::string> ids;
  for (const ClickRecord& c : *clicks) ids.push_back(c.click_id);
  EXPECT_THAT(ids, ElementsAre("c1", "c2", "c4"));
  EXPECT_TRUE(*store->HasUserClicks("u1", "off-2"));
  EXPECT_FALSE(*store->HasUserClicks("u3", "off-1"));
}

TEST_F(StateStoreTest, ExpiredRecordsReadAsAbsentAndCompactionDropsThem) {
  auto stores = MakeStores();
  TaskStore* store = OpenStore(*stores, 0);
  ASSERT_TRUE(store->PutClick(MakeClick("old", kT0)).ok());
  ConversionIdentity id{"off-1", "sale", "o1"};
  LedgerEntry entry;
  entry.conversion_time_ms = kT0;
  entry.outcome = LedgerOutcome::kUnattributed;
  ASSERT_TRUE(store->PutLedger(id, entry).ok());
  ASSERT_TRUE(store->PutDedupKey(ClickKey("old"), kT0).ok());
  store->AdvanceClickWatermark(kT0);
  store->AdvanceConversionWatermark(kT0);
  ASSERT_TRUE(store->Commit({}).ok());

  // The click watermark alone moving on expires nothing: a conversion not
  // read yet may still need the click.
  const TimestampMs later = kT0 + 10 * kHour + 1;
  store->AdvanceClickWatermark(later + 100 * kHour);
  EXPECT_TRUE((*store->GetClick("old")).has_value());
  // The conversions input moves past kT0 + retention: "old" has expired.
  ASSERT_TRUE(store->PutClick(MakeClick("new", later)).ok());
  ASSERT_TRUE(store->PutDedupKey(ClickKey("new"), later + 10 * kHour).ok());
  store->AdvanceConversionWatermark(later);
  EXPECT_FALSE((*store->GetClick("old")).has_value());  // reads expire at once
  EXPECT_TRUE((*store->UserClicks("u1", "off-1", kT0, later)).size() == 1);
  // Not committed yet: compaction must keep it (a crash would replay from a
  // state where it is still live).
  ASSERT_TRUE(store->CompactAll().ok());
  EXPECT_EQ(*store->CountStoredRecords(StoreFamily::kClicks), 1u);  // "new" is uncommitted
  ASSERT_TRUE(store->Commit({}).ok());
  EXPECT_EQ(*store->CountStoredRecords(StoreFamily::kClicks), 2u);
  EXPECT_EQ(*store->CountStoredRecords(StoreFamily::kUserClicks), 2u);
  ASSERT_TRUE(store->CompactAll().ok());
  EXPECT_EQ(*store->CountStoredRecords(StoreFamily::kClicks), 1u);
  EXPECT_EQ(*store->CountStoredRecords(StoreFamily::kUserClicks), 1u);
  EXPECT_TRUE((*store->GetClick("new")).has_value());
  // The ledger's retention is longer: the entry stays.
  EXPECT_EQ(*store->CountStoredRecords(StoreFamily::kLedger), 1u);
  EXPECT_TRUE((*store->GetLedger(id)).has_value());
  // The dedup watermark is later + 10h: "old" (kT0) is beyond 20h.
  EXPECT_EQ(*store->CountStoredRecords(StoreFamily::kDedup), 1u);
  EXPECT_FALSE(*stores->Contains(ClickKey("old")));
  EXPECT_TRUE(*stores->Contains(ClickKey("new")));

  // Ledger expiry by the conversion watermark.
  store->AdvanceConversionWatermark(kT0 + 100 * kHour + 1);
  EXPECT_FALSE((*store->GetLedger(id)).has_value());
  ASSERT_TRUE(store->Commit({}).ok());
  ASSERT_TRUE(store->CompactAll().ok());
  EXPECT_EQ(*store->CountStoredRecords(StoreFamily::kLedger), 0u);

  // The cutoff survives a restart (it comes from the committed watermark).
  ASSERT_TRUE(store->PutClick(MakeClick("old2", kT0)).ok());
  ASSERT_TRUE(store->Commit({}).ok());
  stores.reset();
  stores = MakeStores();
  store = OpenStore(*stores, 0);
  EXPECT_FALSE((*store->GetClick("old2")).has_value());
  ASSERT_TRUE(store->CompactAll().ok());
  // "new" (kT0 + 10 h) is 90 h behind the conversions input by now too.
  EXPECT_EQ(*store->CountStoredRecords(StoreFamily::kClicks), 0u);
}

// A changelogged store (expire_by_sweep): expired records leave through the
// changelog batches as tombstones, so a compacted changelog stops holding
// every click ever seen; compaction alone deletes nothing the changelog
// would not hear of.
TEST_F(StateStoreTest, ExpirySweepTombstonesExpiredRecordsInTheChangelogBatch) {
  StateStoreOptions o = Options();
  o.expire_by_sweep = true;
  auto stores = StateStores::Create(o);
  ASSERT_TRUE(stores.ok()) << stores.status();
  TaskStore* store = OpenStore(**stores, 0);
  using Changes = std::map<std::string, std::optional<std::string>>;
  auto commit = [&](Changes* changes) {
    ASSERT_TRUE(store->PrepareCommit({}).ok());
    ASSERT_TRUE(store
                    ->ForEachChangelogRecord([&](std::string_view key, const std::string* value) {
                      EXPECT_FALSE(changes->contains(std::string(key))) << "twice: " << key;
                      (*changes)[std::string(key)] =
                          value == nullptr ? std::nullopt : std::optional<std::string>(*value);
                      return absl::OkStatus();
                    })
                    .ok());
    ASSERT_TRUE(store->ApplyCommit(1).ok());
  };
  const std::string clicks(1, static_cast<char>(StoreFamily::kClicks));
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(store->PutClick(MakeClick(absl::StrCat("old", i), kT0 + i)).ok());
  }
  store->AdvanceClickWatermark(kT0 + 20);
  Changes first;
  commit(&first);
  EXPECT_TRUE(first.contains(clicks + "old0"));

  // The watermark passes kT0 + 20 + retention: every "old" click expired.
  // "old3" is written again (a fresh record under an old key): it stays.
  const TimestampMs later = kT0 + 10 * kHour + 100;
  store->AdvanceClickWatermark(later);
  store->AdvanceConversionWatermark(later);
  Changes advance;
  commit(&advance);  // the cutoff follows the committed watermark
  ASSERT_TRUE(store->CompactAll().ok());
  EXPECT_EQ(*store->CountStoredRecords(StoreFamily::kClicks), 20u)
      << "compaction dropped records the changelog was not told of";

  std::set<std::string> tombstones;
  int rounds = 0;
  for (int round = 0; round < 40 && tombstones.size() < 19; ++round, ++rounds) {
    ASSERT_TRUE(store->PutClick(MakeClick(absl::StrCat("new", round), later + round)).ok());
    if (round == 0) {
      ASSERT_TRUE(store->PutClick(MakeClick("old3", later)).ok());
    }
    Changes changes;
    commit(&changes);
    for (const auto& [key, value] : changes) {
      if (key.starts_with(clicks + "old") && !value.has_value()) tombstones.insert(key);
      if (key == clicks + "old3") {
        EXPECT_TRUE(value.has_value()) << "the batch's own record";
      }
      if (key.starts_with(clicks + "new")) {
        EXPECT_TRUE(value.has_value()) << key;
      }
    }
  }
  // Twice what each batch writes to the family (here 1 click, 2 in the
  // first): the 20 old and the new records are passed over within a dozen
  // batches.
  EXPECT_EQ(tombstones.size(), 19u);
  EXPECT_LE(rounds, 12);
  EXPECT_FALSE(tombstones.contains(clicks + "old3"));
  EXPECT_EQ(*store->CountStoredRecords(StoreFamily::kClicks), 1u + rounds);  // old3 + new*
  EXPECT_TRUE((*store->GetClick("old3")).has_value());
  EXPECT_TRUE((*store->GetClick("new0")).has_value());
}

// Retention follows the conversions that can still be decided: a pending
// conversion holds every click it could credit, and the conversions input's
// progress is taken less its lateness (issue: a conversion read after the
// clicks input had moved on found its click expired).
TEST_F(StateStoreTest, ClickRetentionFollowsPendingConversionsAndConversionProgress) {
  StateStoreOptions o = Options();
  o.conversion_lateness_ms = kHour;
  auto stores = StateStores::Create(o);
  ASSERT_TRUE(stores.ok()) << stores.status();
  TaskStore* store = OpenStore(**stores, 0);
  ASSERT_TRUE(store->PutClick(MakeClick("c", kT0)).ok());
  PendingConversion pending;
  pending.conversion.offer_id = "off-1";
  pending.conversion.conversion_id = "o1";
  pending.conversion.event_time_ms = kT0 + kHour;
  ASSERT_TRUE(store->InsertPending("p1", pending).ok());
  store->AdvanceClickWatermark(kT0 + 1000 * kHour);
  store->AdvanceConversionWatermark(kT0 + 1000 * kHour);
  ASSERT_TRUE(store->Commit({}).ok());
  ASSERT_TRUE(store->CompactAll().ok());
  EXPECT_TRUE((*store->GetClick("c")).has_value()) << "the pending conversion holds it";
  EXPECT_EQ(*store->CountStoredRecords(StoreFamily::kClicks), 1u);

  ASSERT_TRUE(store->DeletePending("p1", kT0 + kHour).ok());
  EXPECT_FALSE((*store->GetClick("c")).has_value());
  ASSERT_TRUE(store->Commit({}).ok());
  ASSERT_TRUE(store->CompactAll().ok());
  EXPECT_EQ(*store->CountStoredRecords(StoreFamily::kClicks), 0u);

  // Conversions input at kT1: clicks down to kT1 - lateness - retention stay.
  const TimestampMs kT1 = kT0 + 2000 * kHour;
  ASSERT_TRUE(store->PutClick(MakeClick("edge", kT1 - 11 * kHour)).ok());
  ASSERT_TRUE(store->PutClick(MakeClick("gone", kT1 - 11 * kHour - 1)).ok());
  store->AdvanceConversionWatermark(kT1);
  EXPECT_TRUE((*store->GetClick("edge")).has_value());
  EXPECT_FALSE((*store->GetClick("gone")).has_value());
}

TEST_F(StateStoreTest, DurableIdIndexSeesCommittedKeysOfEveryOpenStore) {
  auto stores = MakeStores();
  TaskStore* p0 = OpenStore(*stores, 0);
  TaskStore* p1 = OpenStore(*stores, 1);
  const DedupKey c1 = ClickKey("c1");
  const DedupKey v1 = ConversionKey("off-1", "sale", "o1", ConversionStatus::kApproved);
  ASSERT_TRUE(p0->PutDedupKey(c1, kT0).ok());
  ASSERT_TRUE(p1->PutDedupKey(v1, kT0 + 5).ok());
  // Uncommitted keys are the deduplicator's pending logs' business.
  EXPECT_FALSE(*stores->Contains(c1));
  ASSERT_TRUE(p0->Commit({}).ok());
  ASSERT_TRUE(p1->Commit({}).ok());
  EXPECT_TRUE(*stores->Contains(c1));
  EXPECT_TRUE(*stores->Contains(v1));
  EXPECT_FALSE(*stores->Contains(ClickKey("c2")));

  std::set<std::pair<std::string, TimestampMs>> seen;
  ASSERT_TRUE(stores
                  ->ForEachSince(kT0 + 1,
                                 [&](const DedupKey& key, TimestampMs t) {
                                   seen.emplace(std::string(key.encoded()), t);
                                 })
                  .ok());
  EXPECT_THAT(seen, ElementsAre(Pair(std::string(v1.encoded()), kT0 + 5)));
  seen.clear();
  ASSERT_TRUE(stores
                  ->ForEachSince(kNoWatermark,
                                 [&](const DedupKey& key, TimestampMs t) {
                                   seen.emplace(std::string(key.encoded()), t);
                                 })
                  .ok());
  EXPECT_EQ(seen.size(), 2u);

  // A revoked partition's keys leave the index with it.
  ASSERT_TRUE(stores->Close(1).ok());
  EXPECT_FALSE(*stores->Contains(v1));
  OpenStore(*stores, 1);
  EXPECT_TRUE(*stores->Contains(v1));
}

TEST_F(StateStoreTest, OpenManyAndParallelScanSeeEveryStoreOnce) {
  StateStoreOptions o = Options();
  o.parallelism = 3;
  {
    auto stores = StateStores::Create(o);
    ASSERT_TRUE(stores.ok()) << stores.status();
    for (int32_t p = 0; p < 7; ++p) {
      TaskStore* store = OpenStore(**stores, p);
      for (int i = 0; i < 50; ++i) {
        ASSERT_TRUE(store->PutDedupKey(ClickKey(absl::StrCat("p", p, "-", i)), kT0 + i).ok());
      }
      ASSERT_TRUE(store->Commit({}).ok());
    }
  }  // closed: the next instance recovers them
  auto stores = StateStores::Create(o);
  ASSERT_TRUE(stores.ok()) << stores.status();
  TaskStore* already = OpenStore(**stores, 2);
  // 2 is open (kept, not reopened: a second RocksDB open of one directory
  // would fail on its LOCK file), 9 is new.
  (*stores)->OpenMany({0, 1, 2, 3, 4, 5, 6, 9});
  EXPECT_EQ((*stores)->Find(2), already);
  EXPECT_THAT((*stores)->open_partitions(), ::testing::ElementsAre(0, 1, 2, 3, 4, 5, 6, 9));
  EXPECT_EQ(OpenStore(**stores, 5), (*stores)->Find(5));

  std::mutex mu;
  std::multiset<std::string> seen;
  std::set<std::thread::id> threads;
  ASSERT_TRUE((*stores)
                  ->ForEachSince(kT0 + 10,
                                 [&](const DedupKey& key, TimestampMs t) {
                                   EXPECT_GE(t, kT0 + 10);
                                   std::lock_guard lock(mu);
                                   seen.insert(std::string(key.encoded()));
                                   threads.insert(std::this_thread::get_id());
                                 })
                  .ok());
  EXPECT_EQ(seen.size(), 7u * 40u);
  for (const std::string& k : seen) EXPECT_EQ(seen.count(k), 1u) << k;
  EXPECT_GE(threads.size(), 1u);
  EXPECT_LE(threads.size(), 3u);
}

TEST_F(StateStoreTest, ConcurrentContainsWhileCommitting) {
  auto stores = MakeStores();
  TaskStore* p0 = OpenStore(*stores, 0);
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  std::vector<std::thread> readers;
  for (int i = 0; i < 2; ++i) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        if (!stores->Contains(ClickKey("c-0")).ok()) errors.fetch_add(1);
      }
    });
  }
  for (int i = 0; i < 200; ++i) {
    const DedupKey key = ClickKey("c-" + std::to_string(i));
    ASSERT_TRUE(p0->PutDedupKey(key, kT0 + i).ok());
    ASSERT_TRUE(p0->Commit({}).ok());
    // Read-your-writes across threads: acknowledged means visible.
    EXPECT_TRUE(*stores->Contains(key));
  }
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(errors.load(), 0);
}

}  // namespace
}  // namespace tally
