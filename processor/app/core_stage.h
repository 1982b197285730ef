// The pipeline core behind the PipelineStage seam: dedup -> fraud filter ->
// joiner (attribution windows in RocksDB) -> commissions.
//
//   click:      dedup by click id (duplicate_click) -> fraud rules in order
//               (bot_user_agent, ip_blocklisted, ip_click_flood) -> state
//   conversion: dedup by identity + status (duplicate_conversion) -> joiner
//               (candidates, ctit, pending, ledger) -> commissions |
//               rejected | unattributed | pending
//
// Ownership: one TaskStore + Joiner per assigned input partition (partition
// p of `clicks` and partition p of `conversions` are one task, which is why
// the inputs must be co-partitioned). The deduplicator and the fraud filter
// are shared by all tasks.
//
// Batch protocol (see pipeline.h): events of a batch change the tasks'
// uncommitted state; EndBatch resolves pending conversions whose grace has
// passed; CommitBatch, called once the batch's outputs are acknowledged,
// writes each task's state atomically with its next input offsets and then
// commits the dedup batch. A crash between CommitBatch and the Kafka offset
// commit replays events the state already covers: they are recognised by
// the task's stored positions and skipped (their outputs were acknowledged
// before the state was written).
//
// Threading: every call comes from the Processor's polling thread.
#ifndef TALLY_PROCESSOR_APP_CORE_STAGE_H_
#define TALLY_PROCESSOR_APP_CORE_STAGE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "processor/app/pipeline.h"
#include "processor/app/restorer.h"
#include "processor/dedup/deduplicator.h"
#include "processor/fraud/fraud_filter.h"
#include "processor/join/joiner.h"
#include "processor/join/state_store.h"
#include "processor/offers/offers.h"

namespace prometheus {
class Registry;
}

namespace tally {

struct CoreStageOptions {
  std::string clicks_topic = "clicks";
  std::string conversions_topic = "conversions";
  StateStoreOptions state;
  DedupOptions dedup;
  FraudFilter::Options fraud;
  JoinOptions join;
  // processing.max_pending_conversions, divided among the input partitions
  // (so a partition behaves the same on whichever instance runs it).
  int64_t max_pending_conversions = 1'000'000;
  // The state changelog (docs/design.md §10); empty: no changelog (state
  // lives on the local volume only).
  std::string changelog_topic;
  // processing.num_standbys: for each owned task, this many tasks of the
  // next range (the next member's, with the range assignor) are kept warm
  // from the changelog in local stores (docs/design.md §10.6).
  int num_standbys = 0;
  // processing.click_idle_timeout (0: off): a task with pending conversions
  // whose clicks input brought nothing for this long (wall clock) has its
  // click watermark advanced at wall-clock speed from there, at the end of
  // each batch (docs/design.md §6.3).
  absl::Duration click_idle_timeout = absl::ZeroDuration();
  // The wall clock (tests replace it).
  std::function<absl::Time()> clock = [] { return absl::Now(); };
};

// Monotonic counters for the summary and metrics.
struct CoreStageCounters {
  uint64_t replayed_skipped = 0;  // events the task state already covered
  uint64_t dedup_too_old = 0;     // events older than the dedup horizon
  // Partitions whose input resumed past the end of their local state (the
  // partition was processed elsewhere in between; see AlreadyApplied).
  uint64_t state_gaps = 0;
  // Conversions waiting in the state of the partitions owned at the last
  // commit (kept across the final revocation, for the exit summary).
  uint64_t pending = 0;
  // Watermark advances of idle tasks (click_idle_timeout).
  uint64_t idle_advances = 0;
  // Late clicks and conversions of committed batches (JoinCounters).
  uint64_t late_clicks = 0;
  uint64_t late_conversions = 0;
};

class CoreStage final : public PipelineStage {
 public:
  // Metrics (tally_pending_conversions, tally_dedup_*, tally_fraud_*,
  // tally_state_*, tally_rocksdb_*) are registered in `registry` when it is
  // not null. Counters of events in a batch move when the batch commits (a
  // replayed batch counts once); fraud rule reloads when they happen;
  // sampled gauges (pending age, RocksDB) once a second, idle or not.
  // `restorer` (with a changelog) rebuilds each newly assigned task from
  // the changelog before the task is ready; null: tasks are ready at once.
  static absl::StatusOr<std::unique_ptr<CoreStage>> Create(
      const CoreStageOptions& options, std::shared_ptr<const OffersCatalog> offers,
      prometheus::Registry* registry = nullptr, std::unique_ptr<Restorer> restorer = nullptr);
  // Every check Create() makes before it opens a store: the options of
  // dedup, state and fraud, the dedup horizon against `offers`, and the
  // fraud rule files parsed. Touches no store and creates no file or
  // directory (tally --check-config); Create() calls it first.
  static absl::Status CheckOptions(const CoreStageOptions& options, const OffersCatalog& offers);
  ~CoreStage() override;

