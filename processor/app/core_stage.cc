#include "processor/app/core_stage.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <limits>
#include <set>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "processor/common/log.h"
#include "processor/dedup/dedup_key.h"
#include "processor/fraud/fraud_rules.h"
#include "processor/join/records.h"
#include "processor/kafka/kafka.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace tally {
namespace {

constexpr char kLog[] = "core";

// Task commits run in parallel (see CommitBatch); they mostly wait on fsync,
// so more threads than cores pay off, up to the point where the device
// queue is full.
constexpr size_t kMaxCommitThreads = 16;

// Adapts the joiner's sink to the Processor's Outputs for one event.
class SinkAdapter final : public JoinSink {
 public:
  explicit SinkAdapter(Outputs& out) : out_(out) {}
  void Commission(const tally::Commission& commission) override { out_.Commission(commission); }
  void Reject(const SourceRef& source, RejectReason reason, std::string_view detail) override {
    out_.Reject(ToEventSource(source), reason, detail);
  }
  void Unattributed(const UnattributedConversion& conversion, const SourceRef&) override {
    out_.Unattributed(conversion);
  }
  void Retained(const SourceRef& source) override { out_.Retained(ToEventSource(source)); }

 private:
  static EventSource ToEventSource(const SourceRef& s) {
    return EventSource{s.topic, s.partition, s.offset, s.key, s.value};
  }
  Outputs& out_;
};

SourceRef ToSourceRef(const EventSource& s) {
  return SourceRef{s.topic, s.partition, s.offset, s.key, s.value};
}

}  // namespace

// Counters mirror monotonic component counters: each refresh adds the
// difference since the previous one (components count with relaxed atomics
// on their hot paths; Prometheus objects are not touched per event).
struct CoreStage::Metrics {
  explicit Metrics(prometheus::Registry& r)
      : pending(prometheus::BuildGauge()
                    .Name("tally_pending_conversions")
                    .Help("Conversions waiting for a late click, all owned partitions")
                    .Register(r)
                    .Add({})),
        cache_bytes(prometheus::BuildGauge()
                        .Name("tally_state_cache_usage_bytes")
                        .Help("RocksDB block cache + memtables of all state stores (the one cap)")
                        .Register(r)
                        .Add({})),
        state_gaps(prometheus::BuildCounter()
                       .Name("tally_state_gaps_total")
                       .Help("Tasks whose input resumed past the end of their local state (the "
                             "range was processed without it; joins over it may miss)")
                       .Register(r)
                       .Add({})),
        replayed(prometheus::BuildCounter()
                     .Name("tally_replayed_events_skipped_total")
                     .Help("Replayed input events the committed state already covered")
                     .Register(r)
                     .Add({})),
        dedup_lookups(prometheus::BuildCounter()
                          .Name("tally_dedup_authority_lookups_total")
                          .Help("Dedup checks answered by the durable index (RocksDB)")
                          .Register(r)
                          .Add({})),
        dedup_evictions(prometheus::BuildCounter()
                            .Name("tally_dedup_pressure_evictions_total")
                            .Help("Dedup table watermark raises forced by a full probe window")
                            .Register(r)
                            .Add({})),
        flood_overflows(prometheus::BuildCounter()
                            .Name("tally_fraud_flood_table_overflows_total")
                            .Help("Clicks accepted because the flood counter table was full")
                            .Register(r)
                            .Add({})),
        fraud_reloads(prometheus::BuildCounter()
                          .Name("tally_fraud_rule_reloads_total")
                          .Help("Fraud rule reloads (SIGHUP) by result")
                          .Register(r)),
        restored_records(prometheus::BuildCounter()
                             .Name("tally_restored_changelog_records_total")
                             .Help("Changelog records applied to local stores (restores and "
                                   "standby following)")
                             .Register(r)
                             .Add({})),
        restore_remaining(prometheus::BuildGauge()
                              .Name("tally_restore_remaining_records")
                              .Help("Changelog records still to read by the running restore "
                                    "(end offset - position; 0 when none runs)")
                              .Register(r)
                              .Add({})),
        standby_lag(prometheus::BuildGauge()
                        .Name("tally_standby_lag_records")
                        .Help("Changelog records the standby replicas have not applied yet")
                        .Register(r)
                        .Add({})),
        late_clicks(prometheus::BuildCounter()
                        .Name("tally_late_clicks_total")
                        .Help("Accepted clicks that arrived behind their partition's click "
                              "watermark (later than processing.max_click_lateness)")
                        .Register(r)
                        .Add({})),
        late_conversions(prometheus::BuildCounter()
                             .Name("tally_late_conversions_total")
                             .Help("Conversions more than processing.max_conversion_lateness "
                                   "behind the newest conversion of their partition")
                             .Register(r)
                             .Add({})),
        reload_ok(fraud_reloads.Add({{"result", "ok"}})),
        reload_failed(fraud_reloads.Add({{"result", "failed"}})),
        oldest_pending_age(prometheus::BuildGauge()
                               .Name("tally_oldest_pending_conversion_age_seconds")
                               .Help("Wall clock minus the event time of the oldest conversion "
                                     "waiting for a late click (0 when none waits)")
                               .Register(r)
                               .Add({})),
        sst_bytes(
            Gauge(r, "tally_rocksdb_sst_files_bytes", "Size of the SST files of all state stores")),
        memtable_bytes(
            Gauge(r, "tally_rocksdb_memtable_bytes", "Memtable memory of all state stores")),
        pending_compaction_bytes(Gauge(r, "tally_rocksdb_pending_compaction_bytes",
                                       "Bytes RocksDB estimates compaction must rewrite, all "
                                       "state stores")),
        running_compactions(Gauge(r, "tally_rocksdb_running_compactions",
                                  "Compactions running now, all state stores")),
        stalled_stores(Gauge(r, "tally_rocksdb_stalled_stores",
                             "State stores whose writes are stopped or delayed now")),
        open_stores(Gauge(r, "tally_state_open_stores",
                          "RocksDB stores open (tasks, restores and standbys)")),
        block_cache_hits(Counter(r, "tally_rocksdb_block_cache_hits_total",
                                 "Block cache lookups that hit (hit ratio: hits / (hits + "
                                 "misses))")),
        block_cache_misses(Counter(r, "tally_rocksdb_block_cache_misses_total",
                                   "Block cache lookups that missed")),
        stall_seconds(Counter(r, "tally_rocksdb_write_stall_seconds_total",
                              "Time writers to the state stores spent stalled")),
        compaction_written(Counter(r, "tally_rocksdb_compaction_written_bytes_total",
                                   "Bytes written by compactions")) {}

