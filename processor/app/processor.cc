#include "processor/app/processor.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
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

// All metrics of the processing loop, registered once; labelled children are
// created up front and kept (a child lookup costs microseconds, an increment
// nanoseconds).
struct LoopMetrics {
  explicit LoopMetrics(prometheus::Registry& registry)
      : input(prometheus::BuildCounter()
                  .Name("tally_input_messages_total")
                  .Help("Messages consumed from the input topics, by kind")
                  .Register(registry)),
        input_bytes(prometheus::BuildCounter()
                        .Name("tally_input_bytes_total")
                        .Help("Payload bytes consumed from the input topics, by kind")
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
                     .Help("Batches that could not be flushed or committed (process exits)")
                     .Register(registry)
                     .Add({})),
        input_click(&input.Add({{"kind", "click"}})),
        input_conversion(&input.Add({{"kind", "conversion"}})),
        input_bytes_click(&input_bytes.Add({{"kind", "click"}})),
        input_bytes_conversion(&input_bytes.Add({{"kind", "conversion"}})),
        out_commissions(&outputs.Add({{"topic", "commissions"}})),
        out_rejected(&outputs.Add({{"topic", "rejected"}})),
        out_unattributed(&outputs.Add({{"topic", "unattributed"}})) {
    for (RejectReason reason : AllRejectReasons()) {
      rejected_by_reason[static_cast<size_t>(reason)] =
          &rejected.Add({{"reason", std::string(RejectReasonName(reason))}});
    }
  }

  prometheus::Family<prometheus::Counter>& input;
  prometheus::Family<prometheus::Counter>& input_bytes;
  prometheus::Family<prometheus::Counter>& rejected;
  prometheus::Family<prometheus::Counter>& outputs;
  prometheus::Counter& retained;
  prometheus::Counter& batches;
  prometheus::Histogram& batch_seconds;
  prometheus::Gauge& last_commit;
  prometheus::Gauge& assigned;
  prometheus::Counter& failures;
  prometheus::Counter* input_click;
  prometheus::Counter* input_conversion;
  prometheus::Counter* input_bytes_click;
  prometheus::Counter* input_bytes_conversion;
  prometheus::Counter* out_commissions;
  prometheus::Counter* out_rejected;
  prometheus::Counter* out_unattributed;
  std::array<prometheus::Counter*, kRejectReasonCount> rejected_by_reason{};
};

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
  return absl::StrCat("{\"clicks_in\":", clicks_in, ",\"conversions_in\":", conversions_in,
                      ",\"valid_clicks\":", valid_clicks,
                      ",\"valid_conversions\":", valid_conversions, ",\"rejected\":", rejected,
                      ",\"rejected_by_reason\":{", absl::StrJoin(reasons, ","),
                      "},\"retained\":", retained, ",\"commissions_out\":", commissions_out,
                      ",\"unattributed_out\":", unattributed_out, ",\"pending\":", pending,
                      ",\"replayed_skipped\":", replayed_skipped, ",\"batches\":", batches,
                      ",\"busy_seconds\":", busy_seconds, "}");
}

class Processor::Impl final : public Outputs, public kafka::RebalanceListener {
 public:
  Impl(ProcessorOptions options, PipelineStage* stage, prometheus::Registry& registry)
      : options_(std::move(options)),
        stage_(stage),
        metrics_(registry),
        click_decoder_(options_.clicks_format, options_.limits),
        conversion_decoder_(options_.conversions_format, options_.limits),
        encoder_(options_.output_format) {}

