// The exactly-once crash protocol of the processing loop (docs/design.md
// §10, crash-point table 10.3), over the in-process Kafka fake, which
// honours transactions (fencing by transactional.id epochs, aborts,
// read_committed and the LSO, offsets inside the transaction, KIP-447
// generations). The Processor runs as main.cc wires it under
// processing.guarantee=exactly_once: one transaction per batch (outputs,
// changelog records, one marker per task, input offsets), a read_committed
// consumer, and a CoreStage whose Restorer rebuilds each task from the
// changelog through a read_committed PartitionReader.
//
// Every check reads the outputs as a read_committed consumer would: each
// commission (commission_id, status) exactly once, none missing, and the
// state restored from the changelog on an empty volume decides later input
// as the lost state would have (a reversal finds its ledger entry, a new
// conversion finds its click).
#include <prometheus/registry.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "librdkafka/rdkafka.h"
#include "processor/app/core_stage.h"
#include "processor/app/processor.h"
#include "processor/app/restorer.h"
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
using kafka::fake::TxnState;

constexpr TimestampMs kT0 = 1'767'225'600'000;  // 2026-01-01
constexpr char kGroup[] = "tally";
constexpr char kChangelog[] = "tally-state-changelog";
constexpr char kTxnId[] = "tally-i0";
constexpr int kClicks = 24;
constexpr int32_t kPartitions = 2;

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

// One commission as a read_committed consumer sees it.
struct Seen {
  std::string key;
  Commission commission;
};

class ProcessorEosTest : public ::testing::Test {
 protected:
  ProcessorEosTest() : factory_(&cluster_) {
    static std::atomic<int> counter{0};
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    name = absl::StrReplaceAll(name, {{"/", "_"}});
    dir_ = std::filesystem::temp_directory_path() /
           absl::StrCat("tally-eos-", getpid(), "-", counter++, "-", name);
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    std::ofstream(dir_ / "bots.txt") << "Googlebot\n";
    std::ofstream(dir_ / "blocklist.txt") << "198.51.100.0/24\n";
    cluster_.CreateTopic("clicks", kPartitions);
    cluster_.CreateTopic("conversions", kPartitions);
    cluster_.CreateTopic("commissions", 3);
    cluster_.CreateTopic("rejected", 2);
    cluster_.CreateTopic("unattributed", 2);
    // The changelog is created by the Processor at start-up (as on a real
    // cluster), compacted, one partition per task.
  }
  ~ProcessorEosTest() override {
    cluster_.SetHook(nullptr);
    std::filesystem::remove_all(dir_);
  }

