#include "processor/join/joiner.h"

#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "processor/dedup/dedup_key.h"
#include "tests/join/test_dir.h"

namespace tally {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr TimestampMs kT0 = 1'700'000'000'000;
constexpr int64_t kSecond = 1'000;
constexpr int64_t kMinute = 60'000;
constexpr int64_t kHour = 3'600'000;
constexpr int64_t kGrace = 10 * kMinute;

constexpr std::string_view kOffersYaml = R"(
offers:
  - id: off-1
    attribution_window: 1h
    model: last_click
    payouts:
      sale: {cpa: {amount: 1000, currency: EUR}}
  - id: off-ctit
    attribution_window: 1h
    ctit_min: 10s
    ctit_max: 30m
    payouts:
      sale: {cpa: {amount: 500, currency: EUR}}
  - id: off-lin
    attribution_window: 1h
    model: linear
    payouts:
      sale: {cpa: {amount: 1000, currency: EUR}}
)";

// Everything the joiner emitted, in order, with owned copies of the
// sources.
struct Output {
  enum class Kind { kCommission, kReject, kUnattributed, kRetained };
  Kind kind = Kind::kRetained;
  Commission commission;
  RejectReason reason = RejectReason::kMalformedPayload;
  std::string detail;
  UnattributedConversion unattributed;
  StoredSource source;
};

class RecordingSink : public JoinSink {
 public:
  void Commission(const tally::Commission& c) override {
    Output o;
    o.kind = Output::Kind::kCommission;
    o.commission = c;
    out.push_back(std::move(o));
  }
  void Reject(const SourceRef& source, RejectReason reason, std::string_view detail) override {
    Output o;
    o.kind = Output::Kind::kReject;
    o.reason = reason;
    o.detail = std::string(detail);
    o.source = Copy(source);
    out.push_back(std::move(o));
  }
  void Unattributed(const UnattributedConversion& u, const SourceRef& source) override {
    Output o;
    o.kind = Output::Kind::kUnattributed;
    o.unattributed = u;
    o.source = Copy(source);
    out.push_back(std::move(o));
  }
  void Retained(const SourceRef& source) override {
    Output o;
    o.kind = Output::Kind::kRetained;
    o.source = Copy(source);
    out.push_back(std::move(o));
  }
  std::vector<Output> Take() { return std::exchange(out, {}); }

  std::vector<Output> out;

 private:
  static StoredSource Copy(const SourceRef& s) {
    return {std::string(s.topic), s.partition, s.offset, std::string(s.key), std::string(s.value)};
  }
};

Money Eur(int64_t minor) {
  Money m;
  m.minor = minor;
  EXPECT_TRUE(Currency::Parse("EUR", &m.currency));
  return m;
}

Click MakeClick(std::string id, TimestampMs t, std::string offer = "off-1",
                std::string user = "u1") {
  Click c;
  c.click_id = std::move(id);
  c.event_time_ms = t;
  c.affiliate_id = "aff-" + c.click_id;
  c.offer_id = std::move(offer);
  c.user_id = std::move(user);
  c.sub_ids = {"s1"};
  return c;
}

Conversion MakeConv(std::string id, TimestampMs t, std::string click_id,
                    ConversionStatus status = ConversionStatus::kPending,
                    std::string offer = "off-1", std::string user = "") {
  Conversion c;
  c.conversion_id = std::move(id);
  c.event_time_ms = t;
  c.offer_id = std::move(offer);
  c.click_id = std::move(click_id);
  c.user_id = std::move(user);
  c.goal = "sale";
  c.amount = Eur(10'000);
  c.status = status;
  return c;
}

class JoinerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto offers = OffersCatalog::FromYaml(kOffersYaml, "test.yaml");
    ASSERT_TRUE(offers.ok()) << offers.status();
    offers_ = *offers;
    Open();
  }

  void Open() {
    joiner_.reset();
    stores_.reset();
    StateStoreOptions o;
    o.dir = dir_.path();
    o.block_cache_bytes = 8 << 20;
    o.write_buffer_bytes = 2 << 20;
    o.click_retention_ms = kHour + kGrace;
    auto stores = StateStores::Create(o);
    ASSERT_TRUE(stores.ok()) << stores.status();
    stores_ = *std::move(stores);
    auto store = stores_->Open(0);
    ASSERT_TRUE(store.ok()) << store.status();
    joiner_ = std::make_unique<Joiner>(*store, offers_.get(), options_);
  }

  // Each event gets the next offset of its topic and recognisable bytes.
  void Click(const tally::Click& click) {
    const int64_t offset = click_offset_++;
    const std::string value = "click-bytes-" + std::to_string(offset);
    ASSERT_TRUE(
        joiner_->OnClick(click, SourceRef{"clicks", 0, offset, click.click_id, value}, sink_).ok());
  }
  void Conv(const Conversion& conv) {
    const int64_t offset = conv_offset_++;
    const std::string value = "conv-bytes-" + std::to_string(offset);
    ASSERT_TRUE(joiner_
                    ->OnConversion(
                        conv, SourceRef{"conversions", 0, offset, conv.conversion_id, value}, sink_)
                    .ok());
  }
  void Advance() { ASSERT_TRUE(joiner_->Advance(sink_).ok()); }
  void Commit() {
    ASSERT_TRUE(joiner_->Commit({{"clicks", click_offset_}, {"conversions", conv_offset_}}).ok());
  }

  // conversions == attributed + rejected + unattributed + pending, and
  // pending == resolved-later + still pending (`still` messages).
  void ExpectAccounting(uint64_t still) {
    const JoinCounters& c = joiner_->counters();
    EXPECT_EQ(c.conversions, c.conversions_attributed + c.conversions_rejected +
                                 c.conversions_unattributed + c.conversions_pending);
    EXPECT_EQ(c.conversions_pending,
              c.pending_attributed + c.pending_rejected + c.pending_unattributed + still);
  }

  testing::TestDir dir_;
  std::shared_ptr<const OffersCatalog> offers_;
  JoinOptions options_;
  std::unique_ptr<StateStores> stores_;
  std::unique_ptr<Joiner> joiner_;
  RecordingSink sink_;
  int64_t click_offset_ = 0;
  int64_t conv_offset_ = 0;
};

