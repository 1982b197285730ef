// The seam between the Kafka plumbing (Processor) and the processing logic
// (dedup -> fraud -> joiner -> commissions). The Processor decodes and
// validates; a PipelineStage sees only valid events and says, through
// Outputs, where each one ends up.
//
// Accounting invariant (the product's promise that nothing is lost): every
// event handed to a stage ends in exactly one place — accepted into state,
// one or more commissions, `rejected` with a reason, `unattributed`, or
// pending (and later one of those). A stage reports each of these through
// Outputs so that the Processor's counters add up.
#ifndef TALLY_PROCESSOR_APP_PIPELINE_H_
#define TALLY_PROCESSOR_APP_PIPELINE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "processor/model/events.h"

namespace tally {

// Where an input event came from. Views are valid for the duration of the
// OnClick / OnConversion call only.
struct EventSource {
  std::string_view topic;
  int32_t partition = -1;
  int64_t offset = -1;
  std::string_view key;
  std::string_view value;  // the original bytes, for `rejected`
};

// Sink for a stage's results. Implemented by the Processor; calls are made
// on the thread that called the stage.
class Outputs {
 public:
  virtual ~Outputs() = default;
  virtual void Commission(const tally::Commission& commission) = 0;
  virtual void Reject(const EventSource& source, RejectReason reason, std::string_view detail) = 0;
  virtual void Unattributed(const UnattributedConversion& conversion) = 0;
  // The event was taken into state (an accepted click, a pending conversion).
  virtual void Retained(const EventSource& source) = 0;
};

// Where a stage writes its state changelog (docs/design.md §10), implemented
// by the Processor: records go to partition `partition` of the changelog
// topic, in the batch's transaction under exactly-once.
class ChangelogSink {
 public:
  virtual ~ChangelogSink() = default;
  // value nullptr: a tombstone.
  virtual absl::Status Record(int32_t partition, std::string_view key,
                              const std::string* value) = 0;
  // Closes the task's changelog batch (produced after every record and
  // output of the batch was acknowledged).
  virtual absl::Status Marker(int32_t partition) = 0;
  // Once the batch is committed: the changelog offset after `partition`'s
  // marker of this batch.
  virtual std::optional<int64_t> MarkerNext(int32_t partition) const = 0;
};

// A processing stage. Called from the Processor's single polling thread:
// one batch at a time, OnClick/OnConversion for each valid event of the
// batch in partition order, then EndBatch. A stage must not keep views of
// EventSource past the call.
class PipelineStage {
 public:
  virtual ~PipelineStage() = default;
  // Called for EVERY input message, valid or not, before it is decoded:
  // true means the stage's committed state already covers it (a replay
  // after a crash between the state write and the offset commit) and the
  // message must be skipped entirely, its rejection included.
  virtual bool AlreadyCovered(const EventSource& /*source*/) { return false; }
  virtual void OnClick(const Click& click, const EventSource& source, Outputs& out) = 0;
  virtual void OnConversion(const Conversion& conversion, const EventSource& source,
                            Outputs& out) = 0;
  // All of the batch's events have been handed over; the stage emits what
  // the end of the batch decides (e.g. pending conversions whose grace has
  // passed in event time). Its outputs are flushed right after. An error
  // stops the processor before anything is committed: the batch is replayed.
  struct Position {
    std::string topic;
    int32_t partition;
    int64_t next_offset;
  };
  virtual absl::Status EndBatch(const std::vector<Position>& next_offsets, Outputs& out) = 0;
  // Every output of the batch has been acknowledged by Kafka; the input
  // offsets are committed right after this returns. The stage makes its
  // state durable here, atomically with `next_offsets` (the positions after
  // the batch). The order is what makes "nothing lost" hold: state committed
  // before its outputs were acknowledged would, after a crash, make the
  // replay skip events whose outputs never arrived. A crash after this and
  // before the offset commit replays events the state already covers; the
  // stage recognises them by its stored positions and skips them.
  virtual absl::Status CommitBatch(const std::vector<Position>& /*next_offsets*/) {
    return absl::OkStatus();
  }
  // With a changelog: after EndBatch, before the outputs are flushed, the
  // stage stages the batch's state with `next_offsets` and writes it as
  // changelog records; after the flush, WriteMarkers closes each task's
  // changelog batch; CommitBatch (after the transaction committed, or after
  // the markers were acknowledged under at-least-once) applies the state
  // locally with the marker offsets.
  virtual absl::Status WriteChangelog(const std::vector<Position>& /*next_offsets*/,
                                      ChangelogSink& /*changelog*/) {
    return absl::OkStatus();
  }
  virtual absl::Status WriteMarkers(ChangelogSink& /*changelog*/) { return absl::OkStatus(); }
  // Tasks whose state is still being restored (their input is held back:
  // the Processor hands over events of ready tasks only).
  virtual bool TaskReady(int32_t /*partition*/) const { return true; }
  virtual int RestoringTasks() const { return 0; }
  // Tasks that became ready since the last call, with the input positions
  // their state holds (the Processor moves the consumer there).
  virtual std::vector<Position> TakeReadyTasks(std::vector<int32_t>* /*ready*/) { return {}; }
  // The batch will not be committed (its outputs could not all be
  // acknowledged): forget every uncommitted change; the Processor replays
  // the batch's events from their first offsets.
  virtual void AbortBatch() {}
  // The input topics' partition count (checked equal for both), before the
  // first batch.
  virtual void SetInputPartitionCount(int32_t /*partitions*/) {}
  // Task ownership changes (Kafka rebalance): a partition id here is a whole
  // task (partition p of both input topics); the Processor never hands over
  // events of a partition that is not assigned here. Called between batches.
  virtual void OnPartitionsAssigned(const std::vector<int32_t>& /*partitions*/) {}
  virtual void OnPartitionsRevoked(const std::vector<int32_t>& /*partitions*/) {}
};

// The first-path stage: every valid event is accepted as is (counted as
// Retained). The pipeline core replaces it with dedup, fraud and the joiner.
class PassThroughStage final : public PipelineStage {
 public:
  void OnClick(const Click&, const EventSource& source, Outputs& out) override {
    out.Retained(source);
  }
  void OnConversion(const Conversion&, const EventSource& source, Outputs& out) override {
    out.Retained(source);
  }
  absl::Status EndBatch(const std::vector<Position>&, Outputs&) override {
    return absl::OkStatus();
  }
};

}  // namespace tally

#endif  // TALLY_PROCESSOR_APP_PIPELINE_H_
