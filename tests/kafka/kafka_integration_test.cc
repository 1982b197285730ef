// Integration tests of processor/kafka against the real tally-devbroker
// (librdkafka's mock cluster in a child process). Labelled `integration`.
//
// The mock makes every rebalance wait about session.timeout.ms, so the
// consumers use 6000 ms and each test keeps to one or two group joins.
#include <algorithm>
#include <cstdint>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "processor/kafka/kafka.h"
#include "tests/kafka/devbroker_process.h"

namespace tally::kafka {
namespace {

using test_support::DevBrokerProcess;

constexpr absl::Duration kTestBudget = absl::Seconds(25);

struct Consumed {
  std::string topic;
  int32_t partition;
  int64_t offset;
  std::string key;
  std::string value;
};

class RecordingListener : public RebalanceListener {
 public:
  void OnAssigned(const std::vector<TopicPartition>& partitions) override {
    assigned.insert(partitions.begin(), partitions.end());
  }
  void OnRevoked(const std::vector<TopicPartition>& partitions) override {
    revoked.insert(partitions.begin(), partitions.end());
  }
  std::set<TopicPartition> assigned;
  std::set<TopicPartition> revoked;
};

class KafkaIntegrationTest : public ::testing::Test {
 protected:
  void StartBroker(const DevBrokerProcess::Options& options) {
    auto broker = DevBrokerProcess::Start(options);
    ASSERT_TRUE(broker.ok()) << broker.status();
    broker_ = std::move(*broker);
  }
  void StartBroker(int partitions, const std::vector<std::string>& topics) {
    DevBrokerProcess::Options options;
    options.partitions = partitions;
    options.topics = topics;
    StartBroker(options);
  }

  Properties ProducerProps() const {
    return {{"bootstrap.servers", broker_->bootstrap_servers()}, {"linger.ms", "5"}};
  }
  Properties ConsumerProps(const std::string& group) const {
    return {{"bootstrap.servers", broker_->bootstrap_servers()},
            {"group.id", group},
            {"session.timeout.ms", "6000"},
            {"heartbeat.interval.ms", "500"},
            // The mock answers an empty fetch only after fetch.wait.max.ms.
            {"fetch.wait.max.ms", "50"}};
  }

  // Polls until `expected` messages arrived and every assigned partition is
  // at EOF, or the test budget runs out.
  std::vector<Consumed> ConsumeAll(Consumer& consumer, size_t expected) {
    std::vector<Consumed> got;
    const absl::Time deadline = absl::Now() + kTestBudget;
    while (absl::Now() < deadline) {
      std::vector<std::unique_ptr<Message>> batch;
      absl::Status status = consumer.Poll(500, absl::Milliseconds(200), &batch);
      EXPECT_TRUE(status.ok()) << status;
      if (!status.ok()) break;
      for (const auto& m : batch) {
        got.push_back(Consumed{std::string(m->topic()), m->partition(), m->offset(),
                               std::string(m->key()), std::string(m->value())});
      }
      if (got.size() >= expected && consumer.AllAssignedAtEof()) break;
    }
    return got;
  }

