// Property pass-through, redaction and the librdkafka log bridge.
#include <algorithm>
#include <climits>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "processor/common/log.h"
#include "processor/kafka/internal/rdkafka_util.h"
#include "processor/kafka/kafka.h"

namespace tally::kafka {

bool IsSecretProperty(std::string_view key) {
  // Substrings rather than a list of known keys: librdkafka grows new secret
  // properties (ssl.keystore.password, sasl.oauthbearer.client.secret, ...)
  // and a false positive only hides a harmless value from a log.
  static constexpr std::string_view kMarkers[] = {"password", "secret", "sasl.oauthbearer",
                                                  "ssl.key"};
  std::string lower = absl::AsciiStrToLower(absl::string_view(key.data(), key.size()));
  return std::any_of(std::begin(kMarkers), std::end(kMarkers), [&](std::string_view marker) {
    return absl::StrContains(lower, absl::string_view(marker.data(), marker.size()));
  });
}

std::string PropertiesForLog(const Properties& props) {
  return absl::StrJoin(props, ", ", [](std::string* out, const auto& entry) {
    absl::StrAppend(out, entry.first, "=",
                    IsSecretProperty(entry.first) ? "[redacted]" : entry.second);
  });
}

namespace internal {

std::string ScrubSecrets(std::string message, const Properties& props) {
  for (const auto& [key, value] : props) {
    if (!value.empty() && IsSecretProperty(key)) {
      absl::StrReplaceAll({{value, "[redacted]"}}, &message);
    }
  }
  return message;
}

absl::Status SetProperty(RdKafka::Conf* conf, const std::string& key, const std::string& value) {
  std::string errstr;
  if (conf->set(key, value, errstr) != RdKafka::Conf::CONF_OK) {
    return absl::InvalidArgumentError(
        absl::StrCat("kafka property \"", key,
                     "\": ", ScrubSecrets(std::move(errstr), Properties{{key, value}})));
  }
  return absl::OkStatus();
}

absl::Status ApplyProperties(RdKafka::Conf* conf, const Properties& props) {
  for (const auto& [key, value] : props) {
    absl::Status status = SetProperty(conf, key, value);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<RdKafka::Conf>> MakeConf(const Properties& props) {
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  if (absl::Status status = ApplyProperties(conf.get(), props); !status.ok()) return status;
  return conf;
}

void SetDefault(Properties* props, const std::string& key, const std::string& value) {
  props->emplace(key, value);  // no-op when the caller set the key
}

int ToTimeoutMs(absl::Duration d) {
  if (d <= absl::ZeroDuration()) return 0;
  if (d == absl::InfiniteDuration()) return -1;
  int64_t ms = absl::ToInt64Milliseconds(absl::Ceil(d, absl::Milliseconds(1)));
  return static_cast<int>(std::min<int64_t>(ms, INT_MAX));
}

absl::Status StatusFromError(RdKafka::Error* error, std::string_view context) {
  if (error == nullptr) return absl::OkStatus();
  std::unique_ptr<RdKafka::Error> owned(error);
  const int code = owned->code();
  ErrorClass by_code = ClassifyError(code);
  ErrorClass error_class;
  if (by_code == ErrorClass::kFenced) {
    // librdkafka raises fencing as a fatal error; fenced is the finer answer.
    error_class = ErrorClass::kFenced;
  } else if (owned->is_fatal()) {
    error_class = ErrorClass::kFatal;
  } else if (owned->txn_requires_abort()) {
    error_class = ErrorClass::kAbortable;
  } else if (owned->is_retriable()) {
    error_class = ErrorClass::kRetriable;
  } else {
    error_class = by_code;
  }
  return KafkaStatus(error_class, code, context, owned->str(), /*deadline=*/false);
}

void LogEventCb::event_cb(RdKafka::Event& event) {
  switch (event.type()) {
    case RdKafka::Event::EVENT_LOG: {
      // syslog(3) severities: 0-3 error, 4 warning, 5-6 info, 7 debug.
      LogLevel level = LogLevel::kDebug;
      if (event.severity() <= RdKafka::Event::EVENT_SEVERITY_ERROR) {
        level = LogLevel::kError;
      } else if (event.severity() == RdKafka::Event::EVENT_SEVERITY_WARNING) {
        level = LogLevel::kWarning;
      } else if (event.severity() <= RdKafka::Event::EVENT_SEVERITY_INFO) {
        level = LogLevel::kInfo;
      }
      if (LogEnabled(level)) {
        LogEvent(level, "kafka", event.str(), {{"client", role_}, {"facility", event.fac()}});
      }
      break;
    }
    case RdKafka::Event::EVENT_ERROR:
      if (on_error_) on_error_(event.err());
      if (event.fatal()) {
        TALLY_LOG_FIELDS(kError, "kafka", absl::StrCat("fatal error: ", event.str()),
                         {"client", role_}, {"error", RdKafka::err2str(event.err())});
      } else {
        // Transient connection errors are common and librdkafka recovers
        // from them by itself; they are warnings, not errors.
        TALLY_LOG_FIELDS(kWarning, "kafka", absl::StrCat("error: ", event.str()), {"client", role_},
                         {"error", RdKafka::err2str(event.err())});
      }
      break;
    case RdKafka::Event::EVENT_THROTTLE:
      TALLY_LOG_FIELDS(kDebug, "kafka", "throttled by broker", {"client", role_},
                       {"throttle_ms", absl::StrCat(event.throttle_time())},
                       {"broker", event.broker_name()});
      break;
    case RdKafka::Event::EVENT_STATS:
      if (on_stats_) on_stats_(event.str());
      break;
  }
}

}  // namespace internal

absl::Status CheckClientProperties(ClientRole role, const Properties& props,
                                   const std::string& transactional_id) {
  absl::StatusOr<Properties> effective = absl::InternalError("unreachable");
  const char* name = "?";
  switch (role) {
    case ClientRole::kProducer:
      name = "producer";
      effective = internal::ProducerProperties(props, transactional_id);
      break;
    case ClientRole::kConsumer:
      name = "consumer";
      effective = internal::ConsumerProperties(props);
      break;
    case ClientRole::kReader:
      name = "reader";
      effective = internal::ReaderProperties(props);
      break;
  }
  if (!effective.ok()) return effective.status();
  // A Conf is only a property table: building it opens no socket and
  // starts no thread, which is what lets --check-config run anywhere.
  absl::StatusOr<std::unique_ptr<RdKafka::Conf>> conf = internal::MakeConf(*effective);
  if (!conf.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("kafka ", name, ": ", conf.status().message()));
  }
  return absl::OkStatus();
}

}  // namespace tally::kafka
