// Configuration of the `tally` processor: one typed options struct per
// component, loaded from (lowest to highest precedence) built-in defaults, a
// YAML file, TALLY_* environment variables and `--set key=value` overrides.
//
// Every key has a dotted name ("processing.batch_max_messages"); YAML nests
// the dots as maps (or spells them out: both forms are accepted). The
// environment name of a key is "TALLY_" + the key upper-cased with '.' and '-'
// turned into '_' (TALLY_PROCESSING_BATCH_MAX_MESSAGES). The librdkafka
// pass-through maps `kafka.*`, `consumer.*` and `producer.*` accept any
// property name; from the environment they are TALLY_KAFKA_<PROP> etc., where
// <PROP> is lower-cased and '_' becomes '.' (TALLY_KAFKA_SASL_PASSWORD ->
// kafka.sasl.password), which is how Kubernetes Secrets reach librdkafka.
//
// Unknown keys (outside the pass-through maps) and TALLY_* environment
// variables that map to no key are errors, so that a typo never silently
// falls back to a default. Kubernetes service-link variables
// (TALLY_SERVICE_HOST, TALLY_PORT_9464_TCP, ...) are the one exception.
//
// Errors are absl::InvalidArgumentError with a message of the form
//   "config: <key>: <problem>[ (<where the value came from>)]".
//
// Thread safety: all functions are pure (LoadConfig reads the file and the
// hostname); TallyConfig is a plain value.
#ifndef TALLY_PROCESSOR_CONFIG_CONFIG_H_
#define TALLY_PROCESSOR_CONFIG_CONFIG_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "processor/common/log.h"

