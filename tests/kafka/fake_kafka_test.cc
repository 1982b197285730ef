// The in-process fake keeps the Kafka semantics the processor tests rely
// on: a green processor_test means nothing if the fake is wrong.
#include "processor/kafka/fake_kafka.h"

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "librdkafka/rdkafka.h"

namespace tally::kafka::fake {
namespace {

class RecordingListener final : public RebalanceListener {
 public:
  void OnAssigned(const std::vector<TopicPartition>& partitions) override {
    events.push_back("assign:" + Names(partitions));
  }
  void OnRevoked(const std::vector<TopicPartition>& partitions) override {
    events.push_back("revoke:" + Names(partitions));
  }
  static std::string Names(const std::vector<TopicPartition>& partitions) {
    std::string out;
    for (const TopicPartition& tp : partitions) {
      out += (out.empty() ? "" : ",") + tp.topic + std::to_string(tp.partition);
    }
    return out;
  }
  std::vector<std::string> events;
};

class FakeKafkaTest : public ::testing::Test {
 protected:
  FakeKafkaTest() : factory_(&cluster_) {
    cluster_.CreateTopic("a", 2);
    cluster_.CreateTopic("b", 2);
  }
  std::unique_ptr<Consumer> MakeConsumer(RebalanceListener* listener) {
    auto c = factory_.CreateConsumer({{"group.id", "g"}}, listener);
    EXPECT_TRUE(c.ok()) << c.status();
    EXPECT_TRUE((*c)->Subscribe({"a", "b"}).ok());
    return std::move(*c);
  }
  std::unique_ptr<Producer> MakeProducer(const std::string& transactional_id = "",
                                         Producer::DeliveryHandler on_delivery = nullptr) {
    auto p = factory_.CreateProducer({}, transactional_id, std::move(on_delivery));
    EXPECT_TRUE(p.ok()) << p.status();
    return std::move(*p);
  }
  std::unique_ptr<Consumer> MakeIsolatedConsumer(const std::string& group, bool read_committed) {
    Properties props{{"group.id", group}};
    if (read_committed) props["isolation.level"] = "read_committed";
    auto c = factory_.CreateConsumer(props, nullptr);
    EXPECT_TRUE(c.ok()) << c.status();
    EXPECT_TRUE((*c)->Subscribe({"a"}).ok());
    return std::move(*c);
  }
  std::unique_ptr<PartitionReader> MakeReader(bool read_committed) {
    Properties props;
    if (read_committed) props["isolation.level"] = "read_committed";
    auto r = factory_.CreateReader(props);
    EXPECT_TRUE(r.ok()) << r.status();
    return std::move(*r);
  }
  // Values of every message one Poll returns ("<null>" for tombstones).
  template <typename Client>
  static std::vector<std::string> PollValues(Client& client) {
    std::vector<std::unique_ptr<Message>> out;
    EXPECT_TRUE(client.Poll(100, absl::ZeroDuration(), &out).ok());
    std::vector<std::string> values;
    for (const auto& m : out) {
      values.push_back(m->value_is_null() ? "<null>" : std::string(m->value()));
    }
    return values;
  }
  static std::vector<std::string> Values(const std::vector<Record>& records) {
    std::vector<std::string> values;
    for (const Record& r : records) values.push_back(r.value_is_null ? "<null>" : r.value);
    return values;
  }
  FakeCluster cluster_;
  FakeClientFactory factory_;
};

using Strings = std::vector<std::string>;

TEST_F(FakeKafkaTest, RangeAssignmentKeepsPartitionPOfEveryTopicOnOneMember) {
  RecordingListener l1, l2;
  auto c1 = MakeConsumer(&l1);
  std::vector<std::unique_ptr<Message>> out;
  ASSERT_TRUE(c1->Poll(10, absl::ZeroDuration(), &out).ok());
  EXPECT_EQ(l1.events, (std::vector<std::string>{"assign:a0,a1,b0,b1"}));
  auto c2 = MakeConsumer(&l2);
  ASSERT_TRUE(c1->Poll(10, absl::ZeroDuration(), &out).ok());
  ASSERT_TRUE(c2->Poll(10, absl::ZeroDuration(), &out).ok());
  // Eager: everything revoked before the new assignment.
  EXPECT_EQ(l1.events,
            (std::vector<std::string>{"assign:a0,a1,b0,b1", "revoke:a0,a1,b0,b1", "assign:a0,b0"}));
  EXPECT_EQ(l2.events, (std::vector<std::string>{"assign:a1,b1"}));
}

TEST_F(FakeKafkaTest, ConsumerResumesFromTheCommittedOffsetAndEofFollowsTheLog) {
  for (int i = 0; i < 3; ++i) cluster_.Append("a", 0, "k", "v" + std::to_string(i));
  auto c = MakeConsumer(nullptr);
  std::vector<std::unique_ptr<Message>> out;
  ASSERT_TRUE(c->Poll(2, absl::ZeroDuration(), &out).ok());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_FALSE(c->AllAssignedAtEof());
  ASSERT_TRUE(c->Commit({{"a", 0, 1}}).ok());
  ASSERT_TRUE(c->Poll(10, absl::ZeroDuration(), &out).ok());
  EXPECT_EQ(out.size(), 3u);
  EXPECT_TRUE(c->AllAssignedAtEof());
  cluster_.Append("a", 0, "k", "late");
  EXPECT_FALSE(c->AllAssignedAtEof());
  ASSERT_TRUE(c->Close().ok());
  EXPECT_FALSE(c->Poll(10, absl::ZeroDuration(), &out).ok());

  auto again = MakeConsumer(nullptr);
  out.clear();
  ASSERT_TRUE(again->Poll(10, absl::ZeroDuration(), &out).ok());
  ASSERT_EQ(out.size(), 3u);  // offsets 1, 2 and the late one
  EXPECT_EQ(out[0]->offset(), 1);
  ASSERT_TRUE(again->Seek({{"a", 0, 0}}).ok());
  out.clear();
  ASSERT_TRUE(again->Poll(10, absl::ZeroDuration(), &out).ok());
  EXPECT_EQ(out.size(), 4u);
}

TEST_F(FakeKafkaTest, StaleGenerationCommitFailsWithRebalanceInProgress) {
  auto c = MakeConsumer(nullptr);
  std::vector<std::unique_ptr<Message>> out;
  ASSERT_TRUE(c->Poll(10, absl::ZeroDuration(), &out).ok());
  cluster_.JoinGroup("g", "other", {"a", "b"});
  absl::Status s = c->Commit({{"a", 0, 0}});
  EXPECT_EQ(ErrorClassOf(s), ErrorClass::kRetriable);
  EXPECT_EQ(KafkaErrorCode(s), RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS);
  ASSERT_TRUE(c->Poll(10, absl::ZeroDuration(), &out).ok());
  EXPECT_TRUE(c->Commit({{"a", 0, 0}}).ok());
}

TEST_F(FakeKafkaTest, ProducerPartitionsByKeyAndReportsAFailedDeliveryAtFlush) {
  auto p = factory_.CreateProducer({});
  ASSERT_TRUE(p.ok());
  cluster_.FailNext(Op::kDeliver, {ErrorClass::kAbortable, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT});
  ASSERT_TRUE((*p)->Produce("a", -1, "key-1", "lost").ok());
  ASSERT_TRUE((*p)->Produce("a", -1, "key-1", "kept").ok());
  absl::Status s = (*p)->Flush(absl::Seconds(1));
  EXPECT_EQ(ErrorClassOf(s), ErrorClass::kAbortable);
  EXPECT_EQ(KafkaErrorCode(s), RD_KAFKA_RESP_ERR__MSG_TIMED_OUT);
  EXPECT_TRUE((*p)->Flush(absl::Seconds(1)).ok()) << "a failure is reported once";
  const int32_t partition = cluster_.PartitionFor("a", "key-1");
  ASSERT_EQ(cluster_.Records("a", partition).size(), 1u);
  EXPECT_EQ(cluster_.Records("a", partition)[0].value, "kept");
  EXPECT_EQ((*p)->delivered(), 1u);
  EXPECT_EQ((*p)->failed(), 1u);

  cluster_.FailNext(Op::kFlush, {ErrorClass::kRetriable, RD_KAFKA_RESP_ERR__TIMED_OUT, true}, 2);
  EXPECT_EQ((*p)->Flush(absl::Seconds(1)).code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ((*p)->Flush(absl::Seconds(1)).code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE((*p)->Flush(absl::Seconds(1)).ok());
}

TEST_F(FakeKafkaTest, CrashKillsClientsWithoutCallbacksAndKeepsTheLogs) {
  RecordingListener l;
  auto c = MakeConsumer(&l);
  auto p = factory_.CreateProducer({});
  ASSERT_TRUE(p.ok());
  std::vector<std::unique_ptr<Message>> out;
  ASSERT_TRUE(c->Poll(10, absl::ZeroDuration(), &out).ok());
  cluster_.SetHook([&](Point point) {
    if (point == Point::kAfterProduce) cluster_.CrashNow();
  });
  EXPECT_THROW((void)(*p)->Produce("b", 1, "k", "v"), FakeCrash);
  cluster_.SetHook(nullptr);
  EXPECT_EQ(cluster_.EndOffset("b", 1), 1);
  EXPECT_TRUE(cluster_.Members("g").empty());
  EXPECT_TRUE(c->Close().ok());
  EXPECT_EQ(l.events.size(), 1u) << "a dead consumer runs no revoke callback";
  EXPECT_EQ(ErrorClassOf((*p)->Flush(absl::Seconds(1))), ErrorClass::kFatal);
}

TEST_F(FakeKafkaTest, TombstonesHaveANullValueAndEmptyValuesDoNot) {
  auto p = MakeProducer();
  ASSERT_TRUE(p->Produce("a", 0, "k1", "").ok());
  ASSERT_TRUE(p->ProduceTombstone("a", 0, "k1").ok());
  cluster_.AppendTombstone("a", 0, "k2");
  auto c = MakeIsolatedConsumer("g", false);
  std::vector<std::unique_ptr<Message>> out;
  ASSERT_TRUE(c->Poll(10, absl::ZeroDuration(), &out).ok());
  ASSERT_EQ(out.size(), 3u);
  EXPECT_FALSE(out[0]->value_is_null());
  EXPECT_TRUE(out[0]->value().empty());
  EXPECT_TRUE(out[1]->value_is_null());
  EXPECT_TRUE(out[1]->value().empty());
  EXPECT_EQ(out[1]->key(), "k1");
  EXPECT_TRUE(out[2]->value_is_null());
  EXPECT_TRUE(cluster_.Records("a", 0)[1].value_is_null);
}

TEST_F(FakeKafkaTest, DeliveryReportsCarryOffsetsAndAreServedByPollAndFlush) {
  std::vector<DeliveryReport> reports;
  auto p = MakeProducer("", [&](const DeliveryReport& r) { reports.push_back(r); });
  cluster_.Append("a", 1, "x", "x");
  ASSERT_TRUE(p->Produce("a", 1, "k", "v1", /*tag=*/11).ok());
  ASSERT_TRUE(p->ProduceTombstone("a", 1, "k", /*tag=*/12).ok());
  EXPECT_TRUE(reports.empty()) << "reports are served from poll, not from produce";
  p->Poll(absl::ZeroDuration());
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports[0].tag, 11u);
  EXPECT_EQ(reports[0].topic, "a");
  EXPECT_EQ(reports[0].partition, 1);
  EXPECT_EQ(reports[0].offset, 1);
  EXPECT_EQ(reports[0].error, 0);
  EXPECT_EQ(reports[1].tag, 12u);
  EXPECT_EQ(reports[1].offset, 2);

  cluster_.FailNext(Op::kDeliver, {ErrorClass::kAbortable, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT});
  ASSERT_TRUE(p->Produce("a", -1, "key", "lost", 13).ok());
  ASSERT_TRUE(p->Produce("a", 1, "key", "kept", 14).ok());
  EXPECT_EQ(ErrorClassOf(p->Flush(absl::Seconds(1))), ErrorClass::kAbortable);
  ASSERT_EQ(reports.size(), 4u);
  EXPECT_EQ(reports[2].tag, 13u);
  EXPECT_EQ(reports[2].error, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT);
  EXPECT_EQ(reports[2].offset, -1);
  EXPECT_EQ(reports[3].offset, 3);
  EXPECT_EQ(p->delivered(), 3u);
  EXPECT_EQ(p->failed(), 1u);
}

TEST_F(FakeKafkaTest, TransactionCallsNeedATransactionalProducerAndProduceNeedsATransaction) {
  auto plain = MakeProducer();
  EXPECT_EQ(plain->BeginTransaction().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(plain->CommitTransaction(absl::Seconds(1)).code(),
            absl::StatusCode::kFailedPrecondition);
  auto txn = MakeProducer("t");
  absl::Status s = txn->Produce("a", 0, "k", "v");
  EXPECT_EQ(KafkaErrorCode(s), RD_KAFKA_RESP_ERR__STATE) << s;
  EXPECT_EQ(KafkaErrorCode(txn->CommitTransaction(absl::Seconds(1))), RD_KAFKA_RESP_ERR__STATE);
  EXPECT_EQ(cluster_.EndOffset("a", 0), 0);
  ASSERT_TRUE(txn->BeginTransaction().ok());
  EXPECT_EQ(KafkaErrorCode(txn->BeginTransaction()), RD_KAFKA_RESP_ERR__STATE);
  EXPECT_TRUE(txn->Produce("a", 0, "k", "v").ok());
}

TEST_F(FakeKafkaTest, ANewProducerWithTheSameIdFencesTheOldOneAndAbortsItsTransaction) {
  auto old_producer = MakeProducer("task-0");
  EXPECT_EQ(cluster_.ProducerEpoch("task-0"), 0);
  ASSERT_TRUE(old_producer->BeginTransaction().ok());
  ASSERT_TRUE(old_producer->Produce("a", 0, "k", "old").ok());
  EXPECT_EQ(cluster_.LastStableOffset("a", 0), 0);
  EXPECT_EQ(cluster_.OpenTransactions(), 1);

  auto new_producer = MakeProducer("task-0");
  EXPECT_EQ(cluster_.ProducerEpoch("task-0"), 1);
  EXPECT_EQ(cluster_.OpenTransactions(), 0);
  ASSERT_EQ(cluster_.Records("a", 0).size(), 1u);
  EXPECT_EQ(cluster_.Records("a", 0)[0].state, TxnState::kAborted);
  EXPECT_EQ(cluster_.EndOffset("a", 0), 2) << "the abort marker occupies an offset";
  EXPECT_EQ(cluster_.LastStableOffset("a", 0), 2);

  for (const absl::Status& s :
       {old_producer->Produce("a", 0, "k", "late"), old_producer->Flush(absl::Seconds(1)),
        old_producer->CommitTransaction(absl::Seconds(1)),
        old_producer->AbortTransaction(absl::Seconds(1)), old_producer->BeginTransaction()}) {
    EXPECT_EQ(ErrorClassOf(s), ErrorClass::kFenced) << s;
    EXPECT_EQ(KafkaErrorCode(s), RD_KAFKA_RESP_ERR__FENCED) << s;
  }
  ASSERT_TRUE(new_producer->BeginTransaction().ok());
  ASSERT_TRUE(new_producer->Produce("a", 0, "k", "new").ok());
  ASSERT_TRUE(new_producer->CommitTransaction(absl::Seconds(1)).ok());
  EXPECT_EQ(Values(cluster_.CommittedRecords("a", 0)), (Strings{"new"}));
  EXPECT_EQ(cluster_.EndOffset("a", 0), 4);
}

TEST_F(FakeKafkaTest, ReadCommittedStopsAtTheLastStableOffsetUntilTheTransactionCommits) {
  cluster_.Append("a", 0, "k", "plain-0");
  auto p = MakeProducer("t");
  ASSERT_TRUE(p->BeginTransaction().ok());
  ASSERT_TRUE(p->Produce("a", 0, "k", "txn-1").ok());
  ASSERT_TRUE(p->Produce("a", 0, "k", "txn-2").ok());
  cluster_.Append("a", 0, "k", "plain-3");  // after the open transaction
  EXPECT_EQ(cluster_.LastStableOffset("a", 0), 1);

  auto committed = MakeIsolatedConsumer("rc", true);
  auto uncommitted = MakeIsolatedConsumer("ru", false);
  EXPECT_EQ(PollValues(*committed), (Strings{"plain-0"}));
  EXPECT_TRUE(committed->AllAssignedAtEof()) << "EOF is at the LSO";
  EXPECT_TRUE(PollValues(*committed).empty());
  EXPECT_EQ(PollValues(*uncommitted), (Strings{"plain-0", "txn-1", "txn-2", "plain-3"}));
  EXPECT_EQ(committed->Lag()[0].lag, 0) << "lag is measured from the LSO";

  ASSERT_TRUE(p->CommitTransaction(absl::Seconds(1)).ok());
  EXPECT_FALSE(committed->AllAssignedAtEof());
  EXPECT_EQ(PollValues(*committed), (Strings{"txn-1", "txn-2", "plain-3"}));
  EXPECT_TRUE(committed->AllAssignedAtEof());
  EXPECT_EQ(cluster_.EndOffset("a", 0), 5) << "the commit marker occupies offset 4";
  EXPECT_EQ(cluster_.LogWithMarkers("a", 0).back().control, true);
  EXPECT_TRUE(PollValues(*uncommitted).empty()) << "markers are never returned";
  EXPECT_TRUE(uncommitted->AllAssignedAtEof());
}

TEST_F(FakeKafkaTest, AbortedRecordsAreInvisibleToReadCommittedAndVisibleToReadUncommitted) {
  auto p = MakeProducer("t");
  ASSERT_TRUE(p->BeginTransaction().ok());
  ASSERT_TRUE(p->Produce("a", 0, "k", "aborted-1").ok());
  ASSERT_TRUE(p->ProduceTombstone("a", 0, "k").ok());
  ASSERT_TRUE(p->AbortTransaction(absl::Seconds(1)).ok());
  ASSERT_TRUE(p->BeginTransaction().ok());
  ASSERT_TRUE(p->Produce("a", 0, "k", "committed").ok());
  ASSERT_TRUE(p->CommitTransaction(absl::Seconds(1)).ok());
  // 2 aborted records + abort marker + 1 record + commit marker.
  EXPECT_EQ(cluster_.EndOffset("a", 0), 5);

  auto committed = MakeIsolatedConsumer("rc", true);
  EXPECT_EQ(PollValues(*committed), (Strings{"committed"}));
  auto uncommitted = MakeIsolatedConsumer("ru", false);
  EXPECT_EQ(PollValues(*uncommitted), (Strings{"aborted-1", "<null>", "committed"}));
  const std::vector<Record> records = cluster_.Records("a", 0);
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0].state, TxnState::kAborted);
  EXPECT_EQ(records[1].state, TxnState::kAborted);
  EXPECT_EQ(records[2].state, TxnState::kCommitted);
  EXPECT_EQ(records[2].offset, 3);
}

TEST_F(FakeKafkaTest, SentOffsetsAreCommittedByTheTransactionCommitOnly) {
  for (int i = 0; i < 3; ++i) cluster_.Append("a", 0, "k", "in-" + std::to_string(i));
  auto c = MakeIsolatedConsumer("g", true);
  EXPECT_EQ(PollValues(*c).size(), 3u);
  auto p = MakeProducer("t");

  ASSERT_TRUE(p->BeginTransaction().ok());
  ASSERT_TRUE(p->Produce("b", 0, "k", "out").ok());
  ASSERT_TRUE(p->SendOffsetsToTransaction({{"a", 0, 2}}, *c, absl::Seconds(1)).ok());
  EXPECT_FALSE(cluster_.Committed("g", "a", 0).has_value());
  ASSERT_TRUE(p->AbortTransaction(absl::Seconds(1)).ok());
  EXPECT_FALSE(cluster_.Committed("g", "a", 0).has_value()) << "aborted offsets are dropped";

  ASSERT_TRUE(p->BeginTransaction().ok());
  ASSERT_TRUE(p->Produce("b", 0, "k", "out").ok());
  ASSERT_TRUE(p->SendOffsetsToTransaction({{"a", 0, 3}}, *c, absl::Seconds(1)).ok());
  EXPECT_FALSE(cluster_.Committed("g", "a", 0).has_value());
  ASSERT_TRUE(p->CommitTransaction(absl::Seconds(1)).ok());
  EXPECT_EQ(cluster_.Committed("g", "a", 0), 3);
}

TEST_F(FakeKafkaTest, OffsetsOfAStaleGenerationFailTheTransactionWithAnAbortableError) {
  auto c = MakeIsolatedConsumer("g", false);
  EXPECT_TRUE(PollValues(*c).empty());
  auto p = MakeProducer("t");
  // Sent before the rebalance, committed after it.
  ASSERT_TRUE(p->BeginTransaction().ok());
  ASSERT_TRUE(p->Produce("b", 0, "k", "out").ok());
  ASSERT_TRUE(p->SendOffsetsToTransaction({{"a", 0, 1}}, *c, absl::Seconds(1)).ok());
  cluster_.JoinGroup("g", "intruder", {"a"});
  absl::Status s = p->CommitTransaction(absl::Seconds(1));
  EXPECT_EQ(ErrorClassOf(s), ErrorClass::kAbortable) << s;
  EXPECT_EQ(KafkaErrorCode(s), RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION);
  EXPECT_EQ(ErrorClassOf(p->Produce("b", 0, "k", "more")), ErrorClass::kAbortable);
  EXPECT_EQ(ErrorClassOf(p->CommitTransaction(absl::Seconds(1))), ErrorClass::kAbortable);
  ASSERT_TRUE(p->AbortTransaction(absl::Seconds(1)).ok());
  EXPECT_FALSE(cluster_.Committed("g", "a", 0).has_value());
  EXPECT_EQ(cluster_.Records("b", 0)[0].state, TxnState::kAborted);

  // Sent while stale: SendOffsets itself fails.
  ASSERT_TRUE(p->BeginTransaction().ok());
  s = p->SendOffsetsToTransaction({{"a", 0, 1}}, *c, absl::Seconds(1));
  EXPECT_EQ(ErrorClassOf(s), ErrorClass::kAbortable) << s;
  ASSERT_TRUE(p->AbortTransaction(absl::Seconds(1)).ok());

  // After the member rebalanced, it works again.
  EXPECT_TRUE(PollValues(*c).empty());
  ASSERT_TRUE(p->BeginTransaction().ok());
  ASSERT_TRUE(p->SendOffsetsToTransaction({{"a", 0, 1}}, *c, absl::Seconds(1)).ok());
  ASSERT_TRUE(p->CommitTransaction(absl::Seconds(1)).ok());
  EXPECT_EQ(cluster_.Committed("g", "a", 0), 1);
}

TEST_F(FakeKafkaTest, AFailedDeliveryMakesTheTransactionAbortable) {
  std::vector<DeliveryReport> reports;
  auto p = MakeProducer("t", [&](const DeliveryReport& r) { reports.push_back(r); });
  ASSERT_TRUE(p->BeginTransaction().ok());
  cluster_.FailNext(Op::kDeliver, {ErrorClass::kAbortable, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT});
  ASSERT_TRUE(p->Produce("a", 0, "k", "lost").ok());
  EXPECT_EQ(ErrorClassOf(p->CommitTransaction(absl::Seconds(1))), ErrorClass::kAbortable);
  ASSERT_TRUE(p->AbortTransaction(absl::Seconds(1)).ok());
  ASSERT_TRUE(p->BeginTransaction().ok());
  ASSERT_TRUE(p->Produce("a", 0, "k", "unserved", 7).ok());
  ASSERT_TRUE(p->AbortTransaction(absl::Seconds(1)).ok());
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports[1].tag, 7u);
  EXPECT_EQ(reports[1].error, RD_KAFKA_RESP_ERR__PURGE_QUEUE) << "abort purges unserved reports";
}

TEST_F(FakeKafkaTest, InjectedTransactionFailuresActByClass) {
  auto c = MakeIsolatedConsumer("g", false);
  EXPECT_TRUE(PollValues(*c).empty());
  auto p = MakeProducer("t");
  // Retriable commit: the transaction stays open; a retry commits it.
  ASSERT_TRUE(p->BeginTransaction().ok());
  ASSERT_TRUE(p->Produce("a", 0, "k", "v1").ok());
  ASSERT_TRUE(p->SendOffsetsToTransaction({{"a", 0, 1}}, *c, absl::Seconds(1)).ok());
  cluster_.FailNext(Op::kCommitTransaction, {ErrorClass::kRetriable, RD_KAFKA_RESP_ERR__TIMED_OUT});
  EXPECT_EQ(ErrorClassOf(p->CommitTransaction(absl::Seconds(1))), ErrorClass::kRetriable);
  EXPECT_EQ(cluster_.OpenTransactions(), 1);
  ASSERT_TRUE(p->CommitTransaction(absl::Seconds(1)).ok());
  EXPECT_EQ(cluster_.Committed("g", "a", 0), 1);

  // Abortable begin/send offsets/commit: only abort helps.
  cluster_.FailNext(Op::kBeginTransaction, {ErrorClass::kRetriable, RD_KAFKA_RESP_ERR__TIMED_OUT});
  EXPECT_FALSE(p->BeginTransaction().ok());
  ASSERT_TRUE(p->BeginTransaction().ok());
  cluster_.FailNext(Op::kSendOffsets,
                    {ErrorClass::kAbortable, RD_KAFKA_RESP_ERR_INVALID_PRODUCER_ID_MAPPING});
  EXPECT_EQ(ErrorClassOf(p->SendOffsetsToTransaction({{"a", 0, 2}}, *c, absl::Seconds(1))),
            ErrorClass::kAbortable);
  EXPECT_EQ(ErrorClassOf(p->CommitTransaction(absl::Seconds(1))), ErrorClass::kAbortable);
  cluster_.FailNext(Op::kAbortTransaction, {ErrorClass::kRetriable, RD_KAFKA_RESP_ERR__TIMED_OUT});
  EXPECT_FALSE(p->AbortTransaction(absl::Seconds(1)).ok());
  ASSERT_TRUE(p->AbortTransaction(absl::Seconds(1)).ok());
  ASSERT_TRUE(p->BeginTransaction().ok());
  cluster_.FailNext(Op::kCommitTransaction,
                    {ErrorClass::kAbortable, RD_KAFKA_RESP_ERR_OPERATION_NOT_ATTEMPTED});
  EXPECT_EQ(ErrorClassOf(p->CommitTransaction(absl::Seconds(1))), ErrorClass::kAbortable);
  ASSERT_TRUE(p->AbortTransaction(absl::Seconds(1)).ok());
  EXPECT_EQ(cluster_.Committed("g", "a", 0), 1);

  // Fenced: as if a newer instance had initialised.
  ASSERT_TRUE(p->BeginTransaction().ok());
  ASSERT_TRUE(p->Produce("a", 0, "k", "v2").ok());
  cluster_.FailNext(Op::kCommitTransaction, {ErrorClass::kFenced, RD_KAFKA_RESP_ERR__FENCED});
  EXPECT_EQ(ErrorClassOf(p->CommitTransaction(absl::Seconds(1))), ErrorClass::kFenced);
  EXPECT_EQ(ErrorClassOf(p->AbortTransaction(absl::Seconds(1))), ErrorClass::kFenced);
  EXPECT_EQ(cluster_.OpenTransactions(), 0);
  EXPECT_EQ(cluster_.Records("a", 0).back().state, TxnState::kAborted);

  // Fatal: the producer is unusable; its transaction waits for the next init.
  auto q = MakeProducer("t");
  ASSERT_TRUE(q->BeginTransaction().ok());
  ASSERT_TRUE(q->Produce("a", 0, "k", "v3").ok());
  cluster_.FailNext(Op::kCommitTransaction, {ErrorClass::kFatal, RD_KAFKA_RESP_ERR__FATAL});
  EXPECT_EQ(ErrorClassOf(q->CommitTransaction(absl::Seconds(1))), ErrorClass::kFatal);
  EXPECT_EQ(ErrorClassOf(q->AbortTransaction(absl::Seconds(1))), ErrorClass::kFatal);
  EXPECT_EQ(ErrorClassOf(q->Produce("a", 0, "k", "v4")), ErrorClass::kFatal);
  EXPECT_EQ(cluster_.OpenTransactions(), 1);
  auto r = MakeProducer("t");
  EXPECT_EQ(cluster_.OpenTransactions(), 0);
  EXPECT_EQ(cluster_.PendingFailures(Op::kCommitTransaction), 0);
}

// A crash at every step of a transactional batch: nothing of it is visible
// to read_committed and its offsets are not committed, unless the crash came
// after the commit.
class FakeTransactionCrashTest : public FakeKafkaTest,
                                 public ::testing::WithParamInterface<Point> {};

TEST_P(FakeTransactionCrashTest, ACrashAbortsTheOpenTransaction) {
  cluster_.Append("a", 0, "k", "in");
  auto c = MakeIsolatedConsumer("g", true);
  EXPECT_EQ(PollValues(*c).size(), 1u);
  auto p = MakeProducer("t");
  cluster_.SetHook([&](Point point) {
    if (point == GetParam()) cluster_.CrashNow();
  });
  auto batch = [&] {
    if (!p->BeginTransaction().ok()) return;
    if (!p->Produce("b", 0, "k", "out").ok()) return;
    if (!p->Flush(absl::Seconds(1)).ok()) return;
    if (!p->SendOffsetsToTransaction({{"a", 0, 1}}, *c, absl::Seconds(1)).ok()) return;
    (void)p->CommitTransaction(absl::Seconds(1));
  };
  EXPECT_THROW(batch(), FakeCrash);
  cluster_.SetHook(nullptr);
  EXPECT_EQ(cluster_.OpenTransactions(), 0);
  const bool committed = GetParam() == Point::kAfterCommitTransaction;
  EXPECT_EQ(cluster_.CommittedRecords("b", 0).size(), committed ? 1u : 0u);
  EXPECT_EQ(cluster_.Committed("g", "a", 0), committed ? std::optional<int64_t>(1) : std::nullopt);
  EXPECT_EQ(ErrorClassOf(p->BeginTransaction()), ErrorClass::kFatal) << "the process is dead";
}

INSTANTIATE_TEST_SUITE_P(EveryStep, FakeTransactionCrashTest,
                         ::testing::Values(Point::kAfterBeginTransaction, Point::kAfterProduce,
                                           Point::kAfterFlush, Point::kAfterSendOffsets,
                                           Point::kBeforeCommitTransaction,
                                           Point::kAfterCommitTransaction),
                         [](const ::testing::TestParamInfo<Point>& info) {
                           std::string name(PointName(info.param));
                           for (char& ch : name) {
                             if (ch == ' ') ch = '_';
                           }
                           return name;
                         });

TEST_F(FakeKafkaTest, WithoutAbortOnCrashTheTransactionBlocksTheLsoUntilTheNextInit) {
  cluster_.SetAbortOnCrash(false);
  auto p = MakeProducer("t");
  cluster_.SetHook([&](Point point) {
    if (point == Point::kAfterProduce) cluster_.CrashNow();
  });
  ASSERT_TRUE(p->BeginTransaction().ok());
  EXPECT_THROW((void)p->Produce("a", 0, "k", "v"), FakeCrash);
  cluster_.SetHook(nullptr);
  EXPECT_EQ(cluster_.OpenTransactions(), 1);
  cluster_.Append("a", 0, "k", "after");
  EXPECT_EQ(cluster_.LastStableOffset("a", 0), 0);
  EXPECT_TRUE(cluster_.CommittedRecords("a", 0).empty());
  auto restarted = MakeProducer("t");
  EXPECT_EQ(cluster_.OpenTransactions(), 0);
  EXPECT_EQ(Values(cluster_.CommittedRecords("a", 0)), (Strings{"after"}));

  auto q = MakeProducer("u");
  ASSERT_TRUE(q->BeginTransaction().ok());
  ASSERT_TRUE(q->Produce("a", 1, "k", "v").ok());
  cluster_.ExpireTransactions();
  EXPECT_EQ(cluster_.Records("a", 1)[0].state, TxnState::kAborted);
}

TEST_F(FakeKafkaTest, PartitionReaderReadsInOrderToTheVisibleEnd) {
  for (int i = 0; i < 5; ++i) cluster_.Append("a", 0, "k" + std::to_string(i), std::to_string(i));
  auto reader = MakeReader(false);
  auto w = reader->Watermarks({"a", 0}, absl::Seconds(1));
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(*w, (std::pair<int64_t, int64_t>(0, 5)));
  EXPECT_FALSE(reader->Watermarks({"nope", 0}, absl::Seconds(1)).ok());
  EXPECT_FALSE(reader->Assign({{"a", 9, 0}}).ok());

  ASSERT_TRUE(reader->Assign({{"a", 0, kOffsetBeginning}}).ok());
  EXPECT_FALSE(reader->AtEnd({"a", 0}));
  std::vector<std::unique_ptr<Message>> out;
  ASSERT_TRUE(reader->Poll(3, absl::ZeroDuration(), &out).ok());
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0]->offset(), 0);
  EXPECT_EQ(out[2]->offset(), 2);
  EXPECT_FALSE(reader->AtEnd({"a", 0}));
  EXPECT_EQ(PollValues(*reader), (Strings{"3", "4"}));
  EXPECT_TRUE(reader->AtEnd({"a", 0}));
  cluster_.Append("a", 0, "k", "5");
  EXPECT_FALSE(reader->AtEnd({"a", 0})) << "an append ends the EOF";
  EXPECT_EQ(PollValues(*reader), (Strings{"5"}));
  EXPECT_TRUE(reader->AtEnd({"a", 0}));

  ASSERT_TRUE(reader->Assign({{"a", 0, 4}}).ok());
  EXPECT_EQ(PollValues(*reader), (Strings{"4", "5"}));
  ASSERT_TRUE(reader->Assign({{"a", 0, kOffsetEnd}}).ok());
  EXPECT_TRUE(PollValues(*reader).empty());
  EXPECT_TRUE(reader->AtEnd({"a", 0}));

  cluster_.DeleteRecordsBefore("a", 0, 3);
  w = reader->Watermarks({"a", 0}, absl::Seconds(1));
  EXPECT_EQ(*w, (std::pair<int64_t, int64_t>(3, 6)));
  ASSERT_TRUE(reader->Assign({{"a", 0, 1}}).ok());
  EXPECT_EQ(PollValues(*reader), (Strings{"3", "4", "5"})) << "below the log start: the start";
}

