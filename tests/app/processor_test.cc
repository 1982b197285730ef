// The processing loop (Processor + the real CoreStage over RocksDB) driven
// over the in-process Kafka fake: the delivery order of a batch (outputs
// acknowledged, then state, then offsets) under crashes between its steps,
// injected Kafka errors, rebalances, half tasks and shutdown failures.
#include "processor/app/processor.h"

#include <prometheus/registry.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "librdkafka/rdkafka.h"
#include "processor/app/core_stage.h"
#include "processor/codec/codec.h"
#include "processor/kafka/fake_kafka.h"
#include "processor/offers/offers.h"

namespace tally {
namespace {

using kafka::ErrorClass;
using kafka::fake::FakeClientFactory;
using kafka::fake::FakeCluster;
using kafka::fake::FakeCrash;
using kafka::fake::InjectedError;
using kafka::fake::Op;
using kafka::fake::Point;
using ::testing::HasSubstr;

constexpr TimestampMs kT0 = 1'767'225'600'000;  // 2026-01-01
constexpr char kGroup[] = "tally";

// The Processor and its stage; the stage outlives the processor (the
// consumer's close revokes the tasks through it).
struct Testee {
  std::unique_ptr<prometheus::Registry> registry = std::make_unique<prometheus::Registry>();
  std::unique_ptr<CoreStage> stage;
  std::unique_ptr<Processor> processor;
  ~Testee() {
    processor.reset();
    stage.reset();
  }
};

// The value of an unlabelled gauge; -1 when the registry has no such family.
double GaugeValue(prometheus::Registry& registry, const std::string& name) {
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name == name && !family.metric.empty()) return family.metric[0].gauge.value;
  }
  return -1;
}

// The sample of `name` whose labels include every pair of `labels`: its
// counter value, or its histogram's sample count; -1 when there is none.
double SampleValue(prometheus::Registry& registry, const std::string& name,
                   const std::map<std::string, std::string>& labels) {
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      size_t matched = 0;
      for (const prometheus::ClientMetric::Label& label : metric.label) {
        auto it = labels.find(label.name);
        if (it != labels.end() && it->second == label.value) ++matched;
      }
      if (matched != labels.size()) continue;
      return family.type == prometheus::MetricType::Histogram
                 ? static_cast<double>(metric.histogram.sample_count)
                 : metric.counter.value;
    }
  }
  return -1;
}

void ExpectOutputMetrics(prometheus::Registry& r, const std::string& currency_label) {
  EXPECT_EQ(
      SampleValue(r, "tally_commissions_total", {{"status", "approved"}, {"model", "last_click"}}),
      24);
  EXPECT_EQ(
      SampleValue(r, "tally_commissions_total", {{"status", "reversed"}, {"model", "last_click"}}),
      0);
  // 24 CPA commissions of 500 EUR minor units.
  EXPECT_EQ(
      SampleValue(r, "tally_commission_value_minor_units_total",
                  {{"currency", currency_label}, {"status", "approved"}, {"model", "last_click"}}),
      24 * 500);
  EXPECT_EQ(SampleValue(r, "tally_commission_value_minor_units_total", {{"currency", "USD"}}), -1);
  EXPECT_EQ(SampleValue(r, "tally_output_event_latency_seconds", {{"topic", "commissions"}}), 24);
  EXPECT_EQ(SampleValue(r, "tally_output_event_latency_seconds", {{"topic", "unattributed"}}), 0);
  EXPECT_EQ(SampleValue(r, "tally_unattributed_total", {{"reason", "click_not_found"}}), 0);
  const double batches = SampleValue(r, "tally_batches_total", {});
  EXPECT_GT(batches, 1);
  for (const char* stage :
       {"decode", "pipeline", "advance", "flush", "state_commit", "offset_commit"}) {
    EXPECT_EQ(SampleValue(r, "tally_batch_stage_duration_seconds", {{"stage", stage}}), batches)
        << stage;
  }
  // At least once, without a changelog: no transaction, no changelog stage.
  EXPECT_EQ(SampleValue(r, "tally_batch_stage_duration_seconds", {{"stage", "transaction"}}), 0);
}

