#include "processor/config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "yaml-cpp/yaml.h"

namespace tally {
namespace {

using ::testing::HasSubstr;

class ConfigTest : public ::testing::Test {
 protected:
  // Writes `contents` to a fresh file in the test's temp dir; returns its path.
  std::string WriteFile(const std::string& contents) {
    const std::string path = ::testing::TempDir() + "/tally_config_test_" +
                             std::to_string(::getpid()) + "_" + std::to_string(files_++) + ".yaml";
    std::ofstream(path) << contents;
    created_.push_back(path);
    return path;
  }
  void TearDown() override {
    for (const std::string& path : created_) ::unlink(path.c_str());
  }

  // Sources with only the required key set.
  static ConfigSources Minimal() {
    ConfigSources sources;
    sources.overrides = {"kafka.bootstrap.servers=broker:9092"};
    return sources;
  }

  static std::string ErrorOf(const ConfigSources& sources) {
    absl::StatusOr<TallyConfig> config = LoadConfig(sources);
    EXPECT_FALSE(config.ok());
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(config.status().message());
  }

  static std::string Hostname() {
    char host[256] = {};
    ::gethostname(host, sizeof(host) - 1);
    return host;
  }

 private:
  int files_ = 0;
  std::vector<std::string> created_;
};

TEST_F(ConfigTest, DefaultsAreValidOnceBootstrapServersIsSet) {
  TallyConfig defaults;
  defaults.kafka.common["bootstrap.servers"] = "broker:9092";
  defaults.instance_id = "tally-0";
  EXPECT_TRUE(ValidateConfig(defaults).ok()) << ValidateConfig(defaults);

  absl::StatusOr<TallyConfig> loaded = LoadConfig(Minimal());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->instance_id, Hostname());
  EXPECT_EQ(loaded->group_id, "tally");
  EXPECT_EQ(loaded->topics.unattributed, "unattributed");
  EXPECT_EQ(loaded->processing.batch_max_time, absl::Milliseconds(100));
  EXPECT_EQ(loaded->dedup.horizon, absl::Hours(35 * 24));
  EXPECT_EQ(loaded->state.block_cache_bytes, 256ull << 20);
  EXPECT_EQ(loaded->limits.min_event_time_ms, 946'684'800'000);
  EXPECT_EQ(loaded->metrics.listen, "0.0.0.0:9464");
  defaults.instance_id = loaded->instance_id;
  EXPECT_EQ(DescribeConfig(*loaded), DescribeConfig(defaults));
}

// Relative rule-file names in a file (and the defaults) resolve against the
// file's folder, so that tally finds the files shipped beside its
// configuration from any working directory; names from the environment and
// --set stay relative to the working directory.
TEST_F(ConfigTest, RuleFilePathsResolveAgainstTheConfigFilesFolder) {
  ConfigSources sources = Minimal();
  sources.file =
      WriteFile("offers:\n  file: sub/../o.yaml\nfraud:\n  ip_blocklist_file: /abs/ips.txt\n");
  sources.env = {{"TALLY_FRAUD_BOT_USER_AGENTS_FILE", "env-bots.txt"}};
  absl::StatusOr<TallyConfig> c = LoadConfig(sources);
  ASSERT_TRUE(c.ok()) << c.status();
  const std::string folder = std::filesystem::path(*sources.file).parent_path().string();
  EXPECT_EQ(c->offers.file, folder + "/o.yaml");
  EXPECT_EQ(c->fraud.ip_blocklist_file, "/abs/ips.txt");
  EXPECT_EQ(c->fraud.bot_user_agents_file, "env-bots.txt");

  sources.env.clear();
  sources.overrides.push_back("offers.file=cwd.yaml");
  c = LoadConfig(sources);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->offers.file, "cwd.yaml");
  EXPECT_EQ(c->fraud.bot_user_agents_file, folder + "/" + TallyConfig().fraud.bot_user_agents_file);

  // Without a file nothing is rewritten.
  c = LoadConfig(Minimal());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->offers.file, TallyConfig().offers.file);
}

