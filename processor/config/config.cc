#include "processor/config/config.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <set>
#include <sstream>
#include <string_view>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "processor/config/internal/values.h"
#include "processor/model/money.h"
#include "processor/model/rejected_limits.h"
#include "yaml-cpp/yaml.h"

namespace tally {
namespace {

namespace ci = config_internal;

// One value from one source, before it is applied.
struct Setting {
  std::string key;
  std::string value;
  std::string origin;  // "from TALLY_GROUP_ID", "in /etc/tally.yaml line 3", ...
};

// A typed key: how to set it from text (syntax only; ranges are checked by
// ValidateConfig) and how to print it back.
struct KeySpec {
  std::string key;
  std::function<absl::Status(std::string_view, TallyConfig*)> set;
  std::function<std::string(const TallyConfig&)> get;
};

// FIELD(topics.clicks) is an accessor usable on both const and mutable
// configs, so that one expression names the member for parsing and printing.
#define FIELD(path) \
  [](auto& c) -> auto& { return c.path; }

template <typename Access>
KeySpec StringKey(std::string key, Access access) {
  return {std::move(key),
          [access](std::string_view v, TallyConfig* c) {
            access(*c) = std::string(v);
            return absl::OkStatus();
          },
          [access](const TallyConfig& c) { return std::string(access(c)); }};
}

template <typename Access>
KeySpec IntegerKey(std::string key, Access access) {
  return {std::move(key),
          [access](std::string_view v, TallyConfig* c) -> absl::Status {
            auto& field = access(*c);
            using T = std::remove_reference_t<decltype(field)>;
            absl::StatusOr<int64_t> n = ci::ParseInteger(v);
            if (!n.ok()) return n.status();
            if (!std::in_range<T>(*n)) {
              return absl::InvalidArgumentError(
                  absl::StrCat("must be between ", std::numeric_limits<T>::min(), " and ",
                               std::numeric_limits<T>::max(), ", got ", *n));
            }
            field = static_cast<T>(*n);
            return absl::OkStatus();
          },
          [access](const TallyConfig& c) { return absl::StrCat(access(c)); }};
}

template <typename Access>
KeySpec SizeKey(std::string key, Access access) {
  return {std::move(key),
          [access](std::string_view v, TallyConfig* c) -> absl::Status {
            absl::StatusOr<uint64_t> n = ci::ParseSize(v);
            if (!n.ok()) return n.status();
            access(*c) = *n;
            return absl::OkStatus();
          },
          [access](const TallyConfig& c) { return ci::FormatSize(access(c)); }};
}

template <typename Access>
KeySpec DurationKey(std::string key, Access access) {
  return {std::move(key),
          [access](std::string_view v, TallyConfig* c) -> absl::Status {
            absl::StatusOr<absl::Duration> d = ci::ParseDurationValue(v);
            if (!d.ok()) return d.status();
            access(*c) = *d;
            return absl::OkStatus();
          },
          [access](const TallyConfig& c) { return ci::FormatDurationValue(access(c)); }};
}

template <typename Access>
KeySpec TimestampKey(std::string key, Access access) {
  return {std::move(key),
          [access](std::string_view v, TallyConfig* c) -> absl::Status {
            absl::StatusOr<int64_t> ms = ci::ParseTimestampMs(v);
            if (!ms.ok()) return ms.status();
            access(*c) = *ms;
            return absl::OkStatus();
          },
          [access](const TallyConfig& c) { return ci::FormatTimestampMs(access(c)); }};
}

template <typename Access>
KeySpec BoolKey(std::string key, Access access) {
  return {std::move(key),
          [access](std::string_view v, TallyConfig* c) -> absl::Status {
            absl::StatusOr<bool> b = ci::ParseBool(v);
            if (!b.ok()) return b.status();
            access(*c) = *b;
            return absl::OkStatus();
          },
          [access](const TallyConfig& c) { return std::string(access(c) ? "true" : "false"); }};
}

// An enum spelled by a fixed list of names.
template <typename E, typename Access>
KeySpec EnumKey(std::string key, Access access, std::vector<std::pair<std::string, E>> names) {
  return {std::move(key),
          [access, names](std::string_view v, TallyConfig* c) -> absl::Status {
            for (const auto& [name, value] : names) {
              if (v == name) {
                access(*c) = value;
                return absl::OkStatus();
              }
            }
            std::vector<std::string> choices;
            for (const auto& entry : names) choices.push_back(entry.first);
            return absl::InvalidArgumentError(
                absl::StrCat("expected one of ", absl::StrJoin(choices, "|"), ", got '",
                             absl::string_view(v.data(), v.size()), "'"));
          },
          [access, names](const TallyConfig& c) {
            for (const auto& [name, value] : names) {
              if (access(c) == value) return name;
            }
            return std::string("?");
          }};
}

// The single list of typed keys, in DescribeConfig order. Adding a key here
// makes it settable from the file, the environment and --set at once.
const std::vector<KeySpec>& KeySpecs() {
  const std::vector<std::pair<std::string, PayloadFormat>> format_names = {
      {"json", PayloadFormat::kJson}, {"protobuf", PayloadFormat::kProtobuf}};
  static const auto* const kSpecs = new std::vector<KeySpec>{
      StringKey("group_id", FIELD(group_id)),
      StringKey("instance_id", FIELD(instance_id)),
      StringKey("topics.clicks", FIELD(topics.clicks)),
      StringKey("topics.conversions", FIELD(topics.conversions)),
      StringKey("topics.commissions", FIELD(topics.commissions)),
      StringKey("topics.rejected", FIELD(topics.rejected)),
      StringKey("topics.unattributed", FIELD(topics.unattributed)),
      StringKey("topics.changelog", FIELD(topics.changelog)),
      EnumKey("formats.clicks", FIELD(formats.clicks), format_names),
      EnumKey("formats.conversions", FIELD(formats.conversions), format_names),
      EnumKey("formats.output", FIELD(formats.output), format_names),
      SizeKey("limits.max_payload_bytes", FIELD(limits.max_payload_bytes)),
      SizeKey("limits.max_rejected_original_bytes", FIELD(limits.max_rejected_original_bytes)),
      TimestampKey("limits.min_event_time", FIELD(limits.min_event_time_ms)),
      TimestampKey("limits.max_event_time", FIELD(limits.max_event_time_ms)),
      EnumKey<Guarantee>(
          "processing.guarantee", FIELD(processing.guarantee),
          {{"exactly_once", Guarantee::kExactlyOnce}, {"at_least_once", Guarantee::kAtLeastOnce}}),
      IntegerKey("processing.num_standbys", FIELD(processing.num_standbys)),
      IntegerKey("processing.batch_max_messages", FIELD(processing.batch_max_messages)),
      DurationKey("processing.batch_max_time", FIELD(processing.batch_max_time)),
      EnumKey<AttributionKey>(
          "processing.attribution_key", FIELD(processing.attribution_key),
          {{"click_id", AttributionKey::kClickId}, {"user_id", AttributionKey::kUserId}}),
      DurationKey("processing.pending_grace", FIELD(processing.pending_grace)),
      DurationKey("processing.max_click_lateness", FIELD(processing.max_click_lateness)),
      DurationKey("processing.max_conversion_lateness", FIELD(processing.max_conversion_lateness)),
      DurationKey("processing.click_idle_timeout", FIELD(processing.click_idle_timeout)),
      IntegerKey("processing.max_pending_conversions", FIELD(processing.max_pending_conversions)),
      IntegerKey("processing.worker_threads", FIELD(processing.worker_threads)),
      DurationKey("processing.stop_when_idle", FIELD(processing.stop_when_idle)),
      StringKey("state.dir", FIELD(state.dir)),
      SizeKey("state.block_cache_bytes", FIELD(state.block_cache_bytes)),
      SizeKey("state.write_buffer_bytes", FIELD(state.write_buffer_bytes)),
      IntegerKey("state.max_open_files", FIELD(state.max_open_files)),
      BoolKey("state.sync_commits", FIELD(state.sync_commits)),
      IntegerKey("dedup.table_slots", FIELD(dedup.table_slots)),
      DurationKey("dedup.horizon", FIELD(dedup.horizon)),
      StringKey("fraud.bot_user_agents_file", FIELD(fraud.bot_user_agents_file)),
      StringKey("fraud.ip_blocklist_file", FIELD(fraud.ip_blocklist_file)),
      IntegerKey("fraud.max_clicks_per_ip", FIELD(fraud.max_clicks_per_ip)),
      DurationKey("fraud.flood_window", FIELD(fraud.flood_window)),
      DurationKey("fraud.flood_lateness", FIELD(fraud.flood_lateness)),
      IntegerKey("fraud.flood_table_slots", FIELD(fraud.flood_table_slots)),
      StringKey("offers.file", FIELD(offers.file)),
      StringKey("metrics.listen", FIELD(metrics.listen)),
      StringKey("metrics.currencies", FIELD(metrics.currencies)),
      StringKey("metrics.endpoints", FIELD(metrics.endpoints)),
      EnumKey<LogLevel>("log.level", FIELD(log.level),
                        {{"debug", LogLevel::kDebug},
                         {"info", LogLevel::kInfo},
                         {"warning", LogLevel::kWarning},
                         {"error", LogLevel::kError}}),
      EnumKey<LogFormat>("log.format", FIELD(log.format),
                         {{"text", LogFormat::kText}, {"json", LogFormat::kJson}}),
      BoolKey("log.pii", FIELD(log.pii)),
      DurationKey("shutdown.timeout", FIELD(shutdown.timeout)),
  };
  return *kSpecs;
}

#undef FIELD

// Other spellings of typed keys: issue 9 asked for `logging.format` while
// the section has always been `log`; both name one key, so setting both in
// one file is "set more than once".
constexpr std::pair<std::string_view, std::string_view> kKeyAliases[] = {
    {"logging.format", "log.format"}};

std::string CanonicalKey(std::string_view key) {
  for (const auto& [alias, canonical] : kKeyAliases) {
    if (key == alias) return std::string(canonical);
  }
  return std::string(key);
}

const KeySpec* FindSpec(std::string_view key) {
  const std::string canonical = CanonicalKey(key);
  for (const KeySpec& spec : KeySpecs()) {
    if (spec.key == canonical) return &spec;
  }
  return nullptr;
}

// The librdkafka pass-through maps, by key prefix.
constexpr std::string_view kPassThroughRoots[] = {"kafka", "consumer", "producer"};

// C is TallyConfig or const TallyConfig. REQUIRES: IsPassThroughRoot(root).
template <typename C>
auto& PassThroughMap(std::string_view root, C& c) {
  if (root == "consumer") return c.kafka.consumer;
  if (root == "producer") return c.kafka.producer;
  return c.kafka.common;
}

bool IsPassThroughRoot(std::string_view name) {
  for (std::string_view root : kPassThroughRoots) {
    if (name == root) return true;
  }
  return false;
}

// "topics", "processing", ...: the first component of a dotted typed key.
bool IsSection(std::string_view name) {
  if (IsPassThroughRoot(name)) return true;
  for (const auto& [alias, canonical] : kKeyAliases) {
    if (absl::StartsWith(AsAbsl(alias), absl::StrCat(AsAbsl(name), "."))) return true;
  }
  for (const KeySpec& spec : KeySpecs()) {
    if (absl::StartsWith(spec.key,
                         absl::StrCat(absl::string_view(name.data(), name.size()), "."))) {
      return true;
    }
  }
  return false;
}

std::string Quote(std::string_view s) {
  return absl::StrCat("'", absl::string_view(s.data(), s.size()), "'");
}

std::string Suffix(const std::string& origin) {
  return origin.empty() ? std::string() : absl::StrCat(" (", origin, ")");
}

absl::Status KeyError(absl::string_view key, absl::string_view problem, const std::string& origin) {
  return absl::InvalidArgumentError(absl::StrCat("config: ", key, ": ", problem, Suffix(origin)));
}

// "unknown key 'topics.clickz' (did you mean 'topics.clicks'?)".
absl::Status UnknownKey(std::string_view key, const std::string& origin) {
  std::string hint;
  size_t best = 3;  // only suggest near misses
  for (const KeySpec& spec : KeySpecs()) {
    const size_t d = ci::EditDistance(key, spec.key);
    if (d < best) {
      best = d;
      hint = absl::StrCat(" (did you mean '", spec.key, "'?)");
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("config: unknown key ", Quote(key), hint, Suffix(origin)));
}

absl::Status ApplySetting(const Setting& s, TallyConfig* config) {
  const size_t dot = s.key.find('.');
  if (dot != std::string::npos && IsPassThroughRoot(std::string_view(s.key).substr(0, dot))) {
    const std::string property = s.key.substr(dot + 1);
    if (property.empty()) return UnknownKey(s.key, s.origin);
    if (property == "group.id") {
      return KeyError(s.key, "not allowed: the consumer group comes from group_id", s.origin);
    }
    if (property == "transactional.id") {
      return KeyError(s.key, "not allowed: transactional ids are derived from instance_id",
                      s.origin);
    }
    PassThroughMap(std::string_view(s.key).substr(0, dot), *config)[property] = s.value;
    return absl::OkStatus();
  }
  const KeySpec* spec = FindSpec(s.key);
  if (spec == nullptr) {
    if (IsSection(s.key)) return KeyError(s.key, "is a section: set one of its keys", s.origin);
    return UnknownKey(s.key, s.origin);
  }
  absl::Status status = spec->set(s.value, config);
  if (!status.ok()) return KeyError(s.key, status.message(), s.origin);
  return absl::OkStatus();
}

// ---- YAML file ---------------------------------------------------------------

absl::Status ReadWholeFile(const std::string& path, std::string* contents) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("config: cannot read config file '", path, "': ", std::strerror(errno)));
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config: cannot read config file '", path, "': read error"));
  }
  *contents = buffer.str();
  return absl::OkStatus();
}

