#include "processor/fraud/fraud_filter.h"

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "processor/fraud/ctit.h"

namespace tally {
namespace {

using ::testing::HasSubstr;
using ::testing::Optional;

constexpr TimestampMs kT0 = 1'767'225'600'000;  // 2026-01-01T00:00:00Z, a minute boundary
constexpr int64_t kMinute = 60'000;

const char kBrowser[] =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36";

IpAddress Ip(std::string_view text) {
  IpAddress ip;
  EXPECT_TRUE(IpAddress::Parse(text, &ip)) << text;
  return ip;
}

Click MakeClick(std::string_view ip, TimestampMs t = kT0, std::string_view ua = kBrowser) {
  Click c;
  c.click_id = "c-1";
  c.event_time_ms = t;
  c.affiliate_id = "aff-1";
  c.offer_id = "off-1";
  c.user_id = "u-1";
  c.ip = Ip(ip);
  c.user_agent = std::string(ua);
  return c;
}

std::shared_ptr<const FraudRules> Rules(std::string_view bots, std::string_view blocklist) {
  absl::StatusOr<std::shared_ptr<const FraudRules>> r = FraudRules::FromText(bots, blocklist);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : nullptr;
}

std::unique_ptr<FraudFilter> Filter(std::string_view bots, std::string_view blocklist,
                                    int64_t limit = 3, int64_t window_ms = kMinute,
                                    size_t slots = 1024) {
  FraudFilter::Options options;
  options.max_clicks_per_ip = limit;
  options.flood_window_ms = window_ms;
  options.flood_table_slots = slots;
  absl::StatusOr<std::unique_ptr<FraudFilter>> f =
      FraudFilter::CreateWithRules(options, Rules(bots, blocklist));
  EXPECT_TRUE(f.ok()) << f.status();
  return *std::move(f);
}

std::string WriteFile(std::string_view name, std::string_view content) {
  const std::string path = absl::StrCat(::testing::TempDir(), "/fraud_test_",
                                        absl::string_view(name.data(), name.size()));
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
  return path;
}

// --- FraudRules: file format -------------------------------------------

TEST(FraudRulesTest, CommentsBlankLinesWhitespaceAndCrlf) {
  const auto rules =
      Rules("# crawlers\n\n   \n  Googlebot  \r\n\t# indented comment\ncurl/\r\nweird#bot\n",
            "# docs ranges\n\n198.51.100.0/24   # trailing comment\r\n  2001:db8:bad::/48\n# "
            "10.0.0.0/8\n");
  ASSERT_NE(rules, nullptr);
  EXPECT_EQ(rules->bot_pattern_count(), 3u);
  EXPECT_TRUE(rules->IsBotUserAgent("x googlebot/2.1"));
  EXPECT_TRUE(rules->IsBotUserAgent("curl/8"));
  EXPECT_TRUE(rules->IsBotUserAgent("a WEIRD#BOT b"));  // '#' inside a pattern is literal
  EXPECT_FALSE(rules->IsBotUserAgent("crawlers"));      // the comment is not a pattern
  EXPECT_FALSE(rules->IsBotUserAgent(kBrowser));
  EXPECT_EQ(rules->blocklist_entry_count(), 2u);
  EXPECT_TRUE(rules->IsBlocklisted(Ip("198.51.100.1")));
  EXPECT_TRUE(rules->IsBlocklisted(Ip("2001:db8:bad::1")));
  EXPECT_FALSE(rules->IsBlocklisted(Ip("10.0.0.1")));
}

TEST(FraudRulesTest, EmptyFilesAreValid) {
  const auto rules = Rules("", "# nothing\n");
  ASSERT_NE(rules, nullptr);
  EXPECT_FALSE(rules->IsBotUserAgent("Googlebot"));
  EXPECT_FALSE(rules->IsBlocklisted(Ip("198.51.100.1")));
}

TEST(FraudRulesTest, BlocklistErrorNamesKeyFileAndLine) {
  const auto r =
      FraudRules::FromText("", "# a\n10.0.0.0/8\n\n10.0.0.0/33\n", "b.txt", "/etc/bl.txt");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(),
            "fraud.ip_blocklist_file: /etc/bl.txt:4: '10.0.0.0/33' is not an IPv4/IPv6 address "
            "or CIDR");
  const auto host = FraudRules::FromText("", "10.0.0.1/8 # oops\n", "b.txt", "bl.txt");
  ASSERT_FALSE(host.ok());
  EXPECT_EQ(host.status().message(),
            "fraud.ip_blocklist_file: bl.txt:1: '10.0.0.1/8' has host bits set below the prefix "
            "length");
}

TEST(FraudRulesTest, BotFileErrorNamesKeyFileAndLine) {
  const auto r = FraudRules::FromText(absl::StrCat("ok\n", std::string(2000, 'x'), "\n"), "",
                                      "/etc/bots.txt", "bl.txt");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(),
              HasSubstr("fraud.bot_user_agents_file: /etc/bots.txt:2: 'xxxx"));
  EXPECT_THAT(r.status().message(), HasSubstr("longer than 1024 bytes"));
}

