// Process metrics read from /proc/self at scrape time (Linux only), under the
// standard names every Prometheus client library exports (process_*), so that
// dashboards and alerts written for any process work unchanged. A value that
// cannot be read is left out of the scrape rather than reported as 0.
#ifndef TALLY_PROCESSOR_METRICS_INTERNAL_PROCESS_COLLECTOR_H_
#define TALLY_PROCESSOR_METRICS_INTERNAL_PROCESS_COLLECTOR_H_

#include <optional>
#include <string>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace tally::metrics_internal {

// Thread-safe: Collect() keeps no state between calls.
class ProcessCollector : public prometheus::Collectable {
 public:
  // `proc_dir` is "/proc/self" except in tests.
  explicit ProcessCollector(std::string proc_dir = "/proc/self");

  std::vector<prometheus::MetricFamily> Collect() const override;

  std::optional<double> ResidentMemoryBytes() const;
  std::optional<double> VirtualMemoryBytes() const;
  std::optional<double> CpuSeconds() const;  // user + system
  std::optional<double> OpenFds() const;
  std::optional<double> MaxFds() const;  // the soft RLIMIT_NOFILE; nullopt when unlimited

 private:
  const std::string proc_dir_;
  // When the collector was created (process start, closely enough): the
  // standard process_start_time_seconds, whose changes count restarts.
  const double start_time_seconds_;
};

}  // namespace tally::metrics_internal

#endif  // TALLY_PROCESSOR_METRICS_INTERNAL_PROCESS_COLLECTOR_H_