  // An exactly-once Processor over the fake and a CoreStage over
  // `state` (a directory name under this test's directory: the same name
  // is a restart on the same volume, a new one an empty volume), wired as
  // main.cc wires them.
  std::unique_ptr<Testee> MakeTestee(const std::string& state,
                                     const std::string& transactional_id = kTxnId) {
    auto t = std::make_unique<Testee>();
    auto offers = OffersCatalog::FromYaml(R"(
defaults:
  attribution_window: 1d
  payouts:
    sale: {cpa: {amount: 500, currency: EUR}}
)",
                                          "test");
    EXPECT_TRUE(offers.ok()) << offers.status();
    if (!offers.ok()) return nullptr;
    CoreStageOptions o;
    o.state.dir = (dir_ / state).string();
    o.state.block_cache_bytes = 8 << 20;
    o.state.write_buffer_bytes = 4 << 20;
    o.dedup.table_slots = 1 << 12;
    o.fraud.bot_user_agents_file = (dir_ / "bots.txt").string();
    o.fraud.ip_blocklist_file = (dir_ / "blocklist.txt").string();
    o.fraud.flood_table_slots = 1 << 10;
    o.changelog_topic = kChangelog;
    auto reader = factory_.CreateReader(
        {{"group.id", "tally-restore"}, {"isolation.level", "read_committed"}});
    EXPECT_TRUE(reader.ok()) << reader.status();
    if (!reader.ok()) return nullptr;
    Restorer::Options r;
    r.changelog_topic = kChangelog;
    r.poll_timeout = absl::Milliseconds(1);
    auto restorer = std::make_unique<Restorer>(r, *std::move(reader));
    auto stage = CoreStage::Create(o, *offers, t->registry.get(), std::move(restorer));
    EXPECT_TRUE(stage.ok()) << stage.status();
    if (!stage.ok()) return nullptr;
    t->stage = std::move(*stage);
    ProcessorOptions p;
    p.consumer_properties = {{"group.id", kGroup}, {"isolation.level", "read_committed"}};
    p.exactly_once = true;
    p.transactional_id = transactional_id;
    p.changelog_topic = kChangelog;
    p.changelog_topic_config = ChangelogTopicConfig();
    p.batch_max_messages = batch_max_messages_;
    p.stop_when_idle = stop_when_idle_;
    p.retry_backoff = absl::ZeroDuration();
    p.shutdown_timeout = absl::ZeroDuration();
    p.clients = &factory_;
    auto processor = Processor::Create(std::move(p), t->stage.get(), *t->registry);
    EXPECT_TRUE(processor.ok()) << processor.status();
    if (!processor.ok()) return nullptr;
    t->processor = std::move(*processor);
    return t;
  }

  void AppendConversion(const std::string& id, const std::string& click_id, TimestampMs t,
                        ConversionStatus status) {
    EventEncoder encoder(WireFormat::kJson);
    std::string value;
    Conversion v;
    v.conversion_id = id;
    v.event_time_ms = t;
    v.offer_id = "off-1";
    v.click_id = click_id;
    v.goal = "sale";
    v.amount.minor = 10000;
    EXPECT_TRUE(Currency::Parse("EUR", &v.amount.currency));
    v.status = status;
    encoder.Encode(v, &value);
    cluster_.Append("conversions", cluster_.PartitionFor("conversions", click_id), click_id, value);
  }

  // `n` clicks, each with one approved conversion on the same partition
  // (keyed by click id), plus a bot click and an undecodable click: n
  // approved commissions are due, two rejections.
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
      AppendConversion(absl::StrCat("o", i), absl::StrCat("c", i), kT0 + i * 1000 + 60'000,
                       ConversionStatus::kApproved);
      due_[{absl::StrCat("o", i), ConversionStatus::kApproved}] = 1;
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
    due_rejections_ = {{"bot_user_agent", 1}, {"malformed_payload", 1}};
  }

  // The second phase: decided only right if the state of the first phase
  // is there. For every click: its conversion is reversed (needs the
  // ledger entry; without it: unknown_conversion) and a second conversion
  // arrives (needs the click; without it: pending, later unattributed).
  void SeedSecondPhase(int n) {
    for (int i = 0; i < n; ++i) {
      AppendConversion(absl::StrCat("o", i), absl::StrCat("c", i), kT0 + i * 1000 + 90'000,
                       ConversionStatus::kReversed);
      due_[{absl::StrCat("o", i), ConversionStatus::kReversed}] = 1;
      AppendConversion(absl::StrCat("q", i), absl::StrCat("c", i), kT0 + i * 1000 + 120'000,
                       ConversionStatus::kApproved);
      due_[{absl::StrCat("q", i), ConversionStatus::kApproved}] = 1;
    }
  }

  // Everything a read_committed consumer reads from `topic` (a fresh
  // PartitionReader from the log start to the LSO).
  std::vector<std::pair<std::string, std::string>> ReadCommitted(const std::string& topic) {
    std::vector<std::pair<std::string, std::string>> out;
    auto reader = factory_.CreateReader({{"isolation.level", "read_committed"}});
    EXPECT_TRUE(reader.ok()) << reader.status();
    if (!reader.ok()) return out;
    std::vector<kafka::TopicPartitionOffset> from;
    const int32_t n = cluster_.PartitionCount(topic);
    for (int32_t p = 0; p < n; ++p) from.push_back({topic, p, kafka::kOffsetBeginning});
    EXPECT_TRUE((*reader)->Assign(from).ok());
    for (int round = 0; round < 10'000; ++round) {
      std::vector<std::unique_ptr<kafka::Message>> messages;
      absl::Status s = (*reader)->Poll(1000, absl::ZeroDuration(), &messages);
      EXPECT_TRUE(s.ok()) << s;
      if (!s.ok()) break;
      for (const auto& m : messages) out.emplace_back(m->key(), m->value());
      bool at_end = true;
      for (int32_t p = 0; p < n; ++p) at_end = at_end && (*reader)->AtEnd({topic, p});
      if (messages.empty() && at_end) break;
    }
    // The same view through the cluster's own accounting.
    size_t committed = 0;
    for (int32_t p = 0; p < n; ++p) committed += cluster_.CommittedRecords(topic, p).size();
    EXPECT_EQ(out.size(), committed) << topic;
    return out;
  }

  std::vector<Seen> CommittedCommissions() {
    EventDecoder decoder(WireFormat::kJson);
    std::vector<Seen> out;
    for (const auto& [key, value] : ReadCommitted("commissions")) {
      Seen s{key, {}};
      auto invalid = decoder.Decode(value, &s.commission);
      EXPECT_FALSE(invalid.has_value()) << value;
      EXPECT_EQ(key, s.commission.commission_id);
      out.push_back(std::move(s));
    }
    return out;
  }
  std::map<std::string, int> CommittedRejections() {
    EventDecoder decoder(WireFormat::kJson);
    std::map<std::string, int> out;
    for (const auto& [key, value] : ReadCommitted("rejected")) {
      RejectedEvent e;
      EXPECT_FALSE(decoder.Decode(value, &e).has_value()) << value;
      ++out[std::string(RejectReasonName(e.reason))];
    }
    return out;
  }
  // Records of `topic` in aborted transactions (what read_uncommitted
  // consumers would have seen of the failed attempts).
  size_t AbortedRecords(const std::string& topic) {
    size_t n = 0;
    for (const kafka::fake::Record& r : cluster_.AllRecords(topic)) {
      n += r.state == TxnState::kAborted ? 1 : 0;
    }
    return n;
  }

  // The exactly-once promise, as read_committed consumers see it: every
  // due commission (conversion, status) exactly once, one commission id
  // per (id, status) exactly once, nothing else; the rejections exactly
  // once; nothing unattributed; no transaction left open.
  void ExpectExactlyOnce() {
    std::map<std::pair<std::string, ConversionStatus>, int> by_conversion;
    std::map<std::pair<std::string, ConversionStatus>, int> by_id;
    for (const Seen& s : CommittedCommissions()) {
      ++by_conversion[{s.commission.conversion_id, s.commission.status}];
      ++by_id[{s.commission.commission_id, s.commission.status}];
    }
    EXPECT_EQ(by_conversion, due_);
    EXPECT_EQ(by_id.size(), due_.size());
    for (const auto& [id, count] : by_id) {
      EXPECT_EQ(count, 1) << "commission " << id.first << " (status "
                          << ConversionStatusName(id.second) << ") seen " << count << " times";
    }
    EXPECT_EQ(CommittedRejections(), due_rejections_);
    EXPECT_TRUE(ReadCommitted("unattributed").empty());
    EXPECT_EQ(cluster_.OpenTransactions(), 0);
  }
  void ExpectAllCommitted() {
    for (const char* topic : {"clicks", "conversions"}) {
      for (int32_t p = 0; p < kPartitions; ++p) {
        EXPECT_EQ(cluster_.Committed(kGroup, topic, p), cluster_.EndOffset(topic, p))
            << topic << "[" << p << "]";
      }
    }
  }

  // Runs a testee to its idle exit; returns the stage's counters (with the
  // pending count of the state at the last commit).
  CoreStageCounters RunToEnd(Testee& t) {
    absl::Status s = t.processor->Run();
    EXPECT_TRUE(s.ok()) << s;
    return t.stage->counters();
  }

  // The state on the changelog is the state: on an empty volume a new
  // instance restores it and decides the second phase as if nothing had
  // happened.
  void ExpectStateRestoredFromTheChangelog(const std::string& fresh_state) {
    SeedSecondPhase(kClicks);
    auto t = MakeTestee(fresh_state);
    ASSERT_NE(t, nullptr);
    const CoreStageCounters c = RunToEnd(*t);
    EXPECT_EQ(c.pending, 0u);
    EXPECT_EQ(c.state_gaps, 0u);
    ExpectExactlyOnce();
    ExpectAllCommitted();
  }

  FakeCluster cluster_;
  FakeClientFactory factory_;
  std::filesystem::path dir_;
  size_t batch_max_messages_ = 8;
  absl::Duration stop_when_idle_ = absl::Nanoseconds(1);
  std::map<std::pair<std::string, ConversionStatus>, int> due_;
  std::map<std::string, int> due_rejections_;
};

