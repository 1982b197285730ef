#include "processor/app/processor.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "processor/common/log.h"
#include "processor/model/rejected_builder.h"

namespace tally {
namespace {

constexpr char kLog[] = "processor";

enum class InputKind { kClick, kConversion };

constexpr size_t kStatuses = 3;             // ConversionStatus
constexpr size_t kModels = 5;               // AttributionModel
constexpr size_t kUnattributedReasons = 3;  // UnattributedReason
static_assert(static_cast<size_t>(ConversionStatus::kReversed) + 1 == kStatuses);
static_assert(static_cast<size_t>(AttributionModel::kPositionBased) + 1 == kModels);
static_assert(static_cast<size_t>(UnattributedReason::kNoUserClicks) + 1 == kUnattributedReasons);

// The stages of a batch, in order (tally_batch_stage_duration_seconds).
enum class BatchStage : uint8_t {
  kDecode,        // payload -> Click / Conversion, summed over the batch
  kPipeline,      // dedup, fraud filter, joiner, summed over the batch
  kAdvance,       // end of batch: watermarks, timers, held outputs
  kChangelog,     // changelog records of the batch's state changes
  kFlush,         // waiting for every output to be acknowledged
  kTransaction,   // send_offsets_to_transaction + commit_transaction
  kStateCommit,   // task state made durable (RocksDB write + fsync)
  kOffsetCommit,  // at-least-once: the input offsets
};
constexpr size_t kBatchStageCount = static_cast<size_t>(BatchStage::kOffsetCommit) + 1;
constexpr const char* kBatchStageNames[kBatchStageCount] = {
    "decode", "pipeline",    "advance",      "changelog",
    "flush",  "transaction", "state_commit", "offset_commit"};

// All metrics of the processing loop, registered once; labelled children are
// created up front and kept (a child lookup costs microseconds, an increment
// nanoseconds).
struct LoopMetrics {
  explicit LoopMetrics(prometheus::Registry& registry)
      : input(prometheus::BuildCounter()
                  .Name("tally_input_messages_total")
                  .Help("Input messages processed and committed, by kind (a replayed batch counts "
                        "once)")
                  .Register(registry)),
        input_bytes(
            prometheus::BuildCounter()
                .Name("tally_input_bytes_total")
                .Help("Payload bytes of the input messages processed and committed, by kind")
                .Register(registry)),
        rejected(prometheus::BuildCounter()
                     .Name("tally_events_rejected_total")
                     .Help("Input events sent to the rejected topic, by reason")
                     .Register(registry)),
        outputs(prometheus::BuildCounter()
                    .Name("tally_output_messages_total")
                    .Help("Messages produced to the output topics, by topic kind")
                    .Register(registry)),
        retained(prometheus::BuildCounter()
                     .Name("tally_events_retained_total")
                     .Help("Valid input events taken into pipeline state")
                     .Register(registry)
                     .Add({})),
        batches(prometheus::BuildCounter()
                    .Name("tally_batches_total")
                    .Help("Processing batches committed")
                    .Register(registry)
                    .Add({})),
        batch_seconds(
            prometheus::BuildHistogram()
                .Name("tally_batch_duration_seconds")
                .Help("Wall time from the first message of a batch to its commit")
                .Register(registry)
                .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.005, 0.01, 0.025, 0.05,
                                                                 0.1, 0.25, 0.5, 1, 2.5, 5, 10})),
        state_commit_seconds(
            prometheus::BuildHistogram()
                .Name("tally_state_commit_duration_seconds")
                .Help("Time to make a batch's task state durable (RocksDB write + fsync)")
                .Register(registry)
                .Add({}, prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                                 0.025, 0.05, 0.1, 0.25, 0.5, 1})),
        last_commit(prometheus::BuildGauge()
                        .Name("tally_last_commit_timestamp_seconds")
                        .Help("Unix time of the last successful offset commit")
                        .Register(registry)
                        .Add({})),
        assigned(prometheus::BuildGauge()
                     .Name("tally_assigned_partitions")
                     .Help("Input partitions currently assigned to this instance")
                     .Register(registry)
                     .Add({})),
        failures(prometheus::BuildCounter()
                     .Name("tally_batch_failures_total")
                     .Help("Batches that failed (replayed after a retriable error, or fatal)")
                     .Register(registry)
                     .Add({})),
        replays(prometheus::BuildCounter()
                    .Name("tally_batch_replays_total")
                    .Help("Failed batches aborted and consumed again from their first offsets")
                    .Register(registry)
                    .Add({})),
        rebalances(prometheus::BuildCounter()
                       .Name("tally_rebalances_total")
                       .Help("Partition assignments received from the consumer group")
                       .Register(registry)
                       .Add({})),
        half_tasks(prometheus::BuildGauge()
                       .Name("tally_half_tasks")
                       .Help("Partitions with only one of the two input topics assigned (paused)")
                       .Register(registry)
                       .Add({})),
        ready(prometheus::BuildGauge()
                  .Name("tally_ready")
                  .Help("1 when /readyz answers ready: in the group, every task whole and open, "
                        "broker reachable, outputs acknowledged")
                  .Register(registry)
                  .Add({})),
        transactions(prometheus::BuildCounter()
                         .Name("tally_transactions_total")
                         .Help("Kafka transactions (exactly-once batches) by result")
                         .Register(registry)),
        txn_committed(&transactions.Add({{"result", "committed"}})),
        txn_aborted(&transactions.Add({{"result", "aborted"}})),
        txn_seconds(prometheus::BuildHistogram()
                        .Name("tally_transaction_commit_duration_seconds")
                        .Help("send_offsets_to_transaction + commit_transaction per batch")
                        .Register(registry)
                        .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.0025, 0.005, 0.01,
                                                                         0.025, 0.05, 0.1, 0.25,
                                                                         0.5, 1, 2.5, 5, 10})),
        restoring(prometheus::BuildGauge()
                      .Name("tally_restoring_tasks")
                      .Help("Assigned tasks whose state is being restored from the changelog "
                            "(their input is held back)")
                      .Register(registry)
                      .Add({})),
        kafka_errors(prometheus::BuildCounter()
                         .Name("tally_kafka_errors_total")
                         .Help("Kafka client errors seen by the processing loop, by operation "
                               "and class")
                         .Register(registry)),
        lag(prometheus::BuildGauge()
                .Name("tally_consumer_lag_messages")
                .Help("Messages between the consumer position and the end of each assigned "
                      "input partition (librdkafka statistics)")
                .Register(registry)),
        input_click(&input.Add({{"kind", "click"}})),
        input_conversion(&input.Add({{"kind", "conversion"}})),
        input_bytes_click(&input_bytes.Add({{"kind", "click"}})),
        input_bytes_conversion(&input_bytes.Add({{"kind", "conversion"}})),
        out_commissions(&outputs.Add({{"topic", "commissions"}})),
        out_rejected(&outputs.Add({{"topic", "rejected"}})),
        out_unattributed(&outputs.Add({{"topic", "unattributed"}})),
        event_latency(prometheus::BuildHistogram()
                          .Name("tally_output_event_latency_seconds")
                          .Help("Event time of the conversion an output is about to the moment "
                                "it is handed to the producer, by output topic (includes the "
                                "time a conversion waited for its click)")
                          .Register(registry)),
        latency_commissions(&event_latency.Add({{"topic", "commissions"}}, LatencyBuckets())),
        latency_unattributed(&event_latency.Add({{"topic", "unattributed"}}, LatencyBuckets())),
        commissions(prometheus::BuildCounter()
                        .Name("tally_commissions_total")
                        .Help("Commission records produced, by conversion status and "
                              "attribution model")
                        .Register(registry)),
        commission_value(prometheus::BuildCounter()
                             .Name("tally_commission_value_minor_units_total")
                             .Help("Absolute payout of the commission records produced, in minor "
                                   "units, by currency (metrics.currencies, else \"other\"), "
                                   "status and model; reversals count under status reversed")
                             .Register(registry)),
        unattributed(prometheus::BuildCounter()
                         .Name("tally_unattributed_total")
                         .Help("Conversions sent to the unattributed topic, by reason")
                         .Register(registry)),
        broker_rtt_avg(prometheus::BuildGauge()
                           .Name("tally_kafka_broker_rtt_avg_seconds")
                           .Help("Mean request round trip to each broker over the last "
                                 "statistics interval (consumer connections)")
                           .Register(registry)),
        broker_rtt_p99(prometheus::BuildGauge()
                           .Name("tally_kafka_broker_rtt_p99_seconds")
                           .Help("99th percentile request round trip to each broker, last "
                                 "statistics interval (consumer connections)")
                           .Register(registry)),
        broker_in_flight(prometheus::BuildGauge()
                             .Name("tally_kafka_broker_requests_in_flight")
                             .Help("Requests sent to each broker awaiting a response (consumer)")
                             .Register(registry)),
        broker_waiting(prometheus::BuildGauge()
                           .Name("tally_kafka_broker_requests_waiting")
                           .Help("Requests queued to be sent to each broker (consumer)")
                           .Register(registry)),
        fetch_queue(prometheus::BuildGauge()
                        .Name("tally_kafka_consumer_fetch_queue_messages")
                        .Help("Messages fetched from the assigned partitions and not yet polled")
                        .Register(registry)
                        .Add({})),
        producer_queue(prometheus::BuildGauge()
                           .Name("tally_kafka_producer_queue_messages")
                           .Help("Messages produced and not yet acknowledged or failed "
                                 "(outputs and changelog)")
                           .Register(registry)
                           .Add({})),
        stage_seconds(prometheus::BuildHistogram()
                          .Name("tally_batch_stage_duration_seconds")
                          .Help("Wall time of each stage of a batch (decode and pipeline summed "
                                "over its messages)")
                          .Register(registry)) {
    for (RejectReason reason : AllRejectReasons()) {
      rejected_by_reason[static_cast<size_t>(reason)] =
          &rejected.Add({{"reason", std::string(RejectReasonName(reason))}});
    }
    for (size_t status = 0; status < kStatuses; ++status) {
      for (size_t model = 0; model < kModels; ++model) {
        commissions_by[status][model] = &commissions.Add(
            {{"status", ConversionStatusName(static_cast<ConversionStatus>(status))},
             {"model", AttributionModelName(static_cast<AttributionModel>(model))}});
      }
    }
    for (size_t reason = 0; reason < kUnattributedReasons; ++reason) {
      unattributed_by_reason[reason] = &unattributed.Add(
          {{"reason", UnattributedReasonName(static_cast<UnattributedReason>(reason))}});
    }
    for (size_t stage = 0; stage < kBatchStageCount; ++stage) {
      stage_by[stage] = &stage_seconds.Add(
          {{"stage", kBatchStageNames[stage]}},
          prometheus::Histogram::BucketBoundaries{0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                  0.05, 0.1, 0.25, 0.5, 1, 2.5, 5});
    }
  }

  static prometheus::Histogram::BucketBoundaries LatencyBuckets() {
    // From a fast path (milliseconds) to conversions that waited for a late
    // click or were replayed after an outage (an hour).
    return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600};
  }

  // Commission value children per (currency slot, status, model), created
  // on first use: the slots are the configured currencies and "other", so
  // the series stay bounded whatever currencies the input carries.
  prometheus::Counter& CommissionValue(const std::vector<Currency>& currencies,
                                       const tally::Commission& c) {
    size_t slot = currencies.size();
    for (size_t i = 0; i < currencies.size(); ++i) {
      if (currencies[i] == c.payout.currency) {
        slot = i;
        break;
      }
    }
    if (value_by.size() <= slot) value_by.resize(currencies.size() + 1);
    const auto status = static_cast<size_t>(c.status);
    const auto model = static_cast<size_t>(c.model);
    prometheus::Counter*& counter = value_by[slot][status][model];
    if (counter == nullptr) {
      counter = &commission_value.Add(
          {{"currency", slot < currencies.size() ? std::string(currencies[slot].code()) : "other"},
           {"status", ConversionStatusName(c.status)},
           {"model", AttributionModelName(c.model)}});
    }
    return *counter;
  }

  prometheus::Family<prometheus::Counter>& input;
  prometheus::Family<prometheus::Counter>& input_bytes;
  prometheus::Family<prometheus::Counter>& rejected;
  prometheus::Family<prometheus::Counter>& outputs;
  prometheus::Counter& retained;
  prometheus::Counter& batches;
  prometheus::Histogram& batch_seconds;
  prometheus::Histogram& state_commit_seconds;
  prometheus::Gauge& last_commit;
  prometheus::Gauge& assigned;
  prometheus::Counter& failures;
  prometheus::Counter& replays;
  prometheus::Counter& rebalances;
  prometheus::Gauge& half_tasks;
  prometheus::Gauge& ready;
  prometheus::Family<prometheus::Counter>& transactions;
  prometheus::Counter* txn_committed;
  prometheus::Counter* txn_aborted;
  prometheus::Histogram& txn_seconds;
  prometheus::Gauge& restoring;
  // Children created on first use: (operation x class) and assigned
  // partitions are bounded sets.
  prometheus::Family<prometheus::Counter>& kafka_errors;
  prometheus::Family<prometheus::Gauge>& lag;
  prometheus::Counter* input_click;
  prometheus::Counter* input_conversion;
  prometheus::Counter* input_bytes_click;
  prometheus::Counter* input_bytes_conversion;
  prometheus::Counter* out_commissions;
  prometheus::Counter* out_rejected;
  prometheus::Counter* out_unattributed;
  std::array<prometheus::Counter*, kRejectReasonCount> rejected_by_reason{};
  prometheus::Family<prometheus::Histogram>& event_latency;
  prometheus::Histogram* latency_commissions;
  prometheus::Histogram* latency_unattributed;
  prometheus::Family<prometheus::Counter>& commissions;
  prometheus::Family<prometheus::Counter>& commission_value;
  prometheus::Family<prometheus::Counter>& unattributed;
  prometheus::Family<prometheus::Gauge>& broker_rtt_avg;
  prometheus::Family<prometheus::Gauge>& broker_rtt_p99;
  prometheus::Family<prometheus::Gauge>& broker_in_flight;
  prometheus::Family<prometheus::Gauge>& broker_waiting;
  prometheus::Gauge& fetch_queue;
  prometheus::Gauge& producer_queue;
  prometheus::Family<prometheus::Histogram>& stage_seconds;
  std::array<std::array<prometheus::Counter*, kModels>, kStatuses> commissions_by{};
  std::vector<std::array<std::array<prometheus::Counter*, kModels>, kStatuses>> value_by;
  std::array<prometheus::Counter*, kUnattributedReasons> unattributed_by_reason{};
  std::array<prometheus::Histogram*, kBatchStageCount> stage_by{};
};