  absl::Status Init() {
    auto producer = kafka::Producer::Create(options_.producer_properties);
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
    auto consumer = kafka::Consumer::Create(options_.consumer_properties, this);
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
      batch.clear();
      revoked_in_poll_.clear();
      absl::Status polled =
          consumer_->Poll(options_.batch_max_messages, options_.batch_max_time, &batch);
      if (!polled.ok()) return Fail(polled);
      if (!revoked_in_poll_.empty()) DropRevoked(&batch);
      if (batch.empty()) {
        if (options_.stop_when_idle > absl::ZeroDuration() && !consumer_->Assignment().empty() &&
            consumer_->AllAssignedAtEof()) {
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
      if (absl::Status s = ProcessBatch(batch); !s.ok()) return Fail(s);
    }
    return Shutdown();
  }

  void Stop() { stop_.store(true, std::memory_order_release); }

  ProcessorSummary summary() const {
    absl::MutexLock lock(&summary_mu_);
    return summary_;
  }

  // Outputs.
  void Commission(const tally::Commission& commission) override {
    encoder_.Encode(commission, &scratch_);
    ProduceOrRemember(options_.topics.commissions, commission.commission_id);
    metrics_.out_commissions->Increment();
    ++pending_summary_.commissions_out;
  }

  void Reject(const EventSource& source, RejectReason reason, std::string_view detail) override {
    const RejectedEvent rejected = BuildRejectedEvent(
        {source.topic, source.partition, source.offset, source.key, source.value}, reason, detail,
        options_.rejected_limits, absl::ToUnixMillis(absl::Now()));
    encoder_.Encode(rejected, &scratch_);
    // Keyed by the original key (its bounded prefix when longer, so that the
    // record always fits; schemas/README.md): a rejected event lands beside
    // its siblings' partition, and re-processing tools can re-key nothing.
    ProduceOrRemember(options_.topics.rejected, rejected.original_key);
    metrics_.rejected_by_reason[static_cast<size_t>(reason)]->Increment();
    metrics_.out_rejected->Increment();
    ++pending_summary_.rejected;
    ++pending_summary_.rejected_by_reason[std::string(RejectReasonName(reason))];
    TALLY_LOG(kDebug, kLog, "rejected ", source.topic, "/", source.partition, "@", source.offset,
              ": ", RejectReasonName(reason), ": ", detail);
  }

  void Unattributed(const UnattributedConversion& unattributed) override {
    encoder_.Encode(unattributed, &scratch_);
    const Conversion& c = unattributed.conversion;
    const std::string& key =
        options_.attribution_key == AttributionKey::kUserId ? c.user_id : c.click_id;
    ProduceOrRemember(options_.topics.unattributed, key);
    metrics_.out_unattributed->Increment();
    ++pending_summary_.unattributed_out;
  }

  void Retained(const EventSource&) override {
    metrics_.retained.Increment();
    ++pending_summary_.retained;
  }

  // RebalanceListener: called inside consumer_->Poll().
  void OnAssigned(const std::vector<kafka::TopicPartition>& partitions) override {
    std::vector<int32_t> ids;
    for (const auto& tp : partitions) {
      if (tp.topic == options_.topics.clicks) ids.push_back(tp.partition);
    }
    TALLY_LOG(kInfo, kLog, "assigned ", partitions.size(), " partitions");
    assigned_count_ += static_cast<int64_t>(partitions.size());
    metrics_.assigned.Set(static_cast<double>(assigned_count_));
    stage_->OnPartitionsAssigned(ids);
  }

  void OnRevoked(const std::vector<kafka::TopicPartition>& partitions) override {
    std::vector<int32_t> ids;
    for (const auto& tp : partitions) {
      revoked_in_poll_.insert({tp.topic, tp.partition});
      if (tp.topic == options_.topics.clicks) ids.push_back(tp.partition);
    }
    TALLY_LOG(kInfo, kLog, "revoked ", partitions.size(), " partitions");
    assigned_count_ -= static_cast<int64_t>(partitions.size());
    if (assigned_count_ < 0) assigned_count_ = 0;
    metrics_.assigned.Set(static_cast<double>(assigned_count_));
    stage_->OnPartitionsRevoked(ids);
  }

 private:
  // Messages fetched before a revocation inside the same Poll() belong to a
  // partition we no longer own: the new owner reads them from the last
  // committed offset, so processing them here would only duplicate work.
  void DropRevoked(std::vector<std::unique_ptr<kafka::Message>>* batch) {
    std::erase_if(*batch, [this](const std::unique_ptr<kafka::Message>& m) {
      return revoked_in_poll_.contains(std::make_pair(std::string(m->topic()), m->partition()));
    });
  }

  absl::Status ProcessBatch(const std::vector<std::unique_ptr<kafka::Message>>& batch) {
    const absl::Time started = absl::Now();
    if (first_batch_started_ == absl::InfiniteFuture()) first_batch_started_ = started;
    pending_summary_ = ProcessorSummary{};
    produce_error_ = absl::OkStatus();
    absl::flat_hash_map<std::pair<std::string, int32_t>, int64_t> next_offsets;
    for (const auto& message : batch) {
      EventSource source{message->topic(), message->partition(), message->offset(), message->key(),
                         message->value()};
      const InputKind kind =
          message->topic() == options_.topics.clicks ? InputKind::kClick : InputKind::kConversion;
      if (kind == InputKind::kClick) {
        ++pending_summary_.clicks_in;
        metrics_.input_click->Increment();
        metrics_.input_bytes_click->Increment(static_cast<double>(message->value().size()));
        if (auto invalid = click_decoder_.Decode(message->value(), &click_); invalid) {
          Reject(source, invalid->reason, invalid->detail);
        } else {
          ++pending_summary_.valid_clicks;
          stage_->OnClick(click_, source, *this);
        }
      } else {
        ++pending_summary_.conversions_in;
        metrics_.input_conversion->Increment();
        metrics_.input_bytes_conversion->Increment(static_cast<double>(message->value().size()));
        if (auto invalid = conversion_decoder_.Decode(message->value(), &conversion_); invalid) {
          Reject(source, invalid->reason, invalid->detail);
        } else {
          ++pending_summary_.valid_conversions;
          stage_->OnConversion(conversion_, source, *this);
        }
      }
      if (!produce_error_.ok()) return produce_error_;
      next_offsets[{std::string(message->topic()), message->partition()}] = message->offset() + 1;
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
    // Outputs first, offsets second: committing before every output is
    // acknowledged (acks=all) could lose it on a crash.
    if (absl::Status s = producer_->Flush(options_.shutdown_timeout); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("flushing batch outputs: ", s.message()));
    }
    if (absl::Status s = stage_->CommitBatch(positions); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("committing state: ", s.message()));
    }
    if (absl::Status s = consumer_->Commit(commits); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("committing input offsets: ", s.message()));
    }
    metrics_.batches.Increment();
    metrics_.batch_seconds.Observe(absl::ToDoubleSeconds(absl::Now() - started));
    metrics_.last_commit.Set(absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
    MergeSummary(absl::Now());
    return absl::OkStatus();
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
  }

