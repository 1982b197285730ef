// The joiner against a RocksDB task store holding many clicks (10M by
// default, TALLY_BENCH_JOIN_CLICKS to change): what one conversion and one
// click cost once the state no longer fits in the block cache's hot set.
//
// Setup (once per process, not timed): a fresh store under /tmp, filled with
// clicks whose ids are in insertion order (as a tracker's time-ordered ids
// are), committed in batches of 10,000. The timed loops then commit every
// 1,000 operations, as the processor does per batch.
//
//   BM_ConversionAttributed: a conversion naming a random stored click:
//     ledger miss + click point lookup + commission + ledger write.
//   BM_ConversionClickNotFound: a conversion naming a click that does not
//     exist (bloom filter miss) and so waits in `pending`.
//   BM_NewClick: an accepted click written to state.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "processor/join/joiner.h"
#include "processor/join/state_store.h"
#include "processor/offers/offers.h"

namespace tally {
namespace {

constexpr TimestampMs kT0 = 1'767'225'600'000;
constexpr int kFillBatch = 10'000;
constexpr int kBenchBatch = 1'000;

class NullSink final : public JoinSink {
 public:
  void Commission(const tally::Commission&) override { ++commissions; }
  void Reject(const SourceRef&, RejectReason, std::string_view) override {}
  void Unattributed(const UnattributedConversion&, const SourceRef&) override {}
  void Retained(const SourceRef&) override {}
  uint64_t commissions = 0;
};

std::string ClickId(int64_t i) { return absl::StrCat("c-", 1'000'000'000'000 + i); }

struct World {
  std::filesystem::path dir;
  std::unique_ptr<StateStores> stores;
  TaskStore* store = nullptr;
  std::shared_ptr<const OffersCatalog> offers;
  std::unique_ptr<Joiner> joiner;
  int64_t clicks = 0;
  int64_t next_offset = 0;
  int64_t since_commit = 0;

  void MaybeCommit() {
    if (++since_commit < kBenchBatch) return;
    since_commit = 0;
    if (!joiner->Commit({{"clicks", next_offset}}).ok()) std::abort();
  }

  ~World() {
    joiner.reset();
    stores.reset();
    std::filesystem::remove_all(dir);
  }
};

World& TheWorld() {
  static World* world = [] {
    auto* w = new World;
    const char* env = std::getenv("TALLY_BENCH_JOIN_CLICKS");
    w->clicks = env != nullptr ? std::atoll(env) : 10'000'000;
    w->dir = std::filesystem::temp_directory_path() / absl::StrCat("tally-join-bench-", getpid());
    std::filesystem::remove_all(w->dir);
    StateStoreOptions options;
    options.dir = w->dir.string();
    auto stores = StateStores::Create(options);
    if (!stores.ok()) std::abort();
    w->stores = std::move(*stores);
    w->store = *w->stores->Open(0);
    w->offers = *OffersCatalog::FromYaml(
        "defaults:\n  attribution_window: 30d\n  payouts:\n    sale: {revshare_bps: 1000}\n",
        "bench");
    w->joiner = std::make_unique<Joiner>(w->store, w->offers.get(), JoinOptions{});
    NullSink sink;
    Click click;
    click.affiliate_id = "aff-1";
    click.offer_id = "off-1";
    click.sub_ids = {"s1"};
    for (int64_t i = 0; i < w->clicks; ++i) {
      click.click_id = ClickId(i);
      click.user_id = absl::StrCat("u-", i / 3);
      click.event_time_ms = kT0 + i;
      SourceRef source{"clicks", 0, w->next_offset++, "", ""};
      if (!w->joiner->OnClick(click, source, sink).ok()) std::abort();
      if ((i + 1) % kFillBatch == 0 && !w->joiner->Commit({{"clicks", w->next_offset}}).ok()) {
        std::abort();
      }
    }
    if (!w->joiner->Commit({{"clicks", w->next_offset}}).ok()) std::abort();
    (void)w->store->CompactAll();
    return w;
  }();
  return *world;
}

Conversion MakeConversion(const std::string& click_id, int64_t n) {
  Conversion c;
  c.conversion_id = absl::StrCat("ord-", n);
  c.event_time_ms = kT0 + TheWorld().clicks + 1000;
  c.offer_id = "off-1";
  c.click_id = click_id;
  c.goal = "sale";
  c.amount.minor = 4599;
  (void)Currency::Parse("EUR", &c.amount.currency);
  c.status = ConversionStatus::kApproved;
  return c;
}

void BM_ConversionAttributed(benchmark::State& state) {
  World& w = TheWorld();
  std::mt19937_64 rng(1);
  NullSink sink;
  int64_t n = 0;
  for (auto _ : state) {
    const Conversion c = MakeConversion(ClickId(static_cast<int64_t>(rng() % w.clicks)), n++);
    SourceRef source{"conversions", 0, w.next_offset++, "", ""};
    if (!w.joiner->OnConversion(c, source, sink).ok()) std::abort();
    w.MaybeCommit();
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["clicks_in_state"] = static_cast<double>(w.clicks);
}
BENCHMARK(BM_ConversionAttributed)->Unit(benchmark::kMicrosecond)->MinTime(2.0);

void BM_ConversionClickNotFound(benchmark::State& state) {
  World& w = TheWorld();
  NullSink sink;
  int64_t n = 0;
  for (auto _ : state) {
    const Conversion c = MakeConversion(absl::StrCat("missing-", n), 1'000'000'000 + n);
    ++n;
    SourceRef source{"conversions", 0, w.next_offset++, "", ""};
    if (!w.joiner->OnConversion(c, source, sink).ok()) std::abort();
    w.MaybeCommit();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ConversionClickNotFound)->Unit(benchmark::kMicrosecond)->MinTime(2.0);

void BM_NewClick(benchmark::State& state) {
  World& w = TheWorld();
  NullSink sink;
  Click click;
  click.affiliate_id = "aff-1";
  click.offer_id = "off-1";
  int64_t i = w.clicks;
  for (auto _ : state) {
    click.click_id = ClickId(i);
    click.user_id = absl::StrCat("u-", i / 3);
    click.event_time_ms = kT0 + i;
    ++i;
    SourceRef source{"clicks", 0, w.next_offset++, "", ""};
    if (!w.joiner->OnClick(click, source, sink).ok()) std::abort();
    w.MaybeCommit();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_NewClick)->Unit(benchmark::kMicrosecond)->MinTime(2.0);

}  // namespace
}  // namespace tally
