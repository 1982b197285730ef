// Liveness and readiness of the processor (stub until the health component
// lands; same API).
#ifndef TALLY_PROCESSOR_METRICS_HEALTH_H_
#define TALLY_PROCESSOR_METRICS_HEALTH_H_

#include <functional>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace tally {

class Health {
 public:
  using Clock = std::function<absl::Time()>;
  explicit Health(absl::Duration stall_after = absl::Seconds(60), Clock clock = nullptr)
      : stall_after_(stall_after), clock_(clock ? std::move(clock) : Clock(absl::Now)) {}
  void Heartbeat() {
    absl::MutexLock lock(&mu_);
    last_ = clock_();
  }
  void SetReady(bool ready, std::string reason) {
    absl::MutexLock lock(&mu_);
    ready_ = ready;
    reason_ = std::move(reason);
  }
  struct Verdict {
    bool ok;
    std::string text;
  };
  Verdict Liveness() const {
    absl::MutexLock lock(&mu_);
    return {clock_() - last_ <= stall_after_, "ok"};
  }
  Verdict Readiness() const {
    absl::MutexLock lock(&mu_);
    return {ready_, ready_ ? "ok" : "not ready: " + reason_};
  }

 private:
  const absl::Duration stall_after_;
  const Clock clock_;
  mutable absl::Mutex mu_;
  absl::Time last_ = absl::Now();
  bool ready_ = false;
  std::string reason_ = "starting";
};

}  // namespace tally

#endif  // TALLY_PROCESSOR_METRICS_HEALTH_H_
