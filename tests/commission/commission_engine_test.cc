#include "processor/commission/commission_engine.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tally {
namespace {

using ::testing::ElementsAre;
using ::testing::SizeIs;

constexpr int64_t kHour = 3600 * 1000;
constexpr int64_t kT0 = 1'700'000'000'000;  // an arbitrary event time

Currency Cur(const char* code) {
  Currency c;
  EXPECT_TRUE(Currency::Parse(code, &c)) << code;
  return c;
}

Money M(int64_t minor, const char* code) { return Money{minor, Cur(code)}; }

Payout Cpa(int64_t minor, const char* code) {
  Payout p;
  p.kind = Payout::Kind::kCpa;
  p.cpa = M(minor, code);
  return p;
}

Payout Revshare(int32_t bps) {
  Payout p;
  p.kind = Payout::Kind::kRevshare;
  p.revshare_bps = bps;
  return p;
}

OfferTerms Terms(AttributionModel model, Payout sale) {
  OfferTerms t;
  t.offer_id = "off-1";
  t.model = model;
  t.payouts["sale"] = sale;
  return t;
}

ClickRecord Click(std::string id, TimestampMs ts, std::string affiliate = "aff-1") {
  ClickRecord c;
  c.click_id = std::move(id);
  c.event_time_ms = ts;
  c.affiliate_id = std::move(affiliate);
  c.offer_id = "off-1";
  c.user_id = "u-1";
  return c;
}

Conversion Conv(int64_t amount, const char* currency = "EUR", std::string goal = "sale") {
  Conversion v;
  v.conversion_id = "order-1";
  v.event_time_ms = kT0 + 10 * kHour;
  v.offer_id = "off-1";
  v.click_id = "c-1";
  v.goal = std::move(goal);
  v.amount = M(amount, currency);
  v.status = ConversionStatus::kApproved;
  return v;
}

std::vector<int64_t> Payouts(const std::vector<Commission>& cs) {
  std::vector<int64_t> out;
  for (const Commission& c : cs) out.push_back(c.payout.minor);
  return out;
}

std::vector<std::string> ClickIds(const std::vector<Commission>& cs) {
  std::vector<std::string> out;
  for (const Commission& c : cs) out.push_back(c.click_id);
  return out;
}

std::vector<int32_t> Ppm(const std::vector<Commission>& cs) {
  std::vector<int32_t> out;
  for (const Commission& c : cs) out.push_back(c.credit_ppm);
  return out;
}

std::vector<int64_t> Split(int64_t total, std::vector<double> weights) {
  return SplitLargestRemainder(total, weights);
}

// ---- Rounding ---------------------------------------------------------------

TEST(DivideRoundHalfAwayFromZero, HalvesGoAwayFromZero) {
  EXPECT_EQ(DivideRoundHalfAwayFromZero(5, 10), 1);    // 0.5
  EXPECT_EQ(DivideRoundHalfAwayFromZero(15, 10), 2);   // 1.5
  EXPECT_EQ(DivideRoundHalfAwayFromZero(25, 10), 3);   // 2.5 (not banker's 2)
  EXPECT_EQ(DivideRoundHalfAwayFromZero(-5, 10), -1);  // -0.5
  EXPECT_EQ(DivideRoundHalfAwayFromZero(-25, 10), -3);
  EXPECT_EQ(DivideRoundHalfAwayFromZero(4, 10), 0);
  EXPECT_EQ(DivideRoundHalfAwayFromZero(-4, 10), 0);
  EXPECT_EQ(DivideRoundHalfAwayFromZero(6, 10), 1);
  EXPECT_EQ(DivideRoundHalfAwayFromZero(-6, 10), -1);
  EXPECT_EQ(DivideRoundHalfAwayFromZero(0, 7), 0);
  EXPECT_EQ(DivideRoundHalfAwayFromZero(21, 7), 3);
  EXPECT_EQ(DivideRoundHalfAwayFromZero(1, 1), 1);
  EXPECT_EQ(DivideRoundHalfAwayFromZero(1, 3), 0);
  EXPECT_EQ(DivideRoundHalfAwayFromZero(2, 3), 1);
  // Odd denominator: the half is never exact.
  EXPECT_EQ(DivideRoundHalfAwayFromZero(3, 7), 0);
  EXPECT_EQ(DivideRoundHalfAwayFromZero(4, 7), 1);
}

TEST(DivideRoundHalfAwayFromZero, LargeValuesUseInt128) {
  const __int128 big = static_cast<__int128>(1'000'000'000'000'000) * 10'000;
  EXPECT_EQ(DivideRoundHalfAwayFromZero(big, 10'000), 1'000'000'000'000'000);
  EXPECT_EQ(DivideRoundHalfAwayFromZero(big + 5'000, 10'000), 1'000'000'000'000'001);
  EXPECT_EQ(DivideRoundHalfAwayFromZero(big + 4'999, 10'000), 1'000'000'000'000'000);
  EXPECT_EQ(DivideRoundHalfAwayFromZero(-big - 5'000, 10'000), -1'000'000'000'000'001);
}

// ---- ConversionPayout -------------------------------------------------------

TEST(ConversionPayout, RevshareRoundsHalfAwayFromZero) {
  const OfferTerms t = Terms(AttributionModel::kLastClick, Revshare(1005));
  EXPECT_EQ(ConversionPayout(t, Conv(1), ""), M(0, "EUR"));         // 0.1005
  EXPECT_EQ(ConversionPayout(t, Conv(1000), ""), M(101, "EUR"));    // 100.5
  EXPECT_EQ(ConversionPayout(t, Conv(3000), ""), M(302, "EUR"));    // 301.5
  EXPECT_EQ(ConversionPayout(t, Conv(1990), ""), M(200, "EUR"));    // 199.995
  EXPECT_EQ(ConversionPayout(t, Conv(10000), ""), M(1005, "EUR"));  // exact
  const OfferTerms half = Terms(AttributionModel::kLastClick, Revshare(5000));
  EXPECT_EQ(ConversionPayout(half, Conv(1), ""), M(1, "EUR"));  // 0.5
  EXPECT_EQ(ConversionPayout(half, Conv(3), ""), M(2, "EUR"));  // 1.5
  EXPECT_EQ(ConversionPayout(half, Conv(5), ""), M(3, "EUR"));  // 2.5
  const OfferTerms small = Terms(AttributionModel::kLastClick, Revshare(25));
  EXPECT_EQ(ConversionPayout(small, Conv(200), ""), M(1, "EUR"));  // 0.5
  EXPECT_EQ(ConversionPayout(small, Conv(199), ""), M(0, "EUR"));  // 0.4975
}

TEST(ConversionPayout, RevshareExtremes) {
  const OfferTerms all = Terms(AttributionModel::kLastClick, Revshare(10000));
  EXPECT_EQ(ConversionPayout(all, Conv(1'000'000'000'000'000), ""),
            M(1'000'000'000'000'000, "EUR"));
  const OfferTerms none = Terms(AttributionModel::kLastClick, Revshare(0));
  EXPECT_EQ(ConversionPayout(none, Conv(1'000'000'000'000'000), ""), M(0, "EUR"));
  const OfferTerms odd = Terms(AttributionModel::kLastClick, Revshare(9999));
  // 1e15 * 9999 ~ 2^63.1 overflows int64: the product must be __int128.
  EXPECT_EQ(ConversionPayout(odd, Conv(1'000'000'000'000'000), ""), M(999'900'000'000'000, "EUR"));
  EXPECT_EQ(ConversionPayout(odd, Conv(0), ""), M(0, "EUR"));
}

TEST(ConversionPayout, RevshareInJpyHasNoMinorDigitsToRound) {
  // JPY has 0 digits: the minor unit is the yen, and the revshare is paid in
  // the conversion's currency.
  const OfferTerms t = Terms(AttributionModel::kLastClick, Revshare(1005));
  EXPECT_EQ(ConversionPayout(t, Conv(1234, "JPY"), ""), M(124, "JPY"));  // 124.017
  EXPECT_EQ(ConversionPayout(t, Conv(1000, "JPY"), ""), M(101, "JPY"));  // 100.5
  EXPECT_EQ(Cur("JPY").minor_unit_digits(), 0);
}

TEST(ConversionPayout, CpaIsFixedInItsOwnCurrency) {
  const OfferTerms t = Terms(AttributionModel::kLastClick, Cpa(1500, "USD"));
  EXPECT_EQ(ConversionPayout(t, Conv(99999, "EUR"), ""), M(1500, "USD"));
  EXPECT_EQ(ConversionPayout(t, Conv(0, "JPY"), ""), M(1500, "USD"));
}

TEST(ConversionPayout, UnknownGoalPaysZeroInConversionCurrency) {
  const OfferTerms t = Terms(AttributionModel::kLastClick, Cpa(1500, "USD"));
  EXPECT_EQ(ConversionPayout(t, Conv(5000, "SEK", "install"), ""), M(0, "SEK"));
}

TEST(ConversionPayout, AffiliateOverride) {
  OfferTerms t = Terms(AttributionModel::kLastClick, Revshare(1000));
  t.affiliate_payouts["aff-vip"]["sale"] = Cpa(700, "GBP");
  EXPECT_EQ(ConversionPayout(t, Conv(1000), "aff-vip"), M(700, "GBP"));
  EXPECT_EQ(ConversionPayout(t, Conv(1000), "aff-other"), M(100, "EUR"));
  EXPECT_EQ(ConversionPayout(t, Conv(1000), ""), M(100, "EUR"));
  // The override is per goal: a goal it does not list falls back.
  t.payouts["lead"] = Cpa(250, "EUR");
  EXPECT_EQ(ConversionPayout(t, Conv(0, "EUR", "lead"), "aff-vip"), M(250, "EUR"));
}

// ---- SplitLargestRemainder --------------------------------------------------

TEST(SplitLargestRemainder, ThreeWayLinearGivesTheExtraCentToTheFirst) {
  EXPECT_THAT(Split(100, {1, 1, 1}), ElementsAre(34, 33, 33));
  EXPECT_THAT(Split(101, {1, 1, 1}), ElementsAre(34, 34, 33));
  EXPECT_THAT(Split(102, {1, 1, 1}), ElementsAre(34, 34, 34));
  EXPECT_THAT(Split(2, {1, 1, 1}), ElementsAre(1, 1, 0));
  EXPECT_THAT(Split(0, {1, 1, 1}), ElementsAre(0, 0, 0));
}

TEST(SplitLargestRemainder, LargestRemainderNotIndexWins) {
  // 10 * [1,2] / 3 = 3.33, 6.67: the larger remainder (index 1) gets the unit.
  EXPECT_THAT(Split(10, {1, 2}), ElementsAre(3, 7));
  // 7 * [2,1,4] / 7 exact.
  EXPECT_THAT(Split(7, {2, 1, 4}), ElementsAre(2, 1, 4));
  // 10 * [1,1,3] / 5 = 2, 2, 6 exact; 11 -> 2.2, 2.2, 6.6: unit to index 2.
  EXPECT_THAT(Split(11, {1, 1, 3}), ElementsAre(2, 2, 7));
}

TEST(SplitLargestRemainder, NegativeTotalsAreSymmetric) {
  EXPECT_THAT(Split(-100, {1, 1, 1}), ElementsAre(-34, -33, -33));
  EXPECT_THAT(Split(-10, {1, 2}), ElementsAre(-3, -7));
  EXPECT_THAT(Split(std::numeric_limits<int64_t>::min(), {1, 1}),
              ElementsAre(std::numeric_limits<int64_t>::min() / 2,
                          std::numeric_limits<int64_t>::min() / 2));
  std::mt19937_64 rng(7);
  for (int i = 0; i < 1000; ++i) {
    const int64_t total = static_cast<int64_t>(rng() % 2'000'000'000'000);
    std::vector<double> w(1 + rng() % 6);
    for (double& x : w) x = static_cast<double>(rng() % 5);
    w[0] = 1;
    std::vector<int64_t> pos = Split(total, w);
    std::vector<int64_t> neg = Split(-total, w);
    for (size_t k = 0; k < pos.size(); ++k) ASSERT_EQ(neg[k], -pos[k]);
  }
}

TEST(SplitLargestRemainder, ZeroWeightsGetNothing) {
  EXPECT_THAT(Split(100, {0, 1, 0, 1}), ElementsAre(0, 50, 0, 50));
  EXPECT_THAT(Split(101, {0, 1, 0, 1}), ElementsAre(0, 51, 0, 50));
  EXPECT_THAT(Split(5, {0, 0, 1}), ElementsAre(0, 0, 5));
}

TEST(SplitLargestRemainder, DegenerateInputs) {
  EXPECT_THAT(Split(100, {}), SizeIs(0));
  EXPECT_THAT(Split(100, {3}), ElementsAre(100));
  EXPECT_THAT(Split(100, {0.25}), ElementsAre(100));
  // Contract violations still add up: all zero (or invalid) splits evenly.
  EXPECT_THAT(Split(100, {0, 0, 0}), ElementsAre(34, 33, 33));
  EXPECT_THAT(Split(10, {-1, NAN, 1}), ElementsAre(0, 0, 10));
}

TEST(SplitLargestRemainder, NonIntegralWeightsAreQuantisedDeterministically) {
  // Proportional weights give the same split, integral or not.
  EXPECT_EQ(Split(1000, {0.5, 1.0}), Split(1000, {1, 2}));
  EXPECT_EQ(Split(1000, {0.1, 0.2, 0.3}), Split(1000, {1, 2, 3}));
  EXPECT_THAT(Split(1000, {0.1, 0.2, 0.3}), ElementsAre(167, 333, 500));
  EXPECT_EQ(Split(999, {1e-300, 2e-300}), Split(999, {1, 2}));
  // Huge integral weights (beyond 2^53) are quantised too.
  EXPECT_THAT(Split(100, {1e20, 1e20, 1e20}), ElementsAre(34, 33, 33));
}

// Property test with a fixed seed: the parts add up exactly and each part is
// within 1 of its exact share total * w / sum(w).
TEST(SplitLargestRemainder, PropertyPartsSumExactlyAndStayWithinOneOfTheShare) {
  std::mt19937_64 rng(20240611);
  for (int iter = 0; iter < 20000; ++iter) {
    const size_t n = 1 + rng() % 12;
    const bool integral = iter % 2 == 0;
    std::vector<double> w(n);
    double sum = 0;
    for (double& x : w) {
      x = integral
              ? static_cast<double>(rng() % 100)
              : std::ldexp(static_cast<double>(rng() % 1'000'000), -static_cast<int>(rng() % 30));
      sum += x;
    }
    if (sum == 0) {
      w[rng() % n] = 1;
      sum = 1;
    }
    int64_t total;
    switch (iter % 4) {
      case 0:
        total = static_cast<int64_t>(rng() % 1000);
        break;
      case 1:
        total = static_cast<int64_t>(rng() % 1'000'000'000);
        break;
      case 2:
        total = integral ? static_cast<int64_t>(rng()) : static_cast<int64_t>(rng() % 1'000'000);
        break;
      default:
        total = -static_cast<int64_t>(rng() % 1'000'000'000);
        break;
    }
    const std::vector<int64_t> parts = Split(total, w);
    ASSERT_EQ(parts.size(), n);
    __int128 got = 0;
    for (int64_t p : parts) got += p;
    ASSERT_EQ(got, static_cast<__int128>(total)) << "iteration " << iter;
    for (size_t k = 0; k < n; ++k) {
      if (integral) {
        // Exact: |part * W - total * w| < W.
        const __int128 W = static_cast<__int128>(sum);
        const __int128 diff = static_cast<__int128>(parts[k]) * W -
                              static_cast<__int128>(total) * static_cast<int64_t>(w[k]);
        ASSERT_LT(diff < 0 ? -diff : diff, W) << "iteration " << iter << " part " << k;
        if (w[k] == 0) {
          ASSERT_EQ(parts[k], 0);
        }
      } else {
        // Quantisation to 2^-40 of the largest weight adds at most
        // |total| * 2^-40 (<= 0.001 here).
        const long double share =
            static_cast<long double>(total) * static_cast<long double>(w[k]) / sum;
        ASSERT_LT(std::fabs(static_cast<long double>(parts[k]) - share), 1.001L)
            << "iteration " << iter << " part " << k;
      }
    }
  }
}

// ---- ModelWeights -----------------------------------------------------------

TEST(ModelWeights, EachModel) {
  std::vector<ClickRecord> clicks = {Click("c-1", kT0), Click("c-2", kT0 + kHour),
                                     Click("c-3", kT0 + 2 * kHour), Click("c-4", kT0 + 3 * kHour)};
  OfferTerms t = Terms(AttributionModel::kLastClick, Revshare(1000));
  const TimestampMs conv = kT0 + 4 * kHour;
  EXPECT_THAT(ModelWeights(t, clicks, conv), ElementsAre(0, 0, 0, 1));
  t.model = AttributionModel::kFirstClick;
  EXPECT_THAT(ModelWeights(t, clicks, conv), ElementsAre(1, 0, 0, 0));
  t.model = AttributionModel::kLinear;
  EXPECT_THAT(ModelWeights(t, clicks, conv), ElementsAre(1, 1, 1, 1));
  t.model = AttributionModel::kPositionBased;
  EXPECT_THAT(ModelWeights(t, clicks, conv), ElementsAre(4, 1, 1, 4));
  t.model = AttributionModel::kTimeDecay;
  t.half_life_ms = kHour;
  EXPECT_THAT(ModelWeights(t, clicks, conv), ElementsAre(0.125, 0.25, 0.5, 1));
}

TEST(ModelWeights, PositionBasedShapes) {
  OfferTerms t = Terms(AttributionModel::kPositionBased, Revshare(1000));
  std::vector<ClickRecord> clicks;
  for (int i = 0; i < 5; ++i) clicks.push_back(Click(absl::StrCat("c-", i), kT0 + i));
  const auto first = [&](size_t n) {
    return ModelWeights(t, std::span<const ClickRecord>(clicks.data(), n), kT0 + 10);
  };
  EXPECT_THAT(first(1), ElementsAre(1));
  EXPECT_THAT(first(2), ElementsAre(1, 1));
  EXPECT_THAT(first(3), ElementsAre(2, 1, 2));
  EXPECT_THAT(first(5), ElementsAre(6, 1, 1, 1, 6));
}

TEST(ModelWeights, LastAndFirstClickTiesGoToTheSmallerClickId) {
  // Sorted by (time, click id) as the contract requires.
  std::vector<ClickRecord> clicks = {Click("c-a", kT0), Click("c-b", kT0),
                                     Click("c-c", kT0 + kHour), Click("c-d", kT0 + kHour)};
  OfferTerms t = Terms(AttributionModel::kLastClick, Revshare(1000));
  EXPECT_THAT(ModelWeights(t, clicks, kT0 + 2 * kHour), ElementsAre(0, 0, 1, 0));
  t.model = AttributionModel::kFirstClick;
  EXPECT_THAT(ModelWeights(t, clicks, kT0 + 2 * kHour), ElementsAre(1, 0, 0, 0));
}

TEST(ModelWeights, TimeDecayIsRelativeToTheNewestClickAndExactInFixedPoint) {
  OfferTerms t = Terms(AttributionModel::kTimeDecay, Revshare(1000));
  t.half_life_ms = 2 * kHour;
  // Half a half-life: 2^-0.5, as a multiple of 2^-40.
  std::vector<ClickRecord> clicks = {Click("c-1", kT0), Click("c-2", kT0 + kHour)};
  // The conversion time is a common factor: any conversion time, same weights.
  const std::vector<double> w = ModelWeights(t, clicks, kT0 + kHour);
  EXPECT_EQ(w, ModelWeights(t, clicks, kT0 + 300 * kHour));
  ASSERT_THAT(w, SizeIs(2));
  EXPECT_EQ(w[1], 1.0);
  EXPECT_NEAR(w[0], std::sqrt(0.5), 1e-12);
  EXPECT_EQ(w[0], std::ldexp(std::round(std::ldexp(w[0], 40)), -40));  // multiple of 2^-40
  // 41+ half-lives: rounds to 0 (no credit); 40: the smallest unit.
  std::vector<ClickRecord> old = {Click("c-0", kT0 - 50 * 2 * kHour),
                                  Click("c-1", kT0 - 40 * 2 * kHour), Click("c-2", kT0)};
  EXPECT_THAT(ModelWeights(t, old, kT0), ElementsAre(0, std::ldexp(1.0, -40), 1));
}

// ---- Attribute --------------------------------------------------------------

TEST(Attribute, FillsEveryField) {
  OfferTerms t = Terms(AttributionModel::kLastClick, Revshare(1000));
  ClickRecord click = Click("c-1", kT0, "aff-7");
  click.sub_ids = {"s1", "s2"};
  const Conversion conv = Conv(12345);
  const std::vector<Commission> cs = Attribute(t, conv, std::vector<ClickRecord>{click});
  ASSERT_THAT(cs, SizeIs(1));
  const Commission& c = cs[0];
  EXPECT_EQ(c.commission_id, CommissionId("off-1", "sale", "order-1", "c-1"));
  EXPECT_EQ(c.conversion_id, "order-1");
  EXPECT_EQ(c.offer_id, "off-1");
  EXPECT_EQ(c.goal, "sale");
  EXPECT_EQ(c.click_id, "c-1");
  EXPECT_EQ(c.affiliate_id, "aff-7");
  EXPECT_THAT(c.sub_ids, ElementsAre("s1", "s2"));
  EXPECT_EQ(c.click_time_ms, kT0);
  EXPECT_EQ(c.conversion_time_ms, kT0 + 10 * kHour);
  EXPECT_EQ(c.payout, M(1235, "EUR"));  // 1234.5 rounds up
  EXPECT_EQ(c.status, ConversionStatus::kApproved);
  EXPECT_EQ(c.model, AttributionModel::kLastClick);
  EXPECT_EQ(c.credit_ppm, 1'000'000);
  EXPECT_EQ(c.click_count, 1);
}

TEST(Attribute, NoClicksNoCommissions) {
  const OfferTerms t = Terms(AttributionModel::kLinear, Revshare(1000));
  EXPECT_THAT(Attribute(t, Conv(100), {}), SizeIs(0));
}

TEST(Attribute, StatusFollowsTheConversionAndIsNotPartOfTheId) {
  const OfferTerms t = Terms(AttributionModel::kLinear, Revshare(1000));
  const std::vector<ClickRecord> clicks = {Click("c-1", kT0), Click("c-2", kT0 + 1)};
  Conversion pending = Conv(100);
  pending.status = ConversionStatus::kPending;
  Conversion approved = Conv(100);
  approved.status = ConversionStatus::kApproved;
  const auto a = Attribute(t, pending, clicks);
  const auto b = Attribute(t, approved, clicks);
  ASSERT_THAT(a, SizeIs(2));
  ASSERT_THAT(b, SizeIs(2));
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(a[i].status, ConversionStatus::kPending);
    EXPECT_EQ(b[i].status, ConversionStatus::kApproved);
    EXPECT_EQ(a[i].commission_id, b[i].commission_id);
  }
  EXPECT_NE(a[0].commission_id, a[1].commission_id);
}

TEST(Attribute, OfferIdComesFromTheConversion) {
  // The defaults' terms of an unlisted offer carry no offer id.
  OfferTerms t = Terms(AttributionModel::kLastClick, Revshare(1000));
  t.offer_id = "";
  Conversion conv = Conv(100);
  conv.offer_id = "off-unlisted";
  const auto cs = Attribute(t, conv, std::vector<ClickRecord>{Click("c-1", kT0)});
  ASSERT_THAT(cs, SizeIs(1));
  EXPECT_EQ(cs[0].offer_id, "off-unlisted");
  EXPECT_EQ(cs[0].commission_id, CommissionId("off-unlisted", "sale", "order-1", "c-1"));
}

TEST(Attribute, LastClickTakesAllAndTiesGoToTheSmallerClickId) {
  const OfferTerms t = Terms(AttributionModel::kLastClick, Revshare(1000));
  // Given in any order; two clicks share the latest time.
  const std::vector<ClickRecord> clicks = {Click("c-z", kT0 + kHour, "aff-z"),
                                           Click("c-b", kT0 + kHour, "aff-b"),
                                           Click("c-a", kT0, "aff-a")};
  const auto cs = Attribute(t, Conv(1000), clicks);
  ASSERT_THAT(cs, SizeIs(1));
  EXPECT_EQ(cs[0].click_id, "c-b");
  EXPECT_EQ(cs[0].affiliate_id, "aff-b");
  EXPECT_EQ(cs[0].payout.minor, 100);
  EXPECT_EQ(cs[0].credit_ppm, 1'000'000);
  EXPECT_EQ(cs[0].click_count, 1);
}

TEST(Attribute, ClickIdTiesCompareBytes) {
  const OfferTerms t = Terms(AttributionModel::kLastClick, Revshare(1000));
  // Byte-wise: 'B' (0x42) < 'a' (0x61) < 0xC3 (UTF-8 lead byte of 'é').
  const auto cs1 =
      Attribute(t, Conv(1000), std::vector<ClickRecord>{Click("c-a", kT0), Click("c-B", kT0)});
  ASSERT_THAT(cs1, SizeIs(1));
  EXPECT_EQ(cs1[0].click_id, "c-B");
  const auto cs2 = Attribute(t, Conv(1000),
                             std::vector<ClickRecord>{Click("c-\xc3\xa9", kT0), Click("c-z", kT0)});
  ASSERT_THAT(cs2, SizeIs(1));
  EXPECT_EQ(cs2[0].click_id, "c-z");
  // A prefix sorts first.
  const auto cs3 =
      Attribute(t, Conv(1000), std::vector<ClickRecord>{Click("c-10", kT0), Click("c-1", kT0)});
  ASSERT_THAT(cs3, SizeIs(1));
  EXPECT_EQ(cs3[0].click_id, "c-1");
}

TEST(Attribute, FirstClickTakesAllAndTiesGoToTheSmallerClickId) {
  const OfferTerms t = Terms(AttributionModel::kFirstClick, Revshare(1000));
  const std::vector<ClickRecord> clicks = {Click("c-3", kT0 + kHour), Click("c-2", kT0),
                                           Click("c-1", kT0)};
  const auto cs = Attribute(t, Conv(1000), clicks);
  ASSERT_THAT(cs, SizeIs(1));
  EXPECT_EQ(cs[0].click_id, "c-1");
  EXPECT_EQ(cs[0].click_count, 1);
}

TEST(Attribute, EngineCreditsTheClicksItIsGivenWithoutWindowFiltering) {
  // The joiner applies the window; the engine trusts its candidates.
  OfferTerms t = Terms(AttributionModel::kLinear, Revshare(1000));
  t.attribution_window_ms = kHour;
  const std::vector<ClickRecord> clicks = {Click("c-1", kT0 - 1000 * kHour), Click("c-2", kT0)};
  const auto cs = Attribute(t, Conv(1000), clicks);
  EXPECT_THAT(Payouts(cs), ElementsAre(50, 50));
}

TEST(Attribute, LinearThreeWayGivesTheExtraCentToTheEarliest) {
  const OfferTerms t = Terms(AttributionModel::kLinear, Cpa(100, "USD"));
  const std::vector<ClickRecord> clicks = {Click("c-3", kT0 + 2 * kHour), Click("c-1", kT0),
                                           Click("c-2", kT0 + kHour)};
  const auto cs = Attribute(t, Conv(0), clicks);
  EXPECT_THAT(ClickIds(cs), ElementsAre("c-1", "c-2", "c-3"));  // ordered by time
  EXPECT_THAT(Payouts(cs), ElementsAre(34, 33, 33));
  EXPECT_THAT(Ppm(cs), ElementsAre(333333, 333333, 333333));
  for (const Commission& c : cs) {
    EXPECT_EQ(c.payout.currency, Cur("USD"));
    EXPECT_EQ(c.click_count, 3);
    EXPECT_EQ(c.model, AttributionModel::kLinear);
  }
}

TEST(Attribute, LinearEqualTimesGiveTheExtraCentToTheSmallerClickId) {
  const OfferTerms t = Terms(AttributionModel::kLinear, Cpa(101, "USD"));
  const std::vector<ClickRecord> clicks = {Click("c-b", kT0), Click("c-c", kT0), Click("c-a", kT0)};
  const auto cs = Attribute(t, Conv(0), clicks);
  EXPECT_THAT(ClickIds(cs), ElementsAre("c-a", "c-b", "c-c"));
  EXPECT_THAT(Payouts(cs), ElementsAre(34, 34, 33));
}

TEST(Attribute, PositionBased) {
  const OfferTerms t = Terms(AttributionModel::kPositionBased, Cpa(1000, "EUR"));
  std::vector<ClickRecord> clicks;
  for (int i = 0; i < 5; ++i) clicks.push_back(Click(absl::StrCat("c-", i), kT0 + i * kHour));
  const auto first = [&](size_t n) {
    return Attribute(t, Conv(0), std::span<const ClickRecord>(clicks.data(), n));
  };
  EXPECT_THAT(Payouts(first(1)), ElementsAre(1000));
  EXPECT_THAT(Ppm(first(1)), ElementsAre(1'000'000));
  EXPECT_THAT(Payouts(first(2)), ElementsAre(500, 500));
  EXPECT_THAT(Ppm(first(2)), ElementsAre(500'000, 500'000));
  EXPECT_THAT(Payouts(first(3)), ElementsAre(400, 200, 400));
  EXPECT_THAT(Ppm(first(3)), ElementsAre(400'000, 200'000, 400'000));
  // 6/15, 1/15 x3, 6/15 of 1000: 400, 66.67 x3, 400; the two leftover units
  // go to the equal remainders of the earliest middle clicks.
  EXPECT_THAT(Payouts(first(5)), ElementsAre(400, 67, 67, 66, 400));
  EXPECT_THAT(Ppm(first(5)), ElementsAre(400'000, 66'667, 66'667, 66'667, 400'000));
  for (const Commission& c : first(5)) EXPECT_EQ(c.click_count, 5);
  // Two clicks with an odd total: the earlier gets the unit.
  const OfferTerms odd = Terms(AttributionModel::kPositionBased, Cpa(1001, "EUR"));
  EXPECT_THAT(Payouts(Attribute(odd, Conv(0), std::span<const ClickRecord>(clicks.data(), 2))),
              ElementsAre(501, 500));
}

TEST(Attribute, TimeDecayWithEqualTimesEqualsLinear) {
  OfferTerms decay = Terms(AttributionModel::kTimeDecay, Cpa(1000, "EUR"));
  decay.half_life_ms = kHour;
  OfferTerms linear = decay;
  linear.model = AttributionModel::kLinear;
  const std::vector<ClickRecord> clicks = {Click("c-2", kT0), Click("c-1", kT0), Click("c-3", kT0)};
  const auto a = Attribute(decay, Conv(0), clicks);
  const auto b = Attribute(linear, Conv(0), clicks);
  EXPECT_EQ(Payouts(a), Payouts(b));
  EXPECT_EQ(Ppm(a), Ppm(b));
  EXPECT_EQ(ClickIds(a), ClickIds(b));
  EXPECT_THAT(Payouts(a), ElementsAre(334, 333, 333));
}

TEST(Attribute, TimeDecayHalvesPerHalfLife) {
  OfferTerms t = Terms(AttributionModel::kTimeDecay, Cpa(100, "EUR"));
  t.half_life_ms = 6 * kHour;
  const std::vector<ClickRecord> clicks = {Click("c-new", kT0 + 6 * kHour), Click("c-old", kT0)};
  const auto cs = Attribute(t, Conv(0), clicks);
  EXPECT_THAT(ClickIds(cs), ElementsAre("c-old", "c-new"));
  EXPECT_THAT(Payouts(cs), ElementsAre(33, 67));  // 1/3, 2/3
  EXPECT_THAT(Ppm(cs), ElementsAre(333'333, 666'667));
  EXPECT_EQ(cs[0].model, AttributionModel::kTimeDecay);
}

TEST(Attribute, TimeDecayNegligibleClicksGetNoCommission) {
  OfferTerms t = Terms(AttributionModel::kTimeDecay, Cpa(100, "EUR"));
  t.half_life_ms = kHour;
  t.affiliate_payouts["aff-new"]["sale"] = Cpa(999, "EUR");
  // 50 half-lives older: weight rounds to 0, so the newest is the only
  // credited click and its override applies.
  const std::vector<ClickRecord> clicks = {Click("c-old", kT0 - 50 * kHour, "aff-old"),
                                           Click("c-new", kT0, "aff-new")};
  const auto cs = Attribute(t, Conv(0), clicks);
  ASSERT_THAT(cs, SizeIs(1));
  EXPECT_EQ(cs[0].click_id, "c-new");
  EXPECT_EQ(cs[0].payout, M(999, "EUR"));
  EXPECT_EQ(cs[0].click_count, 1);
  EXPECT_EQ(cs[0].credit_ppm, 1'000'000);
}

TEST(Attribute, ZeroWeightClicksGetNoCommission) {
  const OfferTerms t = Terms(AttributionModel::kLastClick, Revshare(1000));
  const std::vector<ClickRecord> clicks = {Click("c-1", kT0), Click("c-2", kT0 + 1),
                                           Click("c-3", kT0 + 2)};
  const auto cs = Attribute(t, Conv(1000), clicks);
  EXPECT_THAT(ClickIds(cs), ElementsAre("c-3"));
  EXPECT_EQ(cs[0].click_count, 1);
}

TEST(Attribute, AffiliateOverrideOnlyForASingleCreditedClick) {
  OfferTerms t = Terms(AttributionModel::kLinear, Revshare(1000));
  t.affiliate_payouts["aff-vip"]["sale"] = Revshare(5000);
  // One click: the override.
  const auto single =
      Attribute(t, Conv(1000), std::vector<ClickRecord>{Click("c-1", kT0, "aff-vip")});
  EXPECT_THAT(Payouts(single), ElementsAre(500));
  // Two clicks, both of the VIP: still a split of the offer's own payout.
  const auto two_vip = Attribute(
      t, Conv(1000),
      std::vector<ClickRecord>{Click("c-1", kT0, "aff-vip"), Click("c-2", kT0 + 1, "aff-vip")});
  EXPECT_THAT(Payouts(two_vip), ElementsAre(50, 50));
  // Mixed: the offer's payout, split.
  const auto mixed = Attribute(
      t, Conv(1000),
      std::vector<ClickRecord>{Click("c-1", kT0, "aff-vip"), Click("c-2", kT0 + 1, "aff-x")});
  EXPECT_THAT(Payouts(mixed), ElementsAre(50, 50));
  // last_click over several candidates credits one click: the override applies.
  t.model = AttributionModel::kLastClick;
  const auto last = Attribute(
      t, Conv(1000),
      std::vector<ClickRecord>{Click("c-1", kT0, "aff-x"), Click("c-2", kT0 + 1, "aff-vip")});
  EXPECT_THAT(Payouts(last), ElementsAre(500));
  // ... and when the credited click is not the VIP's, it does not.
  const auto last_other = Attribute(
      t, Conv(1000),
      std::vector<ClickRecord>{Click("c-1", kT0, "aff-vip"), Click("c-2", kT0 + 1, "aff-x")});
  EXPECT_THAT(Payouts(last_other), ElementsAre(100));
  // The override's currency is used as is.
  t.affiliate_payouts["aff-vip"]["sale"] = Cpa(777, "CHF");
  const auto cpa = Attribute(t, Conv(1000), std::vector<ClickRecord>{Click("c-1", kT0, "aff-vip")});
  ASSERT_THAT(cpa, SizeIs(1));
  EXPECT_EQ(cpa[0].payout, M(777, "CHF"));
}

// The basis states the payout that was applied (contract v1.1): a wrong
// one would tell an affiliate a rate they were not paid at.
TEST(Attribute, BasisNamesThePayoutApplied) {
  OfferTerms t = Terms(AttributionModel::kLinear, Revshare(1000));
  t.payouts["lead"] = Cpa(250, "GBP");
  t.affiliate_payouts["aff-vip"]["sale"] = Cpa(777, "CHF");
  t.version = std::string(64, 'b');
  // Revshare, no override: rate in bps, base = the conversion amount.
  const auto rev = Attribute(t, Conv(12345), std::vector<ClickRecord>{Click("c-1", kT0, "aff-x")});
  ASSERT_THAT(rev, SizeIs(1));
  EXPECT_EQ(rev[0].basis, PayoutBasis::kRevshare);
  EXPECT_EQ(rev[0].rate, 1000);
  EXPECT_EQ(rev[0].base, M(12345, "EUR"));
  EXPECT_FALSE(rev[0].override_applied);
  EXPECT_EQ(rev[0].offer_version, t.version);
  EXPECT_EQ(rev[0].produced_at_ms, 0);
  // The VIP's override, alone: CPA in its own currency, flagged.
  const auto vip =
      Attribute(t, Conv(12345), std::vector<ClickRecord>{Click("c-1", kT0, "aff-vip")});
  ASSERT_THAT(vip, SizeIs(1));
  EXPECT_EQ(vip[0].basis, PayoutBasis::kCpa);
  EXPECT_EQ(vip[0].rate, 777);
  EXPECT_EQ(vip[0].payout, M(777, "CHF"));
  EXPECT_EQ(vip[0].base, M(12345, "EUR"));
  EXPECT_TRUE(vip[0].override_applied);
  // Shared with another click: the offer's own revshare, no override.
  const auto split = Attribute(
      t, Conv(12345),
      std::vector<ClickRecord>{Click("c-1", kT0, "aff-vip"), Click("c-2", kT0 + 1, "aff-x")});
  ASSERT_THAT(split, SizeIs(2));
  for (const Commission& c : split) {
    EXPECT_EQ(c.basis, PayoutBasis::kRevshare);
    EXPECT_EQ(c.rate, 1000);
    EXPECT_FALSE(c.override_applied);
  }
  // A CPA split: rate is the whole conversion's amount, each part a share.
  const auto lead =
      Attribute(t, Conv(0, "EUR", "lead"),
                std::vector<ClickRecord>{Click("c-1", kT0, "aff-x"), Click("c-2", kT0 + 1)});
  ASSERT_THAT(lead, SizeIs(2));
  EXPECT_THAT(Payouts(lead), ElementsAre(125, 125));
  for (const Commission& c : lead) {
    EXPECT_EQ(c.basis, PayoutBasis::kCpa);
    EXPECT_EQ(c.rate, 250);
  }
  // A goal the offer does not pay: a CPA of 0.
  const auto unpaid = Attribute(t, Conv(5000, "SEK", "install"),
                                std::vector<ClickRecord>{Click("c-1", kT0, "aff-vip")});
  ASSERT_THAT(unpaid, SizeIs(1));
  EXPECT_EQ(unpaid[0].basis, PayoutBasis::kCpa);
  EXPECT_EQ(unpaid[0].rate, 0);
  EXPECT_FALSE(unpaid[0].override_applied);
  // A reversal keeps the basis of what it reverses.
  const auto reversed = Reverse(vip);
  ASSERT_THAT(reversed, SizeIs(1));
  EXPECT_EQ(reversed[0].basis, PayoutBasis::kCpa);
  EXPECT_EQ(reversed[0].rate, 777);
  EXPECT_TRUE(reversed[0].override_applied);
  EXPECT_EQ(reversed[0].payout, M(-777, "CHF"));
}

TEST(Attribute, UnknownGoalPaysZeroButStillCredits) {
  const OfferTerms t = Terms(AttributionModel::kLinear, Revshare(1000));
  const auto cs = Attribute(t, Conv(5000, "SEK", "install"),
                            std::vector<ClickRecord>{Click("c-1", kT0), Click("c-2", kT0 + 1)});
  ASSERT_THAT(cs, SizeIs(2));
  for (const Commission& c : cs) {
    EXPECT_EQ(c.payout, M(0, "SEK"));
    EXPECT_EQ(c.goal, "install");
    EXPECT_EQ(c.credit_ppm, 500'000);
  }
}

TEST(Attribute, JpyRevshareSplit) {
  const OfferTerms t = Terms(AttributionModel::kLinear, Revshare(1005));
  // 1234 JPY * 10.05 % = 124.017 -> 124 yen, split 3 ways: 42, 41, 41.
  const auto cs = Attribute(
      t, Conv(1234, "JPY"),
      std::vector<ClickRecord>{Click("c-1", kT0), Click("c-2", kT0 + 1), Click("c-3", kT0 + 2)});
  EXPECT_THAT(Payouts(cs), ElementsAre(42, 41, 41));
  for (const Commission& c : cs) EXPECT_EQ(c.payout.currency, Cur("JPY"));
}

TEST(Attribute, SplitsAlwaysAddUpToTheConversionPayout) {
  std::mt19937_64 rng(99);
  const AttributionModel models[] = {AttributionModel::kLastClick, AttributionModel::kFirstClick,
                                     AttributionModel::kLinear, AttributionModel::kTimeDecay,
                                     AttributionModel::kPositionBased};
  for (int iter = 0; iter < 2000; ++iter) {
    OfferTerms t = Terms(models[iter % 5], Revshare(static_cast<int32_t>(rng() % 10001)));
    t.half_life_ms = 1 + static_cast<int64_t>(rng() % (48 * kHour));
    std::vector<ClickRecord> clicks;
    const size_t n = 1 + rng() % 10;
    for (size_t k = 0; k < n; ++k) {
      clicks.push_back(Click(absl::StrCat("c-", rng() % 1000, "-", k),
                             kT0 + static_cast<int64_t>(rng() % (72 * kHour))));
    }
    const Conversion conv = Conv(static_cast<int64_t>(rng() % 100'000'000));
    const auto cs = Attribute(t, conv, clicks);
    ASSERT_FALSE(cs.empty());
    int64_t sum = 0;
    int64_t ppm = 0;
    for (const Commission& c : cs) {
      sum += c.payout.minor;
      ppm += c.credit_ppm;
      EXPECT_EQ(c.click_count, static_cast<int32_t>(cs.size()));
    }
    EXPECT_EQ(sum, ConversionPayout(t, conv, cs.size() == 1 ? cs[0].affiliate_id : "").minor);
    EXPECT_NEAR(ppm, 1'000'000, static_cast<double>(cs.size()));  // rounded per click
    for (size_t k = 1; k < cs.size(); ++k) {
      EXPECT_TRUE(
          cs[k - 1].click_time_ms < cs[k].click_time_ms ||
          (cs[k - 1].click_time_ms == cs[k].click_time_ms && cs[k - 1].click_id < cs[k].click_id));
    }
  }
}

TEST(Attribute, DeterministicAcrossCallsAndInputOrder) {
  OfferTerms t = Terms(AttributionModel::kTimeDecay, Revshare(1234));
  t.half_life_ms = 5 * kHour;
  std::vector<ClickRecord> clicks = {Click("c-1", kT0), Click("c-2", kT0 + 3 * kHour),
                                     Click("c-3", kT0 + 7 * kHour), Click("c-4", kT0 + 7 * kHour)};
  const auto a = Attribute(t, Conv(987654), clicks);
  std::reverse(clicks.begin(), clicks.end());
  const auto b = Attribute(t, Conv(987654), clicks);
  EXPECT_EQ(a, b);
}

// ---- Reverse ----------------------------------------------------------------

TEST(Reverse, NegatesPayoutAndKeepsEverythingElse) {
  const OfferTerms t = Terms(AttributionModel::kLinear, Cpa(100, "USD"));
  const auto emitted = Attribute(
      t, Conv(0),
      std::vector<ClickRecord>{Click("c-1", kT0), Click("c-2", kT0 + 1), Click("c-3", kT0 + 2)});
  const auto reversed = Reverse(emitted);
  ASSERT_EQ(reversed.size(), emitted.size());
  for (size_t i = 0; i < emitted.size(); ++i) {
    Commission expected = emitted[i];
    expected.payout.minor = -emitted[i].payout.minor;
    expected.status = ConversionStatus::kReversed;
    EXPECT_EQ(reversed[i], expected);
  }
  EXPECT_THAT(Payouts(reversed), ElementsAre(-34, -33, -33));
  EXPECT_THAT(Reverse({}), SizeIs(0));
}

// ---- CommissionId -----------------------------------------------------------

TEST(CommissionId, GoldenValues) {
  // Pinned: ids are persisted downstream and recomputed by consumers, so
  // they must never change. The first is the worked example of
  // schemas/README.md, whose Python one-liner prints it; all were computed
  // with Python's hashlib over the documented encoding: SHA-256 of each
  // field preceded by its length as 4 big-endian bytes, first 16 bytes in
  // lowercase hex.
  EXPECT_EQ(CommissionId("off-1", "sale", "order-1", "c-1"), "1bd48c4c20fcfe73e092af031b52c963");
  EXPECT_EQ(CommissionId("", "", "", ""), "374708fff7719dd5979ec875d56cd228");
  EXPECT_EQ(CommissionId("off-42", "lead", "A-0000000000000001", "c-5573252a56606f93"),
            "28c80900339b437483a7c0e46df81a25");
}

TEST(CommissionId, FormatIs32LowercaseHexDigits) {
  const std::string id = CommissionId("off-1", "sale", "order-1", "c-1");
  ASSERT_EQ(id.size(), 32u);
  for (char c : id) EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << id;
}

TEST(CommissionId, LengthPrefixesMakeItInjective) {
  EXPECT_NE(CommissionId("ab", "c", "x", "y"), CommissionId("a", "bc", "x", "y"));
  EXPECT_NE(CommissionId("o", "g", "ab", "c"), CommissionId("o", "g", "a", "bc"));
  EXPECT_NE(CommissionId("o", "gc", "", "x"), CommissionId("o", "g", "c", "x"));
  EXPECT_NE(CommissionId("o", "g", "c", "c1"), CommissionId("o", "g", "c", "c2"));
  // Each field matters.
  const std::string base = CommissionId("o", "g", "c", "k");
  EXPECT_NE(base, CommissionId("O", "g", "c", "k"));
  EXPECT_NE(base, CommissionId("o", "G", "c", "k"));
  EXPECT_NE(base, CommissionId("o", "g", "C", "k"));
  EXPECT_NE(base, CommissionId("o", "g", "c", "K"));
}

TEST(CommissionId, DeterministicAndDistinctOverManyInputs) {
  std::set<std::string> seen;
  for (int i = 0; i < 20000; ++i) {
    const std::string conversion = absl::StrCat("order-", i / 4);
    const std::string click = absl::StrCat("c-", i % 4);
    const std::string id = CommissionId("off-1", "sale", conversion, click);
    EXPECT_EQ(id, CommissionId("off-1", "sale", conversion, click));
    EXPECT_TRUE(seen.insert(id).second) << id;
  }
}

}  // namespace
}  // namespace tally