TEST_F(JoinerTest, ClickIsRetainedAndConversionAttributed) {
  Click(MakeClick("c1", kT0));
  auto out = sink_.Take();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, Output::Kind::kRetained);
  EXPECT_EQ(out[0].source.topic, "clicks");

  Conv(MakeConv("o1", kT0 + kMinute, "c1", ConversionStatus::kApproved));
  out = sink_.Take();
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].kind, Output::Kind::kCommission);
  const Commission& c = out[0].commission;
  EXPECT_EQ(c.click_id, "c1");
  EXPECT_EQ(c.affiliate_id, "aff-c1");
  EXPECT_EQ(c.conversion_id, "o1");
  EXPECT_EQ(c.payout, Eur(1000));
  EXPECT_EQ(c.status, ConversionStatus::kApproved);
  EXPECT_EQ(c.commission_id, CommissionId("off-1", "sale", "o1", "c1"));
  EXPECT_EQ(joiner_->counters().clicks, 1u);
  EXPECT_EQ(joiner_->counters().conversions_attributed, 1u);
  EXPECT_EQ(joiner_->counters().commissions, 1u);
  ExpectAccounting(0);
}

TEST_F(JoinerTest, WindowEdges) {
  Click(MakeClick("edge", kT0));
  Click(MakeClick("over", kT0));
  sink_.Take();
  // Exactly the window: credited.
  Conv(MakeConv("o1", kT0 + kHour, "edge"));
  auto out = sink_.Take();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, Output::Kind::kCommission);
  // One millisecond more: outside_window, at once (the named click is here
  // and click ids are unique: no later click can change the outcome).
  Conv(MakeConv("o2", kT0 + kHour + 1, "over"));
  out = sink_.Take();
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].kind, Output::Kind::kUnattributed);
  EXPECT_EQ(out[0].unattributed.reason, UnattributedReason::kOutsideWindow);
  EXPECT_EQ(out[0].unattributed.conversion.conversion_id, "o2");
  EXPECT_EQ(out[0].unattributed.detail,
            "click 'over' is 3600001 ms before the conversion, window 3600000 ms");
  EXPECT_EQ(joiner_->store().pending_count(), 0);
  ExpectAccounting(0);
}

TEST_F(JoinerTest, ClickAfterTheConversionIsNotACandidate) {
  Click(MakeClick("late", kT0 + 5 * kSecond));
  sink_.Take();
  Conv(MakeConv("o1", kT0, "late"));
  auto out = sink_.Take();
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].kind, Output::Kind::kUnattributed);
  EXPECT_EQ(out[0].unattributed.reason, UnattributedReason::kOutsideWindow);
  EXPECT_EQ(out[0].unattributed.detail, "click 'late' is 5000 ms after the conversion");
}

TEST_F(JoinerTest, PendingConversionWhoseClickArrivesButDoesNotFit) {
  Conv(MakeConv("o1", kT0, "after"));
  Conv(MakeConv("o2", kT0, "elsewhere"));
  sink_.Take();
  Click(MakeClick("after", kT0 + kSecond));
  Click(MakeClick("elsewhere", kT0 - kSecond, "off-lin"));
  auto out = sink_.Take();
  ASSERT_EQ(out.size(), 4u);
  ASSERT_EQ(out[1].kind, Output::Kind::kUnattributed);
  EXPECT_EQ(out[1].unattributed.reason, UnattributedReason::kOutsideWindow);
  EXPECT_EQ(out[1].source.value, "conv-bytes-0");
  ASSERT_EQ(out[3].kind, Output::Kind::kUnattributed);
  EXPECT_EQ(out[3].unattributed.reason, UnattributedReason::kClickNotFound);
  EXPECT_EQ(out[3].unattributed.detail, "click 'elsewhere' is for offer 'off-lin'");
  EXPECT_EQ(joiner_->store().pending_count(), 0);
  EXPECT_EQ(joiner_->counters().pending_unattributed, 2u);
  ExpectAccounting(0);
}

