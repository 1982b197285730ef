// HTTP endpoint for Prometheus: serves GET /metrics with the caller's
// registry plus what every Tally process exports:
//   tally_build_info{version="..."} 1
//   tally_process_resident_memory_bytes, tally_process_cpu_seconds_total,
//   tally_process_open_fds (read from /proc/self at scrape time).
//
// Wraps prometheus-cpp's Exposer (civetweb). civetweb reports a bind failure
// by throwing from the Exposer constructor; Start() turns that into a Status
// so that no exception leaves this component.
//
// Thread safety: scrapes run on civetweb's own threads (two) and only read
// the registries, which prometheus-cpp makes thread-safe. port() may be
// called from any thread. Destruction stops the HTTP server and joins its
// threads before the registries are released; it takes up to about 2 s,
// because civetweb's listener polls its stop flag every 2 s (measured here:
// 2.01 s), so stop it early in a shutdown sequence.
#ifndef TALLY_PROCESSOR_METRICS_METRICS_SERVER_H_
#define TALLY_PROCESSOR_METRICS_METRICS_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "prometheus/registry.h"

namespace prometheus {
class Exposer;
}  // namespace prometheus

namespace tally {

namespace metrics_internal {
class ProcessCollector;
}  // namespace metrics_internal

class MetricsServer {
 public:
  // `listen_address` is "host:port" with an IP literal host ("0.0.0.0:9464",
  // "127.0.0.1:0", "[::1]:9464"); port 0 picks a free port (see port()).
  // Errors: InvalidArgument for a null registry, Unavailable when the
  // address cannot be bound (in use, not local, malformed).
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& listen_address, std::shared_ptr<prometheus::Registry> registry);

  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;
  ~MetricsServer();

  // The port actually bound.
  int port() const { return port_; }

 private:
  MetricsServer() = default;

  // Declaration order is destruction order reversed: the exposer (last) goes
  // first, so no scrape can run while the collectables below are destroyed.
  // The exposer holds only weak_ptrs to them.
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<prometheus::Registry> own_registry_;  // tally_build_info
  std::shared_ptr<metrics_internal::ProcessCollector> process_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
};

}  // namespace tally

#endif  // TALLY_PROCESSOR_METRICS_METRICS_SERVER_H_
