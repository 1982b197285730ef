// The pipeline core as the Processor drives it: events of a batch, EndBatch,
// CommitBatch; rebalances; a restart on the same state directory.
#include "processor/app/core_stage.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"

namespace tally {
namespace {

constexpr TimestampMs kT0 = 1'767'225'600'000;  // 2026-01-01

class RecordingOutputs final : public Outputs {
 public:
  void Commission(const tally::Commission& c) override { commissions.push_back(c); }
  void Reject(const EventSource& source, RejectReason reason, std::string_view) override {
    rejected.push_back({std::string(source.topic), source.partition, source.offset, reason});
  }
  void Unattributed(const UnattributedConversion& u) override { unattributed.push_back(u); }
  void Retained(const EventSource&) override { ++retained; }

  struct Rejection {
    std::string topic;
    int32_t partition;
    int64_t offset;
    RejectReason reason;
  };
  std::vector<tally::Commission> commissions;
  std::vector<Rejection> rejected;
  std::vector<UnattributedConversion> unattributed;
  int retained = 0;
};

class CoreStageTest : public ::testing::Test {
 protected:
  CoreStageTest() {
    dir_ = std::filesystem::temp_directory_path() /
           absl::StrCat("tally-core-", getpid(), "-",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    Write("bots.txt", "# test patterns\nGooglebot\npython-requests\n");
    Write("blocklist.txt", "198.51.100.0/24\n");
  }
  ~CoreStageTest() override { std::filesystem::remove_all(dir_); }

  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
  }

  std::unique_ptr<CoreStage> MakeStage(
      const std::function<void(CoreStageOptions&)>& tweak = nullptr,
      prometheus::Registry* registry = nullptr) {
    auto offers = OffersCatalog::FromYaml(R"(
defaults:
  attribution_window: 1d
  payouts:
    sale: {cpa: {amount: 500, currency: EUR}}
)",
                                          "test");
    EXPECT_TRUE(offers.ok()) << offers.status();
    CoreStageOptions o;
    o.state.dir = (dir_ / "state").string();
    o.state.block_cache_bytes = 8 << 20;
    o.state.write_buffer_bytes = 4 << 20;
    o.dedup.table_slots = 1 << 12;
    o.fraud.bot_user_agents_file = (dir_ / "bots.txt").string();
    o.fraud.ip_blocklist_file = (dir_ / "blocklist.txt").string();
    o.fraud.max_clicks_per_ip = 2;
    o.fraud.flood_table_slots = 1 << 10;
    if (tweak) tweak(o);
    auto stage = CoreStage::Create(o, *offers, registry);
    EXPECT_TRUE(stage.ok()) << stage.status();
    (*stage)->SetInputPartitionCount(2);
    (*stage)->OnPartitionsAssigned({0, 1});
    return std::move(*stage);
  }

  static Click MakeClick(const std::string& id, TimestampMs ts, const std::string& ip) {
    Click c;
    c.click_id = id;
    c.event_time_ms = ts;
    c.affiliate_id = "aff-1";
    c.offer_id = "off-1";
    c.user_id = "u-" + id;
    EXPECT_TRUE(IpAddress::Parse(ip, &c.ip));
    c.user_agent = "Mozilla/5.0";
    return c;
  }

  static Conversion MakeConversion(const std::string& id, const std::string& click_id,
                                   TimestampMs ts, ConversionStatus status) {
    Conversion c;
    c.conversion_id = id;
    c.event_time_ms = ts;
    c.offer_id = "off-1";
    c.click_id = click_id;
    c.goal = "sale";
    c.amount.minor = 10000;
    EXPECT_TRUE(Currency::Parse("EUR", &c.amount.currency));
    c.status = status;
    return c;
  }