TEST_F(JoinerTest, ConversionBeforeClickIsResolvedWhenTheClickArrives) {
  Conv(MakeConv("o1", kT0 + kMinute, "c1"));
  auto out = sink_.Take();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, Output::Kind::kRetained);
  EXPECT_EQ(joiner_->store().pending_count(), 1);
  ExpectAccounting(1);

  Click(MakeClick("other", kT0));  // another click id: nothing happens
  EXPECT_EQ(sink_.Take().size(), 1u);
  Click(MakeClick("c1", kT0));
  out = sink_.Take();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].kind, Output::Kind::kRetained);
  ASSERT_EQ(out[1].kind, Output::Kind::kCommission);
  EXPECT_EQ(out[1].commission.click_id, "c1");
  EXPECT_EQ(joiner_->store().pending_count(), 0);
  EXPECT_EQ(joiner_->counters().pending_attributed, 1u);
  ExpectAccounting(0);
}

TEST_F(JoinerTest, PendingGraceExpiresByClickWatermark) {
  Conv(MakeConv("o1", kT0, "missing"));
  sink_.Take();
  // Wall clock is irrelevant; only click event time counts. A conversion
  // watermark far ahead changes nothing.
  Conv(MakeConv("o2", kT0 + 5 * kHour, "c-x"));
  sink_.Take();
  ASSERT_TRUE(
      joiner_->ObserveClickTime(kT0 + kGrace, sink_).ok());  // exactly the grace: still waits
  Advance();
  EXPECT_TRUE(sink_.Take().empty());
  Click(MakeClick("unrelated", kT0 + kGrace + 1));
  Advance();
  auto out = sink_.Take();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].kind, Output::Kind::kRetained);
  ASSERT_EQ(out[1].kind, Output::Kind::kUnattributed);
  EXPECT_EQ(out[1].unattributed.reason, UnattributedReason::kClickNotFound);
  EXPECT_EQ(out[1].unattributed.detail, "click 'missing' not found");
  // The original bytes travel with it.
  EXPECT_EQ(out[1].source.topic, "conversions");
  EXPECT_EQ(out[1].source.offset, 0);
  EXPECT_EQ(out[1].source.value, "conv-bytes-0");
  EXPECT_EQ(joiner_->store().pending_count(), 1);  // o2 still waits
  ExpectAccounting(1);
}

TEST_F(JoinerTest, GraceAlreadyPassedOnArrivalResolvesAtOnce) {
  Click(MakeClick("c-late", kT0 + kHour));
  sink_.Take();
  Conv(MakeConv("o1", kT0, "nope"));
  auto out = sink_.Take();
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].kind, Output::Kind::kUnattributed);
  EXPECT_EQ(out[0].unattributed.reason, UnattributedReason::kClickNotFound);
  EXPECT_EQ(joiner_->counters().conversions_unattributed, 1u);
  EXPECT_EQ(joiner_->store().pending_count(), 0);
}

TEST_F(JoinerTest, ClickOfAnotherOfferIsClickNotFound) {
  Click(MakeClick("c1", kT0, "off-lin"));
  sink_.Take();
  Conv(MakeConv("o1", kT0 + kMinute, "c1"));  // offer off-1
  auto out = sink_.Take();
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].kind, Output::Kind::kUnattributed);
  EXPECT_EQ(out[0].unattributed.reason, UnattributedReason::kClickNotFound);
  EXPECT_EQ(out[0].unattributed.detail, "click 'c1' is for offer 'off-lin'");
}

TEST_F(JoinerTest, MissingClickIdCannotWait) {
  Conv(MakeConv("o1", kT0, "", ConversionStatus::kPending, "off-1", "u1"));
  auto out = sink_.Take();
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].kind, Output::Kind::kUnattributed);
  EXPECT_EQ(out[0].unattributed.detail, "conversion has no click_id");
}

