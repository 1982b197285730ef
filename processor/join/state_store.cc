#include "processor/join/state_store.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "processor/join/internal/codec.h"
#include "rocksdb/cache.h"
#include "rocksdb/compaction_filter.h"
#include "rocksdb/db.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/merge_operator.h"
#include "rocksdb/options.h"
#include "rocksdb/statistics.h"
#include "rocksdb/table.h"
#include "rocksdb/utilities/write_batch_with_index.h"
#include "rocksdb/write_buffer_manager.h"

namespace tally {

namespace join_internal {

// Drops records whose embedded event time is below the published cutoff.
// One instance per column family, shared by all compaction threads of its
// store: it only reads an atomic, so it is thread-safe. Relaxed loads are
// enough: a stale cutoff only keeps a record a little longer.
class TtlFilter final : public rocksdb::CompactionFilter {
 public:
  enum class TimeIn { kValue, kUserClickKey, kFloodCountKey };
  TtlFilter(const char* name, TimeIn time_in) : name_(name), time_in_(time_in) {}

  void set_cutoff(TimestampMs cutoff) { cutoff_.store(cutoff, std::memory_order_relaxed); }
  TimestampMs cutoff() const { return cutoff_.load(std::memory_order_relaxed); }
  // Off: compaction keeps everything (the expiry sweep deletes instead).
  void set_dropping(bool dropping) { dropping_ = dropping; }

  bool Filter(int /*level*/, const rocksdb::Slice& key, const rocksdb::Slice& value,
              std::string* /*new_value*/, bool* /*value_changed*/) const override {
    return dropping_ && Expired(key, value);
  }
  const char* Name() const override { return name_; }

  // Whether the record's embedded event time is below the cutoff.
  bool Expired(const rocksdb::Slice& key, const rocksdb::Slice& value) const {
    const TimestampMs cutoff = cutoff_.load(std::memory_order_relaxed);
    if (cutoff == kNoWatermark) return false;
    TimestampMs ts;
    bool ok;
    if (time_in_ == TimeIn::kValue) {
      ok = ValueEventTime(std::string_view(value.data(), value.size()), &ts);
    } else if (time_in_ == TimeIn::kFloodCountKey) {
      // Only counts expire; journal entries ('j') go at the Commit that
      // covers them.
      if (key.size() < 9 || key[0] != 'c') return false;
      Reader r(std::string_view(key.data() + 1, 8));
      ok = r.Time(&ts);
    } else {
      std::string_view click_id;
      ok = ParseUserClickKey(std::string_view(key.data(), key.size()), &ts, &click_id);
    }
    // A record this build cannot read (a newer version) is never dropped.
    return ok && ts < cutoff;
  }

 private:
  const char* const name_;
  const TimeIn time_in_;
  bool dropping_ = true;  // set before the DB opens, read by compactions
  std::atomic<TimestampMs> cutoff_{kNoWatermark};
};

// Sums 8-byte little-endian counters: flood counts are added to by Merge,
// without a read per click.
class CountMerge final : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice& /*key*/, const rocksdb::Slice* existing,
             const rocksdb::Slice& value, std::string* new_value,
             rocksdb::Logger* /*logger*/) const override {
    uint64_t sum = Decode(value);
    if (existing != nullptr) sum += Decode(*existing);
    *new_value = Encode(sum);
    return true;
  }
  const char* Name() const override { return "tally.count_add"; }

  static std::string Encode(uint64_t v) {
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
    return out;
  }
  static uint64_t Decode(const rocksdb::Slice& s) {
    if (s.size() != 8) return 0;
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<uint8_t>(s[i])} << (8 * i);
    return v;
  }
};

}  // namespace join_internal

namespace {

using join_internal::CountMerge;
using join_internal::TtlFilter;
namespace codec = join_internal;

constexpr int kDefaultFamilyIndex = kStoreFamilyCount;  // handles_[8]: "default", unused

// flood family keys.
std::string FloodCountKey(int64_t window_start_ms, const std::array<uint8_t, 16>& ip) {
  std::string key = "c";
  codec::PutTime(&key, window_start_ms);
  key.append(reinterpret_cast<const char*>(ip.data()), ip.size());
  return key;
}
std::string FloodJournalKey(int64_t offset) {
  std::string key = "j";
  codec::PutTime(&key, offset);  // big-endian, sign-flipped: sorts by offset
  return key;
}
std::string EncodeFloodJournal(const FloodClick& c) {
  std::string out;
  out.push_back(static_cast<char>(c.verdict));
  codec::PutTime(&out, c.window_start_ms);
  out.append(reinterpret_cast<const char*>(c.ip.data()), c.ip.size());
  return out;
}
bool DecodeFloodJournal(std::string_view key, std::string_view value, FloodClick* c) {
  if (key.size() != 9 || key[0] != 'j' || value.size() != 1 + 8 + 16) return false;
  codec::Reader kr(key.substr(1));
  if (!kr.Time(&c->click_offset)) return false;
  c->verdict = static_cast<uint8_t>(value[0]);
  codec::Reader vr(value.substr(1, 8));
  if (!vr.Time(&c->window_start_ms)) return false;
  std::copy(value.begin() + 9, value.end(), c->ip.begin());
  return true;
}

absl::Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = absl::StrCat("state store: ", absl::string_view(what.data(), what.size()), ": ",
                                 s.ToString());
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsNotFound()) return absl::NotFoundError(msg);
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(msg);
  if (s.IsIOError()) return absl::UnavailableError(msg);
  return absl::InternalError(msg);
}

rocksdb::Slice ToSlice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }
std::string_view ToView(const rocksdb::Slice& s) { return std::string_view(s.data(), s.size()); }

// cutoff = watermark - retention, saturating; kNoWatermark expires nothing.
TimestampMs Cutoff(TimestampMs watermark, int64_t retention_ms) {
  if (watermark == kNoWatermark) return kNoWatermark;
  if (watermark < std::numeric_limits<TimestampMs>::min() + retention_ms) return kNoWatermark;
  return watermark - retention_ms;
}

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// Families read by exact key get a bloom filter: most lookups miss (a click
// id not seen, a conversion identity not in the ledger, a dedup key in
// another partition's store), and the filter answers those from memory.
bool IsPointLookupFamily(StoreFamily family) {
  switch (family) {
    case StoreFamily::kClicks:
    case StoreFamily::kPending:
    case StoreFamily::kLedger:
    case StoreFamily::kDedup:
      return true;
    default:
      return false;
  }
}

rocksdb::ColumnFamilyOptions FamilyOptions(StoreFamily family,
                                           const std::shared_ptr<rocksdb::Cache>& cache,
                                           const StateStoreOptions& options,
                                           const rocksdb::CompactionFilter* filter) {
  rocksdb::ColumnFamilyOptions cf;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache;
  // Index and filter blocks in the shared cache (not on the heap per open
  // file), so that block_cache_bytes bounds them as well.
  table.cache_index_and_filter_blocks = true;
  table.cache_index_and_filter_blocks_with_high_priority = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  if (IsPointLookupFamily(family)) {
    table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  }
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  cf.compaction_filter = filter;
  cf.level_compaction_dynamic_level_bytes = true;
  // Memtables are capped globally by the WriteBufferManager; a per-family
  // size well below the cap lets several families and stores share it.
  cf.write_buffer_size =
      std::clamp<uint64_t>(options.write_buffer_bytes / 4, 1ull << 20, 64ull << 20);
  return cf;
}

}  // namespace

