// The joiner's durable state: one RocksDB instance per input partition (a
// "task store", as Kafka Streams keeps one store per task), owned by a
// StateStores object that opens a store when the partition is assigned and
// closes it when it is revoked. See docs/design.md for the layout.
//
// Why per partition: every piece of state belongs to exactly one input
// partition (clicks and conversions are co-partitioned by attribution key),
// so a partition's state can be made durable atomically with that
// partition's input positions (one WriteBatch), restored from its own
// changelog, checkpointed and moved to another instance as one directory,
// all without touching other partitions.
//
// Memory: all stores share ONE block cache (LRU, block_cache_bytes) and ONE
// WriteBufferManager (write_buffer_bytes) whose memtable memory is charged
// to that cache, and index/filter blocks live in the cache too, so
// block_cache_bytes is the one memory cap of all stores together however
// many partitions are open. max_open_files is divided among the open stores
// and re-divided whenever one opens or closes.
//
// Atomicity: a TaskStore buffers every change of the current batch in a
// WriteBatchWithIndex (reads see it: read-your-writes within the batch) and
// Commit() applies it together with the batch's input positions and
// watermarks in ONE DB::Write. WAL on, fsync off: a machine crash can lose
// the last acknowledged writes, but Kafka offsets are committed only after
// Commit, so the lost tail is simply consumed and processed again; the
// positions stored here then tell the restarted task where its state stands.
//
// TTL: records of clicks, user_clicks, ledger and dedup carry an event time
// and expire when it falls below (the family's watermark - its retention).
// Reads ignore expired records at once; a CompactionFilter deletes them
// lazily. The filter uses the COMMITTED watermarks only (an atomic updated by
// Commit), never the in-flight ones, so a crash and replay can never find a
// record deleted that the replay would still read.
//
// Threading: a TaskStore's batch operations are used by one thread (its
// Joiner). Contains/ForEachSince (the DurableIdIndex) read only committed
// data and are thread-safe; StateStores serialises them with Open/Close.
#ifndef TALLY_PROCESSOR_JOIN_STATE_STORE_H_
#define TALLY_PROCESSOR_JOIN_STATE_STORE_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "processor/commission/commission_engine.h"
#include "processor/dedup/dedup_key.h"
#include "processor/dedup/durable_id_index.h"
#include "processor/join/records.h"
#include "processor/model/events.h"

namespace rocksdb {
class Cache;
class ColumnFamilyHandle;
class DB;
class MergeOperator;
class WriteBatchWithIndex;
class Statistics;
class WriteBufferManager;
}  // namespace rocksdb

namespace tally {

namespace join_internal {
class TtlFilter;
}  // namespace join_internal

inline constexpr int64_t kDayMs = int64_t{24} * 3'600'000;
// "No event seen yet": expiry cutoffs derived from it expire nothing.
inline constexpr TimestampMs kNoWatermark = std::numeric_limits<TimestampMs>::min();

struct StateStoreOptions {
  std::string dir = "/var/lib/tally";         // state.dir; stores live in dir/p-<partition>
  uint64_t block_cache_bytes = 256ull << 20;  // state.block_cache_bytes: THE memory cap
  uint64_t write_buffer_bytes = 64ull << 20;  // state.write_buffer_bytes, inside the cap
  int max_open_files = -1;                    // state.max_open_files, all stores; -1 unlimited
  // fsync every Commit (see "Atomicity" above): the Kafka offset commit that
  // follows must never cover state a machine crash could still lose.
  bool sync_commits = true;
  // Clicks (and the user index) are kept for the longest attribution window
  // plus the pending grace behind the conversions that can still be
  // decided: the oldest pending conversion and the conversions input's own
  // progress (its max event time - conversion_lateness_ms), never the click
  // watermark alone, which runs ahead whenever the conversions input lags
  // (docs/design.md §6.1). No conversion seen yet: no click expires.
  int64_t click_retention_ms = 30 * kDayMs + 10 * 60'000;
  // processing.max_conversion_lateness: how far behind its partition's
  // newest conversion a conversion may arrive and still find every click
  // it could credit.
  int64_t conversion_lateness_ms = kDayMs;
  // How long status changes of a conversion can still be related to it,
  // against the conversion event-time watermark.
  int64_t ledger_retention_ms = 400 * kDayMs;
  // Dedup keys: at least the deduplicator's horizon + repeat skew (against
  // the largest event time of this partition's keys, which is <= the
  // deduplicator's own watermark, so nothing it can still ask for expires).
  int64_t dedup_retention_ms = 36 * kDayMs;
  // The stores are changelogged (docs/design.md §10.7): expired records are
  // deleted by a sweep inside the changelog batches (so the changelog gets
  // their tombstones and stops growing with every click ever seen), not by
  // the compaction filters, whose silent deletions the changelog would
  // never hear of.
  bool expire_by_sweep = false;
  // Threads that open stores (OpenMany) and scan them (ForEachSince) at an
  // assignment: a restart with 64 tasks and 10M keys is bound by these.
  int parallelism = 1;
  // Flood counters: kept fraud.flood_lateness + one window behind the click
  // watermark (older windows can no longer be counted exactly anyway).
  int64_t flood_retention_ms = 2 * 3'600'000;
  // The input topic of clicks: flood journal entries are keyed by its
  // offsets and are dropped by the Commit whose position passes them.
  std::string clicks_topic = "clicks";

