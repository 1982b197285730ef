// The process's one HTTP port. Serves (all three unless Start is given a
// subset: metrics.endpoints)
//   GET /metrics  the caller's registry plus what every Tally process exports:
//                   tally_build_info{version="..."} 1
//                   the standard process_resident_memory_bytes,
//                   process_virtual_memory_bytes, process_cpu_seconds_total,
//                   process_open_fds, process_max_fds, process_start_time_seconds
//                   (read from /proc/self at scrape time);
//                 Prometheus text format 0.0.4.
//   GET /healthz  Health::Liveness():  200 "ok\n", else 503 and the reason.
//   GET /readyz   Health::Readiness(): 200 "ok\n", else 503 and the reason.
// Probe answers are `Content-Type: text/plain; charset=utf-8`. Without a
// Health (null), both probes answer 503 "no health source": nothing vouches
// for the process, and a probe that passes by default would hide a wiring
// mistake in exactly the way /metrics-as-probe did.
//
// Built on civetweb's CivetServer directly rather than prometheus-cpp's
// Exposer: the Exposer keeps its CivetServer private and offers no way to
// add a handler that answers anything but 200 with metrics (its only hook,
// CivetCallbacks::begin_request, gets a connection whose context leads to the
// Exposer's CivetServer, not to us: routing it would need a process-wide
// map), so one port for metrics and probes needs our own server. /metrics serializes with
// prometheus-cpp's TextSerializer (uncompressed; the exposer_* self-metrics
// of the Exposer are gone). civetweb reports a bind failure by throwing from
// the CivetServer constructor; Start() turns that into a Status so that no
// exception leaves this component.
//
// Thread safety: requests run on civetweb's own threads (two) and only read
// the registries, which prometheus-cpp makes thread-safe, and the Health,
// which is thread-safe. port() may be called from any thread. Destruction
// stops the HTTP server and joins its threads before the handlers, the
// registries and the Health are released; it takes up to about 2 s, because
// civetweb's listener polls its stop flag every 2 s (measured here: 2.01 s),
// so stop it early in a shutdown sequence.
#ifndef TALLY_PROCESSOR_METRICS_METRICS_SERVER_H_
#define TALLY_PROCESSOR_METRICS_METRICS_SERVER_H_

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "prometheus/registry.h"

class CivetServer;

namespace tally {

class Health;

namespace metrics_internal {
class ProcessCollector;
class Handlers;
}  // namespace metrics_internal

class MetricsServer {
 public:
  // `listen_address` is "host:port" with an IP literal host ("0.0.0.0:9464",
  // "127.0.0.1:0", "[::1]:9464"); port 0 picks a free port (see port()).
  // Errors: InvalidArgument for a null registry, Unavailable when the
  // address cannot be bound (in use, not local, malformed). `health` feeds
  // /healthz and /readyz; null makes both answer 503 "no health source".
  // `endpoints` restricts what is served: a subset of kAllEndpoints; a
  // path left out answers 404 like any unknown one (e.g. probes only, on a
  // port other pods may reach). InvalidArgument for an unknown or repeated
  // path, or none at all.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& listen_address, std::shared_ptr<prometheus::Registry> registry,
      std::shared_ptr<const Health> health = nullptr,
      const std::vector<std::string>& endpoints = {kAllEndpoints.begin(), kAllEndpoints.end()});
  static constexpr std::array<const char*, 3> kAllEndpoints = {"/metrics", "/healthz", "/readyz"};

  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;
  ~MetricsServer();

  // The port actually bound.
  int port() const { return port_; }

  // What Start accepts as `endpoints` (for configuration checks).
  static absl::Status CheckEndpoints(const std::vector<std::string>& endpoints);

 private:
  MetricsServer();

  // Declaration order is destruction order reversed: the server (last) goes
  // first and joins its threads, so no request can run while the handlers,
  // the collectables they read and the Health below are destroyed. The
  // server holds raw pointers to the handlers.
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<prometheus::Registry> own_registry_;  // tally_build_info
  std::shared_ptr<metrics_internal::ProcessCollector> process_;
  std::shared_ptr<const Health> health_;
  std::unique_ptr<metrics_internal::Handlers> handlers_;
  std::unique_ptr<CivetServer> server_;
  int port_ = 0;
};

}  // namespace tally

#endif  // TALLY_PROCESSOR_METRICS_METRICS_SERVER_H_