const char* StoreFamilyName(StoreFamily family) {
  switch (family) {
    case StoreFamily::kClicks:
      return "clicks";
    case StoreFamily::kUserClicks:
      return "user_clicks";
    case StoreFamily::kPending:
      return "pending";
    case StoreFamily::kPendingByTime:
      return "pending_by_time";
    case StoreFamily::kLedger:
      return "ledger";
    case StoreFamily::kDedup:
      return "dedup";
    case StoreFamily::kMeta:
      return "meta";
    case StoreFamily::kFlood:
      return "flood";
  }
  return "?";
}

absl::Status StateStoreOptions::Validate() const {
  if (dir.empty()) return absl::InvalidArgumentError("state.dir: must not be empty");
  if (block_cache_bytes == 0) {
    return absl::InvalidArgumentError("state.block_cache_bytes: must be > 0");
  }
  // Memtables are charged to the block cache: a write buffer as large as the
  // cache would leave no room for data blocks.
  if (write_buffer_bytes == 0 || write_buffer_bytes >= block_cache_bytes) {
    return absl::InvalidArgumentError(
        "state.write_buffer_bytes: must be > 0 and < state.block_cache_bytes (memtables are "
        "charged to the block cache)");
  }
  if (max_open_files == 0 || max_open_files < -1) {
    return absl::InvalidArgumentError("state.max_open_files: must be -1 or > 0");
  }
  if (click_retention_ms <= 0 || ledger_retention_ms <= 0 || dedup_retention_ms <= 0) {
    return absl::InvalidArgumentError("state: retentions must be > 0");
  }
  if (conversion_lateness_ms < 0) {
    return absl::InvalidArgumentError("processing.max_conversion_lateness: must be >= 0");
  }
  return absl::OkStatus();
}

// ---- TaskStore ----------------------------------------------------------

TaskStore::TaskStore(int32_t partition, std::string dir, const StateStoreOptions& options)
    : partition_(partition),
      dir_(std::move(dir)),
      options_(options),
      click_filter_(std::make_unique<TtlFilter>("tally.ttl.clicks", TtlFilter::TimeIn::kValue)),
      user_click_filter_(
          std::make_unique<TtlFilter>("tally.ttl.user_clicks", TtlFilter::TimeIn::kUserClickKey)),
      ledger_filter_(std::make_unique<TtlFilter>("tally.ttl.ledger", TtlFilter::TimeIn::kValue)),
      dedup_filter_(std::make_unique<TtlFilter>("tally.ttl.dedup", TtlFilter::TimeIn::kValue)),
      flood_filter_(
          std::make_unique<TtlFilter>("tally.ttl.flood", TtlFilter::TimeIn::kFloodCountKey)),
      count_merge_(std::make_shared<CountMerge>()),
      // overwrite_key: the batch index keeps only the latest write of a key,
      // so reads through it see exactly what Commit will apply.
      batch_(std::make_unique<rocksdb::WriteBatchWithIndex>(rocksdb::BytewiseComparator(), 0,
                                                            /*overwrite_key=*/true)) {}

TaskStore::~TaskStore() {
  // Uncommitted changes die with batch_. Handles go before the DB (member
  // order); nothing else to do.
  batch_.reset();
  handles_.clear();
  db_.reset();
}

std::array<TtlFilter*, kStoreFamilyCount> TaskStore::Filters() const {
  return {click_filter_.get(),  user_click_filter_.get(), nullptr, nullptr,
          ledger_filter_.get(), dedup_filter_.get(),      nullptr, flood_filter_.get()};
}

absl::Status TaskStore::OpenDb(const std::shared_ptr<rocksdb::Cache>& cache,
                               const std::shared_ptr<rocksdb::WriteBufferManager>& wbm,
                               const std::shared_ptr<rocksdb::Statistics>& statistics,
                               int max_open_files) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("state store: cannot create ", dir_, ": ", ec.message()));
  }
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.write_buffer_manager = wbm;
  db_options.statistics = statistics;
  db_options.max_open_files = max_open_files;
  db_options.keep_log_file_num = 3;
  db_options.max_log_file_size = 16 << 20;

  const std::array<TtlFilter*, kStoreFamilyCount> filters = Filters();
  for (TtlFilter* f : filters) {
    if (f != nullptr) f->set_dropping(!options_.expire_by_sweep);
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (int i = 0; i < kStoreFamilyCount; ++i) {
    auto family = static_cast<StoreFamily>(i);
    descriptors.emplace_back(StoreFamilyName(family),
                             FamilyOptions(family, cache, options_, filters[i]));
    if (family == StoreFamily::kFlood) descriptors.back().options.merge_operator = count_merge_;
  }
  // RocksDB always has "default"; it must be opened, it holds nothing.
  descriptors.emplace_back(rocksdb::kDefaultColumnFamilyName,
                           FamilyOptions(StoreFamily::kMeta, cache, options_, nullptr));

  std::vector<rocksdb::ColumnFamilyHandle*> raw_handles;
  rocksdb::DB* raw_db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, dir_, descriptors, &raw_handles, &raw_db);
  if (!s.ok()) return FromRocks(s, absl::StrCat("open ", dir_));
  db_.reset(raw_db);
  for (rocksdb::ColumnFamilyHandle* h : raw_handles) handles_.emplace_back(h);
  (void)kDefaultFamilyIndex;
  return LoadMeta();
}

