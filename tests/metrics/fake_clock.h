// A clock tests move by hand, for Health's injected clock. Thread-safe like
// the real one: HTTP threads (civetweb) and concurrency tests read it.
#ifndef TALLY_TESTS_METRICS_FAKE_CLOCK_H_
#define TALLY_TESTS_METRICS_FAKE_CLOCK_H_

#include <mutex>

#include "absl/time/time.h"

namespace tally::testing_support {

class FakeClock {
 public:
  absl::Time Now() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return now_;
  }
  void Advance(absl::Duration d) {
    std::lock_guard<std::mutex> lock(mutex_);
    now_ += d;
  }

 private:
  mutable std::mutex mutex_;
  absl::Time now_ = absl::FromUnixSeconds(1'700'000'000);
};

}  // namespace tally::testing_support

#endif  // TALLY_TESTS_METRICS_FAKE_CLOCK_H_
