// Unit tests of processor/kafka that need no broker: error classification,
// property validation and redaction.
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "librdkafka/rdkafka.h"
#include "processor/kafka/kafka.h"

namespace tally::kafka {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// absl::string_view prints as a char array in gtest messages.
std::string MessageOf(const absl::Status& status) { return std::string(status.message()); }

// Nothing listens on port 1: creating a client never blocks on it.
constexpr char kNowhere[] = "127.0.0.1:1";

struct ClassCase {
  rd_kafka_resp_err_t err;
  ErrorClass expected;
};

class ClassifyErrorTest : public ::testing::TestWithParam<ClassCase> {};

TEST_P(ClassifyErrorTest, MatchesPolicy) {
  EXPECT_EQ(ClassifyError(GetParam().err), GetParam().expected)
      << rd_kafka_err2name(GetParam().err) << " classified as "
      << ErrorClassName(ClassifyError(GetParam().err));
}

INSTANTIATE_TEST_SUITE_P(
    Policy, ClassifyErrorTest,
    ::testing::Values(
        // Must never drop: a full queue is polled and retried.
        ClassCase{RD_KAFKA_RESP_ERR__QUEUE_FULL, ErrorClass::kRetriable},
        ClassCase{RD_KAFKA_RESP_ERR__TRANSPORT, ErrorClass::kRetriable},
        ClassCase{RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, ErrorClass::kRetriable},
        ClassCase{RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, ErrorClass::kRetriable},
        ClassCase{RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS, ErrorClass::kRetriable},
        ClassCase{RD_KAFKA_RESP_ERR__FATAL, ErrorClass::kFatal},
        ClassCase{RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, ErrorClass::kFatal},
        ClassCase{RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, ErrorClass::kFatal},
        ClassCase{RD_KAFKA_RESP_ERR__AUTHENTICATION, ErrorClass::kFatal},
        ClassCase{RD_KAFKA_RESP_ERR_PRODUCER_FENCED, ErrorClass::kFenced},
        ClassCase{RD_KAFKA_RESP_ERR__FENCED, ErrorClass::kFenced},
        ClassCase{RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH, ErrorClass::kFenced},
        ClassCase{RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION, ErrorClass::kFenced},
        ClassCase{RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, ErrorClass::kAbortable},
        ClassCase{RD_KAFKA_RESP_ERR__PURGE_INFLIGHT, ErrorClass::kAbortable},
        ClassCase{RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID, ErrorClass::kAbortable},
        ClassCase{RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, ErrorClass::kPermanent},
        ClassCase{RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC, ErrorClass::kPermanent},
        ClassCase{RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION, ErrorClass::kPermanent}));

TEST(ClassifyError, CodesOutsideTheEnumerationAreFatal) {
  // A restart is safe; continuing past an error we do not understand is not.
  EXPECT_EQ(ClassifyError(100000), ErrorClass::kFatal);
  EXPECT_EQ(ClassifyError(-100000), ErrorClass::kFatal);
  EXPECT_EQ(ClassifyError(-120), ErrorClass::kFatal);  // gap between __END and -1
}

TEST(ClassifyError, EveryClassHasADistinctName) {
  EXPECT_EQ(ErrorClassName(ErrorClass::kRetriable), "retriable");
  EXPECT_EQ(ErrorClassName(ErrorClass::kFatal), "fatal");
  EXPECT_EQ(ErrorClassName(ErrorClass::kFenced), "fenced");
  EXPECT_EQ(ErrorClassName(ErrorClass::kAbortable), "abortable");
  EXPECT_EQ(ErrorClassName(ErrorClass::kPermanent), "permanent");
}

TEST(ErrorClassOf, NonKafkaStatusesHaveNoClass) {
  EXPECT_EQ(ErrorClassOf(absl::OkStatus()), std::nullopt);
  EXPECT_EQ(ErrorClassOf(absl::InvalidArgumentError("x")), std::nullopt);
  EXPECT_EQ(KafkaErrorCode(absl::InternalError("x")), 0);
}

TEST(Properties, SecretKeysAreRecognisedCaseInsensitively) {
  EXPECT_TRUE(IsSecretProperty("sasl.password"));
  EXPECT_TRUE(IsSecretProperty("ssl.keystore.password"));
  EXPECT_TRUE(IsSecretProperty("sasl.oauthbearer.client.secret"));
  EXPECT_TRUE(IsSecretProperty("sasl.oauthbearer.config"));
  EXPECT_TRUE(IsSecretProperty("ssl.key.pem"));
  EXPECT_TRUE(IsSecretProperty("SSL.KEY.PASSWORD"));
  EXPECT_FALSE(IsSecretProperty("bootstrap.servers"));
  EXPECT_FALSE(IsSecretProperty("sasl.username"));
  EXPECT_FALSE(IsSecretProperty("ssl.ca.location"));
}

TEST(Properties, PrintableFormRedactsSecretValues) {
  Properties props = {{"bootstrap.servers", "b:9092"},
                      {"sasl.password", "hunter2"},
                      {"sasl.oauthbearer.client.secret", "s3cr3t"},
                      {"ssl.key.pem", "-----BEGIN PRIVATE KEY-----"}};
  std::string printed = PropertiesForLog(props);
  EXPECT_THAT(printed, HasSubstr("bootstrap.servers=b:9092"));
  EXPECT_THAT(printed, HasSubstr("sasl.password=[redacted]"));
  EXPECT_THAT(printed, HasSubstr("ssl.key.pem=[redacted]"));
  EXPECT_THAT(printed, Not(HasSubstr("hunter2")));
  EXPECT_THAT(printed, Not(HasSubstr("s3cr3t")));
  EXPECT_THAT(printed, Not(HasSubstr("PRIVATE KEY")));
}

TEST(ProducerCreate, RequiresBootstrapServers) {
  auto producer = Producer::Create({{"acks", "all"}});
  ASSERT_FALSE(producer.ok());
  EXPECT_EQ(producer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(MessageOf(producer.status()), HasSubstr("bootstrap.servers"));
}

TEST(ProducerCreate, UnknownKeyIsInvalidArgumentNamingTheKey) {
  auto producer = Producer::Create({{"bootstrap.servers", kNowhere}, {"no.such.property", "1"}});
  ASSERT_FALSE(producer.ok());
  EXPECT_EQ(producer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(MessageOf(producer.status()), HasSubstr("\"no.such.property\""));
}

TEST(ProducerCreate, BadValueIsInvalidArgumentNamingTheKeyAndLibrdkafkasReason) {
  auto producer = Producer::Create({{"bootstrap.servers", kNowhere}, {"linger.ms", "banana"}});
  ASSERT_FALSE(producer.ok());
  EXPECT_EQ(producer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(MessageOf(producer.status()), HasSubstr("\"linger.ms\""));
  EXPECT_THAT(MessageOf(producer.status()), HasSubstr("Invalid value"));  // librdkafka's words
}

TEST(ProducerCreate, RejectedSecretValueIsNotEchoed) {
  // sasl.oauthbearer.method is an enum: librdkafka's error quotes the value.
  auto producer = Producer::Create(
      {{"bootstrap.servers", kNowhere}, {"sasl.oauthbearer.method", "hunter2-value"}});
  ASSERT_FALSE(producer.ok());
  EXPECT_EQ(producer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(MessageOf(producer.status()), HasSubstr("sasl.oauthbearer.method"));
  EXPECT_THAT(MessageOf(producer.status()), Not(HasSubstr("hunter2-value")));
}

TEST(ProducerCreate, StartupLogRedactsSecrets) {
  ::testing::internal::CaptureStderr();
  {
    auto producer = Producer::Create({{"bootstrap.servers", kNowhere},
                                      {"sasl.username", "tally"},
                                      {"sasl.password", "hunter2-in-log"}});
    ASSERT_TRUE(producer.ok()) << producer.status();
  }
  std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(log, HasSubstr("sasl.password=[redacted]"));
  EXPECT_THAT(log, HasSubstr("sasl.username=tally"));
  EXPECT_THAT(log, HasSubstr("enable.idempotence=true"));  // default applied
  EXPECT_THAT(log, HasSubstr("acks=all"));
  EXPECT_THAT(log, Not(HasSubstr("hunter2-in-log")));
}

TEST(ProducerCreate, TransactionalIdMustAgreeWithProperty) {
  auto producer =
      Producer::Create({{"bootstrap.servers", kNowhere}, {"transactional.id", "a"}}, nullptr, "b");
  ASSERT_FALSE(producer.ok());
  EXPECT_EQ(producer.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Producer, TransactionCallsOnAPlainProducerAreFailedPrecondition) {
  auto producer = Producer::Create({{"bootstrap.servers", kNowhere}});
  ASSERT_TRUE(producer.ok()) << producer.status();
  absl::Status status = (*producer)->BeginTransaction();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ErrorClassOf(status), std::nullopt);  // misuse, not a Kafka error
  EXPECT_EQ((*producer)->CommitTransaction(absl::Seconds(1)).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*producer)->AbortTransaction(absl::Seconds(1)).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(Producer, FullQueueWithoutABrokerTimesOutAsRetriableInsteadOfDropping) {
  // No broker: nothing is delivered, so the 3rd message finds the queue
  // full and Produce() waits out its timeout instead of dropping. (The
  // short message timeout only keeps the destructor's flush short.)
  auto producer = Producer::Create({{"bootstrap.servers", kNowhere},
                                    {"queue.buffering.max.messages", "2"},
                                    {"message.timeout.ms", "500"}});
  ASSERT_TRUE(producer.ok()) << producer.status();
  ASSERT_TRUE((*producer)->Produce("t", -1, "k", "v1", 1).ok());
  ASSERT_TRUE((*producer)->Produce("t", -1, "k", "v2", 2).ok());
  absl::Status status = (*producer)->Produce("t", -1, "k", "v3", 3, absl::Milliseconds(100));
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(ErrorClassOf(status), ErrorClass::kRetriable);
  EXPECT_EQ(KafkaErrorCode(status), RD_KAFKA_RESP_ERR__QUEUE_FULL);
}

TEST(ConsumerCreate, RequiresGroupId) {
  auto consumer = Consumer::Create({{"bootstrap.servers", kNowhere}}, nullptr);
  ASSERT_FALSE(consumer.ok());
  EXPECT_EQ(consumer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(MessageOf(consumer.status()), HasSubstr("group.id"));
}

TEST(ConsumerCreate, PartitionEofCannotBeDisabled) {
  auto consumer = Consumer::Create(
      {{"bootstrap.servers", kNowhere}, {"group.id", "g"}, {"enable.partition.eof", "false"}},
      nullptr);
  ASSERT_FALSE(consumer.ok());
  EXPECT_EQ(consumer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(MessageOf(consumer.status()), HasSubstr("enable.partition.eof"));
}

TEST(ConsumerCreate, UnknownKeyIsInvalidArgumentNamingTheKey) {
  auto consumer = Consumer::Create(
      {{"bootstrap.servers", kNowhere}, {"group.id", "g"}, {"fetch.bogus", "1"}}, nullptr);
  ASSERT_FALSE(consumer.ok());
  EXPECT_EQ(consumer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(MessageOf(consumer.status()), HasSubstr("\"fetch.bogus\""));
}

TEST(Consumer, CloseIsIdempotentAndPollAfterCloseFails) {
  auto consumer = Consumer::Create({{"bootstrap.servers", kNowhere}, {"group.id", "g"}}, nullptr);
  ASSERT_TRUE(consumer.ok()) << consumer.status();
  EXPECT_FALSE((*consumer)->AllAssignedAtEof());  // nothing assigned yet
  EXPECT_TRUE((*consumer)->Close().ok());
  EXPECT_TRUE((*consumer)->Close().ok());
  std::vector<std::unique_ptr<Message>> out;
  EXPECT_EQ((*consumer)->Poll(10, absl::Milliseconds(10), &out).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*consumer)->group_metadata_handle(), nullptr);
}

}  // namespace
}  // namespace tally::kafka