TEST_F(JoinerTest, CtitBounds) {
  for (const auto& [id, delta] :
       std::vector<std::pair<std::string, int64_t>>{{"short", 10 * kSecond - 1},
                                                    {"min", 10 * kSecond},
                                                    {"max", 30 * kMinute},
                                                    {"long", 30 * kMinute + 1}}) {
    Click(MakeClick("c-" + id, kT0, "off-ctit"));
    Conv(MakeConv(id, kT0 + delta, "c-" + id, ConversionStatus::kPending, "off-ctit"));
  }
  auto out = sink_.Take();
  ASSERT_EQ(out.size(), 8u);
  ASSERT_EQ(out[1].kind, Output::Kind::kReject);
  EXPECT_EQ(out[1].reason, RejectReason::kCtitTooShort);
  EXPECT_EQ(out[1].source.value, "conv-bytes-0");
  EXPECT_EQ(out[3].kind, Output::Kind::kCommission);
  EXPECT_EQ(out[5].kind, Output::Kind::kCommission);
  ASSERT_EQ(out[7].kind, Output::Kind::kReject);
  EXPECT_EQ(out[7].reason, RejectReason::kCtitTooLong);
  EXPECT_THAT(out[7].detail, HasSubstr("1800001 ms"));

  // A status change of a rejected conversion is rejected the same way.
  Conv(MakeConv("short", kT0 + 10 * kSecond - 1, "c-short", ConversionStatus::kApproved,
                "off-ctit"));
  out = sink_.Take();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, Output::Kind::kReject);
  EXPECT_EQ(out[0].reason, RejectReason::kCtitTooShort);
  EXPECT_EQ(out[0].source.offset, 4);  // the new message's own source
  EXPECT_EQ(joiner_->counters().conversions_rejected, 3u);
  ExpectAccounting(0);
}

TEST_F(JoinerTest, CtitIsMeasuredFromTheLatestCandidate) {
  options_.mode = AttributionMode::kUserId;
  Open();
  Click(MakeClick("early", kT0, "off-ctit", "u1"));
  Click(MakeClick("recent", kT0 + 20 * kMinute, "off-ctit", "u1"));
  sink_.Take();
  // 25 min after the recent click (OK), 45 min after the early one (too long).
  Conv(MakeConv("o1", kT0 + 45 * kMinute, "", ConversionStatus::kPending, "off-ctit", "u1"));
  auto out = sink_.Take();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, Output::Kind::kRetained);  // waits for the clicks input
  ASSERT_TRUE(joiner_->ObserveClickTime(kT0 + 45 * kMinute + 1, sink_).ok());
  Advance();
  out = sink_.Take();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, Output::Kind::kCommission);
}

TEST_F(JoinerTest, StatusChangesReemitAndReversalNegates) {
  Click(MakeClick("c1", kT0));
  Conv(MakeConv("o1", kT0 + kMinute, "c1", ConversionStatus::kPending));
  Conv(MakeConv("o1", kT0 + 2 * kMinute, "c1", ConversionStatus::kApproved));
  Conv(MakeConv("o1", kT0 + 3 * kMinute, "c1", ConversionStatus::kReversed));
  Conv(MakeConv("o1", kT0 + 4 * kMinute, "c1", ConversionStatus::kApproved));  // un-reversal
  auto out = sink_.Take();
  ASSERT_EQ(out.size(), 5u);
  std::vector<int64_t> payouts;
  std::vector<ConversionStatus> statuses;
  for (size_t i = 1; i < out.size(); ++i) {
    ASSERT_EQ(out[i].kind, Output::Kind::kCommission);
    EXPECT_EQ(out[i].commission.commission_id, out[1].commission.commission_id);
    EXPECT_EQ(out[i].commission.conversion_time_ms, kT0 + kMinute);  // as first attributed
    payouts.push_back(out[i].commission.payout.minor);
    statuses.push_back(out[i].commission.status);
  }
  EXPECT_THAT(payouts, ElementsAre(1000, 1000, -1000, 1000));
  EXPECT_THAT(statuses, ElementsAre(ConversionStatus::kPending, ConversionStatus::kApproved,
                                    ConversionStatus::kReversed, ConversionStatus::kApproved));
  EXPECT_EQ(joiner_->counters().conversions_attributed, 4u);
  ExpectAccounting(0);
}