absl::Status TaskStore::LoadMeta() {
  rocksdb::ColumnFamilyHandle* meta = cf(StoreFamily::kMeta);
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), meta, ToSlice(codec::kMetaFormat), &value);
  if (s.IsNotFound()) {
    // A new store: stamp the format and the owner partition, durably, before
    // anything else is written.
    std::string format, partition;
    codec::PutVarint(&format, codec::kFormatVersion);
    codec::PutZigZag(&partition, partition_);
    rocksdb::WriteBatch init;
    init.Put(meta, ToSlice(codec::kMetaFormat), format);
    init.Put(meta, ToSlice(codec::kMetaPartition), partition);
    rocksdb::WriteOptions wo;
    wo.sync = true;
    return FromRocks(db_->Write(wo, &init), "initialise meta");
  }
  if (!s.ok()) return FromRocks(s, "read meta");
  uint64_t format;
  codec::Reader fr(value);
  if (!fr.Varint(&format)) return absl::DataLossError("state store: corrupt meta/format");
  if (format != codec::kFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat("state store ", dir_, ": format version ",
                                                      format, ", this build reads ",
                                                      codec::kFormatVersion));
  }

  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), meta));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string_view key = ToView(it->key());
    codec::Reader r(ToView(it->value()));
    if (key == codec::kMetaPartition) {
      int64_t p;
      if (!r.ZigZag(&p)) return absl::DataLossError("state store: corrupt meta/partition");
      if (p != partition_) {
        return absl::FailedPreconditionError(
            absl::StrCat("state store ", dir_, " belongs to partition ", p, ", not ", partition_));
      }
    } else if (key == codec::kMetaClickWatermark) {
      if (!r.Time(&committed_click_wm_)) return absl::DataLossError("state store: corrupt wm");
    } else if (key == codec::kMetaConversionWatermark) {
      if (!r.Time(&committed_conversion_wm_)) {
        return absl::DataLossError("state store: corrupt wm");
      }
    } else if (key == codec::kMetaDedupWatermark) {
      if (!r.Time(&committed_dedup_wm_)) return absl::DataLossError("state store: corrupt wm");
    } else if (key == codec::kMetaChangelogTime) {
      if (!r.ZigZag(&changelog_time_ms_)) {
        return absl::DataLossError("state store: corrupt changelog time");
      }
    } else if (key == codec::kMetaChangelogNext) {
      int64_t next;
      if (!r.ZigZag(&next)) return absl::DataLossError("state store: corrupt changelog offset");
      changelog_offset_ = next;
    } else if (StartsWith(key, codec::kMetaOffsetPrefix)) {
      int64_t offset;
      if (!r.ZigZag(&offset)) return absl::DataLossError("state store: corrupt offset");
      positions_[std::string(key.substr(codec::kMetaOffsetPrefix.size()))] = offset;
    }
  }
  if (!it->status().ok()) return FromRocks(it->status(), "read meta");

  // The pending count is derived, not stored: counting the time index once
  // per open cannot drift from the records (it is bounded by
  // max_pending_conversions).
  int64_t count = 0;
  committed_pending_index_.clear();
  committed_pending_keys_.clear();
  it.reset(db_->NewIterator(rocksdb::ReadOptions(), cf(StoreFamily::kPendingByTime)));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    TimestampMs ts;
    std::string_view pending_key;
    if (!codec::ParsePendingTimeKey(ToView(it->key()), &ts, &pending_key)) {
      return absl::DataLossError("state store: corrupt pending_by_time key");
    }
    committed_pending_index_.emplace(ts, std::string(pending_key));
    committed_pending_keys_.emplace(pending_key);
    ++count;
  }
  if (!it->status().ok()) return FromRocks(it->status(), "count pending");
  committed_pending_count_ = count;

  journal_.clear();
  it.reset(db_->NewIterator(rocksdb::ReadOptions(), cf(StoreFamily::kFlood)));
  for (it->Seek("j"); it->Valid() && StartsWith(ToView(it->key()), "j"); it->Next()) {
    FloodClick click;
    if (!DecodeFloodJournal(ToView(it->key()), ToView(it->value()), &click)) {
      return absl::DataLossError("state store: corrupt flood journal entry");
    }
    journal_[click.click_offset] = click;
  }
  if (!it->status().ok()) return FromRocks(it->status(), "read flood journal");
  Discard();  // current := committed
  PublishCutoffs();
  return absl::OkStatus();
}

namespace {

// The earliest event time a conversion still to be decided can have: the
// oldest pending one, or the conversions input's progress minus the
// lateness it may have; kNoWatermark while no conversion was seen.
TimestampMs EarliestUndecided(TimestampMs conversion_wm, int64_t lateness_ms,
                              const std::set<std::pair<TimestampMs, std::string>>& pending) {
  if (conversion_wm == kNoWatermark) return kNoWatermark;
  TimestampMs earliest = Cutoff(conversion_wm, lateness_ms);
  if (!pending.empty()) earliest = std::min(earliest, pending.begin()->first);
  return earliest;
}

}  // namespace

TimestampMs TaskStore::ClickCutoff() const {
  return Cutoff(EarliestUndecided(conversion_wm_, options_.conversion_lateness_ms, pending_index_),
                options_.click_retention_ms);
}

TimestampMs TaskStore::CommittedClickCutoff() const {
  return Cutoff(EarliestUndecided(committed_conversion_wm_, options_.conversion_lateness_ms,
                                  committed_pending_index_),
                options_.click_retention_ms);
}

void TaskStore::PublishCutoffs() {
  click_filter_->set_cutoff(CommittedClickCutoff());
  user_click_filter_->set_cutoff(CommittedClickCutoff());
  ledger_filter_->set_cutoff(Cutoff(committed_conversion_wm_, options_.ledger_retention_ms));
  dedup_filter_->set_cutoff(Cutoff(committed_dedup_wm_, options_.dedup_retention_ms));
  flood_filter_->set_cutoff(Cutoff(committed_click_wm_, options_.flood_retention_ms));
}

void TaskStore::RecordFloodClick(const FloodClick& click) {
  flood_batch_.push_back(click);
  dirty_ = true;
}

absl::Status TaskStore::WriteFloodJournal() {
  if (flood_journaled_ == flood_batch_.size()) return absl::OkStatus();
  rocksdb::WriteBatch journal;
  rocksdb::ColumnFamilyHandle* flood = cf(StoreFamily::kFlood);
  for (size_t i = flood_journaled_; i < flood_batch_.size(); ++i) {
    const FloodClick& c = flood_batch_[i];
    rocksdb::Status s = journal.Put(flood, FloodJournalKey(c.click_offset), EncodeFloodJournal(c));
    if (!s.ok()) return FromRocks(s, "flood journal");
  }
  // Not synced: a process crash keeps it (page cache); what a machine crash
  // can cost is described in docs/design.md.
  rocksdb::Status s = db_->Write(rocksdb::WriteOptions(), &journal);
  if (!s.ok()) return FromRocks(s, "flood journal");
  for (size_t i = flood_journaled_; i < flood_batch_.size(); ++i) {
    journal_[flood_batch_[i].click_offset] = flood_batch_[i];
  }
  flood_journaled_ = flood_batch_.size();
  return absl::OkStatus();
}

std::optional<FloodClick> TaskStore::JournaledFloodClick(int64_t click_offset) const {
  auto it = journal_.find(click_offset);
  if (it == journal_.end()) return std::nullopt;
  return it->second;
}

absl::Status TaskStore::ForEachFloodCount(
    int64_t since_ms,
    absl::FunctionRef<void(int64_t, const std::array<uint8_t, 16>&, uint64_t)> fn) const {
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), cf(StoreFamily::kFlood)));
  for (it->Seek(ToSlice("c" + codec::TimeBytes(since_ms)));
       it->Valid() && StartsWith(ToView(it->key()), "c"); it->Next()) {
    std::string_view key = ToView(it->key());
    if (key.size() != 1 + 8 + 16) return absl::DataLossError("state store: corrupt flood key");
    int64_t window_start;
    codec::Reader r(key.substr(1, 8));
    if (!r.Time(&window_start)) return absl::DataLossError("state store: corrupt flood key");
    std::array<uint8_t, 16> ip;
    std::copy(key.begin() + 9, key.end(), ip.begin());
    fn(window_start, ip, CountMerge::Decode(it->value()));
  }
  if (!it->status().ok()) return FromRocks(it->status(), "scan flood counts");
  // Entries below the committed clicks position are already in the
  // committed counts: their batch committed without the local write that
  // deletes them (kill -9 after the transaction; the restore brought its
  // records, counts included, from the changelog). The next Commit deletes
  // them; until then they must not count twice.
  auto position = positions_.find(options_.clicks_topic);
  const int64_t covered_below =
      position == positions_.end() ? std::numeric_limits<int64_t>::min() : position->second;
  for (auto j = journal_.lower_bound(covered_below); j != journal_.end(); ++j) {
    const FloodClick& click = j->second;
    if (click.window_start_ms >= since_ms) fn(click.window_start_ms, click.ip, 1);
  }
  return absl::OkStatus();
}