  absl::Status Validate() const;
};

// A changelog record as read (a view into the fetched message): changelog
// key (family byte + family key) and value, nullopt for a tombstone.
struct ChangelogRecordView {
  std::string_view key;
  std::optional<std::string_view> value;
};

// One click of this partition that reached the ip_click_flood rule: its
// (IP, window) and the verdict it got. See TaskStore's flood section.
struct FloodClick {
  int64_t click_offset = -1;     // offset on the clicks topic
  int64_t window_start_ms = 0;   // window index * flood window
  std::array<uint8_t, 16> ip{};  // IpAddress::bytes() (IPv4 mapped)
  uint8_t verdict = 0;           // FraudFilter::FloodVerdict

  friend bool operator==(const FloodClick&, const FloodClick&) = default;
};

// The next offset to consume of one input topic, for this store's partition.
struct InputPosition {
  std::string topic;
  int64_t next_offset = 0;

  friend bool operator==(const InputPosition&, const InputPosition&) = default;
};

enum class StoreFamily : uint8_t {
  kClicks,
  kUserClicks,
  kPending,
  kPendingByTime,
  kLedger,
  kDedup,
  kMeta,
  kFlood,
};
inline constexpr int kStoreFamilyCount = 8;
// RocksDB column family names ("clicks", "user_clicks", ...).
const char* StoreFamilyName(StoreFamily family);

class StateStores;

class TaskStore {
 public:
  ~TaskStore();  // discards uncommitted changes
  TaskStore(const TaskStore&) = delete;
  TaskStore& operator=(const TaskStore&) = delete;

  int32_t partition() const { return partition_; }

  // ---- Batch operations (single-threaded; see the uncommitted batch) ----

  // Watermarks: max event time seen, never decreasing. Restored by Open
  // from the last commit. Advancing one moves the read-side expiry cutoff.
  TimestampMs click_watermark() const { return click_wm_; }
  TimestampMs conversion_watermark() const { return conversion_wm_; }
  void AdvanceClickWatermark(TimestampMs t);
  void AdvanceConversionWatermark(TimestampMs t);

  // clicks + user_clicks. Expired clicks read as absent.
  absl::StatusOr<std::optional<ClickRecord>> GetClick(std::string_view click_id);
  absl::Status PutClick(const ClickRecord& click);
  // The user's unexpired clicks on the offer with from <= ts <= to,
  // ascending by (ts, click id).
  absl::StatusOr<std::vector<ClickRecord>> UserClicks(std::string_view user_id,
                                                      std::string_view offer_id, TimestampMs from,
                                                      TimestampMs to);
  // Whether the user has any unexpired click on the offer.
  absl::StatusOr<bool> HasUserClicks(std::string_view user_id, std::string_view offer_id);

