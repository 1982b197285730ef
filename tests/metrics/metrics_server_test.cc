#include "processor/metrics/metrics_server.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mutex>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "processor/metrics/health.h"
#include "processor/metrics/internal/process_collector.h"
#include "prometheus/counter.h"
#include "tests/metrics/fake_clock.h"

namespace tally {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// Owns a file descriptor for the duration of a test.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

sockaddr_in Loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

// A minimal HTTP/1.0 GET over a raw loopback socket; returns the whole
// response (headers and body), or "" on failure. Bounded by a 5 s receive
// timeout so a hung server fails the test instead of hanging it.
std::string HttpGet(int port, const std::string& path) {
  Fd sock(::socket(AF_INET, SOCK_STREAM, 0));
  if (sock.get() < 0) return "";
  timeval timeout{5, 0};
  ::setsockopt(sock.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  ::setsockopt(sock.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  sockaddr_in addr = Loopback(port);
  if (::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return "";
  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  if (::send(sock.get(), request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    return "";
  }
  std::string response;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::recv(sock.get(), buffer, sizeof(buffer), 0);
    if (n <= 0) break;  // EOF (server closed after the response) or timeout
    response.append(buffer, static_cast<size_t>(n));
  }
  return response;
}

// The value of an unlabelled sample "name value" in a text exposition.
std::optional<double> SampleValue(const std::string& text, const std::string& name) {
  const std::string prefix = "\n" + name + " ";
  const size_t at = text.find(prefix);
  if (at == std::string::npos) return std::nullopt;
  const size_t start = at + prefix.size();
  const size_t end = text.find('\n', start);
  double value = 0;
  if (!absl::SimpleAtod(text.substr(start, end - start), &value)) return std::nullopt;
  return value;
}

// The status code of a raw HTTP response ("HTTP/1.x NNN ..."), 0 if none.
// civetweb answers in the request's version, HTTP/1.0 for HttpGet().
int StatusCode(const std::string& response) {
  int code = 0;
  if (response.size() < 12 || response.compare(0, 7, "HTTP/1.") != 0 ||
      !absl::SimpleAtoi(response.substr(9, 3), &code)) {
    return 0;
  }
  return code;
}

// The value of header `name` in a raw HTTP response, "" if absent.
std::string Header(const std::string& response, const std::string& name) {
  const std::string key = "\r\n" + name + ": ";
  const size_t at = response.find(key);
  if (at == std::string::npos) return "";
  const size_t start = at + key.size();
  return response.substr(start, response.find("\r\n", start) - start);
}

// The body of a raw HTTP response.
std::string Body(const std::string& response) {
  const size_t at = response.find("\r\n\r\n");
  return at == std::string::npos ? "" : response.substr(at + 4);
}

class MetricsServerTest : public ::testing::Test {
 protected:
  std::unique_ptr<MetricsServer> MakeServer(std::shared_ptr<prometheus::Registry> registry,
                                            std::shared_ptr<const Health> health = nullptr) {
    absl::StatusOr<std::unique_ptr<MetricsServer>> server =
        MetricsServer::Start("127.0.0.1:0", std::move(registry), std::move(health));
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? std::move(*server) : nullptr;
  }
};

using testing_support::FakeClock;

class ProbeTest : public MetricsServerTest {
 protected:
  void SetUp() override {
    health_ = std::make_shared<Health>(absl::Seconds(60), [this] { return clock_.Now(); });
    server_ = MakeServer(std::make_shared<prometheus::Registry>(), health_);
    ASSERT_NE(server_, nullptr);
  }
  std::string Get(const std::string& path) { return HttpGet(server_->port(), path); }

  FakeClock clock_;
  std::shared_ptr<Health> health_;
  std::unique_ptr<MetricsServer> server_;
};

TEST_F(ProbeTest, HealthzIs200OkWhileTheLoopHeartbeats) {
  clock_.Advance(absl::Seconds(59));
  health_->Heartbeat();
  const std::string response = Get("/healthz");
  EXPECT_EQ(StatusCode(response), 200);
  EXPECT_THAT(Header(response, "Content-Type"), StartsWith("text/plain"));
  EXPECT_EQ(Body(response), "ok\n");
}

TEST_F(ProbeTest, HealthzIs503WithTheStallWhenTheLoopStopped) {
  clock_.Advance(absl::Seconds(73));
  const std::string response = Get("/healthz");
  EXPECT_EQ(StatusCode(response), 503);
  EXPECT_THAT(Header(response, "Content-Type"), StartsWith("text/plain"));
  EXPECT_EQ(Body(response), "stalled: no loop progress for 73s\n");
}

TEST_F(ProbeTest, ReadyzFollowsSetReady) {
  std::string response = Get("/readyz");
  EXPECT_EQ(StatusCode(response), 503);
  EXPECT_EQ(Body(response), "not ready: starting\n");

  health_->SetReady(true, "");
  response = Get("/readyz");
  EXPECT_EQ(StatusCode(response), 200);
  EXPECT_THAT(Header(response, "Content-Type"), StartsWith("text/plain"));
  EXPECT_EQ(Body(response), "ok\n");

  health_->SetReady(false, "not in the consumer group");
  response = Get("/readyz");
  EXPECT_EQ(StatusCode(response), 503);
  EXPECT_EQ(Body(response), "not ready: not in the consumer group\n");
  // Liveness is independent of readiness.
  EXPECT_EQ(StatusCode(Get("/healthz")), 200);
}

// Guards against the old behaviour: probes on /metrics passed with the broker
// gone, because /metrics answers 200 whatever the state.
TEST_F(ProbeTest, MetricsStays200WhileProbesFail) {
  health_->SetReady(false, "broker unreachable: all brokers down");
  clock_.Advance(absl::Minutes(5));
  EXPECT_EQ(StatusCode(Get("/metrics")), 200);
  EXPECT_EQ(StatusCode(Get("/healthz")), 503);
  EXPECT_EQ(StatusCode(Get("/readyz")), 503);
}

TEST_F(MetricsServerTest, WithoutHealthBothProbesAre503NoHealthSource) {
  std::unique_ptr<MetricsServer> server = MakeServer(std::make_shared<prometheus::Registry>());
  ASSERT_NE(server, nullptr);
  for (const char* path : {"/healthz", "/readyz"}) {
    const std::string response = HttpGet(server->port(), path);
    EXPECT_EQ(StatusCode(response), 503) << path;
    EXPECT_EQ(Body(response), "no health source\n") << path;
  }
}

TEST_F(MetricsServerTest, UnknownPathIs404) {
  std::unique_ptr<MetricsServer> server = MakeServer(std::make_shared<prometheus::Registry>());
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(StatusCode(HttpGet(server->port(), "/nope")), 404);
}

TEST_F(MetricsServerTest, ScrapeShowsRegisteredCounterBuildInfoAndProcessMetrics) {
  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::Counter& counter = prometheus::BuildCounter()
                                     .Name("tally_test_events_total")
                                     .Help("Events seen by the test.")
                                     .Register(*registry)
                                     .Add({{"topic", "clicks"}});
  counter.Increment(41);
  counter.Increment();

  std::unique_ptr<MetricsServer> server = MakeServer(registry);
  ASSERT_NE(server, nullptr);
  ASSERT_GT(server->port(), 0);

  const std::string response = HttpGet(server->port(), "/metrics");
  EXPECT_EQ(StatusCode(response), 200);
  EXPECT_THAT(Header(response, "Content-Type"), StartsWith("text/plain; version=0.0.4"));
  EXPECT_THAT(response, HasSubstr("# TYPE tally_test_events_total counter"));
  EXPECT_THAT(response, HasSubstr("tally_test_events_total{topic=\"clicks\"} 42"));
  EXPECT_THAT(response,
              HasSubstr(absl::StrCat("tally_build_info{version=\"", TALLY_VERSION, "\"} 1")));
  // The standard process_* names (not tally_process_*): what dashboards
  // written for any Prometheus client expect.
  const std::optional<double> rss = SampleValue(response, "process_resident_memory_bytes");
  ASSERT_TRUE(rss.has_value()) << response;
  EXPECT_GT(*rss, 1024.0 * 1024.0);  // any live test binary is over 1 MiB resident
  const std::optional<double> vsz = SampleValue(response, "process_virtual_memory_bytes");
  ASSERT_TRUE(vsz.has_value());
  EXPECT_GE(*vsz, *rss);
  const std::optional<double> fds = SampleValue(response, "process_open_fds");
  ASSERT_TRUE(fds.has_value());
  EXPECT_GE(*fds, 3.0);  // stdin/stdout/stderr plus the listening socket
  const std::optional<double> max_fds = SampleValue(response, "process_max_fds");
  ASSERT_TRUE(max_fds.has_value());
  EXPECT_GE(*max_fds, *fds);
  EXPECT_TRUE(SampleValue(response, "process_cpu_seconds_total").has_value());
  EXPECT_THAT(response, Not(HasSubstr("tally_process_")));
}

// metrics.endpoints: a path left out is not served (404 like any unknown
// path); the others answer as usual.
TEST_F(MetricsServerTest, OnlyTheConfiguredEndpointsAreServed) {
  auto health = std::make_shared<Health>();
  health->SetReady(true, "");
  absl::StatusOr<std::unique_ptr<MetricsServer>> server = MetricsServer::Start(
      "127.0.0.1:0", std::make_shared<prometheus::Registry>(), health, {"/healthz", "/readyz"});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ(StatusCode(HttpGet((*server)->port(), "/metrics")), 404);
  EXPECT_EQ(StatusCode(HttpGet((*server)->port(), "/healthz")), 200);
  EXPECT_EQ(StatusCode(HttpGet((*server)->port(), "/readyz")), 200);

  for (const std::vector<std::string>& bad :
       std::vector<std::vector<std::string>>{{}, {"/metrics", "/debug"}, {"/readyz", "/readyz"}}) {
    absl::StatusOr<std::unique_ptr<MetricsServer>> refused =
        MetricsServer::Start("127.0.0.1:0", std::make_shared<prometheus::Registry>(), health, bad);
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument)
        << absl::StrJoin(bad, ",");
  }
}

TEST_F(MetricsServerTest, PortInUseIsAnErrorStatusNotAnException) {
  // Given a socket already listening on a loopback port,
  Fd holder(::socket(AF_INET, SOCK_STREAM, 0));
  ASSERT_GE(holder.get(), 0);
  sockaddr_in addr = Loopback(0);
  ASSERT_EQ(::bind(holder.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(holder.get(), 1), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::getsockname(holder.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int port = ntohs(addr.sin_port);

  // when the metrics server is asked to listen there too, it reports it.
  const std::string address = absl::StrCat("127.0.0.1:", port);
  absl::StatusOr<std::unique_ptr<MetricsServer>> server =
      MetricsServer::Start(address, std::make_shared<prometheus::Registry>());
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(server.status().message(), HasSubstr(address));
}

TEST_F(MetricsServerTest, MalformedAddressAndNullRegistryAreErrors) {
  EXPECT_FALSE(
      MetricsServer::Start("not an address", std::make_shared<prometheus::Registry>()).ok());
  EXPECT_EQ(MetricsServer::Start("127.0.0.1:0", nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(MetricsServerTest, TwoServersGetDistinctPortsAndStopCleanly) {
  auto registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<MetricsServer> a = MakeServer(registry);
  std::unique_ptr<MetricsServer> b = MakeServer(registry);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a->port(), b->port());
  const int port = a->port();
  a.reset();
  // After destruction nothing listens on the port any more.
  EXPECT_EQ(HttpGet(port, "/metrics"), "");
  EXPECT_THAT(HttpGet(b->port(), "/metrics"), HasSubstr("tally_build_info"));
}

TEST(ProcessCollectorTest, ReadsProcSelfAndOmitsWhatItCannotRead) {
  metrics_internal::ProcessCollector self;
  EXPECT_GT(self.ResidentMemoryBytes().value_or(0), 0);
  EXPECT_GE(self.CpuSeconds().value_or(-1), 0);
  EXPECT_EQ(self.Collect().size(), 6u);  // start time, RSS, VSZ, CPU, open and max fds

  // Only the start time (kept by the collector itself) survives a missing /proc.
  metrics_internal::ProcessCollector missing("/nonexistent-proc-dir");
  EXPECT_FALSE(missing.ResidentMemoryBytes().has_value());
  const std::vector<prometheus::MetricFamily> families = missing.Collect();
  ASSERT_EQ(families.size(), 1u);
  EXPECT_EQ(families[0].name, "process_start_time_seconds");
  EXPECT_GT(families[0].metric[0].gauge.value, 1.6e9);
}

}  // namespace
}  // namespace tally