// Wall time of a batch's stages, observed once per batch.
class StageClock {
 public:
  explicit StageClock(LoopMetrics& metrics) : metrics_(metrics) {}
  // Adds the time since the last Lap (or construction) to `stage`.
  void Lap(BatchStage stage) {
    const absl::Time now = absl::Now();
    spent_[static_cast<size_t>(stage)] += now - last_;
    last_ = now;
  }
  // Observes every stage that ran. Called once, when the batch committed.
  void Observe() {
    for (size_t stage = 0; stage < kBatchStageCount; ++stage) {
      if (spent_[stage] > absl::ZeroDuration()) {
        metrics_.stage_by[stage]->Observe(absl::ToDoubleSeconds(spent_[stage]));
      }
    }
  }

 private:
  LoopMetrics& metrics_;
  absl::Time last_ = absl::Now();
  std::array<absl::Duration, kBatchStageCount> spent_{};
};

// Replayable() decides by the Kafka error class in a status's payload:
// context is added with kafka::WithContext, which keeps it.
using kafka::WithContext;

std::string JsonEscapeKey(std::string_view s) {
  // Reason names and counters only: [a-z_], nothing to escape.
  return absl::StrCat("\"", absl::string_view(s.data(), s.size()), "\"");
}

}  // namespace

std::string ProcessorSummary::ToJson() const {
  std::vector<std::string> reasons;
  reasons.reserve(rejected_by_reason.size());
  for (const auto& [reason, count] : rejected_by_reason) {
    reasons.push_back(absl::StrCat(JsonEscapeKey(reason), ":", count));
  }
  return absl::StrCat(
      "{\"clicks_in\":", clicks_in, ",\"conversions_in\":", conversions_in,
      ",\"valid_clicks\":", valid_clicks, ",\"valid_conversions\":", valid_conversions,
      ",\"rejected\":", rejected, ",\"rejected_by_reason\":{", absl::StrJoin(reasons, ","),
      "},\"retained\":", retained, ",\"commissions_out\":", commissions_out,
      ",\"unattributed_out\":", unattributed_out, ",\"pending\":", pending,
      ",\"replayed_skipped\":", replayed_skipped, ",\"late_clicks\":", late_clicks,
      ",\"late_conversions\":", late_conversions, ",\"batches\":", batches,
      ",\"batch_replays\":", batch_replays, ",\"transactions\":", transactions,
      ",\"transaction_aborts\":", transaction_aborts,
      ",\"state_commit_seconds\":", state_commit_seconds, ",\"busy_seconds\":", busy_seconds, "}");
}

// Delivery tags of changelog records: markers carry their partition.
constexpr uint64_t kChangelogTag = uint64_t{1} << 62;
constexpr uint64_t kMarkerTag = uint64_t{1} << 63;
constexpr std::string_view kMarkerKey = "\xff";  // Restorer's kChangelogMarkerKey
constexpr std::string_view kMarkerValue = "1";

// The output headers (schemas/README.md, "Kafka headers"): tally.schema is
// the protobuf message's full name in either wire format; the version is
// the contract's, not the build's.
constexpr std::string_view kOutputSchemaVersion = "1.1";
constexpr std::string_view kCommissionSchema = "tally.v1.Commission";
constexpr std::string_view kRejectedSchema = "tally.v1.Rejected";
constexpr std::string_view kUnattributedSchema = "tally.v1.Unattributed";

