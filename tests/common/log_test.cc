// Log line formatting: every JSON line must parse (simdjson) into exactly
// the fields given, whatever bytes the message and values hold, and every
// event must stay on one line in both formats.
#include "processor/common/log.h"

#include <string>
#include <string_view>

#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "simdjson.h"

namespace tally {
namespace {

// 2026-03-01T12:34:56.789Z
absl::Time FixedTime() { return absl::FromUnixMillis(1772368496789); }

std::string JsonLine(std::string_view message, const LogFields& fields = {},
                     std::string_view component = "main") {
  return FormatLogLine(LogFormat::kJson, FixedTime(), LogLevel::kWarning, component, message,
                       fields);
}

// Parses one JSON log line; fails the test if it is not exactly one object
// terminated by a single newline.
struct ParsedLine {
  std::string time, level, component, message;
  std::vector<std::pair<std::string, std::string>> fields;
};
ParsedLine Parse(const std::string& line) {
  ParsedLine out;
  EXPECT_TRUE(absl::EndsWith(line, "\n")) << line;
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "more than one line: " << line;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  const auto error = parser.parse(line.data(), line.size()).get(doc);
  EXPECT_EQ(error, simdjson::SUCCESS) << simdjson::error_message(error) << ": " << line;
  if (error != simdjson::SUCCESS) return out;
  simdjson::dom::object object;
  EXPECT_EQ(doc.get(object), simdjson::SUCCESS);
  size_t members = 0;
  for (auto [key, value] : object) {
    ++members;
    std::string_view text;
    if (key == "fields") {
      simdjson::dom::object fields;
      EXPECT_EQ(value.get(fields), simdjson::SUCCESS);
      for (auto [fk, fv] : fields) {
        EXPECT_EQ(fv.get(text), simdjson::SUCCESS) << "field " << fk << " is not a string";
        out.fields.emplace_back(std::string(fk), std::string(text));
      }
      continue;
    }
    EXPECT_EQ(value.get(text), simdjson::SUCCESS) << key;
    if (key == "time") out.time = text;
    if (key == "level") out.level = text;
    if (key == "component") out.component = text;
    if (key == "message") out.message = text;
  }
  EXPECT_EQ(members, 5u) << line;
  return out;
}

TEST(LogFormatTest, JsonLineHasTheFiveMembers) {
  const ParsedLine p = Parse(JsonLine(
      "consumer created", {{"client", "rdkafka#consumer-1"}, {"facility", "INIT"}}, "kafka"));
  EXPECT_EQ(p.time, "2026-03-01T12:34:56.789Z");
  EXPECT_EQ(p.level, "WARN");
  EXPECT_EQ(p.component, "kafka");
  EXPECT_EQ(p.message, "consumer created");
  ASSERT_EQ(p.fields.size(), 2u);
  EXPECT_EQ(p.fields[0], std::make_pair(std::string("client"), std::string("rdkafka#consumer-1")));
  EXPECT_EQ(p.fields[1], std::make_pair(std::string("facility"), std::string("INIT")));
}

TEST(LogFormatTest, JsonEscapesQuotesBackslashesAndControlCharacters) {
  const std::string nasty = std::string("say \"hi\"\\ \n\r\t\b\f end\x01\x1f\x7f");
  const std::string line = JsonLine(nasty, {{"k\"ey\n", nasty}});
  const ParsedLine p = Parse(line);
  EXPECT_EQ(p.message, nasty);
  ASSERT_EQ(p.fields.size(), 1u);
  EXPECT_EQ(p.fields[0].first, "k\"ey\n");
  EXPECT_EQ(p.fields[0].second, nasty);
  EXPECT_TRUE(absl::StrContains(line, "\\u0001")) << line;
  EXPECT_TRUE(absl::StrContains(line, "\\n")) << line;
}

TEST(LogFormatTest, InvalidUtf8BecomesReplacementCharacter) {
  const std::string replacement = "\xEF\xBF\xBD";
  struct Case {
    std::string in, want;
  };
  const Case cases[] = {
      {"a\xFFz", "a" + replacement + "z"},                                          // never valid
      {"\xC0\xAF", replacement + replacement},                                      // overlong '/'
      {"\xED\xA0\x80", replacement + replacement + replacement},                    // a surrogate
      {"\xF4\x90\x80\x80", replacement + replacement + replacement + replacement},  // > U+10FFFF
      {"cut \xE2\x82", "cut " + replacement + replacement},                         // truncated
      {"\xC3\xA9t\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80",
       "\xC3\xA9t\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"},
  };
  for (const Case& c : cases) {
    const ParsedLine p = Parse(JsonLine(c.in, {{"v", c.in}}));
    EXPECT_EQ(p.message, c.want) << c.in;
    ASSERT_EQ(p.fields.size(), 1u);
    EXPECT_EQ(p.fields[0].second, c.want) << c.in;
  }
}

TEST(LogFormatTest, TextKeepsTheClassicLookOnOneLine) {
  const std::string line = FormatLogLine(
      LogFormat::kText, FixedTime(), LogLevel::kInfo, "main", "starting\nwith two lines",
      {{"group_id", "tally"}, {"path", "a b"}, {"empty", ""}, {"eq", "x=y"}});
  EXPECT_EQ(line,
            "2026-03-01T12:34:56.789Z INFO main: starting\\nwith two lines group_id=tally "
            "path=\"a b\" empty=\"\" eq=\"x=y\"\n");
}

TEST(LogFormatTest, TextWithoutFieldsIsTodaysLine) {
  EXPECT_EQ(FormatLogLine(LogFormat::kText, FixedTime(), LogLevel::kError, "kafka", "boom", {}),
            "2026-03-01T12:34:56.789Z ERROR kafka: boom\n");
}

TEST(LogFormatTest, AppendJsonStringQuotes) {
  std::string out;
  AppendJsonString(&out, "a\"b");
  EXPECT_EQ(out, "\"a\\\"b\"");
}

}  // namespace
}  // namespace tally