  std::unique_ptr<DevBrokerProcess> broker_;
};

// Produces `count` messages keyed "key-<i % 97>" with values "<prefix><i>"
// and returns the producer after a successful Flush.
std::vector<DeliveryReport> ProduceAndFlush(const Properties& props, const std::string& topic,
                                            int count, const std::string& prefix) {
  std::vector<DeliveryReport> reports;
  auto producer =
      Producer::Create(props, [&reports](const DeliveryReport& r) { reports.push_back(r); });
  EXPECT_TRUE(producer.ok()) << producer.status();
  if (!producer.ok()) return reports;
  for (int i = 0; i < count; ++i) {
    absl::Status status = (*producer)->Produce(topic, -1, absl::StrCat("key-", i % 97),
                                               absl::StrCat(prefix, i), static_cast<uint64_t>(i));
    EXPECT_TRUE(status.ok()) << status;
  }
  absl::Status flushed = (*producer)->Flush(absl::Seconds(20));
  EXPECT_TRUE(flushed.ok()) << flushed;
  EXPECT_EQ((*producer)->delivered(), static_cast<uint64_t>(count));
  EXPECT_EQ((*producer)->failed(), 0u);
  return reports;
}

TEST_F(KafkaIntegrationTest, EveryProducedMessageGetsOneDeliveryReportWithPartitionAndOffset) {
  // Given a devbroker with 8 partitions,
  StartBroker(8, {"clicks"});
  constexpr int kCount = 5000;
  // when 5000 keyed messages are produced and flushed,
  const absl::Time start = absl::Now();
  std::vector<DeliveryReport> reports = ProduceAndFlush(ProducerProps(), "clicks", kCount, "v-");
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::cout << "produced+flushed " << kCount << " messages in " << seconds << " s ("
            << kCount / seconds << " msg/s, including client start-up)\n";
  // then each tag is reported exactly once, with a valid partition, and the
  // offsets of each partition are exactly 0..n-1.
  ASSERT_EQ(reports.size(), static_cast<size_t>(kCount));
  std::vector<int> seen(kCount, 0);
  std::map<int32_t, std::set<int64_t>> offsets;
  std::map<std::string, std::set<int32_t>> partitions_of_key;
  for (const DeliveryReport& r : reports) {
    ASSERT_LT(r.tag, static_cast<uint64_t>(kCount));
    ++seen[r.tag];
    EXPECT_EQ(r.error, 0) << r.error_text;
    EXPECT_EQ(r.topic, "clicks");
    ASSERT_GE(r.partition, 0);
    ASSERT_LT(r.partition, 8);
    EXPECT_TRUE(offsets[r.partition].insert(r.offset).second) << "duplicate offset";
    partitions_of_key[absl::StrCat("key-", r.tag % 97)].insert(r.partition);
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), kCount);
  for (const auto& [partition, set] : offsets) {
    EXPECT_EQ(*set.begin(), 0) << "partition " << partition;
    EXPECT_EQ(*set.rbegin(), static_cast<int64_t>(set.size()) - 1) << "partition " << partition;
  }
  EXPECT_GT(offsets.size(), 4u) << "97 keys should spread over most of 8 partitions";
  for (const auto& [key, parts] : partitions_of_key) {
    EXPECT_EQ(parts.size(), 1u) << key << " landed on several partitions";
  }
}

TEST_F(KafkaIntegrationTest, ConsumerGroupReceivesEveryMessageExactlyOnceThenReachesEof) {
  StartBroker(8, {"clicks"});
  constexpr int kCount = 3000;
  ProduceAndFlush(ProducerProps(), "clicks", kCount, "v-");

  RecordingListener listener;
  auto consumer = Consumer::Create(ConsumerProps("exactly-once"), &listener);
  ASSERT_TRUE(consumer.ok()) << consumer.status();
  ASSERT_TRUE((*consumer)->Subscribe({"clicks"}).ok());
  const absl::Time start = absl::Now();
  std::vector<Consumed> got = ConsumeAll(**consumer, kCount);
  std::cout << "consumed " << got.size() << " messages in "
            << absl::ToDoubleSeconds(absl::Now() - start) << " s (including the group join)\n";

  ASSERT_EQ(got.size(), static_cast<size_t>(kCount));
  std::map<std::string, int> count_of_value;
  for (const Consumed& c : got) {
    ++count_of_value[c.value];
    int i = std::stoi(c.value.substr(2));
    EXPECT_EQ(c.key, absl::StrCat("key-", i % 97));
    EXPECT_EQ(c.topic, "clicks");
  }
  EXPECT_EQ(count_of_value.size(), static_cast<size_t>(kCount));
  for (const auto& [value, n] : count_of_value) EXPECT_EQ(n, 1) << value;
  EXPECT_TRUE((*consumer)->AllAssignedAtEof());
  EXPECT_EQ((*consumer)->Assignment().size(), 8u);
  EXPECT_EQ(listener.assigned.size(), 8u);

  // Close revokes through the listener and is idempotent.
  EXPECT_TRUE((*consumer)->Close().ok());
  EXPECT_TRUE((*consumer)->Close().ok());
  EXPECT_EQ(listener.revoked.size(), 8u);
  EXPECT_FALSE((*consumer)->AllAssignedAtEof());
}

TEST_F(KafkaIntegrationTest, SecondConsumerOfTheGroupResumesAfterCommittedOffsets) {
  StartBroker(4, {"clicks"});
  constexpr int kFirst = 400;
  constexpr int kSecond = 300;
  ProduceAndFlush(ProducerProps(), "clicks", kFirst, "first-");
  {
    auto consumer = Consumer::Create(ConsumerProps("resume"), nullptr);
    ASSERT_TRUE(consumer.ok()) << consumer.status();
    ASSERT_TRUE((*consumer)->Subscribe({"clicks"}).ok());
    std::vector<Consumed> got = ConsumeAll(**consumer, kFirst);
    ASSERT_EQ(got.size(), static_cast<size_t>(kFirst));
    std::map<int32_t, int64_t> next;
    for (const Consumed& c : got) next[c.partition] = std::max(next[c.partition], c.offset + 1);
    std::vector<TopicPartitionOffset> offsets;
    for (const auto& [partition, offset] : next) offsets.push_back({"clicks", partition, offset});
    absl::Status committed = (*consumer)->Commit(offsets);
    ASSERT_TRUE(committed.ok()) << committed;
  }  // the destructor closes: the group is empty again

  ProduceAndFlush(ProducerProps(), "clicks", kSecond, "second-");
  auto consumer = Consumer::Create(ConsumerProps("resume"), nullptr);
  ASSERT_TRUE(consumer.ok()) << consumer.status();
  ASSERT_TRUE((*consumer)->Subscribe({"clicks"}).ok());
  std::vector<Consumed> got = ConsumeAll(**consumer, kSecond);
  ASSERT_EQ(got.size(), static_cast<size_t>(kSecond));
  std::set<std::string> values;
  for (const Consumed& c : got) {
    EXPECT_TRUE(absl::StartsWith(c.value, "second-")) << c.value << " was already committed";
    values.insert(c.value);
  }
  EXPECT_EQ(values.size(), static_cast<size_t>(kSecond));
  EXPECT_TRUE((*consumer)->AllAssignedAtEof());
}

// A group member as Tally's processor is written: it commits the next offset
// of everything it processed after every poll (its batch), and again for the
// revoked partitions in OnRevoked, so a partition that moves is not read
// twice. The mock answers a commit made inside an eager revoke with
// REBALANCE_IN_PROGRESS (real brokers accept it while the generation is
// still current), which is why the per-batch commit is the one that counts:
// the revoke commit may only fail when it has nothing new to commit.
class CommittingMember : public RebalanceListener {
 public:
  ~CommittingMember() override { Leave(); }
  void OnAssigned(const std::vector<TopicPartition>& partitions) override {
    ++assign_calls;
    for (const TopicPartition& p : partitions) assigned.insert(p);
  }
  void OnRevoked(const std::vector<TopicPartition>& partitions) override {
    std::vector<TopicPartitionOffset> offsets;
    bool outstanding = false;
    for (const TopicPartition& p : partitions) {
      assigned.erase(p);
      auto it = next.find(p.partition);
      if (it == next.end()) continue;
      offsets.push_back({p.topic, p.partition, it->second});
      outstanding |= committed[p.partition] != it->second;
    }
    if (offsets.empty()) return;
    absl::Status status = consumer->Commit(offsets);
    if (outstanding) {
      EXPECT_TRUE(status.ok()) << "commit on revoke: " << status;
    }
  }
  void Take(std::vector<Consumed>* all, absl::Duration timeout) {
    std::vector<std::unique_ptr<Message>> batch;
    absl::Status status = consumer->Poll(500, timeout, &batch);
    EXPECT_TRUE(status.ok()) << status;
    std::vector<TopicPartitionOffset> offsets;
    for (const auto& m : batch) {
      all->push_back(Consumed{std::string(m->topic()), m->partition(), m->offset(),
                              std::string(m->key()), std::string(m->value())});
      next[m->partition()] = m->offset() + 1;
    }
    if (batch.empty()) return;
    for (const auto& [partition, offset] : next) {
      if (committed[partition] != offset) offsets.push_back({"clicks", partition, offset});
    }
    status = consumer->Commit(offsets);
    EXPECT_TRUE(status.ok()) << "batch commit: " << status;
    if (status.ok()) {
      for (const auto& o : offsets) committed[o.partition] = o.offset;
    }
  }
  // Leaves the group (the listener's OnRevoked still has a consumer to
  // commit with), then destroys it.
  void Leave() {
    if (!consumer) return;
    EXPECT_TRUE(consumer->Close().ok());
    consumer.reset();
  }

