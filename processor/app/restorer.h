// Restores task stores from the state changelog on a thread of its own, so
// that a task that restores never stops the others (docs/design.md §10).
//
// The changelog of task p is partition p of one compacted topic. Each
// changelog batch of a task is its records (key: family byte + key; value
// null: deleted) followed by one marker record, all in the transaction that
// also carries the batch's outputs and input offsets. The marker is
// produced only after every output and record of the batch was
// acknowledged, so on any broker a marker that exists means its batch's
// writes all exist. Records after the LAST marker are the tail of a batch
// that never completed: on a real cluster, an aborted or open transaction
// (invisible to read_committed); on a broker without transaction
// isolation, visible. A restore applies every record before the last
// marker and none after it, and hands the tail's keys to the store for
// compensation: the task's next changelog batch re-writes their committed
// values, so a later restore from any offset, which applies the stray tail
// as "before the last marker", ends with the committed values. Records in
// the middle of the log that never completed are covered that way too.
//
// Finding the last marker needs no unbounded buffering: the restore first
// reads a window at the end of the log (bounded), locates the last marker in
// it, then reads the rest from the store's checkpoint and applies it in
// large write batches (in a compacted log, markers before the last one are
// mostly gone, so "between markers" cannot be the unit of buffering).
//
// Threading: Start/Cancel/TakeFinished/progress() are called from the
// processor's polling thread; the restore runs on the restorer's thread,
// which alone touches a store between Start and its appearance in
// TakeFinished (or Cancel's return).
#ifndef TALLY_PROCESSOR_APP_RESTORER_H_
#define TALLY_PROCESSOR_APP_RESTORER_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "processor/join/state_store.h"
#include "processor/kafka/kafka.h"

namespace tally {

// The marker closing a task's changelog batch (no store key starts with
// 0xFF: family bytes are < kStoreFamilyCount).
inline constexpr std::string_view kChangelogMarkerKey = "\xff";
inline constexpr std::string_view kChangelogMarkerValue = "1";

// Topic settings an internal changelog needs on a real cluster.
std::map<std::string, std::string> ChangelogTopicConfig();

struct RestoreResult {
  int32_t partition = -1;
  absl::Status status;
  uint64_t records = 0;       // changelog records applied
  uint64_t tail_records = 0;  // records after the last marker (discarded, compensated)
  int64_t from_offset = 0;    // where the restore started
  int64_t to_offset = 0;      // changelog offset the store now holds
  // The changelog no longer holds [lost_from, from_offset) (retention or a
  // truncated partition): state written there is gone. lost_from -1: none.
  int64_t lost_from = -1;
  bool cleared = false;  // the checkpoint was too old: restored from the start
  double seconds = 0;
  // CPU time of the restorer's thread for it (the rest of `seconds` is
  // waiting for the broker).
  double cpu_seconds = 0;
};

struct RestoreProgress {
  int restoring = 0;               // tasks queued or restoring
  uint64_t records_done = 0;       // records applied, all restores since start
  uint64_t records_remaining = 0;  // estimate (end offset - position), current restores
};

class Restorer {
 public:
  struct Options {
    std::string changelog_topic;
    // Records read from the end of the log to find the last marker; grows
    // (x4) while no marker is found in it.
    int64_t tail_window = 100'000;
    // Records per local write batch.
    size_t apply_batch = 20'000;
    // Pause between two rounds over the standbys.
    absl::Duration standby_interval = absl::Seconds(1);
    absl::Duration poll_timeout = absl::Milliseconds(200);
    // A store whose checkpoint is older than this is cleared and restored
    // from the start: the changelog's tombstones of deletions after it may
    // be gone (delete.retention.ms, 7 days in ChangelogTopicConfig), so
    // replaying only the tail could bring deleted keys back.
    absl::Duration max_checkpoint_age = absl::Hours(24 * 6);
  };
  // The reader is used on the restorer's thread only.
  Restorer(Options options, std::unique_ptr<kafka::PartitionReader> reader);
  ~Restorer();  // cancels whatever runs and joins the thread
  Restorer(const Restorer&) = delete;
  Restorer& operator=(const Restorer&) = delete;

  // Queues the restore of `store` (partition `partition`) from its
  // checkpoint (changelog_offset(), or the log start).
  void Start(int32_t partition, TaskStore* store);
  // Stops the restore of `partition` (queued or running) and returns once
  // the thread no longer touches its store. The store keeps what was
  // applied, with the offset it was applied up to.
  void Cancel(int32_t partition);
  // Standby replicas: the stores of tasks this instance does not own, kept
  // close to the changelog's end whenever no restore is queued (each round
  // applies what lies before each one's last marker; the tail waits for its
  // marker). Replaces the previous set; a store leaving it is no longer
  // touched once this returns.
  void SetStandbys(const std::map<int32_t, TaskStore*>& standbys);
  // Records between each standby's checkpoint and its changelog's end, as of
  // its last round (summed).
  uint64_t standby_lag() const { return standby_lag_.load(std::memory_order_relaxed); }

  // Restores that ended since the last call, in completion order.
  std::vector<RestoreResult> TakeFinished();
  RestoreProgress progress() const;
  bool busy(int32_t partition) const;

 private:
  struct Job {
    int32_t partition;
    TaskStore* store;
    bool standby = false;  // a follow round: no compensation, no reload
  };
  static Options Sanitized(Options options);
  void Loop();
  RestoreResult Run(const Job& job);
  // Reads [from, end of log) of the changelog partition; fn(message) per
  // record (it may take the message: records are applied from the
  // messages themselves, without copies); stops when fn returns false or
  // the end is reached.
  absl::Status ReadRange(int32_t partition, int64_t from,
                         const std::function<bool(std::unique_ptr<kafka::Message>&)>& fn);
  bool Cancelled(int32_t partition) const;

  const Options options_;
  std::unique_ptr<kafka::PartitionReader> reader_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  std::optional<int32_t> running_;
  bool running_standby_ = false;
  std::optional<int32_t> cancel_;  // the running job must stop
  std::vector<RestoreResult> finished_;
  std::map<int32_t, TaskStore*> standbys_;
  std::map<int32_t, uint64_t> standby_lags_;
  std::atomic<uint64_t> standby_lag_{0};
  bool stop_ = false;
  // relaxed: progress figures for metrics only.
  std::atomic<uint64_t> records_done_{0};
  std::atomic<uint64_t> records_remaining_{0};
  std::thread thread_;  // last: starts after, and is joined before, the rest goes
};

}  // namespace tally

#endif  // TALLY_PROCESSOR_APP_RESTORER_H_
