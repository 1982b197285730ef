#include "tools/verify/oracle.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "processor/commission/commission_engine.h"
#include "processor/offers/offers.h"

namespace tally::verify {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr int64_t kT0 = 1'767'225'600'000;  // 2026-01-01T00:00:00Z
constexpr int64_t kSecond = 1000;
constexpr int64_t kMinute = 60 * kSecond;
constexpr int64_t kHour = 60 * kMinute;
constexpr int64_t kDay = 24 * kHour;

// off-1: last_click, 1d window, sale pays 10 % revshare. off-ctit: 10s..1h
// CTIT bounds. off-lin: linear split of a 1000 EUR-cent CPA.
constexpr char kOffersYaml[] = R"(
defaults:
  attribution_window: 1d
  model: last_click
  payouts:
    sale: {revshare_bps: 1000}
    lead: {cpa: {amount: 250, currency: EUR}}
offers:
  - id: off-ctit
    ctit_min: 10s
    ctit_max: 1h
  - id: off-lin
    model: linear
    payouts:
      sale: {cpa: {amount: 1000, currency: EUR}}
)";

std::shared_ptr<const OffersCatalog> Catalog(const char* yaml = kOffersYaml) {
  auto catalog = OffersCatalog::FromYaml(yaml, "test.yaml");
  EXPECT_TRUE(catalog.ok()) << catalog.status();
  return *catalog;
}

Click MakeClick(std::string id, int64_t ts, std::string user = "u-1", std::string offer = "off-1",
                const char* ip = "11.0.0.1", std::string ua = "Mozilla/5.0") {
  Click c;
  c.click_id = std::move(id);
  c.event_time_ms = ts;
  c.affiliate_id = "aff-1";
  c.offer_id = std::move(offer);
  c.user_id = std::move(user);
  EXPECT_TRUE(IpAddress::Parse(ip, &c.ip)) << ip;
  c.user_agent = std::move(ua);
  return c;
}

Conversion MakeConversion(std::string id, int64_t ts, std::string click_id,
                          ConversionStatus status = ConversionStatus::kApproved,
                          std::string offer = "off-1", std::string user = "") {
  Conversion c;
  c.conversion_id = std::move(id);
  c.event_time_ms = ts;
  c.offer_id = std::move(offer);
  c.click_id = std::move(click_id);
  c.user_id = std::move(user);
  c.goal = "sale";
  c.amount.minor = 10'000;
  EXPECT_TRUE(Currency::Parse("EUR", &c.amount.currency));
  c.status = status;
  return c;
}

class OracleTest : public ::testing::Test {
 protected:
  OracleTest() : catalog_(Catalog()) {
    rules_.offers = catalog_.get();
    rules_.max_clicks_per_ip = 3;
    rules_.flood_window_ms = kMinute;
    rules_.pending_grace_ms = 10 * kMinute;
    // Stand-ins for FraudRules: the oracle only needs the verdicts.
    rules_.is_bot_user_agent = [](std::string_view ua) {
      std::string lower(ua);
      std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
      return absl::StrContains(lower, "googlebot") || absl::StrContains(lower, "curl/");
    };
    rules_.is_blocklisted = [](const IpAddress& ip) {
      const auto& b = ip.bytes();
      return ip.is_v4() && b[12] == 198 && b[13] == 51 && b[14] == 100;
    };
  }

  MessageRef AddClick(int32_t partition, Click click) {
    auto& list = input_.clicks[partition];
    list.push_back(ClickInput{static_cast<int64_t>(list.size()), std::nullopt, std::move(click)});
    return {"clicks", partition, list.back().offset};
  }
  MessageRef AddBadClick(int32_t partition, RejectReason reason) {
    auto& list = input_.clicks[partition];
    list.push_back(ClickInput{static_cast<int64_t>(list.size()), reason, Click{}});
    return {"clicks", partition, list.back().offset};
  }
  MessageRef AddConversion(int32_t partition, Conversion conversion) {
    auto& list = input_.conversions[partition];
    list.push_back(
        ConversionInput{static_cast<int64_t>(list.size()), std::nullopt, std::move(conversion)});
    return {"conversions", partition, list.back().offset};
  }
  MessageRef AddBadConversion(int32_t partition, RejectReason reason) {
    auto& list = input_.conversions[partition];
    list.push_back(ConversionInput{static_cast<int64_t>(list.size()), reason, Conversion{}});
    return {"conversions", partition, list.back().offset};
  }

  void Run() { out_ = RunOracle(input_, rules_, observed_); }

