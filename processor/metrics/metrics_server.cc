#include "processor/metrics/metrics_server.h"

#include <exception>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "processor/metrics/internal/process_collector.h"
#include "prometheus/exposer.h"
#include "prometheus/gauge.h"

#ifndef TALLY_VERSION
#error "TALLY_VERSION must be defined by the build (see processor/metrics/CMakeLists.txt)"
#endif

namespace tally {

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& listen_address, std::shared_ptr<prometheus::Registry> registry) {
  if (registry == nullptr) return absl::InvalidArgumentError("metrics: registry is null");
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  server->registry_ = std::move(registry);
  server->own_registry_ = std::make_shared<prometheus::Registry>();
  server->process_ = std::make_shared<metrics_internal::ProcessCollector>();
  // prometheus-cpp throws: civetweb (CivetException) when the address cannot
  // be bound, the builders on invalid names. This is the boundary.
  try {
    prometheus::BuildGauge()
        .Name("tally_build_info")
        .Help("Always 1; the labels describe the running build.")
        .Register(*server->own_registry_)
        .Add({{"version", TALLY_VERSION}})
        .Set(1);
    // Two threads: a scrape never waits behind another, and the endpoint
    // costs two mostly idle threads.
    server->exposer_ = std::make_unique<prometheus::Exposer>(listen_address, /*num_threads=*/2);
    server->exposer_->RegisterCollectable(server->registry_);
    server->exposer_->RegisterCollectable(server->own_registry_);
    server->exposer_->RegisterCollectable(server->process_);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("metrics: cannot serve on '", listen_address, "': ", e.what()));
  } catch (...) {
    return absl::UnavailableError(
        absl::StrCat("metrics: cannot serve on '", listen_address, "': unknown error"));
  }
  const std::vector<int> ports = server->exposer_->GetListeningPorts();
  if (ports.empty()) {
    return absl::UnavailableError(
        absl::StrCat("metrics: no listening port for '", listen_address, "'"));
  }
  server->port_ = ports.front();
  return server;
}

MetricsServer::~MetricsServer() = default;

}  // namespace tally
