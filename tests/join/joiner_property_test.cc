// The determinism property of the joiner (README, Semantics): the same events
// give the same outputs whatever the interleaving of the two input topics and
// wherever the batches end, with clicks out of order within
// max_click_lateness, clicks later than it, quiet stretches of a partition,
// conversions read long before or long after their clicks, status changes
// and every attribution model. Thousands of random inputs, each run through
// several random interleavings and batch splits on a real TaskStore; the
// sorted outputs of every run must equal the first run's byte for byte.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "processor/join/joiner.h"
#include "processor/join/state_store.h"
#include "processor/offers/offers.h"
#include "tests/join/test_dir.h"

namespace tally {
namespace {

constexpr TimestampMs kT0 = 1'700'000'000'000;
constexpr int64_t kSecond = 1'000;
constexpr int64_t kMinute = 60'000;
constexpr int64_t kHour = 3'600'000;
constexpr int64_t kGrace = 10 * kMinute;
constexpr int64_t kWindow = kHour;
constexpr int64_t kConversionLateness = 2 * kHour;

// One offer per model, one with ctit bounds, and (absent from the file) one
// without terms.
constexpr std::string_view kOffersYaml = R"(
offers:
  - id: off-last
    attribution_window: 1h
    model: last_click
    payouts:
      sale: {cpa: {amount: 1000, currency: EUR}}
  - id: off-first
    attribution_window: 1h
    model: first_click
    payouts:
      sale: {revshare_bps: 1500}
  - id: off-lin
    attribution_window: 1h
    model: linear
    payouts:
      sale: {cpa: {amount: 1001, currency: EUR}}
  - id: off-decay
    attribution_window: 1h
    model: time_decay
    half_life: 10m
    payouts:
      sale: {cpa: {amount: 997, currency: EUR}}
  - id: off-pos
    attribution_window: 1h
    model: position_based
    payouts:
      sale: {revshare_bps: 1000}
  - id: off-ctit
    attribution_window: 1h
    ctit_min: 20s
    ctit_max: 40m
    payouts:
      sale: {cpa: {amount: 500, currency: EUR}}
)";
constexpr std::array<std::string_view, 7> kOfferIds = {
    "off-last", "off-first", "off-lin", "off-decay", "off-pos", "off-ctit", "off-none"};

struct Event {
  bool is_click = false;
  Click click;
  Conversion conversion;
};

// The two topics of one partition, each in its own (fixed) order.
struct Input {
  int64_t lateness_ms = 0;
  std::vector<Click> clicks;
  std::vector<Conversion> conversions;
};

Money Eur(int64_t minor) {
  Money m;
  m.minor = minor;
  EXPECT_TRUE(Currency::Parse("EUR", &m.currency));
  return m;
}

int64_t Uniform(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}
bool Chance(std::mt19937_64& rng, double p) { return std::bernoulli_distribution(p)(rng); }

Input Generate(uint64_t seed, AttributionMode mode) {
  std::mt19937_64 rng(seed);
  Input in;
  in.lateness_ms = std::array<int64_t, 3>{0, 5 * kSecond, 90 * kSecond}[Uniform(rng, 0, 2)];
  const int users = static_cast<int>(Uniform(rng, 2, 6));
  const int clicks = static_cast<int>(Uniform(rng, 5, 45));
  TimestampMs clock = kT0;
  struct Timed {
    TimestampMs order;  // position in the conversions topic
    Conversion conversion;
  };
  std::vector<Timed> conversions;
  int next_conversion = 0;
  auto add_conversion = [&](TimestampMs ts, std::string click_id, std::string user,
                            std::string offer) {
    Conversion c;
    c.conversion_id = absl::StrCat("o", next_conversion++);
    c.event_time_ms = ts;
    c.offer_id = std::move(offer);
    c.goal = "sale";
    c.amount = Eur(Uniform(rng, 1, 50'000));
    c.status = Chance(rng, 0.5) ? ConversionStatus::kApproved : ConversionStatus::kPending;
    if (mode == AttributionMode::kClickId) {
      c.click_id = std::move(click_id);
      if (Chance(rng, 0.5)) c.user_id = std::move(user);
    } else {
      c.user_id = std::move(user);
    }
    // The conversions topic is roughly in event-time order, within the
    // conversion lateness; a status change follows later.
    const TimestampMs order = ts + Uniform(rng, -kConversionLateness / 2, 0);
    conversions.push_back({order, c});
    if (Chance(rng, 0.25)) {
      Conversion change = c;
      change.status = Chance(rng, 0.5) ? ConversionStatus::kReversed : ConversionStatus::kApproved;
      conversions.push_back({order + Uniform(rng, 1, 3 * kHour), change});
    }
  };
  for (int i = 0; i < clicks; ++i) {
    // Mostly busy, sometimes a quiet stretch longer than window + grace.
    clock += Chance(rng, 0.08) ? Uniform(rng, kHour, 3 * kHour) : Uniform(rng, 0, 4 * kMinute);
    Click c;
    c.click_id = absl::StrCat("c", i);
    c.event_time_ms = clock - Uniform(rng, 0, in.lateness_ms);
    if (Chance(rng, 0.07)) c.event_time_ms = clock - in.lateness_ms - Uniform(rng, 1, 30 * kMinute);
    c.affiliate_id = absl::StrCat("aff-", Uniform(rng, 1, 4));
    c.offer_id = std::string(kOfferIds[Uniform(rng, 0, kOfferIds.size() - 2)]);
    c.user_id = absl::StrCat("u", Uniform(rng, 1, users));
    c.sub_ids = {absl::StrCat("s", i)};
    in.clicks.push_back(c);
    if (Chance(rng, 0.45)) {
      // Near the window's end sometimes, before the click sometimes, on
      // another offer now and then.
      const TimestampMs ts = c.event_time_ms + Uniform(rng, -2 * kMinute, kWindow + 5 * kMinute);
      const std::string offer = Chance(rng, 0.1)
                                    ? std::string(kOfferIds[Uniform(rng, 0, kOfferIds.size() - 1)])
                                    : c.offer_id;
      add_conversion(ts, c.click_id, c.user_id, offer);
    }
    if (Chance(rng, 0.05)) {  // a click nobody clicked / a user without clicks
      add_conversion(clock + Uniform(rng, 0, kHour), absl::StrCat("missing", i),
                     absl::StrCat("u", users + 1), c.offer_id);
    }
  }
  if (Chance(rng, 0.3)) {  // a reversal of an order never sent
    Conversion c;
    c.conversion_id = "unknown";
    c.event_time_ms = clock;
    c.offer_id = "off-last";
    c.goal = "sale";
    c.amount = Eur(100);
    c.status = ConversionStatus::kReversed;
    c.click_id = "c0";
    c.user_id = "u1";
    conversions.push_back({clock, c});
  }
  std::stable_sort(conversions.begin(), conversions.end(),
                   [](const Timed& a, const Timed& b) { return a.order < b.order; });
  for (Timed& t : conversions) in.conversions.push_back(std::move(t.conversion));
  // Clicks up to an hour past the end now and then, so that the watermark
  // passes most graces (the rest stay pending: also an outcome).
  if (Chance(rng, 0.7)) {
    Click tail = in.clicks.back();
    tail.click_id = "tail";
    tail.event_time_ms = clock + 3 * kHour;
    in.clicks.push_back(tail);
  }
  return in;
}

std::string Describe(const Commission& c) {
  return absl::StrCat("commission ", c.commission_id, " conv=", c.conversion_id,
                      " click=", c.click_id, " aff=", c.affiliate_id,
                      " status=", static_cast<int>(c.status), " payout=", c.payout.minor, " ",
                      std::string(c.payout.currency.code()), " ppm=", c.credit_ppm,
                      " n=", c.click_count, " sub=", absl::StrJoin(c.sub_ids, ","));
}

// Records every output as one line; Retained is bookkeeping, not output.
class LineSink final : public JoinSink {
 public:
  void Commission(const tally::Commission& c) override { lines.push_back(Describe(c)); }
  void Reject(const SourceRef& s, RejectReason reason, std::string_view detail) override {
    lines.push_back(absl::StrCat("reject ", std::string(s.topic), "@", s.offset, " ",
                                 std::string(RejectReasonName(reason)), " ", std::string(detail)));
  }
  void Unattributed(const UnattributedConversion& u, const SourceRef& s) override {
    lines.push_back(absl::StrCat("unattributed ", std::string(s.topic), "@", s.offset, " ",
                                 u.conversion.conversion_id, " ", UnattributedReasonName(u.reason),
                                 " ", u.detail));
  }
  void Retained(const SourceRef&) override {}
  std::vector<std::string> lines;
};

class JoinerPropertyTest : public ::testing::TestWithParam<AttributionMode> {
 protected:
  void SetUp() override {
    auto offers = OffersCatalog::FromYaml(kOffersYaml, "property.yaml");
    ASSERT_TRUE(offers.ok()) << offers.status();
    offers_ = *offers;
    StateStoreOptions o;
    o.dir = dir_.path();
    o.block_cache_bytes = 8 << 20;
    o.write_buffer_bytes = 2 << 20;
    o.sync_commits = false;
    o.click_retention_ms = kWindow + kGrace;
    o.conversion_lateness_ms = kConversionLateness;
    auto stores = StateStores::Create(o);
    ASSERT_TRUE(stores.ok()) << stores.status();
    stores_ = *std::move(stores);
    auto store = stores_->Open(0);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *store;
  }

  // One run: the topics merged by `rng` (a bias per run, so that one topic
  // is sometimes read far ahead of the other), a commit after a random
  // number of events. Returns the sorted output lines.
  std::vector<std::string> Run(const Input& in, uint64_t run_seed) {
    EXPECT_TRUE(store_->Clear().ok());
    EXPECT_TRUE(store_->ReloadCommitted().ok());
    JoinOptions options;
    options.mode = GetParam();
    options.pending_grace_ms = kGrace;
    options.max_click_lateness_ms = in.lateness_ms;
    options.max_conversion_lateness_ms = kConversionLateness;
    options.click_retention_ms = kWindow + kGrace;
    options.max_pending_conversions = 0;  // capacity is the documented exception
    Joiner joiner(store_, offers_.get(), options);
    LineSink sink;
    std::mt19937_64 rng(run_seed);
    const double click_bias = std::uniform_real_distribution<double>(0.02, 0.98)(rng);
    size_t ci = 0, vi = 0;
    int64_t until_commit = Uniform(rng, 1, 12);
    while (ci < in.clicks.size() || vi < in.conversions.size()) {
      const bool click =
          vi == in.conversions.size() || (ci < in.clicks.size() && Chance(rng, click_bias));
      if (click) {
        const std::string value = absl::StrCat("click-", ci);
        EXPECT_TRUE(joiner
                        .OnClick(in.clicks[ci],
                                 SourceRef{"clicks", 0, static_cast<int64_t>(ci), "k", value}, sink)
                        .ok());
        ++ci;
      } else {
        const std::string value = absl::StrCat("conv-", vi);
        EXPECT_TRUE(joiner
                        .OnConversion(
                            in.conversions[vi],
                            SourceRef{"conversions", 0, static_cast<int64_t>(vi), "k", value}, sink)
                        .ok());
        ++vi;
      }
      if (--until_commit == 0 || (ci == in.clicks.size() && vi == in.conversions.size())) {
        EXPECT_TRUE(joiner.Advance(sink).ok());
        EXPECT_TRUE(joiner
                        .Commit({{"clicks", static_cast<int64_t>(ci)},
                                 {"conversions", static_cast<int64_t>(vi)}})
                        .ok());
        until_commit = Uniform(rng, 1, 12);
      }
    }
    std::sort(sink.lines.begin(), sink.lines.end());
    return sink.lines;
  }

  testing::TestDir dir_;
  std::shared_ptr<const OffersCatalog> offers_;
  std::unique_ptr<StateStores> stores_;
  TaskStore* store_ = nullptr;
};

TEST_P(JoinerPropertyTest, OutputsDoNotDependOnInterleavingOrBatchBoundaries) {
  // Sanitizer builds (make asan: Debug + ASan/UBSan, about ten times
  // slower) check the same property on fewer inputs.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  constexpr uint64_t kSeeds = 60;
#else
  constexpr uint64_t kSeeds = 1000;
#endif
  constexpr int kRunsPerSeed = 3;
  uint64_t outputs = 0;
  uint64_t commissions = 0;
  for (uint64_t seed = 1; seed <= kSeeds; ++seed) {
    const Input in = Generate(seed, GetParam());
    const std::vector<std::string> first = Run(in, seed * 1'000);
    outputs += first.size();
    commissions += std::count_if(first.begin(), first.end(), [](const std::string& line) {
      return line.starts_with("commission");
    });
    for (int run = 1; run < kRunsPerSeed; ++run) {
      const std::vector<std::string> again = Run(in, seed * 1'000 + run);
      ASSERT_EQ(again, first) << "seed " << seed << " run " << run << " (lateness "
                              << in.lateness_ms << " ms): outputs depend on the interleaving";
    }
  }
  // The inputs exercise what they are meant to (not a vacuous pass).
  EXPECT_GT(outputs, kSeeds * 5);
  EXPECT_GT(commissions, kSeeds);
}

INSTANTIATE_TEST_SUITE_P(BothModes, JoinerPropertyTest,
                         ::testing::Values(AttributionMode::kClickId, AttributionMode::kUserId),
                         [](const ::testing::TestParamInfo<AttributionMode>& info) {
                           return info.param == AttributionMode::kClickId ? "click_id" : "user_id";
                         });

}  // namespace
}  // namespace tally
