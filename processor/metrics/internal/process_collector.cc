#include "processor/metrics/internal/process_collector.h"

#include <dirent.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace tally::metrics_internal {
namespace {

std::optional<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::string contents((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return std::nullopt;
  return contents;
}

prometheus::MetricFamily Family(const char* name, const char* help, prometheus::MetricType type,
                                double value) {
  prometheus::MetricFamily family;
  family.name = name;
  family.help = help;
  family.type = type;
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(metric);
  return family;
}

// statm: "size resident shared text lib data dt", in pages.
std::optional<double> StatmBytes(const std::string& proc_dir, size_t field) {
  std::optional<std::string> statm = ReadSmallFile(proc_dir + "/statm");
  if (!statm.has_value()) return std::nullopt;
  std::vector<absl::string_view> fields = absl::StrSplit(*statm, ' ', absl::SkipWhitespace());
  uint64_t pages = 0;
  if (fields.size() <= field || !absl::SimpleAtoi(fields[field], &pages)) return std::nullopt;
  return static_cast<double>(pages) * static_cast<double>(::sysconf(_SC_PAGESIZE));
}

}  // namespace

ProcessCollector::ProcessCollector(std::string proc_dir)
    : proc_dir_(std::move(proc_dir)),
      start_time_seconds_(absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch())) {}

std::optional<double> ProcessCollector::ResidentMemoryBytes() const {
  return StatmBytes(proc_dir_, 1);
}

std::optional<double> ProcessCollector::VirtualMemoryBytes() const {
  return StatmBytes(proc_dir_, 0);
}

std::optional<double> ProcessCollector::MaxFds() const {
  // limits: "Max open files            1024                 1048576              files";
  // the soft limit is the first number.
  std::optional<std::string> limits = ReadSmallFile(proc_dir_ + "/limits");
  if (!limits.has_value()) return std::nullopt;
  for (absl::string_view line : absl::StrSplit(*limits, '\n')) {
    if (!absl::ConsumePrefix(&line, "Max open files")) continue;
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    uint64_t soft = 0;
    if (fields.empty() || !absl::SimpleAtoi(fields[0], &soft)) return std::nullopt;
    return static_cast<double>(soft);
  }
  return std::nullopt;
}

std::optional<double> ProcessCollector::CpuSeconds() const {
  std::optional<std::string> stat = ReadSmallFile(proc_dir_ + "/stat");
  if (!stat.has_value()) return std::nullopt;
  // The command name (field 2) is in parentheses and may hold spaces or ')',
  // so fields are counted from the last ')'. After it come field 3 (state)
  // onwards; utime and stime are fields 14 and 15, in clock ticks.
  const size_t close = stat->rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(*stat).substr(close + 1), ' ', absl::SkipWhitespace());
  constexpr size_t kUtime = 14 - 3;
  constexpr size_t kStime = 15 - 3;
  uint64_t utime = 0;
  uint64_t stime = 0;
  if (fields.size() <= kStime || !absl::SimpleAtoi(fields[kUtime], &utime) ||
      !absl::SimpleAtoi(fields[kStime], &stime)) {
    return std::nullopt;
  }
  const long ticks = ::sysconf(_SC_CLK_TCK);
  if (ticks <= 0) return std::nullopt;
  return static_cast<double>(utime + stime) / static_cast<double>(ticks);
}

std::optional<double> ProcessCollector::OpenFds() const {
  DIR* dir = ::opendir((proc_dir_ + "/fd").c_str());
  if (dir == nullptr) return std::nullopt;
  int count = 0;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  ::closedir(dir);
  // The directory stream's own descriptor was listed too.
  return static_cast<double>(count > 0 ? count - 1 : 0);
}

std::vector<prometheus::MetricFamily> ProcessCollector::Collect() const {
  std::vector<prometheus::MetricFamily> families;
  families.push_back(Family("process_start_time_seconds",
                            "Start time of the process since unix epoch in seconds.",
                            prometheus::MetricType::Gauge, start_time_seconds_));
  if (std::optional<double> v = ResidentMemoryBytes()) {
    families.push_back(Family("process_resident_memory_bytes", "Resident memory size in bytes.",
                              prometheus::MetricType::Gauge, *v));
  }
  if (std::optional<double> v = VirtualMemoryBytes()) {
    families.push_back(Family("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                              prometheus::MetricType::Gauge, *v));
  }
  if (std::optional<double> v = CpuSeconds()) {
    families.push_back(Family("process_cpu_seconds_total",
                              "Total user and system CPU time spent in seconds.",
                              prometheus::MetricType::Counter, *v));
  }
  if (std::optional<double> v = OpenFds()) {
    families.push_back(Family("process_open_fds", "Number of open file descriptors.",
                              prometheus::MetricType::Gauge, *v));
  }
  if (std::optional<double> v = MaxFds()) {
    families.push_back(Family("process_max_fds", "Maximum number of open file descriptors.",
                              prometheus::MetricType::Gauge, *v));
  }
  return families;
}

}  // namespace tally::metrics_internal