  static prometheus::Gauge& Gauge(prometheus::Registry& r, const char* name, const char* help) {
    return prometheus::BuildGauge().Name(name).Help(help).Register(r).Add({});
  }
  static prometheus::Counter& Counter(prometheus::Registry& r, const char* name, const char* help) {
    return prometheus::BuildCounter().Name(name).Help(help).Register(r).Add({});
  }

  static void Advance(prometheus::Counter& counter, uint64_t now, uint64_t* last) {
    if (now > *last) counter.Increment(static_cast<double>(now - *last));
    *last = now;
  }

  prometheus::Gauge& pending;
  prometheus::Gauge& cache_bytes;
  prometheus::Counter& state_gaps;
  prometheus::Counter& replayed;
  prometheus::Counter& dedup_lookups;
  prometheus::Counter& dedup_evictions;
  prometheus::Counter& flood_overflows;
  prometheus::Family<prometheus::Counter>& fraud_reloads;
  prometheus::Counter& restored_records;
  prometheus::Gauge& restore_remaining;
  prometheus::Gauge& standby_lag;
  prometheus::Counter& late_clicks;
  prometheus::Counter& late_conversions;
  prometheus::Counter& reload_ok;
  prometheus::Counter& reload_failed;
  prometheus::Gauge& oldest_pending_age;
  prometheus::Gauge& sst_bytes;
  prometheus::Gauge& memtable_bytes;
  prometheus::Gauge& pending_compaction_bytes;
  prometheus::Gauge& running_compactions;
  prometheus::Gauge& stalled_stores;
  prometheus::Gauge& open_stores;
  prometheus::Counter& block_cache_hits;
  prometheus::Counter& block_cache_misses;
  prometheus::Counter& stall_seconds;
  prometheus::Counter& compaction_written;
  uint64_t last_hits = 0, last_misses = 0, last_stall_micros = 0, last_compaction_written = 0;
  absl::Time last_sample = absl::InfinitePast();
  uint64_t last_state_gaps = 0, last_restored = 0, last_late_clicks = 0, last_late_conversions = 0;
  uint64_t last_replayed = 0, last_lookups = 0, last_evictions = 0, last_overflows = 0;
};

struct CoreStage::Task {
  TaskStore* store = nullptr;
  std::unique_ptr<Joiner> joiner;
  // click_idle_timeout: when this task last saw a click (wall clock) and its
  // max click time then (the base the idle watermark advances from).
  absl::Time last_click_wall = absl::InfinitePast();
  TimestampMs max_click_at_last_click = kNoWatermark;
  // The joiner's committed late counts already added to counters_.
  uint64_t late_clicks_counted = 0;
  uint64_t late_conversions_counted = 0;
  // Changed since the last CommitBatch.
  bool touched = false;
  // The first event of each input after opening was compared with the
  // stored position (state gap detection).
  bool clicks_resume_checked = false;
  bool conversions_resume_checked = false;
  // The store is being rebuilt from the changelog (no joiner yet; the
  // Processor holds its input back).
  bool restoring = false;
  // In unjournaled_.
  bool verdicts_unjournaled = false;
};

// An output held back by VerdictsFirst, with its own copy of what the
// producer needs (an EventSource's views live only for the stage call).
struct CoreStage::HeldOutput {
  struct Rejection {
    StoredSource source;  // the joiner's owned copy of a message's origin
    RejectReason reason = RejectReason::kInvalidValue;
    std::string detail;
  };
  std::variant<tally::Commission, Rejection, UnattributedConversion> output;
};

// Every output of the stage leaves through this. Once an output is handed
// to the producer, librdkafka may send it from its own thread at any moment
// (and at-least-once, or a broker without transactions, makes it visible at
// once), so the flood verdicts it may depend on — a rejection, or a
// commission of a click the rule let through — must be journaled first: a
// crash before the batch commits then replays them as they were seen,
// whatever the replay's interleaving of partitions (docs/design.md §9.3).
// Journaling before each output cost one RocksDB write (a WAL append) per
// output; instead, outputs that follow unjournaled verdicts are held, in
// order, and released together after ONE journal write when
// kMaxHeldOutputs have gathered or the batch ends.
class CoreStage::VerdictsFirst final : public Outputs {
 public:
  VerdictsFirst(CoreStage& stage, Outputs& out) : stage_(stage), out_(out) {}
  void Commission(const tally::Commission& commission) override {
    if (!stage_.error_.ok()) return;
    if (!stage_.HoldsOutputs()) return out_.Commission(commission);
    stage_.Hold(HeldOutput{commission}, out_);
  }
  void Reject(const EventSource& source, RejectReason reason, std::string_view detail) override {
    if (!stage_.error_.ok()) return;
    if (!stage_.HoldsOutputs()) return out_.Reject(source, reason, detail);
    stage_.Hold(HeldOutput{HeldOutput::Rejection{
                    StoredSource{std::string(source.topic), source.partition, source.offset,
                                 std::string(source.key), std::string(source.value)},
                    reason, std::string(detail)}},
                out_);
  }
  void Unattributed(const UnattributedConversion& conversion) override {
    if (!stage_.error_.ok()) return;
    if (!stage_.HoldsOutputs()) return out_.Unattributed(conversion);
    stage_.Hold(HeldOutput{conversion}, out_);
  }
  // Nothing is produced for a retained event.
  void Retained(const EventSource& source) override { out_.Retained(source); }

 private:
  CoreStage& stage_;
  Outputs& out_;
};

CoreStage::CoreStage(const CoreStageOptions& options, std::shared_ptr<const OffersCatalog> offers)
    : options_(options), offers_(std::move(offers)) {}

