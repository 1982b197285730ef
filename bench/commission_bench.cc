// Attribute() per conversion: sort of the candidates, model weights, payout
// split and the commission records (ids included), for 1, 3 and 10 candidate
// clicks under each multi-touch-relevant model. No main(): benchmark_main.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "processor/commission/commission_engine.h"

namespace tally {
namespace {

constexpr int64_t kHour = 3600 * 1000;
constexpr int64_t kT0 = 1'700'000'000'000;

void BM_Attribute(benchmark::State& state, AttributionModel model) {
  OfferTerms terms;
  terms.offer_id = "off-1";
  terms.model = model;
  terms.half_life_ms = 24 * kHour;
  Payout revshare;
  revshare.kind = Payout::Kind::kRevshare;
  revshare.revshare_bps = 1000;
  terms.payouts["sale"] = revshare;

  const int n = static_cast<int>(state.range(0));
  std::vector<ClickRecord> clicks;
  for (int i = 0; i < n; ++i) {
    ClickRecord c;
    // Realistic sizes (loadgen ids); given newest first so the sort works.
    c.click_id = absl::StrCat("c-5573252a56606f", 10 + i);
    c.event_time_ms = kT0 - static_cast<int64_t>(i) * 3 * kHour;
    c.affiliate_id = absl::StrCat("aff-", 40 + i);
    c.offer_id = "off-1";
    c.user_id = "u-186";
    c.sub_ids = {"campaign-7", "banner-2"};
    clicks.push_back(std::move(c));
  }
  Conversion conv;
  conv.conversion_id = "ord-0000000000123456";
  conv.event_time_ms = kT0 + kHour;
  conv.offer_id = "off-1";
  conv.goal = "sale";
  conv.amount.minor = 129'99;
  Currency::Parse("EUR", &conv.amount.currency);
  conv.status = ConversionStatus::kApproved;

  for (auto _ : state) {
    std::vector<Commission> out = Attribute(terms, conv, clicks);
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK_CAPTURE(BM_Attribute, last_click, AttributionModel::kLastClick)->Arg(1)->Arg(3)->Arg(10);
BENCHMARK_CAPTURE(BM_Attribute, linear, AttributionModel::kLinear)->Arg(1)->Arg(3)->Arg(10);
BENCHMARK_CAPTURE(BM_Attribute, time_decay, AttributionModel::kTimeDecay)->Arg(1)->Arg(3)->Arg(10);
BENCHMARK_CAPTURE(BM_Attribute, position_based, AttributionModel::kPositionBased)
    ->Arg(1)
    ->Arg(3)
    ->Arg(10);

}  // namespace
}  // namespace tally
