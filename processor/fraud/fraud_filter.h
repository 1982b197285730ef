// The click fraud filter: applied to every click that passed dedup. Rules, in
// order, the first that matches decides the reject reason:
//  1. bot_user_agent  the user agent contains a pattern of
//                     fraud.bot_user_agents_file (case-insensitive);
//  2. ip_blocklisted  the IP is in a CIDR of fraud.ip_blocklist_file;
//  3. ip_click_flood  more than max_clicks_per_ip clicks from the IP in one
//                     tumbling event-time window of flood_window_ms (window
//                     = floor(event_time / flood_window_ms)); the clicks
//                     beyond the limit are rejected. Only clicks that reach
//                     this rule count: bots and blocklisted clicks do not.
// The per-conversion CTIT rule is in ctit.h (the joiner evaluates it).
//
// Flood counters (internal/flood_table.h) are shared by all threads,
// lock-free, bounded (flood_table_slots x 8 bytes) and exact under the
// conditions stated there; they survive Reload. When the table has no room
// for an (IP, window) the click is ACCEPTED and counted in
// flood_table_overflows (fail-open): rejecting is refusing an affiliate's
// money, which we do on evidence, never because a data structure is full;
// the counter (alert on it) says the table needs more slots.
//
// Rule publication (Reload). The hot path must not lock. We rejected
// std::atomic<std::shared_ptr>: libstdc++ 12 implements load() with a
// spinlock bit in the atomic plus a reference-count increment and decrement,
// i.e. three read-modify-writes on two cache lines shared by EVERY worker
// thread (bench/fraud_bench.cc, BM_RulesAcquire*, measures it against ours).
// Instead the current rules are a raw pointer read with one seq_cst load,
// bracketed by a per-thread-striped reader count (a minimal RCU): a reader
// increments its stripe's count, loads the pointer, uses the rules,
// decrements. Reload stores the new pointer, then waits until each stripe's
// count has been seen at 0 once, after which no reader can still hold the old
// pointer, and frees it. Stripes are cache-line sized and picked per thread,
// so with up to kStripes threads the reader's RMWs hit a line no other
// thread writes. Memory stays bounded (one rule set, two during a reload).
//
// Thread-safety: Check and counters() from any number of threads; Reload
// from any thread (calls are serialised; it blocks until readers of the old
// rules are done, typically microseconds). Destroy only when no call runs.
#ifndef TALLY_PROCESSOR_FRAUD_FRAUD_FILTER_H_
#define TALLY_PROCESSOR_FRAUD_FRAUD_FILTER_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "processor/fraud/fraud_rules.h"
#include "processor/model/events.h"
#include "processor/model/reject_reason.h"

namespace tally {

namespace fraud_internal {
class FloodTable;
}  // namespace fraud_internal

// A snapshot of monotonic counters (each is eventually accurate; the set is
// not an atomic snapshot).
struct FraudCounters {
  uint64_t checked = 0;         // Check calls
  uint64_t bot_user_agent = 0;  // rejections by rule
  uint64_t ip_blocklisted = 0;
  uint64_t ip_click_flood = 0;
  uint64_t flood_table_overflows = 0;  // clicks accepted because the table was full
  uint64_t reloads = 0;                // successful Reload calls
  uint64_t reload_failures = 0;        // failed Reload calls (old rules kept)
};

class FraudFilter {
 public:
  struct Options {
    std::string bot_user_agents_file;  // fraud.bot_user_agents_file
    std::string ip_blocklist_file;     // fraud.ip_blocklist_file
    // fraud.max_clicks_per_ip: 1..4094 (the flood table's 12-bit count).
    int64_t max_clicks_per_ip = 20;
    // fraud.flood_window, in milliseconds, >= 1.
    int64_t flood_window_ms = 60'000;
    // Power of two, 8 bytes each (default 8 MiB). Live entries are the
    // distinct IPs of the current and two previous windows; keep the load
    // under ~0.5, e.g. 2^20 slots for up to ~170k distinct IPs per window.
    size_t flood_table_slots = size_t{1} << 20;
    // fraud.flood_lateness, in milliseconds: how far behind the newest
    // click (in event time) a click may be and still be counted exactly.
    // Partitions are consumed concurrently, so this must cover their skew;
    // live entries are the distinct IPs of lateness / flood_window windows.
    int64_t flood_lateness_ms = 0;  // 0: two windows