void TaskStore::AdvanceClickWatermark(TimestampMs t) {
  if (t > click_wm_) {
    click_wm_ = t;
    dirty_ = true;
  }
}

void TaskStore::AdvanceConversionWatermark(TimestampMs t) {
  if (t > conversion_wm_) {
    conversion_wm_ = t;
    dirty_ = true;
  }
}

absl::StatusOr<std::optional<std::string>> TaskStore::Get(StoreFamily family,
                                                          std::string_view key) const {
  std::string value;
  rocksdb::Status s = batch_->GetFromBatchAndDB(db_.get(), rocksdb::ReadOptions(), cf(family),
                                                ToSlice(key), &value);
  if (s.IsNotFound()) return std::nullopt;
  if (!s.ok()) return FromRocks(s, absl::StrCat("get ", StoreFamilyName(family)));
  return value;
}

absl::Status TaskStore::Scan(
    StoreFamily family, std::string_view start,
    absl::FunctionRef<bool(std::string_view key, std::string_view value)> fn) const {
  // The batch iterator merges the uncommitted writes (deletes included)
  // over the DB's view; it takes ownership of the base iterator.
  std::unique_ptr<rocksdb::Iterator> it(batch_->NewIteratorWithBase(
      cf(family), db_->NewIterator(rocksdb::ReadOptions(), cf(family))));
  for (it->Seek(ToSlice(start)); it->Valid(); it->Next()) {
    if (!fn(ToView(it->key()), ToView(it->value()))) break;
  }
  return FromRocks(it->status(), absl::StrCat("scan ", StoreFamilyName(family)));
}

absl::StatusOr<std::optional<ClickRecord>> TaskStore::GetClick(std::string_view click_id) {
  absl::StatusOr<std::optional<std::string>> value = Get(StoreFamily::kClicks, click_id);
  if (!value.ok()) return value.status();
  if (!value->has_value()) return std::nullopt;
  absl::StatusOr<ClickRecord> click = codec::DecodeClick(click_id, **value);
  if (!click.ok()) return click.status();
  // Compaction is lazy: an expired click may still be stored.
  if (click->event_time_ms < ClickCutoff()) return std::nullopt;
  return *std::move(click);
}

absl::Status TaskStore::PutClick(const ClickRecord& click) {
  rocksdb::Status s =
      batch_->Put(cf(StoreFamily::kClicks), ToSlice(click.click_id), codec::EncodeClick(click));
  if (s.ok() && !click.user_id.empty()) {
    // The index entry carries no value: the click record is authoritative
    // and is read (and cross-checked) on every index hit.
    s = batch_->Put(
        cf(StoreFamily::kUserClicks),
        codec::UserClickKey(click.user_id, click.offer_id, click.event_time_ms, click.click_id),
        rocksdb::Slice());
  }
  dirty_ = true;
  return FromRocks(s, "put click");
}

absl::StatusOr<std::vector<ClickRecord>> TaskStore::UserClicks(std::string_view user_id,
                                                               std::string_view offer_id,
                                                               TimestampMs from, TimestampMs to) {
  const std::string prefix = codec::UserClickPrefix(user_id, offer_id);
  from = std::max(from, ClickCutoff());
  std::vector<std::string> click_ids;
  absl::Status scan = Scan(
      StoreFamily::kUserClicks, prefix + codec::TimeBytes(from),
      [&](std::string_view key, std::string_view) {
        TimestampMs ts;
        std::string_view click_id;
        if (!StartsWith(key, prefix) || !codec::ParseUserClickKey(key, &ts, &click_id) || ts > to) {
          return false;
        }
        click_ids.emplace_back(click_id);
        return true;
      });
  if (!scan.ok()) return scan;
  std::vector<ClickRecord> clicks;
  for (const std::string& id : click_ids) {
    absl::StatusOr<std::optional<ClickRecord>> click = GetClick(id);
    if (!click.ok()) return click.status();
    // An index entry whose click was since overwritten (the same click id
    // re-sent with other fields after the dedup horizon) is stale: skip it.
    if (!click->has_value() || (*click)->user_id != user_id || (*click)->offer_id != offer_id ||
        (*click)->event_time_ms < from || (*click)->event_time_ms > to) {
      continue;
    }
    clicks.push_back(**std::move(click));
  }
  return clicks;
}

absl::StatusOr<bool> TaskStore::HasUserClicks(std::string_view user_id, std::string_view offer_id) {
  absl::StatusOr<std::vector<ClickRecord>> clicks =
      UserClicks(user_id, offer_id, std::numeric_limits<TimestampMs>::min(),
                 std::numeric_limits<TimestampMs>::max());
  if (!clicks.ok()) return clicks.status();
  return !clicks->empty();
}

absl::StatusOr<std::optional<PendingConversion>> TaskStore::GetPending(std::string_view key) {
  absl::StatusOr<std::optional<std::string>> value = Get(StoreFamily::kPending, key);
  if (!value.ok()) return value.status();
  if (!value->has_value()) return std::nullopt;
  absl::StatusOr<PendingConversion> pending = codec::DecodePending(**value);
  if (!pending.ok()) return pending.status();
  return *std::move(pending);
}

absl::Status TaskStore::InsertPending(std::string_view key, const PendingConversion& pending) {
  rocksdb::Status s =
      batch_->Put(cf(StoreFamily::kPending), ToSlice(key), codec::EncodePending(pending));
  if (s.ok()) {
    s = batch_->Put(cf(StoreFamily::kPendingByTime),
                    codec::PendingTimeKey(pending.conversion.event_time_ms, key), rocksdb::Slice());
  }
  if (s.ok()) {
    ++pending_count_;
    pending_index_.emplace(pending.conversion.event_time_ms, std::string(key));
    pending_keys_.emplace(key);
  }
  dirty_ = true;
  return FromRocks(s, "insert pending");
}

absl::Status TaskStore::UpdatePending(std::string_view key, const PendingConversion& pending) {
  dirty_ = true;
  return FromRocks(
      batch_->Put(cf(StoreFamily::kPending), ToSlice(key), codec::EncodePending(pending)),
      "update pending");
}

absl::Status TaskStore::DeletePending(std::string_view key, TimestampMs event_time_ms) {
  rocksdb::Status s = batch_->Delete(cf(StoreFamily::kPending), ToSlice(key));
  if (s.ok()) {
    s = batch_->Delete(cf(StoreFamily::kPendingByTime), codec::PendingTimeKey(event_time_ms, key));
  }
  if (s.ok()) {
    --pending_count_;
    pending_index_.erase({event_time_ms, std::string(key)});
    pending_keys_.erase(std::string(key));
  }
  dirty_ = true;
  return FromRocks(s, "delete pending");
}

// The pending lookups below run on every click (a click may complete a
// waiting conversion, and its time may end others' grace), so they are
// answered from an in-memory mirror of the pending keys instead of a
// RocksDB iterator per call (an iterator costs microseconds and, with many
// stores, table-cache churn). The mirror is tiny (bounded by the pending
// share), rebuilt at open from `pending_by_time`, and rolled back by Discard.
absl::StatusOr<std::vector<std::pair<std::string, PendingConversion>>> TaskStore::PendingWithPrefix(
    std::string_view prefix) {
  std::vector<std::pair<std::string, PendingConversion>> out;
  for (auto it = pending_keys_.lower_bound(std::string(prefix));
       it != pending_keys_.end() && StartsWith(*it, prefix); ++it) {
    const std::string& key = *it;
    absl::StatusOr<std::optional<PendingConversion>> pending = GetPending(key);
    if (!pending.ok()) return pending.status();
    if (!pending->has_value()) {
      return absl::DataLossError("state store: pending index names a missing record");
    }
    out.emplace_back(key, **std::move(pending));
  }
  return out;
}