class ProcessorTest : public ::testing::Test {
 protected:
  ProcessorTest() : factory_(&cluster_) {
    dir_ = std::filesystem::temp_directory_path() /
           absl::StrCat("tally-processor-", getpid(), "-",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    std::ofstream(dir_ / "bots.txt") << "Googlebot\n";
    std::ofstream(dir_ / "blocklist.txt") << "198.51.100.0/24\n";
    cluster_.CreateTopic("clicks", 2);
    cluster_.CreateTopic("conversions", 2);
    cluster_.CreateTopic("commissions", 3);
    cluster_.CreateTopic("rejected", 2);
    cluster_.CreateTopic("unattributed", 2);
  }
  ~ProcessorTest() override { std::filesystem::remove_all(dir_); }

  // A Processor over the fake and a CoreStage over the state directory of
  // this test (the same one on every call: a restart).
  std::unique_ptr<Testee> MakeTestee() {
    auto t = std::make_unique<Testee>();
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
    o.fraud.flood_table_slots = 1 << 10;
    auto stage = CoreStage::Create(o, *offers);
    EXPECT_TRUE(stage.ok()) << stage.status();
    if (!stage.ok()) return nullptr;
    t->stage = std::move(*stage);
    ProcessorOptions p;
    p.consumer_properties = {{"group.id", kGroup}};
    p.batch_max_messages = batch_max_messages_;
    p.stop_when_idle = stop_when_idle_;
    p.changelog_topic = changelog_topic_;
    p.retry_backoff = absl::ZeroDuration();
    p.shutdown_timeout = absl::ZeroDuration();
    p.clients = &factory_;
    p.metric_currencies = metric_currencies_;
    auto processor = Processor::Create(std::move(p), t->stage.get(), *t->registry);
    EXPECT_TRUE(processor.ok()) << processor.status();
    if (!processor.ok()) return nullptr;
    t->processor = std::move(*processor);
    return t;
  }

  // Given `n` clicks, each with one approved conversion on the same
  // partition (keyed by click id), plus a bot click and an undecodable
  // click: n commissions are due, two rejections.
  void SeedInput(int n) {
    EventEncoder encoder(WireFormat::kJson);
    std::string value;
    for (int i = 0; i < n; ++i) {
      Click c;
      c.click_id = absl::StrCat("c", i);
      c.event_time_ms = kT0 + i * 1000;
      c.affiliate_id = "aff-1";
      c.offer_id = "off-1";
      c.user_id = absl::StrCat("u", i);
      EXPECT_TRUE(IpAddress::Parse(absl::StrCat("203.0.113.", i % 200 + 1), &c.ip));
      c.user_agent = "Mozilla/5.0";
      encoder.Encode(c, &value);
      cluster_.Append("clicks", cluster_.PartitionFor("clicks", c.click_id), c.click_id, value);
    }
    for (int i = 0; i < n; ++i) {
      Conversion v;
      v.conversion_id = absl::StrCat("o", i);
      v.event_time_ms = kT0 + i * 1000 + 60'000;
      v.offer_id = "off-1";
      v.click_id = absl::StrCat("c", i);
      v.goal = "sale";
      v.amount.minor = 10000;
      EXPECT_TRUE(Currency::Parse("EUR", &v.amount.currency));
      v.status = ConversionStatus::kApproved;
      encoder.Encode(v, &value);
      cluster_.Append("conversions", cluster_.PartitionFor("conversions", v.click_id), v.click_id,
                      value);
      expected_conversions_.insert(v.conversion_id);
    }
    Click bot;
    bot.click_id = "bot-1";
    bot.event_time_ms = kT0 + 500;
    bot.affiliate_id = "aff-1";
    bot.offer_id = "off-1";
    bot.user_id = "ubot";
    EXPECT_TRUE(IpAddress::Parse("192.0.2.9", &bot.ip));
    bot.user_agent = "Mozilla/5.0 (compatible; Googlebot/2.1)";
    encoder.Encode(bot, &value);
    cluster_.Append("clicks", cluster_.PartitionFor("clicks", "bot-1"), "bot-1", value);
    cluster_.Append("clicks", 1, "junk", "{not json");
  }

  // commission_id -> every copy of it on `commissions`.
  // Every commission record per id, re-encoded with produced_at zeroed: a
  // replay repeats a record byte for byte except for that processing time
  // (contract v1.1), which must be set on every one.
  std::map<std::string, std::vector<std::string>> CommissionCopies() {
    EventDecoder decoder(WireFormat::kJson);
    EventEncoder encoder(WireFormat::kJson);
    std::map<std::string, std::vector<std::string>> out;
    for (const kafka::fake::Record& r : cluster_.AllRecords("commissions")) {
      Commission c;
      auto invalid = decoder.Decode(r.value, &c);
      EXPECT_FALSE(invalid.has_value()) << r.value;
      EXPECT_EQ(r.key, c.commission_id);
      EXPECT_GT(c.produced_at_ms, 0) << r.value;
      c.produced_at_ms = 0;
      std::string value;
      encoder.Encode(c, &value);
      out[c.commission_id].push_back(std::move(value));
    }
    return out;
  }
  std::set<std::string> CommissionedConversions() {
    EventDecoder decoder(WireFormat::kJson);
    std::set<std::string> out;
    for (const kafka::fake::Record& r : cluster_.AllRecords("commissions")) {
      Commission c;
      if (!decoder.Decode(r.value, &c).has_value()) out.insert(c.conversion_id);
    }
    return out;
  }
  std::map<std::string, int> RejectionsByReason() {
    EventDecoder decoder(WireFormat::kJson);
    std::map<std::string, int> out;
    for (const kafka::fake::Record& r : cluster_.AllRecords("rejected")) {
      RejectedEvent e;
      EXPECT_FALSE(decoder.Decode(r.value, &e).has_value()) << r.value;
      ++out[std::string(RejectReasonName(e.reason))];
    }
    return out;
  }

  // Every due commission is there; each repeated copy is byte-identical to
  // its first (same commission_id, same bytes).
  void ExpectNoCommissionLost() {
    EXPECT_EQ(CommissionedConversions(), expected_conversions_);
    const auto copies = CommissionCopies();
    EXPECT_EQ(copies.size(), expected_conversions_.size());
    for (const auto& [id, values] : copies) {
      for (const std::string& v : values) EXPECT_EQ(v, values.front()) << id;
    }
    EXPECT_TRUE(cluster_.AllRecords("unattributed").empty());
  }
  // ... and each exactly once, the rejections too.
  void ExpectExactOutputs() {
    ExpectNoCommissionLost();
    EXPECT_EQ(cluster_.AllRecords("commissions").size(), expected_conversions_.size());
    EXPECT_EQ(RejectionsByReason(),
              (std::map<std::string, int>{{"bot_user_agent", 1}, {"malformed_payload", 1}}));
  }
  void ExpectAllCommitted() {
    for (const char* topic : {"clicks", "conversions"}) {
      for (int32_t p = 0; p < 2; ++p) {
        EXPECT_EQ(cluster_.Committed(kGroup, topic, p), cluster_.EndOffset(topic, p))
            << topic << "[" << p << "]";
      }
    }
  }
  // A second run over the same state and group consumes nothing new.
  void ExpectSecondRunConsumesNothing() {
    const size_t commissions = cluster_.AllRecords("commissions").size();
    auto again = MakeTestee();
    ASSERT_NE(again, nullptr);
    ASSERT_TRUE(again->processor->Run().ok());
    const ProcessorSummary s = again->processor->summary();
    EXPECT_EQ(s.clicks_in + s.conversions_in, 0u);
    EXPECT_EQ(cluster_.AllRecords("commissions").size(), commissions);
  }

  // Runs until the hook crashes the process at the `nth` `point` after the
  // first committed batch, then restarts over the same state and runs to
  // the end. Returns the restarted stage's counters.
  CoreStageCounters CrashAndRestart(Point point, int nth) {
    SeedInput(24);
    int committed = 0, seen = 0;
    cluster_.SetHook([&](Point p) {
      if (p == Point::kAfterCommit && committed++ == 0) return;
      if (committed == 0 || p != point) return;
      if (++seen == nth) cluster_.CrashNow();
    });
    {
      auto first = MakeTestee();
      EXPECT_NE(first, nullptr);
      if (first == nullptr) return {};
      EXPECT_THROW((void)first->processor->Run(), FakeCrash);
      // Destroying them now is the death of the process: nothing
      // uncommitted survives, the crashed clients run no callbacks.
    }
    EXPECT_EQ(seen, nth) << "the crash point " << kafka::fake::PointName(point)
                         << " was never reached";
    cluster_.SetHook(nullptr);
    auto second = MakeTestee();
    EXPECT_NE(second, nullptr);
    if (second == nullptr) return {};
    absl::Status s = second->processor->Run();
    EXPECT_TRUE(s.ok()) << s;
    ExpectNoCommissionLost();
    ExpectAllCommitted();
    return second->stage->counters();
  }

  // 24 EUR commissions, exported with metrics.currencies = `configured`:
  // their value is under currency=`label`.
  void RunWithMetricCurrency(const char* configured, const std::string& label) {
    SeedInput(24);
    Currency currency;
    ASSERT_TRUE(Currency::Parse(configured, &currency));
    metric_currencies_ = {currency};
    auto t = MakeTestee();
    ASSERT_NE(t, nullptr);
    ASSERT_TRUE(t->processor->Run().ok());
    ExpectOutputMetrics(*t->registry, label);
  }

  FakeCluster cluster_;
  FakeClientFactory factory_;
  std::filesystem::path dir_;
  size_t batch_max_messages_ = 8;
  absl::Duration stop_when_idle_ = absl::Nanoseconds(1);
  std::string changelog_topic_;
  std::set<std::string> expected_conversions_;
  std::vector<Currency> metric_currencies_;
};

TEST_F(ProcessorTest, ClicksAndConversionsEarnTheirCommissionsAndOffsetsAreCommitted) {
  SeedInput(24);
  auto t = MakeTestee();
  ASSERT_NE(t, nullptr);
  absl::Status s = t->processor->Run();
  ASSERT_TRUE(s.ok()) << s;
  ExpectExactOutputs();
  ExpectAllCommitted();
  const ProcessorSummary summary = t->processor->summary();
  EXPECT_EQ(summary.commissions_out, 24u);
  EXPECT_EQ(summary.clicks_in, 26u);
  EXPECT_EQ(summary.conversions_in, 24u);
  EXPECT_GT(summary.batches, 1u);
  EXPECT_EQ(summary.batch_replays, 0u);
  t.reset();
  ExpectSecondRunConsumesNothing();
}

// The output metrics follow every record as it is produced: commissions by
// status and model, their value under the configured currency, the
// event-time latency histogram, unattributed by reason, and one observation
// per batch of each stage that ran.
TEST_F(ProcessorTest, OutputMetricsCountCommissionsTheirValueLatencyAndBatchStages) {
  RunWithMetricCurrency("EUR", "EUR");
}

// A currency outside metrics.currencies counts under "other": the label
// values stay bounded whatever the input carries.
TEST_F(ProcessorTest, CommissionValueInAnUnlistedCurrencyCountsAsOther) {
  RunWithMetricCurrency("USD", "other");
}

// Crash between the produce calls of a batch: nothing of it is committed,
// so the restart replays it; the outputs that reached the log repeat with
// the same ids and bytes.
TEST_F(ProcessorTest, CrashAfterProduceReplaysTheBatchWithIdenticalOutputs) {
  const CoreStageCounters c = CrashAndRestart(Point::kAfterProduce, 2);
  EXPECT_EQ(c.replayed_skipped, 0u);
  EXPECT_GT(cluster_.AllRecords("commissions").size(), expected_conversions_.size())
      << "the crashed batch's first outputs should repeat";
  EXPECT_EQ(RejectionsByReason().count("duplicate_click"), 0u);
  EXPECT_EQ(RejectionsByReason().count("duplicate_conversion"), 0u);
  ExpectSecondRunConsumesNothing();
}

// Crash after the outputs were acknowledged, before the state write: the
// batch is replayed from the old state (no event of it is "covered").
TEST_F(ProcessorTest, CrashAfterFlushReplaysTheBatchWithIdenticalOutputs) {
  const CoreStageCounters c = CrashAndRestart(Point::kAfterFlush, 1);
  EXPECT_EQ(c.replayed_skipped, 0u);
  EXPECT_GT(cluster_.AllRecords("commissions").size(), expected_conversions_.size())
      << "the crashed batch's acknowledged outputs should repeat";
  EXPECT_EQ(RejectionsByReason().count("duplicate_click"), 0u);
  EXPECT_EQ(RejectionsByReason().count("duplicate_conversion"), 0u);
  ExpectSecondRunConsumesNothing();
}

// Crash after the state write, before the offset commit: the replay is
// covered by the stored positions and skipped, nothing is emitted twice and
// nothing is re-decided (no duplicate_* rejections).
TEST_F(ProcessorTest, CrashAfterStateWriteSkipsTheReplayedEvents) {
  const CoreStageCounters c = CrashAndRestart(Point::kBeforeCommit, 1);
  EXPECT_GT(c.replayed_skipped, 0u);
  ExpectExactOutputs();
  ExpectSecondRunConsumesNothing();
}

TEST_F(ProcessorTest, CrashAfterOffsetCommitLosesAndRepeatsNothing) {
  const CoreStageCounters c = CrashAndRestart(Point::kAfterCommit, 1);
  EXPECT_EQ(c.replayed_skipped, 0u);
  ExpectExactOutputs();
  ExpectSecondRunConsumesNothing();
}

class RetriableCommitTest : public ProcessorTest, public ::testing::WithParamInterface<int> {};

// A failed offset commit is not undone: the state holds the positions and
// the next batch's commit covers it.
TEST_P(RetriableCommitTest, CommitErrorKeepsTheProcessorRunningWithExactOutputs) {
  SeedInput(24);
  cluster_.FailNext(Op::kCommit, InjectedError{ErrorClass::kRetriable, GetParam()}, 2);
  auto t = MakeTestee();
  ASSERT_NE(t, nullptr);
  absl::Status s = t->processor->Run();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(cluster_.PendingFailures(Op::kCommit), 0);
  EXPECT_EQ(t->processor->summary().batch_replays, 0u);
  ExpectExactOutputs();
  ExpectAllCommitted();
  t.reset();
  ExpectSecondRunConsumesNothing();
}
INSTANTIATE_TEST_SUITE_P(Codes, RetriableCommitTest,
                         ::testing::Values(RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
                                           RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
                                           RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS),
                         [](const auto& info) {
                           return std::string(
                               rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(info.param)));
                         });