CoreStage::~CoreStage() {
  // A batch that never reached CommitBatch is forgotten by the deduplicator
  // too; its events are replayed by whoever owns the partitions next.
  if (dedup_batch_ != nullptr) dedup_->Abort(std::move(dedup_batch_));
  // The restorer's thread touches task and standby stores: it goes first.
  restorer_.reset();
  tasks_.clear();
}

namespace {

StateStoreOptions EffectiveStateOptions(const CoreStageOptions& options) {
  StateStoreOptions state = options.state;
  // Changelogged stores expire by a sweep whose deletions reach the
  // changelog (design §10.7).
  state.expire_by_sweep = !options.changelog_topic.empty();
  return state;
}

}  // namespace

absl::Status CoreStage::CheckOptions(const CoreStageOptions& options, const OffersCatalog& offers) {
  if (offers.max_attribution_window_ms() > options.dedup.horizon_ms) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dedup.horizon: ", options.dedup.horizon_ms, " ms is shorter than the longest attribution ",
        "window of offers.file (", offers.max_attribution_window_ms(), " ms)"));
  }
  if (absl::Status s = options.dedup.Validate(); !s.ok()) return s;
  if (absl::Status s = EffectiveStateOptions(options).Validate(); !s.ok()) return s;
  if (absl::Status s = options.fraud.Validate(); !s.ok()) return s;
  // Parsed here and again by FraudFilter::Create: the files are small, and
  // a check that only looked at the names would pass a broken file.
  absl::StatusOr<std::shared_ptr<const FraudRules>> rules =
      FraudRules::Load(options.fraud.bot_user_agents_file, options.fraud.ip_blocklist_file);
  return rules.status();
}

absl::StatusOr<std::unique_ptr<CoreStage>> CoreStage::Create(
    const CoreStageOptions& options, std::shared_ptr<const OffersCatalog> offers,
    prometheus::Registry* registry, std::unique_ptr<Restorer> restorer) {
  if (offers == nullptr) return absl::InvalidArgumentError("offers.file: no offers catalog");
  if (absl::Status s = CheckOptions(options, *offers); !s.ok()) return s;
  auto stage = std::unique_ptr<CoreStage>(new CoreStage(options, std::move(offers)));
  auto stores = StateStores::Create(EffectiveStateOptions(options));
  if (!stores.ok()) return stores.status();
  stage->stores_ = std::move(*stores);
  auto fraud = FraudFilter::Create(options.fraud);
  if (!fraud.ok()) return fraud.status();
  stage->fraud_ = std::move(*fraud);
  if (absl::Status s = stage->RebuildDeduplicator(); !s.ok()) return s;
  if (registry != nullptr) stage->metrics_ = std::make_unique<Metrics>(*registry);
  stage->restorer_ = std::move(restorer);
  return stage;
}

void CoreStage::SetInputPartitionCount(int32_t partitions) {
  input_partitions_ = std::max<int32_t>(1, partitions);
  stores_->SetExpectedStoreCount(input_partitions_);
}

absl::Status CoreStage::ReloadFraudRules() {
  absl::Status s = fraud_->Reload();
  // Counted here, on the signal thread, when it happens (prometheus-cpp's
  // counters are atomic): an idle instance shows the reload at once.
  if (metrics_ != nullptr) (s.ok() ? metrics_->reload_ok : metrics_->reload_failed).Increment();
  return s;
}

CoreStageCounters CoreStage::counters() const { return counters_; }

void CoreStage::CountPending() {
  uint64_t pending = 0;
  for (const auto& [partition, task] : tasks_) {
    // A restoring store belongs to the restorer's thread.
    if (task->restoring) continue;
    pending += static_cast<uint64_t>(task->store->pending_count());
    if (task->joiner == nullptr) continue;
    // Called after a commit: the joiner's counters are its committed ones.
    const JoinCounters& j = task->joiner->counters();
    counters_.late_clicks += j.late_clicks - task->late_clicks_counted;
    counters_.late_conversions += j.late_conversions - task->late_conversions_counted;
    task->late_clicks_counted = j.late_clicks;
    task->late_conversions_counted = j.late_conversions;
  }
  counters_.pending = pending;
}

void CoreStage::Remember(const absl::Status& status) {
  if (error_.ok() && !status.ok()) error_ = status;
}

bool CoreStage::JournalVerdicts() {
  // A failed journal write fails the batch: the output is not produced (the
  // batch is aborted and replayed, so accounting restarts with it).
  for (Task* task : unjournaled_) {
    Remember(task->store->WriteFloodJournal());
    task->verdicts_unjournaled = false;
  }
  unjournaled_.clear();
  return error_.ok();
}

bool CoreStage::HoldsOutputs() const { return !held_.empty() || !unjournaled_.empty(); }

void CoreStage::Hold(HeldOutput output, Outputs& producer) {
  held_.push_back(std::move(output));
  if (held_.size() >= kMaxHeldOutputs) ReleaseHeld(producer);
}

void CoreStage::ReleaseHeld(Outputs& producer) {
  if (!JournalVerdicts()) {
    held_.clear();  // the batch fails and is replayed
    return;
  }
  struct Release {
    Outputs& out;
    void operator()(const tally::Commission& c) const { out.Commission(c); }
    void operator()(const HeldOutput::Rejection& r) const {
      const StoredSource& s = r.source;
      out.Reject(EventSource{s.topic, s.partition, s.offset, s.key, s.value}, r.reason, r.detail);
    }
    void operator()(const UnattributedConversion& u) const { out.Unattributed(u); }
  };
  for (const HeldOutput& held : held_) std::visit(Release{producer}, held.output);
  held_.clear();
}

