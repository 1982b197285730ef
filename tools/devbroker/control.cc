#include "tools/devbroker/control.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "librdkafka/rdkafka.h"

namespace tally::devbroker {
namespace {

// Kafka protocol request types by name (the numbers are the protocol's).
bool ParseApiKey(absl::string_view text, int16_t* key) {
  static const std::map<std::string, int16_t, std::less<>> kNames = {
      {"produce", 0},        {"fetch", 1},       {"listoffsets", 2},      {"metadata", 3},
      {"offsetcommit", 8},   {"offsetfetch", 9}, {"findcoordinator", 10}, {"joingroup", 11},
      {"heartbeat", 12},     {"leavegroup", 13}, {"syncgroup", 14},       {"apiversions", 18},
      {"initproducerid", 22}};
  int value = 0;
  if (absl::SimpleAtoi(text, &value)) {
    if (value < 0 || value > 100) return false;
    *key = static_cast<int16_t>(value);
    return true;
  }
  auto it = kNames.find(absl::AsciiStrToLower(text));
  if (it == kNames.end()) return false;
  *key = it->second;
  return true;
}

bool ParseError(absl::string_view text, rd_kafka_resp_err_t* err) {
  int value = 0;
  if (absl::SimpleAtoi(text, &value)) {
    *err = static_cast<rd_kafka_resp_err_t>(value);
    return true;
  }
  absl::ConsumePrefix(&text, "RD_KAFKA_RESP_ERR_");
  const struct rd_kafka_err_desc* descs = nullptr;
  size_t count = 0;
  rd_kafka_get_err_descs(&descs, &count);
  for (size_t i = 0; i < count; ++i) {
    if (descs[i].name != nullptr && absl::EqualsIgnoreCase(descs[i].name, text)) {
      *err = descs[i].code;
      return true;
    }
  }
  return false;
}

std::string Answer(rd_kafka_resp_err_t err) {
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return "ok";
  return absl::StrCat("error: ", rd_kafka_err2name(err), ": ", rd_kafka_err2str(err));
}

}  // namespace

std::string ExecuteControlCommand(rd_kafka_mock_cluster_t* cluster, std::string_view line_in) {
  absl::string_view line(line_in.data(), line_in.size());
  std::vector<absl::string_view> words =
      absl::StrSplit(absl::StripAsciiWhitespace(line), absl::ByAnyChar(" \t"), absl::SkipEmpty());
  if (words.empty()) return "error: empty command";
  const absl::string_view command = words[0];
  auto arg_count_is = [&](size_t n) { return words.size() == n + 1; };
  int32_t broker = 0;
  int16_t api_key = 0;
  if (command == "ping") return "ok";
  if (command == "broker-down" || command == "broker-up") {
    if (!arg_count_is(1) || !absl::SimpleAtoi(words[1], &broker)) {
      return absl::StrCat("error: usage: ", command, " <broker id|-1>");
    }
    return Answer(command == "broker-down" ? rd_kafka_mock_broker_set_down(cluster, broker)
                                           : rd_kafka_mock_broker_set_up(cluster, broker));
  }
  if (command == "rtt") {
    int ms = 0;
    if (!arg_count_is(2) || !absl::SimpleAtoi(words[1], &broker) ||
        !absl::SimpleAtoi(words[2], &ms) || ms < 0) {
      return "error: usage: rtt <broker id|-1> <ms>";
    }
    return Answer(rd_kafka_mock_broker_set_rtt(cluster, broker, ms));
  }
  if (command == "push-errors") {
    int count = 0;
    if (words.size() < 4 || !ParseApiKey(words[1], &api_key) ||
        !absl::SimpleAtoi(words[2], &count) || count < 1) {
      return "error: usage: push-errors <ApiKey> <count> <err>...";
    }
    const size_t given = words.size() - 3;
    if (given != 1 && given != static_cast<size_t>(count)) {
      return absl::StrCat("error: ", count, " errors wanted, ", given, " given (give 1 or ", count,
                          ")");
    }
    std::vector<rd_kafka_resp_err_t> errors;
    for (int i = 0; i < count; ++i) {
      rd_kafka_resp_err_t err;
      const absl::string_view name = words[3 + (given == 1 ? 0 : i)];
      if (!ParseError(name, &err)) return absl::StrCat("error: unknown error code ", name);
      errors.push_back(err);
    }
    rd_kafka_mock_push_request_errors_array(cluster, api_key, errors.size(), errors.data());
    return absl::StrCat("ok ", count, " x ApiKey ", api_key);
  }
  if (command == "broker-errors") {
    int count = 0;
    int rtt_ms = 0;
    rd_kafka_resp_err_t err;
    if ((words.size() != 5 && words.size() != 6) || !absl::SimpleAtoi(words[1], &broker) ||
        !ParseApiKey(words[2], &api_key) || !absl::SimpleAtoi(words[3], &count) || count < 1 ||
        !ParseError(words[4], &err) ||
        (words.size() == 6 && (!absl::SimpleAtoi(words[5], &rtt_ms) || rtt_ms < 0))) {
      return "error: usage: broker-errors <id> <ApiKey> <count> <err> [rtt_ms]";
    }
    for (int i = 0; i < count; ++i) {
      rd_kafka_resp_err_t r =
          rd_kafka_mock_broker_push_request_error_rtts(cluster, broker, api_key, 1, err, rtt_ms);
      if (r != RD_KAFKA_RESP_ERR_NO_ERROR) return Answer(r);
    }
    return absl::StrCat("ok ", count, " x ApiKey ", api_key, " on broker ", broker);
  }
  if (command == "clear-errors") {
    if (!arg_count_is(1) || !ParseApiKey(words[1], &api_key)) {
      return "error: usage: clear-errors <ApiKey>";
    }
    rd_kafka_mock_clear_request_errors(cluster, api_key);
    return "ok";
  }
  if (command == "coordinator") {
    if (!arg_count_is(2) || !absl::SimpleAtoi(words[2], &broker)) {
      return "error: usage: coordinator <group> <broker id>";
    }
    const std::string group(words[1]);
    return Answer(rd_kafka_mock_coordinator_set(cluster, "group", group.c_str(), broker));
  }
  return absl::StrCat("error: unknown command '", command, "' (see tally-devbroker --help)");
}

bool ControlServer::Start(std::string* error) {
  if (pipe(wake_pipe_) != 0) {
    *error = absl::StrCat("pipe: ", std::strerror(errno));
    return false;
  }
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) {
    *error = absl::StrCat("socket: ", std::strerror(errno));
    return false;
  }
  const int one = 1;
  (void)setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listen_fd_, 8) != 0 ||
      getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    *error = absl::StrCat("control socket: ", std::strerror(errno));
    return false;
  }
  port_ = ntohs(addr.sin_port);
  thread_ = std::thread([this] { Serve(); });
  return true;
}