TEST_F(FakeKafkaTest, ReadCommittedReaderEndsAtTheLsoAndSkipsAbortedRecords) {
  auto p = MakeProducer("t");
  ASSERT_TRUE(p->BeginTransaction().ok());
  ASSERT_TRUE(p->Produce("a", 0, "k", "aborted").ok());
  ASSERT_TRUE(p->AbortTransaction(absl::Seconds(1)).ok());
  ASSERT_TRUE(p->BeginTransaction().ok());
  ASSERT_TRUE(p->Produce("a", 0, "k", "committed").ok());
  ASSERT_TRUE(p->CommitTransaction(absl::Seconds(1)).ok());
  ASSERT_TRUE(p->BeginTransaction().ok());
  ASSERT_TRUE(p->Produce("a", 0, "k", "open").ok());

  auto rc = MakeReader(true);
  ASSERT_TRUE(rc->Assign({{"a", 0, kOffsetBeginning}}).ok());
  EXPECT_EQ(PollValues(*rc), (Strings{"committed"}));
  EXPECT_TRUE(rc->AtEnd({"a", 0})) << "at the LSO";
  auto w = rc->Watermarks({"a", 0}, absl::Seconds(1));
  EXPECT_EQ(w->second, 5) << "the high watermark is the log end, past the LSO";
  auto ru = MakeReader(false);
  ASSERT_TRUE(ru->Assign({{"a", 0, kOffsetBeginning}}).ok());
  EXPECT_EQ(PollValues(*ru), (Strings{"aborted", "committed", "open"}));
  EXPECT_TRUE(ru->AtEnd({"a", 0}));

  auto from_end = MakeReader(true);
  ASSERT_TRUE(from_end->Assign({{"a", 0, kOffsetEnd}}).ok()) << "the end is the LSO";

  ASSERT_TRUE(p->CommitTransaction(absl::Seconds(1)).ok());
  EXPECT_FALSE(rc->AtEnd({"a", 0}));
  EXPECT_EQ(PollValues(*rc), (Strings{"open"}));
  EXPECT_EQ(PollValues(*from_end), (Strings{"open"}));
  EXPECT_TRUE(rc->AtEnd({"a", 0}));
  EXPECT_TRUE(PollValues(*ru).empty());
  EXPECT_TRUE(ru->AtEnd({"a", 0})) << "a marker is not a visible append";
}