// Flush timing out means "still in flight": the processor keeps waiting
// for the same batch; it neither replays nor gives up.
TEST_F(ProcessorTest, FlushTimingOutSeveralTimesThenSucceedingIsNotAReplay) {
  SeedInput(24);
  cluster_.FailNext(Op::kFlush,
                    InjectedError{ErrorClass::kRetriable, RD_KAFKA_RESP_ERR__TIMED_OUT, true}, 5);
  auto t = MakeTestee();
  ASSERT_NE(t, nullptr);
  absl::Status s = t->processor->Run();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(cluster_.PendingFailures(Op::kFlush), 0);
  EXPECT_EQ(t->processor->summary().batch_replays, 0u);
  ExpectExactOutputs();
  ExpectAllCommitted();
}

// A message that could not be delivered fails the batch's flush: the batch
// is aborted and replayed, and every commission arrives.
TEST_F(ProcessorTest, DeliveryFailureReplaysTheBatchAndCompletesTheOutputs) {
  SeedInput(24);
  cluster_.FailNext(Op::kDeliver,
                    InjectedError{ErrorClass::kRetriable, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS});
  auto t = MakeTestee();
  ASSERT_NE(t, nullptr);
  absl::Status s = t->processor->Run();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(t->processor->summary().batch_replays, 1u);
  ExpectNoCommissionLost();
  ExpectAllCommitted();
  EXPECT_EQ(RejectionsByReason().count("duplicate_click"), 0u);
  EXPECT_EQ(RejectionsByReason().count("duplicate_conversion"), 0u);
  t.reset();
  ExpectSecondRunConsumesNothing();
}