class FileFlattener {
 public:
  explicit FileFlattener(std::string path) : path_(std::move(path)) {}

  // Appends one Setting per scalar leaf, in file order.
  absl::Status Flatten(const YAML::Node& node, const std::string& prefix,
                       std::vector<Setting>* out) {
    for (const auto& entry : node) {
      const YAML::Node& key_node = entry.first;
      const YAML::Node& value = entry.second;
      if (!key_node.IsScalar()) {
        return absl::InvalidArgumentError(absl::StrCat("config: config file '", path_, "' line ",
                                                       key_node.Mark().line + 1,
                                                       ": keys must be plain strings"));
      }
      const std::string key =
          prefix.empty() ? key_node.Scalar() : absl::StrCat(prefix, ".", key_node.Scalar());
      const std::string origin = Origin(value.IsNull() ? key_node : value);
      const bool pass_through =
          IsPassThroughRoot(prefix.substr(0, prefix.find('.'))) || IsPassThroughRoot(key);
      if (value.IsMap()) {
        if (FindSpec(key) != nullptr) {
          return KeyError(key, "expected a value, got a map", origin);
        }
        if (value.size() == 0 && !pass_through && !IsSection(key)) return UnknownKey(key, origin);
        absl::Status status = Flatten(value, key, out);
        if (!status.ok()) return status;
      } else if (value.IsSequence()) {
        return KeyError(key, "expected a value, got a list", origin);
      } else if (value.IsNull()) {
        // An empty section ("kafka:" with everything commented out) is fine;
        // an empty value is almost certainly a mistake.
        if (IsSection(key) && FindSpec(key) == nullptr) continue;
        if (FindSpec(key) == nullptr && !pass_through) return UnknownKey(key, origin);
        return KeyError(key, "no value given", origin);
      } else {
        if (!seen_.insert(CanonicalKey(key)).second) {
          return KeyError(key, "set more than once", origin);
        }
        out->push_back(Setting{key, value.Scalar(), origin});
      }
    }
    return absl::OkStatus();
  }