// Upgrade from v1.0: a commission a v1.0 build emitted is in the ledger
// with its v1.0 id (another hash of the same fields) and no basis. Its
// reversal after the upgrade must carry that id, not a recomputed one, or
// downstream cannot match the reversal to the commission it takes back and
// the affiliate stays paid. (A version 1 ledger value decodes to exactly
// this entry: CodecTest.LegacyLedgerDecodesWithItsIdAndUnknownBasis.)
TEST_F(JoinerTest, ReversalOfACommissionEmittedBeforeV11CarriesItsLegacyId) {
  // The v1.0 CommissionId("off-1", "sale", "order-1", "c-1") (its pinned
  // golden value).
  const std::string legacy_id = "6aa9175622b6d17029683d006ef1757b";
  ASSERT_NE(legacy_id, CommissionId("off-1", "sale", "order-1", "c-1"));
  const ConversionIdentity identity{"off-1", "sale", "order-1"};
  LedgerEntry entry;
  entry.conversion_time_ms = kT0 + kMinute;
  entry.status = ConversionStatus::kApproved;
  entry.outcome = LedgerOutcome::kAttributed;
  Commission old;
  old.commission_id = legacy_id;
  old.conversion_id = "order-1";
  old.offer_id = "off-1";
  old.goal = "sale";
  old.click_id = "c-1";
  old.affiliate_id = "aff-c-1";
  old.click_time_ms = kT0;
  old.conversion_time_ms = kT0 + kMinute;
  old.payout = Eur(900);  // the terms of the time, not today's 1000
  old.status = ConversionStatus::kApproved;
  entry.commissions = {old};
  auto store = stores_->Open(0);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->PutLedger(identity, entry).ok());
  ASSERT_TRUE((*store)->Commit({{"clicks", 0}, {"conversions", 0}}).ok());

  Conv(MakeConv("order-1", kT0 + 2 * kMinute, "c-1", ConversionStatus::kReversed));
  auto out = sink_.Take();
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].kind, Output::Kind::kCommission);
  const Commission& reversal = out[0].commission;
  EXPECT_EQ(reversal.commission_id, legacy_id);
  EXPECT_EQ(reversal.payout, Eur(-900));
  EXPECT_EQ(reversal.status, ConversionStatus::kReversed);
  EXPECT_EQ(reversal.basis, PayoutBasis::kUnknown);  // written without basis members

  // A conversion first seen after the upgrade gets the v1.1 id.
  Click(MakeClick("c-2", kT0));
  Conv(MakeConv("order-2", kT0 + kMinute, "c-2", ConversionStatus::kApproved));
  out = sink_.Take();
  ASSERT_EQ(out.size(), 2u);
  ASSERT_EQ(out[1].kind, Output::Kind::kCommission);
  EXPECT_EQ(out[1].commission.commission_id, CommissionId("off-1", "sale", "order-2", "c-2"));
  EXPECT_EQ(out[1].commission.basis, PayoutBasis::kCpa);
}

TEST_F(JoinerTest, UnknownConversionReversal) {
  Conv(MakeConv("ghost", kT0, "c1", ConversionStatus::kReversed));
  auto out = sink_.Take();
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].kind, Output::Kind::kReject);
  EXPECT_EQ(out[0].reason, RejectReason::kUnknownConversion);
  EXPECT_EQ(out[0].detail, "a status change for an unknown conversion");
  EXPECT_EQ(out[0].source.value, "conv-bytes-0");
  // Not recorded: the identity's first real message is handled normally.
  Click(MakeClick("c1", kT0));
  Conv(MakeConv("ghost", kT0 + 1, "c1", ConversionStatus::kApproved));
  out = sink_.Take();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1].kind, Output::Kind::kCommission);
}

TEST_F(JoinerTest, OfferWithoutTermsIsRejected) {
  Click(MakeClick("c1", kT0, "off-unknown"));
  Conv(MakeConv("o1", kT0 + 1, "c1", ConversionStatus::kPending, "off-unknown"));
  Conv(MakeConv("o1", kT0 + 2, "c1", ConversionStatus::kApproved, "off-unknown"));
  auto out = sink_.Take();
  ASSERT_EQ(out.size(), 3u);
  for (int i : {1, 2}) {
    ASSERT_EQ(out[i].kind, Output::Kind::kReject);
    EXPECT_EQ(out[i].reason, RejectReason::kInvalidValue);
    EXPECT_EQ(out[i].detail, "offer 'off-unknown' has no configured terms");
  }
  ExpectAccounting(0);
}

TEST_F(JoinerTest, StatusChangeOfUnattributedConversionIsUnattributed) {
  Conv(MakeConv("o1", kT0, "missing"));
  ASSERT_TRUE(joiner_->ObserveClickTime(kT0 + kGrace + 1, sink_).ok());
  Advance();
  Conv(MakeConv("o1", kT0 + kHour, "missing", ConversionStatus::kApproved));
  auto out = sink_.Take();
  ASSERT_EQ(out.size(), 3u);
  ASSERT_EQ(out[2].kind, Output::Kind::kUnattributed);
  EXPECT_EQ(out[2].unattributed.reason, UnattributedReason::kClickNotFound);
  EXPECT_EQ(out[2].unattributed.detail, out[1].unattributed.detail);
  EXPECT_EQ(out[2].unattributed.conversion.status, ConversionStatus::kApproved);
  EXPECT_EQ(out[2].source.offset, 1);
  ExpectAccounting(0);
}

