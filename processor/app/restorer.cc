#include "processor/app/restorer.h"

#include <time.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "processor/common/log.h"

namespace tally {
namespace {

constexpr char kLog[] = "restore";
constexpr absl::Duration kWatermarkTimeout = absl::Seconds(10);

bool IsMarker(const kafka::Message& m) { return m.key() == kChangelogMarkerKey; }

double ThreadCpuSeconds() {
  timespec ts{};
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // namespace

std::map<std::string, std::string> ChangelogTopicConfig() {
  return {
      // Only the latest record of a key matters; tombstones delete.
      {"cleanup.policy", "compact"},
      // Time-based deletion would lose state that is never re-written.
      {"retention.ms", "-1"},
      // The tail of a batch that never completed (no marker) is compensated
      // by the task's next batch; until then, compacting against it could
      // drop the committed record of its keys (without transactions the
      // cleaner keeps stray records). A day is far longer than that.
      {"min.compaction.lag.ms", "86400000"},
      // Tombstones must outlive any local checkpoint that may still be
      // restored from (an older store is restored from scratch, see the
      // stage).
      {"delete.retention.ms", "604800000"},
      {"segment.bytes", "104857600"},
  };
}

Restorer::Restorer(Options options, std::unique_ptr<kafka::PartitionReader> reader)
    : options_(Sanitized(std::move(options))),
      reader_(std::move(reader)),
      thread_([this] { Loop(); }) {}

Restorer::Options Restorer::Sanitized(Options options) {
  options.tail_window = std::max<int64_t>(options.tail_window, 1);
  options.apply_batch = std::max<size_t>(options.apply_batch, 1);
  return options;
}

Restorer::~Restorer() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    queue_.clear();
    if (running_.has_value()) cancel_ = running_;
  }
  cv_.notify_all();
  thread_.join();
}

void Restorer::Start(int32_t partition, TaskStore* store) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(Job{partition, store});
  }
  cv_.notify_all();
}

void Restorer::Cancel(int32_t partition) {
  std::unique_lock lock(mu_);
  standbys_.erase(partition);
  standby_lags_.erase(partition);
  std::erase_if(queue_, [&](const Job& j) { return j.partition == partition; });
  std::erase_if(finished_, [&](const RestoreResult& r) { return r.partition == partition; });
  if (running_ == partition) {
    cancel_ = partition;
    cv_.wait(lock, [&] { return running_ != partition; });
    std::erase_if(finished_, [&](const RestoreResult& r) { return r.partition == partition; });
  }
}

std::vector<RestoreResult> Restorer::TakeFinished() {
  std::lock_guard lock(mu_);
  return std::exchange(finished_, {});
}

RestoreProgress Restorer::progress() const {
  std::lock_guard lock(mu_);
  RestoreProgress p;
  // A standby round is not a restore (the test of that raced with it).
  p.restoring =
      static_cast<int>(queue_.size()) + (running_.has_value() && !running_standby_ ? 1 : 0);
  p.records_done = records_done_.load(std::memory_order_relaxed);
  p.records_remaining = p.restoring == 0 ? 0 : records_remaining_.load(std::memory_order_relaxed);
  return p;
}

bool Restorer::busy(int32_t partition) const {
  std::lock_guard lock(mu_);
  if (running_ == partition) return true;
  return std::any_of(queue_.begin(), queue_.end(),
                     [&](const Job& j) { return j.partition == partition; });
}

bool Restorer::Cancelled(int32_t partition) const {
  std::lock_guard lock(mu_);
  return stop_ || cancel_ == partition;
}

void Restorer::SetStandbys(const std::map<int32_t, TaskStore*>& standbys) {
  std::unique_lock lock(mu_);
  standbys_ = standbys;
  std::erase_if(standby_lags_, [&](const auto& e) { return !standbys_.contains(e.first); });
  // A round over a store that left the set must end before the caller may
  // close it.
  if (running_.has_value() && running_standby_ && !standbys_.contains(*running_)) {
    const int32_t p = *running_;
    cancel_ = p;
    cv_.wait(lock, [&] { return running_ != p; });
  }
  cv_.notify_all();
}