  // pending + pending_by_time.
  absl::StatusOr<std::optional<PendingConversion>> GetPending(std::string_view key);
  // A new pending conversion (counted, indexed by its event time).
  absl::Status InsertPending(std::string_view key, const PendingConversion& pending);
  // Rewrites an existing record (same key, same event time).
  absl::Status UpdatePending(std::string_view key, const PendingConversion& pending);
  absl::Status DeletePending(std::string_view key, TimestampMs event_time_ms);
  // Every pending record whose key starts with `prefix`, in key order.
  absl::StatusOr<std::vector<std::pair<std::string, PendingConversion>>> PendingWithPrefix(
      std::string_view prefix);
  struct PendingRef {
    TimestampMs event_time_ms;
    std::string key;
  };
  // The oldest pending conversion by event time (ties: key order).
  absl::StatusOr<std::optional<PendingRef>> OldestPending();
  // Every pending conversion with event time < bound, oldest first.
  absl::StatusOr<std::vector<PendingRef>> PendingBefore(TimestampMs bound);
  // Every pending conversion with from <= event time < to, oldest first.
  std::vector<PendingRef> PendingBetween(TimestampMs from, TimestampMs to) const;
  int64_t pending_count() const { return pending_count_; }

  // ledger. Entries older than the ledger retention read as absent.
  absl::StatusOr<std::optional<LedgerEntry>> GetLedger(const ConversionIdentity& identity);
  absl::Status PutLedger(const ConversionIdentity& identity, const LedgerEntry& entry);

  // dedup: a key the deduplicator accepted in this batch (DedupBatch).
  absl::Status PutDedupKey(const DedupKey& key, TimestampMs event_time_ms);

  // ---- Flood counters and verdict journal ----
  // The flood rule's counters are shared by every task of the instance and
  // must survive restarts and replays: each task keeps the counts of its own
  // clicks per (IP, window) (family `flood`, key 'c' window_start ip), added
  // at Commit. A replayed click must get the verdict it got before, even
  // though its batch never committed (other partitions' clicks may
  // interleave differently on the replay), so every flood verdict of a batch
  // is journaled (key 'j' offset) BEFORE the batch's outputs are flushed
  // (WriteFloodJournal) and removed by the Commit that covers its offset.
  //
  // A click of this batch reached the flood rule (counted at Commit).
  void RecordFloodClick(const FloodClick& click);
  // Writes the verdicts recorded since the last journal write, directly (not
  // part of the batch; WAL, no fsync).
  absl::Status WriteFloodJournal();
  // The journaled verdict of the click at `click_offset`, if any.
  std::optional<FloodClick> JournaledFloodClick(int64_t click_offset) const;
  // Committed counts with window_start_ms >= since_ms, then every journal
  // entry at or above the committed clicks position (counted once each; the
  // ones below it are in the committed counts), for rebuilding the shared
  // counters.
  absl::Status ForEachFloodCount(
      int64_t since_ms, absl::FunctionRef<void(int64_t window_start_ms,
                                               const std::array<uint8_t, 16>& ip, uint64_t count)>
                            fn) const;

  // Applies every change since the last Commit/Discard, the watermarks and
  // `positions` in one atomic write. On error nothing is known to be applied:
  // the caller Discards and replays from the positions of the last
  // successful Commit. Commit = PrepareCommit + ApplyCommit(nullopt).
  absl::Status Commit(const std::vector<InputPosition>& positions);

