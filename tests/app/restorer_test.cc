// The Restorer against the in-process fake's PartitionReader: a changelog
// written from real TaskStore batches (PrepareCommit, ForEachChangelogRecord,
// marker, ApplyCommit) is restored into other stores, which must end up with
// exactly the committed state of the source.
#include "processor/app/restorer.h"

#include <array>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "librdkafka/rdkafka.h"
#include "processor/dedup/dedup_key.h"
#include "processor/join/state_store.h"
#include "processor/kafka/fake_kafka.h"
#include "processor/kafka/kafka.h"
#include "tests/join/test_dir.h"

namespace tally {
namespace {

using kafka::fake::FakeClientFactory;
using kafka::fake::FakeCluster;

constexpr char kTopic[] = "changelog";
constexpr int32_t kPartition = 0;
constexpr TimestampMs kT0 = 1'700'000'000'000;
constexpr int kMaxRound = 12;  // rounds whose keys ExpectSameState reads

#define ASSERT_OK(expr)                          \
  do {                                           \
    const absl::Status _s = (expr);              \
    ASSERT_TRUE(_s.ok()) << #expr << ": " << _s; \
  } while (false)
#define EXPECT_OK(expr)                          \
  do {                                           \
    const absl::Status _s = (expr);              \
    EXPECT_TRUE(_s.ok()) << #expr << ": " << _s; \
  } while (false)

ClickRecord MakeClick(int round, int i) {
  return ClickRecord{"c" + std::to_string(round) + "-" + std::to_string(i),
                     kT0 + round * 1000 + i,
                     "aff-1",
                     "off-1",
                     "u" + std::to_string(i % 2),
                     {"s" + std::to_string(round)}};
}

PendingConversion MakePending(const std::string& id, TimestampMs t, int64_t source_offset) {
  PendingConversion p;
  p.conversion.conversion_id = id;
  p.conversion.event_time_ms = t;
  p.conversion.offer_id = "off-1";
  p.conversion.click_id = "clk";
  p.conversion.goal = "sale";
  p.source = {"conversions", 0, source_offset, "k", "v"};
  return p;
}

ConversionIdentity LedgerId(int round) { return {"off-1", "sale", "o" + std::to_string(round)}; }

std::string PendingKey(int round) { return "p" + std::to_string(round); }

// One batch of changes touching every family: puts, updates, deletions
// (tombstones), merges (flood counts), watermarks and positions.
void Mutate(TaskStore& store, int round) {
  for (int i = 0; i < 3; ++i) ASSERT_OK(store.PutClick(MakeClick(round, i)));
  ASSERT_OK(store.InsertPending(PendingKey(round), MakePending(PendingKey(round), kT0 + round, 1)));
  if (round > 0) {
    // The previous round's pending conversion is resolved: deleted (unless
    // that round never committed).
    auto previous = store.GetPending(PendingKey(round - 1));
    ASSERT_TRUE(previous.ok());
    if (previous->has_value()) {
      ASSERT_OK(store.DeletePending(PendingKey(round - 1), kT0 + round - 1));
    }
    ASSERT_OK(store.UpdatePending("keep", MakePending("keep", kT0, round)));
  } else {
    ASSERT_OK(store.InsertPending("keep", MakePending("keep", kT0, 0)));
  }
  LedgerEntry entry;
  entry.conversion_time_ms = kT0 + round;
  entry.outcome = LedgerOutcome::kUnattributed;
  entry.detail = "round " + std::to_string(round);
  ASSERT_OK(store.PutLedger(LedgerId(round), entry));
  ASSERT_OK(store.PutLedger(LedgerId(0), entry));  // re-written every round
  ASSERT_OK(store.PutDedupKey(ClickKey("c" + std::to_string(round)), kT0 + round * 1000));
  FloodClick flood;
  flood.click_offset = round * 10;
  flood.window_start_ms = kT0 - kT0 % 60'000;
  flood.ip[15] = static_cast<uint8_t>(round % 2);
  store.RecordFloodClick(flood);
  store.AdvanceClickWatermark(kT0 + round * 1000 + 2);
  store.AdvanceConversionWatermark(kT0 + round);
}

std::vector<InputPosition> Positions(int round) {
  return {{"clicks", (round + 1) * 10}, {"conversions", round + 1}};
}

class RestorerTest : public ::testing::Test {
 protected:
  RestorerTest() : factory_(&cluster_) {
    cluster_.CreateTopic(kTopic, 2, ChangelogTopicConfig());
    source_stores_ = MakeStores(source_dir_);
    source_ = Open(*source_stores_);
  }

  StateStoreOptions Options(const testing::TestDir& dir) const {
    StateStoreOptions o;
    o.dir = dir.path();
    o.block_cache_bytes = 8 << 20;
    o.write_buffer_bytes = 2 << 20;
    o.max_open_files = 64;
    o.click_retention_ms = 1000 * 3'600'000LL;
    o.ledger_retention_ms = 1000 * 3'600'000LL;
    o.dedup_retention_ms = 1000 * 3'600'000LL;
    o.flood_retention_ms = 1000 * 3'600'000LL;
    return o;
  }
  std::unique_ptr<StateStores> MakeStores(const testing::TestDir& dir) {
    auto stores = StateStores::Create(Options(dir));
    EXPECT_TRUE(stores.ok()) << stores.status();
    return *std::move(stores);
  }
  TaskStore* Open(StateStores& stores, int32_t partition = kPartition) {
    auto store = stores.Open(partition);
    EXPECT_TRUE(store.ok()) << store.status();
    return *store;
  }

