// tally: the click-stream processor. See README.md for configuration.
//
// Exit codes: 0 clean stop (SIGTERM/SIGINT, or idle with
// processing.stop_when_idle); 1 runtime failure (the current batch is not
// committed and will be replayed by the next owner); 2 bad configuration or
// command line.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <functional>
#include <iostream>
#include <memory>
#include <thread>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "processor/app/core_stage.h"
#include "processor/app/pipeline.h"
#include "processor/app/processor.h"
#include "processor/common/log.h"
#include "processor/config/command_line.h"
#include "processor/config/config.h"
#include "processor/metrics/health.h"
#include "processor/metrics/metrics_server.h"
#include "processor/offers/offers.h"

extern char** environ;

namespace tally {
namespace {

constexpr char kLog[] = "main";

WireFormat ToWireFormat(PayloadFormat format) {
  switch (format) {
    case PayloadFormat::kJson:
      return WireFormat::kJson;
    case PayloadFormat::kProtobuf:
      return WireFormat::kProtobuf;
  }
  return WireFormat::kJson;
}

ProcessorOptions MakeProcessorOptions(const TallyConfig& config) {
  ProcessorOptions options;
  options.consumer_properties = config.kafka.common;
  for (const auto& [k, v] : config.kafka.consumer) options.consumer_properties[k] = v;
  options.consumer_properties["group.id"] = config.group_id;
  // Static membership: a member that restarts within the session timeout
  // gets its tasks back without a rebalance (a rolling restart moves
  // nothing). instance_id is unique per instance (the pod name).
  options.consumer_properties.try_emplace("group.instance.id", config.instance_id);
  options.producer_properties = config.kafka.common;
  for (const auto& [k, v] : config.kafka.producer) options.producer_properties[k] = v;
  options.exactly_once = config.processing.guarantee == Guarantee::kExactlyOnce;
  if (options.exactly_once) {
    // Only committed transactions' records are input; one transactional id
    // per instance (KIP-447: zombies are fenced by the group generation
    // that send_offsets_to_transaction carries, so the id need not follow
    // the tasks).
    options.consumer_properties["isolation.level"] = "read_committed";
    options.transactional_id = absl::StrCat(config.group_id, "-", config.instance_id);
  }
  options.changelog_topic = ChangelogTopicOf(config);
  options.changelog_topic_config = ChangelogTopicConfig();
  options.topics.clicks = config.topics.clicks;
  options.topics.conversions = config.topics.conversions;
  options.topics.commissions = config.topics.commissions;
  options.topics.rejected = config.topics.rejected;
  options.topics.unattributed = config.topics.unattributed;
  options.clicks_format = ToWireFormat(config.formats.clicks);
  options.conversions_format = ToWireFormat(config.formats.conversions);
  options.output_format = ToWireFormat(config.formats.output);
  options.limits.max_payload_bytes = config.limits.max_payload_bytes;
  options.limits.min_event_time_ms = config.limits.min_event_time_ms;
  options.limits.max_event_time_ms = config.limits.max_event_time_ms;
  options.rejected_limits.max_value_bytes =
      static_cast<size_t>(config.limits.max_rejected_original_bytes);
  options.attribution_key = config.processing.attribution_key;
  options.batch_max_messages = static_cast<size_t>(config.processing.batch_max_messages);
  options.batch_max_time = config.processing.batch_max_time;
  options.stop_when_idle = config.processing.stop_when_idle;
  options.shutdown_timeout = config.shutdown.timeout;
  for (const std::string& code : MetricCurrencyCodes(config)) {
    Currency currency;
    if (Currency::Parse(code, &currency)) options.metric_currencies.push_back(currency);
  }
  return options;
}

CoreStageOptions MakeCoreStageOptions(const TallyConfig& config, const OffersCatalog& offers) {
  CoreStageOptions o;
  o.clicks_topic = config.topics.clicks;
  o.conversions_topic = config.topics.conversions;
  const int64_t grace_ms = absl::ToInt64Milliseconds(config.processing.pending_grace);
  const int64_t horizon_ms = absl::ToInt64Milliseconds(config.dedup.horizon);
  o.state.dir = config.state.dir;
  o.state.block_cache_bytes = config.state.block_cache_bytes;
  o.state.write_buffer_bytes = config.state.write_buffer_bytes;
  o.state.max_open_files = config.state.max_open_files;
  o.state.sync_commits = config.state.sync_commits;
  // Store opens and the dedup warm-up at an assignment use the worker
  // threads' cores (the pipeline is idle until they are done).
  o.state.parallelism = config.processing.worker_threads;
  // A click must outlive every window it can earn in, plus the time a
  // conversion may wait for it, behind the conversions still to be decided.
  o.state.click_retention_ms = offers.max_attribution_window_ms() + grace_ms;
  o.state.conversion_lateness_ms =
      absl::ToInt64Milliseconds(config.processing.max_conversion_lateness);
  o.dedup.table_slots = config.dedup.table_slots;
  o.dedup.horizon_ms = horizon_ms;
  o.state.dedup_retention_ms = horizon_ms + o.dedup.repeat_skew_ms;
  o.state.clicks_topic = config.topics.clicks;
  // Flood counts are exact while partitions are at most flood_lateness
  // apart; one window more covers the window still being counted.
  o.state.flood_retention_ms = absl::ToInt64Milliseconds(config.fraud.flood_lateness) +
                               absl::ToInt64Milliseconds(config.fraud.flood_window);
  o.fraud.bot_user_agents_file = config.fraud.bot_user_agents_file;
  o.fraud.ip_blocklist_file = config.fraud.ip_blocklist_file;
  o.fraud.max_clicks_per_ip = config.fraud.max_clicks_per_ip;
  o.fraud.flood_window_ms = absl::ToInt64Milliseconds(config.fraud.flood_window);
  o.fraud.flood_lateness_ms = absl::ToInt64Milliseconds(config.fraud.flood_lateness);
  o.fraud.flood_table_slots = static_cast<size_t>(config.fraud.flood_table_slots);
  o.join.mode = config.processing.attribution_key == AttributionKey::kUserId
                    ? AttributionMode::kUserId
                    : AttributionMode::kClickId;
  o.join.pending_grace_ms = grace_ms;
  o.join.max_click_lateness_ms = absl::ToInt64Milliseconds(config.processing.max_click_lateness);
  o.max_pending_conversions = config.processing.max_pending_conversions;
  o.changelog_topic = ChangelogTopicOf(config);
  o.num_standbys = static_cast<int>(config.processing.num_standbys);
  o.click_idle_timeout = config.processing.click_idle_timeout;
  return o;
}

// Signals are taken synchronously by one thread (sigwait), never by an
// async handler: SIGTERM/SIGINT ask the processor to stop after its current
// batch; SIGHUP reloads the fraud rule files.
//
// Two objects, because of two lifetimes: the signal mask must be blocked
// before any other thread exists (every thread inherits it), while the
// thread that acts on signals must be joined BEFORE the processor and stage
// it calls are destroyed. So `BlockedSignals` is created first in Main, and
// `SignalThread` after the objects it calls into (destroyed before them).
class BlockedSignals {
 public:
  BlockedSignals() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  }
  const sigset_t& set() const { return set_; }

