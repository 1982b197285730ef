// Deduplicator::Check on the two hot cases: ids never seen (the lock-free
// fast path) and repeats of committed ids (slow path: stripe mutex, pending
// logs, durable lookup; here the durable index is an in-memory map, so the
// numbers exclude RocksDB's own cost, which dominates in production).
// ->Threads(1)->Threads(2) share one Deduplicator to show scaling.
#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "processor/dedup/deduplicator.h"

namespace tally {
namespace {

constexpr TimestampMs kT0 = 1'704'067'200'000;
constexpr int kKeysPerThread = 1 << 20;
constexpr int kBatchSize = 2048;

class BenchIndex : public DurableIdIndex {
 public:
  absl::StatusOr<bool> Contains(const DedupKey& key) override {
    std::lock_guard lock(mu_);
    return keys_.contains(key);
  }
  absl::Status ForEachSince(TimestampMs,
                            absl::FunctionRef<void(const DedupKey&, TimestampMs)>) override {
    return absl::OkStatus();
  }
  void Persist(const DedupBatch& batch) {
    std::lock_guard lock(mu_);
    batch.ForEachAccepted([&](const DedupKey& key, TimestampMs) { keys_.insert(key); });
  }

 private:
  std::mutex mu_;
  absl::flat_hash_set<DedupKey> keys_;
};

// Shared by the benchmark threads; rebuilt by thread 0 for each run.
struct Shared {
  BenchIndex index;
  std::unique_ptr<Deduplicator> dedup;
  std::vector<std::vector<DedupKey>> keys;  // per thread
};
Shared* g_shared = nullptr;

void Setup(const benchmark::State& state, bool preload) {
  g_shared = new Shared;
  DedupOptions options;
  options.table_slots = uint64_t{1} << 23;  // 64 MiB, load <= 0.25 at 2 threads
  g_shared->dedup = *Deduplicator::Create(options, &g_shared->index);
  // As in production: since = M - horizon - skew puts every live event at
  // least skew above W, i.e. on the fast path.
  (void)g_shared->dedup->WarmUp(kT0 - 2 * 86'400'000);
  g_shared->keys.resize(state.threads());
  for (int t = 0; t < state.threads(); ++t) {
    auto& keys = g_shared->keys[t];
    keys.reserve(kKeysPerThread);
    for (int i = 0; i < kKeysPerThread; ++i) {
      // Tracker-style click ids: 36 characters, like a UUID.
      keys.push_back(ClickKey(absl::StrCat("0000000-click-", t, "-", i, "-ffffffffffffffff")));
    }
  }
  if (preload) {
    for (auto& keys : g_shared->keys) {
      for (size_t i = 0; i < keys.size(); i += kBatchSize) {
        auto batch = g_shared->dedup->BeginBatch();
        for (size_t j = i; j < std::min(keys.size(), i + kBatchSize); ++j) {
          (void)g_shared->dedup->Check(*batch, keys[j], kT0);
        }
        g_shared->index.Persist(*batch);
        g_shared->dedup->Commit(std::move(batch));
      }
    }
  }
}

void RunChecks(benchmark::State& state, DedupOutcome expected) {
  Deduplicator& dedup = *g_shared->dedup;
  const std::vector<DedupKey>& keys = g_shared->keys[state.thread_index()];
  auto batch = dedup.BeginBatch();
  size_t i = 0;
  int in_batch = 0;
  for (auto _ : state) {
    if (i == keys.size()) {
      state.SkipWithError("ran out of prepared keys");
      break;
    }
    absl::StatusOr<DedupOutcome> outcome = dedup.Check(*batch, keys[i++], kT0 + 1000);
    if (!outcome.ok() || *outcome != expected) {
      state.SkipWithError("unexpected outcome");
      break;
    }
    if (++in_batch == kBatchSize) {
      // Ending a batch is part of the per-event cost (amortised).
      dedup.Commit(std::move(batch));
      batch = dedup.BeginBatch();
      in_batch = 0;
    }
  }
  dedup.Commit(std::move(batch));
  state.SetItemsProcessed(state.iterations());
}

void SetupNew(const benchmark::State& state) { Setup(state, /*preload=*/false); }
void SetupDuplicates(const benchmark::State& state) { Setup(state, /*preload=*/true); }
void Teardown(const benchmark::State&) {
  delete g_shared;
  g_shared = nullptr;
}

void BM_CheckNewIds(benchmark::State& state) { RunChecks(state, DedupOutcome::kNew); }
void BM_CheckDuplicates(benchmark::State& state) { RunChecks(state, DedupOutcome::kDuplicate); }

// Setup/Teardown run once per run, outside the benchmark threads. Fixed
// iteration counts: every iteration consumes one prepared key.
BENCHMARK(BM_CheckNewIds)
    ->Setup(SetupNew)
    ->Teardown(Teardown)
    ->Iterations(kKeysPerThread / 2)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK(BM_CheckDuplicates)
    ->Setup(SetupDuplicates)
    ->Teardown(Teardown)
    ->Iterations(kKeysPerThread / 2)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();

}  // namespace
}  // namespace tally
