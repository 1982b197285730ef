// Liveness and readiness of the processor: the processing loop writes them,
// the HTTP threads of MetricsServer read them (/healthz, /readyz).
//
// Liveness answers "is the loop still turning?": it fails once Heartbeat()
// has not been called for `stall_after`. The loop heartbeats on every
// iteration, whether it made progress or waited idle for input, so an idle
// instance is live and a loop stuck in a call (a hung flush, a deadlock) is
// not. Construction counts as the first heartbeat.
//
// Readiness answers "should this instance count as serving?": it is what the
// loop last said through SetReady(), and it is not ready while liveness fails
// (a stalled loop cannot keep its last word up to date). Until the first
// SetReady() it is not ready with reason "starting".
//
// Thread safety: every method may be called from any thread. Heartbeat() is
// one clock read and one relaxed atomic store; SetReady() takes a mutex, so
// call it when the state changes (calling it every iteration is correct, only
// slower). The clock is called from every thread that calls a method here,
// so an injected clock must be thread-safe.
#ifndef TALLY_PROCESSOR_METRICS_HEALTH_H_
#define TALLY_PROCESSOR_METRICS_HEALTH_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"

namespace tally {

class Health {
 public:
  using Clock = std::function<absl::Time()>;

  // Liveness fails once the loop has not called Heartbeat() for
  // `stall_after`. A null clock means absl::Now.
  // REQUIRES: stall_after > 0.
  explicit Health(absl::Duration stall_after = absl::Seconds(60), Clock clock = nullptr);

  Health(const Health&) = delete;
  Health& operator=(const Health&) = delete;

  // Loop thread, every iteration (progress or idle wait).
  void Heartbeat();

  // `reason` is shown while not ready ("not in the consumer group", "broker
  // unreachable: ...", "task 3 restoring"); it is ignored when `ready`.
  void SetReady(bool ready, std::string reason);

  struct Verdict {
    bool ok;
    std::string text;
  };
  // ok: "ok"; else "stalled: no loop progress for 73s".
  Verdict Liveness() const;
  // ok: "ok"; else "not ready: <reason>" (a stall is a reason).
  Verdict Readiness() const;

  absl::Duration stall_after() const { return stall_after_; }

  // Readiness also fails while the loop has not heartbeat for `bound`
  // (default: never): one call that blocks that long (an offset commit
  // waiting for an unreachable coordinator, a produce on a full queue)
  // means the instance is not processing, well before liveness gives up.
  // Any thread; takes effect at once.
  void SetUnreadyAfterSilence(absl::Duration bound);

 private:
  const absl::Duration stall_after_;
  const Clock clock_;
  // Unix nanoseconds of the last heartbeat. Relaxed: it is a single value
  // that publishes no other data, and a reader a few nanoseconds late only
  // sees a heartbeat a few nanoseconds older.
  std::atomic<int64_t> last_heartbeat_ns_;
  // SetUnreadyAfterSilence's bound in nanoseconds (INT64_MAX: none). Relaxed:
  // an isolated configuration value.
  std::atomic<int64_t> unready_after_silence_ns_{INT64_MAX};

  // std::mutex rather than absl::Mutex: Debian's Abseil is not built with
  // ThreadSanitizer (see processor/dedup/deduplicator.h).
  mutable std::mutex mutex_;
  bool ready_ ABSL_GUARDED_BY(mutex_) = false;
  std::string reason_ ABSL_GUARDED_BY(mutex_) = "starting";
};

}  // namespace tally

#endif  // TALLY_PROCESSOR_METRICS_HEALTH_H_