 private:
  std::string Origin(const YAML::Node& node) const {
    return absl::StrCat("in ", path_, " line ", node.Mark().line + 1);
  }

  const std::string path_;
  std::set<std::string> seen_;
};

absl::Status SettingsFromFile(const std::string& path, std::vector<Setting>* out) {
  std::string contents;
  absl::Status status = ReadWholeFile(path, &contents);
  if (!status.ok()) return status;
  YAML::Node root;
  try {
    root = YAML::Load(contents);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config: config file '", path,
                                                   "' is not valid YAML: line ", e.mark.line + 1,
                                                   " column ", e.mark.column + 1, ": ", e.msg));
  }
  if (root.IsNull()) return absl::OkStatus();  // empty file: defaults
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config: config file '", path, "': expected a map of keys at the top level"));
  }
  // yaml-cpp reports misuse by throwing; none is expected after the type
  // checks above, but no exception may leave this component.
  try {
    return FileFlattener(path).Flatten(root, "", out);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config: config file '", path, "': ", e.what()));
  }
}

// ---- Environment -------------------------------------------------------------

bool AllDigitsOrEmpty(absl::string_view s) {
  for (char c : s) {
    if (!absl::ascii_isdigit(c)) return false;
  }
  return true;
}

// Kubernetes injects <SERVICE>_SERVICE_HOST, <SERVICE>_SERVICE_PORT[_<NAME>],
// <SERVICE>_PORT and <SERVICE>_PORT_<n>_<PROTO>[_PROTO|_PORT|_ADDR] for every
// Service in the namespace (unless enableServiceLinks is false); a Service
// named "tally..." must not make the processor refuse to start.
bool IsKubernetesServiceLink(absl::string_view name) {
  if (absl::EndsWith(name, "_SERVICE_HOST") || absl::StrContains(name, "_SERVICE_PORT") ||
      absl::EndsWith(name, "_PORT")) {
    return true;
  }
  for (absl::string_view proto : {"_TCP", "_UDP", "_SCTP"}) {
    const size_t at = name.rfind(proto);
    if (at == absl::string_view::npos) continue;
    absl::string_view tail = name.substr(at + proto.size());
    if (!(tail.empty() || tail == "_PROTO" || tail == "_PORT" || tail == "_ADDR")) continue;
    absl::string_view head = name.substr(0, at);  // ..._PORT_<n>
    const size_t port_at = head.rfind("_PORT_");
    if (port_at == absl::string_view::npos) continue;
    absl::string_view number = head.substr(port_at + 6);
    if (!number.empty() && AllDigitsOrEmpty(number)) return true;
  }
  return false;
}