TEST_F(ProcessorEosTest, UninterruptedRunIsExactlyOnceAndRestorable) {
  SeedInput(kClicks);
  auto t = MakeTestee("state");
  ASSERT_NE(t, nullptr);
  const CoreStageCounters c = RunToEnd(*t);
  const ProcessorSummary s = t->processor->summary();
  EXPECT_EQ(s.commissions_out, static_cast<uint64_t>(kClicks));
  EXPECT_GT(s.transactions, 2u);
  EXPECT_EQ(s.transactions, s.batches);
  EXPECT_EQ(s.transaction_aborts, 0u);
  EXPECT_EQ(c.pending, 0u);
  t.reset();
  ExpectExactlyOnce();
  ExpectAllCommitted();
  EXPECT_EQ(AbortedRecords("commissions"), 0u);
  EXPECT_TRUE(cluster_.HasTopic(kChangelog));
  ExpectStateRestoredFromTheChangelog("state-fresh");
}

// ---------------------------------------------------------------------------
// 1. A crash at every point of the exactly-once batch.

// The hook points of the batch in protocol order; kBeforePoll here means
// "after the batch's local state write, before the next batch".
const Point kCrashPoints[] = {
    Point::kAfterBeginTransaction,
    Point::kAfterProduce,
    Point::kAfterFlush,
    Point::kAfterSendOffsets,
    Point::kBeforeCommitTransaction,
    Point::kAfterCommitTransaction,  // committed, before CommitBatch (local state)
    Point::kBeforePoll,              // committed and applied, before the next batch
};