  std::optional<RejectReason> RejectedAs(const MessageRef& ref) const {
    std::optional<RejectReason> reason;
    for (const ExpectedRejection& r : out_.rejected) {
      if (r.ref == ref) {
        EXPECT_FALSE(reason.has_value()) << ref.ToString() << " rejected twice";
        reason = r.reason;
      }
    }
    return reason;
  }
  bool Accepted(const MessageRef& ref) const {
    return std::count(out_.accepted_clicks.begin(), out_.accepted_clicks.end(), ref) == 1;
  }
  bool Pending(const MessageRef& ref) const {
    return std::count(out_.pending.begin(), out_.pending.end(), ref) == 1;
  }
  std::vector<Commission> CommissionsOf(const MessageRef& ref) const {
    std::vector<Commission> out;
    for (const ExpectedCommission& c : out_.commissions) {
      if (c.source == ref) out.push_back(c.commission);
    }
    return out;
  }
  std::optional<UnattributedReason> UnattributedAs(const MessageRef& ref) const {
    std::optional<UnattributedReason> reason;
    for (const ExpectedUnattributed& u : out_.unattributed) {
      if (u.ref == ref) reason = u.reason;
    }
    return reason;
  }
  // Every input message has exactly one fate.
  void ExpectAccounted() const {
    std::vector<MessageRef> fates = out_.accepted_clicks;
    for (const ExpectedRejection& r : out_.rejected) fates.push_back(r.ref);
    for (const ExpectedUnattributed& u : out_.unattributed) fates.push_back(u.ref);
    for (const MessageRef& p : out_.pending) fates.push_back(p);
    std::vector<MessageRef> attributed;
    for (const ExpectedCommission& c : out_.commissions) attributed.push_back(c.source);
    std::sort(attributed.begin(), attributed.end());
    attributed.erase(std::unique(attributed.begin(), attributed.end()), attributed.end());
    fates.insert(fates.end(), attributed.begin(), attributed.end());
    std::sort(fates.begin(), fates.end());
    EXPECT_TRUE(std::adjacent_find(fates.begin(), fates.end()) == fates.end());
    EXPECT_EQ(fates.size(), out_.stats.clicks + out_.stats.conversions);
  }

  std::shared_ptr<const OffersCatalog> catalog_;
  OracleRules rules_;
  OracleInput input_;
  Observations observed_;
  OracleOutput out_;
};

TEST_F(OracleTest, DecodeFailuresAreRejectedWithTheCodecReason) {
  const MessageRef bad_click = AddBadClick(0, RejectReason::kWrongType);
  const MessageRef bad_conversion = AddBadConversion(0, RejectReason::kInvalidCurrency);
  Run();
  EXPECT_EQ(RejectedAs(bad_click), RejectReason::kWrongType);
  EXPECT_EQ(RejectedAs(bad_conversion), RejectReason::kInvalidCurrency);
  ExpectAccounted();
}

TEST_F(OracleTest, DuplicateClickFirstOccurrenceWinsAndPrecedesFraud) {
  const MessageRef first = AddClick(0, MakeClick("c-1", kT0));
  const MessageRef again = AddClick(0, MakeClick("c-1", kT0));
  // A re-sent bot click is a duplicate, not a bot: dedup comes first.
  const MessageRef bot =
      AddClick(1, MakeClick("c-2", kT0, "u-2", "off-1", "11.0.0.2", "Googlebot"));
  const MessageRef bot_again =
      AddClick(1, MakeClick("c-2", kT0, "u-2", "off-1", "11.0.0.2", "Googlebot"));
  Run();
  EXPECT_TRUE(Accepted(first));
  EXPECT_EQ(RejectedAs(again), RejectReason::kDuplicateClick);
  EXPECT_EQ(RejectedAs(bot), RejectReason::kBotUserAgent);
  EXPECT_EQ(RejectedAs(bot_again), RejectReason::kDuplicateClick);
  ExpectAccounted();
}

TEST_F(OracleTest, FraudRulesApplyInOrder) {
  // Bot and blocklisted: the bot rule comes first.
  const MessageRef both =
      AddClick(0, MakeClick("c-1", kT0, "u-1", "off-1", "198.51.100.7", "curl/8.0"));
  const MessageRef blocked = AddClick(0, MakeClick("c-2", kT0, "u-1", "off-1", "198.51.100.7"));
  const MessageRef bot =
      AddClick(0, MakeClick("c-3", kT0, "u-1", "off-1", "11.0.0.1", "GOOGLEBOT"));
  const MessageRef ok = AddClick(0, MakeClick("c-4", kT0, "u-1", "off-1", "11.0.0.1"));
  Run();
  EXPECT_EQ(RejectedAs(both), RejectReason::kBotUserAgent);
  EXPECT_EQ(RejectedAs(blocked), RejectReason::kIpBlocklisted);
  EXPECT_EQ(RejectedAs(bot), RejectReason::kBotUserAgent);
  EXPECT_TRUE(Accepted(ok));
  EXPECT_THAT(out_.problems, IsEmpty());
  ExpectAccounted();
}

