// Helpers shared by producer.cc and consumer.cc. Not for use outside
// processor/kafka/.
#ifndef TALLY_PROCESSOR_KAFKA_INTERNAL_RDKAFKA_UTIL_H_
#define TALLY_PROCESSOR_KAFKA_INTERNAL_RDKAFKA_UTIL_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "librdkafka/rdkafkacpp.h"
#include "processor/kafka/kafka.h"

namespace tally::kafka::internal {

// A Status for a librdkafka failure, carrying the class and code payload
// read by ErrorClassOf()/KafkaErrorCode(). `detail` empty means librdkafka's
// description of `code`. `deadline` selects kDeadlineExceeded (one of our own
// time limits ran out) over the class's canonical code.
absl::Status KafkaStatus(ErrorClass error_class, int code, std::string_view context,
                         std::string_view detail, bool deadline);
absl::Status KafkaStatus(int code, std::string_view context, std::string_view detail = "");

// Takes ownership of `error` (may be null: OK). The class is librdkafka's
// own verdict where it gives one (fatal, txn_requires_abort, retriable).
absl::Status StatusFromError(RdKafka::Error* error, std::string_view context);

// conf->set(key, value) with the result checked; the error names the key and
// carries librdkafka's message, with the value cut out of it if the key is a
// secret.
absl::Status SetProperty(RdKafka::Conf* conf, const std::string& key, const std::string& value);
// SetProperty for every entry.
absl::Status ApplyProperties(RdKafka::Conf* conf, const Properties& props);
// A global Conf with ApplyProperties(props) done.
absl::StatusOr<std::unique_ptr<RdKafka::Conf>> MakeConf(const Properties& props);

// The properties each client's Create() gives librdkafka: the caller's
// `props` checked for what Tally requires, plus Tally's defaults. One
// function per client so that CheckClientProperties (--check-config) and
// Create() cannot disagree.
absl::StatusOr<Properties> ProducerProperties(const Properties& props,
                                              const std::string& transactional_id);
absl::StatusOr<Properties> ConsumerProperties(const Properties& props);
absl::StatusOr<Properties> ReaderProperties(const Properties& props);
// `props` with `key` set to `value` unless the caller already set it.
void SetDefault(Properties* props, const std::string& key, const std::string& value);
// Removes a secret value from a librdkafka message that may echo it.
std::string ScrubSecrets(std::string message, const Properties& props);

// Debian's Abseil has its own string_view type (no implicit conversion).
inline absl::string_view ToAbsl(std::string_view s) { return {s.data(), s.size()}; }

// Owns the TopicPartition objects librdkafka's C++ API takes as raw
// pointers.
struct OwnedPartitions {
  OwnedPartitions() = default;
  OwnedPartitions(const OwnedPartitions&) = delete;
  OwnedPartitions& operator=(const OwnedPartitions&) = delete;
  ~OwnedPartitions() { RdKafka::TopicPartition::destroy(list); }
  std::vector<RdKafka::TopicPartition*> list;
};

// Milliseconds for librdkafka timeouts, rounded up so that a positive
// duration never becomes a non-blocking 0, clamped to int.
int ToTimeoutMs(absl::Duration d);

// Routes librdkafka's log lines and error events to TALLY_LOG under the
// component "kafka". Log events arrive on librdkafka's internal threads
// (LogLine is thread-safe); error events on the polling thread. Must
// outlive the handle it is registered with.
class LogEventCb : public RdKafka::EventCb {
 public:
  // `on_stats` (may be null) receives librdkafka's statistics JSON, on the
  // polling thread, when statistics.interval.ms is set.
  using StatsHandler = std::function<void(std::string_view json)>;
  // `on_error` (may be null) receives the code of every error event, on the
  // thread that serves them (see above).
  using ErrorHandler = std::function<void(RdKafka::ErrorCode err)>;
  explicit LogEventCb(std::string client_role, StatsHandler on_stats = nullptr,
                      ErrorHandler on_error = nullptr)
      : role_(std::move(client_role)),
        on_stats_(std::move(on_stats)),
        on_error_(std::move(on_error)) {}
  void event_cb(RdKafka::Event& event) override;

 private:
  const std::string role_;  // "producer" / "consumer": the `client` field of each line
  const StatsHandler on_stats_;
  const ErrorHandler on_error_;
};

}  // namespace tally::kafka::internal

#endif  // TALLY_PROCESSOR_KAFKA_INTERNAL_RDKAFKA_UTIL_H_