struct CrashCase {
  Point point;
  bool same_volume;     // restart on the same state dir, or an empty one
  bool abort_on_crash;  // the crashed transaction aborted at once (timeout),
                        // or left open until the restarted producer's init
};

std::string CaseName(const ::testing::TestParamInfo<std::tuple<Point, bool, bool>>& info) {
  std::string point(kafka::fake::PointName(std::get<0>(info.param)));
  point = absl::StrReplaceAll(point, {{" ", "_"}});
  return absl::StrCat(point, std::get<1>(info.param) ? "_SameVolume" : "_EmptyVolume",
                      std::get<2>(info.param) ? "_Aborted" : "_LeftOpen");
}

class EosCrashTest : public ProcessorEosTest,
                     public ::testing::WithParamInterface<std::tuple<Point, bool, bool>> {};

constexpr int kCrashBatch = 3;  // the batch (transaction) the crash hits

TEST_P(EosCrashTest, RestartAfterCrashIsExactlyOnce) {
  const CrashCase c{std::get<0>(GetParam()), std::get<1>(GetParam()), std::get<2>(GetParam())};
  SeedInput(kClicks);
  cluster_.SetAbortOnCrash(c.abort_on_crash);
  int begun = 0, committed = 0, seen = 0;
  bool crashed = false;
  cluster_.SetHook([&](Point p) {
    if (p == Point::kAfterBeginTransaction) ++begun;
    if (p == Point::kAfterCommitTransaction) ++committed;
    if (p != c.point) return;
    if (c.point == Point::kBeforePoll) {
      if (committed != kCrashBatch) return;
    } else if (begun != kCrashBatch) {
      return;
    }
    // The second produce of the batch: between two records.
    const int nth = c.point == Point::kAfterProduce ? 2 : 1;
    if (++seen != nth) return;
    crashed = true;
    cluster_.CrashNow();
  });
  {
    auto first = MakeTestee("state");
    ASSERT_NE(first, nullptr);
    EXPECT_THROW((void)first->processor->Run(), FakeCrash);
    // Destroying it now is the death of the process: nothing uncommitted
    // survives, the crashed clients run no callbacks.
  }
  cluster_.SetHook(nullptr);
  ASSERT_TRUE(crashed) << "the crash point " << kafka::fake::PointName(c.point)
                       << " was never reached in batch " << kCrashBatch;
  const bool txn_committed =
      c.point == Point::kAfterCommitTransaction || c.point == Point::kBeforePoll;
  if (!c.abort_on_crash && !txn_committed) {
    EXPECT_EQ(cluster_.OpenTransactions(), 1) << "the crashed transaction should be open";
  }
  const int64_t epoch = cluster_.ProducerEpoch(kTxnId);

  auto second = MakeTestee(c.same_volume ? "state" : "state-empty");
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(cluster_.ProducerEpoch(kTxnId), epoch + 1);
  const CoreStageCounters counters = RunToEnd(*second);
  EXPECT_EQ(counters.pending, 0u) << "conversions left pending after the restore";
  EXPECT_EQ(counters.state_gaps, 0u);
  const ProcessorSummary s = second->processor->summary();
  EXPECT_EQ(s.transaction_aborts, 0u);
  second.reset();

  ExpectExactlyOnce();
  ExpectAllCommitted();
  if (c.point == Point::kAfterProduce || c.point == Point::kAfterFlush ||
      c.point == Point::kAfterSendOffsets || c.point == Point::kBeforeCommitTransaction) {
    // The crashed attempt's outputs are on the log, aborted: the check
    // above would have counted them under read_uncommitted.
    EXPECT_GT(AbortedRecords("commissions") + AbortedRecords(kChangelog), 0u);
  }
  if (txn_committed) {
    EXPECT_EQ(AbortedRecords("commissions"), 0u);
  }
  ExpectStateRestoredFromTheChangelog("state-fresh");
}