TEST_F(JoinerTest, StatusChangesWhilePendingAreQueuedAndAppliedInOrder) {
  Conv(MakeConv("o1", kT0 + kMinute, "c1", ConversionStatus::kPending));
  Conv(MakeConv("o1", kT0 + 2 * kMinute, "c1", ConversionStatus::kApproved));
  Conv(MakeConv("o1", kT0 + 3 * kMinute, "c1", ConversionStatus::kReversed));
  auto out = sink_.Take();
  ASSERT_EQ(out.size(), 3u);
  for (const Output& o : out) EXPECT_EQ(o.kind, Output::Kind::kRetained);
  EXPECT_EQ(joiner_->store().pending_count(), 1);  // one record, two queued statuses
  ExpectAccounting(3);
  Commit();  // the queue survives a commit/reopen
  Open();
  Click(MakeClick("c1", kT0));
  out = sink_.Take();
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0].kind, Output::Kind::kRetained);
  std::vector<int64_t> payouts;
  std::vector<ConversionStatus> statuses;
  for (size_t i = 1; i < out.size(); ++i) {
    ASSERT_EQ(out[i].kind, Output::Kind::kCommission);
    payouts.push_back(out[i].commission.payout.minor);
    statuses.push_back(out[i].commission.status);
  }
  EXPECT_THAT(payouts, ElementsAre(1000, 1000, -1000));
  EXPECT_THAT(statuses, ElementsAre(ConversionStatus::kPending, ConversionStatus::kApproved,
                                    ConversionStatus::kReversed));
  EXPECT_EQ(joiner_->counters().pending_attributed, 3u);
  // A further status after resolution follows the ledger (latest: reversed).
  Conv(MakeConv("o1", kT0 + 4 * kMinute, "c1", ConversionStatus::kApproved));
  out = sink_.Take();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].commission.payout.minor, 1000);
}

TEST_F(JoinerTest, QueuedStatusesFollowAnUnattributedResolutionWithTheirOwnBytes) {
  Conv(MakeConv("o1", kT0, "missing", ConversionStatus::kPending));
  Conv(MakeConv("o1", kT0 + kMinute, "missing", ConversionStatus::kApproved));
  sink_.Take();
  ASSERT_TRUE(joiner_->ObserveClickTime(kT0 + kGrace + 1, sink_).ok());
  Advance();
  auto out = sink_.Take();
  ASSERT_EQ(out.size(), 2u);
  for (int i : {0, 1}) {
    ASSERT_EQ(out[i].kind, Output::Kind::kUnattributed);
    EXPECT_EQ(out[i].unattributed.reason, UnattributedReason::kClickNotFound);
    EXPECT_EQ(out[i].source.offset, i);
    EXPECT_EQ(out[i].source.value, "conv-bytes-" + std::to_string(i));
  }
  EXPECT_EQ(out[1].unattributed.conversion.status, ConversionStatus::kApproved);
  EXPECT_EQ(joiner_->counters().pending_unattributed, 2u);
  ExpectAccounting(0);
}

TEST_F(JoinerTest, PendingConversionRejectedLaterCarriesItsStoredBytes) {
  Conv(MakeConv("o1", kT0 + kSecond, "c1", ConversionStatus::kPending, "off-ctit"));
  sink_.Take();
  Click(MakeClick("c1", kT0, "off-ctit"));  // ctit 1 s < 10 s
  auto out = sink_.Take();
  ASSERT_EQ(out.size(), 2u);
  ASSERT_EQ(out[1].kind, Output::Kind::kReject);
  EXPECT_EQ(out[1].reason, RejectReason::kCtitTooShort);
  EXPECT_EQ(out[1].source.topic, "conversions");
  EXPECT_EQ(out[1].source.key, "o1");
  EXPECT_EQ(out[1].source.value, "conv-bytes-0");
  EXPECT_EQ(joiner_->counters().pending_rejected, 1u);
  ExpectAccounting(0);
}

TEST_F(JoinerTest, UserIdModeLinearSplitOverSeveralClicks) {
  options_.mode = AttributionMode::kUserId;
  Open();
  Click(MakeClick("a", kT0, "off-lin", "u1"));
  Click(MakeClick("b", kT0 + kMinute, "off-lin", "u1"));
  Click(MakeClick("c", kT0 + 2 * kMinute, "off-lin", "u1"));
  Click(MakeClick("too-old", kT0 - 2 * kHour, "off-lin", "u1"));
  Click(MakeClick("other-offer", kT0, "off-1", "u1"));
  Click(MakeClick("other-user", kT0, "off-lin", "u2"));
  sink_.Take();
  Conv(MakeConv("o1", kT0 + 30 * kMinute, "", ConversionStatus::kApproved, "off-lin", "u1"));
  // Multi-touch waits until the clicks input has passed the conversion's
  // time, so that it credits every click up to it, however far the
  // conversions input runs ahead.
  auto out = sink_.Take();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, Output::Kind::kRetained);
  // A click of the user past the conversion's time: the clicks input has
  // passed it, so it is evaluated now (the new click is no candidate).
  Click(MakeClick("d-after", kT0 + 30 * kMinute + 1, "off-lin", "u1"));
  out = sink_.Take();
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0].kind, Output::Kind::kRetained);
  out.erase(out.begin());
  std::vector<std::string> clicks;
  int64_t total = 0;
  for (const Output& o : out) {
    ASSERT_EQ(o.kind, Output::Kind::kCommission);
    clicks.push_back(o.commission.click_id);
    total += o.commission.payout.minor;
    EXPECT_EQ(o.commission.click_count, 3);
    EXPECT_EQ(o.commission.model, AttributionModel::kLinear);
  }
  EXPECT_THAT(clicks, ElementsAre("a", "b", "c"));
  EXPECT_EQ(total, 1000);
}