  // ---- Changelog (docs/design.md §10) ----
  // The two halves of Commit around the changelog transaction: PrepareCommit
  // stages the positions, watermarks and flood counts into the uncommitted
  // batch (nothing is written); ForEachChangelogRecord then yields the
  // batch's changes as changelog records; ApplyCommit writes the batch
  // locally once the transaction that carried those records committed,
  // with `changelog_next` (the changelog offset after this batch's marker)
  // in the same atomic write. A Discard in between forgets all of it.
  absl::Status PrepareCommit(const std::vector<InputPosition>& positions);
  // Changelog key: one family byte + the family's key; value nullptr: the
  // key is deleted (a tombstone). Merged values are resolved to their
  // result (a restore Puts them). Local-only entries (the flood verdict
  // journal) are left out. Compensation records (AddCompensation) follow the
  // batch's own. Each key at most once. With options.expire_by_sweep, the
  // sweep's deletions of expired records (added to the batch here) follow
  // as tombstones: per family, twice as many committed records are examined
  // as the batch writes to it, from where the previous batch stopped, so
  // expired records are few next to the live ones.
  absl::Status ForEachChangelogRecord(
      absl::FunctionRef<absl::Status(std::string_view key, const std::string* value)> fn);
  absl::Status ApplyCommit(std::optional<int64_t> changelog_next);
  // The changelog offset up to which this store holds the changelog (after
  // the last applied marker); nullopt: none (a new or pre-changelog store).
  std::optional<int64_t> changelog_offset() const { return changelog_offset_; }
  // When that offset was written (wall clock, ms since the epoch); 0: unknown.
  int64_t changelog_time_ms() const { return changelog_time_ms_; }
  // Deletes every record and the checkpoint (format and partition stay):
  // the store is then restored from the changelog's start. REQUIRES: no
  // uncommitted changes; call ReloadCommitted() after.
  absl::Status Clear();
  // Restore: writes committed changelog records (as ForEachChangelogRecord
  // yields them) straight to the store, with `changelog_next`, in one
  // atomic write. REQUIRES: no uncommitted changes. Call ReloadCommitted()
  // once the restore is done.
  absl::Status ApplyChangelog(const std::vector<ChangelogRecordView>& records,
                              int64_t changelog_next);
  // Re-reads positions, watermarks, pending index and journal from the DB.
  absl::Status ReloadCommitted();
  // Changelog keys whose records belong to a changelog tail that never
  // completed (no marker): the next changelog batch of this task re-writes
  // their committed value (or a tombstone), so that any later restore,
  // which applies the stray records too, ends with the committed value.
  void AddCompensation(const std::vector<std::string>& changelog_keys);
  bool has_compensation() const { return !compensation_.empty(); }
  // Forgets every change since the last Commit (watermarks and pending count
  // included): the store is again exactly what a restart would open.
  void Discard();
  bool has_uncommitted_changes() const;

  // Committed positions (what Open found or the last Commit wrote).
  std::optional<int64_t> NextOffset(std::string_view topic) const;
  std::vector<InputPosition> positions() const;

  // ---- Committed data only, thread-safe ----

  absl::StatusOr<bool> ContainsDedupKey(const DedupKey& key) const;
  absl::Status ForEachDedupKeySince(TimestampMs since,
                                    absl::FunctionRef<void(const DedupKey&, TimestampMs)> fn) const;
  // Records physically present in a family, expired ones included (the
  // compaction filter has not necessarily run). For tests and operations.
  absl::StatusOr<uint64_t> CountStoredRecords(StoreFamily family) const;
  // Compacts every family now (runs the TTL filters). Tests and operations.
  absl::Status CompactAll();
  std::string directory() const { return dir_; }

 private:
  friend class StateStores;
  TaskStore(int32_t partition, std::string dir, const StateStoreOptions& options);
  absl::Status OpenDb(const std::shared_ptr<rocksdb::Cache>& cache,
                      const std::shared_ptr<rocksdb::WriteBufferManager>& wbm,
                      const std::shared_ptr<rocksdb::Statistics>& statistics, int max_open_files);
  absl::Status LoadMeta();
  rocksdb::ColumnFamilyHandle* cf(StoreFamily family) const {
    return handles_[static_cast<int>(family)].get();
  }
  // Get through the uncommitted batch. nullopt: absent.
  absl::StatusOr<std::optional<std::string>> Get(StoreFamily family, std::string_view key) const;
  // Visits keys >= start of `family` through the uncommitted batch while fn
  // returns true.
  absl::Status Scan(StoreFamily family, std::string_view start,
                    absl::FunctionRef<bool(std::string_view key, std::string_view value)> fn) const;
  void PublishCutoffs();
  // Clicks with event time below this are expired: click_retention_ms
  // behind the earliest conversion that can still be decided (see
  // StateStoreOptions::click_retention_ms), from the current or the
  // committed values.
  TimestampMs ClickCutoff() const;
  TimestampMs CommittedClickCutoff() const;