namespace tally {

// librdkafka properties, passed through verbatim (the kafka component checks
// every set() result). `group.id` and `transactional.id` are rejected here:
// tally derives them from group_id and instance_id.
struct KafkaOptions {
  std::map<std::string, std::string> common;    // kafka.*: both clients
  std::map<std::string, std::string> consumer;  // consumer.*: consumer only, wins over common
  std::map<std::string, std::string> producer;  // producer.*: producer only, wins over common
};

struct TopicOptions {
  std::string clicks = "clicks";
  std::string conversions = "conversions";
  std::string commissions = "commissions";
  std::string rejected = "rejected";
  std::string unattributed = "unattributed";
  // The compacted state changelog; empty: "<group_id>-state-changelog".
  std::string changelog;
};

// Same meaning as tally::WireFormat in processor/codec/codec.h; kept separate
// so that configuration does not depend on the codec library.
enum class PayloadFormat { kJson, kProtobuf };

struct FormatOptions {
  PayloadFormat clicks = PayloadFormat::kJson;
  PayloadFormat conversions = PayloadFormat::kJson;
  PayloadFormat output = PayloadFormat::kJson;  // commissions, rejected, unattributed
};

// Field names match tally::DecodeLimits (and, for the rejected record,
// tally::RejectedLimits in processor/model/rejected_limits.h).
struct LimitOptions {
  uint64_t max_payload_bytes = 64 * 1024;
  // A rejected message keeps at most this many bytes of its value (the rest
  // is described by size and SHA-256). The default equals the default
  // max_payload_bytes: every message refused for its content is kept whole.
  uint64_t max_rejected_original_bytes = uint64_t{64} << 10;
  int64_t min_event_time_ms = 946'684'800'000;    // 2000-01-01T00:00:00Z
  int64_t max_event_time_ms = 4'102'444'800'000;  // 2100-01-01T00:00:00Z
};

enum class AttributionKey { kClickId, kUserId };

// processing.guarantee (docs/design.md §10).
enum class Guarantee { kExactlyOnce, kAtLeastOnce };

struct ProcessingOptions {
  Guarantee guarantee = Guarantee::kExactlyOnce;
  int64_t num_standbys = 0;
  int64_t batch_max_messages = 10'000;
  absl::Duration batch_max_time = absl::Milliseconds(100);
  AttributionKey attribution_key = AttributionKey::kClickId;
  absl::Duration pending_grace = absl::Minutes(10);
  // How far out of event-time order a partition's clicks may arrive and
  // change nothing (README, Semantics); the click watermark is the
  // partition's max click time minus this.
  absl::Duration max_click_lateness = absl::Seconds(30);
  // How far behind its partition's newest conversion a conversion may
  // arrive and still find every click it could credit (click retention
  // follows the conversions input less this).
  absl::Duration max_conversion_lateness = absl::Hours(24);
  // Zero: off. Positive: a partition whose clicks stop for this long (wall
  // clock) has its click watermark advanced with wall time, so its pending
  // conversions resolve (README, Semantics: the trade-off).
  absl::Duration click_idle_timeout = absl::ZeroDuration();
  int64_t max_pending_conversions = 1'000'000;
  int worker_threads = 2;
  // Zero: run until signalled. Positive: exit cleanly once every assigned
  // partition has been at end-of-log for this long (make run, tests).
  absl::Duration stop_when_idle = absl::ZeroDuration();
};

struct StateOptions {
  std::string dir = "/var/lib/tally";
  uint64_t block_cache_bytes = 256ull << 20;
  uint64_t write_buffer_bytes = 64ull << 20;
  // -1: unlimited (RocksDB semantics): every table reader stays open; their
  // index and filter blocks live in the block cache, inside its cap.
  int max_open_files = -1;
  // fsync each task write before the offset commit that covers it (a
  // machine crash then never loses state whose offsets are committed).
  bool sync_commits = true;
};

struct DedupSettings {                // not DedupOptions: that is the deduplicator's own type
  uint64_t table_slots = 1ull << 24;  // power of two
  // Must be >= the longest attribution window; the app checks that, since
  // the windows come from the offers file.
  absl::Duration horizon = absl::Hours(35 * 24);
};

// Relative rule-file names (these defaults included) resolve against the
// folder of the configuration file when there is one (LoadConfig).
struct FraudOptions {
  std::string bot_user_agents_file = "bot_user_agents.txt";
  std::string ip_blocklist_file = "ip_blocklist.txt";
  int64_t max_clicks_per_ip = 20;
  absl::Duration flood_window = absl::Minutes(1);
  // How far apart in event time the partitions of one instance may be and
  // the flood counters still exact (they are consumed concurrently).
  absl::Duration flood_lateness = absl::Hours(1);
  uint64_t flood_table_slots = uint64_t{1} << 22;  // 8 bytes each
};

struct OfferOptions {
  std::string file = "offers.yaml";  // relative: see FraudOptions
};

struct MetricsOptions {
  std::string listen = "0.0.0.0:9464";  // host:port; port 0 picks a free port
  // ISO 4217 codes, comma-separated: commission value is exported per
  // currency for these, under "other" for the rest (a label value per
  // currency the input may carry would be unbounded).
  std::string currencies = "USD,EUR,GBP";
  // What the port serves, comma-separated: any of /metrics, /healthz,
  // /readyz (e.g. only the probes where other pods can reach the port).
  std::string endpoints = "/metrics,/healthz,/readyz";
};

struct LogOptions {
  LogLevel level = LogLevel::kInfo;
  // log.format (alias logging.format): text for people, json for log
  // pipelines (one object per line, see processor/common/log.h).
  LogFormat format = LogFormat::kText;
  bool pii = false;  // see RedactForLog in processor/common/log.h
};

struct ShutdownOptions {
  absl::Duration timeout = absl::Seconds(30);
};

struct TallyConfig {
  KafkaOptions kafka;
  std::string group_id = "tally";
  // Stable identity of this processor instance (transactional ids derive from
  // it). Empty after loading never happens: LoadConfig fills in the hostname.
  std::string instance_id;
  TopicOptions topics;
  FormatOptions formats;
  LimitOptions limits;
  ProcessingOptions processing;
  StateOptions state;
  DedupSettings dedup;
  FraudOptions fraud;
  OfferOptions offers;
  MetricsOptions metrics;
  LogOptions log;
  ShutdownOptions shutdown;
};

// metrics.currencies split into its codes (validated by LoadConfig: each an
// active ISO 4217 code, at most 32, no repeats).
std::vector<std::string> MetricCurrencyCodes(const TallyConfig& config);
// metrics.endpoints split into its paths (validated by LoadConfig).
std::vector<std::string> MetricEndpoints(const TallyConfig& config);

// topics.changelog, or "<group_id>-state-changelog" when it is empty.
std::string ChangelogTopicOf(const TallyConfig& config);

struct ConfigSources {
  std::optional<std::string> file;  // YAML file; none: defaults + env + overrides
  // Environment variables (name -> value). Only TALLY_* names are looked at.
  // Tests inject a map; main passes EnvironmentFromEnviron(environ).
  std::map<std::string, std::string> env;
  std::vector<std::string> overrides;  // "key=value", applied in order
};

// Defaults < file < env < overrides, then ValidateConfig. On success the
// returned config is valid and instance_id is non-empty. With a file, the
// relative names of offers.file and the fraud rule files given in it, and
// their defaults, are made relative to the file's folder; names from the
// environment and overrides are left as given (the working directory).
absl::StatusOr<TallyConfig> LoadConfig(const ConfigSources& sources);

// Range and consistency checks (also for configs built in code, e.g. tests).
// Returns the first problem found.
absl::Status ValidateConfig(const TallyConfig& config);

// The largest record (value + key + Kafka record framing) each output topic
// can receive under `config`, for the start-up check against the producer's
// message.max.bytes. Upper bounds, not exact sizes: tests/codec encodes
// worst-case records and checks that they stay within them.
//  - rejected: fixed members + longest topic name + detail (JSON escapes up
//    to 6 bytes per byte) + key and value prefixes (base64 in JSON) + the
//    Kafka key;
//  - unattributed: a re-encoded conversion, whose every field is bounded by
//    the input contract (schemas/README.md), so its size does not depend on
//    limits.max_payload_bytes, + the attribution key.
struct OutputRecordBounds {
  uint64_t rejected = 0;
  uint64_t unattributed = 0;
};
OutputRecordBounds WorstCaseOutputRecordBytes(const TallyConfig& config);

// librdkafka's message.max.bytes for the producer: producer.* wins over
// kafka.*; librdkafka's default 1000000 when neither sets it. An error names
// the key whose value is not an integer.
absl::StatusOr<uint64_t> ProducerMessageMaxBytes(const TallyConfig& config);

// One "key = value" line per key, in a fixed order, values in a syntax that
// LoadConfig accepts back. Values whose key contains password, secret, token,
// sasl.oauthbearer or ssl.key are printed as "<redacted>".
std::string DescribeConfig(const TallyConfig& config);
// The same keys and (redacted) values as pairs, for one structured start-up
// log line instead of a multi-line dump.
LogFields DescribeConfigFields(const TallyConfig& config);

// The dotted names of all typed keys (pass-through maps excluded), in the
// order DescribeConfig prints them.
std::vector<std::string> ConfigKeys();

// "TALLY_" + upper-cased key with '.' and '-' as '_'.
std::string EnvironmentVariableForKey(const std::string& key);

// Builds ConfigSources::env from a NULL-terminated `environ`-style array.
std::map<std::string, std::string> EnvironmentFromEnviron(const char* const* envp);

const char* PayloadFormatName(PayloadFormat format);  // "json" | "protobuf"
const char* AttributionKeyName(AttributionKey key);   // "click_id" | "user_id"

}  // namespace tally

#endif  // TALLY_PROCESSOR_CONFIG_CONFIG_H_