TEST_F(FakeKafkaTest, TopicAdminFindsCreatesAndDescribesTopics) {
  auto p = MakeProducer();
  auto found = p->FindTopic("changelog", absl::Seconds(1));
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->has_value());
  EXPECT_FALSE(p->TopicConfig("changelog", {"cleanup.policy"}, absl::Seconds(1)).ok());
  ASSERT_TRUE(
      p->CreateTopic("changelog", 3, -1, {{"cleanup.policy", "compact"}}, absl::Seconds(1)).ok());
  found = p->FindTopic("changelog", absl::Seconds(1));
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(*found, 3);
  // Created meanwhile by another instance: not an error, nothing changes.
  EXPECT_TRUE(p->CreateTopic("changelog", 5, -1, {}, absl::Seconds(1)).ok());
  EXPECT_EQ(cluster_.PartitionCount("changelog"), 3);
  auto config = p->TopicConfig("changelog", {"cleanup.policy", "retention.ms", "unknown.key"},
                               absl::Seconds(1));
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(*config, (std::map<std::string, std::string>{{"cleanup.policy", "compact"},
                                                         {"retention.ms", "604800000"}}));
  EXPECT_EQ(cluster_.TopicConfigs("changelog").at("cleanup.policy"), "compact");
  EXPECT_TRUE(cluster_.HasTopic("changelog"));
  EXPECT_FALSE(cluster_.HasTopic("nope"));
}