  const int32_t partition_;
  const std::string dir_;
  const StateStoreOptions options_;

  // Declaration order is destruction order reversed: the filters must
  // outlive the DB (compactions call them until the DB is closed), and every
  // column family handle must be destroyed before the DB.
  std::unique_ptr<join_internal::TtlFilter> click_filter_;
  std::unique_ptr<join_internal::TtlFilter> user_click_filter_;
  std::unique_ptr<join_internal::TtlFilter> ledger_filter_;
  std::unique_ptr<join_internal::TtlFilter> dedup_filter_;
  std::unique_ptr<join_internal::TtlFilter> flood_filter_;
  std::shared_ptr<rocksdb::MergeOperator> count_merge_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<std::unique_ptr<rocksdb::ColumnFamilyHandle>> handles_;  // by StoreFamily
  std::unique_ptr<rocksdb::WriteBatchWithIndex> batch_;

  // Current (including uncommitted changes) and committed values.
  TimestampMs click_wm_ = kNoWatermark;
  TimestampMs conversion_wm_ = kNoWatermark;
  TimestampMs dedup_wm_ = kNoWatermark;
  int64_t pending_count_ = 0;
  TimestampMs committed_click_wm_ = kNoWatermark;
  TimestampMs committed_conversion_wm_ = kNoWatermark;
  TimestampMs committed_dedup_wm_ = kNoWatermark;
  int64_t committed_pending_count_ = 0;
  std::map<std::string, int64_t, std::less<>> positions_;  // committed
  bool dirty_ = false;                                     // changes since the last Commit/Discard
  // (event time, pending key) of every pending record: current (with this
  // batch) and as of the last commit. See PendingWithPrefix.
  std::set<std::pair<TimestampMs, std::string>> pending_index_;
  std::set<std::pair<TimestampMs, std::string>> committed_pending_index_;
  std::set<std::string> pending_keys_;  // the same keys, in key order
  std::set<std::string> committed_pending_keys_;
  // Flood clicks of the current batch; those already journaled start at
  // flood_journaled_. journal_: every journal entry in the DB, by offset.
  std::vector<FloodClick> flood_batch_;
  size_t flood_journaled_ = 0;
  std::map<int64_t, FloodClick> journal_;
  // Between PrepareCommit and ApplyCommit: the positions after the batch
  // and the journal entries it covers.
  bool prepared_ = false;
  std::map<std::string, int64_t, std::less<>> prepared_positions_;
  std::vector<int64_t> prepared_covered_;
  std::optional<int64_t> changelog_offset_;  // committed
  int64_t changelog_time_ms_ = 0;
  std::set<std::string> compensation_;
  // The TTL compaction filter of each family (StoreFamily order), nullptr
  // for families without a TTL.
  std::array<join_internal::TtlFilter*, kStoreFamilyCount> Filters() const;
  // options.expire_by_sweep: deletes up to budget[family] examined records
  // whose event time is below the family's cutoff and that the batch does
  // not write (in_batch), in the batch, and yields their tombstones.
  absl::Status SweepExpired(
      const std::array<size_t, kStoreFamilyCount>& budget,
      absl::FunctionRef<bool(const std::string& changelog_key)> in_batch,
      absl::FunctionRef<absl::Status(std::string_view key, const std::string* value)> fn);
  // The expiry sweep's position per family (in memory: a restart begins
  // again at the start, which only repeats a pass).
  std::array<std::string, kStoreFamilyCount> sweep_cursor_;
};

// RocksDB's view of all stores of this process (tally_rocksdb_* metrics):
// sizes summed over the open stores and their column families; the tickers
// count since the process started (one Statistics object for all stores).
struct StateStoreStats {
  uint64_t sst_bytes = 0;                 // rocksdb.total-sst-files-size
  uint64_t memtable_bytes = 0;            // rocksdb.cur-size-all-mem-tables
  uint64_t pending_compaction_bytes = 0;  // rocksdb.estimate-pending-compaction-bytes
  uint64_t running_compactions = 0;       // rocksdb.num-running-compactions
  uint64_t stalled_stores = 0;            // writes stopped or delayed right now
  uint64_t block_cache_hits = 0;
  uint64_t block_cache_misses = 0;
  uint64_t stall_micros = 0;  // time writers spent stalled
  uint64_t compaction_bytes_written = 0;
  int open_stores = 0;
};

// All task stores of this process, and the DurableIdIndex over them.
class StateStores final : public DurableIdIndex {
 public:
  static absl::StatusOr<std::unique_ptr<StateStores>> Create(const StateStoreOptions& options);
  ~StateStores() override;  // closes every store (uncommitted changes are discarded)