TEST_F(ConfigTest, LogFormatAndItsLoggingAlias) {
  ConfigSources sources = Minimal();
  sources.file = WriteFile("logging:\n  format: json\n");
  absl::StatusOr<TallyConfig> c = LoadConfig(sources);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->log.format, LogFormat::kJson);
  EXPECT_THAT(DescribeConfig(*c), HasSubstr("log.format = json\n"));

  sources.file = WriteFile("log:\n  format: json\nlogging:\n  format: text\n");
  EXPECT_THAT(ErrorOf(sources), HasSubstr("logging.format: set more than once"));

  sources.file.reset();
  sources.env = {{"TALLY_LOGGING_FORMAT", "json"}};
  c = LoadConfig(sources);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->log.format, LogFormat::kJson);

  sources.env.clear();
  sources.overrides.push_back("log.formt=json");
  EXPECT_THAT(ErrorOf(sources), HasSubstr("unknown key 'log.formt' (did you mean 'log.format'?)"));
  EXPECT_EQ(TallyConfig().log.format, LogFormat::kText);
}

TEST_F(ConfigTest, DescribeConfigFieldsMatchDescribeConfig) {
  absl::StatusOr<TallyConfig> c = LoadConfig(Minimal());
  ASSERT_TRUE(c.ok()) << c.status();
  std::string joined;
  for (const LogField& f : DescribeConfigFields(*c)) joined += f.key + " = " + f.value + "\n";
  EXPECT_EQ(joined, DescribeConfig(*c));
}

TEST_F(ConfigTest, MissingBootstrapServersIsNamed) {
  EXPECT_THAT(ErrorOf(ConfigSources{}), HasSubstr("config: kafka.bootstrap.servers: required"));
}

constexpr char kEveryKey[] = R"(
kafka:
  bootstrap.servers: k1:9092,k2:9092
  security.protocol: SASL_SSL
  sasl:
    mechanism: SCRAM-SHA-512
consumer:
  fetch.max.bytes: 1048576
producer:
  linger.ms: 5
group_id: g1
instance_id: tally-7
topics:
  clicks: c1
  conversions: c2
  commissions: c3
  rejected: c4
  unattributed: c5
  changelog: c6
formats:
  clicks: protobuf
  conversions: protobuf
  output: protobuf
limits:
  max_payload_bytes: 1MiB
  max_rejected_original_bytes: 100KiB
  min_event_time: 2010-01-01T00:00:00Z
  max_event_time: 1893456000000
processing:
  guarantee: at_least_once
  num_standbys: 2
  batch_max_messages: 500
  batch_max_time: 250ms
  attribution_key: user_id
  pending_grace: 2h
  max_click_lateness: 5s
  max_conversion_lateness: 3h
  click_idle_timeout: 90s
  max_pending_conversions: 77
  worker_threads: 8
  stop_when_idle: 3s
state:
  dir: /tmp/state
  block_cache_bytes: 512MiB
  write_buffer_bytes: 1GiB
  max_open_files: 1000
  sync_commits: false
dedup:
  table_slots: 1024
  horizon: 40d
fraud:
  bot_user_agents_file: bots.txt
  ip_blocklist_file: ips.txt
  max_clicks_per_ip: 5
  flood_window: 30s
  flood_lateness: 2h
  flood_table_slots: 2048
offers:
  file: o.yaml
metrics:
  listen: 127.0.0.1:0
  currencies: JPY, KWD
  endpoints: /healthz,/readyz
log:
  level: debug
  format: json
  pii: true
shutdown:
  timeout: 5s
)";