absl::Status CoreStage::RebuildDeduplicator() {
  if (dedup_batch_ != nullptr) {
    return absl::FailedPreconditionError("dedup: rebuild while a batch is open");
  }
  dedup_.reset();
  auto dedup = Deduplicator::Create(options_.dedup, stores_.get());
  if (!dedup.ok()) return dedup.status();
  // Warm up from the newest event time any open store has seen: keys older
  // than horizon + skew before it can no longer matter (kTooOld).
  TimestampMs latest = kNoWatermark;
  for (const auto& [p, task] : tasks_) {
    if (task->restoring) continue;  // the restorer's thread owns it
    latest =
        std::max({latest, task->store->click_watermark(), task->store->conversion_watermark()});
  }
  const TimestampMs since =
      latest == kNoWatermark ? kNoWatermark
                             : latest - options_.dedup.horizon_ms - options_.dedup.repeat_skew_ms;
  const absl::Time started = absl::Now();
  if (absl::Status s = (*dedup)->WarmUp(since); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("dedup warm-up: ", s.message()));
  }
  TALLY_LOG(kInfo, kLog, "dedup table warmed up from ", stores_->open_partitions().size(),
            " stores in ", absl::StrFormat("%.3f", absl::ToDoubleSeconds(absl::Now() - started)),
            " s");
  dedup_ = std::move(*dedup);
  dedup_stale_ = false;
  return absl::OkStatus();
}

CoreStage::Task* CoreStage::TaskFor(int32_t partition) {
  auto it = tasks_.find(partition);
  if (it != tasks_.end() && !it->second->restoring) return it->second.get();
  // The Processor hands over events of open (whole, assigned) tasks only.
  // Opening a store here would process a partition this instance does not
  // own; fail the batch instead.
  Remember(absl::FailedPreconditionError(
      absl::StrCat("an event of partition ", partition, ", which is not an open task")));
  return nullptr;
}

bool CoreStage::AlreadyCovered(const EventSource& source) {
  auto it = tasks_.find(source.partition);
  if (it == tasks_.end() || it->second->restoring) return false;  // OnClick/OnConversion report it
  if (!AlreadyApplied(*it->second, source)) return false;
  ++counters_.replayed_skipped;
  return true;
}

bool CoreStage::AlreadyApplied(Task& task, const EventSource& source) {
  const std::optional<int64_t> next = task.store->NextOffset(source.topic);
  // Checked at the first event of each topic after the task opened: the
  // input continues past where this store stopped, so another instance
  // processed the range in between (the partition moved away and back, or
  // this pod started on an empty volume) and its state changes are not
  // here. Until the changelog restores them (next issue), say so loudly:
  // joins over that range may miss. A store without a position that starts
  // above offset 0 is reported too (it may also be the log start after
  // retention).
  const bool is_click = source.topic == options_.clicks_topic;
  bool& checked = is_click ? task.clicks_resume_checked : task.conversions_resume_checked;
  if (!checked) {
    checked = true;
    const bool gap = next.has_value() ? source.offset > *next : source.offset > 0;
    if (gap) {
      ++counters_.state_gaps;
      TALLY_LOG(kWarning, kLog, "state gap: partition=", source.partition, " topic=", source.topic,
                " resumes_at=", source.offset,
                " local_state_ends_at=", next.has_value() ? absl::StrCat(*next) : "none",
                " (offsets in between were processed without this state: joins over them may "
                "miss)");
    }
  }
  return next.has_value() && source.offset < *next;
}

void CoreStage::OnClick(const Click& click, const EventSource& source, Outputs& producer) {
  if (!error_.ok()) return;
  Task* task = TaskFor(source.partition);
  if (task == nullptr) return;
  task->touched = true;
  task->last_click_wall = options_.clock();
  task->max_click_at_last_click = std::max(task->store->click_watermark(), click.event_time_ms);
  if (dedup_batch_ == nullptr) dedup_batch_ = dedup_->BeginBatch();
  VerdictsFirst out(*this, producer);
  SinkAdapter sink(out);
  const DedupKey key = ClickKey(click.click_id);
  absl::StatusOr<DedupOutcome> outcome = dedup_->Check(*dedup_batch_, key, click.event_time_ms);
  if (!outcome.ok()) return Remember(outcome.status());
  switch (*outcome) {
    case DedupOutcome::kDuplicate:
      out.Reject(source, RejectReason::kDuplicateClick, "click_id seen before");
      Remember(task->joiner->ObserveClickTime(click.event_time_ms, sink));
      return;
    case DedupOutcome::kNew:
      Remember(task->joiner->RecordDedupKey(key, click.event_time_ms));
      break;
    case DedupOutcome::kTooOld:
      // Older than every window of the stream: it can earn nothing, and its
      // id is not recorded. Storing it (idempotently, by click id) keeps the
      // accounting simple; the state TTL drops it.
      ++counters_.dedup_too_old;
      break;
  }
  std::optional<RejectReason> fraud = fraud_->CheckRules(click);
  if (!fraud.has_value()) {
    // The flood rule. A replayed click (its batch never committed) takes
    // the verdict journaled on its first attempt and is not counted again:
    // the counters were rebuilt from the journal (RebuildFloodCounts).
    FloodClick flood;
    std::optional<FloodClick> journaled = task->store->JournaledFloodClick(source.offset);
    if (journaled.has_value()) {
      flood = *journaled;
    } else {
      const int64_t window = fraud_->FloodWindowOf(click.event_time_ms);
      flood.click_offset = source.offset;
      flood.window_start_ms = window * options_.fraud.flood_window_ms;
      flood.ip = click.ip.bytes();
      flood.verdict = static_cast<uint8_t>(fraud_->CountFlood(click));
    }
    task->store->RecordFloodClick(flood);
    if (!task->verdicts_unjournaled) {
      task->verdicts_unjournaled = true;
      unjournaled_.push_back(task);
    }
    if (flood.verdict == static_cast<uint8_t>(FraudFilter::FloodVerdict::kRejected)) {
      fraud = RejectReason::kIpClickFlood;
    }
  }
  if (fraud.has_value()) {
    const char* detail = *fraud == RejectReason::kBotUserAgent ? "user agent matches a bot pattern"
                         : *fraud == RejectReason::kIpBlocklisted ? "IP inside a blocklisted range"
                                                                  : "too many clicks from this IP "
                                                                    "in the flood window";
    out.Reject(source, *fraud, detail);
    Remember(task->joiner->ObserveClickTime(click.event_time_ms, sink));
    return;
  }
  Remember(task->joiner->OnClick(click, ToSourceRef(source), sink));
}