INSTANTIATE_TEST_SUITE_P(Points, EosCrashTest,
                         ::testing::Combine(::testing::ValuesIn(kCrashPoints), ::testing::Bool(),
                                            ::testing::Bool()),
                         CaseName);

// Restores that take a while (here the first attempt fails on a changelog
// read and the restorer retries after 500 ms, with both tasks still
// restoring): the run goes on until they are done, and their input is
// processed after them.
//
// The restoring tasks' input is paused, and paused partitions do not count
// for AllAssignedAtEof() (meant for half tasks): with every task restoring
// the consumer looks idle, so Run()'s idle exit also waits for
// RestoringTasks() == 0.
TEST_F(ProcessorEosTest, IdleExitWaitsForTasksThatRestore) {
  SeedInput(kClicks);
  {
    auto t = MakeTestee("state");
    ASSERT_NE(t, nullptr);
    RunToEnd(*t);
  }
  SeedSecondPhase(kClicks);
  cluster_.FailNext(Op::kReaderPoll,
                    InjectedError{ErrorClass::kFatal, RD_KAFKA_RESP_ERR__TRANSPORT});
  auto t = MakeTestee("state-empty");
  ASSERT_NE(t, nullptr);
  const CoreStageCounters c = RunToEnd(*t);
  EXPECT_EQ(cluster_.PendingFailures(Op::kReaderPoll), 0);
  EXPECT_EQ(c.pending, 0u);
  t.reset();
  ExpectExactlyOnce();
  ExpectAllCommitted();
}

// While a task restores its input partitions stay paused (design §10.2):
// no poll of the restore fetches their messages, so nothing is sought
// before the activation seek to the restored positions. A seek scripted to
// fail (permanent) after the first poll of the restore would stop the
// processor if a hold-back seek met it (as it did while OnAssigned's resume
// of the new task's halves undid the restore's pause).
TEST_F(ProcessorEosTest, InputOfARestoringTaskStaysPaused) {
  SeedInput(kClicks);
  {
    auto t = MakeTestee("state");
    ASSERT_NE(t, nullptr);
    RunToEnd(*t);
  }
  SeedSecondPhase(kClicks);
  // The first restore attempt fails: both tasks restore for >= 500 ms.
  cluster_.FailNext(Op::kReaderPoll,
                    InjectedError{ErrorClass::kFatal, RD_KAFKA_RESP_ERR__TRANSPORT});
  Testee* running = nullptr;
  int restoring_polls = 0;
  cluster_.SetHook([&](Point p) {
    if (p != Point::kBeforePoll || running == nullptr) return;
    if (running->stage->RestoringTasks() == 0) return;
    // The first poll of the restore fetched the input before the pause
    // took effect (held back, sought back); from the second on nothing of
    // it should be fetched, so nothing is sought until the activation.
    if (++restoring_polls == 2) {
      cluster_.FailNext(
          Op::kSeek, InjectedError{ErrorClass::kPermanent, RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION});
    }
  });
  auto t = MakeTestee("state-empty");
  ASSERT_NE(t, nullptr);
  running = t.get();
  const CoreStageCounters c = RunToEnd(*t);
  cluster_.SetHook(nullptr);
  EXPECT_GE(restoring_polls, 2);
  EXPECT_EQ(c.pending, 0u);
  t.reset();
  ExpectExactlyOnce();
  ExpectAllCommitted();
}

// ---------------------------------------------------------------------------
// 2. Zombies.

