#include "processor/metrics/metrics_server.h"

#include <algorithm>
#include <exception>
#include <string_view>
#include <utility>
#include <vector>

#include "CivetServer.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "civetweb.h"
#include "processor/metrics/health.h"
#include "processor/metrics/internal/process_collector.h"
#include "prometheus/gauge.h"
#include "prometheus/text_serializer.h"

#ifndef TALLY_VERSION
#error "TALLY_VERSION must be defined by the build (see processor/metrics/CMakeLists.txt)"
#endif

namespace tally {
namespace metrics_internal {
namespace {

// Writes a complete response with a Content-Length; civetweb closes or keeps
// the connection as the request asked.
void Respond(mg_connection* conn, int status, const char* content_type, std::string_view body) {
  mg_response_header_start(conn, status);
  mg_response_header_add(conn, "Content-Type", content_type, -1);
  const std::string length = absl::StrCat(body.size());
  mg_response_header_add(conn, "Content-Length", length.c_str(), -1);
  mg_response_header_add(conn, "Cache-Control", "no-cache, no-store", -1);
  mg_response_header_send(conn);
  mg_write(conn, body.data(), body.size());
}

constexpr char kTextPlain[] = "text/plain; charset=utf-8";

// GET /metrics: every collectable's families, in registration order.
class MetricsHandler : public CivetHandler {
 public:
  explicit MetricsHandler(std::vector<std::shared_ptr<prometheus::Collectable>> collectables)
      : collectables_(std::move(collectables)) {}

  using CivetHandler::handleGet;
  bool handleGet(CivetServer* /*server*/, mg_connection* conn) override {
    std::vector<prometheus::MetricFamily> families;
    for (const auto& collectable : collectables_) {
      std::vector<prometheus::MetricFamily> part = collectable->Collect();
      families.insert(families.end(), std::make_move_iterator(part.begin()),
                      std::make_move_iterator(part.end()));
    }
    const std::string body = prometheus::TextSerializer().Serialize(families);
    Respond(conn, 200, "text/plain; version=0.0.4; charset=utf-8", body);
    return true;
  }

 private:
  const std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
};

// GET /healthz or /readyz: one Health verdict as 200/503 and a line of text.
class ProbeHandler : public CivetHandler {
 public:
  using Probe = Health::Verdict (Health::*)() const;
  ProbeHandler(std::shared_ptr<const Health> health, Probe probe)
      : health_(std::move(health)), probe_(probe) {}

  using CivetHandler::handleGet;
  bool handleGet(CivetServer* /*server*/, mg_connection* conn) override {
    if (health_ == nullptr) {
      Respond(conn, 503, kTextPlain, "no health source\n");
      return true;
    }
    const Health::Verdict verdict = ((*health_).*probe_)();
    Respond(conn, verdict.ok ? 200 : 503, kTextPlain, absl::StrCat(verdict.text, "\n"));
    return true;
  }

 private:
  const std::shared_ptr<const Health> health_;
  const Probe probe_;
};

}  // namespace

// Owned by MetricsServer, which destroys the CivetServer (and so joins every
// request thread) before this.
class Handlers {
 public:
  Handlers(std::vector<std::shared_ptr<prometheus::Collectable>> collectables,
           std::shared_ptr<const Health> health)
      : metrics(std::move(collectables)),
        healthz(health, &Health::Liveness),
        readyz(health, &Health::Readiness) {}

  MetricsHandler metrics;
  ProbeHandler healthz;
  ProbeHandler readyz;
};

}  // namespace metrics_internal

MetricsServer::MetricsServer() = default;

absl::Status MetricsServer::CheckEndpoints(const std::vector<std::string>& endpoints) {
  if (endpoints.empty()) return absl::InvalidArgumentError("metrics: no endpoint to serve");
  for (size_t i = 0; i < endpoints.size(); ++i) {
    if (std::find(kAllEndpoints.begin(), kAllEndpoints.end(), endpoints[i]) ==
        kAllEndpoints.end()) {
      return absl::InvalidArgumentError(absl::StrCat("metrics: unknown endpoint '", endpoints[i],
                                                     "' (expected /metrics, /healthz, /readyz)"));
    }
    if (std::find(endpoints.begin(), endpoints.begin() + static_cast<ptrdiff_t>(i), endpoints[i]) !=
        endpoints.begin() + static_cast<ptrdiff_t>(i)) {
      return absl::InvalidArgumentError(
          absl::StrCat("metrics: endpoint '", endpoints[i], "' listed twice"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& listen_address, std::shared_ptr<prometheus::Registry> registry,
    std::shared_ptr<const Health> health, const std::vector<std::string>& endpoints) {
  if (registry == nullptr) return absl::InvalidArgumentError("metrics: registry is null");
  if (absl::Status s = CheckEndpoints(endpoints); !s.ok()) return s;
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  server->registry_ = std::move(registry);
  server->own_registry_ = std::make_shared<prometheus::Registry>();
  server->process_ = std::make_shared<metrics_internal::ProcessCollector>();
  server->health_ = std::move(health);
  server->handlers_ = std::make_unique<metrics_internal::Handlers>(
      std::vector<std::shared_ptr<prometheus::Collectable>>{
          server->registry_, server->own_registry_, server->process_},
      server->health_);
  // prometheus-cpp throws on invalid names, civetweb (CivetException) when
  // the address cannot be bound. This is the boundary.
  try {
    prometheus::BuildGauge()
        .Name("tally_build_info")
        .Help("Always 1; the labels describe the running build.")
        .Register(*server->own_registry_)
        .Add({{"version", TALLY_VERSION}})
        .Set(1);
    // Two threads: a scrape never waits behind another, a probe waits only
    // while two requests are in flight, and the endpoint costs two mostly
    // idle threads.
    server->server_ = std::make_unique<CivetServer>(
        std::vector<std::string>{"listening_ports", listen_address, "num_threads", "2"});
    for (const std::string& path : endpoints) {
      if (path == "/metrics") server->server_->addHandler(path, server->handlers_->metrics);
      if (path == "/healthz") server->server_->addHandler(path, server->handlers_->healthz);
      if (path == "/readyz") server->server_->addHandler(path, server->handlers_->readyz);
    }
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("metrics: cannot serve on '", listen_address, "': ", e.what()));
  } catch (...) {
    return absl::UnavailableError(
        absl::StrCat("metrics: cannot serve on '", listen_address, "': unknown error"));
  }
  const std::vector<int> ports = server->server_->getListeningPorts();
  if (ports.empty()) {
    return absl::UnavailableError(
        absl::StrCat("metrics: no listening port for '", listen_address, "'"));
  }
  server->port_ = ports.front();
  return server;
}

MetricsServer::~MetricsServer() = default;

}  // namespace tally