// Produce() gave up (the local queue stayed full past its timeout): the
// batch is aborted and replayed like a failed delivery.
TEST_F(ProcessorTest, RetriableProduceErrorReplaysTheBatch) {
  SeedInput(24);
  cluster_.FailNext(Op::kProduce,
                    InjectedError{ErrorClass::kRetriable, RD_KAFKA_RESP_ERR__QUEUE_FULL});
  auto t = MakeTestee();
  ASSERT_NE(t, nullptr);
  absl::Status s = t->processor->Run();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(t->processor->summary().batch_replays, 1u);
  ExpectNoCommissionLost();
  ExpectAllCommitted();
  EXPECT_EQ(RejectionsByReason().count("duplicate_click"), 0u);
}

// The seek back of a replay fails transiently: it is retried (consuming on
// without it would skip the batch), and the processor keeps running.
TEST_F(ProcessorTest, RetriableSeekErrorDuringAReplayIsRetried) {
  SeedInput(24);
  cluster_.FailNext(Op::kDeliver,
                    InjectedError{ErrorClass::kRetriable, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS});
  cluster_.FailNext(Op::kSeek, InjectedError{ErrorClass::kRetriable, RD_KAFKA_RESP_ERR__TIMED_OUT},
                    2);
  auto t = MakeTestee();
  ASSERT_NE(t, nullptr);
  absl::Status s = t->processor->Run();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(cluster_.PendingFailures(Op::kSeek), 0);
  EXPECT_EQ(t->processor->summary().batch_replays, 1u);
  ExpectNoCommissionLost();
  ExpectAllCommitted();
}

