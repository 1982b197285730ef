// Command-line parsing shared by Tally's binaries:
//   --config FILE        YAML configuration file (also --config=FILE)
//   --set key=value      override one key; repeatable (also --set=key=value)
//   --check-config FILE  validate FILE as --config would, then exit (also
//                        --check-config=FILE, or bare --check-config beside
//                        --config FILE)
//   --help, --version
// Anything else is an error naming the offending argument. The parsed
// overrides go into ConfigSources::overrides (processor/config/config.h).
#ifndef TALLY_PROCESSOR_CONFIG_COMMAND_LINE_H_
#define TALLY_PROCESSOR_CONFIG_COMMAND_LINE_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tally {

struct CommandLine {
  std::optional<std::string> config_file;
  std::vector<std::string> overrides;  // "key=value", in command-line order
  // --check-config [FILE]: config_file is FILE (or --config's); validate everything start-up
  // validates, connect nowhere, create nothing, exit.
  bool check_config = false;
  bool help = false;
  bool version = false;
};

// argv[0] is the program name and is skipped. Errors are InvalidArgument,
// e.g. "--set: expected key=value, got 'foo'".
absl::StatusOr<CommandLine> ParseCommandLine(int argc, const char* const* argv);

// Usage text for --help, naming `program`.
std::string CommandLineUsage(std::string_view program);

// The project version (CMake's PROJECT_VERSION), for --version.
const char* TallyVersion();

}  // namespace tally

#endif  // TALLY_PROCESSOR_CONFIG_COMMAND_LINE_H_