absl::Status SettingsFromEnv(const std::map<std::string, std::string>& env,
                             std::vector<Setting>* out) {
  std::map<std::string, std::string> key_by_env;
  for (const KeySpec& spec : KeySpecs()) key_by_env[EnvironmentVariableForKey(spec.key)] = spec.key;
  for (const auto& [alias, canonical] : kKeyAliases) {
    key_by_env[EnvironmentVariableForKey(std::string(alias))] = std::string(canonical);
  }
  for (const auto& [name, value] : env) {
    if (!absl::StartsWith(name, "TALLY_")) continue;
    const std::string origin = absl::StrCat("from environment variable ", name);
    if (auto it = key_by_env.find(name); it != key_by_env.end()) {
      out->push_back(Setting{it->second, value, origin});
      continue;
    }
    if (IsKubernetesServiceLink(name)) continue;
    bool matched = false;
    for (std::string_view root : kPassThroughRoots) {
      const std::string prefix = absl::StrCat(
          "TALLY_", absl::AsciiStrToUpper(absl::string_view(root.data(), root.size())), "_");
      if (!absl::StartsWith(name, prefix)) continue;
      std::string property = absl::AsciiStrToLower(absl::string_view(name).substr(prefix.size()));
      if (property.empty()) break;
      std::replace(property.begin(), property.end(), '_', '.');
      out->push_back(Setting{absl::StrCat(root.data(), ".", property), value, origin});
      matched = true;
      break;
    }
    if (!matched) {
      return absl::InvalidArgumentError(
          absl::StrCat("config: environment variable ", name, " matches no configuration key"));
    }
  }
  return absl::OkStatus();
}

absl::Status SettingsFromOverrides(const std::vector<std::string>& overrides,
                                   std::vector<Setting>* out) {
  for (const std::string& kv : overrides) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("config: --set: expected key=value, got ", Quote(kv)));
    }
    out->push_back(Setting{std::string(absl::StripAsciiWhitespace(kv.substr(0, eq))),
                           kv.substr(eq + 1), "from --set"});
  }
  return absl::OkStatus();
}

// ---- Validation --------------------------------------------------------------

absl::Status RangeError(absl::string_view key, int64_t lo, int64_t hi, int64_t got) {
  return KeyError(key, absl::StrCat("must be between ", lo, " and ", hi, ", got ", got), "");
}

absl::Status CheckRange(absl::string_view key, int64_t got, int64_t lo, int64_t hi) {
  if (got < lo || got > hi) return RangeError(key, lo, hi, got);
  return absl::OkStatus();
}

absl::Status CheckSizeRange(absl::string_view key, uint64_t got, uint64_t lo, uint64_t hi) {
  if (got < lo || got > hi) {
    return KeyError(key,
                    absl::StrCat("must be between ", ci::FormatSize(lo), " and ",
                                 ci::FormatSize(hi), ", got ", ci::FormatSize(got)),
                    "");
  }
  return absl::OkStatus();
}