TEST_F(ConfigTest, EveryKeyIsParsedFromYaml) {
  ConfigSources sources;
  sources.file = WriteFile(kEveryKey);
  absl::StatusOr<TallyConfig> c = LoadConfig(sources);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->kafka.common.at("bootstrap.servers"), "k1:9092,k2:9092");
  EXPECT_EQ(c->kafka.common.at("sasl.mechanism"), "SCRAM-SHA-512");  // nested map flattened
  EXPECT_EQ(c->kafka.consumer.at("fetch.max.bytes"), "1048576");
  EXPECT_EQ(c->kafka.producer.at("linger.ms"), "5");
  EXPECT_EQ(c->group_id, "g1");
  EXPECT_EQ(c->instance_id, "tally-7");
  EXPECT_EQ(c->topics.clicks, "c1");
  EXPECT_EQ(c->topics.unattributed, "c5");
  EXPECT_EQ(c->topics.changelog, "c6");
  EXPECT_EQ(ChangelogTopicOf(*c), "c6");
  EXPECT_EQ(c->processing.guarantee, Guarantee::kAtLeastOnce);
  EXPECT_EQ(c->processing.num_standbys, 2);
  EXPECT_EQ(c->formats.conversions, PayloadFormat::kProtobuf);
  EXPECT_EQ(c->limits.max_payload_bytes, 1u << 20);
  EXPECT_EQ(c->limits.max_rejected_original_bytes, 100u << 10);
  EXPECT_EQ(c->limits.min_event_time_ms, 1'262'304'000'000);
  EXPECT_EQ(c->limits.max_event_time_ms, 1'893'456'000'000);
  EXPECT_EQ(c->processing.batch_max_messages, 500);
  EXPECT_EQ(c->processing.batch_max_time, absl::Milliseconds(250));
  EXPECT_EQ(c->processing.attribution_key, AttributionKey::kUserId);
  EXPECT_EQ(c->processing.pending_grace, absl::Hours(2));
  EXPECT_EQ(c->processing.max_click_lateness, absl::Seconds(5));
  EXPECT_EQ(c->processing.max_conversion_lateness, absl::Hours(3));
  EXPECT_EQ(c->processing.click_idle_timeout, absl::Seconds(90));
  EXPECT_EQ(c->processing.max_pending_conversions, 77);
  EXPECT_EQ(c->processing.worker_threads, 8);
  EXPECT_EQ(c->processing.stop_when_idle, absl::Seconds(3));
  EXPECT_EQ(c->state.dir, "/tmp/state");
  EXPECT_EQ(c->state.block_cache_bytes, 512ull << 20);
  EXPECT_EQ(c->state.write_buffer_bytes, 1ull << 30);
  EXPECT_EQ(c->state.max_open_files, 1000);
  EXPECT_FALSE(c->state.sync_commits);
  EXPECT_EQ(c->dedup.table_slots, 1024u);
  EXPECT_EQ(c->dedup.horizon, absl::Hours(40 * 24));
  // Relative to the file's folder.
  const std::string folder = std::filesystem::path(*sources.file).parent_path().string();
  EXPECT_EQ(c->fraud.bot_user_agents_file, folder + "/bots.txt");
  EXPECT_EQ(c->fraud.ip_blocklist_file, folder + "/ips.txt");
  EXPECT_EQ(c->fraud.max_clicks_per_ip, 5);
  EXPECT_EQ(c->fraud.flood_window, absl::Seconds(30));
  EXPECT_EQ(c->fraud.flood_lateness, absl::Hours(2));
  EXPECT_EQ(c->fraud.flood_table_slots, 2048u);
  EXPECT_EQ(c->offers.file, folder + "/o.yaml");
  EXPECT_EQ(c->metrics.listen, "127.0.0.1:0");
  EXPECT_EQ(MetricCurrencyCodes(*c), (std::vector<std::string>{"JPY", "KWD"}));
  EXPECT_EQ(MetricEndpoints(*c), (std::vector<std::string>{"/healthz", "/readyz"}));
  EXPECT_EQ(c->log.level, LogLevel::kDebug);
  EXPECT_EQ(c->log.format, LogFormat::kJson);
  EXPECT_TRUE(c->log.pii);
  EXPECT_EQ(c->shutdown.timeout, absl::Seconds(5));

  // Guards against a key added to the table but forgotten in this test: every
  // typed key's printed value must differ from its default.
  TallyConfig defaults;
  const std::string described = DescribeConfig(*c);
  const std::string default_described = DescribeConfig(defaults);
  for (const std::string& key : ConfigKeys()) {
    for (const std::string& line :
         std::vector<std::string>(absl::StrSplit(default_described, '\n'))) {
      if (line.rfind(key + " = ", 0) == 0) {
        EXPECT_THAT(described, testing::Not(HasSubstr(line + "\n"))) << key << " not covered";
      }
    }
  }
}