absl::StatusOr<std::optional<TaskStore::PendingRef>> TaskStore::OldestPending() {
  if (pending_index_.empty()) return std::nullopt;
  const auto& [ts, key] = *pending_index_.begin();
  return PendingRef{ts, key};
}

absl::StatusOr<std::vector<TaskStore::PendingRef>> TaskStore::PendingBefore(TimestampMs bound) {
  std::vector<PendingRef> out;
  for (const auto& [ts, key] : pending_index_) {
    if (ts >= bound) break;
    out.push_back(PendingRef{ts, key});
  }
  return out;
}

std::vector<TaskStore::PendingRef> TaskStore::PendingBetween(TimestampMs from,
                                                             TimestampMs to) const {
  std::vector<PendingRef> out;
  for (auto it = pending_index_.lower_bound({from, std::string()});
       it != pending_index_.end() && it->first < to; ++it) {
    out.push_back(PendingRef{it->first, it->second});
  }
  return out;
}

absl::StatusOr<std::optional<LedgerEntry>> TaskStore::GetLedger(
    const ConversionIdentity& identity) {
  absl::StatusOr<std::optional<std::string>> value =
      Get(StoreFamily::kLedger, codec::LedgerKey(identity));
  if (!value.ok()) return value.status();
  if (!value->has_value()) return std::nullopt;
  absl::StatusOr<LedgerEntry> entry = codec::DecodeLedger(identity, **value);
  if (!entry.ok()) return entry.status();
  if (entry->conversion_time_ms < Cutoff(conversion_wm_, options_.ledger_retention_ms)) {
    return std::nullopt;
  }
  return *std::move(entry);
}

absl::Status TaskStore::PutLedger(const ConversionIdentity& identity, const LedgerEntry& entry) {
  dirty_ = true;
  return FromRocks(
      batch_->Put(cf(StoreFamily::kLedger), codec::LedgerKey(identity), codec::EncodeLedger(entry)),
      "put ledger");
}

absl::Status TaskStore::PutDedupKey(const DedupKey& key, TimestampMs event_time_ms) {
  dedup_wm_ = std::max(dedup_wm_, event_time_ms);
  dirty_ = true;
  return FromRocks(batch_->Put(cf(StoreFamily::kDedup), ToSlice(key.encoded()),
                               codec::EncodeDedupValue(event_time_ms)),
                   "put dedup key");
}

absl::Status TaskStore::Commit(const std::vector<InputPosition>& positions) {
  if (absl::Status s = PrepareCommit(positions); !s.ok()) return s;
  return ApplyCommit(std::nullopt);
}

absl::Status TaskStore::PrepareCommit(const std::vector<InputPosition>& positions) {
  if (prepared_) return absl::FailedPreconditionError("state store: batch prepared twice");
  rocksdb::ColumnFamilyHandle* meta = cf(StoreFamily::kMeta);
  rocksdb::Status s;
  // Positions only move forward: a replayed batch that the state already
  // covers (its events were skipped) must not pull them back, or every
  // later replayed event would be decided again against state that holds
  // it.
  std::map<std::string, int64_t, std::less<>> next = positions_;
  for (const InputPosition& p : positions) {
    auto [it, inserted] = next.try_emplace(p.topic, p.next_offset);
    if (!inserted && p.next_offset <= it->second) continue;
    it->second = p.next_offset;
    std::string value;
    codec::PutZigZag(&value, p.next_offset);
    s = batch_->Put(meta, std::string(codec::kMetaOffsetPrefix) + p.topic, value);
    if (!s.ok()) return FromRocks(s, "commit");
  }
  rocksdb::ColumnFamilyHandle* flood = cf(StoreFamily::kFlood);
  const std::string one = CountMerge::Encode(1);
  for (const FloodClick& c : flood_batch_) {
    s = batch_->Merge(flood, FloodCountKey(c.window_start_ms, c.ip), one);
    if (!s.ok()) return FromRocks(s, "commit");
  }
  // The journal entries this commit covers (every click below the clicks
  // position) are counted now; the topic is the one flood clicks come from.
  std::vector<int64_t> covered;
  if (!journal_.empty() || flood_journaled_ < flood_batch_.size()) {
    auto clicks = next.find(options_.clicks_topic);
    const int64_t clicks_next =
        clicks == next.end() ? std::numeric_limits<int64_t>::min() : clicks->second;
    for (const auto& [offset, click] : journal_) {
      if (offset >= clicks_next) break;
      covered.push_back(offset);
      s = batch_->Delete(flood, FloodJournalKey(offset));
      if (!s.ok()) return FromRocks(s, "commit");
    }
  }
  const std::pair<std::string_view, TimestampMs> watermarks[] = {
      {codec::kMetaClickWatermark, click_wm_},
      {codec::kMetaConversionWatermark, conversion_wm_},
      {codec::kMetaDedupWatermark, dedup_wm_}};
  for (const auto& [key, wm] : watermarks) {
    if (wm == kNoWatermark) continue;
    s = batch_->Put(meta, ToSlice(key), codec::TimeBytes(wm));
    if (!s.ok()) return FromRocks(s, "commit");
  }
  prepared_positions_ = std::move(next);
  prepared_covered_ = std::move(covered);
  prepared_ = true;
  return absl::OkStatus();
}

namespace {

// Collects a WriteBatch's operations per changelog key (the last one wins:
// the batch index reads the same way).
class ChangelogCollector final : public rocksdb::WriteBatch::Handler {
 public:
  enum class Op { kPut, kDelete, kMerge };
  explicit ChangelogCollector(const std::map<uint32_t, StoreFamily>& families)
      : families_(families) {}

  rocksdb::Status PutCF(uint32_t cf, const rocksdb::Slice& key,
                        const rocksdb::Slice& value) override {
    Add(cf, key, Op::kPut, value);
    return rocksdb::Status::OK();
  }
  rocksdb::Status DeleteCF(uint32_t cf, const rocksdb::Slice& key) override {
    Add(cf, key, Op::kDelete, {});
    return rocksdb::Status::OK();
  }
  rocksdb::Status SingleDeleteCF(uint32_t cf, const rocksdb::Slice& key) override {
    Add(cf, key, Op::kDelete, {});
    return rocksdb::Status::OK();
  }
  rocksdb::Status MergeCF(uint32_t cf, const rocksdb::Slice& key,
                          const rocksdb::Slice& /*value*/) override {
    Add(cf, key, Op::kMerge, {});
    return rocksdb::Status::OK();
  }

  struct Entry {
    StoreFamily family;
    std::string key;  // the family's own key
    Op op;
    std::string value;
  };
  std::map<std::string, Entry>& entries() { return entries_; }

