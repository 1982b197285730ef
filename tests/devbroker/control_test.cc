#include "tools/devbroker/control.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tally::devbroker {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

struct RdKafkaDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
struct ClusterDeleter {
  void operator()(rd_kafka_mock_cluster_t* c) const { rd_kafka_mock_cluster_destroy(c); }
};

// An in-process mock cluster of two brokers, as tally-devbroker builds it.
class ControlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char errstr[256];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    ASSERT_EQ(rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)), RD_KAFKA_CONF_OK);
    rk_.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr)));
    ASSERT_NE(rk_, nullptr) << errstr;
    cluster_.reset(rd_kafka_mock_cluster_new(rk_.get(), 2));
    ASSERT_NE(cluster_, nullptr);
  }
  void TearDown() override {
    cluster_.reset();  // before the handle it was created on
    rk_.reset();
  }
  std::string Run(const std::string& line) { return ExecuteControlCommand(cluster_.get(), line); }

  std::unique_ptr<rd_kafka_t, RdKafkaDeleter> rk_;
  std::unique_ptr<rd_kafka_mock_cluster_t, ClusterDeleter> cluster_;
};

TEST_F(ControlTest, BrokerControlsAnswerOk) {
  EXPECT_EQ(Run("ping"), "ok");
  EXPECT_EQ(Run("broker-down 1"), "ok");
  EXPECT_EQ(Run("broker-up 1\r"), "ok");
  EXPECT_EQ(Run("broker-down -1"), "ok");
  EXPECT_EQ(Run("broker-up -1"), "ok");
  EXPECT_EQ(Run("  rtt 2 250 "), "ok");
  EXPECT_EQ(Run("coordinator tally 2"), "ok");
}

TEST_F(ControlTest, PushErrorsTakesNamesNumbersAndOneRepeatedError) {
  EXPECT_THAT(Run("push-errors OffsetCommit 2 REBALANCE_IN_PROGRESS NOT_COORDINATOR"),
              StartsWith("ok 2 x ApiKey 8"));
  EXPECT_THAT(Run("push-errors heartbeat 3 RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS"),
              StartsWith("ok 3 x ApiKey 12"));
  EXPECT_THAT(Run("push-errors 0 1 7"), StartsWith("ok 1 x ApiKey 0"));  // 7: REQUEST_TIMED_OUT
  EXPECT_THAT(Run("push-errors Fetch 1 _TRANSPORT"), StartsWith("ok"));
  EXPECT_EQ(Run("clear-errors OffsetCommit"), "ok");
  EXPECT_THAT(Run("broker-errors 1 Produce 2 NOT_LEADER_FOR_PARTITION 100"),
              StartsWith("ok 2 x ApiKey 0 on broker 1"));
  size_t count = 0;
  ASSERT_EQ(rd_kafka_mock_broker_error_stack_cnt(cluster_.get(), 1, 0, &count),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  EXPECT_EQ(count, 2u);
}

// A typo must never be taken for a harmless no-op: the fault scenario would
// silently test nothing.
TEST_F(ControlTest, BadCommandsAnswerErrors) {
  EXPECT_THAT(Run(""), StartsWith("error: "));
  EXPECT_THAT(Run("reboot"), HasSubstr("unknown command"));
  EXPECT_THAT(Run("broker-down"), StartsWith("error: usage"));
  EXPECT_THAT(Run("broker-down one"), StartsWith("error: usage"));
  EXPECT_THAT(Run("broker-down 9"), StartsWith("error: "));  // no such broker
  EXPECT_THAT(Run("rtt 1 -5"), StartsWith("error: usage"));
  EXPECT_THAT(Run("push-errors NoSuchApi 1 NOT_COORDINATOR"), StartsWith("error: usage"));
  EXPECT_THAT(Run("push-errors Fetch 1 NO_SUCH_ERROR"), HasSubstr("unknown error code"));
  EXPECT_THAT(Run("push-errors Fetch 3 NOT_COORDINATOR REQUEST_TIMED_OUT"),
              HasSubstr("3 errors wanted, 2 given"));
}

TEST_F(ControlTest, ServerAnswersEveryLineOnOneConnection) {
  ControlServer server(cluster_.get());
  std::string error;
  ASSERT_TRUE(server.Start(&error)) << error;
  ASSERT_GT(server.port(), 0);
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(server.port()));
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string commands = "ping\nbroker-down 1\nbogus\n";
  ASSERT_EQ(write(fd, commands.data(), commands.size()), static_cast<ssize_t>(commands.size()));
  std::string answers;
  char buf[256];
  while (std::count(answers.begin(), answers.end(), '\n') < 3) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    ASSERT_GT(n, 0);
    answers.append(buf, static_cast<size_t>(n));
  }
  EXPECT_THAT(answers, StartsWith("ok\nok\nerror: unknown command 'bogus'"));
  close(fd);
  server.Stop();  // bounded: returns with no client connected
}

TEST_F(ControlTest, StopReturnsWhileAClientIsConnected) {
  ControlServer server(cluster_.get());
  std::string error;
  ASSERT_TRUE(server.Start(&error)) << error;
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(server.port()));
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  server.Stop();  // must not wait for the idle client
  close(fd);
}

}  // namespace
}  // namespace tally::devbroker
