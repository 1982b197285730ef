// Concurrency properties of the FraudFilter; run under ThreadSanitizer
// (tsan_targets). The flood tests would fail on a lost update or on two slots
// claimed for one (IP, window): the rejected count of some key would differ
// from n - limit. The reload test would fail (TSan: use after free / data
// race) if a reader could still use rules that Reload freed.
#include <algorithm>
#include <atomic>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "processor/fraud/fraud_filter.h"

namespace tally {
namespace {

constexpr TimestampMs kT0 = 1'767'225'600'000;
constexpr int64_t kMinute = 60'000;

Click MakeClick(const IpAddress& ip, TimestampMs t, std::string ua = "Mozilla/5.0") {
  Click c;
  c.click_id = "c";
  c.event_time_ms = t;
  c.ip = ip;
  c.user_agent = std::move(ua);
  return c;
}

std::unique_ptr<FraudFilter> Filter(int64_t limit, size_t slots) {
  FraudFilter::Options options;
  options.max_clicks_per_ip = limit;
  options.flood_window_ms = kMinute;
  options.flood_table_slots = slots;
  auto rules = FraudRules::FromText("Googlebot\n", "198.51.100.0/24\n");
  EXPECT_TRUE(rules.ok()) << rules.status();
  auto f = FraudFilter::CreateWithRules(options, *rules);
  EXPECT_TRUE(f.ok()) << f.status();
  return *std::move(f);
}

struct Key {
  int ip;
  int window;
};

// `threads` threads check the clicks of `keys` (ip index, window) together:
// each key gets `per_thread` clicks from EVERY thread, in a per-thread random
// order. Returns the number of flood rejections per key.
std::vector<int> Hammer(FraudFilter& filter, const std::vector<Key>& keys, int threads,
                        int per_thread) {
  std::vector<std::atomic<int>> rejected(keys.size());
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::vector<int> order;
      for (size_t k = 0; k < keys.size(); ++k) {
        for (int i = 0; i < per_thread; ++i) order.push_back(static_cast<int>(k));
      }
      std::shuffle(order.begin(), order.end(), std::mt19937(99 + t));
      for (const int k : order) {
        const Key& key = keys[k];
        const IpAddress ip = IpAddress::FromV4(0xb9000000u + static_cast<uint32_t>(key.ip));
        const std::optional<RejectReason> r =
            filter.Check(MakeClick(ip, kT0 + key.window * kMinute + (k % 60'000)));
        if (r.has_value()) {
          EXPECT_EQ(*r, RejectReason::kIpClickFlood);
          rejected[k].fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }
  for (std::thread& w : workers) w.join();
  std::vector<int> out;
  for (auto& r : rejected) out.push_back(r.load());
  return out;
}

TEST(FraudConcurrencyTest, FloodIsExactUnderContentionOnFewKeys) {
  // 4 IPs x 2 windows, 4 threads x 50 clicks each per key: n = 200, limit 20.
  auto filter = Filter(/*limit=*/20, /*slots=*/1 << 10);
  std::vector<Key> keys;
  for (int ip = 0; ip < 4; ++ip) {
    for (int w = 0; w < 2; ++w) keys.push_back({ip, w});
  }
  for (int attempt = 0; attempt < 20; ++attempt) {
    auto f = Filter(20, 1 << 10);
    const std::vector<int> rejected = Hammer(*f, keys, /*threads=*/4, /*per_thread=*/50);
    ASSERT_EQ(f->counters().flood_table_overflows, 0u);
    for (size_t k = 0; k < keys.size(); ++k) {
      ASSERT_EQ(rejected[k], 200 - 20) << "ip " << keys[k].ip << " window " << keys[k].window;
    }
    EXPECT_EQ(f->counters().ip_click_flood, keys.size() * 180);
    EXPECT_EQ(f->counters().checked, keys.size() * 200);
  }
}

TEST(FraudConcurrencyTest, FloodIsExactWhenKeysShareProbeSequences) {
  // 64 keys in a 128-slot table: probe sequences overlap heavily, so racing
  // first claims of different keys (and of the same key) meet on the same
  // slots. Keys whose n is at or below the limit must see no rejection.
  std::vector<Key> keys;
  for (int ip = 0; ip < 32; ++ip) {
    for (int w = 0; w < 2; ++w) keys.push_back({ip, w});
  }
  for (int attempt = 0; attempt < 10; ++attempt) {
    auto f = Filter(/*limit=*/5, /*slots=*/128);
    const std::vector<int> rejected = Hammer(*f, keys, /*threads=*/3, /*per_thread=*/3);
    ASSERT_EQ(f->counters().flood_table_overflows, 0u);
    for (size_t k = 0; k < keys.size(); ++k) ASSERT_EQ(rejected[k], 9 - 5) << k;
  }
}

TEST(FraudConcurrencyTest, FloodStaysExactWhileWindowsAdvanceAndSlotsAreReclaimed) {
  // 64 keys per window, 512 slots: the live windows (the current one and
  // the two before it) fill at most 192 slots, and from window 8 on every new
  // key lands on slots of old windows, reclaimed in place. Threads process one
  // window at a time (together), as a stream in event-time order would.
  auto f = Filter(/*limit=*/4, /*slots=*/512);
  for (int w = 0; w < 40; ++w) {
    std::vector<Key> keys;
    for (int ip = 0; ip < 64; ++ip) keys.push_back({ip + (w % 3) * 7, w});
    const std::vector<int> rejected = Hammer(*f, keys, /*threads=*/2, /*per_thread=*/4);
    ASSERT_EQ(f->counters().flood_table_overflows, 0u) << "window " << w;
    for (size_t k = 0; k < keys.size(); ++k) ASSERT_EQ(rejected[k], 8 - 4) << "window " << w;
  }
}

TEST(FraudConcurrencyTest, ReloadWhileChecking) {
  // Two rule sets alternate: A says "alpha" is a bot and 198.51.100.0/24 is
  // blocklisted, B says "beta" is and 203.0.113.0/24. A Check must see one
  // whole rule set: never alpha and beta bots at once in one rules object,
  // which we cannot observe directly, but TSan sees every read of freed or
  // half-built rules.
  const std::string dir = ::testing::TempDir();
  FraudFilter::Options options;
  options.flood_table_slots = 1 << 12;
  options.max_clicks_per_ip = 1000;
  options.bot_user_agents_file = absl::StrCat(dir, "/fraud_conc_bots.txt");
  options.ip_blocklist_file = absl::StrCat(dir, "/fraud_conc_bl.txt");
  auto write = [&](std::string_view bots, std::string_view bl) {
    std::ofstream(options.bot_user_agents_file, std::ios::trunc) << bots;
    std::ofstream(options.ip_blocklist_file, std::ios::trunc) << bl;
  };
  write("alpha\n", "198.51.100.0/24\n");
  auto created = FraudFilter::Create(options);
  ASSERT_TRUE(created.ok()) << created.status();
  FraudFilter& filter = **created;

  std::atomic<bool> stop{false};
  std::atomic<int64_t> checks{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      IpAddress a, b, other;
      ASSERT_TRUE(IpAddress::Parse("198.51.100.7", &a));
      ASSERT_TRUE(IpAddress::Parse("203.0.113.7", &b));
      ASSERT_TRUE(IpAddress::Parse(absl::StrCat("2a02::", t + 1), &other));
      int64_t n = 0;
      while (!stop.load(std::memory_order_relaxed) || n < 1000) {
        // A new window per iteration: the flood rule never triggers.
        const TimestampMs ts = kT0 + n * kMinute;
        const auto alpha = filter.Check(MakeClick(other, ts, "x alpha y"));
        const auto beta = filter.Check(MakeClick(other, ts, "x BETA y"));
        const auto ip_a = filter.Check(MakeClick(a, ts));
        const auto ip_b = filter.Check(MakeClick(b, ts));
        for (const auto& r : {alpha, beta, ip_a, ip_b}) {
          if (r.has_value()) {
            EXPECT_TRUE(*r == RejectReason::kBotUserAgent || *r == RejectReason::kIpBlocklisted)
                << t;
          }
        }
        ++n;
      }
      checks.fetch_add(4 * n);
    });
  }

  int ok = 0;
  int failed = 0;
  for (int i = 0; i < 100; ++i) {
    if (i % 10 == 9) {
      write("alpha\n", "not-an-ip\n");  // refused: the previous rules stay
    } else if (i % 2 == 0) {
      write("beta\n", "203.0.113.0/24\n");
    } else {
      write("alpha\n", "198.51.100.0/24\n");
    }
    const absl::Status s = filter.Reload();
    s.ok() ? ++ok : ++failed;
  }
  stop.store(true);
  for (std::thread& r : readers) r.join();

  const FraudCounters c = filter.counters();
  EXPECT_EQ(c.reloads, static_cast<uint64_t>(ok));
  EXPECT_EQ(c.reload_failures, static_cast<uint64_t>(failed));
  EXPECT_EQ(failed, 10);
  EXPECT_EQ(c.checked, static_cast<uint64_t>(checks.load()));
  // The last successful reload (i = 98) installed B.
  EXPECT_EQ(filter.Check(MakeClick(IpAddress::FromV4(0x0b000001), kT0, "alpha")), std::nullopt);
  EXPECT_TRUE(filter.Check(MakeClick(IpAddress::FromV4(0x0b000001), kT0, "beta")).has_value());
}

}  // namespace
}  // namespace tally
