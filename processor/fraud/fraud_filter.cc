#include "processor/fraud/fraud_filter.h"

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "processor/fraud/internal/flood_table.h"

namespace tally {
namespace {

using fraud_internal::FloodTable;

// floor(ts / window) also for negative times, so windows tumble uniformly.
int64_t WindowIndex(int64_t ts, int64_t window_ms) {
  int64_t q = ts / window_ms;
  if (ts % window_ms != 0 && ts < 0) --q;
  return q;
}

}  // namespace

// Read side of the rules publication (see the header). The pair
//   reader: readers.fetch_add  ; current_.load
//   writer: current_.store     ; readers.load (per stripe)
// is a store-buffering (Dekker) pattern: only seq_cst on all four accesses
// guarantees that the reader sees the new pointer or the writer sees the
// reader's increment (acquire/release would allow both to miss). The
// decrement is release and the writer's load (seq_cst, hence acquire) reads
// it or a later RMW of the same count (a release sequence), so every use of
// the old rules happens-before the writer frees them.
class FraudFilter::ReadGuard {
 public:
  ReadGuard(Stripe& stripe, const std::atomic<const FraudRules*>& current) : stripe_(stripe) {
    stripe_.readers.fetch_add(1, std::memory_order_seq_cst);
    rules_ = current.load(std::memory_order_seq_cst);
  }
  ~ReadGuard() { stripe_.readers.fetch_sub(1, std::memory_order_release); }
  ReadGuard(const ReadGuard&) = delete;
  ReadGuard& operator=(const ReadGuard&) = delete;

  const FraudRules& operator*() const { return *rules_; }

