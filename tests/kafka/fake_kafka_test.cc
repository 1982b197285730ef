// The in-process fake keeps the Kafka semantics the processor tests rely
// on: a green processor_test means nothing if the fake is wrong.
#include "processor/kafka/fake_kafka.h"

#include <memory>
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
  FakeCluster cluster_;
  FakeClientFactory factory_;
};

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

}  // namespace
}  // namespace tally::kafka::fake
