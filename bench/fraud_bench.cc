// FraudFilter hot path. Check on realistic traffic that matches no rule (the
// common case: full user-agent scan, blocklist search, flood-table update),
// 1 and 2 threads sharing one filter; the bot matcher on a 200-byte user
// agent; the CIDR lookup with 10k ranges; and the cost of acquiring the
// current rules, ours (striped reader count) against
// std::atomic<std::shared_ptr>::load, which fraud_filter.h explains we
// rejected. No main(): benchmark_main provides it.
#include <array>
#include <atomic>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "benchmark/benchmark.h"
#include "processor/fraud/fraud_filter.h"
#include "processor/fraud/fraud_rules.h"

namespace tally {
namespace {

constexpr TimestampMs kT0 = 1'767'225'600'000;

// The patterns of deploy/config/bot_user_agents.txt (a copy: benchmarks do
// not depend on the working directory).
constexpr char kBotPatterns[] = R"(Googlebot
Google-InspectionTool
AdsBot-Google
Mediapartners-Google
Storebot-Google
APIs-Google
bingbot
BingPreview
msnbot
adidxbot
YandexBot
YandexMobileBot
Baiduspider
DuckDuckBot
Slurp
Sogou web spider
Exabot
SeznamBot
Applebot
PetalBot
Qwantify
coccocbot
AhrefsBot
SemrushBot
MJ12bot
DotBot
BLEXBot
DataForSeoBot
serpstatbot
SEOkicks
rogerbot
Screaming Frog
facebookexternalhit
facebookcatalog
Twitterbot
LinkedInBot
Pinterestbot
Slackbot
TelegramBot
Discordbot
redditbot
SkypeUriPreview
Embedly
GPTBot
ChatGPT-User
OAI-SearchBot
CCBot
ClaudeBot
Claude-Web
anthropic-ai
PerplexityBot
Bytespider
Amazonbot
Diffbot
omgili
ImagesiftBot
cohere-ai
python-requests
python-urllib
Python/
aiohttp
python-httpx
curl/
Wget
Go-http-client
Java/
Apache-HttpClient
okhttp
libwww-perl
LWP::Simple
PycURL
GuzzleHttp
axios/
node-fetch
undici
RestSharp
PostmanRuntime
Insomnia
HTTPie
Scrapy
colly
Nutch
heritrix
ia_archiver
archive.org_bot
HeadlessChrome
PhantomJS
Selenium
puppeteer
Playwright
webdriver
SlimerJS
UptimeRobot
Pingdom
StatusCake
Site24x7
NewRelicPinger
Datadog
GTmetrix
Lighthouse
crawler
spider
)";

constexpr char kBlocklist[] = "198.51.100.0/24\n2001:db8:bad::/48\n";

// The load generator's browser user agents (tools/loadgen/generator.cc).
const char* const kBrowserAgents[] = {
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.6099.43 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.61",
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/16.6 Mobile/15E148 Safari/604.1",
};

std::shared_ptr<const FraudRules> DefaultRules() {
  return *FraudRules::FromText(kBotPatterns, kBlocklist);
}

// Users as the load generator makes them: a stable IP each (IPv4 with first
// octet 11..99, 10 % IPv6 in 2a02::/16) and a browser user agent.
std::vector<Click> MakeUsers(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Click> users(n);
  for (Click& c : users) {
    const uint64_t h = rng();
    if (h % 10 == 0) {
      std::array<uint8_t, 16> b{0x2a, 0x02};
      for (int i = 2; i < 16; ++i) b[i] = static_cast<uint8_t>(rng());
      c.ip = IpAddress::FromBytes(b);
    } else {
      c.ip = IpAddress::FromV4(static_cast<uint32_t>((11 + (h >> 8) % 89) << 24) |
                               static_cast<uint32_t>((h >> 16) & 0xffffff));
    }
    c.user_agent = kBrowserAgents[(h >> 40) % std::size(kBrowserAgents)];
    c.click_id = absl::StrCat("c-", h);
    c.affiliate_id = "aff-1";
    c.offer_id = "off-1";
  }
  return users;
}

std::unique_ptr<FraudFilter> g_filter;

void SetupFilter(const benchmark::State&) {
  FraudFilter::Options options;  // production defaults: limit 20, 1 min, 2^20 slots
  g_filter = *FraudFilter::CreateWithRules(options, DefaultRules());
}
void TeardownFilter(const benchmark::State&) { g_filter.reset(); }

// Each thread: 100k users, one click per event-time millisecond (60k clicks
// per flood window, so windows tumble and slots are reclaimed as in
// production), no click matches a rule.
void BM_CheckNoMatch(benchmark::State& state) {
  std::vector<Click> users = MakeUsers(100'000, 17 + state.thread_index());
  std::mt19937 rng(5 + state.thread_index());
  std::vector<uint32_t> order(1 << 16);
  for (uint32_t& o : order) o = rng() % users.size();
  TimestampMs ts = kT0;
  size_t i = 0;
  for (auto _ : state) {
    Click& click = users[order[i++ & (order.size() - 1)]];
    click.event_time_ms = ts++;
    const std::optional<RejectReason> verdict = g_filter->Check(click);
    benchmark::DoNotOptimize(verdict);
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    const FraudCounters c = g_filter->counters();
    state.counters["rejected"] =
        static_cast<double>(c.bot_user_agent + c.ip_blocklisted + c.ip_click_flood);
    state.counters["overflows"] = static_cast<double>(c.flood_table_overflows);
  }
}
BENCHMARK(BM_CheckNoMatch)
    ->Setup(SetupFilter)
    ->Teardown(TeardownFilter)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();

// The bot matcher alone on a 200-byte browser user agent (no match: the
// whole string is scanned) and on a bot whose marker is at the end.
void BM_BotMatch200Bytes(benchmark::State& state) {
  const auto rules = DefaultRules();
  std::string ua =
      "Mozilla/5.0 (Linux; Android 14; SM-S918B Build/UP1A.231005.007; wv) AppleWebKit/537.36 "
      "(KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.144 Mobile Safari/537.36 "
      "[FB_IAB/FB4A;FBAV/444.0.0.35.110;]";
  ua.resize(200, ' ');
  const bool bot_at_end = state.range(0) == 1;
  if (bot_at_end) ua.replace(ua.size() - 10, 10, "SCRAPY/2.1");
  for (auto _ : state) {
    const bool is_bot = rules->IsBotUserAgent(ua);
    if (is_bot != bot_at_end) state.SkipWithError("unexpected verdict");
    benchmark::DoNotOptimize(is_bot);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(ua.size()));
}
BENCHMARK(BM_BotMatch200Bytes)->ArgName("bot_at_end")->Arg(0)->Arg(1);

// Blocklist of 10k random CIDRs (70 % IPv4 /16../32, 30 % IPv6 /32../64);
// lookups of random addresses of both families (mostly misses).
void BM_CidrLookup10k(benchmark::State& state) {
  std::mt19937_64 rng(3);
  std::string text;
  for (int i = 0; i < 10'000; ++i) {
    if (rng() % 10 < 7) {
      const int prefix = 16 + static_cast<int>(rng() % 17);
      const uint32_t addr = static_cast<uint32_t>(rng()) & (~uint32_t{0} << (32 - prefix));
      absl::StrAppendFormat(&text, "%d.%d.%d.%d/%d\n", addr >> 24, (addr >> 16) & 255,
                            (addr >> 8) & 255, addr & 255, prefix);
    } else {
      absl::StrAppendFormat(&text, "2a0%x:%x:%x::/48\n", rng() % 16, rng() % 65536, rng() % 65536);
    }
  }
  const auto rules = *FraudRules::FromText("", text);
  std::vector<IpAddress> probes;
  for (int i = 0; i < 4096; ++i) {
    if (i % 10 < 7) {
      probes.push_back(IpAddress::FromV4(static_cast<uint32_t>(rng())));
    } else {
      std::array<uint8_t, 16> b{0x2a, static_cast<uint8_t>(rng() % 16)};
      for (int j = 2; j < 16; ++j) b[j] = static_cast<uint8_t>(rng());
      probes.push_back(IpAddress::FromBytes(b));
    }
  }
  size_t i = 0;
  int64_t hits = 0;
  for (auto _ : state) hits += rules->IsBlocklisted(probes[i++ & 4095]);
  state.counters["ranges"] = static_cast<double>(rules->blocklist_range_count());
  state.counters["hit_ratio"] = static_cast<double>(hits) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_CidrLookup10k);

// --- Acquiring the current rules (the publication choice) -------------------

// The same protocol as FraudFilter's ReadGuard (fraud_filter.cc), in
// isolation.
struct alignas(64) ReaderStripe {
  std::atomic<int64_t> readers{0};
};
std::array<ReaderStripe, 32> g_stripes;
std::atomic<const FraudRules*> g_current{nullptr};
std::atomic<std::shared_ptr<const FraudRules>> g_atomic_rules;
std::shared_ptr<const FraudRules> g_rules_owner;

void SetupAcquire(const benchmark::State&) {
  g_rules_owner = DefaultRules();
  g_current.store(g_rules_owner.get());
  g_atomic_rules.store(g_rules_owner);
}
void TeardownAcquire(const benchmark::State&) {
  g_atomic_rules.store(nullptr);
  g_current.store(nullptr);
  g_rules_owner.reset();
}

void BM_RulesAcquireStripedCount(benchmark::State& state) {
  ReaderStripe& stripe = g_stripes[static_cast<size_t>(state.thread_index()) % g_stripes.size()];
  for (auto _ : state) {
    stripe.readers.fetch_add(1, std::memory_order_seq_cst);
    const FraudRules* rules = g_current.load(std::memory_order_seq_cst);
    benchmark::DoNotOptimize(rules->blocklist_range_count());
    stripe.readers.fetch_sub(1, std::memory_order_release);
  }
}
BENCHMARK(BM_RulesAcquireStripedCount)
    ->Setup(SetupAcquire)
    ->Teardown(TeardownAcquire)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();

void BM_RulesAcquireAtomicSharedPtr(benchmark::State& state) {
  for (auto _ : state) {
    const std::shared_ptr<const FraudRules> rules = g_atomic_rules.load();
    benchmark::DoNotOptimize(rules->blocklist_range_count());
  }
}
BENCHMARK(BM_RulesAcquireAtomicSharedPtr)
    ->Setup(SetupAcquire)
    ->Teardown(TeardownAcquire)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();

}  // namespace
}  // namespace tally