TEST(FraudRulesTest, LoadReportsMissingFiles) {
  const std::string bots = WriteFile("load_bots.txt", "Googlebot\n");
  const auto r = FraudRules::Load(bots, "/nonexistent/ip_blocklist.txt");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(),
              HasSubstr("fraud.ip_blocklist_file: /nonexistent/ip_blocklist.txt: cannot open"));
}

// The shipped defaults catch what the load generator sends as bots and
// blocklisted IPs, and none of its browser user agents.
TEST(FraudRulesTest, ShippedDefaults) {
  const std::string dir = TALLY_SOURCE_DIR "/deploy/config/";
  const auto r = FraudRules::Load(dir + "bot_user_agents.txt", dir + "ip_blocklist.txt");
  ASSERT_TRUE(r.ok()) << r.status();
  const FraudRules& rules = **r;
  EXPECT_GT(rules.bot_pattern_count(), 50u);
  for (const char* bot : {
           "Googlebot/2.1 (+http://www.google.com/bot.html)",
           "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
           "python-requests/2.31.0",
           "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "HeadlessChrome/120.0.6099.109 Safari/537.36",
           "curl/8.4.0",
           "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
           "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
           "Scrapy/2.11.0 (+https://scrapy.org)",
           "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
           "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2)",
           "Go-http-client/1.1",
           "Wget/1.21.3",
           "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
       }) {
    EXPECT_TRUE(rules.IsBotUserAgent(bot)) << bot;
  }
  for (const char* browser : {
           kBrowser,
           "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
           "Gecko) Version/17.1 Safari/605.1.15",
           "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
           "like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
           "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/120.0.6099.43 Mobile Safari/537.36",
           "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
           "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/119.0.0.0 Safari/537.36",
           "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.61",
           "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
           "Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
           "",
       }) {
    EXPECT_FALSE(rules.IsBotUserAgent(browser)) << browser;
  }
  EXPECT_TRUE(rules.IsBlocklisted(Ip("198.51.100.0")));
  EXPECT_TRUE(rules.IsBlocklisted(Ip("198.51.100.255")));
  EXPECT_TRUE(rules.IsBlocklisted(Ip("2001:db8:bad:1::7")));
  EXPECT_FALSE(rules.IsBlocklisted(Ip("185.1.2.3")));  // floods are not blocklisted
  EXPECT_FALSE(rules.IsBlocklisted(Ip("11.2.3.4")));   // normal users
  EXPECT_FALSE(rules.IsBlocklisted(Ip("2a02:1234::1")));
}

// --- FraudFilter: rules and precedence --------------------------------------

TEST(FraudFilterTest, EachRule) {
  auto f = Filter("Googlebot\n", "198.51.100.0/24\n", /*limit=*/2);
  EXPECT_EQ(f->Check(MakeClick("11.0.0.1")), std::nullopt);
  EXPECT_THAT(f->Check(MakeClick("11.0.0.2", kT0, "Mozilla/5.0 (compatible; GOOGLEBOT/2.1)")),
              Optional(RejectReason::kBotUserAgent));
  EXPECT_THAT(f->Check(MakeClick("198.51.100.9")), Optional(RejectReason::kIpBlocklisted));
  EXPECT_THAT(f->Check(MakeClick("::ffff:198.51.100.9")), Optional(RejectReason::kIpBlocklisted));
  EXPECT_EQ(f->Check(MakeClick("11.0.0.1")), std::nullopt);
  EXPECT_THAT(f->Check(MakeClick("11.0.0.1")), Optional(RejectReason::kIpClickFlood));
  const FraudCounters c = f->counters();
  EXPECT_EQ(c.checked, 6u);
  EXPECT_EQ(c.bot_user_agent, 1u);
  EXPECT_EQ(c.ip_blocklisted, 2u);
  EXPECT_EQ(c.ip_click_flood, 1u);
  EXPECT_EQ(c.flood_table_overflows, 0u);
}

