// tally-statefill: writes N clicks into the task stores of a state directory
// exactly as the joiner stores them (clicks, user index, dedup keys), with a
// changelog checkpoint, for the restart benchmark (bench/run.sh): a tally
// started on this directory finds its state local and complete, as after a
// kill -9 of an instance that had processed these clicks.
//
// usage: tally-statefill --dir D --partitions P --clicks N
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "processor/dedup/dedup_key.h"
#include "processor/join/joiner.h"
#include "processor/join/state_store.h"
#include "processor/offers/offers.h"

namespace {

class NullSink final : public tally::JoinSink {
 public:
  void Commission(const tally::Commission&) override {}
  void Reject(const tally::SourceRef&, tally::RejectReason, std::string_view) override {}
  void Unattributed(const tally::UnattributedConversion&, const tally::SourceRef&) override {}
  void Retained(const tally::SourceRef&) override {}
};

int Usage() {
  std::cerr << "usage: tally-statefill --dir D --partitions P --clicks N\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  int64_t partitions = 16, clicks = 10'000'000;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const std::string value = argv[i + 1];
    if (flag == "--dir") {
      dir = value;
    } else if (flag == "--partitions") {
      if (!absl::SimpleAtoi(value, &partitions) || partitions < 1) return Usage();
    } else if (flag == "--clicks") {
      if (!absl::SimpleAtoi(value, &clicks) || clicks < 0) return Usage();
    } else {
      return Usage();
    }
  }
  if (dir.empty()) return Usage();
  tally::StateStoreOptions options;
  options.dir = dir;
  options.sync_commits = false;
  auto stores = tally::StateStores::Create(options);
  if (!stores.ok()) {
    std::cerr << stores.status() << "\n";
    return 1;
  }
  auto offers = tally::OffersCatalog::FromYaml(
      "defaults:\n  attribution_window: 30d\n  payouts:\n    sale: {revshare_bps: 1000}\n",
      "statefill");
  if (!offers.ok()) return 1;
  (*stores)->SetExpectedStoreCount(static_cast<int>(partitions));
  // Event times end now, one click per millisecond per partition before it.
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  const int64_t per_partition = clicks / partitions;
  NullSink sink;
  const absl::Time started = absl::Now();
  for (int32_t p = 0; p < partitions; ++p) {
    auto store = (*stores)->Open(p);
    if (!store.ok()) {
      std::cerr << store.status() << "\n";
      return 1;
    }
    tally::Joiner joiner(*store, offers->get(), tally::JoinOptions{});
    tally::Click click;
    click.affiliate_id = "aff-1";
    click.offer_id = "off-1";
    click.sub_ids = {"s1"};
    auto commit = [&]() {
      absl::Status s = (*store)->PrepareCommit({});
      if (s.ok()) s = (*store)->ApplyCommit(0);
      if (!s.ok()) {
        std::cerr << s << "\n";
        std::exit(1);
      }
    };
    for (int64_t i = 0; i < per_partition; ++i) {
      click.click_id = absl::StrCat("c-", p, "-", i);
      click.user_id = absl::StrCat("u-", p, "-", i / 3);
      click.event_time_ms = now_ms - per_partition + i;
      tally::SourceRef source{"clicks", p, i, "", ""};
      if (!joiner.RecordDedupKey(tally::ClickKey(click.click_id), click.event_time_ms).ok() ||
          !joiner.OnClick(click, source, sink).ok()) {
        std::cerr << "fill failed\n";
        return 1;
      }
      if ((i + 1) % 20'000 == 0) commit();
    }
    commit();
    if (absl::Status s = (*stores)->Close(p); !s.ok()) return 1;
  }
  std::cout << "{\"clicks\":" << per_partition * partitions << ",\"partitions\":" << partitions
            << ",\"seconds\":" << absl::ToDoubleSeconds(absl::Now() - started) << "}\n";
  return 0;
}
