// The Processor is the consume -> decode -> stage -> produce -> commit loop.
//
// Delivery guarantee: at-least-once with no loss, and no re-decision. A
// batch of input messages is decoded and handed to the PipelineStage; every
// output it causes is produced; the producer is flushed and every delivery
// checked; then the stage makes its state durable with the batch's
// positions (fsync); only then are the input offsets committed. A crash
// anywhere before the state write replays the batch (outputs may repeat
// with the same ids, nothing is lost); after it, the replayed events are
// recognised by the stored positions and skipped.
//
// Tasks. Partition p of `clicks` and partition p of `conversions` are one
// task; only whole tasks are handed to the stage. The consumer's assignor
// (range) keeps both halves on one member; every assignment is still
// verified: a half task is paused (its messages are held back by seeking
// to them), logged and counted (tally_half_tasks) until its partner arrives.
//
// Errors, by kafka::ErrorClass: a batch whose outputs cannot all be
// acknowledged (a produce or delivery error of any class but kFatal) is
// aborted in the stage and replayed from its first offsets after a backoff
// (a seek back that fails transiently is retried, never skipped);
// a flush that times out keeps waiting (not ready) while the broker is away,
// consuming nothing, so memory stays bounded; a failed offset commit is
// retried by the next batch's commit (the state already holds the
// positions). kFatal errors, and errors that do not come from Kafka (state
// store I/O), stop the processor with a message naming the cause.
//
// Threading: Run() is called on one thread and everything (Kafka polling,
// rebalance callbacks, the stage) happens on it. Stop() may be called from
// any thread.
#ifndef TALLY_PROCESSOR_APP_PROCESSOR_H_
#define TALLY_PROCESSOR_APP_PROCESSOR_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "processor/app/pipeline.h"
#include "processor/codec/codec.h"
#include "processor/config/config.h"  // AttributionKey
#include "processor/kafka/kafka.h"
#include "processor/metrics/health.h"
#include "processor/model/money.h"
#include "processor/model/rejected_limits.h"

namespace prometheus {
class Registry;
}

namespace tally {

struct TopicNames {
  std::string clicks = "clicks";
  std::string conversions = "conversions";
  std::string commissions = "commissions";
  std::string rejected = "rejected";
  std::string unattributed = "unattributed";
};

struct ProcessorOptions {
  kafka::Properties consumer_properties;  // bootstrap.servers, group.id, TLS/SASL, ...
  kafka::Properties producer_properties;
  TopicNames topics;
  WireFormat clicks_format = WireFormat::kJson;
  WireFormat conversions_format = WireFormat::kJson;
  WireFormat output_format = WireFormat::kJson;
  DecodeLimits limits;
  RejectedLimits rejected_limits;  // bounds of a `rejected` record
  AttributionKey attribution_key = AttributionKey::kClickId;
  size_t batch_max_messages = 10000;
  absl::Duration batch_max_time = absl::Milliseconds(100);
  // > 0: Run() returns once every assigned partition has been at the end of
  // its log for this long (make run, tests). 0: run until Stop().
  absl::Duration stop_when_idle = absl::ZeroDuration();
  absl::Duration shutdown_timeout = absl::Seconds(30);
  // Pause before a failed batch is replayed (the broker may be recovering).
  absl::Duration retry_backoff = absl::Milliseconds(500);
  // Where the Kafka clients come from (nullptr: librdkafka); tests pass the
  // in-process fake.
  kafka::ClientFactory* clients = nullptr;
  // Liveness/readiness for /healthz and /readyz; may be null.
  std::shared_ptr<Health> health;
  // processing.guarantee: exactly_once runs every batch in one Kafka
  // transaction (outputs, changelog records, input offsets) with this
  // transactional.id (docs/design.md §10).
  bool exactly_once = false;
  std::string transactional_id;
  absl::Duration transaction_timeout = absl::Seconds(60);
  // The stage's state changelog (compacted, one partition per task; created
  // at start-up if missing, checked if present); empty: none.
  std::string changelog_topic;
  std::map<std::string, std::string> changelog_topic_config;
  int changelog_replication = -1;  // -1: the broker's default
  // metrics.currencies: commission value is exported per currency for
  // these and under "other" for the rest (bounded label values).
  std::vector<Currency> metric_currencies;
};

// What the processor did, for the exit summary and tests.
struct ProcessorSummary {
  uint64_t clicks_in = 0;
  uint64_t conversions_in = 0;
  uint64_t valid_clicks = 0;
  uint64_t valid_conversions = 0;
  std::map<std::string, uint64_t> rejected_by_reason;
  uint64_t rejected = 0;
  uint64_t retained = 0;
  uint64_t commissions_out = 0;
  uint64_t unattributed_out = 0;
  // Filled in by the stage's owner after Run(): conversions still waiting
  // for a late click, and replayed events the state already covered.
  uint64_t pending = 0;
  uint64_t replayed_skipped = 0;
  // Clicks behind the watermark and conversions beyond their lateness bound
  // (README, Semantics), committed batches only.
  uint64_t late_clicks = 0;
  uint64_t late_conversions = 0;
  uint64_t batches = 0;
  uint64_t batch_replays = 0;  // batches aborted and consumed again
  // Wall time spent making task state durable (CommitBatch, fsync
  // included), summed over batches: the durability cost per batch is
  // state_commit_seconds / batches.
  double state_commit_seconds = 0;
  uint64_t transactions = 0;        // committed transactions (exactly-once)
  uint64_t transaction_aborts = 0;  // aborted (their batch replayed)
  // Wall time from the first consumed message to the last commit: the
  // processing time without group join and idle waiting (benchmarks).
  double busy_seconds = 0;
  // One JSON object on one line.
  std::string ToJson() const;
};

class Processor {
 public:
  // `stage` must outlive the Processor (its consumer's close revokes the
  // tasks through it). Metrics are registered in `registry`.
  static absl::StatusOr<std::unique_ptr<Processor>> Create(ProcessorOptions options,
                                                           PipelineStage* stage,
                                                           prometheus::Registry& registry);
  ~Processor();

  // Runs until Stop(), idle (see stop_when_idle) or a fatal error. On a clean
  // return the last batch is flushed and committed and the consumer has left
  // the group. Whatever the return, the consumer is closed (its revoke
  // callback has run) and no batch is half committed: a failing final flush
  // is returned as the error (every committed batch was flushed before its
  // commit, so it puts nothing committed at risk), and a Stop() while a
  // batch's outputs stay unacknowledged past shutdown_timeout returns an
  // error with that batch uncommitted (replayed by the next owner).
  absl::Status Run();
  // Thread-safe, async-signal-unsafe (call from a normal thread).
  void Stop();

  ProcessorSummary summary() const;

 private:
  class Impl;
  explicit Processor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tally

#endif  // TALLY_PROCESSOR_APP_PROCESSOR_H_