 private:
  sigset_t set_;
};

class SignalThread {
 public:
  // `on_stop` and `on_hup` run on the signal thread until the destructor
  // returns; they must stay callable that long (declare this object after
  // everything they use).
  SignalThread(const BlockedSignals& signals, std::function<void()> on_stop,
               std::function<void()> on_hup)
      : set_(signals.set()) {
    thread_ = std::thread([this, on_stop = std::move(on_stop), on_hup = std::move(on_hup)] {
      while (true) {
        int sig = 0;
        if (sigwait(&set_, &sig) != 0) continue;
        if (done_.load(std::memory_order_acquire)) return;
        if (sig == SIGHUP) {
          TALLY_LOG(kInfo, kLog, "SIGHUP received: reloading the fraud rule files");
          on_hup();
          continue;
        }
        TALLY_LOG(kInfo, kLog, "signal ", sig, " received: finishing the current batch");
        on_stop();
      }
    });
  }
  ~SignalThread() {
    done_.store(true, std::memory_order_release);
    kill(getpid(), SIGTERM);  // wakes sigwait; seen as "done" above
    thread_.join();
  }
  SignalThread(const SignalThread&) = delete;
  SignalThread& operator=(const SignalThread&) = delete;

 private:
  const sigset_t set_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// A start-up failure once the configuration (and so log.format) is known:
// one log line like every other, whatever log.level says.
void LogFatal(absl::string_view message) {
  LogEvent(LogLevel::kError, kLog, std::string_view(message.data(), message.size()), {});
}

// The exit summary as one structured line (issue 9: no multi-line dumps);
// tools/run.sh prints its fields one per line.
LogFields SummaryFields(const ProcessorSummary& s) {
  LogFields fields = {
      {"events_in", absl::StrCat(s.clicks_in + s.conversions_in)},
      {"clicks_in", absl::StrCat(s.clicks_in)},
      {"conversions_in", absl::StrCat(s.conversions_in)},
      {"valid", absl::StrCat(s.valid_clicks + s.valid_conversions)},
      {"rejected", absl::StrCat(s.rejected)},
  };
  for (const auto& [reason, count] : s.rejected_by_reason) {
    fields.push_back({absl::StrCat("rejected.", reason), absl::StrCat(count)});
  }
  for (const auto& [key, value] : std::initializer_list<std::pair<const char*, uint64_t>>{
           {"out.retained", s.retained},
           {"out.commissions", s.commissions_out},
           {"out.unattributed", s.unattributed_out},
           {"pending", s.pending},
           {"batches", s.batches}}) {
    fields.push_back({key, absl::StrCat(value)});
  }
  return fields;
}

// What start-up derives from the configuration before it binds, connects
// or opens anything. `tally --check-config` runs exactly this and stops, so
// a configuration it accepts is one start-up accepts.
struct StartupPlan {
  std::shared_ptr<const OffersCatalog> offers;
  CoreStageOptions core;
  ProcessorOptions processor;
  kafka::Properties reader_properties;  // the changelog restore reader
};

absl::StatusOr<StartupPlan> PlanStartup(const TallyConfig& config) {
  StartupPlan plan;
  absl::StatusOr<std::shared_ptr<const OffersCatalog>> offers =
      OffersCatalog::Load(config.offers.file);
  if (!offers.ok()) return offers.status();
  plan.offers = *std::move(offers);
  plan.core = MakeCoreStageOptions(config, *plan.offers);
  if (absl::Status s = CoreStage::CheckOptions(plan.core, *plan.offers); !s.ok()) return s;
  plan.processor = MakeProcessorOptions(config);
  // The restore reader: the consumer's connection settings, outside the
  // group, reading only committed changelog transactions under
  // exactly-once.
  plan.reader_properties = config.kafka.common;
  for (const auto& [k, v] : config.kafka.consumer) plan.reader_properties[k] = v;
  plan.reader_properties.erase("group.instance.id");
  plan.reader_properties["group.id"] = absl::StrCat(config.group_id, "-restore");
  if (config.processing.guarantee == Guarantee::kExactlyOnce) {
    plan.reader_properties["isolation.level"] = "read_committed";
  }
  for (const auto& [role, props, transactional_id] :
       {std::tuple{kafka::ClientRole::kConsumer, &plan.processor.consumer_properties, ""},
        std::tuple{kafka::ClientRole::kProducer, &plan.processor.producer_properties,
                   plan.processor.transactional_id.c_str()},
        std::tuple{kafka::ClientRole::kReader, &plan.reader_properties, ""}}) {
    if (absl::Status s = kafka::CheckClientProperties(role, *props, transactional_id); !s.ok()) {
      return s;
    }
  }
  return plan;
}

int Main(int argc, char** argv) {
  const BlockedSignals blocked;
  auto command_line = ParseCommandLine(argc, argv);
  if (!command_line.ok()) {
    std::cerr << "tally: " << command_line.status().message() << "\n" << CommandLineUsage("tally");
    return 2;
  }
  if (command_line->help) {
    std::cout << CommandLineUsage("tally");
    return 0;
  }
  if (command_line->version) {
    std::cout << "tally " << TallyVersion() << "\n";
    return 0;
  }
  ConfigSources sources;
  sources.file = command_line->config_file;
  sources.env = EnvironmentFromEnviron(environ);
  sources.overrides = command_line->overrides;
  auto config = LoadConfig(sources);
  if (!config.ok()) {
    std::cerr << "tally: " << config.status().message() << "\n";
    return 2;
  }
  SetLogLevel(config->log.level);
  SetLogFormat(config->log.format);
  SetLogPii(config->log.pii);
  absl::StatusOr<StartupPlan> plan = PlanStartup(*config);
  if (!plan.ok()) {
    // --check-config answers a person: plain text, whatever log.format.
    if (command_line->check_config) {
      std::cerr << "tally: " << plan.status().message() << "\n";
    } else {
      LogFatal(plan.status().message());
    }
    return 2;
  }
  if (command_line->check_config) {
    std::cout << "configuration OK: " << *command_line->config_file << "\n";
    return 0;
  }
  if (LogEnabled(LogLevel::kInfo)) {
    LogFields fields = {{"version", TallyVersion()}};
    for (LogField& field : DescribeConfigFields(*config)) fields.push_back(std::move(field));
    LogEvent(LogLevel::kInfo, kLog, "tally starting", fields);
  }

  auto registry = std::make_shared<prometheus::Registry>();
  // A stalled loop (no iteration for this long) fails /healthz: longer than
  // any wait inside one iteration (a batch, a flush slice, a rebalance).
  auto health = std::make_shared<Health>(std::max(absl::Seconds(60), 2 * config->shutdown.timeout));
  auto metrics =
      MetricsServer::Start(config->metrics.listen, registry, health, MetricEndpoints(*config));
  if (!metrics.ok()) {
    LogFatal(absl::StrCat("metrics.listen: ", metrics.status().message()));
    return 2;
  }
  TALLY_LOG(kInfo, kLog, "metrics on port ", (*metrics)->port(), " at /metrics");

  auto reader = kafka::PartitionReader::Create(plan->reader_properties);
  if (!reader.ok()) {
    LogFatal(absl::StrCat("creating the changelog reader: ", reader.status().message()));
    return 2;
  }
  Restorer::Options restore_options;
  restore_options.changelog_topic = ChangelogTopicOf(*config);
  auto restorer = std::make_unique<Restorer>(restore_options, std::move(*reader));
  auto stage = CoreStage::Create(plan->core, plan->offers, registry.get(), std::move(restorer));
  if (!stage.ok()) {
    LogFatal(stage.status().message());
    return 2;
  }
  ProcessorOptions processor_options = std::move(plan->processor);
  processor_options.health = health;
  auto processor = Processor::Create(std::move(processor_options), stage->get(), *registry);
  if (!processor.ok()) {
    LogFatal(processor.status().message());
    // A client property librdkafka refuses is a configuration error.
    return processor.status().code() == absl::StatusCode::kInvalidArgument ||
                   processor.status().code() == absl::StatusCode::kFailedPrecondition
               ? 2
               : 1;
  }
  Processor* const loop = processor->get();
  CoreStage* const core = stage->get();
  // Declared after the processor and the stage: joined before they go.
  const SignalThread signals(
      blocked, [loop] { loop->Stop(); },
      [core] {
        if (absl::Status s = core->ReloadFraudRules(); !s.ok()) {
          TALLY_LOG(kError, kLog, "fraud rules not reloaded (the old ones stay): ", s.message());
        } else {
          TALLY_LOG(kInfo, kLog, "fraud rules reloaded");
        }
      });
  absl::Status status = (*processor)->Run();
  ProcessorSummary summary = (*processor)->summary();
  const CoreStageCounters core_counters = (*stage)->counters();
  summary.pending = core_counters.pending;
  summary.replayed_skipped = core_counters.replayed_skipped;
  summary.late_clicks = core_counters.late_clicks;
  summary.late_conversions = core_counters.late_conversions;
  std::cout << summary.ToJson() << std::endl;
  // Whatever log.level says, like the JSON summary on stdout.
  LogEvent(LogLevel::kInfo, kLog, "summary", SummaryFields(summary));
  if (!status.ok()) {
    TALLY_LOG(kError, kLog, "stopped on error: ", status.ToString());
    return 1;
  }
  TALLY_LOG(kInfo, kLog, "stopped cleanly");
  return 0;
}

}  // namespace
}  // namespace tally

int main(int argc, char** argv) { return tally::Main(argc, argv); }