TEST_F(JoinerTest, UserIdModeWaitsForTheUsersClickAndNamesReasons) {
  options_.mode = AttributionMode::kUserId;
  Open();
  Conv(MakeConv("o1", kT0 + kMinute, "ignored", ConversionStatus::kPending, "off-1", "u1"));
  Conv(MakeConv("o2", kT0 + kMinute, "", ConversionStatus::kPending, "off-1", "u-none"));
  Conv(MakeConv("o3", kT0 + 3 * kHour, "", ConversionStatus::kPending, "off-1", "u-old"));
  EXPECT_EQ(sink_.Take().size(), 3u);
  Click(MakeClick("c1", kT0, "off-1", "u1"));
  auto out = sink_.Take();
  ASSERT_EQ(out.size(), 1u);  // the click: the clicks input is not past o1 yet
  // The clicks input passes o1 and o2: o1 has its candidate, o2 none yet.
  ASSERT_TRUE(joiner_->ObserveClickTime(kT0 + 2 * kMinute, sink_).ok());
  out = sink_.Take();
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].kind, Output::Kind::kCommission);
  EXPECT_EQ(out[0].commission.conversion_id, "o1");
  // After o3: not a candidate, but the user does have a click on the offer.
  Click(MakeClick("c-after", kT0 + 3 * kHour + kMinute, "off-1", "u-old"));
  ASSERT_TRUE(joiner_->ObserveClickTime(kT0 + 3 * kHour + kGrace + 1, sink_).ok());
  Advance();
  out = sink_.Take();
  ASSERT_EQ(out.size(), 3u);
  ASSERT_EQ(out[1].kind, Output::Kind::kUnattributed);
  EXPECT_EQ(out[1].unattributed.conversion.conversion_id, "o2");
  EXPECT_EQ(out[1].unattributed.reason, UnattributedReason::kNoUserClicks);
  ASSERT_EQ(out[2].kind, Output::Kind::kUnattributed);
  EXPECT_EQ(out[2].unattributed.conversion.conversion_id, "o3");
  EXPECT_EQ(out[2].unattributed.reason, UnattributedReason::kOutsideWindow);
  ExpectAccounting(0);
}

TEST_F(JoinerTest, PendingCapacityResolvesTheOldest) {
  options_.max_pending_conversions = 2;
  Open();
  Conv(MakeConv("o-mid", kT0 + 2 * kMinute, "m"));
  Conv(MakeConv("o-old", kT0 + kMinute, "o"));
  sink_.Take();
  Conv(MakeConv("o-new", kT0 + 3 * kMinute, "n"));
  auto out = sink_.Take();
  ASSERT_EQ(out.size(), 2u);
  ASSERT_EQ(out[0].kind, Output::Kind::kUnattributed);
  EXPECT_EQ(out[0].unattributed.conversion.conversion_id, "o-old");
  EXPECT_EQ(out[0].unattributed.detail, "pending capacity reached: click 'o' not found");
  EXPECT_EQ(out[1].kind, Output::Kind::kRetained);
  // A newcomer older than everything waiting is the one given up.
  Conv(MakeConv("o-older", kT0, "x"));
  out = sink_.Take();
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].kind, Output::Kind::kUnattributed);
  EXPECT_EQ(out[0].unattributed.conversion.conversion_id, "o-older");
  EXPECT_THAT(out[0].unattributed.detail, StartsWith("pending capacity reached"));
  EXPECT_EQ(joiner_->store().pending_count(), 2);
  EXPECT_EQ(joiner_->counters().pending_capacity_resolutions, 2u);
  ExpectAccounting(2);
}

