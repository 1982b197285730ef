// DevBrokerProcess: runs the real tally-devbroker binary (librdkafka's mock
// cluster) as a child process for integration tests.
//
//   auto broker = DevBrokerProcess::Start(/*partitions=*/8, {"clicks"});
//   ASSERT_TRUE(broker.ok()) << broker.status();
//   props["bootstrap.servers"] = (*broker)->bootstrap_servers();
//
// Start() returns once every topic exists and the brokers accept
// connections. The destructor sends SIGTERM, waits (bounded) and records a
// gtest failure unless the process exited 0, so a devbroker that crashed
// during the test does not go unnoticed. Not thread-safe; one owner.
#ifndef TALLY_TESTS_KAFKA_DEVBROKER_PROCESS_H_
#define TALLY_TESTS_KAFKA_DEVBROKER_PROCESS_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tally::test_support {

class DevBrokerProcess {
 public:
  struct Options {
    int brokers = 1;
    int partitions = 8;  // for every topic without an entry in topic_partitions
    // Empty: the devbroker's default list (the five Tally topics).
    std::vector<std::string> topics;
    std::map<std::string, int> topic_partitions;  // per-topic override
    // Empty: the tally-devbroker built with this tree (DefaultBinaryPath()).
    std::string binary;
    // Bound on the wait for the "bootstrap.servers=" line.
    absl::Duration start_timeout = absl::Seconds(15);
  };

  static absl::StatusOr<std::unique_ptr<DevBrokerProcess>> Start(const Options& options);
  static absl::StatusOr<std::unique_ptr<DevBrokerProcess>> Start(
      int partitions, const std::vector<std::string>& topics);

  // Stop() if still running; a non-zero exit becomes ADD_FAILURE().
  ~DevBrokerProcess();
  DevBrokerProcess(const DevBrokerProcess&) = delete;
  DevBrokerProcess& operator=(const DevBrokerProcess&) = delete;

  // "127.0.0.1:port[,...]", ready for the bootstrap.servers property.
  const std::string& bootstrap_servers() const { return bootstrap_servers_; }
  pid_t pid() const { return pid_; }

  // SIGTERM, then waits up to `timeout` (SIGKILL after it). OK only if the
  // process exited with status 0. Idempotent: later calls return the first
  // result.
  absl::Status Stop(absl::Duration timeout = absl::Seconds(10));

  // The tally-devbroker this tree built (a compile-time path).
  static std::string DefaultBinaryPath();

 private:
  DevBrokerProcess() = default;
  // Waits for the child to exit, at most `timeout`. Returns its wait status.
  std::optional<int> WaitForExit(absl::Duration timeout);
  void RemoveTempDir();

  pid_t pid_ = -1;
  int stdout_fd_ = -1;  // read end of the child's stdout
  int pidfd_ = -1;      // -1 if pidfd_open is unavailable
  std::string temp_dir_;
  std::string bootstrap_file_;
  std::string bootstrap_servers_;
  std::optional<absl::Status> stop_result_;
};

}  // namespace tally::test_support

#endif  // TALLY_TESTS_KAFKA_DEVBROKER_PROCESS_H_