TEST_F(OracleTest, FloodTakesTheObservedChoiceAndChecksItsSize) {
  // Five clicks of one IP in one window on two partitions, limit 3: any two
  // may be the excess. Bots do not count towards the flood.
  std::vector<MessageRef> flood;
  for (int i = 0; i < 5; ++i) {
    flood.push_back(AddClick(i % 2, MakeClick("c-" + std::to_string(i), kT0 + i * kSecond, "u-1",
                                              "off-1", "185.1.2.3")));
  }
  const MessageRef bot =
      AddClick(0, MakeClick("c-bot", kT0, "u-1", "off-1", "185.1.2.3", "Googlebot"));
  // The same IP in the next window: a new group of one.
  const MessageRef next =
      AddClick(1, MakeClick("c-next", kT0 + kMinute, "u-1", "off-1", "185.1.2.3"));
  observed_.flood_rejected = {flood[0], flood[3]};
  Run();
  EXPECT_EQ(RejectedAs(flood[0]), RejectReason::kIpClickFlood);
  EXPECT_EQ(RejectedAs(flood[3]), RejectReason::kIpClickFlood);
  EXPECT_TRUE(Accepted(flood[1]));
  EXPECT_TRUE(Accepted(flood[2]));
  EXPECT_TRUE(Accepted(flood[4]));
  EXPECT_EQ(RejectedAs(bot), RejectReason::kBotUserAgent);
  EXPECT_TRUE(Accepted(next));
  EXPECT_THAT(out_.problems, IsEmpty());
  EXPECT_EQ(out_.stats.flood_groups, 2u);
  EXPECT_EQ(out_.stats.flood_groups_over_limit, 1u);
  ExpectAccounted();

  // Too few flood rejections is a problem; so is one in a group under the limit.
  observed_.flood_rejected = {flood[0], next};
  Run();
  ASSERT_THAT(out_.problems, SizeIs(2));
  EXPECT_TRUE(absl::StrContains(out_.problems[0], "so 2 must be rejected"));
  EXPECT_TRUE(absl::StrContains(out_.problems[1], "so 0 must be rejected"));
}

TEST_F(OracleTest, FloodWindowsAreTumbling) {
  // 3 clicks at the end of one window and 3 at the start of the next: at
  // the limit in both, none is flood.
  const int64_t edge = (kT0 / kMinute + 1) * kMinute;
  for (int i = 1; i <= 3; ++i) {
    AddClick(0, MakeClick("a-" + std::to_string(i), edge - i, "u-1", "off-1", "185.9.9.9"));
    AddClick(0, MakeClick("b-" + std::to_string(i), edge + i - 1, "u-1", "off-1", "185.9.9.9"));
  }
  Run();
  EXPECT_THAT(out_.problems, IsEmpty());
  EXPECT_EQ(out_.stats.accepted_clicks, 6u);
  EXPECT_EQ(out_.stats.flood_groups, 2u);
}