TEST_F(ConfigTest, DottedKeysAtTopLevelAreAccepted) {
  ConfigSources sources;
  sources.file = WriteFile(
      "kafka.bootstrap.servers: b:1\nprocessing.worker_threads: 3\ntopics:\n  rejected.x: y\n");
  EXPECT_THAT(ErrorOf(sources), HasSubstr("unknown key 'topics.rejected.x'"));
  sources.file = WriteFile("kafka.bootstrap.servers: b:1\nprocessing.worker_threads: 3\n");
  absl::StatusOr<TallyConfig> c = LoadConfig(sources);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->processing.worker_threads, 3);
}

TEST_F(ConfigTest, PrecedenceIsDefaultsFileEnvThenSet) {
  ConfigSources sources;
  sources.file = WriteFile(
      "kafka: {bootstrap.servers: file:1}\ngroup_id: from-file\ntopics: {clicks: file-clicks}\n"
      "processing: {worker_threads: 3}\n");
  sources.env = {{"TALLY_GROUP_ID", "from-env"},
                 {"TALLY_TOPICS_CLICKS", "env-clicks"},
                 {"TALLY_KAFKA_BOOTSTRAP_SERVERS", "env:1"},
                 {"TALLY_KAFKA_SASL_PASSWORD", "s3cret"},
                 {"TALLY_CONSUMER_FETCH_MAX_BYTES", "1024"},
                 {"PATH", "/usr/bin"}};
  sources.overrides = {"group_id=from-set", "kafka.bootstrap.servers=set:1"};
  absl::StatusOr<TallyConfig> c = LoadConfig(sources);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->group_id, "from-set");               // --set beats env and file
  EXPECT_EQ(c->topics.clicks, "env-clicks");        // env beats file
  EXPECT_EQ(c->processing.worker_threads, 3);       // file beats default
  EXPECT_EQ(c->topics.conversions, "conversions");  // default
  EXPECT_EQ(c->kafka.common.at("bootstrap.servers"), "set:1");
  EXPECT_EQ(c->kafka.common.at("sasl.password"), "s3cret");
  EXPECT_EQ(c->kafka.consumer.at("fetch.max.bytes"), "1024");
}

TEST_F(ConfigTest, LaterSetWins) {
  ConfigSources sources = Minimal();
  sources.overrides.push_back("processing.worker_threads=4");
  sources.overrides.push_back("processing.worker_threads=5");
  EXPECT_EQ(LoadConfig(sources)->processing.worker_threads, 5);
}

TEST_F(ConfigTest, UnknownKeysAreErrorsNamingTheKey) {
  ConfigSources sources;
  sources.file = WriteFile("kafka: {bootstrap.servers: b:1}\ntopics:\n  clickz: x\n");
  const std::string from_file = ErrorOf(sources);
  EXPECT_THAT(from_file, HasSubstr("config: unknown key 'topics.clickz'"));
  EXPECT_THAT(from_file, HasSubstr("did you mean 'topics.clicks'?"));
  EXPECT_THAT(from_file, HasSubstr(*sources.file + " line 3"));

  sources = Minimal();
  sources.overrides.push_back("procesing.worker_threads=2");
  EXPECT_THAT(ErrorOf(sources), HasSubstr("config: unknown key 'procesing.worker_threads'"));

  sources = Minimal();
  sources.env = {{"TALLY_TOPICS_CLICKZ", "x"}};
  EXPECT_EQ(ErrorOf(sources),
            "config: environment variable TALLY_TOPICS_CLICKZ matches no configuration key");

  sources = Minimal();
  sources.overrides.push_back("topics=x");
  EXPECT_THAT(ErrorOf(sources), HasSubstr("config: topics: is a section"));
}