TEST(FraudFilterTest, PrecedenceBotThenBlocklistThenFlood) {
  auto f = Filter("curl/\n", "198.51.100.0/24\n", /*limit=*/1);
  // Bot from a blocklisted IP: bot wins.
  EXPECT_THAT(f->Check(MakeClick("198.51.100.1", kT0, "curl/8.4.0")),
              Optional(RejectReason::kBotUserAgent));
  // Many blocklisted clicks: always blocklisted, never flood.
  for (int i = 0; i < 5; ++i) {
    EXPECT_THAT(f->Check(MakeClick("198.51.100.1")), Optional(RejectReason::kIpBlocklisted));
  }
  // Bots from one IP do not count toward its flood limit...
  for (int i = 0; i < 5; ++i) {
    EXPECT_THAT(f->Check(MakeClick("11.0.0.1", kT0, "curl/8")),
                Optional(RejectReason::kBotUserAgent));
  }
  // ...so its first browser click is accepted, the second is a flood, and a
  // bot after the limit is still reported as a bot.
  EXPECT_EQ(f->Check(MakeClick("11.0.0.1")), std::nullopt);
  EXPECT_THAT(f->Check(MakeClick("11.0.0.1")), Optional(RejectReason::kIpClickFlood));
  EXPECT_THAT(f->Check(MakeClick("11.0.0.1", kT0, "curl/8")),
              Optional(RejectReason::kBotUserAgent));
}