  bool AlreadyCovered(const EventSource& source) override;
  // `producer` is reached only through VerdictsFirst (core_stage.cc).
  void OnClick(const Click& click, const EventSource& source, Outputs& producer) override;
  void OnConversion(const Conversion& conversion, const EventSource& source,
                    Outputs& producer) override;
  absl::Status EndBatch(const std::vector<Position>& next_offsets, Outputs& producer) override;
  absl::Status CommitBatch(const std::vector<Position>& next_offsets) override;
  void AbortBatch() override;
  void OnPartitionsAssigned(const std::vector<int32_t>& partitions) override;
  void OnPartitionsRevoked(const std::vector<int32_t>& partitions) override;
  absl::Status WriteChangelog(const std::vector<Position>& next_offsets,
                              ChangelogSink& changelog) override;
  absl::Status WriteMarkers(ChangelogSink& changelog) override;
  bool TaskReady(int32_t partition) const override;
  int RestoringTasks() const override;
  std::vector<Position> TakeReadyTasks(std::vector<int32_t>* ready) override;
  std::vector<int32_t> standby_partitions() const;

  // The input partition count (for the pending share).
  void SetInputPartitionCount(int32_t partitions) override;
  // SIGHUP: re-reads the fraud rule files (thread-safe).
  absl::Status ReloadFraudRules();
  CoreStageCounters counters() const;

 private:
  struct Task;
  struct Metrics;
  class VerdictsFirst;
  CoreStage(const CoreStageOptions& options, std::shared_ptr<const OffersCatalog> offers);
  Task* TaskFor(int32_t partition);
  // Recreates the deduplicator over the committed keys of every open store.
  // Called between batches whenever the assignment grows: the table must
  // hold the hints of every partition this instance now owns.
  absl::Status RebuildDeduplicator();
  // Records the first error; the batch then fails in EndBatch (and is
  // replayed after the restart), since a stage call cannot return one.
  void Remember(const absl::Status& status);
  bool AlreadyApplied(Task& task, const EventSource& source);
  // Recomputes the shared flood counters from the committed counts and the
  // verdict journals of every open task. Between batches only.
  absl::Status RebuildFloodCounts();
  // Journals the flood verdicts recorded since the last call. False if the
  // journal could not be written.
  bool JournalVerdicts();
  // VerdictsFirst: an output now must wait for a journal write (verdicts are
  // unjournaled, or outputs before it wait already).
  bool HoldsOutputs() const;
  struct HeldOutput;
  void Hold(HeldOutput output, Outputs& producer);
  // Journals the verdicts, then hands every held output to `producer` in
  // order (drops them if the journal write failed: the batch fails).
  void ReleaseHeld(Outputs& producer);
  void PublishMetrics();
  // The oldest pending conversion's age and RocksDB's statistics, at most
  // once a second, from every loop iteration (via TakeReadyTasks).
  void PublishSampledMetrics();
  void CountPending();
  // The task's store is complete: its joiner starts and the shared tables
  // learn its state.
  void Activate(int32_t partition, Task& task);
  // Recomputes the standby set from the owned tasks and hands it to the
  // restorer (stores of tasks that leave it are closed).
  void UpdateStandbys();
  // click_idle_timeout: advances the watermark of tasks whose clicks input
  // has been idle (EndBatch).
  absl::Status AdvanceIdleTasks(JoinSink& sink);
  // Applies the batch locally after the changelog transaction committed.
  absl::Status ApplyPrepared();
  // After every task's state is written: the dedup batch commits, the dedup
  // table is rebuilt if the assignment grew, counters and metrics follow.
  absl::Status FinishCommit();
  // Restore progress and standby lag (every loop iteration, via
  // TakeReadyTasks: restores run while no batch commits).
  void PublishRestoreMetrics();

  const CoreStageOptions options_;
  const std::shared_ptr<const OffersCatalog> offers_;
  std::unique_ptr<StateStores> stores_;
  std::unique_ptr<FraudFilter> fraud_;
  std::unique_ptr<Deduplicator> dedup_;
  std::unique_ptr<DedupBatch> dedup_batch_;
  std::map<int32_t, std::unique_ptr<Task>> tasks_;
  // Tasks with flood verdicts of the open batch not yet in their journal.
  std::vector<Task*> unjournaled_;
  // Outputs waiting for those verdicts to be journaled, in emission order;
  // empty between batches.
  static constexpr size_t kMaxHeldOutputs = 512;
  std::vector<HeldOutput> held_;
  int32_t input_partitions_ = 1;
  absl::Status error_;
  bool dedup_stale_ = true;
  CoreStageCounters counters_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<Restorer> restorer_;
  // Finished restores not activated yet (see TakeReadyTasks).
  std::vector<RestoreResult> restored_;
  std::map<int32_t, TaskStore*> standbys_;
  absl::Time restored_since_;
  // Between WriteChangelog and CommitBatch: the tasks whose batch is staged
  // and where their markers go.
  std::vector<int32_t> prepared_;
  std::map<int32_t, std::vector<std::string>> changelog_written_;  // keys, per prepared task
  ChangelogSink* changelog_ = nullptr;
};

}  // namespace tally

#endif  // TALLY_PROCESSOR_APP_CORE_STAGE_H_