TEST_F(ProcessorTest, FatalConsumeErrorStopsRunNamingIt) {
  SeedInput(4);
  cluster_.FailNext(
      Op::kPoll, InjectedError{ErrorClass::kFatal, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED});
  auto t = MakeTestee();
  ASSERT_NE(t, nullptr);
  absl::Status s = t->processor->Run();
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("TOPIC_AUTHORIZATION_FAILED"));
  EXPECT_EQ(kafka::ErrorClassOf(s), ErrorClass::kFatal);
  EXPECT_TRUE(cluster_.Members(kGroup).empty()) << "the consumer should have left the group";
}

// The policy check runs beside the group join; its answer is awaited
// before the first batch, so nothing is written to a topic that deletes
// state.
TEST_F(ProcessorTest, ChangelogThatDeletesStateStopsRunBeforeAnyOutput) {
  SeedInput(4);
  changelog_topic_ = "tally-state-changelog";
  cluster_.CreateTopic(changelog_topic_, 2, {{"cleanup.policy", "delete"}});
  auto t = MakeTestee();
  ASSERT_NE(t, nullptr);
  absl::Status s = t->processor->Run();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("topics.changelog"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("cleanup.policy=delete"));
  EXPECT_TRUE(cluster_.AllRecords("commissions").empty());
  EXPECT_TRUE(cluster_.AllRecords(changelog_topic_).empty());
}

