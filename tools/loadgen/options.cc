#include "tools/loadgen/options.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tools/loadgen/json_text.h"

namespace tally::loadgen {

absl::StatusOr<KeyMode> ParseKeyMode(std::string_view name) {
  if (name == "click_id") return KeyMode::kClickId;
  if (name == "user_id") return KeyMode::kUserId;
  return absl::InvalidArgumentError(
      absl::StrCat("key mode must be click_id or user_id, not '", std::string(name), "'"));
}

const char* KeyModeName(KeyMode mode) { return mode == KeyMode::kUserId ? "user_id" : "click_id"; }

absl::StatusOr<WireFormat> ParseFormatName(std::string_view name) {
  if (name == "json") return WireFormat::kJson;
  if (name == "protobuf") return WireFormat::kProtobuf;
  return absl::InvalidArgumentError(
      absl::StrCat("format must be json or protobuf, not '", std::string(name), "'"));
}

const char* FormatName(WireFormat format) {
  return format == WireFormat::kProtobuf ? "protobuf" : "json";
}

absl::Status LoadOptions::Validate() const {
  auto share = [](std::string_view name, double v) -> absl::Status {
    if (!(v >= 0.0 && v <= 1.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat(std::string(name), " must be in [0, 1], got ", v));
    }
    return absl::OkStatus();
  };
  for (const auto& [name, v] :
       {std::pair<std::string_view, double>{"conversion_rate", conversion_rate},
        {"bot_share", bot_share},
        {"blocklisted_ip_share", blocklisted_ip_share},
        {"flood_share", flood_share},
        {"out_of_order_share", out_of_order_share},
        {"status_change_share", status_change_share},
        {"unknown_order_share", unknown_order_share},
        {"quiet_gap_share", quiet_gap_share}}) {
    if (auto s = share(name, v); !s.ok()) return s;
  }
  // These two are shares of the whole stream; 1.0 would leave no room for
  // the events they are made from.
  if (!(duplicate_rate >= 0.0 && duplicate_rate < 0.5)) {
    return absl::InvalidArgumentError("duplicate_rate must be in [0, 0.5)");
  }
  if (!(bad_share >= 0.0 && bad_share < 1.0)) {
    return absl::InvalidArgumentError("bad_share must be in [0, 1)");
  }
  if (bot_share + blocklisted_ip_share + flood_share > 1.0) {
    return absl::InvalidArgumentError(
        "bot_share + blocklisted_ip_share + flood_share must not exceed 1");
  }
  if (clicks == 0 && messages == 0) {
    return absl::InvalidArgumentError("clicks or messages must be > 0");
  }
  if (affiliates == 0 || offers == 0) {
    return absl::InvalidArgumentError("affiliates and offers must be > 0");
  }
  if (affiliates > 10'000'000 || offers > 10'000'000) {
    return absl::InvalidArgumentError("affiliates and offers must be <= 10000000");
  }
  if (!(clicks_per_user >= 1.0)) {
    return absl::InvalidArgumentError("clicks_per_user must be >= 1");
  }
  if (!(zipf_exponent >= 0.0 && zipf_exponent <= 10.0)) {
    return absl::InvalidArgumentError("zipf_exponent must be in [0, 10]");
  }
  if (!(event_clicks_per_second > 0.0 && event_clicks_per_second <= 1e6)) {
    return absl::InvalidArgumentError("event_clicks_per_second must be in (0, 1e6]");
  }
  constexpr uint64_t kWeekMs = 7ull * 24 * 3'600'000;
  if (click_disorder_ms > kWeekMs || quiet_gap_ms > kWeekMs || conversion_lag_ms > kWeekMs) {
    return absl::InvalidArgumentError(
        "click_disorder_ms, quiet_gap_ms and conversion_lag_ms must be at most a week");
  }
  // Leave room for two days of conversion delay plus status changes before
  // the processor's default upper bound of 2100-01-01.
  if (start_time_ms < 946'684'800'000 || start_time_ms > 4'000'000'000'000) {
    return absl::InvalidArgumentError("start time must be between 2000-01-01 and 2096");
  }
  return absl::OkStatus();
}

uint64_t LoadOptions::EffectiveUsers() const {
  if (users > 0) return users;
  const double base = static_cast<double>(messages > 0 ? messages : clicks);
  return std::max<uint64_t>(1, static_cast<uint64_t>(base / clicks_per_user));
}

std::string OptionsToJson(const LoadOptions& o) {
  // %.17g round-trips every double exactly.
  auto d = [](double v) { return absl::StrFormat("%.17g", v); };
  return absl::StrCat(
      "{\"seed\":", o.seed, ",\"clicks\":", o.clicks, ",\"messages\":", o.messages,
      ",\"affiliates\":", o.affiliates, ",\"offers\":", o.offers, ",\"users\":", o.EffectiveUsers(),
      ",\"clicks_per_user\":", d(o.clicks_per_user), ",\"zipf_exponent\":", d(o.zipf_exponent),
      ",\"conversion_rate\":", d(o.conversion_rate), ",\"duplicate_rate\":", d(o.duplicate_rate),
      ",\"bot_share\":", d(o.bot_share), ",\"blocklisted_ip_share\":", d(o.blocklisted_ip_share),
      ",\"flood_share\":", d(o.flood_share), ",\"out_of_order_share\":", d(o.out_of_order_share),
      ",\"bad_share\":", d(o.bad_share), ",\"status_change_share\":", d(o.status_change_share),
      ",\"unknown_order_share\":", d(o.unknown_order_share),
      ",\"key_mode\":", JsonString(KeyModeName(o.key_mode)),
      ",\"format\":", JsonString(FormatName(o.format)), ",\"start_time_ms\":", o.start_time_ms,
      ",\"event_clicks_per_second\":", d(o.event_clicks_per_second),
      ",\"click_disorder_ms\":", o.click_disorder_ms, ",\"quiet_gap_share\":", d(o.quiet_gap_share),
      ",\"quiet_gap_ms\":", o.quiet_gap_ms, ",\"conversion_lag_ms\":", o.conversion_lag_ms, "}");
}

}  // namespace tally::loadgen