 private:
  void Add(uint32_t cf, const rocksdb::Slice& key, Op op, const rocksdb::Slice& value) {
    auto family = families_.find(cf);
    if (family == families_.end()) return;
    std::string_view k(key.data(), key.size());
    // The verdict journal is local: it pins verdicts for replays of this
    // store's own input, and means nothing to a restored copy.
    if (family->second == StoreFamily::kFlood && StartsWith(k, "j")) return;
    std::string changelog_key(1, static_cast<char>(family->second));
    changelog_key.append(k);
    Entry& e = entries_[changelog_key];
    e.family = family->second;
    e.key.assign(k);
    // A merge after a put or delete of the same key still resolves to the
    // batch's final value, read through the batch below.
    e.op = op;
    e.value.assign(value.data(), value.size());
  }

  const std::map<uint32_t, StoreFamily>& families_;
  std::map<std::string, Entry> entries_;
};

}  // namespace

absl::Status TaskStore::ForEachChangelogRecord(
    absl::FunctionRef<absl::Status(std::string_view key, const std::string* value)> fn) {
  std::map<uint32_t, StoreFamily> families;
  for (int i = 0; i < kStoreFamilyCount; ++i) {
    families[handles_[i]->GetID()] = static_cast<StoreFamily>(i);
  }
  ChangelogCollector collector(families);
  rocksdb::Status s = batch_->GetWriteBatch()->Iterate(&collector);
  if (!s.ok()) return FromRocks(s, "changelog records");
  for (auto& [changelog_key, e] : collector.entries()) {
    if (e.op == ChangelogCollector::Op::kMerge) {
      std::string merged;
      s = batch_->GetFromBatchAndDB(db_.get(), rocksdb::ReadOptions(), cf(e.family), e.key,
                                    &merged);
      if (s.IsNotFound()) {
        e.op = ChangelogCollector::Op::kDelete;
      } else if (!s.ok()) {
        return FromRocks(s, "changelog merge value");
      } else {
        e.op = ChangelogCollector::Op::kPut;
        e.value = std::move(merged);
      }
    }
    absl::Status st = fn(changelog_key, e.op == ChangelogCollector::Op::kPut ? &e.value : nullptr);
    if (!st.ok()) return st;
  }
  if (options_.expire_by_sweep) {
    // Twice what the batch writes: a family of S records, written at r per
    // batch, is passed over every S / 2r batches, so expired records wait
    // at most half a pass: S settles near 4/3 of the live records (with
    // once: twice).
    std::array<size_t, kStoreFamilyCount> written{};
    for (const auto& [changelog_key, e] : collector.entries()) {
      written[static_cast<size_t>(e.family)] += 2;
    }
    absl::Status st = SweepExpired(
        written, [&](const std::string& k) { return collector.entries().contains(k); }, fn);
    if (!st.ok()) return st;
  }
  for (const std::string& changelog_key : compensation_) {
    if (collector.entries().contains(changelog_key)) continue;
    if (changelog_key.empty() || static_cast<uint8_t>(changelog_key[0]) >= kStoreFamilyCount) {
      continue;
    }
    const auto family = static_cast<StoreFamily>(changelog_key[0]);
    std::string value;
    s = db_->Get(rocksdb::ReadOptions(), cf(family),
                 ToSlice(std::string_view(changelog_key).substr(1)), &value);
    if (!s.ok() && !s.IsNotFound()) return FromRocks(s, "changelog compensation");
    absl::Status st = fn(changelog_key, s.IsNotFound() ? nullptr : &value);
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

absl::Status TaskStore::SweepExpired(
    const std::array<size_t, kStoreFamilyCount>& budget,
    absl::FunctionRef<bool(const std::string& changelog_key)> in_batch,
    absl::FunctionRef<absl::Status(std::string_view key, const std::string* value)> fn) {
  const std::array<TtlFilter*, kStoreFamilyCount> filters = Filters();
  rocksdb::ReadOptions ro;
  ro.fill_cache = false;  // a pass over old records must not evict the hot ones
  std::string changelog_key;
  for (int i = 0; i < kStoreFamilyCount; ++i) {
    if (filters[i] == nullptr || budget[i] == 0) continue;
    const auto family = static_cast<StoreFamily>(i);
    rocksdb::ColumnFamilyHandle* handle = cf(family);
    std::string& cursor = sweep_cursor_[i];
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, handle));
    it->Seek(cursor);
    bool wrapped = cursor.empty();
    for (size_t examined = 0; examined < budget[i]; ++examined) {
      if (!it->Valid()) {
        if (!it->status().ok()) return FromRocks(it->status(), "expiry sweep");
        if (wrapped) break;  // the whole family in one call
        wrapped = true;
        it->SeekToFirst();
        if (!it->Valid()) break;
      }
      if (filters[i]->Expired(it->key(), it->value())) {
        changelog_key.assign(1, static_cast<char>(family));
        changelog_key.append(it->key().data(), it->key().size());
        // Written by this batch (a fresh record under an old key, a merge):
        // the batch's own record stands.
        if (!in_batch(changelog_key)) {
          rocksdb::Status s = batch_->Delete(handle, it->key());
          if (!s.ok()) return FromRocks(s, "expiry sweep");
          if (absl::Status st = fn(changelog_key, nullptr); !st.ok()) return st;
        }
      }
      it->Next();
    }
    cursor = it->Valid() ? it->key().ToString() : std::string();
    if (!it->status().ok()) return FromRocks(it->status(), "expiry sweep");
  }
  return absl::OkStatus();
}

absl::Status TaskStore::ApplyCommit(std::optional<int64_t> changelog_next) {
  if (!prepared_) return absl::FailedPreconditionError("state store: commit without prepare");
  rocksdb::Status s;
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  if (changelog_next.has_value()) {
    std::string value, time;
    codec::PutZigZag(&value, *changelog_next);
    codec::PutZigZag(&time, now_ms);
    s = batch_->Put(cf(StoreFamily::kMeta), ToSlice(codec::kMetaChangelogNext), value);
    if (s.ok()) s = batch_->Put(cf(StoreFamily::kMeta), ToSlice(codec::kMetaChangelogTime), time);
    if (!s.ok()) return FromRocks(s, "commit");
  }
  rocksdb::WriteOptions wo;
  // With a changelog, the changelog is the durable copy (a local tail lost
  // in a machine crash is restored from it, since the checkpoint is in the
  // same write); without one, see the header.
  wo.sync = options_.sync_commits && !changelog_next.has_value();
  s = db_->Write(wo, batch_->GetWriteBatch());
  if (!s.ok()) return FromRocks(s, "commit");
  if (changelog_next.has_value()) {
    changelog_offset_ = changelog_next;
    changelog_time_ms_ = now_ms;
    compensation_.clear();
  }
  positions_ = std::move(prepared_positions_);
  for (int64_t offset : prepared_covered_) journal_.erase(offset);
  prepared_covered_.clear();
  prepared_ = false;
  flood_batch_.clear();
  flood_journaled_ = 0;
  committed_click_wm_ = click_wm_;
  committed_conversion_wm_ = conversion_wm_;
  committed_dedup_wm_ = dedup_wm_;
  committed_pending_count_ = pending_count_;
  committed_pending_index_ = pending_index_;
  committed_pending_keys_ = pending_keys_;
  batch_->Clear();
  dirty_ = false;
  PublishCutoffs();
  return absl::OkStatus();
}

