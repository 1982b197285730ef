// tally-devbroker: librdkafka's mock Kafka cluster on loopback TCP, for
// development and integration tests (no real Kafka broker can be installed
// here).
//
// Start-up contract, relied on by scripts and tests/kafka/devbroker_process:
//  1. every topic is created (rd_kafka_mock_topic_create) before anything
//     is printed, so a client that sees the bootstrap list finds its topics;
//  2. then exactly one line "bootstrap.servers=<host:port,...>" on stdout,
//     and, with --bootstrap-file, the bare list written to that file
//     atomically (temp file + rename), so waiting for the file is enough;
//  3. with --control-port-file, the control channel (control.h) listens on
//     127.0.0.1 and its port is written to that file (atomically) BEFORE the
//     bootstrap file, so a script that waited for the bootstrap file can
//     send commands at once;
//  4. it runs until SIGTERM/SIGINT, stops the control channel, destroys the
//     cluster, removes the bootstrap and control-port files and exits 0.
//     Exit 2 means bad flags or start-up failure. SIGKILL leaves both files
//     behind: scripts that kill it outright remove them.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "librdkafka/rdkafka.h"
#include "librdkafka/rdkafka_mock.h"
#include "tools/devbroker/control.h"

namespace {

constexpr int kExitUsage = 2;

// RAII owners: the mock cluster must be destroyed before the handle it was
// created on.
struct RdKafkaDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
struct MockClusterDeleter {
  void operator()(rd_kafka_mock_cluster_t* cluster) const {
    rd_kafka_mock_cluster_destroy(cluster);
  }
};

constexpr char kUsageHead[] =
    "usage: tally-devbroker [flags]\n"
    "Runs librdkafka's mock Kafka cluster on 127.0.0.1 until SIGTERM/SIGINT and prints\n"
    "one line 'bootstrap.servers=<list>' on stdout when every topic exists.\n"
    "  --brokers N              mock brokers (default 1)\n"
    "  --partitions N           partitions of every topic (default 8)\n"
    "  --topics a,b,...         topics to create\n"
    "                           (default clicks,conversions,commissions,rejected,unattributed)\n"
    "  --topic-partitions t=N,...  per-topic partition counts (creates t if not in --topics)\n"
    "  --replication N          replication factor, at most --brokers (default 1)\n"
    "  --bootstrap-file PATH    also write the list to PATH (temp file + rename)\n"
    "  --control-port-file PATH listen for control commands on 127.0.0.1 (kernel-chosen\n"
    "                           port, written to PATH before the bootstrap file), one command\n"
    "                           a line, answered 'ok' or 'error: ...'; from bash:\n"
    "                             exec 3<>/dev/tcp/127.0.0.1/$(cat PATH)\n"
    "                             echo 'broker-down 1' >&3; read -r answer <&3\n"
    "                           Broker ids are 1..N. Commands:\n";
constexpr char kUsageTail[] =
    "The listen ports are chosen by the kernel: librdkafka 2.0.2's mock API has no way\n"
    "to pick them, hence no --port.\n";

std::string Usage() { return absl::StrCat(kUsageHead, tally::devbroker::kControlHelp, kUsageTail); }

struct Options {
  int brokers = 1;
  int partitions = 8;
  int replication = 1;
  std::string topics = "clicks,conversions,commissions,rejected,unattributed,tally-state-changelog";
  std::string topic_partitions;
  std::string bootstrap_file;
  std::string control_port_file;
};

// Accepts "--name=value" and "--name value". Returns false with an empty
// *error for --help.
bool ParseFlags(int argc, char** argv, Options* options, std::string* error) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      error->clear();
      return false;
    }
    if (arg.rfind("--", 0) != 0) {
      *error = absl::StrCat("unexpected argument: ", arg);
      return false;
    }
    std::string name = arg.substr(2);
    std::string value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      *error = absl::StrCat("--", name, " needs a value");
      return false;
    }
    int* int_target = nullptr;
    if (name == "brokers") {
      int_target = &options->brokers;
    } else if (name == "partitions") {
      int_target = &options->partitions;
    } else if (name == "replication") {
      int_target = &options->replication;
    } else if (name == "topics") {
      options->topics = value;
    } else if (name == "topic-partitions") {
      options->topic_partitions = value;
    } else if (name == "bootstrap-file") {
      options->bootstrap_file = value;
    } else if (name == "control-port-file") {
      options->control_port_file = value;
    } else {
      *error = absl::StrCat("unknown flag --", name);
      return false;
    }
    if (int_target != nullptr && !absl::SimpleAtoi(value, int_target)) {
      *error = absl::StrCat("--", name, ": not a number: ", value);
      return false;
    }
  }
  return true;
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "tally-devbroker: %s\n", message.c_str());
  return kExitUsage;
}

bool ParseTopicPartitions(const std::string& spec, std::map<std::string, int>* out,
                          std::string* error) {
  for (absl::string_view item : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    std::vector<absl::string_view> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    int n = 0;
    if (kv.size() != 2 || kv[0].empty() || !absl::SimpleAtoi(kv[1], &n) || n < 1) {
      *error = absl::StrCat("--topic-partitions: bad entry \"", item, "\" (want name=N, N>=1)");
      return false;
    }
    (*out)[std::string(kv[0])] = n;
  }
  return true;
}