TEST_F(JoinerTest, ReopenAfterCommitAndAfterCrash) {
  Click(MakeClick("c1", kT0));
  Conv(MakeConv("o1", kT0 + kMinute, "c1", ConversionStatus::kPending));
  Conv(MakeConv("o2", kT0 + kMinute, "c2", ConversionStatus::kPending));  // waits
  ASSERT_TRUE(joiner_->RecordDedupKey(ClickKey("c1"), kT0).ok());
  Advance();
  Commit();
  sink_.Take();

  // Work after the commit, then a crash (no Commit).
  Click(MakeClick("c2", kT0 + 2 * kMinute));  // resolves o2: outside_window (after it)
  Click(MakeClick("c3", kT0));
  Conv(MakeConv("o3", kT0 + kMinute, "c3", ConversionStatus::kApproved));
  Conv(MakeConv("o1", kT0 + 3 * kMinute, "c1", ConversionStatus::kApproved));
  ASSERT_TRUE(joiner_->RecordDedupKey(ClickKey("c3"), kT0).ok());
  const auto before_crash = sink_.Take();
  click_offset_ = 1;
  conv_offset_ = 2;
  Open();

  TaskStore& store = joiner_->store();
  EXPECT_EQ(store.NextOffset("clicks"), 1);
  EXPECT_EQ(store.NextOffset("conversions"), 2);
  EXPECT_TRUE((*store.GetClick("c1")).has_value());
  EXPECT_FALSE((*store.GetClick("c3")).has_value());
  EXPECT_EQ(store.pending_count(), 1);
  EXPECT_EQ(store.click_watermark(), kT0);
  EXPECT_TRUE(*stores_->Contains(ClickKey("c1")));
  EXPECT_FALSE(*stores_->Contains(ClickKey("c3")));
  auto ledger = store.GetLedger({"off-1", "sale", "o1"});
  ASSERT_TRUE(ledger.ok() && ledger->has_value());
  EXPECT_EQ((*ledger)->status, ConversionStatus::kPending);
  EXPECT_EQ((*ledger)->outcome, LedgerOutcome::kAttributed);

  // Replaying the lost tail gives the same outputs.
  Click(MakeClick("c2", kT0 + 2 * kMinute));
  Click(MakeClick("c3", kT0));
  Conv(MakeConv("o3", kT0 + kMinute, "c3", ConversionStatus::kApproved));
  Conv(MakeConv("o1", kT0 + 3 * kMinute, "c1", ConversionStatus::kApproved));
  const auto replayed = sink_.Take();
  ASSERT_EQ(replayed.size(), before_crash.size());
  for (size_t i = 0; i < replayed.size(); ++i) {
    EXPECT_EQ(replayed[i].kind, before_crash[i].kind);
    EXPECT_EQ(replayed[i].commission, before_crash[i].commission);
    EXPECT_EQ(replayed[i].source, before_crash[i].source);
  }
}

TEST_F(JoinerTest, AbortRestoresStateAndCounters) {
  Click(MakeClick("c1", kT0));
  Commit();
  const JoinCounters committed = joiner_->counters();
  Conv(MakeConv("o1", kT0 + 1, "c1", ConversionStatus::kApproved));
  Conv(MakeConv("o2", kT0 + 1, "nope"));
  joiner_->Abort();
  EXPECT_EQ(joiner_->counters(), committed);
  EXPECT_EQ(joiner_->store().pending_count(), 0);
  EXPECT_FALSE((*joiner_->store().GetLedger({"off-1", "sale", "o1"})).has_value());
  sink_.Take();
  Conv(MakeConv("o1", kT0 + 1, "c1", ConversionStatus::kApproved));
  auto out = sink_.Take();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, Output::Kind::kCommission);
}

TEST_F(JoinerTest, AccountingOverAMixedStream) {
  Click(MakeClick("c1", kT0));
  Click(MakeClick("c2", kT0, "off-ctit"));
  Conv(MakeConv("a", kT0 + kMinute, "c1"));                                    // attributed
  Conv(MakeConv("a", kT0 + kMinute, "c1", ConversionStatus::kApproved));       // re-emitted
  Conv(MakeConv("r", kT0 + 1, "c2", ConversionStatus::kPending, "off-ctit"));  // ctit short
  Conv(MakeConv("u", kT0 + 1, "c9", ConversionStatus::kReversed));             // unknown
  Conv(MakeConv("p", kT0 + kMinute, "c3"));                                    // pending
  Conv(MakeConv("p", kT0 + kMinute, "c3", ConversionStatus::kApproved));       // queued
  Conv(MakeConv("q", kT0 + kMinute, "c4"));                                    // pending
  ExpectAccounting(3);
  Click(MakeClick("c3", kT0));  // resolves p and its queued status
  ExpectAccounting(1);
  ASSERT_TRUE(joiner_->ObserveClickTime(kT0 + kMinute + kGrace + 1, sink_).ok());
  Advance();  // q gives up
  ExpectAccounting(0);
  const JoinCounters& c = joiner_->counters();
  EXPECT_EQ(c.clicks, 3u);
  EXPECT_EQ(c.conversions, 7u);
  EXPECT_EQ(c.conversions_attributed, 2u);
  EXPECT_EQ(c.conversions_rejected, 2u);
  EXPECT_EQ(c.conversions_pending, 3u);
  EXPECT_EQ(c.pending_attributed, 2u);
  EXPECT_EQ(c.pending_unattributed, 1u);
  EXPECT_EQ(c.commissions, 4u);
  // Every output, counted by kind, matches.
  int commissions = 0, rejects = 0, unattributed = 0, retained = 0;
  for (const Output& o : sink_.out) {
    commissions += o.kind == Output::Kind::kCommission;
    rejects += o.kind == Output::Kind::kReject;
    unattributed += o.kind == Output::Kind::kUnattributed;
    retained += o.kind == Output::Kind::kRetained;
  }
  EXPECT_EQ(commissions, 4);
  EXPECT_EQ(rejects, 2);
  EXPECT_EQ(unattributed, 1);
  EXPECT_EQ(retained, 3 + 3);  // clicks + pending messages
}

}  // namespace
}  // namespace tally