absl::Status CheckDuration(absl::string_view key, absl::Duration got, absl::Duration lo,
                           absl::Duration hi) {
  if (got < lo || got > hi || got == absl::InfiniteDuration()) {
    return KeyError(
        key,
        absl::StrCat("must be between ", ci::FormatDurationValue(lo), " and ",
                     ci::FormatDurationValue(hi), ", got ", ci::FormatDurationValue(got)),
        "");
  }
  return absl::OkStatus();
}

absl::Status CheckNonEmpty(absl::string_view key, const std::string& value) {
  if (value.empty()) return KeyError(key, "must not be empty", "");
  return absl::OkStatus();
}

#define RETURN_IF_ERROR(expr)          \
  do {                                 \
    absl::Status status_ = (expr);     \
    if (!status_.ok()) return status_; \
  } while (false)

// Stands in for an empty topics.changelog (derived from group_id) in the
// name checks.
const std::string kDerivedChangelog = "derived-state-changelog";

absl::Status ValidateTopics(const TopicOptions& t) {
  const std::pair<const char*, const std::string*> topics[] = {
      {"topics.clicks", &t.clicks},
      {"topics.conversions", &t.conversions},
      {"topics.commissions", &t.commissions},
      {"topics.rejected", &t.rejected},
      {"topics.unattributed", &t.unattributed},
      {"topics.changelog", t.changelog.empty() ? &kDerivedChangelog : &t.changelog}};
  for (size_t i = 0; i < std::size(topics); ++i) {
    if (!ci::IsValidTopicName(*topics[i].second)) {
      return KeyError(topics[i].first,
                      absl::StrCat("not a valid Kafka topic name (1-249 of [a-zA-Z0-9._-]): ",
                                   Quote(*topics[i].second)),
                      "");
    }
    for (size_t j = 0; j < i; ++j) {
      if (*topics[i].second == *topics[j].second) {
        return KeyError(topics[i].first,
                        absl::StrCat("same topic ", Quote(*topics[i].second), " as ",
                                     topics[j].first, "; every topic must be distinct"),
                        "");
      }
    }
  }
  return absl::OkStatus();
}

static_assert(LimitOptions{}.max_rejected_original_bytes == kDefaultMaxRejectedValueBytes);

// Upper bounds of the parts of an output record that do not depend on
// configuration (see WorstCaseOutputRecordBytes; tests/codec checks them
// against the real encoders).
// Member names, punctuation, reason, numbers, hashes, flags: about 550
// bytes in JSON, fewer in protobuf.
constexpr uint64_t kRejectedFixedBytes = 1024;
// Kafka topic names are at most 249 characters of [a-zA-Z0-9._-] (no
// escaping).
constexpr uint64_t kMaxTopicNameBytes = 249;
// A conversion re-encoded from validated fields (ids 64 bytes, user_id 128
// bytes that JSON may escape to 256, goal 32, numbers) plus the wrapper,
// reason and the joiner's detail (offer id + fixed text): under 1.5 KiB.
constexpr uint64_t kUnattributedValueBytes = 2048;
// The longest attribution key (user_id).
constexpr uint64_t kMaxAttributionKeyBytes = 128;
// librdkafka counts a record's framing (varint lengths, attributes,
// timestamp and offset deltas, headers count: at most about 40 bytes) and
// its headers (contract v1.1: tally.schema, tally.schema_version,
// content-type, at most about 110 bytes with their varints) against
// message.max.bytes; the broker adds the batch header (61 bytes).
constexpr uint64_t kRecordFramingBytes = 256;
// librdkafka's default message.max.bytes.
constexpr uint64_t kDefaultMessageMaxBytes = 1'000'000;

uint64_t Base64Bytes(uint64_t n) { return 4 * ((n + 2) / 3); }

// The rejected record's size when the value keeps `value_bytes`.
uint64_t RejectedRecordBytes(PayloadFormat format, uint64_t value_bytes) {
  const bool json = format == PayloadFormat::kJson;
  const uint64_t key = kMaxRejectedKeyBytes;
  const uint64_t value = kRejectedFixedBytes + kMaxTopicNameBytes +
                         (json ? 6 : 1) * kMaxRejectedDetailBytes +
                         (json ? Base64Bytes(key) + Base64Bytes(value_bytes) : key + value_bytes);
  return value + key + kRecordFramingBytes;
}

// The key (and where it was set) that holds message.max.bytes.
std::string MessageMaxBytesKey(const TallyConfig& c) {
  if (c.kafka.producer.count("message.max.bytes") > 0) return "producer.message.max.bytes";
  if (c.kafka.common.count("message.max.bytes") > 0) return "kafka.message.max.bytes";
  return "producer.message.max.bytes (librdkafka default)";
}

