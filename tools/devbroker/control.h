// The devbroker's control channel: line commands that drive the mock
// cluster's own fault controls (broker down/up, RTT, request errors), for the
// fault tests in tests/faults. Not a production interface: it listens on
// loopback only, has no authentication, and exists because librdkafka's mock
// cluster can only be steered from inside the process that owns it.
//
// Protocol: one command per line (LF or CRLF), one answer line per command,
// `ok` (sometimes `ok <detail>`) or `error: <why>`. A client may send several
// commands on one connection; connections are served one at a time, so keep
// them short (bash: exec 3<>/dev/tcp/127.0.0.1/$PORT; echo cmd >&3; read -r
// answer <&3). Commands are listed in kControlHelp.
#ifndef TALLY_TOOLS_DEVBROKER_CONTROL_H_
#define TALLY_TOOLS_DEVBROKER_CONTROL_H_

#include <atomic>
#include <string>
#include <string_view>
#include <thread>

#include "librdkafka/rdkafka.h"
#include "librdkafka/rdkafka_mock.h"

namespace tally::devbroker {

inline constexpr char kControlHelp[] =
    "  ping                                   answers ok\n"
    "  broker-down <id|-1>                    disconnect the broker, refuse connections\n"
    "                                         (-1: every broker; no leader change)\n"
    "  broker-up <id|-1>                      accept connections again\n"
    "  rtt <id|-1> <ms>                       delay every response of the broker\n"
    "  push-errors <ApiKey> <count> <err>...  the next <count> requests of ApiKey (cluster-\n"
    "                                         wide) fail with the errors in order; one err\n"
    "                                         is repeated <count> times\n"
    "  broker-errors <id> <ApiKey> <count> <err> [rtt_ms]\n"
    "                                         the same on one broker, with a delay\n"
    "  clear-errors <ApiKey>                  drop the cluster's pending errors for ApiKey\n"
    "  coordinator <group> <id>               make broker <id> the group's coordinator\n"
    "ApiKey: a number or Produce, Fetch, ListOffsets, Metadata, OffsetCommit, OffsetFetch,\n"
    "FindCoordinator, JoinGroup, Heartbeat, LeaveGroup, SyncGroup, ApiVersions,\n"
    "InitProducerId. err: a number or a librdkafka name with or without RD_KAFKA_RESP_ERR_\n"
    "(REBALANCE_IN_PROGRESS, NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS,\n"
    "REQUEST_TIMED_OUT, _TRANSPORT to drop the connection, ...).\n";

// Runs one command line against `cluster`; returns the answer line (no LF).
std::string ExecuteControlCommand(rd_kafka_mock_cluster_t* cluster, std::string_view line);

// Serves the protocol on 127.0.0.1:<kernel-chosen port> on its own thread.
// Start() binds and listens (so the port is known before it returns); Stop()
// wakes the thread and joins it (bounded: it waits for no client). The
// cluster must outlive the server.
class ControlServer {
 public:
  explicit ControlServer(rd_kafka_mock_cluster_t* cluster) : cluster_(cluster) {}
  ~ControlServer() { Stop(); }
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Returns false with *error set on failure.
  bool Start(std::string* error);
  void Stop();
  int port() const { return port_; }

 private:
  void Serve();
  // Reads commands from one client until it closes or Stop() is called.
  void ServeClient(int fd);

  rd_kafka_mock_cluster_t* const cluster_;
  int listen_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};  // Stop() writes to [1]; the thread polls [0]
  int port_ = 0;
  std::thread thread_;  // touches listen_fd_ and wake_pipe_[0] only
};

}  // namespace tally::devbroker

#endif  // TALLY_TOOLS_DEVBROKER_CONTROL_H_