void CoreStage::OnConversion(const Conversion& conversion, const EventSource& source,
                             Outputs& producer) {
  if (!error_.ok()) return;
  Task* task = TaskFor(source.partition);
  if (task == nullptr) return;
  task->touched = true;
  if (dedup_batch_ == nullptr) dedup_batch_ = dedup_->BeginBatch();
  VerdictsFirst out(*this, producer);
  SinkAdapter sink(out);
  const DedupKey key = ConversionKey(conversion.offer_id, conversion.goal, conversion.conversion_id,
                                     conversion.status);
  absl::StatusOr<DedupOutcome> outcome =
      dedup_->Check(*dedup_batch_, key, conversion.event_time_ms);
  if (!outcome.ok()) return Remember(outcome.status());
  switch (*outcome) {
    case DedupOutcome::kDuplicate:
      out.Reject(source, RejectReason::kDuplicateConversion,
                 "same offer, goal, conversion_id and status seen before");
      return;
    case DedupOutcome::kTooOld: {
      ++counters_.dedup_too_old;
      UnattributedConversion u;
      u.conversion = conversion;
      u.reason = UnattributedReason::kOutsideWindow;
      u.detail = "older than the dedup horizon behind the newest event";
      out.Unattributed(u);
      return;
    }
    case DedupOutcome::kNew:
      Remember(task->joiner->RecordDedupKey(key, conversion.event_time_ms));
      break;
  }
  Remember(task->joiner->OnConversion(conversion, ToSourceRef(source), sink));
}

absl::Status CoreStage::EndBatch(const std::vector<Position>& /*next_offsets*/, Outputs& producer) {
  if (!error_.ok()) return error_;
  VerdictsFirst out(*this, producer);
  SinkAdapter sink(out);
  for (auto& [partition, task] : tasks_) {
    if (!task->touched) continue;
    if (absl::Status s = task->joiner->Advance(sink); !s.ok()) return s;
  }
  if (absl::Status s = AdvanceIdleTasks(sink); !s.ok()) return s;
  // The held outputs, and the verdicts no output depended on (yet), before
  // the Processor flushes: a batch that got this far is committed or
  // aborted whole.
  ReleaseHeld(producer);
  return error_;
}

void CoreStage::AbortBatch() {
  // Changelog records of the aborted batch may be on the log (a broker
  // without transactions keeps them visible): the task's next batch
  // re-writes their committed values, as for a tail found at restore.
  for (int32_t p : prepared_) {
    auto it = tasks_.find(p);
    auto written = changelog_written_.find(p);
    if (it != tasks_.end() && written != changelog_written_.end()) {
      it->second->store->AddCompensation(written->second);
    }
  }
  changelog_written_.clear();
  prepared_.clear();
  changelog_ = nullptr;
  for (Task* task : unjournaled_) task->verdicts_unjournaled = false;
  unjournaled_.clear();
  held_.clear();
  for (auto& [partition, task] : tasks_) {
    if (!task->touched) continue;
    task->joiner->Abort();
    task->touched = false;
  }
  if (dedup_batch_ != nullptr) dedup_->Abort(std::move(dedup_batch_));
  error_ = absl::OkStatus();
  // The aborted clicks were counted; the journal holds exactly those whose
  // verdict may already be visible. Recount from committed state + journal.
  Remember(RebuildFloodCounts());
  CountPending();
}

absl::Status CoreStage::RebuildFloodCounts() {
  fraud_->ClearFloodCounts();
  TimestampMs latest = kNoWatermark;
  for (const auto& [partition, task] : tasks_) {
    if (task->restoring) continue;
    latest = std::max(latest, task->store->click_watermark());
  }
  const int64_t since = latest == kNoWatermark ? std::numeric_limits<int64_t>::min()
                                               : latest - options_.state.flood_retention_ms;
  const int64_t window_ms = options_.fraud.flood_window_ms;
  uint64_t entries = 0, clicks = 0;
  for (const auto& [partition, task] : tasks_) {
    if (task->restoring) continue;
    absl::Status s = task->store->ForEachFloodCount(
        since, [&](int64_t window_start, const std::array<uint8_t, 16>& ip, uint64_t count) {
          fraud_->RestoreFloodCount(IpAddress::FromBytes(ip), window_start / window_ms, count);
          ++entries;
          clicks += count;
        });
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrCat("partition ", partition,
                                                 ": rebuilding flood counters: ", s.message()));
    }
  }
  TALLY_LOG(kInfo, kLog, "flood counters rebuilt from ", tasks_.size(), " tasks: ", entries,
            " (IP, window) counts, ", clicks, " clicks");
  return absl::OkStatus();
}

absl::Status CoreStage::WriteChangelog(const std::vector<Position>& next_offsets,
                                       ChangelogSink& changelog) {
  if (!error_.ok()) return error_;
  std::map<int32_t, std::vector<InputPosition>> by_partition;
  for (const Position& p : next_offsets) {
    by_partition[p.partition].push_back(InputPosition{p.topic, p.next_offset});
  }
  prepared_.clear();
  changelog_ = &changelog;
  for (auto& [partition, task] : tasks_) {
    if (task->restoring) continue;
    auto it = by_partition.find(partition);
    if (!task->touched && it == by_partition.end() && !task->store->has_compensation()) continue;
    static const std::vector<InputPosition> kNone;
    absl::Status s = task->store->PrepareCommit(it == by_partition.end() ? kNone : it->second);
    std::vector<std::string>& written = changelog_written_[partition];
    written.clear();
    if (s.ok()) {
      s = task->store->ForEachChangelogRecord(
          [&, p = partition](std::string_view key, const std::string* value) {
            written.emplace_back(key);
            return changelog.Record(p, key, value);
          });
    }
    // The sink's error already says what failed ("writing the changelog:
    // ..."); its Kafka error class decides whether the batch is replayed.
    if (!s.ok()) return kafka::WithContext(s, absl::StrCat("partition ", partition, ": "));
    task->touched = true;  // committed by CommitBatch even if no event changed it
    prepared_.push_back(partition);
  }
  return absl::OkStatus();
}