// Output records must fit the producer's message.max.bytes, whatever the
// input (issue 6: a rejected record that did not fit stopped Tally on every
// restart).
absl::Status CheckOutputRecordSizes(const TallyConfig& c) {
  absl::StatusOr<uint64_t> max = ProducerMessageMaxBytes(c);
  if (!max.ok()) return max.status();
  const OutputRecordBounds bounds = WorstCaseOutputRecordBytes(c);
  const std::string max_key = MessageMaxBytesKey(c);
  if (bounds.rejected > *max) {
    // The largest value limit that fits, for the hint.
    std::string hint =
        absl::StrCat("even without the original value a rejected record can be ",
                     RejectedRecordBytes(c.formats.output, 0), " bytes: raise message.max.bytes");
    if (RejectedRecordBytes(c.formats.output, 0) <= *max) {
      uint64_t lo = 0, hi = c.limits.max_rejected_original_bytes;
      while (lo < hi) {
        const uint64_t mid = lo + (hi - lo + 1) / 2;
        if (RejectedRecordBytes(c.formats.output, mid) <= *max) {
          lo = mid;
        } else {
          hi = mid - 1;
        }
      }
      hint = absl::StrCat("set limits.max_rejected_original_bytes to at most ", lo,
                          " or raise message.max.bytes");
    }
    return KeyError(
        "limits.max_rejected_original_bytes",
        absl::StrCat("a rejected record can be ", bounds.rejected, " bytes (",
                     PayloadFormatName(c.formats.output), ", ",
                     c.limits.max_rejected_original_bytes,
                     " bytes of the original value, a key of up to ", kMaxRejectedKeyBytes,
                     " bytes, a detail of up to ", kMaxRejectedDetailBytes,
                     " bytes and framing), more than ", max_key, "=", *max, "; ", hint,
                     " (and the topic's max.message.bytes)"),
        "");
  }
  if (bounds.unattributed > *max) {
    return KeyError(max_key,
                    absl::StrCat("an unattributed record can be ", bounds.unattributed,
                                 " bytes, more than message.max.bytes=", *max),
                    "");
  }
  return absl::OkStatus();
}

}  // namespace

OutputRecordBounds WorstCaseOutputRecordBytes(const TallyConfig& c) {
  OutputRecordBounds b;
  b.rejected = RejectedRecordBytes(c.formats.output, c.limits.max_rejected_original_bytes);
  b.unattributed = kUnattributedValueBytes + kMaxAttributionKeyBytes + kRecordFramingBytes;
  return b;
}

absl::StatusOr<uint64_t> ProducerMessageMaxBytes(const TallyConfig& c) {
  for (const char* root : {"producer", "kafka"}) {
    const auto& props = PassThroughMap(root, c);
    auto it = props.find("message.max.bytes");
    if (it == props.end()) continue;
    absl::StatusOr<int64_t> n = ci::ParseInteger(it->second);
    if (!n.ok() || *n <= 0) {
      return KeyError(absl::StrCat(root, ".message.max.bytes"),
                      absl::StrCat("expected a positive integer, got ", Quote(it->second)), "");
    }
    return static_cast<uint64_t>(*n);
  }
  return kDefaultMessageMaxBytes;
}