  // Produce() polls and retries on a full queue and only fails for errors
  // that retrying cannot fix; the first such error fails the batch (its
  // offsets are never committed, so it is replayed after the restart).
  void ProduceOrRemember(const std::string& topic, std::string_view key) {
    if (!produce_error_.ok()) return;
    absl::Status s = producer_->Produce(topic, -1, key, scratch_);
    if (!s.ok()) {
      produce_error_ =
          absl::Status(s.code(), absl::StrCat("producing to '", topic, "': ", s.message()));
    }
  }

  absl::Status Fail(const absl::Status& status) {
    metrics_.failures.Increment();
    TALLY_LOG(kError, kLog, "stopping without committing the current batch: ", status.ToString());
    // Leave the group so partitions move to a healthy instance promptly; the
    // uncommitted batch is replayed there.
    (void)consumer_->Close();
    return status;
  }

  absl::Status Shutdown() {
    TALLY_LOG(kInfo, kLog, "shutting down: flushing outputs and leaving the group");
    if (absl::Status s = producer_->Flush(options_.shutdown_timeout); !s.ok()) return s;
    return consumer_->Close();
  }

  const ProcessorOptions options_;
  PipelineStage* const stage_;
  LoopMetrics metrics_;
  std::atomic<bool> stop_{false};

  // Owned by the Run() thread. The producer is declared before the
  // consumer so that it is destroyed after it: the consumer's close may
  // still trigger rebalance callbacks that reach the stage and Outputs.
  std::unique_ptr<kafka::Producer> producer_;
  std::unique_ptr<kafka::Consumer> consumer_;
  EventDecoder click_decoder_;
  EventDecoder conversion_decoder_;
  EventEncoder encoder_;
  Click click_;
  Conversion conversion_;
  std::string scratch_;
  absl::Status produce_error_;
  absl::flat_hash_set<std::pair<std::string, int32_t>> revoked_in_poll_;
  int64_t assigned_count_ = 0;
  absl::Time first_batch_started_ = absl::InfiniteFuture();
  ProcessorSummary pending_summary_;

  mutable absl::Mutex summary_mu_;
  ProcessorSummary summary_ ABSL_GUARDED_BY(summary_mu_);
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
