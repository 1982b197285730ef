#include "processor/config/command_line.h"

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

#ifndef TALLY_VERSION
#error "TALLY_VERSION must be defined by the build (see processor/config/CMakeLists.txt)"
#endif

namespace tally {
namespace {

// Matches "--name VALUE" and "--name=VALUE"; advances *i past the value.
// Returns false if argv[*i] is not this flag.
absl::StatusOr<bool> TakeValueFlag(absl::string_view name, int argc, const char* const* argv,
                                   int* i, std::string* value) {
  const absl::string_view arg = argv[*i];
  if (arg == name) {
    if (*i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat(name, ": missing value"));
    *value = argv[++*i];
    return true;
  }
  if (absl::StartsWith(arg, absl::StrCat(name, "="))) {
    *value = std::string(arg.substr(name.size() + 1));
    return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<CommandLine> ParseCommandLine(int argc, const char* const* argv) {
  CommandLine result;
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    std::string value;
    // Bare --check-config (nothing or another flag after it) validates the
    // --config file; otherwise it takes the file itself.
    if (arg == "--check-config" && (i + 1 >= argc || absl::StartsWith(argv[i + 1], "-"))) {
      result.check_config = true;
      continue;
    }
    absl::StatusOr<bool> took = false;
    // Both name the configuration file; --check-config also says what to do
    // with it, so one of the two, once.
    for (const char* flag : {"--config", "--check-config"}) {
      took = TakeValueFlag(flag, argc, argv, &i, &value);
      if (!took.ok()) return took.status();
      if (!*took) continue;
      if (result.config_file.has_value()) {
        return absl::InvalidArgumentError(
            absl::StrCat(flag, ": the configuration file is given more than once"));
      }
      if (value.empty()) return absl::InvalidArgumentError(absl::StrCat(flag, ": empty file name"));
      result.config_file = value;
      if (absl::string_view(flag) == "--check-config") result.check_config = true;
      break;
    }
    if (*took) continue;
    took = TakeValueFlag("--set", argc, argv, &i, &value);
    if (!took.ok()) return took.status();
    if (*took) {
      const size_t eq = value.find('=');
      if (eq == std::string::npos || eq == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("--set: expected key=value, got '", value, "'"));
      }
      result.overrides.push_back(value);
      continue;
    }
    if (arg == "--help" || arg == "-h") {
      result.help = true;
    } else if (arg == "--version") {
      result.version = true;
    } else if (absl::StartsWith(arg, "-")) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag '", arg, "'"));
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
    }
  }
  if (result.check_config && !result.config_file.has_value()) {
    return absl::InvalidArgumentError(
        "--check-config: no configuration file (--check-config FILE or --config FILE "
        "--check-config)");
  }
  return result;
}

std::string CommandLineUsage(std::string_view program) {
  return absl::StrCat(
      "usage: ", absl::string_view(program.data(), program.size()),
      " [--config FILE | --check-config FILE] [--set key=value]... [--help] [--version]\n"
      "\n"
      "  --config FILE     YAML configuration file (example: deploy/config/tally.yaml);\n"
      "                    relative file names in it resolve against its folder\n"
      "  --check-config FILE, or --config FILE --check-config\n"
      "                    validate FILE (with TALLY_* variables and --set) as start-up\n"
      "                    would, offers and fraud rule files included, without\n"
      "                    connecting anywhere or creating anything; prints\n"
      "                    'configuration OK: FILE' and exits 0, or exits 2\n"
      "  --set key=value   override one key, e.g. --set processing.worker_threads=4;\n"
      "                    repeatable; wins over the file and TALLY_* variables\n"
      "  --help            print this text and exit\n"
      "  --version         print the version and exit\n"
      "\n"
      "Precedence: defaults < config file < environment (TALLY_<KEY>, e.g.\n"
      "TALLY_GROUP_ID, TALLY_KAFKA_SASL_PASSWORD) < --set.\n");
}

const char* TallyVersion() { return TALLY_VERSION; }

}  // namespace tally