 private:
  Stripe& stripe_;
  const FraudRules* rules_;
};

absl::Status FraudFilter::Options::Validate() const {
  if (max_clicks_per_ip < 1 || max_clicks_per_ip > FloodTable::kMaxLimit) {
    return absl::InvalidArgumentError(absl::StrCat("fraud.max_clicks_per_ip: ", max_clicks_per_ip,
                                                   " is not in [1, ", FloodTable::kMaxLimit, "]"));
  }
  if (flood_window_ms < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("fraud.flood_window: ", flood_window_ms, " ms is not positive"));
  }
  if (flood_table_slots < 2 || flood_table_slots > (size_t{1} << 32) ||
      (flood_table_slots & (flood_table_slots - 1)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("fraud.flood_table_slots: ", flood_table_slots,
                                                   " is not a power of two in [2, 2^32]"));
  }
  if (flood_lateness_ms < 0 ||
      flood_lateness_ms / flood_window_ms > FloodTable::kMaxLatenessWindows - 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("fraud.flood_lateness: ", flood_lateness_ms, " ms is not in [0, ",
                     FloodTable::kMaxLatenessWindows - 1, " flood windows]"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<FraudFilter>> FraudFilter::Create(const Options& options) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  absl::StatusOr<std::shared_ptr<const FraudRules>> rules =
      FraudRules::Load(options.bot_user_agents_file, options.ip_blocklist_file);
  if (!rules.ok()) return rules.status();
  return CreateWithRules(options, *std::move(rules));
}

absl::StatusOr<std::unique_ptr<FraudFilter>> FraudFilter::CreateWithRules(
    const Options& options, std::shared_ptr<const FraudRules> rules) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  if (rules == nullptr) return absl::InvalidArgumentError("FraudFilter: null rules");
  return std::unique_ptr<FraudFilter>(new FraudFilter(options, std::move(rules)));
}

FraudFilter::FraudFilter(const Options& options, std::shared_ptr<const FraudRules> rules)
    : options_(options),
      flood_(std::make_unique<FloodTable>(
          options.flood_table_slots,
          static_cast<int>(
              std::min<size_t>(FloodTable::kDefaultProbeLimit, options.flood_table_slots)),
          options.max_clicks_per_ip,
          std::max<int64_t>(2, (options.flood_lateness_ms + options.flood_window_ms - 1) /
                                   options.flood_window_ms))) {
  std::lock_guard lock(reload_mu_);
  Publish(std::move(rules));
}

FraudFilter::~FraudFilter() = default;

FraudFilter::Stripe& FraudFilter::ThisThreadStripe(std::array<Stripe, kStripes>& stripes) {
  // Round-robin per thread (not a hash of the thread id), so up to kStripes
  // threads get distinct stripes. relaxed: only uniqueness matters.
  static std::atomic<uint32_t> next_index{0};
  thread_local const uint32_t index = next_index.fetch_add(1, std::memory_order_relaxed);
  return stripes[index % kStripes];
}

std::optional<RejectReason> FraudFilter::Check(const Click& click) {
  if (std::optional<RejectReason> reason = CheckRules(click); reason.has_value()) return reason;
  if (CountFlood(click) == FloodVerdict::kRejected) return RejectReason::kIpClickFlood;
  return std::nullopt;  // accepted, or fail-open on overflow (see the header)
}

std::optional<RejectReason> FraudFilter::CheckRules(const Click& click) {
  Stripe& stripe = ThisThreadStripe(stripes_);
  stripe.checked.fetch_add(1, std::memory_order_relaxed);
  const ReadGuard rules(stripe, current_);
  if ((*rules).IsBotUserAgent(click.user_agent)) {
    stripe.bot_user_agent.fetch_add(1, std::memory_order_relaxed);
    return RejectReason::kBotUserAgent;
  }
  if ((*rules).IsBlocklisted(click.ip)) {
    stripe.ip_blocklisted.fetch_add(1, std::memory_order_relaxed);
    return RejectReason::kIpBlocklisted;
  }
  return std::nullopt;
}

FraudFilter::FloodVerdict FraudFilter::CountFlood(const Click& click) {
  Stripe& stripe = ThisThreadStripe(stripes_);
  switch (flood_->Add(click.ip, FloodWindowOf(click.event_time_ms))) {
    case FloodTable::Outcome::kAccepted:
      return FloodVerdict::kAccepted;
    case FloodTable::Outcome::kRejected:
      stripe.ip_click_flood.fetch_add(1, std::memory_order_relaxed);
      return FloodVerdict::kRejected;
    case FloodTable::Outcome::kOverflow:
      stripe.flood_table_overflows.fetch_add(1, std::memory_order_relaxed);
      return FloodVerdict::kOverflow;
  }
  return FloodVerdict::kAccepted;
}

int64_t FraudFilter::FloodWindowOf(TimestampMs event_time_ms) const {
  return WindowIndex(event_time_ms, options_.flood_window_ms);
}

void FraudFilter::ClearFloodCounts() { flood_->Clear(); }

void FraudFilter::RestoreFloodCount(const IpAddress& ip, int64_t window, uint64_t count) {
  if (!flood_->Restore(ip, window, count)) {
    Stripe& stripe = ThisThreadStripe(stripes_);
    stripe.flood_table_overflows.fetch_add(1, std::memory_order_relaxed);
  }
}

absl::Status FraudFilter::Reload() {
  std::lock_guard lock(reload_mu_);
  absl::StatusOr<std::shared_ptr<const FraudRules>> next =
      FraudRules::Load(options_.bot_user_agents_file, options_.ip_blocklist_file);
  if (!next.ok()) {
    reload_failures_.fetch_add(1, std::memory_order_relaxed);
    return next.status();
  }
  Publish(*std::move(next));
  reloads_.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

void FraudFilter::Publish(std::shared_ptr<const FraudRules> next) {
  // seq_cst: the writer half of the Dekker pattern (ReadGuard); also a
  // release, so readers that load the pointer see the fully built rules.
  current_.store(next.get(), std::memory_order_seq_cst);
  // Grace period: a reader that loaded the OLD pointer incremented its
  // stripe before our store (seq_cst total order), so it is counted in any
  // value we read now; seeing 0 once means it has left. Readers hold a stripe
  // for one Check (sub-microsecond), so this waits briefly; a stripe shared
  // by two threads whose Checks overlap without pause could delay it, which
  // only delays the reload.
  for (Stripe& stripe : stripes_) {
    for (int spins = 0; stripe.readers.load(std::memory_order_seq_cst) != 0; ++spins) {
      if (spins > 64) std::this_thread::yield();
    }
  }
  owned_ = std::move(next);  // drops our reference to the previous rules
}

std::shared_ptr<const FraudRules> FraudFilter::rules() const {
  std::lock_guard lock(reload_mu_);
  return owned_;
}

FraudCounters FraudFilter::counters() const {
  FraudCounters c;
  for (const Stripe& s : stripes_) {
    c.checked += s.checked.load(std::memory_order_relaxed);
    c.bot_user_agent += s.bot_user_agent.load(std::memory_order_relaxed);
    c.ip_blocklisted += s.ip_blocklisted.load(std::memory_order_relaxed);
    c.ip_click_flood += s.ip_click_flood.load(std::memory_order_relaxed);
    c.flood_table_overflows += s.flood_table_overflows.load(std::memory_order_relaxed);
  }
  c.reloads = reloads_.load(std::memory_order_relaxed);
  c.reload_failures = reload_failures_.load(std::memory_order_relaxed);
  return c;
}

}  // namespace tally