    absl::Status Validate() const;
  };

  // Loads both files. Errors name the config key, file and line.
  static absl::StatusOr<std::unique_ptr<FraudFilter>> Create(const Options& options);
  // With already compiled rules (tests, benchmarks); Reload still reads the
  // files of `options`.
  static absl::StatusOr<std::unique_ptr<FraudFilter>> CreateWithRules(
      const Options& options, std::shared_ptr<const FraudRules> rules);

  ~FraudFilter();
  FraudFilter(const FraudFilter&) = delete;
  FraudFilter& operator=(const FraudFilter&) = delete;

  // nullopt: accepted. Otherwise kBotUserAgent, kIpBlocklisted or
  // kIpClickFlood. Lock-free, no allocation. Every accepted click and every
  // flood-rejected one was counted for its (IP, window).
  std::optional<RejectReason> Check(const Click& click);

  // Check in two halves, for callers that keep flood verdicts durable
  // (processor/app: a replayed click gets the verdict it got before).
  // Rules 1 and 2 only; counts nothing.
  std::optional<RejectReason> CheckRules(const Click& click);
  enum class FloodVerdict : uint8_t { kAccepted = 0, kRejected = 1, kOverflow = 2 };
  // Rule 3: counts the click for its (IP, window).
  FloodVerdict CountFlood(const Click& click);
  // The tumbling flood window of an event time.
  int64_t FloodWindowOf(TimestampMs event_time_ms) const;
  // Rebuilding the counters from durable state (see flood_table.h Restore):
  // REQUIRES no concurrent Check/CountFlood.
  void ClearFloodCounts();
  void RestoreFloodCount(const IpAddress& ip, int64_t window, uint64_t count);

  // Re-reads both files. On error keeps the current rules and returns the
  // error. Flood counters are not reset.
  absl::Status Reload();

  // The rules in force (for logging their Summary()).
  std::shared_ptr<const FraudRules> rules() const;
  FraudCounters counters() const;
  const Options& options() const { return options_; }

  static constexpr int kStripes = 32;

 private:
  // One cache line per stripe: the reader count of the rules publication and
  // the hot-path counters of the threads mapped to it. All counter updates
  // are relaxed (statistics; nothing is synchronised through them).
  struct alignas(64) Stripe {
    std::atomic<int64_t> readers{0};
    std::atomic<uint64_t> checked{0};
    std::atomic<uint64_t> bot_user_agent{0};
    std::atomic<uint64_t> ip_blocklisted{0};
    std::atomic<uint64_t> ip_click_flood{0};
    std::atomic<uint64_t> flood_table_overflows{0};
  };
  class ReadGuard;

  FraudFilter(const Options& options, std::shared_ptr<const FraudRules> rules);
  static Stripe& ThisThreadStripe(std::array<Stripe, kStripes>& stripes);
  // Publishes `next` and frees the previous rules once no reader holds them.
  void Publish(std::shared_ptr<const FraudRules> next) ABSL_EXCLUSIVE_LOCKS_REQUIRED(reload_mu_);

  const Options options_;
  const std::unique_ptr<fraud_internal::FloodTable> flood_;

  // The rules readers use. seq_cst store and load: see ReadGuard.
  std::atomic<const FraudRules*> current_{nullptr};
  // Serialises Reload and owns the published rules.
  // std::mutex rather than absl::Mutex: Debian's Abseil is not built with
  // ThreadSanitizer (see processor/dedup/deduplicator.h).
  mutable std::mutex reload_mu_;
  std::shared_ptr<const FraudRules> owned_ ABSL_GUARDED_BY(reload_mu_);

  std::array<Stripe, kStripes> stripes_;
  std::atomic<uint64_t> reloads_{0};
  std::atomic<uint64_t> reload_failures_{0};
};

}  // namespace tally

#endif  // TALLY_PROCESSOR_FRAUD_FRAUD_FILTER_H_