TEST_F(OracleTest, ClickIdAttributionUsesTheCommissionEngine) {
  const Click click = MakeClick("c-1", kT0);
  AddClick(0, click);
  const Conversion conversion = MakeConversion("o-1", kT0 + kMinute, "c-1");
  const MessageRef ref = AddConversion(0, conversion);
  Run();
  const std::vector<Commission> got = CommissionsOf(ref);
  ASSERT_THAT(got, SizeIs(1));
  EXPECT_EQ(got[0].commission_id, CommissionId("off-1", "sale", "o-1", "c-1"));
  EXPECT_EQ(got[0].payout.minor, 1'000);  // 10 % of 100.00 EUR
  EXPECT_EQ(got[0].payout.currency.code(), "EUR");
  EXPECT_EQ(got[0].status, ConversionStatus::kApproved);
  EXPECT_EQ(got[0].click_count, 1);
  EXPECT_EQ(got[0].credit_ppm, 1'000'000);
  ExpectAccounted();
}

// The oracle states the payout basis from the terms itself (not from the
// engine), so a processor that writes a wrong basis, rate, base, override
// flag or offer_version is a mismatch.
TEST_F(OracleTest, ExpectedCommissionsStateTheirPayoutBasis) {
  const char* yaml = R"(
defaults:
  attribution_window: 1d
  payouts:
    sale: {revshare_bps: 1000}
  affiliate_payouts:
    aff-1: {sale: {cpa: {amount: 777, currency: CHF}}}
)";
  catalog_ = Catalog(yaml);
  rules_.offers = catalog_.get();
  AddClick(0, MakeClick("c-1", kT0));
  const MessageRef ref = AddConversion(0, MakeConversion("o-1", kT0 + kMinute, "c-1"));
  Run();
  const std::vector<Commission> got = CommissionsOf(ref);
  ASSERT_THAT(got, SizeIs(1));
  EXPECT_EQ(got[0].basis, PayoutBasis::kCpa);
  EXPECT_EQ(got[0].rate, 777);
  EXPECT_EQ(got[0].payout.minor, 777);
  EXPECT_EQ(got[0].base.minor, 10'000);
  EXPECT_EQ(got[0].base.currency.code(), "EUR");
  EXPECT_TRUE(got[0].override_applied);
  EXPECT_EQ(got[0].offer_version, OfferTermsVersion(*catalog_->Find("off-1")));
  EXPECT_EQ(got[0].offer_version.size(), 64u);
}

TEST_F(OracleTest, AttributionWindowIsInclusive) {
  AddClick(0, MakeClick("c-edge", kT0));
  AddClick(0, MakeClick("c-late", kT0));
  AddClick(0, MakeClick("c-after", kT0 + kHour));
  const MessageRef at_edge = AddConversion(0, MakeConversion("o-1", kT0 + kDay, "c-edge"));
  const MessageRef past = AddConversion(0, MakeConversion("o-2", kT0 + kDay + 1, "c-late"));
  // The click is after the conversion: negative delta.
  const MessageRef before = AddConversion(0, MakeConversion("o-3", kT0 + kHour - 1, "c-after"));
  const MessageRef same_ms = AddConversion(0, MakeConversion("o-4", kT0, "c-edge"));
  Run();
  EXPECT_THAT(CommissionsOf(at_edge), SizeIs(1));
  EXPECT_EQ(UnattributedAs(past), UnattributedReason::kOutsideWindow);
  EXPECT_EQ(UnattributedAs(before), UnattributedReason::kOutsideWindow);
  EXPECT_THAT(CommissionsOf(same_ms), SizeIs(1));
  ExpectAccounted();
}

TEST_F(OracleTest, ClickOfAnotherOfferIsNotFound) {
  AddClick(0, MakeClick("c-1", kT0, "u-1", "off-2"));
  const MessageRef ref = AddConversion(0, MakeConversion("o-1", kT0 + kMinute, "c-1"));
  const MessageRef no_id = AddConversion(0, MakeConversion("o-2", kT0 + kMinute, ""));
  Run();
  EXPECT_EQ(UnattributedAs(ref), UnattributedReason::kClickNotFound);
  EXPECT_EQ(UnattributedAs(no_id), UnattributedReason::kClickNotFound);
}

TEST_F(OracleTest, CtitBoundsAreInclusive) {
  for (const char* id : {"c-short", "c-min", "c-max", "c-long"}) {
    AddClick(0, MakeClick(id, kT0, "u-1", "off-ctit"));
  }
  const MessageRef too_short =
      AddConversion(0, MakeConversion("o-1", kT0 + 10 * kSecond - 1, "c-short",
                                      ConversionStatus::kApproved, "off-ctit"));
  const MessageRef at_min = AddConversion(
      0,
      MakeConversion("o-2", kT0 + 10 * kSecond, "c-min", ConversionStatus::kApproved, "off-ctit"));
  const MessageRef at_max = AddConversion(
      0, MakeConversion("o-3", kT0 + kHour, "c-max", ConversionStatus::kApproved, "off-ctit"));
  const MessageRef too_long = AddConversion(
      0, MakeConversion("o-4", kT0 + kHour + 1, "c-long", ConversionStatus::kApproved, "off-ctit"));
  // A status change of a CTIT-rejected conversion is rejected the same way.
  const MessageRef reversal =
      AddConversion(0, MakeConversion("o-1", kT0 + 10 * kSecond - 1, "c-short",
                                      ConversionStatus::kReversed, "off-ctit"));
  Run();
  EXPECT_EQ(RejectedAs(too_short), RejectReason::kCtitTooShort);
  EXPECT_THAT(CommissionsOf(at_min), SizeIs(1));
  EXPECT_THAT(CommissionsOf(at_max), SizeIs(1));
  EXPECT_EQ(RejectedAs(too_long), RejectReason::kCtitTooLong);
  EXPECT_EQ(RejectedAs(reversal), RejectReason::kCtitTooShort);
  ExpectAccounted();
}

TEST_F(OracleTest, PendingConversionIsResolvedByAClickBeforeTheGracePasses) {
  // The conversion's click comes after other clicks that do not yet take the
  // watermark past conv.ts + grace (= kT0 + 11 min).
  const MessageRef conversion = AddConversion(0, MakeConversion("o-1", kT0 + kMinute, "c-late"));
  AddClick(0, MakeClick("c-other", kT0 + 11 * kMinute, "u-2"));  // == ts + grace: not past
  AddClick(0, MakeClick("c-late", kT0));
  Run();
  EXPECT_THAT(CommissionsOf(conversion), SizeIs(1));
  ExpectAccounted();
}

TEST_F(OracleTest, PendingConversionExpiresWhenTheWatermarkPassesTheGrace) {
  const MessageRef conversion = AddConversion(0, MakeConversion("o-1", kT0 + kMinute, "c-late"));
  // A duplicate click is rejected but still moves the watermark past the grace.
  AddClick(0, MakeClick("c-x", kT0));
  AddClick(0, MakeClick("c-x", kT0 + 11 * kMinute + 1));
  AddClick(0, MakeClick("c-late", kT0));  // too late: the conversion has given up
  Run();
  EXPECT_EQ(UnattributedAs(conversion), UnattributedReason::kClickNotFound);
  ExpectAccounted();
}

TEST_F(OracleTest, UndecodableClicksDoNotMoveTheWatermark) {
  const MessageRef conversion = AddConversion(0, MakeConversion("o-1", kT0, "c-missing"));
  AddBadClick(0, RejectReason::kMalformedPayload);
  AddClick(0, MakeClick("c-other", kT0 + 10 * kMinute));
  Run();
  EXPECT_TRUE(Pending(conversion));
  ExpectAccounted();
}

TEST_F(OracleTest, ConversionStaysPendingUntilTheInputEndsWithItsStatusChanges) {
  const MessageRef first =
      AddConversion(3, MakeConversion("o-1", kT0, "c-1", ConversionStatus::kPending));
  const MessageRef second =
      AddConversion(3, MakeConversion("o-1", kT0, "c-1", ConversionStatus::kApproved));
  Run();
  EXPECT_TRUE(Pending(first));
  EXPECT_TRUE(Pending(second));
  EXPECT_EQ(out_.stats.pending_conversions, 1u);
  EXPECT_THAT(out_.commissions, IsEmpty());
  ExpectAccounted();
}

TEST_F(OracleTest, StatusChangesReEmitTheCommissionsWithTheirSign) {
  AddClick(0, MakeClick("c-1", kT0));
  const MessageRef pending =
      AddConversion(0, MakeConversion("o-1", kT0 + kMinute, "c-1", ConversionStatus::kPending));
  const MessageRef approved =
      AddConversion(0, MakeConversion("o-1", kT0 + kMinute, "c-1", ConversionStatus::kApproved));
  const MessageRef reversed =
      AddConversion(0, MakeConversion("o-1", kT0 + kMinute, "c-1", ConversionStatus::kReversed));
  const MessageRef again =
      AddConversion(0, MakeConversion("o-1", kT0 + kMinute, "c-1", ConversionStatus::kApproved));
  Run();
  EXPECT_EQ(RejectedAs(again), RejectReason::kDuplicateConversion);
  ASSERT_THAT(out_.commissions, SizeIs(3));
  std::vector<std::pair<ConversionStatus, int64_t>> seq;
  for (const ExpectedCommission& c : out_.commissions) {
    EXPECT_EQ(c.commission.commission_id, out_.commissions[0].commission.commission_id);
    seq.emplace_back(c.commission.status, c.commission.payout.minor);
  }
  EXPECT_THAT(seq, ElementsAre(std::pair(ConversionStatus::kPending, int64_t{1000}),
                               std::pair(ConversionStatus::kApproved, int64_t{1000}),
                               std::pair(ConversionStatus::kReversed, int64_t{-1000})));
  EXPECT_EQ(out_.commissions[0].source, pending);
  EXPECT_EQ(out_.commissions[1].source, approved);
  EXPECT_EQ(out_.commissions[2].source, reversed);
  ExpectAccounted();
}

TEST_F(OracleTest, ReversalThenApprovalPaysAgain) {
  AddClick(0, MakeClick("c-1", kT0));
  AddConversion(0, MakeConversion("o-1", kT0 + kMinute, "c-1", ConversionStatus::kApproved));
  AddConversion(0, MakeConversion("o-1", kT0 + kMinute, "c-1", ConversionStatus::kReversed));
  AddConversion(0, MakeConversion("o-1", kT0 + kMinute, "c-1", ConversionStatus::kPending));
  Run();
  ASSERT_THAT(out_.commissions, SizeIs(3));
  EXPECT_EQ(out_.commissions[1].commission.payout.minor, -1000);
  EXPECT_EQ(out_.commissions[2].commission.payout.minor, 1000);
  EXPECT_EQ(out_.commissions[2].commission.status, ConversionStatus::kPending);
}

TEST_F(OracleTest, StatusChangeWhilePendingIsAppliedAfterResolution) {
  // Both messages arrive before the click (out of order): the click resolves
  // the conversion, then the queued reversal follows.
  const MessageRef approved =
      AddConversion(0, MakeConversion("o-1", kT0 + kMinute, "c-1", ConversionStatus::kApproved));
  const MessageRef reversed =
      AddConversion(0, MakeConversion("o-1", kT0 + kMinute, "c-1", ConversionStatus::kReversed));
  AddClick(0, MakeClick("c-1", kT0));
  Run();
  ASSERT_THAT(out_.commissions, SizeIs(2));
  EXPECT_EQ(out_.commissions[0].source, approved);
  EXPECT_EQ(out_.commissions[0].commission.payout.minor, 1000);
  EXPECT_EQ(out_.commissions[1].source, reversed);
  EXPECT_EQ(out_.commissions[1].commission.payout.minor, -1000);
  ExpectAccounted();
}

TEST_F(OracleTest, StatusChangeOfAnUnattributedConversionIsUnattributed) {
  const MessageRef first = AddConversion(0, MakeConversion("o-1", kT0, "c-nowhere"));
  const MessageRef reversal =
      AddConversion(0, MakeConversion("o-1", kT0, "c-nowhere", ConversionStatus::kReversed));
  AddClick(0, MakeClick("c-far", kT0 + kHour));  // passes the grace
  Run();
  EXPECT_EQ(UnattributedAs(first), UnattributedReason::kClickNotFound);
  EXPECT_EQ(UnattributedAs(reversal), UnattributedReason::kClickNotFound);
  ASSERT_THAT(out_.unattributed, SizeIs(2));
  EXPECT_EQ(out_.unattributed[1].conversion.status, ConversionStatus::kReversed);
  ExpectAccounted();
}

TEST_F(OracleTest, UnknownReversalIsRejectedAndNotRemembered) {
  AddClick(0, MakeClick("c-1", kT0));
  const MessageRef reversal =
      AddConversion(0, MakeConversion("o-1", kT0 + kMinute, "c-1", ConversionStatus::kReversed));
  const MessageRef approval =
      AddConversion(0, MakeConversion("o-1", kT0 + kMinute, "c-1", ConversionStatus::kApproved));
  Run();
  EXPECT_EQ(RejectedAs(reversal), RejectReason::kUnknownConversion);
  EXPECT_THAT(CommissionsOf(approval), SizeIs(1));
  ExpectAccounted();
}

TEST_F(OracleTest, DuplicateConversionNeedsTheSameStatus) {
  AddClick(0, MakeClick("c-1", kT0));
  const MessageRef first = AddConversion(0, MakeConversion("o-1", kT0 + kMinute, "c-1"));
  const MessageRef dup = AddConversion(0, MakeConversion("o-1", kT0 + kMinute, "c-1"));
  // Another goal is another identity.
  Conversion lead = MakeConversion("o-1", kT0 + kMinute, "c-1");
  lead.goal = "lead";
  const MessageRef other = AddConversion(0, lead);
  Run();
  EXPECT_THAT(CommissionsOf(first), SizeIs(1));
  EXPECT_EQ(RejectedAs(dup), RejectReason::kDuplicateConversion);
  ASSERT_THAT(CommissionsOf(other), SizeIs(1));
  EXPECT_EQ(CommissionsOf(other)[0].payout.minor, 250);
  ExpectAccounted();
}

TEST_F(OracleTest, OfferWithoutTermsIsInvalidValue) {
  auto no_defaults = Catalog(R"(
offers:
  - id: off-1
    payouts:
      sale: {revshare_bps: 1000}
)");
  rules_.offers = no_defaults.get();
  AddClick(0, MakeClick("c-1", kT0, "u-1", "off-9"));
  const MessageRef first = AddConversion(
      0, MakeConversion("o-1", kT0 + kMinute, "c-1", ConversionStatus::kPending, "off-9"));
  const MessageRef second = AddConversion(
      0, MakeConversion("o-1", kT0 + kMinute, "c-1", ConversionStatus::kApproved, "off-9"));
  // An unknown reversal stays unknown_conversion even without terms.
  const MessageRef reversal = AddConversion(
      0, MakeConversion("o-2", kT0 + kMinute, "c-1", ConversionStatus::kReversed, "off-9"));
  Run();
  EXPECT_EQ(RejectedAs(first), RejectReason::kInvalidValue);
  EXPECT_EQ(RejectedAs(second), RejectReason::kInvalidValue);
  EXPECT_EQ(RejectedAs(reversal), RejectReason::kUnknownConversion);
  ExpectAccounted();
}

TEST_F(OracleTest, UserIdModeSplitsAcrossTheUsersClicks) {
  rules_.key = AttributionKey::kUserId;
  AddClick(0, MakeClick("c-1", kT0, "u-1", "off-lin"));
  AddClick(0, MakeClick("c-2", kT0 + kMinute, "u-1", "off-lin"));
  AddClick(0, MakeClick("c-3", kT0 + 2 * kMinute, "u-1", "off-lin"));
  AddClick(0, MakeClick("c-other-offer", kT0, "u-1", "off-1"));
  AddClick(0, MakeClick("c-other-user", kT0, "u-2", "off-lin"));
  const MessageRef conversion = AddConversion(
      0, MakeConversion("o-1", kT0 + kHour, "", ConversionStatus::kApproved, "off-lin", "u-1"));
  Run();
  // Until the clicks partition is past the conversion, it waits.
  EXPECT_THAT(CommissionsOf(conversion), SizeIs(0));
  EXPECT_EQ(out_.pending.size(), 1u);
  AddClick(0, MakeClick("c-pass", kT0 + kHour + 1, "u-9", "off-1"));
  Run();
  const std::vector<Commission> got = CommissionsOf(conversion);
  ASSERT_THAT(got, SizeIs(3));
  int64_t total = 0;
  for (const Commission& c : got) {
    EXPECT_EQ(c.click_count, 3);
    total += c.payout.minor;
  }
  EXPECT_EQ(total, 1000);
  EXPECT_EQ(got[0].click_id, "c-1");
  EXPECT_EQ(got[2].click_id, "c-3");
  EXPECT_EQ(out_.stats.interleaving_dependent, 1u);  // 1, 2 or 3 clicks seen
  EXPECT_EQ(out_.stats.decided_by_observation, 0u);
  ExpectAccounted();
}

// The watermark trails the max click time by max_click_lateness: a click
// out of order within the bound is still a first candidate, and one behind
// the watermark when it arrives is not (README, Semantics).
TEST_F(OracleTest, UserIdModeCandidatesAreTheClicksThatArrivedBeforeTheWatermarkPassed) {
  rules_.key = AttributionKey::kUserId;
  rules_.max_click_lateness_ms = 30 * kSecond;
  const int64_t conv = kT0 + kHour;
  AddClick(0, MakeClick("c-1", conv - 10 * kMinute, "u-1", "off-lin"));
  AddClick(0, MakeClick("c-ahead", conv + 20 * kSecond, "u-9", "off-1"));  // not past conv - L
  AddClick(0, MakeClick("c-2", conv - 5 * kSecond, "u-1", "off-lin"));     // disorder within L
  AddClick(0, MakeClick("c-pass", conv + 31 * kSecond, "u-9", "off-1"));   // passes conv
  AddClick(0, MakeClick("c-late", conv - 2 * kMinute, "u-1", "off-lin"));  // behind it
  AddClick(0, MakeClick("c-end", conv + kHour, "u-9", "off-1"));
  const MessageRef conversion = AddConversion(
      0, MakeConversion("o-1", conv, "", ConversionStatus::kApproved, "off-lin", "u-1"));
  Run();
  const std::vector<Commission> got = CommissionsOf(conversion);
  ASSERT_THAT(got, SizeIs(2));
  EXPECT_EQ(got[0].click_id, "c-1");
  EXPECT_EQ(got[1].click_id, "c-2");
  ExpectAccounted();
}

// Without first candidates, every in-window click that arrived before the
// grace passed counts, together.
TEST_F(OracleTest, UserIdModeLateCandidatesCountTogetherUntilTheGraceEnds) {
  rules_.key = AttributionKey::kUserId;
  const int64_t conv = kT0 + kHour;
  AddClick(0, MakeClick("c-pass", conv + 1, "u-9", "off-1"));
  AddClick(0, MakeClick("c-late1", conv - kMinute, "u-1", "off-lin"));
  AddClick(0, MakeClick("c-late2", conv - 2 * kMinute, "u-1", "off-lin"));
  AddClick(0, MakeClick("c-grace", conv + 10 * kMinute + 1, "u-9", "off-1"));
  AddClick(0, MakeClick("c-too-late", conv - 3 * kMinute, "u-1", "off-lin"));
  const MessageRef conversion = AddConversion(
      0, MakeConversion("o-1", conv, "", ConversionStatus::kApproved, "off-lin", "u-1"));
  Run();
  const std::vector<Commission> got = CommissionsOf(conversion);
  ASSERT_THAT(got, SizeIs(2));
  EXPECT_EQ(got[0].click_id, "c-late2");  // ordered by event time
  EXPECT_EQ(got[1].click_id, "c-late1");
  ExpectAccounted();
}

TEST_F(OracleTest, UserIdModeTakesTheObservedCandidatePrefix) {
  rules_.key = AttributionKey::kUserId;
  AddClick(0, MakeClick("c-1", kT0, "u-1", "off-lin"));
  AddClick(0, MakeClick("c-2", kT0 + kMinute, "u-1", "off-lin"));
  const MessageRef conversion = AddConversion(
      0, MakeConversion("o-1", kT0 + kHour, "", ConversionStatus::kApproved, "off-lin", "u-1"));
  AddClick(0, MakeClick("c-pass", kT0 + kHour + 1, "u-9", "off-1"));
  rules_.accept_observed_candidate_prefix = true;
  // The processor evaluated before c-2 was in its state.
  observed_.commission_ids[{"off-lin", "sale", "o-1"}] = {
      CommissionId("off-lin", "sale", "o-1", "c-1")};
  Run();
  const std::vector<Commission> got = CommissionsOf(conversion);
  ASSERT_THAT(got, SizeIs(1));
  EXPECT_EQ(got[0].click_id, "c-1");
  EXPECT_EQ(got[0].payout.minor, 1000);
  EXPECT_EQ(out_.stats.decided_by_observation, 1u);

  // Strict: all candidates are expected whatever was observed.
  rules_.accept_observed_candidate_prefix = false;
  Run();
  EXPECT_THAT(CommissionsOf(conversion), SizeIs(2));
  EXPECT_EQ(out_.stats.interleaving_dependent, 1u);
  EXPECT_EQ(out_.stats.decided_by_observation, 0u);
}

TEST_F(OracleTest, UserIdModeCtitDependsOnTheCandidatesSeen) {
  // With only c-1 the CTIT is 20 s (ok); with c-2 as well it is 5 s (too
  // short). Either is correct; the observed rejection is taken.
  rules_.key = AttributionKey::kUserId;
  AddClick(0, MakeClick("c-1", kT0, "u-1", "off-ctit"));
  AddClick(0, MakeClick("c-2", kT0 + 15 * kSecond, "u-1", "off-ctit"));
  const MessageRef conversion =
      AddConversion(0, MakeConversion("o-1", kT0 + 20 * kSecond, "", ConversionStatus::kApproved,
                                      "off-ctit", "u-1"));
  AddClick(0, MakeClick("c-pass", kT0 + 21 * kSecond, "u-9", "off-1"));
  Run();
  EXPECT_EQ(RejectedAs(conversion), RejectReason::kCtitTooShort);  // default: all candidates
  rules_.accept_observed_candidate_prefix = true;
  observed_.commission_ids[{"off-ctit", "sale", "o-1"}] = {
      CommissionId("off-ctit", "sale", "o-1", "c-1")};
  Run();
  EXPECT_THAT(CommissionsOf(conversion), SizeIs(1));
  ExpectAccounted();
}

TEST_F(OracleTest, UserIdModeUnattributedReasons) {
  rules_.key = AttributionKey::kUserId;
  AddClick(0, MakeClick("c-old", kT0, "u-1"));
  const MessageRef outside = AddConversion(
      0, MakeConversion("o-1", kT0 + 2 * kDay, "", ConversionStatus::kApproved, "off-1", "u-1"));
  const MessageRef nobody = AddConversion(
      0, MakeConversion("o-2", kT0 + kMinute, "", ConversionStatus::kApproved, "off-1", "u-9"));
  const MessageRef no_user = AddConversion(
      0, MakeConversion("o-3", kT0 + kMinute, "c-old", ConversionStatus::kApproved, "off-1", ""));
  // A click of the user after the conversion does not fit; the conversion
  // waits for another until the input ends.
  AddClick(1, MakeClick("c-after", kT0 + kMinute, "u-3"));
  const MessageRef waiting =
      AddConversion(1, MakeConversion("o-4", kT0, "", ConversionStatus::kApproved, "off-1", "u-3"));
  AddClick(0, MakeClick("c-far", kT0 + 3 * kDay, "u-5"));  // partition 0 passes every grace
  Run();
  EXPECT_EQ(UnattributedAs(outside), UnattributedReason::kOutsideWindow);
  EXPECT_EQ(UnattributedAs(nobody), UnattributedReason::kNoUserClicks);
  EXPECT_EQ(UnattributedAs(no_user), UnattributedReason::kNoUserClicks);
  EXPECT_TRUE(Pending(waiting));
  ExpectAccounted();
}

TEST_F(OracleTest, PartitionsAreJoinedByNumber) {
  AddClick(1, MakeClick("c-1", kT0));
  AddClick(0, MakeClick("c-far", kT0 + kHour));
  // The click is on partition 1, the conversion on 0: never found there.
  const MessageRef conversion = AddConversion(0, MakeConversion("o-1", kT0 + kMinute, "c-1"));
  Run();
  EXPECT_EQ(UnattributedAs(conversion), UnattributedReason::kClickNotFound);
}

}  // namespace
}  // namespace tally::verify