TEST_F(ConfigTest, KubernetesServiceLinkVariablesAreIgnored) {
  ConfigSources sources = Minimal();
  sources.env = {{"TALLY_SERVICE_HOST", "10.0.0.1"},
                 {"TALLY_SERVICE_PORT", "9464"},
                 {"TALLY_SERVICE_PORT_METRICS", "9464"},
                 {"TALLY_PORT", "tcp://10.0.0.1:9464"},
                 {"TALLY_PORT_9464_TCP", "tcp://10.0.0.1:9464"},
                 {"TALLY_PORT_9464_TCP_ADDR", "10.0.0.1"},
                 {"TALLY_METRICS_SERVICE_HOST", "10.0.0.2"}};
  EXPECT_TRUE(LoadConfig(sources).ok()) << LoadConfig(sources).status();
}

TEST_F(ConfigTest, TypeAndRangeErrorsNameKeyValueAndSource) {
  ConfigSources sources = Minimal();
  sources.overrides.push_back("processing.batch_max_messages=abc");
  EXPECT_EQ(ErrorOf(sources),
            "config: processing.batch_max_messages: expected an integer, got 'abc' (from --set)");

  sources = Minimal();
  sources.env = {{"TALLY_PROCESSING_BATCH_MAX_MESSAGES", "0"}};
  EXPECT_EQ(ErrorOf(sources),
            "config: processing.batch_max_messages: must be between 1 and 1000000, got 0");

  sources = Minimal();
  sources.env = {{"TALLY_DEDUP_HORIZON", "forever"}};
  EXPECT_EQ(ErrorOf(sources),
            "config: dedup.horizon: expected a duration (e.g. 100ms, 30s, 10m, 35d), got "
            "'forever' (from environment variable TALLY_DEDUP_HORIZON)");

  const std::vector<std::pair<std::string, std::string>> cases = {
      {"formats.clicks=xml", "formats.clicks: expected one of json|protobuf, got 'xml'"},
      {"processing.attribution_key=email",
       "processing.attribution_key: expected one of click_id|user_id, got 'email'"},
      {"log.level=loud", "log.level: expected one of debug|info|warning|error"},
      {"log.pii=maybe", "log.pii: expected true or false, got 'maybe'"},
      {"log.format=yaml", "log.format: expected one of text|json, got 'yaml'"},
      {"state.block_cache_bytes=256MB", "state.block_cache_bytes: expected a size"},
      {"processing.worker_threads=99999999999", "processing.worker_threads: must be between"},
      {"processing.worker_threads=0", "processing.worker_threads: must be between 1 and 256"},
      {"dedup.table_slots=1000", "dedup.table_slots: must be a power of two"},
      {"metrics.listen=9464", "metrics.listen: expected host:port"},
      {"metrics.endpoints=/metrics,/debug", "metrics.endpoints: unknown endpoint '/debug'"},
      {"metrics.endpoints=/readyz,/readyz", "metrics.endpoints: '/readyz' listed twice"},
      {"metrics.endpoints=", "metrics.endpoints: must name at least one"},
      {"metrics.currencies=USD,usd", "metrics.currencies: \"usd\" is not an ISO 4217"},
      {"metrics.currencies=USD,EUR,USD", "metrics.currencies: \"USD\" listed twice"},
      {"metrics.currencies=" + absl::StrJoin(std::vector<std::string>(33, "USD"), ","),
       "metrics.currencies: at most 32 currencies"},
      {"limits.min_event_time=2200-01-01T00:00:00Z",
       "limits.min_event_time: must be before limits.max_event_time"},
      {"processing.batch_max_time=0", "processing.batch_max_time: must be between 1ms and 1m"},
      {"processing.pending_grace=-1s", "processing.pending_grace: must be between"},
      {"processing.max_click_lateness=2d", "processing.max_click_lateness: must be between"},
      {"shutdown.timeout=inf", "shutdown.timeout: must be between"},
      {"topics.rejected=clicks", "topics.rejected: same topic 'clicks' as topics.clicks"},
      {"topics.clicks=bad topic", "topics.clicks: not a valid Kafka topic name"},
      {"instance_id=a/b", "instance_id: must be 1-200 of [a-zA-Z0-9._-]"},
      {"group_id=", "group_id: must not be empty"},
      {"state.max_open_files=5", "state.max_open_files: must be -1 (unlimited) or at least 20"},
      {"consumer.group.id=x", "consumer.group.id: not allowed"},
      {"kafka.transactional.id=x", "kafka.transactional.id: not allowed"},
      {"kafka.=x", "unknown key 'kafka.'"},
  };
  for (const auto& [set, expected] : cases) {
    sources = Minimal();
    sources.overrides.push_back(set);
    EXPECT_THAT(ErrorOf(sources), HasSubstr("config: " + expected)) << set;
  }
}