void Restorer::Loop() {
  std::deque<int32_t> standby_round;  // what is left of the current round
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      for (;;) {
        if (stop_) return;
        if (!queue_.empty()) {
          job = queue_.front();
          queue_.pop_front();
          break;
        }
        while (!standby_round.empty() && !standbys_.contains(standby_round.front())) {
          standby_round.pop_front();
        }
        if (!standby_round.empty()) {
          const int32_t p = standby_round.front();
          standby_round.pop_front();
          job = Job{p, standbys_.at(p), /*standby=*/true};
          break;
        }
        // A new round after the interval (new jobs and stop wake it early).
        const bool woke = cv_.wait_for(lock, absl::ToChronoMilliseconds(options_.standby_interval),
                                       [&] { return stop_ || !queue_.empty(); });
        if (!woke) {
          for (const auto& [p, store] : standbys_) standby_round.push_back(p);
        }
      }
      running_ = job.partition;
      running_standby_ = job.standby;
    }
    RestoreResult result = Run(job);
    if (job.standby) {
      std::lock_guard lock(mu_);
      running_.reset();
      running_standby_ = false;
      cancel_.reset();
      if (result.status.ok() && standbys_.contains(job.partition)) {
        standby_lags_[job.partition] = result.tail_records;
      }
      uint64_t lag = 0;
      for (const auto& [p, l] : standby_lags_) lag += l;
      standby_lag_.store(lag, std::memory_order_relaxed);
      cv_.notify_all();
      continue;
    }
    if (!result.status.ok()) {
      // Most failures are the broker's (retried by the stage): do not spin.
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(500),
                   [&] { return stop_ || cancel_.has_value(); });
    }
    {
      std::lock_guard lock(mu_);
      running_.reset();
      const bool cancelled = cancel_ == job.partition;
      cancel_.reset();
      if (!cancelled) finished_.push_back(std::move(result));
    }
    cv_.notify_all();
  }
}