  std::unique_ptr<Consumer> consumer;
  std::set<TopicPartition> assigned;  // as the listener saw it
  std::map<int32_t, int64_t> next;
  std::map<int32_t, int64_t> committed;
  int assign_calls = 0;
};

class RebalanceProtocolTest : public KafkaIntegrationTest,
                              public ::testing::WithParamInterface<const char*> {};

TEST_P(RebalanceProtocolTest, SecondMemberTakesOverPartitionsWithoutRereadingThem) {
  // Given 8 partitions fully read by member A,
  StartBroker(8, {"clicks"});
  constexpr int kBefore = 1000;
  constexpr int kAfter = 1000;
  ProduceAndFlush(ProducerProps(), "clicks", kBefore, "before-");
  Properties props = ConsumerProps(absl::StrCat("rebalance-", GetParam()));
  props["partition.assignment.strategy"] = GetParam();
  CommittingMember a;
  CommittingMember b;
  auto created = Consumer::Create(props, &a);
  ASSERT_TRUE(created.ok()) << created.status();
  a.consumer = std::move(*created);
  ASSERT_TRUE(a.consumer->Subscribe({"clicks"}).ok());
  std::vector<Consumed> all;
  const absl::Time deadline = absl::Now() + kTestBudget;
  while (absl::Now() < deadline && !(all.size() >= kBefore && a.consumer->AllAssignedAtEof())) {
    a.Take(&all, absl::Milliseconds(200));
  }
  ASSERT_EQ(all.size(), static_cast<size_t>(kBefore));
  ASSERT_EQ(a.consumer->Assignment().size(), 8u);

  // when member B joins (A keeps polling so the rebalance can complete),
  created = Consumer::Create(props, &b);
  ASSERT_TRUE(created.ok()) << created.status();
  b.consumer = std::move(*created);
  ASSERT_TRUE(b.consumer->Subscribe({"clicks"}).ok());
  while (absl::Now() < deadline &&
         !(b.consumer->AllAssignedAtEof() && a.consumer->AllAssignedAtEof() &&
           a.consumer->Assignment().size() + b.consumer->Assignment().size() == 8)) {
    a.Take(&all, absl::Milliseconds(100));
    b.Take(&all, absl::Milliseconds(100));
  }
  // then the partitions are split without overlap, B re-read nothing,
  std::vector<TopicPartition> of_a = a.consumer->Assignment();
  std::vector<TopicPartition> of_b = b.consumer->Assignment();
  EXPECT_FALSE(of_a.empty());
  EXPECT_FALSE(of_b.empty());
  std::set<TopicPartition> both(of_a.begin(), of_a.end());
  both.insert(of_b.begin(), of_b.end());
  EXPECT_EQ(both.size(), 8u);
  EXPECT_EQ(of_a.size() + of_b.size(), 8u);
  EXPECT_EQ(std::set<TopicPartition>(of_a.begin(), of_a.end()), a.assigned);
  EXPECT_EQ(std::set<TopicPartition>(of_b.begin(), of_b.end()), b.assigned);
  EXPECT_EQ(all.size(), static_cast<size_t>(kBefore)) << "B re-read committed messages";

  // and new messages reach exactly one of them.
  ProduceAndFlush(ProducerProps(), "clicks", kAfter, "after-");
  while (absl::Now() < deadline &&
         !(all.size() >= kBefore + kAfter && a.consumer->AllAssignedAtEof() &&
           b.consumer->AllAssignedAtEof())) {
    a.Take(&all, absl::Milliseconds(100));
    b.Take(&all, absl::Milliseconds(100));
  }
  std::map<std::string, int> count_of_value;
  for (const Consumed& c : all) ++count_of_value[c.value];
  EXPECT_EQ(all.size(), static_cast<size_t>(kBefore + kAfter));
  EXPECT_EQ(count_of_value.size(), static_cast<size_t>(kBefore + kAfter));
  b.Leave();
  a.Leave();
}

INSTANTIATE_TEST_SUITE_P(Protocols, RebalanceProtocolTest,
                         ::testing::Values("cooperative-sticky", "range"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           return std::string(info.param) == "range" ? "Eager" : "Cooperative";
                         });

TEST_F(KafkaIntegrationTest, FullLocalQueueStillDeliversEverything) {
  StartBroker(4, {"clicks"});
  Properties props = ProducerProps();
  props["queue.buffering.max.messages"] = "10";
  uint64_t ok_reports = 0;
  auto producer = Producer::Create(props, [&ok_reports](const DeliveryReport& r) {
    if (r.error == 0) ++ok_reports;
  });
  ASSERT_TRUE(producer.ok()) << producer.status();

  // A zero timeout shows the queue really fills up (and the refused message
  // is reported, not silently dropped) ...
  uint64_t accepted = 0;
  absl::Status refused;
  for (int i = 0; i < 100 && refused.ok(); ++i) {
    refused = (*producer)->Produce("clicks", -1, "k", "zero-timeout", i, absl::ZeroDuration());
    if (refused.ok()) ++accepted;
  }
  ASSERT_FALSE(refused.ok()) << "the 10-message queue never filled";
  EXPECT_EQ(refused.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(ErrorClassOf(refused), ErrorClass::kRetriable);
  EXPECT_LE(accepted, 10u);

  // ... and with a timeout, Produce() polls and retries until each fits.
  constexpr int kCount = 3000;
  for (int i = 0; i < kCount; ++i) {
    absl::Status status = (*producer)->Produce("clicks", -1, absl::StrCat("k", i), "v", 1000 + i);
    ASSERT_TRUE(status.ok()) << status;
  }
  ASSERT_TRUE((*producer)->Flush(absl::Seconds(20)).ok());
  EXPECT_EQ((*producer)->delivered(), accepted + kCount);
  EXPECT_EQ(ok_reports, accepted + kCount);
  EXPECT_EQ((*producer)->failed(), 0u);
}

TEST_F(KafkaIntegrationTest, PartitionCountReturnsTheDevbrokersPartitions) {
  DevBrokerProcess::Options options;
  options.partitions = 5;
  options.topics = {"clicks", "conversions"};
  options.topic_partitions = {{"conversions", 3}, {"rejected", 1}};
  StartBroker(options);
  auto producer = Producer::Create(ProducerProps());
  ASSERT_TRUE(producer.ok()) << producer.status();
  auto clicks = (*producer)->PartitionCount("clicks", absl::Seconds(10));
  ASSERT_TRUE(clicks.ok()) << clicks.status();
  EXPECT_EQ(*clicks, 5);
  auto conversions = (*producer)->PartitionCount("conversions", absl::Seconds(10));
  ASSERT_TRUE(conversions.ok()) << conversions.status();
  EXPECT_EQ(*conversions, 3);
  auto rejected = (*producer)->PartitionCount("rejected", absl::Seconds(10));
  ASSERT_TRUE(rejected.ok()) << rejected.status();
  EXPECT_EQ(*rejected, 1);
}

TEST_F(KafkaIntegrationTest, TransactionCallsSucceedAgainstTheMock) {
  // The mock accepts transactions without effect; this checks that our
  // calls are made in a valid order and their results are surfaced.
  StartBroker(2, {"clicks", "commissions"});
  ProduceAndFlush(ProducerProps(), "clicks", 10, "v-");
  auto consumer = Consumer::Create(ConsumerProps("txn"), nullptr);
  ASSERT_TRUE(consumer.ok()) << consumer.status();
  ASSERT_TRUE((*consumer)->Subscribe({"clicks"}).ok());
  std::vector<Consumed> got = ConsumeAll(**consumer, 10);
  ASSERT_EQ(got.size(), 10u);

  auto producer = Producer::Create(ProducerProps(), nullptr, "tally-test-txn");
  ASSERT_TRUE(producer.ok()) << producer.status();
  ASSERT_TRUE((*producer)->BeginTransaction().ok());
  for (const Consumed& c : got) {
    ASSERT_TRUE((*producer)->Produce("commissions", -1, c.key, c.value).ok());
  }
  std::map<int32_t, int64_t> next;
  for (const Consumed& c : got) next[c.partition] = std::max(next[c.partition], c.offset + 1);
  std::vector<TopicPartitionOffset> offsets;
  for (const auto& [partition, offset] : next) offsets.push_back({"clicks", partition, offset});
  absl::Status sent = (*producer)->SendOffsetsToTransaction(offsets, **consumer, absl::Seconds(10));
  ASSERT_TRUE(sent.ok()) << sent;
  absl::Status committed = (*producer)->CommitTransaction(absl::Seconds(10));
  ASSERT_TRUE(committed.ok()) << committed;
  EXPECT_EQ((*producer)->delivered(), 10u);

  ASSERT_TRUE((*producer)->BeginTransaction().ok());
  ASSERT_TRUE((*producer)->Produce("commissions", -1, "k", "aborted").ok());
  absl::Status aborted = (*producer)->AbortTransaction(absl::Seconds(10));
  ASSERT_TRUE(aborted.ok()) << aborted;
  // Purged messages are the caller's own doing: they do not fail Flush().
  EXPECT_TRUE((*producer)->Flush(absl::Seconds(5)).ok());
}

}  // namespace
}  // namespace tally::kafka