TEST_F(FakeKafkaTest, CompactionKeepsTheLatestRecordPerKeyBelowTheLso) {
  cluster_.Append("a", 0, "x", "x1");
  cluster_.Append("a", 0, "y", "y1");
  cluster_.Append("a", 0, "x", "x2");
  cluster_.AppendTombstone("a", 0, "y");
  auto p = MakeProducer("t");
  ASSERT_TRUE(p->BeginTransaction().ok());
  ASSERT_TRUE(p->Produce("a", 0, "x", "aborted").ok());
  ASSERT_TRUE(p->AbortTransaction(absl::Seconds(1)).ok());
  ASSERT_TRUE(p->BeginTransaction().ok());
  ASSERT_TRUE(p->Produce("a", 0, "x", "open").ok());
  cluster_.Compact("a", 0);
  EXPECT_EQ(Values(cluster_.Records("a", 0)), (Strings{"x2", "<null>", "open"}));
  EXPECT_EQ(cluster_.Records("a", 0)[0].offset, 2);
  auto reader = MakeReader(false);
  ASSERT_TRUE(reader->Assign({{"a", 0, kOffsetBeginning}}).ok());
  EXPECT_EQ(PollValues(*reader), (Strings{"x2", "<null>", "open"}));
  cluster_.Compact("a", 0, /*drop_tombstones=*/true);
  EXPECT_EQ(Values(cluster_.Records("a", 0)), (Strings{"x2", "open"}));
}

}  // namespace
}  // namespace tally::kafka::fake