class Processor::Impl final : public Outputs,
                              public kafka::RebalanceListener,
                              public ChangelogSink {
 public:
  Impl(ProcessorOptions options, PipelineStage* stage, prometheus::Registry& registry)
      : options_(std::move(options)),
        stage_(stage),
        metrics_(registry),
        click_decoder_(options_.clicks_format, options_.limits),
        conversion_decoder_(options_.conversions_format, options_.limits),
        encoder_(options_.output_format) {
    // Every (operation, class) child exists from the start, at 0: a rate()
    // over a counter that appears with its first error misses that error,
    // and dashboards would show "no data" instead of none.
    constexpr std::string_view kOperations[] = {"consume",
                                                "commit",
                                                "seek",
                                                "pause",
                                                "resume",
                                                "produce",
                                                "flush",
                                                "begin_transaction",
                                                "send_offsets",
                                                "commit_transaction",
                                                "abort_transaction"};
    constexpr kafka::ErrorClass kClasses[] = {
        kafka::ErrorClass::kRetriable, kafka::ErrorClass::kFatal, kafka::ErrorClass::kFenced,
        kafka::ErrorClass::kAbortable, kafka::ErrorClass::kPermanent};
    for (std::string_view operation : kOperations) {
      for (kafka::ErrorClass error_class : kClasses) {
        KafkaErrorCounter(operation, std::string(kafka::ErrorClassName(error_class)));
      }
    }
  }

  ~Impl() {
    // The consumer goes first, while everything its close can reach (the
    // revoke callback: this object's members and the stage) still exists.
    // Member order makes the same true if this is skipped; being explicit
    // keeps it true under refactoring.
    if (consumer_ != nullptr) {
      if (absl::Status s = consumer_->Close(); !s.ok()) {
        TALLY_LOG(kWarning, kLog, "closing the consumer: ", s.ToString());
      }
      consumer_.reset();
    }
  }

  absl::Status Init() {
    kafka::ClientFactory& clients =
        options_.clients != nullptr ? *options_.clients : kafka::LibRdKafkaClients();
    auto producer = clients.CreateProducer(
        options_.producer_properties, options_.exactly_once ? options_.transactional_id : "",
        [this](const kafka::DeliveryReport& report) { OnDelivery(report); });
    if (!producer.ok()) {
      return absl::Status(producer.status().code(),
                          absl::StrCat("creating the producer: ", producer.status().message()));
    }
    producer_ = std::move(*producer);
    // Attribution needs co-partitioned inputs: partition p of clicks and
    // partition p of conversions hold the same keys. Refuse to run otherwise,
    // rather than silently never joining.
    auto clicks_partitions = producer_->PartitionCount(options_.topics.clicks, absl::Seconds(30));
    if (!clicks_partitions.ok()) return clicks_partitions.status();
    auto conversions_partitions =
        producer_->PartitionCount(options_.topics.conversions, absl::Seconds(30));
    if (!conversions_partitions.ok()) return conversions_partitions.status();
    if (*clicks_partitions != *conversions_partitions) {
      return absl::FailedPreconditionError(absl::StrCat(
          "input topics are not co-partitioned: '", options_.topics.clicks, "' has ",
          *clicks_partitions, " partitions, '", options_.topics.conversions, "' has ",
          *conversions_partitions,
          "; clicks and conversions must have the same partition count and the same key"));
    }
    stage_->SetInputPartitionCount(*clicks_partitions);
    if (!options_.changelog_topic.empty()) {
      if (absl::Status s = EnsureChangelogTopic(*clicks_partitions); !s.ok()) return s;
    }
    auto consumer = clients.CreateConsumer(options_.consumer_properties, this);
    if (!consumer.ok()) {
      return absl::Status(consumer.status().code(),
                          absl::StrCat("creating the consumer: ", consumer.status().message()));
    }
    consumer_ = std::move(*consumer);
    return consumer_->Subscribe({options_.topics.clicks, options_.topics.conversions});
  }

  absl::Status Run() {
    std::vector<std::unique_ptr<kafka::Message>> batch;
    batch.reserve(options_.batch_max_messages);
    absl::Time idle_since = absl::InfiniteFuture();
    while (!stop_.load(std::memory_order_acquire)) {
      Heartbeat();
      batch.clear();
      revoked_in_poll_.clear();
      RetryBlockedCommit();
      if (absl::Status s = ActivateRestoredTasks(); !s.ok()) return Fail(s);
      absl::Status polled =
          consumer_->Poll(options_.batch_max_messages, options_.batch_max_time, &batch);
      if (!polled.ok()) {
        // The consumer returns only kFatal and kFenced errors (it retries
        // the rest itself); both mean this client is done.
        CountKafkaError("consume", polled);
        return Fail(polled);
      }
      if (!revoked_in_poll_.empty()) {
        if (absl::Status s = DropRevoked(&batch); !s.ok()) return Fail(s);
      }
      if (absl::Status s = HoldBackHalfTasks(&batch); !s.ok()) return Fail(s);
      RefreshLag();
      if (batch.empty()) {
        ProbeBroker();
      } else {
        last_broker_contact_ = absl::Now();
      }
      UpdateReadiness();
      if (absl::Status s = CheckChangelogConfig(/*wait=*/false); !s.ok()) return Fail(s);
      if (batch.empty()) {
        // Paused partitions do not count for AllAssignedAtEof (half tasks
        // wait for a partner that may never come); a task that restores
        // has input still to read.
        if (options_.stop_when_idle > absl::ZeroDuration() && !consumer_->Assignment().empty() &&
            stage_->RestoringTasks() == 0 && consumer_->AllAssignedAtEof()) {
          const absl::Time now = absl::Now();
          if (idle_since == absl::InfiniteFuture()) idle_since = now;
          if (now - idle_since >= options_.stop_when_idle) {
            TALLY_LOG(kInfo, kLog, "all assigned partitions idle at end of log for ",
                      absl::FormatDuration(options_.stop_when_idle), "; stopping");
            break;
          }
        } else {
          idle_since = absl::InfiniteFuture();
        }
        continue;
      }
      idle_since = absl::InfiniteFuture();
      if (absl::Status s = CheckChangelogConfig(/*wait=*/true); !s.ok()) return Fail(s);
      absl::Status processed = ProcessBatch(batch);
      if (processed.ok()) continue;
      metrics_.failures.Increment();
      if (!Replayable(processed)) return Fail(processed);
      if (absl::Status s = Replay(batch, processed); !s.ok()) return Fail(s);
    }
    return Shutdown();
  }

  void Stop() { stop_.store(true, std::memory_order_release); }

  ProcessorSummary summary() const {
    absl::MutexLock lock(&summary_mu_);
    return summary_;
  }

  // ChangelogSink.
  absl::Status Record(int32_t partition, std::string_view key, const std::string* value) override {
    absl::Status s =
        value == nullptr
            ? producer_->ProduceTombstone(options_.changelog_topic, partition, key, kChangelogTag)
            : producer_->Produce(options_.changelog_topic, partition, key, *value, kChangelogTag);
    if (!s.ok()) CountKafkaError("produce", s);
    return s.ok() ? s : WithContext(s, "writing the changelog: ");
  }
  absl::Status Marker(int32_t partition) override {
    marker_next_.erase(partition);
    absl::Status s =
        producer_->Produce(options_.changelog_topic, partition, kMarkerKey, kMarkerValue,
                           kMarkerTag | static_cast<uint64_t>(partition));
    if (!s.ok()) CountKafkaError("produce", s);
    return s.ok() ? s : WithContext(s, "writing a changelog marker: ");
  }
  std::optional<int64_t> MarkerNext(int32_t partition) const override {
    auto it = marker_next_.find(partition);
    if (it == marker_next_.end()) return std::nullopt;
    return it->second;
  }

  // Outputs.
  // Every output carries produced_at (contract v1.1): processing time, for
  // consumers measuring their lag; never part of what the record means.
  void Commission(const tally::Commission& commission) override {
    tally::Commission produced = commission;
    produced.produced_at_ms = absl::ToUnixMillis(absl::Now());
    encoder_.Encode(produced, &scratch_);
    ProduceOrRemember(options_.topics.commissions, commission.commission_id, kCommissionSchema,
                      commission.conversion_time_ms);
    metrics_.out_commissions->Increment();
    metrics_
        .commissions_by[static_cast<size_t>(commission.status)]
                       [static_cast<size_t>(commission.model)]
        ->Increment();
    const int64_t minor = commission.payout.minor;
    metrics_.CommissionValue(options_.metric_currencies, commission)
        .Increment(static_cast<double>(minor < 0 ? -minor : minor));
    ObserveEventLatency(*metrics_.latency_commissions, commission.conversion_time_ms);
    ++pending_summary_.commissions_out;
  }

  void Reject(const EventSource& source, RejectReason reason, std::string_view detail) override {
    RejectedEvent rejected = BuildRejectedEvent(
        {source.topic, source.partition, source.offset, source.key, source.value}, reason, detail,
        options_.rejected_limits, absl::ToUnixMillis(absl::Now()));
    // Decided and produced in the same call: one clock reading for both.
    rejected.produced_at_ms = rejected.rejected_at_ms;
    encoder_.Encode(rejected, &scratch_);
    // Keyed by the original key (its bounded prefix when longer, so that the
    // record always fits; schemas/README.md): a rejected event lands beside
    // its siblings' partition, and re-processing tools can re-key nothing.
    // A rejected message often has no valid event time: its record is
    // stamped with the time of the rejection.
    ProduceOrRemember(options_.topics.rejected, rejected.original_key, kRejectedSchema,
                      rejected.rejected_at_ms);
    metrics_.rejected_by_reason[static_cast<size_t>(reason)]->Increment();
    metrics_.out_rejected->Increment();
    ++pending_summary_.rejected;
    ++pending_summary_.rejected_by_reason[std::string(RejectReasonName(reason))];
    TALLY_LOG(kDebug, kLog, "rejected ", source.topic, "/", source.partition, "@", source.offset,
              ": ", RejectReasonName(reason), ": ", detail);
  }

  void Unattributed(const UnattributedConversion& unattributed) override {
    UnattributedConversion produced = unattributed;
    produced.produced_at_ms = absl::ToUnixMillis(absl::Now());
    encoder_.Encode(produced, &scratch_);
    const Conversion& c = unattributed.conversion;
    const std::string& key =
        options_.attribution_key == AttributionKey::kUserId ? c.user_id : c.click_id;
    ProduceOrRemember(options_.topics.unattributed, key, kUnattributedSchema, c.event_time_ms);
    metrics_.out_unattributed->Increment();
    metrics_.unattributed_by_reason[static_cast<size_t>(unattributed.reason)]->Increment();
    ObserveEventLatency(*metrics_.latency_unattributed, c.event_time_ms);
    ++pending_summary_.unattributed_out;
  }

  // Event time to now; an event time ahead of this clock counts as 0.
  static void ObserveEventLatency(prometheus::Histogram& histogram, TimestampMs event_time_ms) {
    const int64_t latency_ms = absl::ToUnixMillis(absl::Now()) - event_time_ms;
    histogram.Observe(latency_ms > 0 ? static_cast<double>(latency_ms) / 1000.0 : 0.0);
  }

  void Retained(const EventSource&) override {
    metrics_.retained.Increment();
    ++pending_summary_.retained;
  }

  // RebalanceListener: called inside consumer_->Poll() (or Close()), between
  // batches. Only whole tasks reach the stage; see HoldBackHalfTasks.
  void OnAssigned(const std::vector<kafka::TopicPartition>& partitions) override {
    metrics_.rebalances.Increment();
    joined_ = true;
    std::set<int32_t> touched;
    for (const auto& tp : partitions) {
      assigned_.insert(tp);
      touched.insert(tp.partition);
    }
    std::vector<int32_t> whole;
    for (int32_t p : touched) {
      if (IsWhole(p) && !tasks_.contains(p)) whole.push_back(p);
    }
    TALLY_LOG(kInfo, kLog, "assigned ", partitions.size(), " partitions; ", whole.size(),
              " new tasks");
    for (int32_t p : whole) {
      tasks_.insert(p);
      // A half that waited for this partner resumes; so does a partition
      // paused before a revocation and assigned again (librdkafka may keep
      // its pause across an eager reassignment).
      for (const kafka::TopicPartition& tp : Halves(p)) {
        paused_.erase(tp);
        to_resume_.push_back(tp);
      }
    }
    if (!whole.empty()) stage_->OnPartitionsAssigned(whole);
    // Tasks that restore are not paused here: librdkafka ignores the fetch
    // start of an assign() followed at once by a pause() (the pause's
    // version barrier makes it outdated; librdkafka issues #2190, #5591),
    // and such a partition never fetches, even after a resume: a run hung
    // with one input partition never read. Their first fetched messages
    // are held back (a synchronous seek, so the fetch has started) and
    // only then paused (HoldBackHalfTasks), until ActivateRestoredTasks.
    ReviewHalfTasks();
  }

  void OnRevoked(const std::vector<kafka::TopicPartition>& partitions) override {
    if (commit_blocked_) {
      // The last chance to commit before another member resumes from the
      // committed offsets (and would repeat the outputs). Real Kafka takes
      // it while the generation is current; the mock broker answers
      // REBALANCE_IN_PROGRESS (docs/design.md §9.4).
      if (CommitUncommitted("revocation").ok()) {
        TALLY_LOG(kInfo, kLog, "offsets committed in the revocation");
      } else {
        TALLY_LOG(kWarning, kLog,
                  "partitions revoked with uncommitted offsets: ", DescribeUncommitted(),
                  "; their new owner repeats the outputs of that range (identical copies)");
      }
    }
    std::set<int32_t> touched;
    for (const auto& tp : partitions) {
      revoked_in_poll_.insert({tp.topic, tp.partition});
      assigned_.erase(tp);
      paused_.erase(tp);
      restore_paused_.erase(tp);
      pending_seeks_.erase(tp);
      touched.insert(tp.partition);
    }
    std::vector<int32_t> closed;
    for (int32_t p : touched) {
      if (tasks_.erase(p) > 0) closed.push_back(p);
    }
    if (assigned_.empty()) joined_ = false;  // an eager rebalance is under way
    if (commit_blocked_) {
      std::erase_if(uncommitted_, [this](const auto& e) { return !assigned_.contains(e.first); });
      std::erase_if(commit_paused_, [this](const auto& tp) { return !assigned_.contains(tp); });
      if (uncommitted_.empty()) Unblock();
    }
    TALLY_LOG(kInfo, kLog, "revoked ", partitions.size(), " partitions; ", closed.size(),
              " tasks closed");
    if (!closed.empty()) stage_->OnPartitionsRevoked(closed);
    ReviewHalfTasks();
  }

 private:
  // On the producing thread (Produce/Poll/Flush/CommitTransaction).
  void OnDelivery(const kafka::DeliveryReport& report) {
    if ((report.tag & kMarkerTag) != 0 && report.error == 0) {
      marker_next_[static_cast<int32_t>(report.tag & ~kMarkerTag)] = report.offset + 1;
    }
  }

  // The changelog must have one partition per task (partition p holds task
  // p's state) and be compacted; a real cluster gets it created here, as
  // Kafka Streams creates its internal topics.
  absl::Status EnsureChangelogTopic(int32_t partitions) {
    const std::string& topic = options_.changelog_topic;
    constexpr absl::Duration kAdminTimeout = absl::Seconds(30);
    auto found = producer_->FindTopic(topic, kAdminTimeout);
    if (!found.ok()) return WithContext(found.status(), "looking up the changelog topic: ");
    if (!found->has_value()) {
      TALLY_LOG(kInfo, kLog, "creating the changelog topic ", topic, " (", partitions,
                " partitions, compacted)");
      absl::Status s = producer_->CreateTopic(topic, partitions, options_.changelog_replication,
                                              options_.changelog_topic_config, kAdminTimeout);
      if (!s.ok()) {
        return absl::FailedPreconditionError(
            absl::StrCat("topics.changelog: '", topic, "' does not exist and creating it failed (",
                         s.message(), "); create it with ", partitions,
                         " partitions and cleanup.policy=compact (docs/operations.md)"));
      }
      for (int i = 0; i < 30; ++i) {
        found = producer_->FindTopic(topic, kAdminTimeout);
        if (found.ok() && found->has_value()) break;
        absl::SleepFor(absl::Seconds(1));
      }
      if (!found.ok() || !found->has_value()) {
        return absl::UnavailableError(
            absl::StrCat("topics.changelog: '", topic, "' was created but is not visible"));
      }
    }
    if (**found != partitions) {
      return absl::FailedPreconditionError(absl::StrCat(
          "topics.changelog: '", topic, "' has ", **found, " partitions, the input topics ",
          partitions, "; a changelog partition holds one task's state, so they must be equal"));
    }
    // The policy check runs beside the group join (it answers in
    // milliseconds on a cluster, but a broker without the Admin API, the
    // mock, lets it time out: that must not delay start-up). Run() acts on
    // the answer before the first batch commits.
    kafka::Producer* producer = producer_.get();
    changelog_config_ = std::async(std::launch::async, [producer, topic] {
      return producer->TopicConfig(topic, {"cleanup.policy"}, absl::Seconds(5));
    });
    return absl::OkStatus();
  }

  // OK while the answer is outstanding; `wait` blocks for it (before the
  // first commit: nothing is written to a changelog that deletes state).
  absl::Status CheckChangelogConfig(bool wait) {
    if (!changelog_config_.valid()) return absl::OkStatus();
    if (!wait && changelog_config_.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
      return absl::OkStatus();
    }
    const std::string& topic = options_.changelog_topic;
    absl::StatusOr<std::map<std::string, std::string>> config = changelog_config_.get();
    if (!config.ok()) {
      TALLY_LOG(kWarning, kLog, "could not check the configuration of the changelog topic ", topic,
                " (", config.status().message(), "); it must have cleanup.policy=compact");
    } else if (auto it = config->find("cleanup.policy");
               it != config->end() && it->second.find("compact") == std::string::npos) {
      return absl::FailedPreconditionError(
          absl::StrCat("topics.changelog: '", topic, "' has cleanup.policy=", it->second,
                       "; it must be compact (deleting old segments would lose state)"));
    }
    return absl::OkStatus();
  }

  // Tasks whose restore finished: their input resumes at the positions
  // their state holds (under exactly-once on a broker that honours
  // send_offsets_to_transaction these equal the committed offsets; where
  // offsets lag, e.g. the mock broker, the seek skips the covered range
  // instead of reading through it).
  absl::Status ActivateRestoredTasks() {
    std::vector<int32_t> ready;
    std::vector<PipelineStage::Position> positions = stage_->TakeReadyTasks(&ready);
    metrics_.restoring.Set(stage_->RestoringTasks());
    if (ready.empty() && pending_seeks_.empty()) return absl::OkStatus();
    std::vector<kafka::TopicPartition> resume;
    for (int32_t p : ready) {
      for (const kafka::TopicPartition& tp : Halves(p)) {
        if (restore_paused_.erase(tp) > 0 && assigned_.contains(tp) && !paused_.contains(tp)) {
          resume.push_back(tp);
        }
      }
    }
    for (const PipelineStage::Position& pos : positions) {
      kafka::TopicPartition tp{pos.topic, pos.partition};
      if (assigned_.contains(tp)) pending_seeks_[tp] = pos.next_offset;
    }
    if (!resume.empty()) {
      if (absl::Status s = consumer_->Resume(resume); !s.ok()) {
        return CountedKafkaError("resume", s);
      }
    }
    if (pending_seeks_.empty()) return absl::OkStatus();
    std::vector<kafka::TopicPartitionOffset> seeks;
    for (const auto& [tp, offset] : pending_seeks_) {
      if (assigned_.contains(tp)) seeks.push_back({tp.topic, tp.partition, offset});
    }
    absl::Status s = consumer_->Seek(seeks);
    if (s.ok()) {
      pending_seeks_.clear();
    } else {
      // Not fetching yet: retried next iteration. Messages fetched in the
      // meantime lie below the positions and are skipped as covered.
      CountKafkaError("seek", s);
    }
    return absl::OkStatus();
  }

  std::string DescribeUncommitted() const {
    std::string out;
    for (const auto& [tp, offset] : uncommitted_) {
      absl::StrAppend(&out, out.empty() ? "" : ", ", tp.topic, "[", tp.partition, "]@", offset);
    }
    return out;
  }

  std::array<kafka::TopicPartition, 2> Halves(int32_t p) const {
    return {kafka::TopicPartition{options_.topics.clicks, p},
            kafka::TopicPartition{options_.topics.conversions, p}};
  }
  bool IsWhole(int32_t p) const {
    const auto halves = Halves(p);
    return assigned_.contains(halves[0]) && assigned_.contains(halves[1]);
  }

  // Every assigned partition without its partner is paused (after the
  // callback returns: librdkafka pauses only assigned partitions) and
  // counted. Kafka never assigns half a task with the range assignor and
  // co-partitioned topics; this guards against another assignor, members
  // subscribed to different topics, or a partition count changed at run
  // time. Both rebalance callbacks end here, so the assignment gauges are
  // set here too.
  void ReviewHalfTasks() {
    metrics_.assigned.Set(static_cast<double>(assigned_.size()));
    int64_t halves = 0;
    for (const kafka::TopicPartition& tp : assigned_) {
      if (IsWhole(tp.partition)) continue;
      ++halves;
      if (paused_.insert(tp).second) {
        to_pause_.push_back(tp);
        TALLY_LOG(kWarning, kLog, "half task: ", tp.topic, "[", tp.partition,
                  "] is assigned without its co-partitioned partner; paused until it arrives "
                  "(check partition.assignment.strategy and that every instance subscribes to "
                  "both inputs)");
      }
    }
    half_tasks_ = halves;
    metrics_.half_tasks.Set(static_cast<double>(halves));
  }

  // Applies the pauses/resumes decided in the rebalance callbacks, and
  // holds back messages of partitions that are not whole tasks: they were
  // fetched before the pause took effect, so their partition is sought back
  // to the first of them and they are consumed again once the task is whole.
  absl::Status HoldBackHalfTasks(std::vector<std::unique_ptr<kafka::Message>>* batch) {
    if (!to_pause_.empty()) {
      absl::Status s = consumer_->Pause(to_pause_);
      if (!s.ok()) return CountedKafkaError("pause", s);
      to_pause_.clear();
    }
    if (!to_resume_.empty()) {
      absl::Status s = consumer_->Resume(to_resume_);
      if (!s.ok()) return CountedKafkaError("resume", s);
      to_resume_.clear();
    }
    std::map<kafka::TopicPartition, int64_t> held;
    std::erase_if(*batch, [&](const std::unique_ptr<kafka::Message>& m) {
      if (!commit_blocked_ && tasks_.contains(m->partition()) &&
          stage_->TaskReady(m->partition())) {
        return false;
      }
      kafka::TopicPartition tp{std::string(m->topic()), m->partition()};
      auto [it, inserted] = held.try_emplace(tp, m->offset());
      if (!inserted) it->second = std::min(it->second, m->offset());
      return true;
    });
    if (held.empty()) return absl::OkStatus();
    std::vector<kafka::TopicPartitionOffset> seeks;
    for (const auto& [tp, offset] : held) seeks.push_back({tp.topic, tp.partition, offset});
    if (absl::Status s = SeekBack(seeks); !s.ok()) return s;
    // A task that restores: its input waits, paused (the seek above was
    // synchronous, so this pause cannot outdate a pending fetch start),
    // until ActivateRestoredTasks resumes it.
    std::vector<kafka::TopicPartition> pause;
    for (const auto& [tp, offset] : held) {
      if (tasks_.contains(tp.partition) && !stage_->TaskReady(tp.partition) &&
          !paused_.contains(tp) && restore_paused_.insert(tp).second) {
        pause.push_back(tp);
      }
    }
    if (pause.empty()) return absl::OkStatus();
    absl::Status s = consumer_->Pause(pause);
    return s.ok() ? s : CountedKafkaError("pause", s);
  }

  void BlockOnCommit(const std::vector<kafka::TopicPartitionOffset>& commits) {
    for (const kafka::TopicPartitionOffset& c : commits) {
      int64_t& offset = uncommitted_[kafka::TopicPartition{c.topic, c.partition}];
      offset = std::max(offset, c.offset);
    }
    commit_blocked_ = true;
    std::vector<kafka::TopicPartition> pause;
    for (const kafka::TopicPartition& tp : assigned_) {
      if (!paused_.contains(tp) && commit_paused_.insert(tp).second) pause.push_back(tp);
    }
    if (absl::Status s = consumer_->Pause(pause); !s.ok()) CountKafkaError("pause", s);
  }

  // Commits what a failed commit left, for the partitions still assigned.
  // `where` names the caller for the log.
  absl::Status CommitUncommitted(std::string_view where) {
    std::vector<kafka::TopicPartitionOffset> commits;
    for (const auto& [tp, offset] : uncommitted_) {
      if (assigned_.contains(tp)) commits.push_back({tp.topic, tp.partition, offset});
    }
    absl::Status s = consumer_->Commit(commits);
    if (!s.ok()) {
      CountKafkaError("commit", s);
      TALLY_LOG(kDebug, kLog, "offset commit retry (", where, "): ", s.message());
    }
    return s;
  }

  void RetryBlockedCommit() {
    if (!commit_blocked_) return;
    if (!CommitUncommitted("retry").ok()) return;
    TALLY_LOG(kInfo, kLog, "offset commit went through; resuming input");
    metrics_.last_commit.Set(absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
    Unblock();
  }

  void Unblock() {
    uncommitted_.clear();
    commit_blocked_ = false;
    std::vector<kafka::TopicPartition> resume;
    for (const kafka::TopicPartition& tp : commit_paused_) {
      if (assigned_.contains(tp) && !paused_.contains(tp)) resume.push_back(tp);
    }
    commit_paused_.clear();
    if (absl::Status s = consumer_->Resume(resume); !s.ok()) CountKafkaError("resume", s);
  }

  // Messages fetched before a revocation inside the same Poll() belong to a
  // partition we may no longer own: the new owner reads them from the last
  // committed offset, so processing them here would only duplicate work.
  // A partition revoked and assigned again inside the same Poll() (an eager
  // rebalance that left it here) may also have delivered messages fetched
  // after the new assignment; they are dropped with the others, so the
  // partition is sought back to the first dropped offset, or they would be
  // skipped for good (the state covers whatever was applied already).
  absl::Status DropRevoked(std::vector<std::unique_ptr<kafka::Message>>* batch) {
    std::map<kafka::TopicPartition, int64_t> reassigned;
    std::erase_if(*batch, [&](const std::unique_ptr<kafka::Message>& m) {
      if (!revoked_in_poll_.contains(std::make_pair(std::string(m->topic()), m->partition()))) {
        return false;
      }
      kafka::TopicPartition tp{std::string(m->topic()), m->partition()};
      if (assigned_.contains(tp)) {
        auto [it, inserted] = reassigned.try_emplace(tp, m->offset());
        if (!inserted) it->second = std::min(it->second, m->offset());
      }
      return true;
    });
    if (reassigned.empty()) return absl::OkStatus();
    std::vector<kafka::TopicPartitionOffset> seeks;
    seeks.reserve(reassigned.size());
    for (const auto& [tp, offset] : reassigned) seeks.push_back({tp.topic, tp.partition, offset});
    return SeekBack(seeks);
  }

  absl::Status ProcessBatch(const std::vector<std::unique_ptr<kafka::Message>>& batch) {
    const absl::Time started = absl::Now();
    if (first_batch_started_ == absl::InfiniteFuture()) first_batch_started_ = started;
    pending_summary_ = ProcessorSummary{};
    produce_error_ = absl::OkStatus();
    if (options_.exactly_once) {
      // Everything the batch produces (outputs, changelog records) and its
      // input offsets commit or abort together.
      if (absl::Status s = producer_->BeginTransaction(); !s.ok()) {
        CountKafkaError("begin_transaction", s);
        return WithContext(s, "beginning a transaction: ");
      }
      txn_open_ = true;
      txn_tasks_.clear();
      for (const auto& message : batch) txn_tasks_.insert(message->partition());
    }
    StageClock clock(metrics_);
    absl::flat_hash_map<std::pair<std::string, int32_t>, int64_t> next_offsets;
    for (const auto& message : batch) {
      EventSource source{message->topic(), message->partition(), message->offset(), message->key(),
                         message->value()};
      next_offsets[{std::string(message->topic()), message->partition()}] = message->offset() + 1;
      if (stage_->AlreadyCovered(source)) continue;
      const InputKind kind =
          message->topic() == options_.topics.clicks ? InputKind::kClick : InputKind::kConversion;
      if (kind == InputKind::kClick) {
        ++pending_summary_.clicks_in;
        auto invalid = click_decoder_.Decode(message->value(), &click_);
        clock.Lap(BatchStage::kDecode);
        if (invalid) {
          Reject(source, invalid->reason, invalid->detail);
        } else {
          ++pending_summary_.valid_clicks;
          stage_->OnClick(click_, source, *this);
        }
      } else {
        ++pending_summary_.conversions_in;
        auto invalid = conversion_decoder_.Decode(message->value(), &conversion_);
        clock.Lap(BatchStage::kDecode);
        if (invalid) {
          Reject(source, invalid->reason, invalid->detail);
        } else {
          ++pending_summary_.valid_conversions;
          stage_->OnConversion(conversion_, source, *this);
        }
      }
      clock.Lap(BatchStage::kPipeline);
      if (!produce_error_.ok()) return produce_error_;
    }

    std::vector<PipelineStage::Position> positions;
    std::vector<kafka::TopicPartitionOffset> commits;
    positions.reserve(next_offsets.size());
    commits.reserve(next_offsets.size());
    for (const auto& [tp, offset] : next_offsets) {
      positions.push_back({tp.first, tp.second, offset});
      commits.push_back({tp.first, tp.second, offset});
    }
    if (absl::Status s = stage_->EndBatch(positions, *this); !s.ok()) return s;
    if (!produce_error_.ok()) return produce_error_;
    clock.Lap(BatchStage::kAdvance);
    const bool changelog = !options_.changelog_topic.empty();
    if (changelog) {
      if (absl::Status s = stage_->WriteChangelog(positions, *this); !s.ok()) return s;
      clock.Lap(BatchStage::kChangelog);
    }
    // Outputs first, state second, offsets last: committing before every
    // output is acknowledged (acks=all) could lose it on a crash.
    if (absl::Status s = FlushOutputs(); !s.ok()) return s;
    if (changelog) {
      // Markers only now: a marker on the changelog means every output and
      // record of its batch is on the broker, whatever the broker does
      // with transactions (the restore relies on it; design §10).
      if (absl::Status s = stage_->WriteMarkers(*this); !s.ok()) return s;
      if (!options_.exactly_once) {
        if (absl::Status s = FlushOutputs(); !s.ok()) return s;
      }
    }
    clock.Lap(BatchStage::kFlush);
    if (options_.exactly_once) {
      const absl::Time txn_started = absl::Now();
      absl::Status s = WaitForKafka("send_offsets", [&](absl::Duration slice) {
        return producer_->SendOffsetsToTransaction(commits, *consumer_, slice);
      });
      if (!s.ok()) {
        CountKafkaError("send_offsets", s);
        return WithContext(s, "adding input offsets to the transaction: ");
      }
      s = WaitForKafka("commit_transaction",
                       [&](absl::Duration slice) { return producer_->CommitTransaction(slice); });
      if (!s.ok()) {
        CountKafkaError("commit_transaction", s);
        return WithContext(s, "committing the transaction: ");
      }
      txn_open_ = false;
      metrics_.txn_committed->Increment();
      ++pending_summary_.transactions;
      metrics_.txn_seconds.Observe(absl::ToDoubleSeconds(absl::Now() - txn_started));
      clock.Lap(BatchStage::kTransaction);
    }
    const absl::Time state_started = absl::Now();
    if (absl::Status s = stage_->CommitBatch(positions); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("committing state: ", s.message()));
    }
    const double state_seconds = absl::ToDoubleSeconds(absl::Now() - state_started);
    metrics_.state_commit_seconds.Observe(state_seconds);
    pending_summary_.state_commit_seconds = state_seconds;
    clock.Lap(BatchStage::kStateCommit);
    CountInput(batch);
    if (options_.exactly_once) {
      // The offsets were committed with the transaction.
      metrics_.last_commit.Set(absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
    } else if (absl::Status s = consumer_->Commit(commits); !s.ok()) {
      CountKafkaError("commit", s);
      if (kafka::ErrorClassOf(s) == kafka::ErrorClass::kFatal) {
        return WithContext(s, "committing input offsets: ");
      }
      // REBALANCE_IN_PROGRESS, coordinator moves, timeouts, a generation
      // that ended: the state holds these positions durably, so a replay
      // here from the older committed offsets is skipped event by event.
      // But another member that takes the partitions over resumes from the
      // committed offsets and repeats this batch's outputs; so nothing more
      // is processed until the commit goes through (retried every loop
      // iteration) or the partitions are revoked (where it is tried once
      // more: Kafka accepts commits of the current generation until the
      // rebalance completes).
      TALLY_LOG(kWarning, kLog, "offset commit failed (", s.message(),
                "); holding further input until it is committed or the partitions move");
      BlockOnCommit(commits);
    } else {
      metrics_.last_commit.Set(absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
    }
    if (!options_.exactly_once) clock.Lap(BatchStage::kOffsetCommit);
    clock.Observe();
    metrics_.batches.Increment();
    metrics_.batch_seconds.Observe(absl::ToDoubleSeconds(absl::Now() - started));
    MergeSummary(absl::Now());
    return absl::OkStatus();
  }

  // Waits for every output of the batch. While the broker does not answer
  // (flush times out with messages still in flight) it keeps waiting, not
  // ready, consuming nothing; a stop request ends the wait after
  // shutdown_timeout. Any delivery failure fails the batch (replayed).
  absl::Status FlushOutputs() {
    absl::Status s = WaitForKafka("flush", [&](absl::Duration slice) {
      absl::Status flushed = producer_->Flush(slice);
      if (!flushed.ok() && flushed.code() != absl::StatusCode::kDeadlineExceeded) {
        CountKafkaError("flush", flushed);
      }
      return flushed;
    });
    return s.ok() ? s : WithContext(s, "flushing batch outputs: ");
  }

  // Calls `call` in one-second slices while it times out: a flush with
  // messages in flight (kDeadlineExceeded), or a transactional call that
  // timed out (librdkafka's send_offsets_to_transaction and
  // commit_transaction are resumable: called again, they go on where they
  // stopped). Meanwhile the instance is not ready and keeps its liveness
  // heartbeat, so a broker outage shows on /readyz however long one call
  // would block; a stop request ends the wait after shutdown_timeout.
  absl::Status WaitForKafka(std::string_view operation,
                            const std::function<absl::Status(absl::Duration)>& call) {
    constexpr absl::Duration kSlice = absl::Seconds(1);
    absl::Time stop_deadline = absl::InfiniteFuture();
    for (;;) {
      absl::Status s = call(kSlice);
      if (s.ok()) {
        if (awaiting_acks_) {
          awaiting_acks_ = false;
          TALLY_LOG(kInfo, kLog, "Kafka answers again (", operation, ")");
        }
        return s;
      }
      if (!kafka::TimedOut(s)) return s;
      if (!awaiting_acks_) {
        awaiting_acks_ = true;
        CountKafkaError(operation, s);
        TALLY_LOG(kWarning, kLog, "Kafka has not answered yet (", operation, ": ", s.message(),
                  "); waiting for it, consuming nothing");
      }
      Heartbeat();
      UpdateReadiness();
      if (stop_.load(std::memory_order_acquire)) {
        const absl::Time now = absl::Now();
        if (stop_deadline == absl::InfiniteFuture()) {
          stop_deadline = now + options_.shutdown_timeout;
        }
        if (now >= stop_deadline) {
          // Without the Kafka class on purpose: giving up is our decision,
          // so Run() stops (Fail) instead of replaying the batch.
          return absl::Status(s.code(), absl::StrCat("stopping while Kafka does not answer (",
                                                     std::string(operation), "): ", s.message()));
        }
      }
    }
  }

  // A batch that could not be completed: the stage forgets it and its
  // partitions are sought back to the batch's first offsets. Outputs the
  // failed attempt already delivered repeat (same ids): at-least-once.
  absl::Status Replay(const std::vector<std::unique_ptr<kafka::Message>>& batch,
                      const absl::Status& why) {
    metrics_.replays.Increment();
    TALLY_LOG(kWarning, kLog, "batch of ", batch.size(), " messages failed (", why.ToString(),
              "); replaying it after ", absl::FormatDuration(options_.retry_backoff));
    AbortTransaction();
    stage_->AbortBatch();
    std::map<kafka::TopicPartition, int64_t> first;
    for (const auto& m : batch) {
      kafka::TopicPartition tp{std::string(m->topic()), m->partition()};
      auto [it, inserted] = first.try_emplace(tp, m->offset());
      if (!inserted) it->second = std::min(it->second, m->offset());
    }
    std::vector<kafka::TopicPartitionOffset> seeks;
    for (const auto& [tp, offset] : first) {
      if (assigned_.contains(tp)) seeks.push_back({tp.topic, tp.partition, offset});
    }
    if (absl::Status s = SeekBack(seeks); !s.ok()) return s;
    {
      absl::MutexLock lock(&summary_mu_);
      ++summary_.batch_replays;
    }
    Backoff();
    return absl::OkStatus();
  }

  // The batch's transaction (if open) is aborted: on a real cluster its
  // outputs, changelog records and offsets vanish for read_committed
  // readers. An abort that fails leaves the transaction to the broker's
  // timeout or the next init_transactions (which aborts it).
  void AbortTransaction() {
    if (!txn_open_) return;
    txn_open_ = false;
    // Parsed by tally-verify (--allow-revocation-copies): on a broker that
    // honours transactions the aborted records vanish; on one that does not
    // (the dev broker) they stay, and the replay repeats them identically.
    std::string tasks;
    for (int32_t p : txn_tasks_)
      absl::StrAppend(&tasks, tasks.empty() ? "" : ", ", "task[", p, "]");
    TALLY_LOG(kInfo, kLog, "transaction aborted for tasks: ", tasks,
              "; without transaction isolation its records stay visible (identical copies)");
    metrics_.txn_aborted->Increment();
    {
      absl::MutexLock lock(&summary_mu_);
      ++summary_.transaction_aborts;
    }
    // In slices too: an abort during an outage waits for the broker (not
    // ready, heartbeat kept) instead of blocking the loop for
    // transaction_timeout with /readyz still 200.
    absl::Status s = WaitForKafka("abort_transaction", [&](absl::Duration slice) {
      return producer_->AbortTransaction(slice);
    });
    if (!s.ok()) {
      CountKafkaError("abort_transaction", s);
      TALLY_LOG(kWarning, kLog, "aborting the transaction: ", s.ToString());
    }
  }

  // Interruptible: Stop() is seen within one slice.
  void Backoff() {
    const absl::Time until = absl::Now() + options_.retry_backoff;
    while (!stop_.load(std::memory_order_acquire) && absl::Now() < until) {
      producer_->Poll(absl::Milliseconds(50));
      Heartbeat();
    }
  }

  // A seek the next Poll() depends on (a replay, held-back messages):
  // consuming on without it would skip those messages, so a retriable
  // failure is retried after the backoff until it succeeds or Stop() is
  // requested. No rebalance can intervene (they happen inside Poll()).
  absl::Status SeekBack(const std::vector<kafka::TopicPartitionOffset>& seeks) {
    for (;;) {
      absl::Status s = consumer_->Seek(seeks);
      if (s.ok()) return s;
      CountKafkaError("seek", s);
      if (kafka::ErrorClassOf(s) != kafka::ErrorClass::kRetriable ||
          stop_.load(std::memory_order_acquire)) {
        return s;
      }
      TALLY_LOG(kWarning, kLog, "seek failed (", s.message(), "); retrying after ",
                absl::FormatDuration(options_.retry_backoff));
      Backoff();
    }
  }

  // Kafka errors of any class but kFatal end the batch for a replay; other
  // errors (state store I/O, a stage invariant) are not retried.
  static bool Replayable(const absl::Status& status) {
    std::optional<kafka::ErrorClass> error_class = kafka::ErrorClassOf(status);
    if (!error_class.has_value()) return false;
    switch (*error_class) {
      case kafka::ErrorClass::kRetriable:
      case kafka::ErrorClass::kAbortable:
      case kafka::ErrorClass::kPermanent:
        return true;
      case kafka::ErrorClass::kFatal:
      case kafka::ErrorClass::kFenced:
        return false;
    }
    return false;
  }

  void CountKafkaError(std::string_view operation, const absl::Status& status) {
    std::optional<kafka::ErrorClass> error_class = kafka::ErrorClassOf(status);
    const std::string class_name(error_class.has_value() ? kafka::ErrorClassName(*error_class)
                                                         : "fatal");
    KafkaErrorCounter(operation, class_name).Increment();
  }
  prometheus::Counter& KafkaErrorCounter(std::string_view operation,
                                         const std::string& class_name) {
    auto key = std::make_pair(std::string(operation), class_name);
    auto it = kafka_error_counters_.find(key);
    if (it == kafka_error_counters_.end()) {
      prometheus::Counter* counter =
          &metrics_.kafka_errors.Add({{"operation", key.first}, {"class", key.second}});
      it = kafka_error_counters_.emplace(std::move(key), counter).first;
    }
    return *it->second;
  }
  absl::Status CountedKafkaError(std::string_view operation, const absl::Status& status) {
    CountKafkaError(operation, status);
    return status;
  }

  void CountInput(const std::vector<std::unique_ptr<kafka::Message>>& batch) {
    for (const auto& message : batch) {
      const bool click = message->topic() == options_.topics.clicks;
      (click ? metrics_.input_click : metrics_.input_conversion)->Increment();
      (click ? metrics_.input_bytes_click : metrics_.input_bytes_conversion)
          ->Increment(static_cast<double>(message->value().size()));
    }
  }

  void Heartbeat() {
    if (options_.health != nullptr) options_.health->Heartbeat();
  }

  void UpdateReadiness() {
    std::string reason;
    if (!joined_) {
      reason = "not in the consumer group (joining or rebalancing)";
    } else if (!consumer_->BrokersReachable()) {
      reason = "broker unreachable";
    } else if (probe_failed_) {
      reason = "broker unreachable (metadata request failed)";
    } else if (awaiting_acks_) {
      reason = "waiting for Kafka to answer (outputs or the transaction)";
    } else if (commit_blocked_) {
      reason = "input offsets not committed yet (rebalance or coordinator change)";
    } else if (half_tasks_ > 0) {
      reason = absl::StrCat(half_tasks_, " partition(s) assigned without their partner");
    } else if (int restoring = stage_->RestoringTasks(); restoring > 0) {
      reason = absl::StrCat(restoring, " task(s) restoring state from the changelog");
    }
    const bool ready = reason.empty();
    metrics_.ready.Set(ready ? 1 : 0);
    if (options_.health != nullptr) options_.health->SetReady(ready, std::move(reason));
  }

  // While no input arrives nothing talks to the broker on this thread, and
  // the clients' connection-error events are not always raised (the
  // readiness scenario saw an 8 s outage pass unnoticed): after 2 s without
  // a message, one metadata request (bounded, 500 ms) says whether the
  // cluster answers.
  void ProbeBroker() {
    const absl::Time now = absl::Now();
    if (now - last_broker_contact_ < absl::Seconds(2) || now - last_probe_ < absl::Seconds(2)) {
      return;
    }
    last_probe_ = now;
    absl::StatusOr<int32_t> n =
        producer_->PartitionCount(options_.topics.clicks, absl::Milliseconds(500));
    probe_failed_ = !n.ok();
    if (n.ok()) last_broker_contact_ = absl::Now();
  }

  void RefreshLag() {
    const absl::Time now = absl::Now();
    if (now - last_lag_refresh_ < absl::Seconds(5)) return;
    last_lag_refresh_ = now;
    std::set<kafka::TopicPartition> seen;
    for (const kafka::PartitionLag& l : consumer_->Lag()) {
      kafka::TopicPartition tp{l.topic, l.partition};
      auto it = lag_gauges_.find(tp);
      if (it == lag_gauges_.end()) {
        prometheus::Gauge* gauge =
            &metrics_.lag.Add({{"topic", l.topic}, {"partition", absl::StrCat(l.partition)}});
        it = lag_gauges_.emplace(tp, gauge).first;
      }
      if (l.lag >= 0) it->second->Set(static_cast<double>(l.lag));
      seen.insert(tp);
    }
    RefreshClientStats();
    // Partitions that moved away stop being exported here (their new owner
    // exports them).
    for (auto it = lag_gauges_.begin(); it != lag_gauges_.end();) {
      if (seen.contains(it->first) || assigned_.contains(it->first)) {
        ++it;
        continue;
      }
      metrics_.lag.Remove(it->second);
      it = lag_gauges_.erase(it);
    }
  }

  // Broker round trips and request queues of the consumer's connections,
  // and the clients' message queues (same refresh as the lag). One child
  // per broker: the cluster's size bounds them.
  void RefreshClientStats() {
    const kafka::ConsumerStats stats = consumer_->Stats();
    for (const kafka::BrokerStats& b : stats.brokers) {
      auto it = broker_gauges_.find(b.node_id);
      if (it == broker_gauges_.end()) {
        const prometheus::Labels labels{{"broker", absl::StrCat(b.node_id)}};
        it = broker_gauges_
                 .emplace(b.node_id, BrokerGauges{&metrics_.broker_rtt_avg.Add(labels),
                                                  &metrics_.broker_rtt_p99.Add(labels),
                                                  &metrics_.broker_in_flight.Add(labels),
                                                  &metrics_.broker_waiting.Add(labels)})
                 .first;
      }
      const BrokerGauges& g = it->second;
      if (b.rtt_avg_us >= 0) g.rtt_avg->Set(static_cast<double>(b.rtt_avg_us) / 1e6);
      if (b.rtt_p99_us >= 0) g.rtt_p99->Set(static_cast<double>(b.rtt_p99_us) / 1e6);
      g.in_flight->Set(static_cast<double>(b.requests_in_flight));
      g.waiting->Set(static_cast<double>(b.requests_waiting));
    }
    metrics_.fetch_queue.Set(static_cast<double>(stats.fetch_queue_messages));
    if (const int64_t queued = producer_->queued(); queued >= 0) {
      metrics_.producer_queue.Set(static_cast<double>(queued));
    }
  }

  void MergeSummary(absl::Time committed) {
    absl::MutexLock lock(&summary_mu_);
    summary_.busy_seconds = absl::ToDoubleSeconds(committed - first_batch_started_);
    summary_.clicks_in += pending_summary_.clicks_in;
    summary_.conversions_in += pending_summary_.conversions_in;
    summary_.valid_clicks += pending_summary_.valid_clicks;
    summary_.valid_conversions += pending_summary_.valid_conversions;
    summary_.rejected += pending_summary_.rejected;
    for (const auto& [reason, count] : pending_summary_.rejected_by_reason) {
      summary_.rejected_by_reason[reason] += count;
    }
    summary_.retained += pending_summary_.retained;
    summary_.commissions_out += pending_summary_.commissions_out;
    summary_.unattributed_out += pending_summary_.unattributed_out;
    summary_.batches += 1;
    summary_.transactions += pending_summary_.transactions;
    summary_.state_commit_seconds += pending_summary_.state_commit_seconds;
  }

  // Produce() polls and retries on a full queue and only fails for errors
  // that retrying cannot fix; the first such error fails the batch (its
  // state and offsets are never committed, so it is replayed).
  //
  // Every output record (contract v1.1, schemas/README.md) carries headers
  // naming its schema, so a consumer can pick a decoder without knowing
  // the topic's configuration, and the event time it is about as its Kafka
  // timestamp, so that time-based consumers (and retention) follow the
  // business time rather than when Tally happened to process it.
  void ProduceOrRemember(const std::string& topic, std::string_view key, std::string_view schema,
                         int64_t event_time_ms) {
    if (!produce_error_.ok()) return;
    const kafka::Header headers[] = {
        {"tally.schema", schema},
        {"tally.schema_version", kOutputSchemaVersion},
        {"content-type", WireFormatContentType(options_.output_format)}};
    const kafka::RecordMeta meta{event_time_ms, headers};
    absl::Status s = producer_->ProduceRecord(topic, -1, key, scratch_, meta);
    if (!s.ok()) {
      CountKafkaError("produce", s);
      produce_error_ = WithContext(s, absl::StrCat("producing to '", topic, "': "));
    }
  }

  absl::Status Fail(const absl::Status& status) {
    TALLY_LOG(kError, kLog, "stopping without committing the current batch: ", status.ToString());
    if (options_.health != nullptr) options_.health->SetReady(false, "stopping on an error");
    metrics_.ready.Set(0);
    AbortTransaction();
    // Leave the group so partitions move to a healthy instance promptly; the
    // uncommitted batch is replayed there.
    if (absl::Status s = consumer_->Close(); !s.ok()) {
      TALLY_LOG(kWarning, kLog, "closing the consumer: ", s.ToString());
    }
    return status;
  }

  absl::Status Shutdown() {
    TALLY_LOG(kInfo, kLog, "shutting down: flushing outputs and leaving the group");
    if (options_.health != nullptr) options_.health->SetReady(false, "shutting down");
    metrics_.ready.Set(0);
    // Every committed batch was flushed already; this only covers outputs
    // of nothing (kept as a bound). A static member (group.instance.id)
    // sends no LeaveGroup on close (KIP-345): its partitions move only when
    // its session times out, so a restart within it moves nothing, and a
    // scale-down leaves them unowned until then.
    absl::Status flushed = producer_->Flush(options_.shutdown_timeout);
    if (!flushed.ok()) TALLY_LOG(kWarning, kLog, "final flush: ", flushed.ToString());
    absl::Status closed = consumer_->Close();
    return closed.ok() ? flushed : closed;
  }

  const ProcessorOptions options_;
  PipelineStage* const stage_;
  LoopMetrics metrics_;
  std::atomic<bool> stop_{false};

  // Everything below is owned by the Run() thread; the rebalance callbacks
  // (run inside the consumer's Poll/Close on that thread) use it.
  EventDecoder click_decoder_;
  EventDecoder conversion_decoder_;
  EventEncoder encoder_;
  Click click_;
  Conversion conversion_;
  std::string scratch_;
  absl::Status produce_error_;
  absl::flat_hash_set<std::pair<std::string, int32_t>> revoked_in_poll_;
  std::set<kafka::TopicPartition> assigned_;                // both input topics
  std::set<int32_t> tasks_;                                 // whole tasks handed to the stage
  std::set<kafka::TopicPartition> paused_;                  // half tasks
  std::set<kafka::TopicPartition> restore_paused_;          // halves of tasks that restore
  std::map<kafka::TopicPartition, int64_t> pending_seeks_;  // to restored positions
  std::map<int32_t, int64_t> marker_next_;  // changelog offset after each task's marker
  bool txn_open_ = false;
  std::set<int32_t> txn_tasks_;  // the input partitions of the open transaction
  absl::Time last_broker_contact_ = absl::Now();
  absl::Time last_probe_ = absl::InfinitePast();
  bool probe_failed_ = false;
  std::vector<kafka::TopicPartition> to_pause_;
  std::vector<kafka::TopicPartition> to_resume_;
  int64_t half_tasks_ = 0;
  // A failed offset commit holds the input (see ProcessBatch): what is
  // still to commit, and the partitions paused for it.
  bool commit_blocked_ = false;
  std::map<kafka::TopicPartition, int64_t> uncommitted_;
  std::set<kafka::TopicPartition> commit_paused_;
  bool joined_ = false;
  bool awaiting_acks_ = false;
  std::map<std::pair<std::string, std::string>, prometheus::Counter*> kafka_error_counters_;
  std::map<kafka::TopicPartition, prometheus::Gauge*> lag_gauges_;
  struct BrokerGauges {
    prometheus::Gauge* rtt_avg;
    prometheus::Gauge* rtt_p99;
    prometheus::Gauge* in_flight;
    prometheus::Gauge* waiting;
  };
  std::map<int32_t, BrokerGauges> broker_gauges_;
  absl::Time last_lag_refresh_ = absl::InfinitePast();
  absl::Time first_batch_started_ = absl::InfiniteFuture();
  ProcessorSummary pending_summary_;

  mutable absl::Mutex summary_mu_;
  ProcessorSummary summary_ ABSL_GUARDED_BY(summary_mu_);

  // Declared last, destroyed first: the producer outlives the consumer and
  // the consumer outlives nothing its callbacks touch (its close revokes the
  // tasks through OnRevoked, which uses the members above and the stage).
  std::unique_ptr<kafka::Producer> producer_;
  std::unique_ptr<kafka::Consumer> consumer_;
  // Uses producer_; destroyed first (its destructor waits for the answer).
  std::future<absl::StatusOr<std::map<std::string, std::string>>> changelog_config_;
};

absl::StatusOr<std::unique_ptr<Processor>> Processor::Create(ProcessorOptions options,
                                                             PipelineStage* stage,
                                                             prometheus::Registry& registry) {
  auto impl = std::make_unique<Impl>(std::move(options), stage, registry);
  if (absl::Status s = impl->Init(); !s.ok()) return s;
  return std::unique_ptr<Processor>(new Processor(std::move(impl)));
}

Processor::Processor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Processor::~Processor() = default;
absl::Status Processor::Run() { return impl_->Run(); }
void Processor::Stop() { impl_->Stop(); }
ProcessorSummary Processor::summary() const { return impl_->summary(); }

}  // namespace tally
