#include "tests/kafka/devbroker_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

extern char** environ;

namespace tally::test_support {
namespace {

constexpr absl::string_view kPrefix = "bootstrap.servers=";

std::string ErrnoText(const char* what) { return absl::StrCat(what, ": ", std::strerror(errno)); }

int PollTimeoutMs(absl::Duration left) {
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))));
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited with status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("killed by signal ", WTERMSIG(status));
  return absl::StrCat("wait status ", status);
}

}  // namespace

std::string DevBrokerProcess::DefaultBinaryPath() { return TALLY_DEVBROKER_PATH; }

absl::StatusOr<std::unique_ptr<DevBrokerProcess>> DevBrokerProcess::Start(
    int partitions, const std::vector<std::string>& topics) {
  Options options;
  options.partitions = partitions;
  options.topics = topics;
  return Start(options);
}

absl::StatusOr<std::unique_ptr<DevBrokerProcess>> DevBrokerProcess::Start(const Options& options) {
  std::unique_ptr<DevBrokerProcess> process(new DevBrokerProcess());
  // On any failure below, the destructor kills the child and cleans up;
  // marking the result as decided keeps it from adding a second failure.
  auto fail = [&process](absl::Status status) {
    process->stop_result_ = status;
    if (process->pid_ > 0) {
      kill(process->pid_, SIGKILL);
      process->WaitForExit(absl::Seconds(5));
    }
    return status;
  };

  const char* tmp = std::getenv("TMPDIR");
  std::string dir_template =
      absl::StrCat(tmp != nullptr && *tmp ? tmp : "/tmp", "/tally-devbroker-XXXXXX");
  if (mkdtemp(dir_template.data()) == nullptr)
    return fail(absl::InternalError(ErrnoText("mkdtemp")));
  process->temp_dir_ = dir_template;
  process->bootstrap_file_ = absl::StrCat(dir_template, "/bootstrap");

  std::vector<std::string> args = {
      options.binary.empty() ? DefaultBinaryPath() : options.binary,
      absl::StrCat("--brokers=", options.brokers),
      absl::StrCat("--partitions=", options.partitions),
      absl::StrCat("--bootstrap-file=", process->bootstrap_file_),
  };
  if (!options.topics.empty()) {
    args.push_back(absl::StrCat("--topics=", absl::StrJoin(options.topics, ",")));
  }
  if (!options.topic_partitions.empty()) {
    args.push_back(absl::StrCat("--topic-partitions=", absl::StrJoin(options.topic_partitions, ",",
                                                                     absl::PairFormatter("="))));
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return fail(absl::InternalError(ErrnoText("pipe2")));
  process->stdout_fd_ = pipe_fds[0];
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  // dup2 clears FD_CLOEXEC on the new descriptor; the originals close on exec.
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  pid_t pid = -1;
  int spawn_error = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  if (spawn_error != 0) {
    return fail(absl::InternalError(
        absl::StrCat("posix_spawn ", args[0], ": ", std::strerror(spawn_error))));
  }
  process->pid_ = pid;
  process->pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));  // -1: fall back

  // The stdout line is printed after every topic exists and the bootstrap
  // file is in place; reading it is the start-up barrier (no sleeping).
  const absl::Time deadline = absl::Now() + options.start_timeout;
  std::string output;
  while (!absl::StrContains(output, "\n")) {
    pollfd pfd{process->stdout_fd_, POLLIN, 0};
    int ready = poll(&pfd, 1, PollTimeoutMs(deadline - absl::Now()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return fail(absl::InternalError(ErrnoText("poll")));
    if (ready == 0) {
      return fail(absl::DeadlineExceededError(
          absl::StrCat("tally-devbroker printed no bootstrap line within ",
                       absl::FormatDuration(options.start_timeout))));
    }
    char buffer[512];
    ssize_t n = read(process->stdout_fd_, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::optional<int> status = process->WaitForExit(absl::Seconds(5));
      process->pid_ = -1;
      return fail(absl::InternalError(
          absl::StrCat("tally-devbroker exited before it was ready: ",
                       status.has_value() ? DescribeWaitStatus(*status) : "still running")));
    }
    output.append(buffer, static_cast<size_t>(n));
  }
  absl::string_view line = absl::string_view(output).substr(0, output.find('\n'));
  if (!absl::ConsumePrefix(&line, kPrefix) || line.empty()) {
    return fail(absl::InternalError(absl::StrCat("unexpected devbroker output: ", output)));
  }
  process->bootstrap_servers_ = std::string(line);

  // The file must already hold the same list (written before the line).
  std::ifstream file(process->bootstrap_file_);
  std::stringstream contents;
  contents << file.rdbuf();
  if (contents.str() != process->bootstrap_servers_) {
    return fail(
        absl::InternalError(absl::StrCat("bootstrap file holds \"", contents.str(),
                                         "\", stdout said \"", process->bootstrap_servers_, "\"")));
  }
  return process;
}

std::optional<int> DevBrokerProcess::WaitForExit(absl::Duration timeout) {
  if (pid_ <= 0) return std::nullopt;
  const absl::Time deadline = absl::Now() + timeout;
  int status = 0;
  for (;;) {
    pid_t done = waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
      pid_ = -1;
      return status;
    }
    if (done < 0 && errno != EINTR) return std::nullopt;
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return std::nullopt;
    if (pidfd_ >= 0) {
      // Readable when the child exits: an event, not a sleep.
      pollfd pfd{pidfd_, POLLIN, 0};
      poll(&pfd, 1, PollTimeoutMs(left));
    } else {
      // No pidfd (old kernel): short bounded naps between checks.
      absl::SleepFor(std::min(left, absl::Milliseconds(10)));
    }
  }
}

absl::Status DevBrokerProcess::Stop(absl::Duration timeout) {
  if (stop_result_.has_value()) return *stop_result_;
  absl::Status result;
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    std::optional<int> status = WaitForExit(timeout);
    if (!status.has_value()) {
      kill(pid_, SIGKILL);
      WaitForExit(absl::Seconds(5));
      result = absl::DeadlineExceededError(absl::StrCat(
          "tally-devbroker did not exit within ", absl::FormatDuration(timeout), " of SIGTERM"));
    } else if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
      result = absl::InternalError(
          absl::StrCat("tally-devbroker ", DescribeWaitStatus(*status), " after SIGTERM"));
    } else if (access(bootstrap_file_.c_str(), F_OK) == 0) {
      result = absl::InternalError("tally-devbroker left its bootstrap file behind");
    }
  }
  stop_result_ = result;
  return result;
}

void DevBrokerProcess::RemoveTempDir() {
  if (temp_dir_.empty()) return;
  std::remove(bootstrap_file_.c_str());
  rmdir(temp_dir_.c_str());
  temp_dir_.clear();
}

DevBrokerProcess::~DevBrokerProcess() {
  const bool decided = stop_result_.has_value();
  absl::Status status = Stop();
  if (!decided && !status.ok()) ADD_FAILURE() << "DevBrokerProcess: " << status;
  if (stdout_fd_ >= 0) close(stdout_fd_);
  if (pidfd_ >= 0) close(pidfd_);
  RemoveTempDir();
}

}  // namespace tally::test_support