TEST_F(ProcessorTest, FatalCommitErrorStopsRunNamingIt) {
  SeedInput(4);
  cluster_.FailNext(
      Op::kCommit, InjectedError{ErrorClass::kFatal, RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED});
  auto t = MakeTestee();
  ASSERT_NE(t, nullptr);
  absl::Status s = t->processor->Run();
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("committing input offsets"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("GROUP_AUTHORIZATION_FAILED"));
  EXPECT_TRUE(cluster_.Members(kGroup).empty());
  // The state was written before the commit failed: the restart skips it.
  t.reset();
  auto again = MakeTestee();
  ASSERT_NE(again, nullptr);
  ASSERT_TRUE(again->processor->Run().ok());
  EXPECT_GT(again->stage->counters().replayed_skipped, 0u);
  EXPECT_EQ(cluster_.AllRecords("commissions").size(), 4u);
}

// A second member joins after the first batch (the processor's partitions
// are revoked inside its next Poll, messages already fetched for them
// included, and half come back), then leaves again (everything comes back,
// from the committed offsets).
TEST_F(ProcessorTest, MemberJoiningAndLeavingMidRunLosesNothing) {
  SeedInput(24);
  int commits = 0;
  cluster_.SetHook([&](Point p) {
    if (p != Point::kAfterCommit) return;
    ++commits;
    if (commits == 1) cluster_.JoinGroup(kGroup, "intruder", {"clicks", "conversions"});
    if (commits == 3) cluster_.LeaveGroup(kGroup, "intruder");
  });
  auto t = MakeTestee();
  ASSERT_NE(t, nullptr);
  absl::Status s = t->processor->Run();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_GE(commits, 4);
  EXPECT_GE(cluster_.RevokeCallbacks(kGroup), 2);
  // Regression: messages fetched after the re-assignment inside the same
  // Poll were dropped without a seek back, and skipped for good.
  EXPECT_EQ(t->stage->counters().state_gaps, 0u);
  ExpectExactOutputs();
  ExpectAllCommitted();
}

// The rebalance starts between the state write and the offset commit: the
// commit fails (REBALANCE_IN_PROGRESS from a stale generation), the
// partitions move, and their replay is skipped by the stored positions.
TEST_F(ProcessorTest, RebalanceMidBatchFailsTheCommitAndLosesNothing) {
  SeedInput(24);
  int commits = 0;
  cluster_.SetHook([&](Point p) {
    if (p == Point::kBeforeCommit && ++commits == 2) {
      cluster_.JoinGroup(kGroup, "intruder", {"clicks", "conversions"});
    }
    if (p == Point::kBeforeCommit && commits == 4) cluster_.LeaveGroup(kGroup, "intruder");
  });
  auto t = MakeTestee();
  ASSERT_NE(t, nullptr);
  absl::Status s = t->processor->Run();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_GT(t->stage->counters().replayed_skipped, 0u);
  EXPECT_EQ(t->stage->counters().state_gaps, 0u);
  ExpectExactOutputs();
  ExpectAllCommitted();
}