// Regression (issue 6): a rejected record larger than the producer's
// message.max.bytes failed on every restart. Start-up must refuse such a
// configuration and name the keys.
TEST_F(ConfigTest, RejectedRecordMustFitMessageMaxBytes) {
  ConfigSources sources = Minimal();
  sources.overrides.push_back("limits.max_rejected_original_bytes=1MiB");
  const std::string error = ErrorOf(sources);
  EXPECT_THAT(error, HasSubstr("config: limits.max_rejected_original_bytes: a rejected record can "
                               "be "));
  EXPECT_THAT(error, HasSubstr("producer.message.max.bytes (librdkafka default)=1000000"));

  // The hint is exact: its value fits, one byte more does not.
  const std::vector<std::string> parts = absl::StrSplit(error, "to at most ");
  ASSERT_EQ(parts.size(), 2u) << error;
  const std::string fits = parts[1].substr(0, parts[1].find(' '));
  EXPECT_GT(std::stoull(fits), 700'000u) << "base64 growth only, not more";
  sources = Minimal();
  sources.overrides.push_back("limits.max_rejected_original_bytes=" + fits);
  EXPECT_TRUE(LoadConfig(sources).ok()) << fits;
  sources = Minimal();
  sources.overrides.push_back("limits.max_rejected_original_bytes=" +
                              std::to_string(std::stoull(fits) + 1));
  EXPECT_THAT(ErrorOf(sources), HasSubstr("limits.max_rejected_original_bytes"));

  // Raising message.max.bytes makes room; producer.* wins over kafka.*.
  sources = Minimal();
  sources.overrides.insert(sources.overrides.end(), {"limits.max_rejected_original_bytes=1MiB",
                                                     "kafka.message.max.bytes=1000000",
                                                     "producer.message.max.bytes=2000000"});
  EXPECT_TRUE(LoadConfig(sources).ok());
  sources = Minimal();
  sources.overrides.push_back("kafka.message.max.bytes=90000");
  EXPECT_THAT(ErrorOf(sources), HasSubstr("more than kafka.message.max.bytes=90000"));
  sources.overrides.push_back("kafka.message.max.bytes=5000");
  EXPECT_THAT(ErrorOf(sources), HasSubstr("even without the original value a rejected record "
                                          "can be 10065 bytes: raise message.max.bytes"));

  // protobuf has no base64 growth: 900KiB fits 1000000 there, not in JSON.
  sources = Minimal();
  sources.overrides.push_back("limits.max_rejected_original_bytes=900KiB");
  EXPECT_THAT(ErrorOf(sources), HasSubstr("a rejected record can be"));
  sources.overrides.push_back("formats.output=protobuf");
  EXPECT_TRUE(LoadConfig(sources).ok());

  sources = Minimal();
  sources.overrides.push_back("producer.message.max.bytes=1MB");
  EXPECT_THAT(ErrorOf(sources),
              HasSubstr("config: producer.message.max.bytes: expected a positive integer, got "
                        "'1MB'"));
  sources = Minimal();
  sources.overrides.push_back("limits.max_rejected_original_bytes=65MiB");
  EXPECT_THAT(ErrorOf(sources), HasSubstr("limits.max_rejected_original_bytes: must be between"));
  sources = Minimal();
  sources.overrides.push_back("limits.max_rejected_original_bytes=0");
  EXPECT_TRUE(LoadConfig(sources).ok()) << "size and hash only";
}

TEST_F(ConfigTest, WorstCaseOutputRecordBytes) {
  TallyConfig c;
  c.limits.max_rejected_original_bytes = 3000;
  const OutputRecordBounds json = WorstCaseOutputRecordBytes(c);
  c.formats.output = PayloadFormat::kProtobuf;
  const OutputRecordBounds protobuf = WorstCaseOutputRecordBytes(c);
  EXPECT_EQ(json.rejected - protobuf.rejected, (4000 - 3000) + (1368 - 1024) + 5 * 1024)
      << "base64 of value and key, JSON escapes of the detail";
  c.limits.max_rejected_original_bytes = 3003;
  EXPECT_EQ(WorstCaseOutputRecordBytes(c).rejected, protobuf.rejected + 3);
  EXPECT_LT(json.unattributed, 4096u);
  EXPECT_EQ(*ProducerMessageMaxBytes(c), 1'000'000u);
}

TEST_F(ConfigTest, DurationAndSizeSyntaxes) {
  ConfigSources sources = Minimal();
  sources.overrides.insert(
      sources.overrides.end(),
      {"dedup.horizon=35d", "state.block_cache_bytes=256MiB", "state.write_buffer_bytes=1048576",
       "processing.pending_grace=1d12h", "limits.max_payload_bytes=128KiB"});
  absl::StatusOr<TallyConfig> c = LoadConfig(sources);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->dedup.horizon, absl::Hours(840));
  EXPECT_EQ(c->state.block_cache_bytes, 268'435'456u);
  EXPECT_EQ(c->state.write_buffer_bytes, 1'048'576u);
  EXPECT_EQ(c->processing.pending_grace, absl::Hours(36));
  EXPECT_EQ(c->limits.max_payload_bytes, 131'072u);
}

TEST_F(ConfigTest, DescribeRedactsSecrets) {
  ConfigSources sources = Minimal();
  sources.env = {{"TALLY_KAFKA_SASL_PASSWORD", "hunter2"},
                 {"TALLY_KAFKA_SASL_USERNAME", "tally-user"},
                 {"TALLY_PRODUCER_SSL_KEY_PEM", "-----BEGIN PRIVATE KEY-----"},
                 {"TALLY_CONSUMER_SASL_OAUTHBEARER_CLIENT_ID", "oauth-client"},
                 {"TALLY_KAFKA_SSL_KEYSTORE_PASSWORD", "ks-pass"}};
  absl::StatusOr<TallyConfig> c = LoadConfig(sources);
  ASSERT_TRUE(c.ok()) << c.status();
  const std::string described = DescribeConfig(*c);
  EXPECT_THAT(described, HasSubstr("kafka.sasl.password = <redacted>\n"));
  EXPECT_THAT(described, HasSubstr("producer.ssl.key.pem = <redacted>\n"));
  EXPECT_THAT(described, HasSubstr("consumer.sasl.oauthbearer.client.id = <redacted>\n"));
  EXPECT_THAT(described, HasSubstr("kafka.sasl.username = tally-user\n"));
  EXPECT_THAT(described, HasSubstr("kafka.bootstrap.servers = broker:9092\n"));
  for (const char* secret : {"hunter2", "PRIVATE KEY", "oauth-client", "ks-pass"}) {
    EXPECT_THAT(described, testing::Not(HasSubstr(secret)));
  }
}

TEST_F(ConfigTest, DescribedValuesLoadBackToTheSameConfig) {
  ConfigSources sources;
  sources.file = WriteFile(kEveryKey);
  absl::StatusOr<TallyConfig> original = LoadConfig(sources);
  ASSERT_TRUE(original.ok()) << original.status();
  ConfigSources again;
  for (const std::string& line : std::vector<std::string>(
           absl::StrSplit(DescribeConfig(*original), '\n', absl::SkipEmpty()))) {
    const size_t sep = line.find(" = ");
    ASSERT_NE(sep, std::string::npos) << line;
    again.overrides.push_back(line.substr(0, sep) + "=" + line.substr(sep + 3));
  }
  absl::StatusOr<TallyConfig> reloaded = LoadConfig(again);
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_EQ(DescribeConfig(*reloaded), DescribeConfig(*original));
}

TEST_F(ConfigTest, FileErrorsNameTheFile) {
  ConfigSources sources = Minimal();
  sources.file = ::testing::TempDir() + "/does-not-exist-tally.yaml";
  std::string error = ErrorOf(sources);
  EXPECT_THAT(error, HasSubstr("cannot read config file '" + *sources.file + "'"));
  EXPECT_THAT(error, HasSubstr("No such file"));

  sources.file = WriteFile("kafka: [unclosed\n  group_id: {\n");
  error = ErrorOf(sources);
  EXPECT_THAT(error, HasSubstr("config file '" + *sources.file + "' is not valid YAML: line"));

  sources.file = WriteFile("- a\n- b\n");
  EXPECT_THAT(ErrorOf(sources), HasSubstr("expected a map of keys at the top level"));

  sources.file = WriteFile("group_id: a\ngroup_id: b\n");
  EXPECT_THAT(ErrorOf(sources), HasSubstr("config: group_id: set more than once"));

  sources.file = WriteFile("group_id:\n");
  EXPECT_THAT(ErrorOf(sources), HasSubstr("config: group_id: no value given"));

  sources.file = WriteFile("topics:\n  clicks: [a, b]\n");
  EXPECT_THAT(ErrorOf(sources), HasSubstr("config: topics.clicks: expected a value, got a list"));

  sources.file = WriteFile("group_id: {a: b}\n");
  EXPECT_THAT(ErrorOf(sources), HasSubstr("config: group_id: expected a value, got a map"));

  sources.file = WriteFile("");  // empty file: defaults
  EXPECT_TRUE(LoadConfig(sources).ok());
}

// The shipped example must load, hold exactly the defaults and mention every
// key, so that it cannot drift from the code.
TEST_F(ConfigTest, DeployExampleFileHoldsEveryKeyWithItsDefault) {
  const std::string path = std::string(TALLY_SOURCE_DIR) + "/deploy/config/tally.yaml";
  ConfigSources sources;
  sources.file = path;
  absl::StatusOr<TallyConfig> loaded = LoadConfig(sources);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  TallyConfig defaults;
  defaults.kafka.common["bootstrap.servers"] = loaded->kafka.common.at("bootstrap.servers");
  defaults.instance_id = Hostname();
  // The default rule-file names mean the configuration's folder.
  const std::string folder = std::string(TALLY_SOURCE_DIR) + "/deploy/config/";
  defaults.offers.file = folder + defaults.offers.file;
  defaults.fraud.bot_user_agents_file = folder + defaults.fraud.bot_user_agents_file;
  defaults.fraud.ip_blocklist_file = folder + defaults.fraud.ip_blocklist_file;
  EXPECT_EQ(DescribeConfig(*loaded), DescribeConfig(defaults));

  const YAML::Node root = YAML::LoadFile(path);
  for (const std::string& key : ConfigKeys()) {
    YAML::Node node = root;
    for (const std::string& part : std::vector<std::string>(absl::StrSplit(key, '.')))
      node.reset(node[part]);
    EXPECT_TRUE(node.IsDefined() && node.IsScalar()) << key << " missing from " << path;
  }
}

TEST(EnvironmentTest, KeyNamesAndEnvironParsing) {
  EXPECT_EQ(EnvironmentVariableForKey("processing.attribution_key"),
            "TALLY_PROCESSING_ATTRIBUTION_KEY");
  EXPECT_EQ(EnvironmentVariableForKey("group_id"), "TALLY_GROUP_ID");
  const char* envp[] = {"TALLY_GROUP_ID=a=b", "EMPTY=", "NOEQUALS", nullptr};
  const std::map<std::string, std::string> env = EnvironmentFromEnviron(envp);
  EXPECT_EQ(env.at("TALLY_GROUP_ID"), "a=b");
  EXPECT_EQ(env.at("EMPTY"), "");
  EXPECT_EQ(env.count("NOEQUALS"), 0u);
}

}  // namespace
}  // namespace tally
