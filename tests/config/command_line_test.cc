#include "processor/config/command_line.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

namespace tally {
namespace {

absl::StatusOr<CommandLine> Parse(std::vector<const char*> args) {
  args.insert(args.begin(), "tally");
  return ParseCommandLine(static_cast<int>(args.size()), args.data());
}

TEST(ParseCommandLineTest, ConfigAndRepeatedSetInOrder) {
  absl::StatusOr<CommandLine> cl = Parse({"--config", "a.yaml", "--set", "group_id=g",
                                          "--set=log.level=debug", "--set", "kafka.sasl.jaas=x=y"});
  ASSERT_TRUE(cl.ok()) << cl.status();
  EXPECT_EQ(cl->config_file, "a.yaml");
  EXPECT_THAT(cl->overrides,
              testing::ElementsAre("group_id=g", "log.level=debug", "kafka.sasl.jaas=x=y"));
  EXPECT_FALSE(cl->help);
  EXPECT_FALSE(cl->version);
}

TEST(ParseCommandLineTest, HelpAndVersion) {
  absl::StatusOr<CommandLine> cl = Parse({"--help", "--version", "--config=x.yaml"});
  ASSERT_TRUE(cl.ok());
  EXPECT_TRUE(cl->help);
  EXPECT_TRUE(cl->version);
  EXPECT_EQ(cl->config_file, "x.yaml");
  EXPECT_STRNE(TallyVersion(), "");
  EXPECT_THAT(CommandLineUsage("tally"), testing::HasSubstr("--set key=value"));
}

TEST(ParseCommandLineTest, CheckConfigNamesTheFile) {
  absl::StatusOr<CommandLine> cl = Parse({"--check-config", "a.yaml", "--set", "group_id=g"});
  ASSERT_TRUE(cl.ok()) << cl.status();
  EXPECT_TRUE(cl->check_config);
  EXPECT_EQ(cl->config_file, "a.yaml");
  cl = Parse({"--check-config=b.yaml"});
  ASSERT_TRUE(cl.ok()) << cl.status();
  EXPECT_TRUE(cl->check_config);
  EXPECT_EQ(cl->config_file, "b.yaml");
  // The bare form, before or after --config (deploy/check.sh uses it).
  cl = Parse({"--check-config", "--config", "c.yaml", "--set", "a=b"});
  ASSERT_TRUE(cl.ok()) << cl.status();
  EXPECT_TRUE(cl->check_config);
  EXPECT_EQ(cl->config_file, "c.yaml");
  cl = Parse({"--config", "d.yaml", "--check-config"});
  ASSERT_TRUE(cl.ok()) << cl.status();
  EXPECT_TRUE(cl->check_config);
  EXPECT_EQ(cl->config_file, "d.yaml");
  cl = Parse({"--config", "c.yaml"});
  ASSERT_TRUE(cl.ok()) << cl.status();
  EXPECT_FALSE(cl->check_config);
  EXPECT_THAT(CommandLineUsage("tally"), testing::HasSubstr("--check-config FILE"));
}

TEST(ParseCommandLineTest, ErrorsNameTheFlag) {
  struct Case {
    std::vector<const char*> args;
    const char* message;
  };
  for (const Case& c : std::vector<Case>{
           {{"--config"}, "--config: missing value"},
           {{"--set"}, "--set: missing value"},
           {{"--set", "novalue"}, "--set: expected key=value, got 'novalue'"},
           {{"--set", "=x"}, "--set: expected key=value, got '=x'"},
           {{"--config", "a", "--config", "b"},
            "--config: the configuration file is given more than once"},
           {{"--config", "a", "--check-config", "b"},
            "--check-config: the configuration file is given more than once"},
           {{"--check-config"},
            "--check-config: no configuration file (--check-config FILE or --config FILE "
            "--check-config)"},
           {{"--check-config="}, "--check-config: empty file name"},
           {{"--frobnicate"}, "unknown flag '--frobnicate'"},
           {{"stray"}, "unexpected argument 'stray'"},
       }) {
    absl::StatusOr<CommandLine> cl = Parse(c.args);
    ASSERT_FALSE(cl.ok()) << c.message;
    EXPECT_EQ(cl.status().message(), c.message);
  }
}

}  // namespace
}  // namespace tally