  // A changelog batch as the processor writes it without transactions:
  // the records, then (complete) the marker and ApplyCommit(marker + 1);
  // an incomplete batch stops after the records and is discarded (the
  // process died or the transaction aborted on a broker without isolation).
  // Returns the keys written.
  std::vector<std::string> WriteBatch(TaskStore& store, const std::vector<InputPosition>& positions,
                                      bool complete = true, int32_t partition = kPartition) {
    std::vector<std::string> keys;
    EXPECT_OK(store.PrepareCommit(positions));
    EXPECT_OK(store.ForEachChangelogRecord([&](std::string_view key, const std::string* value) {
      if (value == nullptr) {
        cluster_.AppendTombstone(kTopic, partition, key);
      } else {
        cluster_.Append(kTopic, partition, key, *value);
      }
      keys.emplace_back(key);
      return absl::OkStatus();
    }));
    if (complete) {
      const int64_t marker =
          cluster_.Append(kTopic, partition, kChangelogMarkerKey, kChangelogMarkerValue);
      EXPECT_OK(store.ApplyCommit(marker + 1));
    } else {
      store.Discard();
    }
    return keys;
  }

  // The same through a transactional producer: the marker's offset comes
  // from its delivery report; an incomplete batch is aborted.
  std::vector<std::string> WriteTransaction(kafka::Producer& producer, TaskStore& store,
                                            const std::vector<InputPosition>& positions,
                                            bool commit = true) {
    std::vector<std::string> keys;
    EXPECT_OK(producer.BeginTransaction());
    EXPECT_OK(store.PrepareCommit(positions));
    EXPECT_OK(store.ForEachChangelogRecord([&](std::string_view key, const std::string* value) {
      keys.emplace_back(key);
      return value == nullptr ? producer.ProduceTombstone(kTopic, kPartition, key, 1)
                              : producer.Produce(kTopic, kPartition, key, *value, 1);
    }));
    EXPECT_OK(producer.Flush(absl::Seconds(1)));
    if (!commit) {
      EXPECT_OK(producer.AbortTransaction(absl::Seconds(1)));
      store.Discard();
      return keys;
    }
    marker_offset_ = -1;
    EXPECT_OK(producer.Produce(kTopic, kPartition, kChangelogMarkerKey, kChangelogMarkerValue,
                               /*tag=*/2));
    EXPECT_OK(producer.Flush(absl::Seconds(1)));
    EXPECT_GE(marker_offset_, 0) << "the marker's delivery report carries its offset";
    EXPECT_OK(producer.CommitTransaction(absl::Seconds(1)));
    EXPECT_OK(store.ApplyCommit(marker_offset_ + 1));
    return keys;
  }
  std::unique_ptr<kafka::Producer> MakeTransactionalProducer() {
    auto p = factory_.CreateProducer({}, "task-0", [this](const kafka::DeliveryReport& r) {
      if (r.tag == 2 && r.error == 0) marker_offset_ = r.offset;
    });
    EXPECT_TRUE(p.ok()) << p.status();
    return *std::move(p);
  }

  std::unique_ptr<Restorer> MakeRestorer(int64_t tail_window = 100'000, size_t apply_batch = 20'000,
                                         bool read_committed = false,
                                         absl::Duration max_checkpoint_age = absl::Hours(144)) {
    kafka::Properties props;
    if (read_committed) props["isolation.level"] = "read_committed";
    auto reader = factory_.CreateReader(props);
    EXPECT_TRUE(reader.ok()) << reader.status();
    Restorer::Options options;
    options.changelog_topic = kTopic;
    options.tail_window = tail_window;
    options.apply_batch = apply_batch;
    options.poll_timeout = absl::Milliseconds(1);
    options.max_checkpoint_age = max_checkpoint_age;
    return std::make_unique<Restorer>(options, *std::move(reader));
  }