// Instance A stalls in the middle of a batch (after its offsets were added
// to the transaction) long enough for its session to time out; instance B,
// the same instance restarted elsewhere (same transactional.id, empty
// volume), fences it and does all the work. When A wakes up its commit
// fails as fenced: its batch never becomes visible.
TEST_F(ProcessorEosTest, ZombieWithTheSameTransactionalIdIsFenced) {
  SeedInput(kClicks);
  int begun = 0;
  bool b_running = false, b_done = false;
  absl::Status b_status;
  cluster_.SetHook([&](Point p) {
    if (b_running) return;  // B's own points
    if (p == Point::kAfterBeginTransaction) ++begun;
    if (p != Point::kAfterSendOffsets || begun != 2 || b_done) return;
    // A's session times out: it leaves the group without knowing it.
    const std::vector<std::string> members = cluster_.Members(kGroup);
    ASSERT_EQ(members.size(), 1u);
    cluster_.LeaveGroup(kGroup, members[0]);
    b_running = true;
    {
      auto b = MakeTestee("state-b");
      ASSERT_NE(b, nullptr);
      b_status = b->processor->Run();
      EXPECT_EQ(b->stage->counters().pending, 0u);
    }
    b_running = false;
    b_done = true;
  });
  auto a = MakeTestee("state-a");
  ASSERT_NE(a, nullptr);
  absl::Status a_status = a->processor->Run();
  cluster_.SetHook(nullptr);
  ASSERT_TRUE(b_done);
  EXPECT_TRUE(b_status.ok()) << b_status;
  EXPECT_FALSE(a_status.ok());
  EXPECT_EQ(kafka::ErrorClassOf(a_status), ErrorClass::kFenced) << a_status;
  EXPECT_EQ(a->processor->summary().transactions, 1u) << "A committed only its first batch";
  a.reset();
  EXPECT_GT(AbortedRecords("commissions"), 0u) << "A's second batch should be on the log, aborted";
  ExpectExactlyOnce();
  ExpectAllCommitted();
  ExpectStateRestoredFromTheChangelog("state-fresh");
}

// The KIP-447 zombie: A (its own transactional.id) stalls after sending its
// offsets; its session times out and B (another instance, another
// transactional.id) takes every task and processes them while A's
// transaction is still open. A's commit then fails (its group generation is
// stale), the transaction aborts, and nothing of it becomes visible.
TEST_F(ProcessorEosTest, ZombieOfAnotherInstanceIsFencedByTheGroupGeneration) {
  SeedInput(kClicks);
  int begun = 0;
  bool b_running = false, b_done = false;
  absl::Status b_status;
  int open_during_b = -1;
  cluster_.SetHook([&](Point p) {
    if (b_running) return;
    if (p == Point::kAfterBeginTransaction) ++begun;
    if (p != Point::kAfterSendOffsets || begun != 2 || b_done) return;
    const std::vector<std::string> members = cluster_.Members(kGroup);
    ASSERT_EQ(members.size(), 1u);
    cluster_.LeaveGroup(kGroup, members[0]);
    b_running = true;
    {
      auto b = MakeTestee("state-b", "tally-i1");
      ASSERT_NE(b, nullptr);
      b_status = b->processor->Run();
      open_during_b = cluster_.OpenTransactions();
    }
    b_running = false;
    b_done = true;
  });
  auto a = MakeTestee("state-a", "tally-i0");
  ASSERT_NE(a, nullptr);
  absl::Status a_status = a->processor->Run();
  cluster_.SetHook(nullptr);
  ASSERT_TRUE(b_done);
  EXPECT_TRUE(b_status.ok()) << b_status;
  EXPECT_EQ(open_during_b, 1) << "A's transaction stays open while B runs";
  const ProcessorSummary s = a->processor->summary();
  EXPECT_EQ(s.transactions, 1u) << "A committed only its first batch";
  EXPECT_GE(s.transaction_aborts, 1u);
  (void)a_status;  // A may stop (its member is gone) or idle out; either is fine
  a.reset();
  EXPECT_EQ(cluster_.OpenTransactions(), 0);
  EXPECT_GT(AbortedRecords("commissions"), 0u);
  ExpectExactlyOnce();
  ExpectAllCommitted();
  ExpectStateRestoredFromTheChangelog("state-fresh");
}

// ---------------------------------------------------------------------------
// 3. Rebalances.

// A second member joins after the first transaction (the tasks are revoked
// inside the next Poll, half come back and restore their tail), then leaves
// again (the other half comes back from the committed offsets and the
// changelog).
TEST_F(ProcessorEosTest, MemberJoiningAndLeavingMidRunIsExactlyOnce) {
  SeedInput(kClicks);
  int commits = 0;
  cluster_.SetHook([&](Point p) {
    if (p != Point::kAfterCommitTransaction) return;
    ++commits;
    if (commits == 1) cluster_.JoinGroup(kGroup, "intruder", {"clicks", "conversions"});
    if (commits == 3) cluster_.LeaveGroup(kGroup, "intruder");
  });
  auto t = MakeTestee("state");
  ASSERT_NE(t, nullptr);
  const CoreStageCounters c = RunToEnd(*t);
  cluster_.SetHook(nullptr);
  EXPECT_GE(commits, 4);
  EXPECT_GE(cluster_.RevokeCallbacks(kGroup), 2);
  EXPECT_EQ(c.state_gaps, 0u);
  EXPECT_EQ(c.pending, 0u);
  EXPECT_EQ(t->processor->summary().transaction_aborts, 0u);
  t.reset();
  ExpectExactlyOnce();
  ExpectAllCommitted();
  ExpectStateRestoredFromTheChangelog("state-fresh");
}