absl::Status Restorer::ReadRange(int32_t partition, int64_t from,
                                 const std::function<bool(std::unique_ptr<kafka::Message>&)>& fn) {
  const kafka::TopicPartition tp{options_.changelog_topic, partition};
  if (absl::Status s = reader_->Assign({{tp.topic, partition, from}}); !s.ok()) return s;
  std::vector<std::unique_ptr<kafka::Message>> messages;
  for (;;) {
    if (Cancelled(partition)) return absl::CancelledError("restore cancelled");
    messages.clear();
    if (absl::Status s = reader_->Poll(10'000, options_.poll_timeout, &messages); !s.ok()) {
      return s;
    }
    for (auto& m : messages) {
      if (m->partition() != partition || m->topic() != tp.topic) continue;
      if (!fn(m)) return absl::OkStatus();
    }
    if (messages.empty() && reader_->AtEnd(tp)) return absl::OkStatus();
  }
}

RestoreResult Restorer::Run(const Job& job) {
  const absl::Time started = absl::Now();
  const double cpu_started = ThreadCpuSeconds();
  RestoreResult result;
  result.partition = job.partition;
  TaskStore& store = *job.store;
  const kafka::TopicPartition tp{options_.changelog_topic, job.partition};
  auto watermarks = reader_->Watermarks(tp, kWatermarkTimeout);
  if (!watermarks.ok()) {
    result.status = watermarks.status();
    return result;
  }
  const auto [low, high] = *watermarks;
  std::optional<int64_t> checkpoint = store.changelog_offset();
  if (checkpoint.has_value() && store.changelog_time_ms() > 0 &&
      absl::FromUnixMillis(store.changelog_time_ms()) + options_.max_checkpoint_age < absl::Now()) {
    if (absl::Status s = store.Clear(); !s.ok()) {
      result.status = s;
      return result;
    }
    result.cleared = true;
    checkpoint.reset();
  }
  // A compacted changelog keeps its log start at 0; a later start means
  // records were deleted (retention, or the mock broker's 5 MiB cap), so
  // the state written below it is gone. Said loudly by the stage; what is
  // there is restored.
  int64_t from = checkpoint.value_or(0);
  if (from < low) {
    result.lost_from = from;
    from = low;
  }
  result.from_offset = from;
  result.to_offset = from;
  if (from >= high) {
    if (!job.standby) result.status = store.ReloadCommitted();
    result.seconds = absl::ToDoubleSeconds(absl::Now() - started);
    result.cpu_seconds = ThreadCpuSeconds() - cpu_started;
    return result;
  }
  records_remaining_.store(static_cast<uint64_t>(high - from), std::memory_order_relaxed);

  // Pass 1: the last marker, from a window at the end of the log. The
  // window's records are kept as the messages themselves (their bytes live
  // in the fetched buffers: no copy until the store's write batch).
  std::vector<std::unique_ptr<kafka::Message>> window;
  std::optional<int64_t> last_marker;
  int64_t window_start = std::max(from, high - options_.tail_window);
  for (;;) {
    window.clear();
    last_marker.reset();
    absl::Status s =
        ReadRange(job.partition, window_start, [&](std::unique_ptr<kafka::Message>& m) {
          if (IsMarker(*m)) {
            last_marker = m->offset();
          } else {
            window.push_back(std::move(m));
          }
          return true;
        });
    if (!s.ok()) {
      result.status = s;
      return result;
    }
    if (last_marker.has_value() || window_start == from) break;
    // Grows by at least one record, so the loop ends at `from`.
    window_start = std::max(from, std::min(window_start - 1, high - 4 * (high - window_start)));
  }

  // Pass 2: everything before the window precedes the last marker. The
  // batch's views point into `held`, the messages they came from.
  std::vector<ChangelogRecordView> batch;
  std::vector<std::unique_ptr<kafka::Message>> held;
  batch.reserve(options_.apply_batch);
  held.reserve(options_.apply_batch);
  int64_t last_offset = from - 1;
  absl::Status apply_status;
  auto view = [](const kafka::Message& m) {
    return ChangelogRecordView{
        m.key(), m.value_is_null() ? std::nullopt : std::optional<std::string_view>(m.value())};
  };
  auto flush = [&](int64_t next) {
    if (batch.empty() && next <= result.to_offset) return true;
    apply_status = store.ApplyChangelog(batch, next);
    if (!apply_status.ok()) return false;
    result.records += batch.size();
    records_done_.fetch_add(batch.size(), std::memory_order_relaxed);
    result.to_offset = next;
    batch.clear();
    held.clear();
    return true;
  };
  if (window_start > from) {
    absl::Status s = ReadRange(job.partition, from, [&](std::unique_ptr<kafka::Message>& m) {
      if (m->offset() >= window_start) return false;
      last_offset = m->offset();
      const int64_t offset = m->offset();
      if (!IsMarker(*m)) {
        batch.push_back(view(*m));
        held.push_back(std::move(m));
      }
      if (batch.size() >= options_.apply_batch) {
        records_remaining_.store(static_cast<uint64_t>(std::max<int64_t>(0, high - offset)),
                                 std::memory_order_relaxed);
        return flush(offset + 1);
      }
      return true;
    });
    if (s.ok() && !batch.empty()) flush(last_offset + 1);
    if (!s.ok() || !apply_status.ok()) {
      result.status = s.ok() ? apply_status : s;
      return result;
    }
  }

  // The window: records before the last marker are applied, the tail
  // after it is compensated.
  std::vector<std::string> tail;
  for (const std::unique_ptr<kafka::Message>& m : window) {
    if (last_marker.has_value() && m->offset() < *last_marker) {
      batch.push_back(view(*m));
    } else {
      tail.emplace_back(m->key());
    }
  }
  if (last_marker.has_value()) flush(*last_marker + 1);
  window.clear();
  if (!apply_status.ok()) {
    result.status = apply_status;
    return result;
  }
  result.tail_records = tail.size();
  if (job.standby) {
    // The tail of a live owner's batch whose marker is still to come: the
    // next round applies it.
    records_remaining_.store(0, std::memory_order_relaxed);
    result.seconds = absl::ToDoubleSeconds(absl::Now() - started);
    result.cpu_seconds = ThreadCpuSeconds() - cpu_started;
    return result;
  }
  if (absl::Status s = store.ReloadCommitted(); !s.ok()) {
    result.status = s;
    return result;
  }
  if (!tail.empty()) {
    std::sort(tail.begin(), tail.end());
    tail.erase(std::unique(tail.begin(), tail.end()), tail.end());
    store.AddCompensation(tail);
  }
  records_remaining_.store(0, std::memory_order_relaxed);
  result.seconds = absl::ToDoubleSeconds(absl::Now() - started);
  result.cpu_seconds = ThreadCpuSeconds() - cpu_started;
  return result;
}

}  // namespace tally
