#include "processor/fraud/internal/ua_matcher.h"

#include <random>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "gtest/gtest.h"

namespace tally::fraud_internal {
namespace {

UaMatcher MustBuild(const std::vector<std::string>& patterns) {
  absl::StatusOr<UaMatcher> m = UaMatcher::Build(patterns);
  EXPECT_TRUE(m.ok()) << m.status();
  return *std::move(m);
}

TEST(UaMatcherTest, SubstringAnywhere) {
  const UaMatcher m = MustBuild({"Googlebot", "curl/"});
  EXPECT_TRUE(m.Matches("Googlebot"));
  EXPECT_TRUE(m.Matches("Mozilla/5.0 (compatible; Googlebot/2.1)"));
  EXPECT_TRUE(m.Matches("xx curl/"));
  EXPECT_TRUE(m.Matches("curl/8.4.0"));
  EXPECT_FALSE(m.Matches("curl 8.4.0"));
  EXPECT_FALSE(m.Matches("Googlebo"));
  EXPECT_FALSE(m.Matches(""));
  EXPECT_EQ(m.pattern_count(), 2u);
}

TEST(UaMatcherTest, CaseInsensitiveBothWays) {
  const UaMatcher m = MustBuild({"HeadlessChrome", "python-requests"});
  EXPECT_TRUE(m.Matches("headlesschrome/120"));
  EXPECT_TRUE(m.Matches("HEADLESSCHROME/120"));
  EXPECT_TRUE(m.Matches("Python-Requests/2.31"));
  const UaMatcher lower = MustBuild({"scrapy"});
  EXPECT_TRUE(lower.Matches("Scrapy/2.11.0 (+https://scrapy.org)"));
  EXPECT_TRUE(lower.Matches("SCRAPY"));
}

TEST(UaMatcherTest, OnlyAsciiFolds) {
  // '@' (0x40) and '`' (0x60) differ from 'A'/'a' by the case bit but are
  // not letters: they must not fold into each other.
  const UaMatcher m = MustBuild({"a@b", "\xc3\xa9t\xc3\xa9"});  // "été"
  EXPECT_TRUE(m.Matches("A@B"));
  EXPECT_FALSE(m.Matches("a`b"));
  EXPECT_TRUE(m.Matches("un \xc3\xa9t\xc3\xa9 chaud"));
  EXPECT_FALSE(m.Matches("un \xc3\x89T\xc3\x89 chaud"));  // "ÉTÉ": no Unicode folding
}

TEST(UaMatcherTest, FailureLinksFindSuffixPatterns) {
  // Classic Aho–Corasick cases: a pattern that is a proper suffix of a path
  // in the trie, and patterns inside other patterns.
  const UaMatcher m = MustBuild({"he", "she", "his", "hers"});
  EXPECT_TRUE(m.Matches("ushers"));
  EXPECT_TRUE(m.Matches("xhis"));
  EXPECT_FALSE(m.Matches("hsi"));
  const UaMatcher m2 = MustBuild({"abcd", "bc"});
  EXPECT_TRUE(m2.Matches("abc"));  // "bc" reached via the failure link of "abc"
  EXPECT_FALSE(m2.Matches("acbd"));
  const UaMatcher m3 = MustBuild({"aab"});
  EXPECT_TRUE(m3.Matches("aaab"));  // restart inside a partial match
}

TEST(UaMatcherTest, NoPatternsNeverMatches) {
  const UaMatcher m = MustBuild({});
  EXPECT_FALSE(m.Matches("anything"));
  EXPECT_FALSE(m.Matches(""));
}

TEST(UaMatcherTest, EmptyPatternIsAnError) { EXPECT_FALSE(UaMatcher::Build({"ok", ""}).ok()); }

TEST(UaMatcherTest, AgreesWithNaiveSearchOnRandomInput) {
  std::mt19937 rng(7);
  // A small alphabet makes partial matches and overlaps frequent.
  const std::string alphabet = "abcABC/-";
  auto random_string = [&](int min_len, int max_len) {
    std::uniform_int_distribution<int> len(min_len, max_len);
    std::uniform_int_distribution<size_t> ch(0, alphabet.size() - 1);
    std::string s;
    for (int i = len(rng); i > 0; --i) s += alphabet[ch(rng)];
    return s;
  };
  for (int round = 0; round < 200; ++round) {
    std::vector<std::string> patterns;
    for (int i = std::uniform_int_distribution<int>(1, 8)(rng); i > 0; --i) {
      patterns.push_back(random_string(1, 5));
    }
    const UaMatcher m = MustBuild(patterns);
    for (int t = 0; t < 50; ++t) {
      const std::string text = random_string(0, 30);
      const std::string lower_text = absl::AsciiStrToLower(text);
      bool expected = false;
      for (const std::string& p : patterns) {
        expected |= lower_text.find(absl::AsciiStrToLower(p)) != std::string::npos;
      }
      ASSERT_EQ(m.Matches(text), expected) << "text=" << text << " round=" << round;
    }
  }
}

}  // namespace
}  // namespace tally::fraud_internal
