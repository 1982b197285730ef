#include "processor/metrics/health.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace tally {

Health::Health(absl::Duration stall_after, Clock clock)
    : stall_after_(stall_after),
      clock_(clock != nullptr ? std::move(clock) : Clock([] { return absl::Now(); })),
      last_heartbeat_ns_(absl::ToUnixNanos(clock_())) {}

void Health::Heartbeat() {
  last_heartbeat_ns_.store(absl::ToUnixNanos(clock_()), std::memory_order_relaxed);
}

void Health::SetReady(bool ready, std::string reason) {
  std::lock_guard<std::mutex> lock(mutex_);
  ready_ = ready;
  reason_ = ready ? std::string() : std::move(reason);
}

Health::Verdict Health::Liveness() const {
  const absl::Time last = absl::FromUnixNanos(last_heartbeat_ns_.load(std::memory_order_relaxed));
  // A clock that steps back makes the silence negative: that is not a stall.
  const absl::Duration silent = clock_() - last;
  if (silent < stall_after_) return {true, "ok"};
  return {false, absl::StrCat("stalled: no loop progress for ", absl::ToInt64Seconds(silent), "s")};
}

void Health::SetUnreadyAfterSilence(absl::Duration bound) {
  unready_after_silence_ns_.store(
      bound == absl::InfiniteDuration() ? INT64_MAX : absl::ToInt64Nanoseconds(bound),
      std::memory_order_relaxed);
}

Health::Verdict Health::Readiness() const {
  Verdict live = Liveness();
  if (!live.ok) return {false, absl::StrCat("not ready: ", live.text)};
  const int64_t bound = unready_after_silence_ns_.load(std::memory_order_relaxed);
  const absl::Duration silent =
      clock_() - absl::FromUnixNanos(last_heartbeat_ns_.load(std::memory_order_relaxed));
  if (bound != INT64_MAX && silent >= absl::Nanoseconds(bound)) {
    return {false,
            absl::StrCat("not ready: the processing loop has been inside one call for ",
                         absl::ToInt64Seconds(silent), "s (a Kafka call waiting for the broker?)")};
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (ready_) return {true, "ok"};
  return {false, absl::StrCat("not ready: ", reason_.empty() ? "no reason given" : reason_)};
}

}  // namespace tally