bool WriteFileAtomically(const std::string& path, const std::string& content, std::string* error) {
  const std::string temp = absl::StrCat(path, ".tmp.", getpid());
  FILE* f = std::fopen(temp.c_str(), "w");
  if (f == nullptr) {
    *error = absl::StrCat("open ", temp, ": ", std::strerror(errno));
    return false;
  }
  bool ok = std::fwrite(content.data(), 1, content.size(), f) == content.size();
  ok = (std::fflush(f) == 0) && ok;
  ok = (fsync(fileno(f)) == 0) && ok;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(temp.c_str(), path.c_str()) != 0) {
    *error = absl::StrCat("write ", path, ": ", std::strerror(errno));
    std::remove(temp.c_str());
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  std::string error;
  if (!ParseFlags(argc, argv, &options, &error)) {
    if (error.empty()) {  // --help
      std::fputs(Usage().c_str(), stdout);
      return 0;
    }
    std::fprintf(stderr, "%s", Usage().c_str());
    return Fail(error);
  }
  const int brokers = options.brokers;
  const int partitions = options.partitions;
  const int replication = options.replication;
  const std::string& bootstrap_file = options.bootstrap_file;
  if (brokers < 1) return Fail("--brokers must be at least 1");
  if (partitions < 1) return Fail("--partitions must be at least 1");
  if (replication < 1 || replication > brokers) {
    return Fail("--replication must be between 1 and --brokers");
  }
  // Topic -> partitions, in a stable order.
  std::map<std::string, int> topics;
  for (absl::string_view t : absl::StrSplit(options.topics, ',', absl::SkipEmpty())) {
    topics[std::string(t)] = partitions;
  }
  if (!ParseTopicPartitions(options.topic_partitions, &topics, &error)) {
    return Fail(error);
  }

  // Block the stop signals before librdkafka starts its threads (they
  // inherit the mask), so that only sigwait() below ever receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  if (pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr) != 0) {
    return Fail("pthread_sigmask failed");
  }

  // The mock cluster needs an rd_kafka_t for its bookkeeping; a producer
  // handle without bootstrap servers never connects anywhere.
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  // log_level 4 (warning): hides the notice that this handle has no
  // bootstrap.servers, which is intended and only confuses readers.
  for (const auto& [key, value] :
       {std::pair<const char*, const char*>{"client.id", "tally-devbroker"}, {"log_level", "4"}}) {
    if (rd_kafka_conf_set(conf, key, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return Fail(errstr);
    }
  }
  std::unique_ptr<rd_kafka_t, RdKafkaDeleter> rk(
      rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr)));  // takes `conf`
  if (rk == nullptr) return Fail(absl::StrCat("rd_kafka_new: ", errstr));
  std::unique_ptr<rd_kafka_mock_cluster_t, MockClusterDeleter> cluster(
      rd_kafka_mock_cluster_new(rk.get(), brokers));
  if (cluster == nullptr) return Fail("rd_kafka_mock_cluster_new failed");

  for (const auto& [topic, count] : topics) {
    rd_kafka_resp_err_t err =
        rd_kafka_mock_topic_create(cluster.get(), topic.c_str(), count, replication);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return Fail(absl::StrCat("creating topic ", topic, ": ", rd_kafka_err2str(err)));
    }
  }
  const std::string bootstrap = rd_kafka_mock_cluster_bootstraps(cluster.get());

  // Declared after `cluster`, so destroyed before it.
  std::unique_ptr<tally::devbroker::ControlServer> control;
  if (!options.control_port_file.empty()) {
    control = std::make_unique<tally::devbroker::ControlServer>(cluster.get());
    if (!control->Start(&error) ||
        !WriteFileAtomically(options.control_port_file, absl::StrCat(control->port(), "\n"),
                             &error)) {
      return Fail(error);
    }
    std::fprintf(stderr, "tally-devbroker: control channel on 127.0.0.1:%d\n", control->port());
  }

  if (!bootstrap_file.empty() && !WriteFileAtomically(bootstrap_file, bootstrap, &error)) {
    return Fail(error);
  }
  std::fprintf(stdout, "bootstrap.servers=%s\n", bootstrap.c_str());
  std::fflush(stdout);

  std::string created;
  for (const auto& [topic, count] : topics) {
    absl::StrAppend(&created, created.empty() ? "" : ", ", topic, "(", count, ")");
  }
  std::fprintf(stderr,
               "tally-devbroker: %d mock broker(s) at %s; topics: %s\n"
               "tally-devbroker: mock limits (librdkafka 2.0.2): each partition keeps about "
               "5 MiB or 100,000 batches and silently drops older data, so size partitions for "
               "the test volume; transactions are accepted but have no effect; no failover; "
               "every rebalance waits about session.timeout.ms; topics other than the above "
               "are auto-created with 4 partitions on first metadata request.\n",
               brokers, bootstrap.c_str(), created.c_str());

  int signal_number = 0;
  while (sigwait(&stop_signals, &signal_number) != 0) {
  }
  std::fprintf(stderr, "tally-devbroker: %s received, shutting down\n",
               signal_number == SIGINT ? "SIGINT" : "SIGTERM");
  control.reset();
  cluster.reset();
  rk.reset();
  if (!bootstrap_file.empty()) std::remove(bootstrap_file.c_str());
  if (!options.control_port_file.empty()) std::remove(options.control_port_file.c_str());
  return 0;
}