  // One batch on partition 0: clicks at offsets 0.., conversions at 0..
  void RunBatch(CoreStage& stage, const std::vector<Click>& clicks,
                const std::vector<Conversion>& conversions, RecordingOutputs& out,
                int64_t first_click_offset = 0, int64_t first_conversion_offset = 0) {
    // As the Processor does: every message is first offered to
    // AlreadyCovered, and only the ones it does not cover are handed over.
    int64_t o = first_click_offset;
    for (const Click& c : clicks) {
      const EventSource source{"clicks", 0, o++, "k", "v"};
      if (!stage.AlreadyCovered(source)) stage.OnClick(c, source, out);
    }
    int64_t v = first_conversion_offset;
    for (const Conversion& c : conversions) {
      const EventSource source{"conversions", 0, v++, "k", "v"};
      if (!stage.AlreadyCovered(source)) stage.OnConversion(c, source, out);
    }
    std::vector<PipelineStage::Position> positions = {{"clicks", 0, o}, {"conversions", 0, v}};
    ASSERT_TRUE(stage.EndBatch(positions, out).ok());
    ASSERT_TRUE(stage.CommitBatch(positions).ok());
  }

  std::filesystem::path dir_;
};

TEST_F(CoreStageTest, RulesApplyInOrderAndAConversionEarnsItsCommission) {
  auto stage = MakeStage();
  RecordingOutputs out;
  RunBatch(*stage,
           {MakeClick("c1", kT0, "203.0.113.1"),
            MakeClick("c1", kT0, "203.0.113.1"),  // duplicate first, before any fraud rule
            [] {
              Click bot = MakeClick("c2", kT0 + 1, "198.51.100.7");  // bot AND blocklisted
              bot.user_agent = "Mozilla/5.0 (compatible; Googlebot/2.1)";
              return bot;
            }(),
            MakeClick("c3", kT0 + 2, "198.51.100.8"), MakeClick("c4", kT0 + 3, "192.0.2.1"),
            MakeClick("c5", kT0 + 4, "192.0.2.1"), MakeClick("c6", kT0 + 5, "192.0.2.1")},
           {MakeConversion("o1", "c1", kT0 + 60'000, ConversionStatus::kApproved)}, out);
  ASSERT_EQ(out.rejected.size(), 4u);
  EXPECT_EQ(out.rejected[0].reason, RejectReason::kDuplicateClick);
  EXPECT_EQ(out.rejected[0].offset, 1);
  EXPECT_EQ(out.rejected[1].reason, RejectReason::kBotUserAgent);
  EXPECT_EQ(out.rejected[2].reason, RejectReason::kIpBlocklisted);
  EXPECT_EQ(out.rejected[3].reason, RejectReason::kIpClickFlood);  // third click of 192.0.2.1
  EXPECT_EQ(out.rejected[3].offset, 6);
  EXPECT_EQ(out.retained, 3);  // c1, c4, c5
  ASSERT_EQ(out.commissions.size(), 1u);
  EXPECT_EQ(out.commissions[0].click_id, "c1");
  EXPECT_EQ(out.commissions[0].payout.minor, 500);
  EXPECT_EQ(out.commissions[0].status, ConversionStatus::kApproved);
}

TEST_F(CoreStageTest, ReplayOfCommittedOffsetsIsSkipped) {
  auto stage = MakeStage();
  RecordingOutputs first;
  RunBatch(*stage, {MakeClick("c1", kT0, "203.0.113.1")},
           {MakeConversion("o1", "c1", kT0 + 1000, ConversionStatus::kPending)}, first);
  ASSERT_EQ(first.commissions.size(), 1u);
  // A crash after CommitBatch and before the Kafka offset commit: the same
  // offsets come again. The state covers them; nothing is emitted twice and
  // nothing is called a duplicate.
  RecordingOutputs replay;
  RunBatch(*stage, {MakeClick("c1", kT0, "203.0.113.1")},
           {MakeConversion("o1", "c1", kT0 + 1000, ConversionStatus::kPending)}, replay);
  EXPECT_TRUE(replay.commissions.empty());
  EXPECT_TRUE(replay.rejected.empty());
  EXPECT_EQ(stage->counters().replayed_skipped, 2u);
}

TEST_F(CoreStageTest, RestartKeepsDedupAndAttributionState) {
  {
    auto stage = MakeStage();
    RecordingOutputs out;
    RunBatch(*stage, {MakeClick("c1", kT0, "203.0.113.1")}, {}, out);
    EXPECT_EQ(out.retained, 1);
  }
  auto stage = MakeStage();  // same directory: a restarted instance
  RecordingOutputs out;
  // New offsets (a re-sent copy of c1 further down the log), then a
  // conversion for the click stored before the restart.
  RunBatch(*stage, {MakeClick("c1", kT0, "203.0.113.1")},
           {MakeConversion("o1", "c1", kT0 + 5000, ConversionStatus::kApproved)}, out, 1, 0);
  ASSERT_EQ(out.rejected.size(), 1u);
  EXPECT_EQ(out.rejected[0].reason, RejectReason::kDuplicateClick);
  ASSERT_EQ(out.commissions.size(), 1u);
  EXPECT_EQ(out.commissions[0].click_id, "c1");
}

TEST_F(CoreStageTest, StatusChangesReEmitAndUnknownReversalIsRejected) {
  auto stage = MakeStage();
  RecordingOutputs out;
  RunBatch(*stage, {MakeClick("c1", kT0, "203.0.113.1")},
           {MakeConversion("o1", "c1", kT0 + 1000, ConversionStatus::kPending),
            MakeConversion("o1", "c1", kT0 + 2000, ConversionStatus::kApproved),
            MakeConversion("o1", "c1", kT0 + 3000, ConversionStatus::kApproved),
            MakeConversion("o1", "c1", kT0 + 4000, ConversionStatus::kReversed),
            MakeConversion("o9", "c1", kT0 + 5000, ConversionStatus::kReversed)},
           out);
  ASSERT_EQ(out.commissions.size(), 3u);
  EXPECT_EQ(out.commissions[0].status, ConversionStatus::kPending);
  EXPECT_EQ(out.commissions[1].status, ConversionStatus::kApproved);
  EXPECT_EQ(out.commissions[2].status, ConversionStatus::kReversed);
  EXPECT_EQ(out.commissions[2].payout.minor, -500);
  EXPECT_EQ(out.commissions[0].commission_id, out.commissions[2].commission_id);
  ASSERT_EQ(out.rejected.size(), 2u);
  EXPECT_EQ(out.rejected[0].reason, RejectReason::kDuplicateConversion);
  EXPECT_EQ(out.rejected[1].reason, RejectReason::kUnknownConversion);
}

TEST_F(CoreStageTest, ConversionBeforeItsClickWaitsAndIsAttributedWhenTheClickComes) {
  auto stage = MakeStage();
  RecordingOutputs out;
  RunBatch(*stage, {}, {MakeConversion("o1", "c1", kT0 + 1000, ConversionStatus::kApproved)}, out);
  EXPECT_EQ(out.retained, 1);
  EXPECT_EQ(stage->counters().pending, 1u);
  RunBatch(*stage, {MakeClick("c1", kT0, "203.0.113.1")}, {}, out, 0, 1);
  ASSERT_EQ(out.commissions.size(), 1u);
  EXPECT_EQ(stage->counters().pending, 0u);
}

// The gauge or counter `name` without labels, or the child with
// result=`result`; -1 when absent.
double MetricValue(prometheus::Registry& registry, const std::string& name,
                   const std::string& result = "") {
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& m : family.metric) {
      if (!result.empty() && (m.label.empty() || m.label[0].value != result)) continue;
      return family.type == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value;
    }
  }
  return -1;
}

// Sampled gauges move between batches (every loop iteration reaches
// TakeReadyTasks), at most once a second; a rule reload is counted when it
// happens, with no batch after it.
TEST_F(CoreStageTest, SampledGaugesRefreshBetweenBatchesAndReloadsCountAtOnce) {
  prometheus::Registry registry;
  absl::Time now = absl::FromUnixMillis(kT0 + 600'000);
  auto stage = MakeStage([&](CoreStageOptions& o) { o.clock = [&] { return now; }; }, &registry);
  RecordingOutputs out;
  RunBatch(*stage, {}, {MakeConversion("o1", "c1", kT0 + 1000, ConversionStatus::kApproved)}, out);
  std::vector<int32_t> ready;
  (void)stage->TakeReadyTasks(&ready);
  EXPECT_EQ(MetricValue(registry, "tally_oldest_pending_conversion_age_seconds"), 599);
  EXPECT_EQ(MetricValue(registry, "tally_state_open_stores"), 2);
  EXPECT_GT(MetricValue(registry, "tally_rocksdb_memtable_bytes"), 0);
  EXPECT_EQ(MetricValue(registry, "tally_rocksdb_stalled_stores"), 0);
  EXPECT_GE(MetricValue(registry, "tally_rocksdb_block_cache_misses_total"), 0);
  // Within the second: not sampled again.
  now += absl::Milliseconds(500);
  (void)stage->TakeReadyTasks(&ready);
  EXPECT_EQ(MetricValue(registry, "tally_oldest_pending_conversion_age_seconds"), 599);
  now += absl::Seconds(2);
  (void)stage->TakeReadyTasks(&ready);
  EXPECT_EQ(MetricValue(registry, "tally_oldest_pending_conversion_age_seconds"), 601.5);
  // The click arrives: nothing waits any more.
  RunBatch(*stage, {MakeClick("c1", kT0, "203.0.113.1")}, {}, out, 0, 1);
  ASSERT_EQ(out.commissions.size(), 1u);
  now += absl::Seconds(2);
  (void)stage->TakeReadyTasks(&ready);
  EXPECT_EQ(MetricValue(registry, "tally_oldest_pending_conversion_age_seconds"), 0);

  EXPECT_EQ(MetricValue(registry, "tally_fraud_rule_reloads_total", "ok"), 0);
  ASSERT_TRUE(stage->ReloadFraudRules().ok());
  EXPECT_EQ(MetricValue(registry, "tally_fraud_rule_reloads_total", "ok"), 1);
  std::filesystem::remove(dir_ / "blocklist.txt");
  EXPECT_FALSE(stage->ReloadFraudRules().ok());
  EXPECT_EQ(MetricValue(registry, "tally_fraud_rule_reloads_total", "failed"), 1);
  EXPECT_EQ(MetricValue(registry, "tally_fraud_rule_reloads_total", "ok"), 1);
}

TEST_F(CoreStageTest, RevokedPartitionResumesFromItsCommittedState) {
  auto stage = MakeStage();
  RecordingOutputs out;
  RunBatch(*stage, {MakeClick("c1", kT0, "203.0.113.1")}, {}, out);
  stage->OnPartitionsRevoked({0});
  stage->OnPartitionsAssigned({0});
  RunBatch(*stage, {}, {MakeConversion("o1", "c1", kT0 + 1000, ConversionStatus::kApproved)}, out,
           1, 0);
  ASSERT_EQ(out.commissions.size(), 1u);
}

// kill -9 after a flood rejection was handed to the producer and before the
// batch ended: the rejection may be on `rejected` already, so the replay must
// repeat that verdict even when it reads the partitions in another order.
TEST_F(CoreStageTest, AFloodRejectionHandedOutBeforeACrashIsRepeatedByTheReplay) {
  const Click a = MakeClick("a", kT0, "192.0.2.1");
  const Click b = MakeClick("b", kT0 + 1, "192.0.2.1");
  const Click c = MakeClick("c", kT0 + 2, "192.0.2.1");
  const EventSource b_source{"clicks", 0, 1, "k", "v"};
  const EventSource c_source{"clicks", 1, 0, "k", "v"};
  {
    auto stage = MakeStage();
    RecordingOutputs out;
    RunBatch(*stage, {a}, {}, out);  // the IP's first click, committed
    // The next batch: b (second click, let through), then c on partition 1
    // (third, rejected), then re-sends of b until the held outputs are
    // released mid-batch; the process dies before EndBatch.
    stage->OnClick(b, b_source, out);
    stage->OnClick(c, c_source, out);
    EXPECT_TRUE(out.rejected.empty()) << "held until the verdicts are journaled";
    for (int64_t offset = 2; out.rejected.empty() && offset < 10'000; ++offset) {
      stage->OnClick(b, EventSource{"clicks", 0, offset, "k", "v"}, out);
    }
    ASSERT_FALSE(out.rejected.empty());
    EXPECT_EQ(out.rejected[0].partition, 1);
    EXPECT_EQ(out.rejected[0].reason, RejectReason::kIpClickFlood);
  }
  auto stage = MakeStage();
  RecordingOutputs replay;
  // Counted afresh in this order, c would be the second click and b the third.
  for (const auto& [click, source] : {std::pair{c, c_source}, std::pair{b, b_source}}) {
    ASSERT_FALSE(stage->AlreadyCovered(source));
    stage->OnClick(click, source, replay);
  }
  const std::vector<PipelineStage::Position> positions = {
      {"clicks", 0, 2}, {"clicks", 1, 1}, {"conversions", 0, 0}, {"conversions", 1, 0}};
  ASSERT_TRUE(stage->EndBatch(positions, replay).ok());
  ASSERT_TRUE(stage->CommitBatch(positions).ok());
  ASSERT_EQ(replay.rejected.size(), 1u);
  EXPECT_EQ(replay.rejected[0].partition, 1);
  EXPECT_EQ(replay.rejected[0].offset, 0);
  EXPECT_EQ(replay.rejected[0].reason, RejectReason::kIpClickFlood);
  EXPECT_EQ(replay.retained, 1);  // b
}

// Outputs that follow a flood verdict wait for its journal write, and leave
// in the order they were decided.
TEST_F(CoreStageTest, OutputsAfterAFloodVerdictAreHeldAndReleasedInOrder) {
  auto stage = MakeStage();
  RecordingOutputs out;
  const Click a = MakeClick("a", kT0, "192.0.2.9");
  stage->OnClick(a, EventSource{"clicks", 0, 0, "k", "v"}, out);  // reaches the flood rule
  for (int64_t offset = 1; offset <= 3; ++offset) {
    stage->OnClick(a, EventSource{"clicks", 0, offset, "k", "v"}, out);  // duplicate_click
  }
  EXPECT_TRUE(out.rejected.empty());
  const std::vector<PipelineStage::Position> positions = {
      {"clicks", 0, 4}, {"clicks", 1, 0}, {"conversions", 0, 0}, {"conversions", 1, 0}};
  ASSERT_TRUE(stage->EndBatch(positions, out).ok());
  ASSERT_EQ(out.rejected.size(), 3u);
  for (size_t i = 0; i < out.rejected.size(); ++i) {
    EXPECT_EQ(out.rejected[i].offset, static_cast<int64_t>(i) + 1);
    EXPECT_EQ(out.rejected[i].reason, RejectReason::kDuplicateClick);
  }
  ASSERT_TRUE(stage->CommitBatch(positions).ok());
}

// processing.click_idle_timeout: a partition whose clicks stop still decides
// its pending conversions, its watermark advancing with wall time once the
// clicks have been quiet for the timeout (batches of other partitions carry
// the decision); without the timeout it waits for its next click.
TEST_F(CoreStageTest, AnIdlePartitionDecidesItsPendingConversionsAfterTheIdleTimeout) {
  absl::Time now = absl::FromUnixSeconds(1'000'000);
  auto stage = MakeStage([&](CoreStageOptions& o) {
    o.click_idle_timeout = absl::Minutes(1);
    o.clock = [&now] { return now; };
  });
  RecordingOutputs out;
  // Partition 0: a click, then a conversion naming a click that never comes.
  RunBatch(*stage, {MakeClick("a", kT0, "192.0.2.1")},
           {MakeConversion("o1", "missing", kT0 + 1'000, ConversionStatus::kApproved)}, out);
  EXPECT_TRUE(out.unattributed.empty());
  // Traffic on partition 1 only.
  auto other = [&](int64_t offset, TimestampMs ts) {
    const EventSource source{"clicks", 1, offset, "k", "v"};
    stage->OnClick(MakeClick("p1-" + std::to_string(offset), ts, "192.0.2.2"), source, out);
    const std::vector<PipelineStage::Position> positions = {{"clicks", 1, offset + 1}};
    ASSERT_TRUE(stage->EndBatch(positions, out).ok());
    ASSERT_TRUE(stage->CommitBatch(positions).ok());
  };
  now += absl::Minutes(5);  // idle 4 min past the timeout: watermark kT0 + 4 min
  other(0, kT0);
  EXPECT_TRUE(out.unattributed.empty()) << "the grace (10 min) has not passed yet";
  now += absl::Minutes(8);  // kT0 + 12 min > conversion + grace
  other(1, kT0);
  ASSERT_EQ(out.unattributed.size(), 1u);
  EXPECT_EQ(out.unattributed[0].conversion.conversion_id, "o1");
  EXPECT_EQ(out.unattributed[0].reason, UnattributedReason::kClickNotFound);
  EXPECT_GE(stage->counters().idle_advances, 2u);
  EXPECT_EQ(stage->counters().pending, 0u);
}

TEST_F(CoreStageTest, WithoutAnIdleTimeoutAQuietPartitionWaitsForItsNextClick) {
  absl::Time now = absl::FromUnixSeconds(1'000'000);
  auto stage = MakeStage([&](CoreStageOptions& o) { o.clock = [&now] { return now; }; });
  RecordingOutputs out;
  RunBatch(*stage, {MakeClick("a", kT0, "192.0.2.1")},
           {MakeConversion("o1", "missing", kT0 + 1'000, ConversionStatus::kApproved)}, out);
  now += absl::Hours(10);
  const EventSource source{"clicks", 1, 0, "k", "v"};
  stage->OnClick(MakeClick("b", kT0, "192.0.2.2"), source, out);
  const std::vector<PipelineStage::Position> positions = {{"clicks", 1, 1}};
  ASSERT_TRUE(stage->EndBatch(positions, out).ok());
  ASSERT_TRUE(stage->CommitBatch(positions).ok());
  EXPECT_TRUE(out.unattributed.empty());
  EXPECT_EQ(stage->counters().idle_advances, 0u);
  EXPECT_EQ(stage->counters().pending, 1u);
}

TEST_F(CoreStageTest, HorizonShorterThanAWindowIsRefused) {
  auto offers = OffersCatalog::FromYaml(
      "defaults:\n  attribution_window: 60d\n  payouts:\n    sale: {revshare_bps: 100}\n", "t");
  ASSERT_TRUE(offers.ok()) << offers.status();
  CoreStageOptions o;
  o.state.dir = (dir_ / "state").string();
  o.fraud.bot_user_agents_file = (dir_ / "bots.txt").string();
  o.fraud.ip_blocklist_file = (dir_ / "blocklist.txt").string();
  auto stage = CoreStage::Create(o, *offers);
  ASSERT_FALSE(stage.ok());
  EXPECT_NE(stage.status().message().find("dedup.horizon"), std::string::npos);
}

}  // namespace
}  // namespace tally