absl::Status TaskStore::ApplyChangelog(const std::vector<ChangelogRecordView>& records,
                                       int64_t changelog_next) {
  if (dirty_ || prepared_) {
    return absl::FailedPreconditionError("state store: restore into a store with a batch open");
  }
  rocksdb::WriteBatch batch;
  rocksdb::Status s;
  for (const auto& [key, value] : records) {
    if (key.empty() || static_cast<uint8_t>(key[0]) >= kStoreFamilyCount) {
      return absl::DataLossError(absl::StrCat("changelog: record with an unknown family byte ",
                                              key.empty() ? -1 : static_cast<uint8_t>(key[0])));
    }
    rocksdb::ColumnFamilyHandle* family = cf(static_cast<StoreFamily>(key[0]));
    const rocksdb::Slice k(key.data() + 1, key.size() - 1);
    s = value.has_value() ? batch.Put(family, k, rocksdb::Slice(value->data(), value->size()))
                          : batch.Delete(family, k);
    if (!s.ok()) return FromRocks(s, "restore");
  }
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  std::string next, time;
  codec::PutZigZag(&next, changelog_next);
  codec::PutZigZag(&time, now_ms);
  s = batch.Put(cf(StoreFamily::kMeta), ToSlice(codec::kMetaChangelogNext), next);
  if (s.ok()) s = batch.Put(cf(StoreFamily::kMeta), ToSlice(codec::kMetaChangelogTime), time);
  if (!s.ok()) return FromRocks(s, "restore");
  // No fsync: a crash loses at most a suffix of the restore, and the offset
  // written with it says where to resume.
  s = db_->Write(rocksdb::WriteOptions(), &batch);
  if (!s.ok()) return FromRocks(s, "restore");
  changelog_offset_ = changelog_next;
  changelog_time_ms_ = now_ms;
  return absl::OkStatus();
}

absl::Status TaskStore::Clear() {
  if (dirty_ || prepared_) {
    return absl::FailedPreconditionError("state store: clear with a batch open");
  }
  rocksdb::WriteBatch batch;
  for (int i = 0; i < kStoreFamilyCount; ++i) {
    const auto family = static_cast<StoreFamily>(i);
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf(family)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      const std::string_view key = ToView(it->key());
      if (family == StoreFamily::kMeta &&
          (key == codec::kMetaFormat || key == codec::kMetaPartition)) {
        continue;
      }
      rocksdb::Status s = batch.Delete(cf(family), it->key());
      if (!s.ok()) return FromRocks(s, "clear");
    }
    if (!it->status().ok()) return FromRocks(it->status(), "clear");
  }
  rocksdb::Status s = db_->Write(rocksdb::WriteOptions(), &batch);
  if (!s.ok()) return FromRocks(s, "clear");
  changelog_offset_.reset();
  changelog_time_ms_ = 0;
  compensation_.clear();
  journal_.clear();
  return absl::OkStatus();
}

absl::Status TaskStore::ReloadCommitted() {
  positions_.clear();
  committed_click_wm_ = committed_conversion_wm_ = committed_dedup_wm_ = kNoWatermark;
  return LoadMeta();
}

void TaskStore::AddCompensation(const std::vector<std::string>& changelog_keys) {
  compensation_.insert(changelog_keys.begin(), changelog_keys.end());
}

void TaskStore::Discard() {
  batch_->Clear();
  prepared_ = false;
  prepared_positions_.clear();
  prepared_covered_.clear();
  // Journaled verdicts stay (journal_ mirrors the DB): the replay reuses them.
  flood_batch_.clear();
  flood_journaled_ = 0;
  click_wm_ = committed_click_wm_;
  conversion_wm_ = committed_conversion_wm_;
  dedup_wm_ = committed_dedup_wm_;
  pending_count_ = committed_pending_count_;
  pending_index_ = committed_pending_index_;
  pending_keys_ = committed_pending_keys_;
  dirty_ = false;
}

bool TaskStore::has_uncommitted_changes() const { return dirty_; }

std::optional<int64_t> TaskStore::NextOffset(std::string_view topic) const {
  auto it = positions_.find(topic);
  if (it == positions_.end()) return std::nullopt;
  return it->second;
}

std::vector<InputPosition> TaskStore::positions() const {
  std::vector<InputPosition> out;
  for (const auto& [topic, offset] : positions_) out.push_back({topic, offset});
  return out;
}

absl::StatusOr<bool> TaskStore::ContainsDedupKey(const DedupKey& key) const {
  rocksdb::PinnableSlice value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), cf(StoreFamily::kDedup), ToSlice(key.encoded()), &value);
  if (s.IsNotFound()) return false;
  if (!s.ok()) return FromRocks(s, "get dedup key");
  return true;
}

absl::Status TaskStore::ForEachDedupKeySince(
    TimestampMs since, absl::FunctionRef<void(const DedupKey&, TimestampMs)> fn) const {
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), cf(StoreFamily::kDedup)));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    TimestampMs ts;
    if (!codec::ValueEventTime(ToView(it->value()), &ts)) {
      return absl::DataLossError("state store: corrupt dedup value");
    }
    if (ts < since) continue;
    absl::StatusOr<DedupKey> key = DedupKey::FromEncoded(ToView(it->key()));
    if (!key.ok()) return absl::DataLossError("state store: corrupt dedup key");
    fn(*key, ts);
  }
  return FromRocks(it->status(), "scan dedup");
}

absl::StatusOr<uint64_t> TaskStore::CountStoredRecords(StoreFamily family) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf(family)));
  uint64_t n = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) ++n;
  if (!it->status().ok()) return FromRocks(it->status(), "count");
  return n;
}

absl::Status TaskStore::CompactAll() {
  rocksdb::CompactRangeOptions options;
  // Rewrite the bottommost level too, so every record meets the filter.
  options.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  for (int i = 0; i < kStoreFamilyCount; ++i) {
    rocksdb::Status s = db_->CompactRange(options, handles_[i].get(), nullptr, nullptr);
    if (!s.ok()) return FromRocks(s, "compact");
  }
  return absl::OkStatus();
}

// ---- StateStores ----------------------------------------------------------

namespace {

// Calls fn(0..n-1) on up to `parallelism` threads (this one included), each
// index once, and returns when all calls have; once a call returns false,
// indexes not started yet are skipped.
void ForEachInParallel(size_t n, int parallelism, const std::function<bool(size_t)>& fn) {
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) {
      if (!fn(i)) next.store(n);
    }
  };
  const size_t threads = std::min<size_t>(n, static_cast<size_t>(std::max(1, parallelism)));
  std::vector<std::jthread> helpers;
  for (size_t t = 1; t < threads; ++t) helpers.emplace_back(work);
  work();
}  // helpers join here

}  // namespace

StateStores::StateStores(const StateStoreOptions& options) : options_(options) {}

StateStores::~StateStores() {
  std::unique_lock lock(mu_);
  stores_.clear();  // every DB closed before the shared cache can go
}

absl::StatusOr<std::unique_ptr<StateStores>> StateStores::Create(const StateStoreOptions& options) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("state.dir: cannot create ", options.dir, ": ", ec.message()));
  }
  std::unique_ptr<StateStores> stores(new StateStores(options));
  rocksdb::LRUCacheOptions cache_options;
  cache_options.capacity = options.block_cache_bytes;
  // Index and filter blocks are high priority: they are evicted last.
  cache_options.high_pri_pool_ratio = 0.2;
  stores->cache_ = rocksdb::NewLRUCache(cache_options);
  // Memtables of all stores share write_buffer_bytes and are charged to the
  // cache (dummy entries), so the cache capacity is the one cap.
  stores->write_buffer_manager_ =
      std::make_shared<rocksdb::WriteBufferManager>(options.write_buffer_bytes, stores->cache_);
  stores->statistics_ = rocksdb::CreateDBStatistics();
  stores->statistics_->set_stats_level(rocksdb::StatsLevel::kExceptHistogramOrTimers);
  return stores;
}