// An assignment of clicks[0] without conversions[0]: partition 0 is a half
// task, nothing of it is processed (its fetched messages are held back)
// until the partner arrives; then all of it is.
TEST_F(ProcessorTest, HalfTaskWaitsForItsPartner) {
  SeedInput(24);
  cluster_.SetAssignor(
      [](const std::vector<std::string>& members, const std::map<std::string, int32_t>&) {
        std::map<std::string, std::vector<kafka::TopicPartition>> out;
        out[members.front()] = {{"clicks", 0}, {"clicks", 1}, {"conversions", 1}};
        return out;
      });
  std::set<std::string> partition0;
  for (const std::string& id : expected_conversions_) {
    const std::string click = "c" + id.substr(1);
    if (cluster_.PartitionFor("clicks", click) == 0) partition0.insert(id);
  }
  ASSERT_FALSE(partition0.empty());
  bool switched = false;
  std::set<std::string> before_switch;
  std::optional<int64_t> clicks0_before_switch;
  double assigned_before_switch = -1;
  Testee* testee = nullptr;
  cluster_.SetHook([&](Point p) {
    if (p != Point::kAfterCommit || switched) return;
    if (cluster_.Committed(kGroup, "clicks", 1) != cluster_.EndOffset("clicks", 1) ||
        cluster_.Committed(kGroup, "conversions", 1) != cluster_.EndOffset("conversions", 1)) {
      return;
    }
    switched = true;
    before_switch = CommissionedConversions();
    clicks0_before_switch = cluster_.Committed(kGroup, "clicks", 0);
    assigned_before_switch = GaugeValue(*testee->registry, "tally_assigned_partitions");
    cluster_.SetAssignor(nullptr);
    cluster_.Rebalance(kGroup);
  });
  auto t = MakeTestee();
  ASSERT_NE(t, nullptr);
  testee = t.get();
  absl::Status s = t->processor->Run();
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE(switched);
  // Regression: the gauge was registered and never set (always 0).
  EXPECT_EQ(assigned_before_switch, 3);
  EXPECT_EQ(GaugeValue(*t->registry, "tally_assigned_partitions"), 0);  // closed: revoked
  for (const std::string& id : before_switch) EXPECT_FALSE(partition0.contains(id)) << id;
  EXPECT_EQ(before_switch.size(), expected_conversions_.size() - partition0.size());
  EXPECT_FALSE(clicks0_before_switch.has_value());
  // Regression: the held-back clicks of partition 0, fetched again right
  // after the partner's assignment, were dropped and skipped.
  EXPECT_EQ(t->stage->counters().state_gaps, 0u);
  ExpectExactOutputs();
  ExpectAllCommitted();
}

// The final flush fails: Run() reports it (the last batch was committed
// already), the consumer has left the group through its revoke callback,
// and nothing is left half-done.
TEST_F(ProcessorTest, FailingFlushAtShutdownIsReportedAndTheConsumerIsClosed) {
  SeedInput(6);
  batch_max_messages_ = 1000;  // one batch, then the shutdown flush
  cluster_.SetHook([&](Point p) {
    if (p == Point::kAfterCommit) {
      cluster_.FailNext(Op::kFlush,
                        InjectedError{ErrorClass::kRetriable, RD_KAFKA_RESP_ERR__TIMED_OUT, true});
    }
  });
  auto t = MakeTestee();
  ASSERT_NE(t, nullptr);
  absl::Status s = t->processor->Run();
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("fake flush"));
  EXPECT_EQ(cluster_.PendingFailures(Op::kFlush), 0);
  EXPECT_TRUE(cluster_.Members(kGroup).empty());
  EXPECT_EQ(cluster_.RevokeCallbacks(kGroup), 1);
  EXPECT_EQ(t->processor->summary().batches, 1u);
  cluster_.SetHook(nullptr);
  t.reset();
  ExpectExactOutputs();
  ExpectAllCommitted();
  ExpectSecondRunConsumesNothing();
}