TEST(FraudFilterTest, FloodWindowsTumble) {
  auto f = Filter("", "", /*limit=*/3, /*window_ms=*/kMinute);
  auto verdicts = [&](TimestampMs t, int n) {
    std::vector<bool> accepted;
    for (int i = 0; i < n; ++i)
      accepted.push_back(!f->Check(MakeClick("185.1.2.3", t)).has_value());
    return accepted;
  };
  // Window [kT0, kT0 + 1 min): 3 accepted then rejected, anywhere in it.
  EXPECT_THAT(verdicts(kT0, 2), ::testing::ElementsAre(true, true));
  EXPECT_THAT(verdicts(kT0 + kMinute - 1, 3), ::testing::ElementsAre(true, false, false));
  // The next window starts from zero (tumbling, not sliding).
  EXPECT_THAT(verdicts(kT0 + kMinute, 4), ::testing::ElementsAre(true, true, true, false));
  // Two windows on: fresh again; and the previous window still remembers.
  EXPECT_THAT(verdicts(kT0 + 2 * kMinute + 59'999, 3), ::testing::ElementsAre(true, true, true));
  EXPECT_THAT(verdicts(kT0 + kMinute + 5, 1), ::testing::ElementsAre(false));
  EXPECT_EQ(f->counters().ip_click_flood, 4u);
}

TEST(FraudFilterTest, FloodWindowIsFlooredForNegativeTimes) {
  auto f = Filter("", "", /*limit=*/1, /*window_ms=*/1000);
  EXPECT_EQ(f->Check(MakeClick("11.0.0.1", -1)), std::nullopt);     // window -1
  EXPECT_TRUE(f->Check(MakeClick("11.0.0.1", -1000)).has_value());  // window -1
  EXPECT_EQ(f->Check(MakeClick("11.0.0.1", 0)), std::nullopt);      // window 0
  EXPECT_TRUE(f->Check(MakeClick("11.0.0.1", 999)).has_value());    // window 0
}

TEST(FraudFilterTest, FloodLikeTheLoadGenerator) {
  // A burst of 45 clicks from one 185/8 IP within 30 s, default settings.
  FraudFilter::Options options;
  options.flood_table_slots = 1 << 10;
  auto f = *FraudFilter::CreateWithRules(options, Rules("", ""));
  int rejected = 0;
  const TimestampMs start = kT0 + 10'000;  // the burst stays inside one minute
  for (int i = 0; i < 45; ++i) {
    rejected += f->Check(MakeClick("185.7.8.9", start + i * 600)).has_value();
  }
  EXPECT_EQ(rejected, 45 - 20);
}

TEST(FraudFilterTest, OverflowFailsOpenAndIsCounted) {
  // 2 slots: two IPs fill the table, a third IP in the same window has no
  // room; its clicks are accepted however many, and counted.
  auto f = Filter("", "", /*limit=*/1, kMinute, /*slots=*/2);
  EXPECT_EQ(f->Check(MakeClick("11.0.0.1")), std::nullopt);
  EXPECT_EQ(f->Check(MakeClick("11.0.0.2")), std::nullopt);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(f->Check(MakeClick("11.0.0.3")), std::nullopt);
  EXPECT_EQ(f->counters().flood_table_overflows, 5u);
  EXPECT_EQ(f->counters().ip_click_flood, 0u);
  // Three windows later the old slots are reclaimed and counting resumes.
  const TimestampMs later = kT0 + 3 * kMinute;
  EXPECT_EQ(f->Check(MakeClick("11.0.0.3", later)), std::nullopt);
  EXPECT_THAT(f->Check(MakeClick("11.0.0.3", later)), Optional(RejectReason::kIpClickFlood));
  EXPECT_EQ(f->counters().flood_table_overflows, 5u);
}

TEST(FraudFilterTest, OptionsAreValidated) {
  const auto rules = Rules("", "");
  auto create = [&](auto mutate) {
    FraudFilter::Options o;
    o.flood_table_slots = 64;
    mutate(o);
    return FraudFilter::CreateWithRules(o, rules).status();
  };
  EXPECT_TRUE(create([](auto&) {}).ok());
  EXPECT_THAT(create([](auto& o) { o.max_clicks_per_ip = 0; }).message(),
              HasSubstr("fraud.max_clicks_per_ip: 0 is not in [1, 4094]"));
  EXPECT_FALSE(create([](auto& o) { o.max_clicks_per_ip = 4095; }).ok());
  EXPECT_TRUE(create([](auto& o) { o.max_clicks_per_ip = 4094; }).ok());
  EXPECT_FALSE(create([](auto& o) { o.flood_window_ms = 0; }).ok());
  EXPECT_FALSE(create([](auto& o) { o.flood_table_slots = 1000; }).ok());
  EXPECT_FALSE(create([](auto& o) { o.flood_table_slots = 1; }).ok());
  EXPECT_FALSE(FraudFilter::CreateWithRules(FraudFilter::Options{}, nullptr).ok());
}

// --- FraudFilter: files and reload ------------------------------------------

TEST(FraudFilterTest, CreateLoadsTheFilesAndReportsErrors) {
  FraudFilter::Options options;
  options.flood_table_slots = 64;
  options.bot_user_agents_file = WriteFile("create_bots.txt", "Googlebot\n");
  options.ip_blocklist_file = WriteFile("create_bl.txt", "10.0.0.0/8\n300.0.0.0/8\n");
  auto bad = FraudFilter::Create(options);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            absl::StrCat("fraud.ip_blocklist_file: ", options.ip_blocklist_file,
                         ":2: '300.0.0.0/8' is not an IPv4/IPv6 address or CIDR"));
  WriteFile("create_bl.txt", "10.0.0.0/8\n");
  auto f = FraudFilter::Create(options);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_THAT((*f)->Check(MakeClick("10.9.9.9")), Optional(RejectReason::kIpBlocklisted));
  EXPECT_THAT((*f)->rules()->Summary(), HasSubstr("bot_patterns=1"));
}

TEST(FraudFilterTest, ReloadSwapsRulesKeepsOldOnErrorAndKeepsFloodCounts) {
  FraudFilter::Options options;
  options.flood_table_slots = 64;
  options.max_clicks_per_ip = 2;
  options.bot_user_agents_file = WriteFile("reload_bots.txt", "Googlebot\n");
  options.ip_blocklist_file = WriteFile("reload_bl.txt", "198.51.100.0/24\n");
  auto f = *FraudFilter::Create(options);
  EXPECT_THAT(f->Check(MakeClick("11.0.0.1", kT0, "Googlebot")),
              Optional(RejectReason::kBotUserAgent));
  EXPECT_EQ(f->Check(MakeClick("11.0.0.1", kT0, "Scrapy/2")), std::nullopt);  // count 1
  EXPECT_THAT(f->Check(MakeClick("198.51.100.1")), Optional(RejectReason::kIpBlocklisted));

  // New rules take effect.
  WriteFile("reload_bots.txt", "scrapy\n");
  WriteFile("reload_bl.txt", "203.0.113.0/24\n");
  ASSERT_TRUE(f->Reload().ok());
  EXPECT_EQ(f->Check(MakeClick("11.0.0.2", kT0, "Googlebot")), std::nullopt);
  EXPECT_THAT(f->Check(MakeClick("11.0.0.2", kT0, "Scrapy/2")),
              Optional(RejectReason::kBotUserAgent));
  EXPECT_EQ(f->Check(MakeClick("198.51.100.1")), std::nullopt);
  EXPECT_THAT(f->Check(MakeClick("203.0.113.1")), Optional(RejectReason::kIpBlocklisted));
  // Flood counts survived: 11.0.0.1 had 1 click, limit 2.
  EXPECT_EQ(f->Check(MakeClick("11.0.0.1")), std::nullopt);
  EXPECT_THAT(f->Check(MakeClick("11.0.0.1")), Optional(RejectReason::kIpClickFlood));

  // A bad file: the error names it, the old rules stay.
  WriteFile("reload_bl.txt", "203.0.113.0/24\n2001:db8::/129\n");
  const absl::Status status = f->Reload();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("reload_bl.txt:2: '2001:db8::/129'"));
  EXPECT_THAT(f->Check(MakeClick("203.0.113.1")), Optional(RejectReason::kIpBlocklisted));
  EXPECT_THAT(f->Check(MakeClick("11.0.0.3", kT0, "Scrapy/2")),
              Optional(RejectReason::kBotUserAgent));
  // A missing file too.
  std::remove(options.bot_user_agents_file.c_str());
  EXPECT_EQ(f->Reload().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(f->Check(MakeClick("11.0.0.3", kT0, "Scrapy/2")),
              Optional(RejectReason::kBotUserAgent));

  const FraudCounters c = f->counters();
  EXPECT_EQ(c.reloads, 1u);
  EXPECT_EQ(c.reload_failures, 2u);
}

// --- CTIT -------------------------------------------------------------------

TEST(CtitTest, Bounds) {
  EXPECT_EQ(CheckCtit(5'000, 10'000, 0), CtitVerdict::kTooShort);
  EXPECT_EQ(CheckCtit(10'000, 10'000, 0), CtitVerdict::kOk);         // inclusive
  EXPECT_EQ(CheckCtit(1'000'000'000, 10'000, 0), CtitVerdict::kOk);  // max disabled
  EXPECT_EQ(CheckCtit(-5, 0, 0), CtitVerdict::kOk);                  // both disabled
  EXPECT_EQ(CheckCtit(-5, 1, 0), CtitVerdict::kTooShort);
  EXPECT_EQ(CheckCtit(86'400'001, 0, 86'400'000), CtitVerdict::kTooLong);
  EXPECT_EQ(CheckCtit(86'400'000, 0, 86'400'000), CtitVerdict::kOk);
  EXPECT_EQ(CheckCtit(0, 0, 86'400'000), CtitVerdict::kOk);       // min disabled
  EXPECT_EQ(CheckCtit(500, 1'000, 100), CtitVerdict::kTooShort);  // min checked first
  EXPECT_EQ(CtitRejectReason(CtitVerdict::kTooShort), RejectReason::kCtitTooShort);
  EXPECT_EQ(CtitRejectReason(CtitVerdict::kTooLong), RejectReason::kCtitTooLong);
  EXPECT_EQ(CtitRejectReason(CtitVerdict::kOk), std::nullopt);
  static_assert(CheckCtit(1, 2, 3) == CtitVerdict::kTooShort);
}

}  // namespace
}  // namespace tally