// The member joins between send_offsets_to_transaction and
// commit_transaction: the commit fails (KIP-447: the offsets' generation is
// stale), the batch is aborted and replayed after the rebalance; the member
// leaves later.
TEST_F(ProcessorEosTest, RebalanceInsideTheTransactionAbortsAndReplaysIt) {
  SeedInput(kClicks);
  int sent = 0, commits = 0;
  cluster_.SetHook([&](Point p) {
    if (p == Point::kAfterSendOffsets && ++sent == 2) {
      cluster_.JoinGroup(kGroup, "intruder", {"clicks", "conversions"});
    }
    if (p == Point::kAfterCommitTransaction && ++commits == 3) {
      cluster_.LeaveGroup(kGroup, "intruder");
    }
  });
  auto t = MakeTestee("state");
  ASSERT_NE(t, nullptr);
  const CoreStageCounters c = RunToEnd(*t);
  cluster_.SetHook(nullptr);
  EXPECT_GE(commits, 3);
  const ProcessorSummary s = t->processor->summary();
  EXPECT_EQ(s.transaction_aborts, 1u);
  EXPECT_EQ(s.batch_replays, 1u);
  EXPECT_EQ(c.state_gaps, 0u);
  EXPECT_EQ(c.pending, 0u);
  t.reset();
  EXPECT_GT(AbortedRecords("commissions") + AbortedRecords(kChangelog), 0u);
  ExpectExactlyOnce();
  ExpectAllCommitted();
  ExpectStateRestoredFromTheChangelog("state-fresh");
}

// ---------------------------------------------------------------------------
// 4. Aborted transactions replayed in place.

enum class Failure { kCommitTransaction, kDelivery, kProduce, kSendOffsets };

class EosAbortTest : public ProcessorEosTest, public ::testing::WithParamInterface<Failure> {};

TEST_P(EosAbortTest, AbortedBatchIsReplayedExactlyOnceAndTheChangelogStaysTrue) {
  SeedInput(kClicks);
  const Failure failure = GetParam();
  int begun = 0;
  bool injected = false;
  cluster_.SetHook([&](Point p) {
    if (p == Point::kAfterBeginTransaction) ++begun;
    if (begun != kCrashBatch || injected) return;
    switch (failure) {
      case Failure::kCommitTransaction:
        // Checked right after this hook: the commit fails, abortable.
        if (p != Point::kBeforeCommitTransaction) return;
        cluster_.FailNext(
            Op::kCommitTransaction,
            InjectedError{ErrorClass::kAbortable, RD_KAFKA_RESP_ERR_INVALID_TXN_STATE});
        break;
      case Failure::kDelivery:
        // The batch's second record is lost: the flush fails and the
        // transaction is abortable.
        if (p != Point::kAfterProduce) return;
        cluster_.FailNext(Op::kDeliver, InjectedError{ErrorClass::kRetriable,
                                                      RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS});
        break;
      case Failure::kProduce:
        if (p != Point::kAfterProduce) return;
        cluster_.FailNext(Op::kProduce,
                          InjectedError{ErrorClass::kRetriable, RD_KAFKA_RESP_ERR__QUEUE_FULL});
        break;
      case Failure::kSendOffsets:
        if (p != Point::kAfterFlush) return;
        cluster_.FailNext(
            Op::kSendOffsets,
            InjectedError{ErrorClass::kAbortable, RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE});
        break;
    }
    injected = true;
  });
  auto t = MakeTestee("state");
  ASSERT_NE(t, nullptr);
  const CoreStageCounters c = RunToEnd(*t);
  cluster_.SetHook(nullptr);
  ASSERT_TRUE(injected);
  const ProcessorSummary s = t->processor->summary();
  // One failure, one abort, one replay (for a lost delivery too: see
  // DeliveryFailureIsReplayedOnce).
  EXPECT_EQ(s.transaction_aborts, 1u);
  EXPECT_EQ(s.batch_replays, 1u);
  EXPECT_EQ(c.pending, 0u);
  EXPECT_EQ(c.replayed_skipped, 0u) << "an aborted batch is not covered by the state";
  t.reset();
  EXPECT_GT(AbortedRecords("commissions") + AbortedRecords(kChangelog), 0u);
  ExpectExactlyOnce();
  ExpectAllCommitted();
  // The state after the replay, restored on an empty volume: the
  // conversions of the aborted-then-replayed batch have their ledger
  // entries (their reversals are attributed, not unknown_conversion) and
  // their clicks (new conversions earn).
  ExpectStateRestoredFromTheChangelog("state-fresh");
}