absl::Status CoreStage::WriteMarkers(ChangelogSink& changelog) {
  for (int32_t p : prepared_) {
    if (absl::Status s = changelog.Marker(p); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status CoreStage::ApplyPrepared() {
  for (int32_t p : prepared_) {
    Task& task = *tasks_.at(p);
    std::optional<int64_t> next = changelog_->MarkerNext(p);
    if (!next.has_value()) {
      return absl::InternalError(
          absl::StrCat("partition ", p, ": the changelog marker of the batch has no offset"));
    }
    if (absl::Status s = task.store->ApplyCommit(next); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("partition ", p, ": ", s.message()));
    }
    task.joiner->Committed();
    task.touched = false;
  }
  prepared_.clear();
  changelog_written_.clear();
  changelog_ = nullptr;
  return absl::OkStatus();
}

absl::Status CoreStage::AdvanceIdleTasks(JoinSink& sink) {
  if (options_.click_idle_timeout <= absl::ZeroDuration()) return absl::OkStatus();
  const absl::Time now = options_.clock();
  for (auto& [partition, task] : tasks_) {
    if (task->joiner == nullptr || task->restoring || task->store->pending_count() == 0 ||
        task->max_click_at_last_click == kNoWatermark) {
      continue;
    }
    const absl::Duration idle = now - task->last_click_wall;
    if (idle <= options_.click_idle_timeout) continue;
    // Event time is taken to flow at wall-clock speed once the clicks input
    // has been quiet for the timeout: the trade-off of Flink's idleness (a
    // click that then arrives behind the advanced watermark is late).
    const TimestampMs target = task->max_click_at_last_click +
                               absl::ToInt64Milliseconds(idle - options_.click_idle_timeout);
    if (target <= task->store->click_watermark()) continue;
    task->touched = true;
    ++counters_.idle_advances;
    if (absl::Status s = task->joiner->ObserveClickTime(target, sink); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status CoreStage::CommitBatch(const std::vector<Position>& next_offsets) {
  if (!error_.ok()) return error_;
  if (changelog_ != nullptr) {
    // Without fsync (the changelog is the durable copy), one write per
    // task: cheap enough to run on this thread.
    if (absl::Status s = ApplyPrepared(); !s.ok()) return s;
    return FinishCommit();
  }
  // Positions per partition: partition p of both inputs is one task.
  std::map<int32_t, std::vector<InputPosition>> by_partition;
  for (const Position& p : next_offsets) {
    by_partition[p.partition].push_back(InputPosition{p.topic, p.next_offset});
  }
  struct Job {
    int32_t partition;
    Task* task;
    const std::vector<InputPosition>* positions;
    absl::Status status;
  };
  static const std::vector<InputPosition> kNone;
  std::vector<Job> jobs;
  for (auto& [partition, task] : tasks_) {
    if (task->restoring) continue;
    auto it = by_partition.find(partition);
    if (!task->touched && it == by_partition.end()) continue;
    jobs.push_back(Job{partition, task.get(), it == by_partition.end() ? &kNone : &it->second, {}});
  }
  // Each task is its own RocksDB instance with its own WAL: the writes, and
  // above all their fsyncs, are independent and run in parallel (the fsyncs
  // overlap in the device queue; sequentially they cost one device flush
  // per task and batch). Joiners and stores are touched by one job each.
  auto commit = [](Job& job) { job.status = job.task->joiner->Commit(*job.positions); };
  if (jobs.size() == 1) {
    commit(jobs[0]);
  } else if (!jobs.empty()) {
    const size_t threads = std::min<size_t>(jobs.size(), kMaxCommitThreads);
    std::atomic<size_t> next{0};
    std::vector<std::thread> pool;
    pool.reserve(threads - 1);
    // relaxed: the counter only hands out distinct indices; the jobs' results
    // are published to this thread by join().
    auto worker = [&] {
      for (size_t i = next.fetch_add(1, std::memory_order_relaxed); i < jobs.size();
           i = next.fetch_add(1, std::memory_order_relaxed)) {
        commit(jobs[i]);
      }
    };
    for (size_t t = 1; t < threads; ++t) pool.emplace_back(worker);
    worker();
    for (std::thread& t : pool) t.join();
  }
  for (Job& job : jobs) {
    if (!job.status.ok()) {
      return absl::Status(job.status.code(),
                          absl::StrCat("partition ", job.partition, ": ", job.status.message()));
    }
    job.task->touched = false;
  }
  return FinishCommit();
}

absl::Status CoreStage::FinishCommit() {
  // Only now are the batch's accepted ids in the durable index.
  if (dedup_batch_ != nullptr) dedup_->Commit(std::move(dedup_batch_));
  // A partition opened inside this batch: its committed ids join the table
  // now that no batch is open.
  if (dedup_stale_) {
    if (absl::Status s = RebuildDeduplicator(); !s.ok()) return s;
  }
  CountPending();
  PublishMetrics();
  return absl::OkStatus();
}

void CoreStage::PublishMetrics() {
  if (metrics_ == nullptr) return;
  Metrics& m = *metrics_;
  m.pending.Set(static_cast<double>(counters_.pending));
  m.cache_bytes.Set(static_cast<double>(stores_->cache_usage_bytes()));
  Metrics::Advance(m.replayed, counters_.replayed_skipped, &m.last_replayed);
  Metrics::Advance(m.state_gaps, counters_.state_gaps, &m.last_state_gaps);
  Metrics::Advance(m.late_clicks, counters_.late_clicks, &m.last_late_clicks);
  Metrics::Advance(m.late_conversions, counters_.late_conversions, &m.last_late_conversions);
  const DedupCounters& d = dedup_->counters();
  // The deduplicator is rebuilt on assignment changes (its counters restart
  // at zero): Advance ignores a decrease and resumes from the new value.
  Metrics::Advance(m.dedup_lookups,
                   d.authority_lookups_fingerprint_hit.load(std::memory_order_relaxed) +
                       d.authority_lookups_below_watermark.load(std::memory_order_relaxed) +
                       d.authority_lookups_contention.load(std::memory_order_relaxed),
                   &m.last_lookups);
  Metrics::Advance(m.dedup_evictions, d.pressure_evictions.load(std::memory_order_relaxed),
                   &m.last_evictions);
  const FraudCounters f = fraud_->counters();
  Metrics::Advance(m.flood_overflows, f.flood_table_overflows, &m.last_overflows);
}

void CoreStage::PublishSampledMetrics() {
  if (metrics_ == nullptr) return;
  Metrics& m = *metrics_;
  const absl::Time now = options_.clock();
  // Once a second, batch or no batch: the age grows while nothing arrives,
  // and RocksDB's compactions change its figures between batches.
  if (now - m.last_sample < absl::Seconds(1)) return;
  m.last_sample = now;
  std::optional<TimestampMs> oldest;
  for (const auto& [partition, task] : tasks_) {
    if (task->restoring) continue;  // its store belongs to the restorer's thread
    absl::StatusOr<std::optional<TaskStore::PendingRef>> ref = task->store->OldestPending();
    if (ref.ok() && ref->has_value() && (!oldest.has_value() || (*ref)->event_time_ms < *oldest)) {
      oldest = (*ref)->event_time_ms;
    }
  }
  const double age =
      oldest.has_value() ? static_cast<double>(absl::ToUnixMillis(now) - *oldest) / 1000.0 : 0.0;
  m.oldest_pending_age.Set(std::max(0.0, age));
  const StateStoreStats st = stores_->Stats();
  m.sst_bytes.Set(static_cast<double>(st.sst_bytes));
  m.memtable_bytes.Set(static_cast<double>(st.memtable_bytes));
  m.pending_compaction_bytes.Set(static_cast<double>(st.pending_compaction_bytes));
  m.running_compactions.Set(static_cast<double>(st.running_compactions));
  m.stalled_stores.Set(static_cast<double>(st.stalled_stores));
  m.open_stores.Set(st.open_stores);
  m.cache_bytes.Set(static_cast<double>(stores_->cache_usage_bytes()));
  Metrics::Advance(m.block_cache_hits, st.block_cache_hits, &m.last_hits);
  Metrics::Advance(m.block_cache_misses, st.block_cache_misses, &m.last_misses);
  if (st.stall_micros > m.last_stall_micros) {
    m.stall_seconds.Increment(static_cast<double>(st.stall_micros - m.last_stall_micros) / 1e6);
  }
  m.last_stall_micros = st.stall_micros;
  Metrics::Advance(m.compaction_written, st.compaction_bytes_written, &m.last_compaction_written);
}

void CoreStage::PublishRestoreMetrics() {
  if (metrics_ == nullptr || restorer_ == nullptr) return;
  Metrics& m = *metrics_;
  const RestoreProgress p = restorer_->progress();
  Metrics::Advance(m.restored_records, p.records_done, &m.last_restored);
  m.restore_remaining.Set(static_cast<double>(p.records_remaining));
  m.standby_lag.Set(static_cast<double>(restorer_->standby_lag()));
}

void CoreStage::OnPartitionsAssigned(const std::vector<int32_t>& partitions) {
  bool grew = false;
  // After a restart every task's store recovers its RocksDB log: in
  // parallel, before the per-task bookkeeping below.
  std::vector<int32_t> to_open;
  for (int32_t p : partitions) {
    if (!tasks_.contains(p) && !standbys_.contains(p)) to_open.push_back(p);
  }
  stores_->OpenMany(to_open);
  for (int32_t p : partitions) {
    if (tasks_.contains(p)) continue;
    if (auto standby = standbys_.find(p); standby != standbys_.end()) {
      // A warm standby becomes the task: the restorer stops following it
      // (the store stays open), then restores the little that is left.
      standbys_.erase(standby);
      restorer_->SetStandbys(standbys_);
      stores_->SetIndexed(p, true);
    }
    absl::StatusOr<TaskStore*> store = stores_->Open(p);
    if (!store.ok()) {
      Remember(absl::Status(
          store.status().code(),
          absl::StrCat("opening the state of partition ", p, ": ", store.status().message())));
      continue;
    }
    auto task = std::make_unique<Task>();
    task->store = *store;
    Task& t = *tasks_.emplace(p, std::move(task)).first->second;
    if (restorer_ != nullptr) {
      // The local store holds the changelog up to its checkpoint; the tail
      // (everything, on an empty volume) is restored on the restorer's
      // thread while the other tasks go on.
      t.restoring = true;
      TALLY_LOG(kInfo, kLog, "partition ", p, ": state opened at ", t.store->directory(),
                ", restoring from changelog offset ",
                t.store->changelog_offset().has_value() ? absl::StrCat(*t.store->changelog_offset())
                                                        : "start");
      restorer_->Start(p, t.store);
      continue;
    }
    Activate(p, t);
    grew = true;
  }
  CountPending();
  UpdateStandbys();
  // The shared dedup table must know the committed ids of every partition
  // this instance now owns before it answers for them.
  if (grew) {
    Remember(RebuildFloodCounts());
    if (dedup_batch_ != nullptr) {
      // Assignment inside a batch (never from the Processor, which only
      // polls between batches): keep the table; the durable index still
      // decides every slow path.
      dedup_stale_ = true;
    } else {
      Remember(RebuildDeduplicator());
    }
  }
}

std::vector<int32_t> CoreStage::standby_partitions() const {
  std::vector<int32_t> out;
  for (const auto& [p, store] : standbys_) out.push_back(p);
  return out;
}

void CoreStage::UpdateStandbys() {
  if (restorer_ == nullptr || options_.num_standbys <= 0) return;
  // The range assignor gives each member a contiguous range of tasks; the
  // tasks after this member's range are the next member's. Keeping them
  // warm makes that member's fail-over (its tasks land here, at least
  // partly, when the ranges are recomputed) a tail restore.
  std::set<int32_t> wanted;
  if (!tasks_.empty()) {
    const int32_t last = tasks_.rbegin()->first;
    const int64_t count =
        std::min<int64_t>(static_cast<int64_t>(tasks_.size()) * options_.num_standbys,
                          input_partitions_ - static_cast<int64_t>(tasks_.size()));
    for (int64_t i = 1; static_cast<int64_t>(wanted.size()) < count && i < input_partitions_; ++i) {
      const auto p = static_cast<int32_t>((last + i) % input_partitions_);
      if (!tasks_.contains(p)) wanted.insert(p);
    }
  }
  std::map<int32_t, TaskStore*> next;
  std::vector<int32_t> dropped;
  for (const auto& [p, store] : standbys_) {
    if (wanted.contains(p)) {
      next.emplace(p, store);
    } else {
      dropped.push_back(p);
    }
  }
  for (int32_t p : wanted) {
    if (next.contains(p)) continue;
    absl::StatusOr<TaskStore*> store = stores_->Open(p);
    if (!store.ok()) {
      TALLY_LOG(kWarning, kLog, "standby of partition ", p,
                " not opened: ", store.status().ToString());
      continue;
    }
    stores_->SetIndexed(p, false);
    next.emplace(p, *store);
  }
  standbys_ = std::move(next);
  // Returns once no follow round touches a dropped store.
  restorer_->SetStandbys(standbys_);
  for (int32_t p : dropped) Remember(stores_->Close(p));
  if (!wanted.empty() || !dropped.empty()) {
    std::string list;
    for (int32_t p : wanted) absl::StrAppend(&list, list.empty() ? "" : ",", p);
    TALLY_LOG(kInfo, kLog, "standby tasks: [", list, "]");
  }
}

void CoreStage::Activate(int32_t partition, Task& task) {
  JoinOptions join = options_.join;
  // What the joiner may see is what the store keeps: one source of truth.
  join.click_retention_ms = options_.state.click_retention_ms;
  join.max_conversion_lateness_ms = options_.state.conversion_lateness_ms;
  join.max_pending_conversions =
      options_.max_pending_conversions <= 0
          ? 0
          : std::max<int64_t>(1, options_.max_pending_conversions / input_partitions_);
  task.joiner = std::make_unique<Joiner>(task.store, offers_.get(), join);
  task.restoring = false;
  // Idle from now on, not since the store was written.
  task.last_click_wall = options_.clock();
  task.max_click_at_last_click = task.store->click_watermark();
  TALLY_LOG(kInfo, kLog, "partition ", partition, ": task ready at ", task.store->directory(),
            ", pending ", task.store->pending_count());
}

bool CoreStage::TaskReady(int32_t partition) const {
  auto it = tasks_.find(partition);
  return it != tasks_.end() && !it->second->restoring;
}

int CoreStage::RestoringTasks() const {
  int n = 0;
  for (const auto& [p, task] : tasks_) n += task->restoring ? 1 : 0;
  return n;
}

std::vector<PipelineStage::Position> CoreStage::TakeReadyTasks(std::vector<int32_t>* ready) {
  std::vector<Position> positions;
  if (restorer_ == nullptr) {
    PublishSampledMetrics();
    return positions;
  }
  // Each activation rebuilds the shared dedup and flood tables from every
  // open task (seconds with millions of keys), so tasks restored close
  // together are activated together: once no restore is left, or once the
  // first finished one has waited kActivationHold (other tasks keep running
  // meanwhile; only the restored ones wait).
  constexpr absl::Duration kActivationHold = absl::Seconds(1);
  PublishRestoreMetrics();
  PublishSampledMetrics();
  for (RestoreResult& r : restorer_->TakeFinished()) {
    if (restored_.empty()) restored_since_ = absl::Now();
    restored_.push_back(std::move(r));
  }
  if (restored_.empty()) return positions;
  if (restorer_->progress().restoring > 0 && absl::Now() - restored_since_ < kActivationHold) {
    return positions;
  }
  bool grew = false;
  for (RestoreResult& r : std::exchange(restored_, {})) {
    auto it = tasks_.find(r.partition);
    if (it == tasks_.end() || !it->second->restoring) continue;
    Task& task = *it->second;
    if (r.status.code() == absl::StatusCode::kDataLoss) {
      // A record this build cannot read: retrying cannot help.
      Remember(absl::DataLossError(absl::StrCat(
          "partition ", r.partition, ": restoring the changelog: ", r.status.message())));
      continue;
    }
    if (!r.status.ok()) {
      // Retriable by nature (the broker, the reader): the store keeps what
      // was applied with its offset, so the next attempt resumes there.
      TALLY_LOG(kWarning, kLog, "partition ", r.partition, ": restore failed (",
                r.status.ToString(), "); retrying");
      restorer_->Start(r.partition, task.store);
      continue;
    }
    if (r.lost_from >= 0) {
      ++counters_.state_gaps;
      TALLY_LOG(kWarning, kLog, "state gap: partition=", r.partition,
                " topic=", options_.changelog_topic, " resumes_at=", r.from_offset,
                " local_state_ends_at=", r.lost_from,
                " (the changelog no longer holds the records in between: check its "
                "cleanup.policy=compact and retention; joins over that state may miss)");
    }
    if (r.cleared) {
      TALLY_LOG(kInfo, kLog, "partition ", r.partition,
                ": local checkpoint older than the changelog's tombstone retention; store "
                "cleared and restored from the start");
    }
    TALLY_LOG(kInfo, kLog, "partition ", r.partition, ": restored ", r.records,
              " changelog records (offsets ", r.from_offset, " .. ", r.to_offset, ") in ",
              absl::StrFormat("%.3f", r.seconds), " s (", absl::StrFormat("%.3f", r.cpu_seconds),
              " s CPU)",
              r.tail_records > 0
                  ? absl::StrCat("; ", r.tail_records,
                                 " records after the last marker (a transaction that never "
                                 "completed) discarded, to be compensated")
                  : "");
    Activate(r.partition, task);
    grew = true;
    ready->push_back(r.partition);
    for (const InputPosition& ip : task.store->positions()) {
      positions.push_back(Position{ip.topic, r.partition, ip.next_offset});
    }
  }
  if (grew) {
    Remember(RebuildFloodCounts());
    Remember(RebuildDeduplicator());
    CountPending();
  }
  return positions;
}

void CoreStage::OnPartitionsRevoked(const std::vector<int32_t>& partitions) {
  for (int32_t p : partitions) {
    auto it = tasks_.find(p);
    if (it == tasks_.end()) continue;
    if (it->second->restoring && restorer_ != nullptr) restorer_->Cancel(p);
    it->second->joiner.reset();
    std::erase(unjournaled_, it->second.get());
    tasks_.erase(it);
    // Committed state stays on disk: if the partition comes back, it
    // resumes where it stood.
    Remember(stores_->Close(p));
  }
  UpdateStandbys();
}

}  // namespace tally
