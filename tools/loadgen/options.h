// What tally-loadgen generates: every knob of the synthetic traffic, with the
// defaults documented in tools/loadgen/README.md.
#ifndef TALLY_TOOLS_LOADGEN_OPTIONS_H_
#define TALLY_TOOLS_LOADGEN_OPTIONS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "processor/codec/codec.h"

namespace tally::loadgen {

// Which field is the Kafka key of BOTH input topics: the attribution key.
enum class KeyMode : uint8_t {
  kClickId = 0,  // clicks keyed by click_id, conversions by the click_id they carry
  kUserId = 1,   // both keyed by user_id (conversions then carry no click_id)
};
absl::StatusOr<KeyMode> ParseKeyMode(std::string_view name);
const char* KeyModeName(KeyMode mode);
// Our own names for the wire format, so that this library does not need the
// codec's implementation (ParseWireFormat lives in tally_codec).
absl::StatusOr<WireFormat> ParseFormatName(std::string_view name);
const char* FormatName(WireFormat format);

struct LoadOptions {
  uint64_t seed = 1;
  // Number of valid click events. Conversions, status changes, duplicates
  // and bad messages come on top.
  uint64_t clicks = 100'000;
  // When > 0: stop after exactly this many messages (clicks is then derived
  // so that the stream is long enough, and the tail of late conversions is
  // cut off).
  uint64_t messages = 0;

  uint64_t affiliates = 200;
  uint64_t offers = 50;
  uint64_t users = 0;            // 0: clicks / clicks_per_user
  double clicks_per_user = 3.0;  // average; users return
  double zipf_exponent = 1.1;    // popularity skew of affiliates and offers

  double conversion_rate = 0.05;        // share of valid clicks that convert
  double duplicate_rate = 0.01;         // share of messages that are identical re-sends
  double bot_share = 0.02;              // share of clicks with a bot user agent
  double blocklisted_ip_share = 0.005;  // share of clicks from 198.51.100.0/24, 2001:db8:bad::/48
  double flood_share = 0.005;           // share of clicks inside one-IP bursts
  double out_of_order_share = 0.02;     // share of conversions produced before their click
  double bad_share = 0.01;              // share of messages with exactly one defect
  double status_change_share = 0.1;     // share of conversions that later change status
  double unknown_order_share = 0.01;    // per conversion: a status change for an order never sent

  KeyMode key_mode = KeyMode::kClickId;
  WireFormat format = WireFormat::kJson;

  // Event time of the first click: 2026-01-01T00:00:00Z.
  int64_t start_time_ms = 1'767'225'600'000;
  // Average clicks per second of event time (not of wall time; see --rate).
  double event_clicks_per_second = 20.0;

  // Disorder (issue: deterministic attribution). Each click's event time is
  // up to click_disorder_ms before the click clock (clicks stay in clock
  // order in the stream, so the topic holds them out of event-time order
  // by at most that much: keep it <= processing.max_click_lateness).
  uint64_t click_disorder_ms = 0;
  // Per click, the chance that the click clock then stands still for
  // quiet_gap_ms (a quiet stretch of every partition).
  double quiet_gap_share = 0.0;
  uint64_t quiet_gap_ms = 3'600'000;
  // Conversions (and status changes) are emitted once the click clock has
  // passed their event time by this much: the conversions topic lags.
  uint64_t conversion_lag_ms = 0;

  absl::Status Validate() const;
  // Users actually simulated.
  uint64_t EffectiveUsers() const;
};

// The options as a JSON object (for the ground-truth header).
std::string OptionsToJson(const LoadOptions& options);

}  // namespace tally::loadgen

#endif  // TALLY_TOOLS_LOADGEN_OPTIONS_H_