  // Waits (at most 30 s) for the restore of `partition` to finish.
  static RestoreResult Await(Restorer& restorer, int32_t partition = kPartition) {
    for (int i = 0; i < 30'000; ++i) {
      for (RestoreResult& r : restorer.TakeFinished()) {
        if (r.partition == partition) return r;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ADD_FAILURE() << "restore of partition " << partition << " did not finish";
    RestoreResult none;
    none.status = absl::DeadlineExceededError("not finished");
    return none;
  }
  RestoreResult Restore(TaskStore* store, int64_t tail_window = 100'000,
                        size_t apply_batch = 20'000, bool read_committed = false,
                        absl::Duration max_checkpoint_age = absl::Hours(144)) {
    std::unique_ptr<Restorer> restorer =
        MakeRestorer(tail_window, apply_batch, read_committed, max_checkpoint_age);
    restorer->Start(kPartition, store);
    RestoreResult r = Await(*restorer);
    EXPECT_EQ(restorer->progress().restoring, 0);
    EXPECT_GE(restorer->progress().records_done, r.records);
    return r;
  }

  int64_t LogEnd() const { return cluster_.EndOffset(kTopic, kPartition); }

  // Every family of `got` holds what `want` holds (committed data).
  static void ExpectSameState(TaskStore& want, TaskStore& got) {
    for (int f = 0; f < kStoreFamilyCount; ++f) {
      const auto family = static_cast<StoreFamily>(f);
      auto w = want.CountStoredRecords(family);
      auto g = got.CountStoredRecords(family);
      ASSERT_TRUE(w.ok() && g.ok());
      EXPECT_EQ(*g, *w) << "records in family " << StoreFamilyName(family);
    }
    EXPECT_EQ(got.click_watermark(), want.click_watermark());
    EXPECT_EQ(got.conversion_watermark(), want.conversion_watermark());
    EXPECT_EQ(got.positions(), want.positions());
    EXPECT_EQ(got.pending_count(), want.pending_count());
    for (int round = 0; round <= kMaxRound; ++round) {
      for (int i = 0; i < 3; ++i) {
        const std::string id = MakeClick(round, i).click_id;
        auto w = want.GetClick(id);
        auto g = got.GetClick(id);
        ASSERT_TRUE(w.ok() && g.ok());
        EXPECT_EQ(*g, *w) << "click " << id;
      }
      auto wp = want.GetPending(PendingKey(round));
      auto gp = got.GetPending(PendingKey(round));
      ASSERT_TRUE(wp.ok() && gp.ok());
      EXPECT_EQ(*gp, *wp) << "pending " << PendingKey(round);
      auto wl = want.GetLedger(LedgerId(round));
      auto gl = got.GetLedger(LedgerId(round));
      ASSERT_TRUE(wl.ok() && gl.ok());
      EXPECT_EQ(*gl, *wl) << "ledger " << round;
      const DedupKey key = ClickKey("c" + std::to_string(round));
      EXPECT_EQ(*got.ContainsDedupKey(key), *want.ContainsDedupKey(key)) << "dedup " << round;
    }
    auto wk = want.GetPending("keep");
    auto gk = got.GetPending("keep");
    ASSERT_TRUE(wk.ok() && gk.ok());
    EXPECT_EQ(*gk, *wk);
    for (const char* user : {"u0", "u1"}) {
      auto w = want.UserClicks(user, "off-1", kT0 - 1, kT0 + 1'000'000);
      auto g = got.UserClicks(user, "off-1", kT0 - 1, kT0 + 1'000'000);
      ASSERT_TRUE(w.ok() && g.ok());
      EXPECT_EQ(*g, *w) << "user clicks of " << user;
    }
    auto wo = want.PendingBefore(kT0 + 1'000'000);
    auto go = got.PendingBefore(kT0 + 1'000'000);
    ASSERT_TRUE(wo.ok() && go.ok());
    ASSERT_EQ(go->size(), wo->size());
    for (size_t i = 0; i < wo->size(); ++i) {
      EXPECT_EQ((*go)[i].key, (*wo)[i].key);
      EXPECT_EQ((*go)[i].event_time_ms, (*wo)[i].event_time_ms);
    }
    EXPECT_EQ(FloodCounts(got), FloodCounts(want));
  }
  static std::map<std::pair<int64_t, std::array<uint8_t, 16>>, uint64_t> FloodCounts(
      const TaskStore& store) {
    std::map<std::pair<int64_t, std::array<uint8_t, 16>>, uint64_t> out;
    EXPECT_OK(store.ForEachFloodCount(
        0, [&](int64_t window, const std::array<uint8_t, 16>& ip, uint64_t count) {
          out[{window, ip}] += count;
        }));
    return out;
  }

  // The changelog records the store's next batch would write (the batch is
  // then discarded).
  static std::map<std::string, std::optional<std::string>> NextChangelogRecords(TaskStore& store) {
    std::map<std::string, std::optional<std::string>> out;
    EXPECT_OK(store.PrepareCommit({}));
    EXPECT_OK(store.ForEachChangelogRecord([&](std::string_view key, const std::string* value) {
      out[std::string(key)] = value == nullptr ? std::nullopt : std::optional<std::string>(*value);
      return absl::OkStatus();
    }));
    store.Discard();
    return out;
  }

  FakeCluster cluster_;
  FakeClientFactory factory_;
  testing::TestDir source_dir_;
  std::unique_ptr<StateStores> source_stores_;
  TaskStore* source_ = nullptr;
  int64_t marker_offset_ = -1;
};

TEST_F(RestorerTest, RestoresAnEmptyStoreFromTheWholeChangelog) {
  size_t records = 0;
  for (int round = 0; round < 5; ++round) {
    Mutate(*source_, round);
    records += WriteBatch(*source_, Positions(round)).size();
  }
  testing::TestDir dir;
  auto stores = MakeStores(dir);
  TaskStore* restored = Open(*stores);
  ASSERT_FALSE(restored->changelog_offset().has_value());
  const RestoreResult r = Restore(restored);
  ASSERT_OK(r.status);
  EXPECT_EQ(r.partition, kPartition);
  EXPECT_EQ(r.records, records);
  EXPECT_EQ(r.tail_records, 0u);
  EXPECT_EQ(r.from_offset, 0);
  EXPECT_EQ(r.to_offset, LogEnd());
  EXPECT_EQ(restored->changelog_offset(), source_->changelog_offset());
  EXPECT_FALSE(restored->has_compensation());
  ExpectSameState(*source_, *restored);
  // Nothing to compensate: the restored store's next (empty) batch writes
  // only its watermarks.
  for (const auto& [key, value] : NextChangelogRecords(*restored)) {
    EXPECT_EQ(key[0], static_cast<char>(StoreFamily::kMeta));
  }

  // The restored state survives a reopen (it was written, not just loaded).
  stores.reset();
  stores = MakeStores(dir);
  restored = Open(*stores);
  ExpectSameState(*source_, *restored);
  EXPECT_EQ(restored->changelog_offset(), LogEnd());
}

TEST_F(RestorerTest, SmallWindowAndSmallApplyBatchesGiveTheSameState) {
  for (int round = 0; round < 6; ++round) {
    Mutate(*source_, round);
    WriteBatch(*source_, Positions(round));
  }
  for (const auto& [window, batch] :
       std::vector<std::pair<int64_t, size_t>>{{1, 1}, {2, 3}, {7, 5}, {1'000, 2}, {5, 100'000}}) {
    SCOPED_TRACE(::testing::Message() << "tail_window " << window << " apply_batch " << batch);
    testing::TestDir dir;
    auto stores = MakeStores(dir);
    TaskStore* restored = Open(*stores);
    const RestoreResult r = Restore(restored, window, batch);
    ASSERT_OK(r.status);
    EXPECT_EQ(r.to_offset, LogEnd());
    EXPECT_EQ(r.tail_records, 0u);
    ExpectSameState(*source_, *restored);
  }
}

TEST_F(RestorerTest, AStoreWithACheckpointReadsOnlyTheRestOfTheLog) {
  size_t first = 0, second = 0;
  for (int round = 0; round < 3; ++round) {
    Mutate(*source_, round);
    first += WriteBatch(*source_, Positions(round)).size();
  }
  testing::TestDir dir;
  auto stores = MakeStores(dir);
  TaskStore* restored = Open(*stores);
  RestoreResult r = Restore(restored);
  ASSERT_OK(r.status);
  EXPECT_EQ(r.records, first);
  const int64_t checkpoint = LogEnd();
  EXPECT_EQ(restored->changelog_offset(), checkpoint);

  for (int round = 3; round < 6; ++round) {
    Mutate(*source_, round);
    second += WriteBatch(*source_, Positions(round)).size();
  }
  // From the checkpoint on: r.records counts what was applied.
  r = Restore(restored);
  ASSERT_OK(r.status);
  EXPECT_EQ(r.from_offset, checkpoint);
  EXPECT_EQ(r.records, second) << "only the records after the checkpoint";
  EXPECT_EQ(r.to_offset, LogEnd());
  ExpectSameState(*source_, *restored);

  // Up to date: nothing to read.
  r = Restore(restored);
  ASSERT_OK(r.status);
  EXPECT_EQ(r.records, 0u);
  EXPECT_EQ(r.from_offset, LogEnd());
  EXPECT_EQ(r.to_offset, LogEnd());
  ExpectSameState(*source_, *restored);
}

// kill -9 after a batch's transaction committed and before its local
// write: the store keeps the batch's flood verdict journal (written before
// the outputs, deleted by the local commit that never came), the restore
// brings the batch's flood counts from the changelog. Each click counts
// once (the journal entries below the restored clicks position are in the
// counts), or the shared flood table over-counts and rejects one click too
// many (faults.kill9 at full size found 15 rejections where 14 were due).
TEST_F(RestorerTest, AJournaledVerdictOfARestoredBatchCountsOnce) {
  for (int round = 0; round < 2; ++round) {
    Mutate(*source_, round);
    WriteBatch(*source_, Positions(round));
  }
  const auto before = FloodCounts(*source_);
  Mutate(*source_, 2);
  ASSERT_OK(source_->WriteFloodJournal());
  ASSERT_OK(source_->PrepareCommit(Positions(2)));
  ASSERT_OK(source_->ForEachChangelogRecord([&](std::string_view key, const std::string* value) {
    if (value == nullptr) {
      cluster_.AppendTombstone(kTopic, kPartition, key);
    } else {
      cluster_.Append(kTopic, kPartition, key, *value);
    }
    return absl::OkStatus();
  }));
  cluster_.Append(kTopic, kPartition, kChangelogMarkerKey, kChangelogMarkerValue);
  source_->Discard();  // the process died before ApplyCommit
  ASSERT_TRUE(source_->JournaledFloodClick(20).has_value());

  const RestoreResult r = Restore(source_);
  ASSERT_OK(r.status);
  EXPECT_EQ(r.to_offset, LogEnd());
  EXPECT_EQ(source_->NextOffset("clicks"), std::optional<int64_t>(30));
  auto after = FloodCounts(*source_);
  uint64_t total_before = 0, total_after = 0;
  for (const auto& [k, n] : before) total_before += n;
  for (const auto& [k, n] : after) total_after += n;
  EXPECT_EQ(total_after, total_before + 1) << "round 2's one flood click, counted once";

  // The next commit deletes the covered entry; the count stays.
  ASSERT_OK(source_->Commit(Positions(2)));
  EXPECT_FALSE(source_->JournaledFloodClick(20).has_value());
  EXPECT_EQ(FloodCounts(*source_), after);
}

// The stray tail of a batch that never completed: discarded, and its keys
// compensated by the restored store's next batch so that a later restore
// of the whole log (tail included) ends with the committed values.
class RestorerTailTest : public RestorerTest, public ::testing::WithParamInterface<int64_t> {};

TEST_P(RestorerTailTest, ATailWithoutAMarkerIsDiscardedAndCompensated) {
  const int64_t tail_window = GetParam();
  for (int round = 0; round < 4; ++round) {
    Mutate(*source_, round);
    WriteBatch(*source_, Positions(round));
  }
  const int64_t committed_end = LogEnd();
  // Round 4 never completes: its records are on the log, without a marker.
  Mutate(*source_, 4);
  const std::vector<std::string> stray = WriteBatch(*source_, Positions(4), /*complete=*/false);
  if (tail_window < 100) {
    ASSERT_GT(static_cast<int64_t>(stray.size()), tail_window) << "the tail exceeds the window";
  }
  EXPECT_FALSE((*source_->GetClick(MakeClick(4, 0).click_id)).has_value());

  testing::TestDir dir;
  auto stores = MakeStores(dir);
  TaskStore* restored = Open(*stores);
  RestoreResult r = Restore(restored, tail_window);
  ASSERT_OK(r.status);
  EXPECT_EQ(r.tail_records, stray.size());
  EXPECT_EQ(r.to_offset, committed_end) << "the store holds the log up to the last marker";
  EXPECT_EQ(restored->changelog_offset(), committed_end);
  ExpectSameState(*source_, *restored);
  ASSERT_TRUE(restored->has_compensation());

  // The next batch re-writes every stray key with its committed value (or a
  // tombstone where the committed state has none).
  const std::map<std::string, std::optional<std::string>> next = NextChangelogRecords(*restored);
  for (const std::string& key : stray) {
    ASSERT_TRUE(next.contains(key))
        << "stray key not compensated, family " << static_cast<int>(key[0]);
  }
  const std::string stray_click_key =
      std::string(1, static_cast<char>(StoreFamily::kClicks)) + MakeClick(4, 0).click_id;
  ASSERT_TRUE(next.contains(stray_click_key));
  EXPECT_FALSE(next.at(stray_click_key).has_value()) << "absent in the committed state: tombstone";

  // The restored task goes on: its next batch (with the compensation)
  // completes; the source, which is the same task's committed state, does
  // the same batch.
  Mutate(*restored, 5);
  const size_t written = WriteBatch(*restored, Positions(5)).size();
  EXPECT_FALSE(restored->has_compensation());
  EXPECT_GE(written, stray.size());
  // (The source follows the restored task, without the compensation,
  // which is not part of its state.)
  Mutate(*source_, 5);
  ASSERT_OK(source_->Commit(Positions(5)));
  ExpectSameState(*source_, *restored);

  // A restore from scratch applies the stray tail (now before the last
  // marker) and then the compensation: the committed state.
  testing::TestDir dir2;
  auto stores2 = MakeStores(dir2);
  TaskStore* again = Open(*stores2);
  r = Restore(again, tail_window);
  ASSERT_OK(r.status);
  EXPECT_EQ(r.tail_records, 0u);
  EXPECT_EQ(r.to_offset, LogEnd());
  ExpectSameState(*restored, *again);
  ExpectSameState(*source_, *again);
}

INSTANTIATE_TEST_SUITE_P(Windows, RestorerTailTest, ::testing::Values(100'000, 3, 1),
                         [](const ::testing::TestParamInfo<int64_t>& info) {
                           return "window_" + std::to_string(info.param);
                         });

TEST_F(RestorerTest, ALogWithOnlyATailRestoresNothingAndCompensatesIt) {
  Mutate(*source_, 0);
  const std::vector<std::string> stray = WriteBatch(*source_, Positions(0), /*complete=*/false);
  testing::TestDir dir;
  auto stores = MakeStores(dir);
  TaskStore* restored = Open(*stores);
  const RestoreResult r = Restore(restored, 2);
  ASSERT_OK(r.status);
  EXPECT_EQ(r.records, 0u);
  EXPECT_EQ(r.tail_records, stray.size());
  ExpectSameState(*source_, *restored);
  EXPECT_TRUE(restored->has_compensation());
  EXPECT_EQ(NextChangelogRecords(*restored).size(), stray.size());
}

// Under transactions an aborted batch is invisible to read_committed (no
// tail at all). read_uncommitted sees aborted batches: the one at the end
// is the tail (compensated by the restore); one in the middle is applied,
// so the writer must compensate it itself after the abort (AddCompensation
// of the aborted batch's keys), which this test does as the processor must.
TEST_F(RestorerTest, TransactionalChangelogAbortedBatchesAreInvisibleToReadCommitted) {
  std::unique_ptr<kafka::Producer> producer = MakeTransactionalProducer();
  for (int round = 0; round < 3; ++round) {
    Mutate(*source_, round);
    WriteTransaction(*producer, *source_, Positions(round));
  }
  Mutate(*source_, 3);
  const std::vector<std::string> aborted =
      WriteTransaction(*producer, *source_, Positions(3), /*commit=*/false);
  ASSERT_FALSE(aborted.empty());
  source_->AddCompensation(aborted);
  Mutate(*source_, 4);
  WriteTransaction(*producer, *source_, Positions(4));
  EXPECT_FALSE(source_->has_compensation());
  Mutate(*source_, 5);
  const std::vector<std::string> aborted_tail =
      WriteTransaction(*producer, *source_, Positions(5), /*commit=*/false);
  ASSERT_FALSE(aborted_tail.empty());

  for (bool read_committed : {true, false}) {
    SCOPED_TRACE(read_committed ? "read_committed" : "read_uncommitted");
    testing::TestDir dir;
    auto stores = MakeStores(dir);
    TaskStore* restored = Open(*stores);
    const RestoreResult r = Restore(restored, 4, 20'000, read_committed);
    ASSERT_OK(r.status);
    EXPECT_EQ(r.tail_records, read_committed ? 0u : aborted_tail.size());
    EXPECT_EQ(restored->has_compensation(), !read_committed);
    ExpectSameState(*source_, *restored);
  }
}

TEST_F(RestorerTest, ACompactedTransactionalChangelogRestoresTheSameState) {
  std::unique_ptr<kafka::Producer> producer = MakeTransactionalProducer();
  for (int round = 0; round < 6; ++round) {
    Mutate(*source_, round);
    WriteTransaction(*producer, *source_, Positions(round), /*commit=*/round != 3);
  }
  const size_t before = cluster_.Records(kTopic, kPartition).size();
  cluster_.Compact(kTopic, kPartition);
  ASSERT_LT(cluster_.Records(kTopic, kPartition).size(), before);
  int markers = 0;
  for (const kafka::fake::Record& rec : cluster_.Records(kTopic, kPartition)) {
    markers += rec.key == kChangelogMarkerKey ? 1 : 0;
  }
  EXPECT_EQ(markers, 1) << "compaction keeps the last marker only";
  for (bool read_committed : {true, false}) {
    testing::TestDir dir;
    auto stores = MakeStores(dir);
    TaskStore* restored = Open(*stores);
    const RestoreResult r = Restore(restored, 2, 3, read_committed);
    ASSERT_OK(r.status);
    EXPECT_EQ(r.tail_records, 0u);
    ExpectSameState(*source_, *restored);
  }
}

TEST_F(RestorerTest, ALogStartAfterTheCheckpointRestoresWhatIsLeft) {
  for (int round = 0; round < 2; ++round) {
    Mutate(*source_, round);
    WriteBatch(*source_, Positions(round));
  }
  testing::TestDir dir;
  auto stores = MakeStores(dir);
  TaskStore* restored = Open(*stores);
  ASSERT_OK(Restore(restored).status);
  const int64_t checkpoint = *restored->changelog_offset();
  for (int round = 2; round < 5; ++round) {
    Mutate(*source_, round);
    WriteBatch(*source_, Positions(round));
  }
  // Retention removed everything through round 3's marker.
  int64_t low = -1;
  int marker_count = 0;
  for (const kafka::fake::Record& rec : cluster_.Records(kTopic, kPartition)) {
    if (rec.key == kChangelogMarkerKey && ++marker_count == 4) low = rec.offset + 1;
  }
  ASSERT_GT(low, checkpoint);
  cluster_.DeleteRecordsBefore(kTopic, kPartition, low);
  const RestoreResult r = Restore(restored);
  ASSERT_OK(r.status);
  EXPECT_EQ(r.from_offset, low) << "the restore starts at the log start";
  EXPECT_EQ(r.to_offset, LogEnd());
  EXPECT_EQ(restored->changelog_offset(), LogEnd());
  // Round 4's records are there; rounds 2 and 3's are lost.
  EXPECT_TRUE((*restored->GetClick(MakeClick(4, 0).click_id)).has_value());
  EXPECT_FALSE((*restored->GetClick(MakeClick(2, 0).click_id)).has_value());
  EXPECT_EQ(restored->positions(), source_->positions());

  // An empty store over that log restores from the log start as well.
  testing::TestDir dir2;
  auto stores2 = MakeStores(dir2);
  TaskStore* fresh = Open(*stores2);
  const RestoreResult r2 = Restore(fresh);
  ASSERT_OK(r2.status);
  EXPECT_EQ(r2.from_offset, low);
  EXPECT_EQ(r2.to_offset, LogEnd());
}

// On a changelog WITHOUT transaction isolation, a stray tail is below the
// last stable offset, so log compaction before the task's compensation batch
// would treat its records as the latest values of their keys and remove the
// committed records they shadow. ChangelogTopicConfig keeps the cleaner off
// records younger than a day (min.compaction.lag.ms); the compensation is
// written by the task's first batch after the restore that found the tail.
// Compaction after it restores the committed state.
TEST_F(RestorerTest, CompactionAfterTheCompensationBatchKeepsTheCommittedValues) {
  const std::map<std::string, std::string> config = ChangelogTopicConfig();
  ASSERT_TRUE(config.contains("min.compaction.lag.ms"));
  EXPECT_GE(std::stoll(config.at("min.compaction.lag.ms")), 3'600'000);
  for (int round = 0; round < 3; ++round) {
    Mutate(*source_, round);
    WriteBatch(*source_, Positions(round));
  }
  // The stray tail of a batch that never completed; the source forgets it.
  Mutate(*source_, 3);
  WriteBatch(*source_, Positions(3), /*complete=*/false);
  testing::TestDir dir;
  auto stores = MakeStores(dir);
  TaskStore* restored = Open(*stores);
  const RestoreResult r = Restore(restored);
  ASSERT_OK(r.status);
  ASSERT_GT(r.tail_records, 0u);
  ASSERT_TRUE(restored->has_compensation());
  // The restored task's next batch carries the compensation.
  WriteBatch(*restored, {});
  cluster_.Compact(kTopic, kPartition);
  testing::TestDir dir2;
  auto stores2 = MakeStores(dir2);
  TaskStore* again = Open(*stores2);
  ASSERT_OK(Restore(again).status);
  EXPECT_TRUE((*again->GetPending("keep")).has_value()) << "the committed value was compacted";
  ExpectSameState(*restored, *again);
}

// The cleaner removes tombstones after delete.retention.ms (7 days in
// ChangelogTopicConfig). A store whose checkpoint is older than
// Restorer::Options::max_checkpoint_age (6 days) is cleared and restored
// from the start, so a deletion whose tombstone is gone cannot come back.
// Here the age limit is 0: every checkpoint counts as too old.
TEST_F(RestorerTest, AStoreOlderThanTheTombstoneRetentionIsRestoredFromTheStart) {
  const std::map<std::string, std::string> config = ChangelogTopicConfig();
  ASSERT_TRUE(config.contains("delete.retention.ms"));
  EXPECT_GT(absl::Milliseconds(std::stoll(config.at("delete.retention.ms"))),
            Restorer::Options{}.max_checkpoint_age);
  Mutate(*source_, 0);
  WriteBatch(*source_, Positions(0));
  testing::TestDir dir;
  auto stores = MakeStores(dir);
  TaskStore* restored = Open(*stores);
  ASSERT_OK(Restore(restored).status);
  ASSERT_TRUE((*restored->GetPending(PendingKey(0))).has_value());
  for (int round = 1; round < 3; ++round) {  // round 1 deletes p0
    Mutate(*source_, round);
    WriteBatch(*source_, Positions(round));
  }
  cluster_.Compact(kTopic, kPartition, /*drop_tombstones=*/true);
  // (With the usual age limit only the tail after the checkpoint would be
  // read, which no longer holds the cleaned tombstone.)
  const RestoreResult r = Restore(restored, 100'000, 20'000, false, absl::ZeroDuration());
  ASSERT_OK(r.status);
  EXPECT_TRUE(r.cleared);
  EXPECT_FALSE((*restored->GetPending(PendingKey(0))).has_value()) << "resurrected";
  ExpectSameState(*source_, *restored);
}

// A window of 0 (or 1) records still grows until it finds the last marker
// or reaches the checkpoint (the window used to stay empty forever).
TEST_F(RestorerTest, AZeroTailWindowStillFinishes) {
  Mutate(*source_, 0);
  WriteBatch(*source_, Positions(0));
  testing::TestDir dir;
  auto stores = MakeStores(dir);
  TaskStore* restored = Open(*stores);
  std::unique_ptr<Restorer> restorer = MakeRestorer(/*tail_window=*/0);
  restorer->Start(kPartition, restored);
  bool finished = false;
  for (int i = 0; i < 2'000 && !finished; ++i) {
    finished = !restorer->TakeFinished().empty();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_TRUE(finished) << "the restore loops forever";
  restorer.reset();  // the destructor cancels it
}

// A record no store family can hold (a corrupt or foreign changelog).
void AppendPoison(FakeCluster& cluster) { cluster.Append(kTopic, kPartition, "\x09poison", "v"); }

TEST_F(RestorerTest, AnUnknownFamilyFailsTheRestoreWithDataLossAndAppliesNothingOfItsBatch) {
  Mutate(*source_, 0);
  WriteBatch(*source_, Positions(0));
  const int64_t first_end = LogEnd();
  AppendPoison(cluster_);
  Mutate(*source_, 1);
  WriteBatch(*source_, Positions(1));
  testing::TestDir dir;
  auto stores = MakeStores(dir);
  TaskStore* restored = Open(*stores);
  // apply_batch 1: round 0 is applied record by record before the poison.
  const RestoreResult r = Restore(restored, /*tail_window=*/2, /*apply_batch=*/1);
  EXPECT_EQ(r.status.code(), absl::StatusCode::kDataLoss) << r.status;
  // Applied up to the poison record (the marker before it carries no data,
  // so the checkpoint may stop at the marker or just after it).
  ASSERT_TRUE(restored->changelog_offset().has_value());
  EXPECT_GE(*restored->changelog_offset(), first_end - 1);
  EXPECT_LE(*restored->changelog_offset(), first_end);
  EXPECT_TRUE((*restored->GetClick(MakeClick(0, 2).click_id)).has_value());
  EXPECT_FALSE((*restored->GetClick(MakeClick(1, 0).click_id)).has_value());
}

// A failed apply reports no progress (it used to count the records and move
// the offset before looking at the status).
TEST_F(RestorerTest, AFailedApplyReportsNoProgress) {
  AppendPoison(cluster_);
  cluster_.Append(kTopic, kPartition, kChangelogMarkerKey, kChangelogMarkerValue);
  testing::TestDir dir;
  auto stores = MakeStores(dir);
  TaskStore* restored = Open(*stores);
  const RestoreResult r = Restore(restored);
  EXPECT_EQ(r.status.code(), absl::StatusCode::kDataLoss) << r.status;
  EXPECT_FALSE(restored->changelog_offset().has_value());
  EXPECT_EQ(r.records, 0u);
  EXPECT_EQ(r.to_offset, r.from_offset);
}

TEST_F(RestorerTest, ACheckpointedStoreDiscardsAStrayTailAfterItsCheckpoint) {
  for (int round = 0; round < 2; ++round) {
    Mutate(*source_, round);
    WriteBatch(*source_, Positions(round));
  }
  testing::TestDir dir;
  auto stores = MakeStores(dir);
  TaskStore* restored = Open(*stores);
  ASSERT_OK(Restore(restored).status);
  for (int round = 2; round < 4; ++round) {
    Mutate(*source_, round);
    WriteBatch(*source_, Positions(round));
  }
  const int64_t committed_end = LogEnd();
  Mutate(*source_, 4);
  const std::vector<std::string> stray = WriteBatch(*source_, Positions(4), /*complete=*/false);
  const RestoreResult r = Restore(restored, /*tail_window=*/2, /*apply_batch=*/3);
  ASSERT_OK(r.status);
  EXPECT_EQ(r.tail_records, stray.size());
  EXPECT_EQ(r.to_offset, committed_end);
  ExpectSameState(*source_, *restored);
  EXPECT_TRUE(restored->has_compensation());
}

// A zombie's transaction still open at the end of the changelog (its
// producer died and nobody initialised the id yet): read_committed stops at
// the LSO, so the restore ends there with the committed state and no tail.
TEST_F(RestorerTest, AnOpenTransactionAtTheEndIsNotRestoredUnderReadCommitted) {
  cluster_.SetAbortOnCrash(false);
  std::unique_ptr<kafka::Producer> producer = MakeTransactionalProducer();
  for (int round = 0; round < 3; ++round) {
    Mutate(*source_, round);
    WriteTransaction(*producer, *source_, Positions(round));
  }
  const int64_t lso = LogEnd();
  Mutate(*source_, 3);
  ASSERT_OK(producer->BeginTransaction());
  ASSERT_OK(source_->PrepareCommit(Positions(3)));
  ASSERT_OK(source_->ForEachChangelogRecord([&](std::string_view key, const std::string* value) {
    return value == nullptr ? producer->ProduceTombstone(kTopic, kPartition, key)
                            : producer->Produce(kTopic, kPartition, key, *value);
  }));
  ASSERT_OK(producer->Produce(kTopic, kPartition, kChangelogMarkerKey, kChangelogMarkerValue));
  source_->Discard();  // the process dies before the commit
  EXPECT_EQ(cluster_.LastStableOffset(kTopic, kPartition), lso);
  ASSERT_GT(LogEnd(), lso);

  testing::TestDir dir;
  auto stores = MakeStores(dir);
  TaskStore* restored = Open(*stores);
  const RestoreResult r = Restore(restored, /*tail_window=*/3, 20'000, /*read_committed=*/true);
  ASSERT_OK(r.status);
  EXPECT_EQ(r.tail_records, 0u);
  EXPECT_LE(r.to_offset, lso);
  ExpectSameState(*source_, *restored);
  EXPECT_FALSE(restored->has_compensation());
}

// A log big enough that a restore takes many polls.
void AppendManyClicks(FakeCluster& cluster, int32_t partition, int n) {
  for (int i = 0; i < n; ++i) {
    cluster.Append(
        kTopic, partition,
        std::string(1, static_cast<char>(StoreFamily::kPending)) + "k" + std::to_string(i), "v");
  }
  cluster.Append(kTopic, partition, kChangelogMarkerKey, kChangelogMarkerValue);
}

TEST_F(RestorerTest, CancelStopsTheRestoreAndLeavesAConsistentCheckpoint) {
  constexpr int kRecords = 200'000;
  AppendManyClicks(cluster_, kPartition, kRecords);
  AppendManyClicks(cluster_, 1, 10);
  testing::TestDir dir;
  auto stores = MakeStores(dir);
  TaskStore* restored = Open(*stores);
  TaskStore* other = Open(*stores, 1);
  std::unique_ptr<Restorer> restorer = MakeRestorer(/*tail_window=*/100, /*apply_batch=*/500);
  restorer->Start(kPartition, restored);
  restorer->Start(1, other);
  EXPECT_TRUE(restorer->busy(1));
  restorer->Cancel(1);  // queued: dropped
  EXPECT_FALSE(restorer->busy(1));
  // Wait until the restore of partition 0 made some progress, then cancel.
  for (int i = 0; i < 10'000 && restorer->progress().records_done == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  restorer->Cancel(kPartition);
  EXPECT_FALSE(restorer->busy(kPartition));
  EXPECT_EQ(restorer->progress().restoring, 0);
  for (const RestoreResult& r : restorer->TakeFinished()) {
    ADD_FAILURE() << "a cancelled restore reported partition " << r.partition;
  }
  // What was applied matches the checkpoint it was applied up to (each
  // record is one distinct key).
  const std::optional<int64_t> checkpoint = restored->changelog_offset();
  const uint64_t applied = *restored->CountStoredRecords(StoreFamily::kPending);
  if (checkpoint.has_value()) {
    EXPECT_EQ(static_cast<int64_t>(applied), std::min<int64_t>(*checkpoint, kRecords));
  } else {
    EXPECT_EQ(applied, 0u);
  }
  EXPECT_FALSE(other->changelog_offset().has_value()) << "the queued restore never ran";
  if (checkpoint.has_value() && *checkpoint >= LogEnd()) {
    GTEST_LOG_(INFO) << "the restore finished before Cancel: nothing was cut short";
  }

  // The process dies here: the store reopens at the checkpoint it wrote,
  // and a new restore goes on from there to the end.
  stores.reset();
  stores = MakeStores(dir);
  restored = Open(*stores);
  EXPECT_EQ(restored->changelog_offset(), checkpoint);
  restorer->Start(kPartition, restored);
  const RestoreResult r = Await(*restorer);
  ASSERT_OK(r.status);
  EXPECT_EQ(r.from_offset, checkpoint.value_or(0));
  EXPECT_EQ(r.to_offset, LogEnd());
  EXPECT_EQ(*restored->CountStoredRecords(StoreFamily::kPending), static_cast<uint64_t>(kRecords));
}

TEST_F(RestorerTest, ReadErrorsAndAMissingTopicFailTheRestore) {
  Mutate(*source_, 0);
  WriteBatch(*source_, Positions(0));
  testing::TestDir dir;
  auto stores = MakeStores(dir);
  TaskStore* restored = Open(*stores);
  cluster_.FailNext(kafka::fake::Op::kReaderPoll,
                    {kafka::ErrorClass::kFatal, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED});
  RestoreResult r = Restore(restored);
  EXPECT_EQ(kafka::ErrorClassOf(r.status), kafka::ErrorClass::kFatal) << r.status;
  EXPECT_FALSE(restored->changelog_offset().has_value());
  // A retriable poll error is retried inside the reader.
  cluster_.FailNext(kafka::fake::Op::kReaderPoll,
                    {kafka::ErrorClass::kRetriable, RD_KAFKA_RESP_ERR__TRANSPORT}, 3);
  r = Restore(restored);
  ASSERT_OK(r.status);
  ExpectSameState(*source_, *restored);

  kafka::Properties props;
  auto reader = factory_.CreateReader(props);
  ASSERT_TRUE(reader.ok());
  Restorer::Options options;
  options.changelog_topic = "no-such-topic";
  Restorer missing(options, *std::move(reader));
  missing.Start(kPartition, restored);
  r = Await(missing);
  EXPECT_FALSE(r.status.ok());
}

}  // namespace
}  // namespace tally

namespace tally {
namespace {

// A standby follows the changelog without being started: every complete
// batch reaches its store, an incomplete tail only once its marker comes.
TEST_F(RestorerTest, AStandbyFollowsTheChangelogUpToTheLastMarker) {
  testing::TestDir dir;
  auto stores = MakeStores(dir);
  TaskStore* standby = Open(*stores);
  std::unique_ptr<Restorer> restorer = MakeRestorer();
  restorer->SetStandbys({{kPartition, standby}});
  auto wait_for = [&](int64_t offset) {
    for (int i = 0; i < 5'000; ++i) {
      if (standby->changelog_offset().value_or(-1) >= offset) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return false;
  };
  for (int round = 0; round < 2; ++round) {
    Mutate(*source_, round);
    WriteBatch(*source_, Positions(round));
  }
  ASSERT_TRUE(wait_for(LogEnd())) << "the standby did not catch up";
  EXPECT_TRUE(restorer->TakeFinished().empty()) << "a standby round is not a restore";
  EXPECT_EQ(restorer->progress().restoring, 0);
  const int64_t complete_end = LogEnd();
  Mutate(*source_, 2);
  WriteBatch(*source_, Positions(2), /*complete=*/false);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(standby->changelog_offset().value_or(-1), complete_end) << "a tail was applied";
  // Leaving the set: no round touches the store once SetStandbys returns.
  restorer->SetStandbys({});
  // Becoming the task: a normal restore from the standby's checkpoint reads
  // only the tail (discarded: no marker) and reloads the in-memory state.
  restorer->Start(kPartition, standby);
  const RestoreResult r = Await(*restorer);
  ASSERT_OK(r.status);
  EXPECT_EQ(r.from_offset, complete_end);
  EXPECT_EQ(r.records, 0u);
  EXPECT_GT(r.tail_records, 0u);
}

}  // namespace
}  // namespace tally
