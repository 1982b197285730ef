#include "processor/metrics/health.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <mutex>

#include "absl/time/time.h"
#include "tests/metrics/fake_clock.h"

namespace tally {
namespace {

using ::testing::StrEq;

using testing_support::FakeClock;

class HealthTest : public ::testing::Test {
 protected:
  std::unique_ptr<Health> MakeHealth(absl::Duration stall_after = absl::Seconds(60)) {
    return std::make_unique<Health>(stall_after, [this] { return clock_.Now(); });
  }
  FakeClock clock_;
};

TEST_F(HealthTest, LiveRightAfterConstructionAndWhileHeartbeating) {
  std::unique_ptr<Health> health = MakeHealth();
  EXPECT_TRUE(health->Liveness().ok);
  EXPECT_THAT(health->Liveness().text, StrEq("ok"));
  for (int i = 0; i < 10; ++i) {
    clock_.Advance(absl::Seconds(59));
    health->Heartbeat();
    EXPECT_TRUE(health->Liveness().ok) << "iteration " << i;
  }
}

TEST_F(HealthTest, NotReadyWhileOneCallBlocksLongerThanTheSilenceBound) {
  // Given a ready loop with a 3 s silence bound,
  std::unique_ptr<Health> health = MakeHealth(absl::Seconds(60));
  health->SetUnreadyAfterSilence(absl::Seconds(3));
  health->SetReady(true, "");
  health->Heartbeat();
  clock_.Advance(absl::Seconds(2));
  EXPECT_TRUE(health->Readiness().ok);
  // when one iteration blocks past the bound, readiness fails (liveness not),
  clock_.Advance(absl::Seconds(1));
  EXPECT_FALSE(health->Readiness().ok);
  EXPECT_THAT(health->Readiness().text, testing::HasSubstr("inside one call for 3s"));
  EXPECT_TRUE(health->Liveness().ok);
  // and the next heartbeat makes it ready again.
  health->Heartbeat();
  EXPECT_TRUE(health->Readiness().ok);
}

TEST_F(HealthTest, StalledOnceNoHeartbeatForStallAfter) {
  // Given a loop that heartbeat once and then stopped,
  std::unique_ptr<Health> health = MakeHealth(absl::Seconds(60));
  health->Heartbeat();
  clock_.Advance(absl::Seconds(59) + absl::Milliseconds(999));
  EXPECT_TRUE(health->Liveness().ok);
  // when `stall_after` has passed, liveness fails and says for how long.
  clock_.Advance(absl::Milliseconds(1));
  EXPECT_FALSE(health->Liveness().ok);
  EXPECT_THAT(health->Liveness().text, StrEq("stalled: no loop progress for 60s"));
  clock_.Advance(absl::Seconds(13));
  EXPECT_THAT(health->Liveness().text, StrEq("stalled: no loop progress for 73s"));
  // A heartbeat brings it back.
  health->Heartbeat();
  EXPECT_TRUE(health->Liveness().ok);
}

TEST_F(HealthTest, ClockSteppingBackIsNotAStall) {
  std::unique_ptr<Health> health = MakeHealth();
  health->Heartbeat();
  clock_.Advance(absl::Hours(-2));
  EXPECT_TRUE(health->Liveness().ok);
}

TEST_F(HealthTest, NotReadyUntilToldWithStartingAsReason) {
  std::unique_ptr<Health> health = MakeHealth();
  EXPECT_FALSE(health->Readiness().ok);
  EXPECT_THAT(health->Readiness().text, StrEq("not ready: starting"));
}

TEST_F(HealthTest, ReadinessFollowsSetReadyAndShowsTheReason) {
  std::unique_ptr<Health> health = MakeHealth();
  health->SetReady(true, "ignored when ready");
  EXPECT_TRUE(health->Readiness().ok);
  EXPECT_THAT(health->Readiness().text, StrEq("ok"));

  health->SetReady(false, "broker unreachable: connection refused");
  EXPECT_FALSE(health->Readiness().ok);
  EXPECT_THAT(health->Readiness().text, StrEq("not ready: broker unreachable: connection refused"));

  health->SetReady(false, "");
  EXPECT_THAT(health->Readiness().text, StrEq("not ready: no reason given"));
}

// Guards against /readyz staying "ok" forever when the loop that would say
// otherwise is stuck.
TEST_F(HealthTest, StalledLoopIsNotReadyEvenIfItLastSaidReady) {
  std::unique_ptr<Health> health = MakeHealth(absl::Seconds(30));
  health->SetReady(true, "");
  clock_.Advance(absl::Seconds(45));
  EXPECT_FALSE(health->Readiness().ok);
  EXPECT_THAT(health->Readiness().text, StrEq("not ready: stalled: no loop progress for 45s"));
  health->Heartbeat();
  EXPECT_TRUE(health->Readiness().ok);
}

TEST(HealthDefaultClockTest, DefaultsAreLiveAndNotReady) {
  Health health;
  health.Heartbeat();
  EXPECT_TRUE(health.Liveness().ok);
  EXPECT_FALSE(health.Readiness().ok);
  EXPECT_EQ(health.stall_after(), absl::Seconds(60));
}

}  // namespace
}  // namespace tally