void ControlServer::Stop() {
  if (thread_.joinable()) {
    const char byte = 'x';
    (void)!write(wake_pipe_[1], &byte, 1);
    thread_.join();
  }
  for (int* fd : {&listen_fd_, &wake_pipe_[0], &wake_pipe_[1]}) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
  }
}

void ControlServer::Serve() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    ServeClient(fd);
    close(fd);
  }
}

void ControlServer::ServeClient(int fd) {
  std::string buffer;
  char chunk[1024];
  for (;;) {
    pollfd fds[2] = {{fd, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    const ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n <= 0) return;
    buffer.append(chunk, static_cast<size_t>(n));
    if (buffer.size() > size_t{64} * 1024) return;  // not a command stream
    size_t eol;
    while ((eol = buffer.find('\n')) != std::string::npos) {
      std::string line = buffer.substr(0, eol);
      buffer.erase(0, eol + 1);
      std::string answer = ExecuteControlCommand(cluster_, line);
      std::fprintf(stderr, "tally-devbroker: control: %s -> %s\n",
                   std::string(absl::StripAsciiWhitespace(line)).c_str(), answer.c_str());
      answer.push_back('\n');
      size_t sent = 0;
      while (sent < answer.size()) {
        const ssize_t w = send(fd, answer.data() + sent, answer.size() - sent, MSG_NOSIGNAL);
        if (w <= 0) return;
        sent += static_cast<size_t>(w);
      }
    }
  }
}

}  // namespace tally::devbroker
