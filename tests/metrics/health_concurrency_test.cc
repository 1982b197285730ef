// Health is written by the loop thread and read by HTTP threads; run under
// TSan (`make tsan`) this checks that contract, and in any build that readers
// never see a torn verdict.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "processor/metrics/health.h"
#include "tests/metrics/fake_clock.h"

namespace tally {
namespace {

using testing_support::FakeClock;

TEST(HealthConcurrencyTest, LoopWritesWhileProbesReadNeverTorn) {
  FakeClock clock;
  Health health(absl::Seconds(60), [&clock] { return clock.Now(); });
  const std::string restoring = "task 3 restoring";
  std::atomic<bool> done{false};
  std::atomic<int> bad{0};

  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&] {
      while (!done.load()) {
        if (!health.Liveness().ok) bad.fetch_add(1);
        const Health::Verdict ready = health.Readiness();
        if (!(ready.ok ? ready.text == "ok"
                       : ready.text == "not ready: " + restoring ||
                             ready.text == "not ready: starting")) {
          bad.fetch_add(1);
        }
      }
    });
  }
  // The loop: a heartbeat a (fake) millisecond, readiness flipping.
  for (int i = 0; i < 20000; ++i) {
    clock.Advance(absl::Milliseconds(1));
    health.Heartbeat();
    if (i % 100 == 0) health.SetReady(i % 200 == 0, restoring);
  }
  done.store(true);
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(bad.load(), 0);
}

}  // namespace
}  // namespace tally
