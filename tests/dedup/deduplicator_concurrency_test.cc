// Concurrency properties of the Deduplicator; run under ThreadSanitizer
// (tsan_targets). Each test would fail on a lost race: an id reported kNew
// twice (two winners) or never (a false duplicate).
#include <algorithm>
#include <atomic>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "processor/dedup/deduplicator.h"
#include "tests/dedup/fake_durable_id_index.h"

namespace tally {
namespace {

using ::tally::testing::FakeDurableIdIndex;

constexpr TimestampMs kT0 = 1'704'067'200'000;
constexpr int64_t kMinute = 60'000;

// Only 64 distinct hashes: most checks collide on a fingerprint and take the
// slow path, where the stripe mutex and the pending logs must keep it exact.
uint64_t CoarseHash(std::string_view bytes) {
  return (DedupHash64(bytes) % 64) * 0x0101'0101'0101'0101ULL;
}

struct Scenario {
  DedupOptions options;
  int threads = 4;
  int ids = 4000;
  int batch_size = 250;
  bool shuffle = true;  // false: all threads walk the ids in the same order
};

// Every thread checks EVERY id, in its own random order, committing a batch
// every batch_size checks. Returns how many times each id was reported kNew.
std::vector<int> RunOverlapping(const Scenario& scenario, FakeDurableIdIndex& index,
                                Deduplicator& dedup) {
  std::vector<std::atomic<int>> news(scenario.ids);
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < scenario.threads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<int> order(scenario.ids);
      for (int i = 0; i < scenario.ids; ++i) order[i] = i;
      if (scenario.shuffle) std::shuffle(order.begin(), order.end(), std::mt19937(1234 + t));
      auto batch = dedup.BeginBatch();
      int in_batch = 0;
      for (int id : order) {
        // A repeat carries its original's event time (redelivery).
        absl::StatusOr<DedupOutcome> outcome =
            dedup.Check(*batch, ClickKey(absl::StrCat("click-", id)), kT0 + id * kMinute);
        if (!outcome.ok() || *outcome == DedupOutcome::kTooOld) {
          errors.fetch_add(1);
        } else if (*outcome == DedupOutcome::kNew) {
          news[id].fetch_add(1);
        }
        if (++in_batch == scenario.batch_size) {
          index.PersistAndCommit(dedup, std::move(batch));
          batch = dedup.BeginBatch();
          in_batch = 0;
        }
      }
      index.PersistAndCommit(dedup, std::move(batch));
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(errors.load(), 0);
  std::vector<int> out;
  for (auto& n : news) out.push_back(n.load());
  return out;
}

std::unique_ptr<Deduplicator> MakeTestee(const DedupOptions& options, FakeDurableIdIndex& index) {
  absl::StatusOr<std::unique_ptr<Deduplicator>> dedup = Deduplicator::Create(options, &index);
  EXPECT_TRUE(dedup.ok()) << dedup.status();
  EXPECT_TRUE((*dedup)->WarmUp(kT0 - kMinute).ok());
  return *std::move(dedup);
}

void ExpectEachIdNewExactlyOnce(const std::vector<int>& news) {
  int wrong = 0;
  for (size_t id = 0; id < news.size(); ++id) {
    if (news[id] != 1) {
      if (++wrong <= 5)
        ADD_FAILURE() << "click-" << id << " reported kNew " << news[id] << " times";
    }
  }
  EXPECT_EQ(wrong, 0);
}

TEST(DeduplicatorConcurrencyTest, OverlappingIdsAreNewExactlyOnce) {
  Scenario scenario;
  scenario.options.table_slots = 1 << 14;
  FakeDurableIdIndex index;
  auto dedup = MakeTestee(scenario.options, index);
  ExpectEachIdNewExactlyOnce(RunOverlapping(scenario, index, *dedup));
  EXPECT_EQ(index.size(), static_cast<size_t>(scenario.ids));
  const DedupCounters& c = dedup->counters();
  EXPECT_EQ(c.new_keys.load(), static_cast<uint64_t>(scenario.ids));
  EXPECT_EQ(c.duplicates.load(), static_cast<uint64_t>(scenario.ids * (scenario.threads - 1)));
}

TEST(DeduplicatorConcurrencyTest, FingerprintCollisionsUnderContentionStayExact) {
  Scenario scenario;
  scenario.ids = 1500;
  scenario.options.table_slots = 1 << 12;
  scenario.options.hash_fn = &CoarseHash;
  FakeDurableIdIndex index;
  auto dedup = MakeTestee(scenario.options, index);
  ExpectEachIdNewExactlyOnce(RunOverlapping(scenario, index, *dedup));
  EXPECT_GT(dedup->counters().false_positive_fingerprint_hits.load(), 0u);
}

// Every thread reaches every id at about the same moment: the most direct
// race between fast paths (T3) and with slow paths (I3) on one key.
TEST(DeduplicatorConcurrencyTest, SameOrderRacesOnEachKeyStayExact) {
  Scenario scenario;
  scenario.shuffle = false;
  scenario.options.table_slots = 1 << 14;
  FakeDurableIdIndex index;
  auto dedup = MakeTestee(scenario.options, index);
  ExpectEachIdNewExactlyOnce(RunOverlapping(scenario, index, *dedup));
}

// Inserts race with pressure evictions (W moving under the fast path).
TEST(DeduplicatorConcurrencyTest, ConcurrentInsertAndEvictionStayExact) {
  Scenario scenario;
  scenario.ids = 3000;
  scenario.options.table_slots = 256;
  scenario.options.probe_limit = 8;
  scenario.options.repeat_skew_ms = 0;
  FakeDurableIdIndex index;
  auto dedup = MakeTestee(scenario.options, index);
  ExpectEachIdNewExactlyOnce(RunOverlapping(scenario, index, *dedup));
  const DedupCounters& c = dedup->counters();
  EXPECT_GT(c.pressure_evictions.load(), 0u);
  EXPECT_GT(c.authority_lookups_below_watermark.load(), 0u);
  EXPECT_GT(dedup->completeness_watermark(), kT0);
}

}  // namespace
}  // namespace tally