// Stop() (SIGTERM) while the batch's outputs are not acknowledged and the
// shutdown timeout runs out: Run() returns an error, nothing of the batch is
// committed, the consumer is closed, and a restart delivers everything.
TEST_F(ProcessorTest, StopWhileOutputsAreUnacknowledgedCommitsNothingAndLosesNothing) {
  SeedInput(6);
  batch_max_messages_ = 1000;
  Testee* running = nullptr;
  cluster_.SetHook([&](Point p) {
    if (p == Point::kAfterProduce && cluster_.PendingFailures(Op::kFlush) == 0) {
      cluster_.FailNext(Op::kFlush,
                        InjectedError{ErrorClass::kRetriable, RD_KAFKA_RESP_ERR__TIMED_OUT, true},
                        1000);
      running->processor->Stop();
    }
  });
  auto t = MakeTestee();
  ASSERT_NE(t, nullptr);
  running = t.get();
  absl::Status s = t->processor->Run();
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("flush"));
  EXPECT_TRUE(cluster_.Members(kGroup).empty());
  EXPECT_EQ(cluster_.RevokeCallbacks(kGroup), 1);
  EXPECT_FALSE(cluster_.Committed(kGroup, "clicks", 0).has_value());
  EXPECT_EQ(t->processor->summary().batches, 0u);
  t.reset();
  cluster_.SetHook(nullptr);
  cluster_.ClearFailures();
  auto again = MakeTestee();
  ASSERT_NE(again, nullptr);
  s = again->processor->Run();
  ASSERT_TRUE(s.ok()) << s;
  ExpectNoCommissionLost();
  ExpectAllCommitted();
}

// Stop() from another thread (the signal thread in main) while the loop
// runs without an idle exit: Run() returns OK after its last committed
// batch and the consumer has left the group through its revoke callback.
TEST_F(ProcessorTest, StopFromAnotherThreadEndsRunCleanly) {
  SeedInput(24);
  stop_when_idle_ = absl::ZeroDuration();  // run until Stop()
  absl::Notification all_committed;
  cluster_.SetHook([&](Point p) {
    if (p != Point::kAfterCommit || all_committed.HasBeenNotified()) return;
    for (const char* topic : {"clicks", "conversions"}) {
      for (int32_t partition = 0; partition < 2; ++partition) {
        if (cluster_.Committed(kGroup, topic, partition) != cluster_.EndOffset(topic, partition)) {
          return;
        }
      }
    }
    all_committed.Notify();
  });
  auto t = MakeTestee();
  ASSERT_NE(t, nullptr);
  absl::Status s;
  std::thread loop([&] { s = t->processor->Run(); });
  all_committed.WaitForNotification();
  t->processor->Stop();
  loop.join();
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_TRUE(cluster_.Members(kGroup).empty());
  EXPECT_EQ(cluster_.RevokeCallbacks(kGroup), 1);
  cluster_.SetHook(nullptr);
  ExpectExactOutputs();
}

// Contract v1.1: every output record names its schema in headers and is
// stamped with the event time it is about (a consumer windowing by record
// time must see business time, not when Tally ran).
TEST_F(ProcessorTest, OutputRecordsCarrySchemaHeadersAndEventTimeTimestamps) {
  SeedInput(24);
  auto t = MakeTestee();
  ASSERT_NE(t, nullptr);
  ASSERT_TRUE(t->processor->Run().ok());
  using Headers = std::vector<std::pair<std::string, std::string>>;
  auto headers_of = [](const char* schema) {
    return Headers{{"tally.schema", schema},
                   {"tally.schema_version", "1.1"},
                   {"content-type", "application/json"}};
  };
  EventDecoder decoder(WireFormat::kJson);
  const auto commissions = cluster_.AllRecords("commissions");
  ASSERT_EQ(commissions.size(), 24u);
  for (const kafka::fake::Record& r : commissions) {
    Commission c;
    ASSERT_FALSE(decoder.Decode(r.value, &c).has_value()) << r.value;
    EXPECT_EQ(r.headers, headers_of("tally.v1.Commission"));
    EXPECT_EQ(r.timestamp_ms, c.conversion_time_ms);
    EXPECT_NE(r.timestamp_ms, c.produced_at_ms);
  }
  const auto rejected = cluster_.AllRecords("rejected");
  ASSERT_FALSE(rejected.empty());
  for (const kafka::fake::Record& r : rejected) {
    RejectedEvent e;
    ASSERT_FALSE(decoder.Decode(r.value, &e).has_value()) << r.value;
    EXPECT_EQ(r.headers, headers_of("tally.v1.Rejected"));
    EXPECT_EQ(r.timestamp_ms, e.rejected_at_ms);  // a rejected message may have no event time
  }
}

}  // namespace
}  // namespace tally