  // Opens (creating if needed) the store of `partition`; the store stays
  // valid until Close/Delete of the partition or destruction. Opening an
  // open partition returns the same store.
  absl::StatusOr<TaskStore*> Open(int32_t partition);
  // Opens the stores of `partitions` that are not open yet, on up to
  // options.parallelism threads (an assignment of many tasks after a restart
  // is bound by RocksDB's recovery of each store). Best effort: a store
  // that fails to open here is not open, and Open reports why.
  void OpenMany(const std::vector<int32_t>& partitions);
  // Closes the store (revocation). Uncommitted changes are discarded. The
  // directory stays: a later assignment reopens it where it stood.
  absl::Status Close(int32_t partition);
  // Closes the store and deletes its directory (the partition moved to
  // another instance, which restores it from the changelog).
  absl::Status Delete(int32_t partition);
  TaskStore* Find(int32_t partition) const;  // nullptr when not open
  // Whether an open store answers for the DurableIdIndex (a standby's copy
  // of another instance's task does not: this instance decides nothing for
  // it). Open stores are indexed; Close resets it.
  void SetIndexed(int32_t partition, bool indexed);
  // The number of input partitions: state.max_open_files is split evenly
  // among that many stores. Call before the first Open.
  void SetExpectedStoreCount(int stores);
  std::vector<int32_t> open_partitions() const;

  // The directory of a partition's store.
  std::string PartitionDir(int32_t partition) const;
  // Bytes held by the shared block cache (memtables included, via the
  // WriteBufferManager's charge).
  uint64_t cache_usage_bytes() const;
  // Reads RocksDB properties of every open store (a few map lookups per
  // store, no I/O); any thread.
  StateStoreStats Stats() const;

  // DurableIdIndex: committed dedup keys of every open store. The
  // deduplicator is shared by all partitions, so a key is looked up in each
  // store; the dedup family's bloom filter makes a miss cost no disk read.
  // ForEachSince scans the stores on up to options.parallelism threads.
  absl::StatusOr<bool> Contains(const DedupKey& key) override;
  absl::Status ForEachSince(
      TimestampMs since,
      absl::FunctionRef<void(const DedupKey& key, TimestampMs event_time)> fn) override;

 private:
  explicit StateStores(const StateStoreOptions& options);
  int MaxOpenFilesPerStore() const;  // REQUIRES: mu_ held

  const StateStoreOptions options_;
  std::shared_ptr<rocksdb::Cache> cache_;
  std::shared_ptr<rocksdb::WriteBufferManager> write_buffer_manager_;
  // Tickers only (StatsLevel::kExceptHistogramOrTimers): per-core counters,
  // no clock reads on the write path.
  std::shared_ptr<rocksdb::Statistics> statistics_;
  // Exclusive: Open/Close/Delete (and OpenMany's insertions; the RocksDB
  // opens run unlocked on stores nobody else can see yet). Shared:
  // Contains/ForEachSince/Find. Open/OpenMany/Close/Delete are called from
  // the owner's thread only, so two opens of one directory never race.
  mutable std::shared_mutex mu_;
  std::map<int32_t, std::unique_ptr<TaskStore>> stores_;
  std::set<int32_t> unindexed_;
  int expected_stores_ = 1;
};

}  // namespace tally

#endif  // TALLY_PROCESSOR_JOIN_STATE_STORE_H_