// One lost delivery costs one replay: the lost record makes the
// transaction abortable, the batch is aborted and replayed, and the
// aborted transaction's failed delivery report must not fail the replay's
// first Flush() as well (AbortTransaction forgets the aborted messages'
// failures, in RdProducer as in the fake; before that, each lost delivery
// cost two aborts and two replays).
TEST_F(ProcessorEosTest, DeliveryFailureIsReplayedOnce) {
  SeedInput(kClicks);
  int begun = 0;
  bool injected = false;
  cluster_.SetHook([&](Point p) {
    if (p == Point::kAfterBeginTransaction) ++begun;
    if (p != Point::kAfterProduce || begun != kCrashBatch || injected) return;
    cluster_.FailNext(Op::kDeliver,
                      InjectedError{ErrorClass::kRetriable, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS});
    injected = true;
  });
  auto t = MakeTestee("state");
  ASSERT_NE(t, nullptr);
  RunToEnd(*t);
  cluster_.SetHook(nullptr);
  ASSERT_TRUE(injected);
  const ProcessorSummary s = t->processor->summary();
  EXPECT_EQ(s.transaction_aborts, 1u);
  EXPECT_EQ(s.batch_replays, 1u);
  t.reset();
  ExpectExactlyOnce();
}

// A produce error on a changelog record (not an output) is aborted and
// replayed like any other produce error: the context CoreStage adds keeps
// the Kafka error class that Processor::Replayable() decides by (once, a
// bare absl::Status(code, message) there made it fatal).
TEST_F(ProcessorEosTest, ProduceErrorOnAChangelogRecordReplaysTheBatch) {
  SeedInput(kClicks);
  int begun = 0;
  int64_t changelog_at_begin = 0;
  bool injected = false;
  auto changelog_end = [&] {
    int64_t n = 0;
    for (int32_t p = 0; p < kPartitions; ++p) n += cluster_.EndOffset(kChangelog, p);
    return n;
  };
  cluster_.SetHook([&](Point p) {
    if (p == Point::kAfterBeginTransaction && ++begun == kCrashBatch) {
      changelog_at_begin = changelog_end();
    }
    if (p != Point::kAfterProduce || begun != kCrashBatch || injected) return;
    if (changelog_end() == changelog_at_begin) return;  // an output, not a changelog record
    // The batch's first changelog record was appended; the next one fails.
    cluster_.FailNext(Op::kProduce,
                      InjectedError{ErrorClass::kRetriable, RD_KAFKA_RESP_ERR__QUEUE_FULL});
    injected = true;
  });
  auto t = MakeTestee("state");
  ASSERT_NE(t, nullptr);
  const CoreStageCounters c = RunToEnd(*t);
  cluster_.SetHook(nullptr);
  ASSERT_TRUE(injected);
  const ProcessorSummary s = t->processor->summary();
  EXPECT_EQ(s.transaction_aborts, 1u);
  EXPECT_EQ(s.batch_replays, 1u);
  EXPECT_EQ(c.pending, 0u);
  t.reset();
  ExpectExactlyOnce();
  ExpectAllCommitted();
  ExpectStateRestoredFromTheChangelog("state-fresh");
}

INSTANTIATE_TEST_SUITE_P(Failures, EosAbortTest,
                         ::testing::Values(Failure::kCommitTransaction, Failure::kDelivery,
                                           Failure::kProduce, Failure::kSendOffsets),
                         [](const auto& info) {
                           switch (info.param) {
                             case Failure::kCommitTransaction:
                               return std::string("CommitTransaction");
                             case Failure::kDelivery:
                               return std::string("Delivery");
                             case Failure::kProduce:
                               return std::string("Produce");
                             case Failure::kSendOffsets:
                               return std::string("SendOffsets");
                           }
                           return std::string("unknown");
                         });

}  // namespace
}  // namespace tally