std::string StateStores::PartitionDir(int32_t partition) const {
  return (std::filesystem::path(options_.dir) / absl::StrCat("p-", partition)).string();
}

int StateStores::MaxOpenFilesPerStore() const {
  if (options_.max_open_files < 0) return -1;
  // Split by the stores this instance may come to own (every input
  // partition), fixed at open: re-splitting on every assignment change
  // would rewrite each store's OPTIONS file on each open (SetDBOptions),
  // quadratic in the partition count. RocksDB raises anything below 20 to
  // 20; with very many partitions the sum can exceed the configured total.
  return std::max<int>(20, options_.max_open_files / std::max<int>(1, expected_stores_));
}

void StateStores::SetExpectedStoreCount(int stores) {
  std::unique_lock lock(mu_);
  expected_stores_ = std::max(1, stores);
}

absl::StatusOr<TaskStore*> StateStores::Open(int32_t partition) {
  std::unique_lock lock(mu_);
  if (auto it = stores_.find(partition); it != stores_.end()) return it->second.get();
  std::unique_ptr<TaskStore> store(new TaskStore(partition, PartitionDir(partition), options_));
  if (absl::Status s =
          store->OpenDb(cache_, write_buffer_manager_, statistics_, MaxOpenFilesPerStore());
      !s.ok()) {
    return s;
  }
  TaskStore* raw = store.get();
  stores_.emplace(partition, std::move(store));
  return raw;
}

void StateStores::OpenMany(const std::vector<int32_t>& partitions) {
  std::vector<std::unique_ptr<TaskStore>> todo;
  int max_open_files = 0;
  {
    std::shared_lock lock(mu_);
    for (int32_t p : partitions) {
      if (stores_.contains(p)) continue;
      todo.emplace_back(new TaskStore(p, PartitionDir(p), options_));
    }
    max_open_files = MaxOpenFilesPerStore();
  }
  if (todo.empty()) return;
  // char, not bool: elements are written from several threads.
  std::vector<char> opened(todo.size(), 0);
  ForEachInParallel(todo.size(), options_.parallelism, [&](size_t i) {
    opened[i] =
        todo[i]->OpenDb(cache_, write_buffer_manager_, statistics_, max_open_files).ok() ? 1 : 0;
    return true;
  });
  std::unique_lock lock(mu_);
  for (size_t i = 0; i < todo.size(); ++i) {
    if (!opened[i]) continue;  // Open retries and reports the error
    const int32_t p = todo[i]->partition();
    stores_.emplace(p, std::move(todo[i]));
  }
}

absl::Status StateStores::Close(int32_t partition) {
  std::unique_lock lock(mu_);
  stores_.erase(partition);
  unindexed_.erase(partition);
  return absl::OkStatus();
}

absl::Status StateStores::Delete(int32_t partition) {
  if (absl::Status s = Close(partition); !s.ok()) return s;
  std::error_code ec;
  std::filesystem::remove_all(PartitionDir(partition), ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("state store: cannot delete ", PartitionDir(partition), ": ", ec.message()));
  }
  return absl::OkStatus();
}

TaskStore* StateStores::Find(int32_t partition) const {
  std::shared_lock lock(mu_);
  auto it = stores_.find(partition);
  return it == stores_.end() ? nullptr : it->second.get();
}

std::vector<int32_t> StateStores::open_partitions() const {
  std::shared_lock lock(mu_);
  std::vector<int32_t> out;
  for (const auto& [partition, store] : stores_) out.push_back(partition);
  return out;
}

uint64_t StateStores::cache_usage_bytes() const { return cache_->GetUsage(); }

StateStoreStats StateStores::Stats() const {
  StateStoreStats stats;
  {
    std::shared_lock lock(mu_);
    for (const auto& [partition, store] : stores_) {
      rocksdb::DB* db = store->db_.get();
      if (db == nullptr) continue;
      ++stats.open_stores;
      uint64_t v = 0;
      if (db->GetAggregatedIntProperty(rocksdb::DB::Properties::kTotalSstFilesSize, &v)) {
        stats.sst_bytes += v;
      }
      if (db->GetAggregatedIntProperty(rocksdb::DB::Properties::kCurSizeAllMemTables, &v)) {
        stats.memtable_bytes += v;
      }
      if (db->GetAggregatedIntProperty(rocksdb::DB::Properties::kEstimatePendingCompactionBytes,
                                       &v)) {
        stats.pending_compaction_bytes += v;
      }
      if (db->GetIntProperty(rocksdb::DB::Properties::kNumRunningCompactions, &v)) {
        stats.running_compactions += v;
      }
      uint64_t stopped = 0;
      uint64_t delayed_rate = 0;
      db->GetIntProperty(rocksdb::DB::Properties::kIsWriteStopped, &stopped);
      db->GetIntProperty(rocksdb::DB::Properties::kActualDelayedWriteRate, &delayed_rate);
      if (stopped != 0 || delayed_rate != 0) ++stats.stalled_stores;
    }
  }
  stats.block_cache_hits = statistics_->getTickerCount(rocksdb::BLOCK_CACHE_HIT);
  stats.block_cache_misses = statistics_->getTickerCount(rocksdb::BLOCK_CACHE_MISS);
  stats.stall_micros = statistics_->getTickerCount(rocksdb::STALL_MICROS);
  stats.compaction_bytes_written = statistics_->getTickerCount(rocksdb::COMPACT_WRITE_BYTES);
  return stats;
}

void StateStores::SetIndexed(int32_t partition, bool indexed) {
  std::unique_lock lock(mu_);
  if (indexed) {
    unindexed_.erase(partition);
  } else {
    unindexed_.insert(partition);
  }
}

absl::StatusOr<bool> StateStores::Contains(const DedupKey& key) {
  std::shared_lock lock(mu_);
  for (const auto& [partition, store] : stores_) {
    if (unindexed_.contains(partition)) continue;
    absl::StatusOr<bool> found = store->ContainsDedupKey(key);
    if (!found.ok() || *found) return found;
  }
  return false;
}

absl::Status StateStores::ForEachSince(
    TimestampMs since, absl::FunctionRef<void(const DedupKey& key, TimestampMs event_time)> fn) {
  std::shared_lock lock(mu_);
  std::vector<const TaskStore*> scan;
  for (const auto& [partition, store] : stores_) {
    if (!unindexed_.contains(partition)) scan.push_back(store.get());
  }
  // Whole stores per thread (one iterator each); the first error wins.
  std::mutex error_mu;
  absl::Status error;
  ForEachInParallel(scan.size(), options_.parallelism, [&](size_t i) {
    absl::Status s = scan[i]->ForEachDedupKeySince(since, fn);
    if (s.ok()) return true;
    std::lock_guard error_lock(error_mu);
    if (error.ok()) error = std::move(s);
    return false;
  });
  return error;
}

}  // namespace tally