absl::Status ValidateConfig(const TallyConfig& c) {
  if (auto it = c.kafka.common.find("bootstrap.servers");
      it == c.kafka.common.end() || absl::StripAsciiWhitespace(it->second).empty()) {
    return KeyError("kafka.bootstrap.servers",
                    "required (in the config file, TALLY_KAFKA_BOOTSTRAP_SERVERS or "
                    "--set kafka.bootstrap.servers=host:port)",
                    "");
  }
  for (const char* root : {"kafka", "consumer", "producer"}) {
    const auto& props = PassThroughMap(root, c);
    for (const char* managed : {"group.id", "transactional.id"}) {
      if (props.count(managed) > 0) {
        return KeyError(absl::StrCat(root, ".", managed), "not allowed: set by tally", "");
      }
    }
  }
  RETURN_IF_ERROR(CheckNonEmpty("group_id", c.group_id));
  if (c.instance_id.empty() || c.instance_id.size() > 200 ||
      !std::all_of(c.instance_id.begin(), c.instance_id.end(), [](char ch) {
        return absl::ascii_isalnum(ch) || ch == '.' || ch == '_' || ch == '-';
      })) {
    return KeyError("instance_id",
                    absl::StrCat("must be 1-200 of [a-zA-Z0-9._-], got ", Quote(c.instance_id)),
                    "");
  }
  RETURN_IF_ERROR(ValidateTopics(c.topics));
  RETURN_IF_ERROR(
      CheckSizeRange("limits.max_payload_bytes", c.limits.max_payload_bytes, 1, 64ull << 20));
  RETURN_IF_ERROR(CheckSizeRange("limits.max_rejected_original_bytes",
                                 c.limits.max_rejected_original_bytes, 0, 64ull << 20));
  RETURN_IF_ERROR(CheckOutputRecordSizes(c));
  if (c.limits.min_event_time_ms >= c.limits.max_event_time_ms) {
    return KeyError("limits.min_event_time",
                    absl::StrCat("must be before limits.max_event_time (",
                                 ci::FormatTimestampMs(c.limits.max_event_time_ms), "), got ",
                                 ci::FormatTimestampMs(c.limits.min_event_time_ms)),
                    "");
  }
  const ProcessingOptions& p = c.processing;
  RETURN_IF_ERROR(CheckRange("processing.batch_max_messages", p.batch_max_messages, 1, 1'000'000));
  RETURN_IF_ERROR(CheckRange("processing.num_standbys", p.num_standbys, 0, 8));
  RETURN_IF_ERROR(CheckDuration("processing.batch_max_time", p.batch_max_time,
                                absl::Milliseconds(1), absl::Minutes(1)));
  RETURN_IF_ERROR(CheckDuration("processing.pending_grace", p.pending_grace, absl::ZeroDuration(),
                                absl::Hours(24 * 365)));
  RETURN_IF_ERROR(CheckDuration("processing.max_click_lateness", p.max_click_lateness,
                                absl::ZeroDuration(), absl::Hours(24)));
  RETURN_IF_ERROR(CheckDuration("processing.max_conversion_lateness", p.max_conversion_lateness,
                                absl::ZeroDuration(), absl::Hours(24 * 365)));
  RETURN_IF_ERROR(CheckDuration("processing.click_idle_timeout", p.click_idle_timeout,
                                absl::ZeroDuration(), absl::Hours(24)));
  RETURN_IF_ERROR(CheckRange("processing.max_pending_conversions", p.max_pending_conversions, 1,
                             1'000'000'000));
  RETURN_IF_ERROR(CheckRange("processing.worker_threads", p.worker_threads, 1, 256));
  RETURN_IF_ERROR(CheckDuration("processing.stop_when_idle", p.stop_when_idle, absl::ZeroDuration(),
                                absl::Hours(24 * 365)));
  RETURN_IF_ERROR(CheckNonEmpty("state.dir", c.state.dir));
  RETURN_IF_ERROR(
      CheckSizeRange("state.block_cache_bytes", c.state.block_cache_bytes, 0, 1ull << 40));
  RETURN_IF_ERROR(CheckSizeRange("state.write_buffer_bytes", c.state.write_buffer_bytes,
                                 64ull << 10, 1ull << 40));
  if (c.state.max_open_files != -1 && c.state.max_open_files < 20) {
    return KeyError(
        "state.max_open_files",
        absl::StrCat("must be -1 (unlimited) or at least 20, got ", c.state.max_open_files), "");
  }
  const uint64_t slots = c.dedup.table_slots;
  if (slots < 1024 || slots > (1ull << 34) || (slots & (slots - 1)) != 0) {
    return KeyError(
        "dedup.table_slots",
        absl::StrCat("must be a power of two between 1024 and 17179869184, got ", slots), "");
  }
  RETURN_IF_ERROR(
      CheckDuration("dedup.horizon", c.dedup.horizon, absl::Seconds(1), absl::Hours(24 * 3650)));
  RETURN_IF_ERROR(CheckNonEmpty("fraud.bot_user_agents_file", c.fraud.bot_user_agents_file));
  RETURN_IF_ERROR(CheckNonEmpty("fraud.ip_blocklist_file", c.fraud.ip_blocklist_file));
  RETURN_IF_ERROR(
      CheckRange("fraud.max_clicks_per_ip", c.fraud.max_clicks_per_ip, 1, 1'000'000'000));
  RETURN_IF_ERROR(CheckDuration("fraud.flood_window", c.fraud.flood_window, absl::Milliseconds(1),
                                absl::Hours(24)));
  RETURN_IF_ERROR(CheckDuration("fraud.flood_lateness", c.fraud.flood_lateness,
                                absl::ZeroDuration(), absl::Hours(24 * 30)));
  if (const uint64_t f = c.fraud.flood_table_slots;
      f < 1024 || f > (uint64_t{1} << 32) || (f & (f - 1)) != 0) {
    return KeyError("fraud.flood_table_slots",
                    absl::StrCat("must be a power of two between 1024 and 4294967296, got ", f),
                    "");
  }
  RETURN_IF_ERROR(CheckNonEmpty("offers.file", c.offers.file));
  if (absl::StatusOr<ci::HostPort> hp = ci::ParseHostPort(c.metrics.listen); !hp.ok()) {
    return KeyError("metrics.listen", hp.status().message(), "");
  }
  const std::vector<std::string> endpoints = MetricEndpoints(c);
  if (endpoints.empty()) {
    return KeyError("metrics.endpoints", "must name at least one of /metrics, /healthz, /readyz",
                    "");
  }
  for (size_t i = 0; i < endpoints.size(); ++i) {
    const std::string& e = endpoints[i];
    if (e != "/metrics" && e != "/healthz" && e != "/readyz") {
      return KeyError(
          "metrics.endpoints",
          absl::StrCat("unknown endpoint '", e, "' (expected /metrics, /healthz, /readyz)"), "");
    }
    if (std::find(endpoints.begin(), endpoints.begin() + static_cast<ptrdiff_t>(i), e) !=
        endpoints.begin() + static_cast<ptrdiff_t>(i)) {
      return KeyError("metrics.endpoints", absl::StrCat("'", e, "' listed twice"), "");
    }
  }
  const std::vector<std::string> codes = MetricCurrencyCodes(c);
  constexpr size_t kMaxMetricCurrencies = 32;
  if (codes.size() > kMaxMetricCurrencies) {
    return KeyError("metrics.currencies",
                    absl::StrCat("at most ", kMaxMetricCurrencies,
                                 " currencies (each adds series), got ", codes.size()),
                    "");
  }
  for (size_t i = 0; i < codes.size(); ++i) {
    Currency currency;
    if (!Currency::Parse(codes[i], &currency)) {
      return KeyError("metrics.currencies",
                      absl::StrCat("\"", codes[i], "\" is not an ISO 4217 currency code"), "");
    }
    if (std::find(codes.begin(), codes.begin() + static_cast<ptrdiff_t>(i), codes[i]) !=
        codes.begin() + static_cast<ptrdiff_t>(i)) {
      return KeyError("metrics.currencies", absl::StrCat("\"", codes[i], "\" listed twice"), "");
    }
  }
  RETURN_IF_ERROR(
      CheckDuration("shutdown.timeout", c.shutdown.timeout, absl::Milliseconds(1), absl::Hours(1)));
  return absl::OkStatus();
}

#undef RETURN_IF_ERROR

namespace {
std::vector<std::string> SplitList(const std::string& list) {
  std::vector<std::string> items;
  for (absl::string_view item : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
    items.emplace_back(absl::StripAsciiWhitespace(item));
  }
  return items;
}

// The keys that name files read at start-up (and on SIGHUP).
constexpr std::string_view kFileKeys[] = {"offers.file", "fraud.bot_user_agents_file",
                                          "fraud.ip_blocklist_file"};

// `name` if it is empty or absolute, otherwise `folder`/`name`.
std::string ResolveAgainst(const std::filesystem::path& folder, const std::string& name) {
  if (name.empty() || folder.empty() || std::filesystem::path(name).is_absolute()) return name;
  return (folder / name).lexically_normal().string();
}

}  // namespace

std::vector<std::string> MetricCurrencyCodes(const TallyConfig& config) {
  return SplitList(config.metrics.currencies);
}

std::vector<std::string> MetricEndpoints(const TallyConfig& config) {
  return SplitList(config.metrics.endpoints);
}

absl::StatusOr<TallyConfig> LoadConfig(const ConfigSources& sources) {
  std::vector<Setting> settings;
  if (sources.file.has_value()) {
    absl::Status status = SettingsFromFile(*sources.file, &settings);
    if (!status.ok()) return status;
  }
  const size_t file_settings = settings.size();
  if (absl::Status status = SettingsFromEnv(sources.env, &settings); !status.ok()) return status;
  if (absl::Status status = SettingsFromOverrides(sources.overrides, &settings); !status.ok()) {
    return status;
  }
  TallyConfig config;
  if (sources.file.has_value()) {
    // The rule files ship beside the configuration (deploy/config, one
    // ConfigMap folder in Kubernetes): its relative names, and the
    // defaults, mean that folder, not wherever tally was started from.
    // Values from the environment and --set are typed in a shell, so they
    // keep meaning the working directory.
    const std::filesystem::path folder = std::filesystem::path(*sources.file).parent_path();
    for (std::string_view key : kFileKeys) {
      const KeySpec* spec = FindSpec(key);
      if (absl::Status s = spec->set(ResolveAgainst(folder, spec->get(config)), &config); !s.ok()) {
        return s;
      }
    }
    for (size_t i = 0; i < file_settings; ++i) {
      if (std::find(std::begin(kFileKeys), std::end(kFileKeys), CanonicalKey(settings[i].key)) !=
          std::end(kFileKeys)) {
        settings[i].value = ResolveAgainst(folder, settings[i].value);
      }
    }
  }
  for (const Setting& s : settings) {
    if (absl::Status status = ApplySetting(s, &config); !status.ok()) return status;
  }
  if (config.instance_id.empty()) {
    char host[256] = {};
    if (::gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') {
      return KeyError("instance_id", "not set and the hostname is unavailable", "");
    }
    config.instance_id = host;
  }
  if (absl::Status status = ValidateConfig(config); !status.ok()) return status;
  return config;
}

std::string ChangelogTopicOf(const TallyConfig& config) {
  return config.topics.changelog.empty() ? absl::StrCat(config.group_id, "-state-changelog")
                                         : config.topics.changelog;
}

LogFields DescribeConfigFields(const TallyConfig& config) {
  LogFields out;
  const auto add = [&out](const std::string& key, const std::string& value) {
    out.push_back(LogField{key, ci::IsSecretKey(key) ? "<redacted>" : value});
  };
  for (const char* root : {"kafka", "consumer", "producer"}) {
    for (const auto& [property, value] : PassThroughMap(root, config)) {
      add(absl::StrCat(root, ".", property), value);
    }
  }
  for (const KeySpec& spec : KeySpecs()) add(spec.key, spec.get(config));
  return out;
}

std::string DescribeConfig(const TallyConfig& config) {
  std::string out;
  for (const LogField& field : DescribeConfigFields(config)) {
    absl::StrAppend(&out, field.key, " = ", field.value, "\n");
  }
  return out;
}

std::vector<std::string> ConfigKeys() {
  std::vector<std::string> keys;
  for (const KeySpec& spec : KeySpecs()) keys.push_back(spec.key);
  return keys;
}

std::string EnvironmentVariableForKey(const std::string& key) {
  std::string name = absl::StrCat("TALLY_", absl::AsciiStrToUpper(key));
  std::replace_if(
      name.begin(), name.end(), [](char c) { return c == '.' || c == '-'; }, '_');
  return name;
}

std::map<std::string, std::string> EnvironmentFromEnviron(const char* const* envp) {
  std::map<std::string, std::string> env;
  for (; envp != nullptr && *envp != nullptr; ++envp) {
    const std::string_view entry(*envp);
    const size_t eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    env.emplace(std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1)));
  }
  return env;
}

const char* PayloadFormatName(PayloadFormat format) {
  switch (format) {
    case PayloadFormat::kJson:
      return "json";
    case PayloadFormat::kProtobuf:
      return "protobuf";
  }
  return "?";
}

const char* AttributionKeyName(AttributionKey key) {
  switch (key) {
    case AttributionKey::kClickId:
      return "click_id";
    case AttributionKey::kUserId:
      return "user_id";
  }
  return "?";
}

}  // namespace tally
