// Wire codecs for Tally's topics: JSON (simdjson on-demand for decoding) and
// protobuf (schemas/tally/v1/*.proto), chosen per topic by configuration.
//
// Decoding validates every field against the contracts in schemas/ and, on
// failure, says precisely why (a RejectReason plus a detail naming the field).
// Decoders never throw and never crash on any byte sequence (fuzzed, see
// fuzz/). Unknown fields are ignored for forward compatibility.
//
// Thread safety: an EventDecoder / EventEncoder is NOT thread-safe (it owns
// reusable parse buffers); use one per thread. They are cheap to create.
#ifndef TALLY_PROCESSOR_CODEC_CODEC_H_
#define TALLY_PROCESSOR_CODEC_CODEC_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "processor/model/events.h"

namespace tally {

enum class WireFormat : uint8_t { kJson = 0, kProtobuf = 1 };
// "json" | "protobuf".
absl::StatusOr<WireFormat> ParseWireFormat(std::string_view name);
const char* WireFormatName(WireFormat format);
// The media type of the format, for the content-type header of the outputs
// (schemas/README.md): "application/json", "application/x-protobuf".
const char* WireFormatContentType(WireFormat format);

struct DecodeLimits {
  size_t max_payload_bytes = 64 * 1024;
  // Plausible event-time range (inclusive), milliseconds since epoch.
  // Defaults: 2000-01-01T00:00:00Z .. 2100-01-01T00:00:00Z.
  TimestampMs min_event_time_ms = 946'684'800'000;
  TimestampMs max_event_time_ms = 4'102'444'800'000;
};

// Why a payload is invalid.
struct Invalid {
  RejectReason reason;
  std::string detail;  // e.g. "field 'ip': not an IPv4 or IPv6 address"
};

class EventDecoder {
 public:
  explicit EventDecoder(WireFormat format, DecodeLimits limits = {});
  ~EventDecoder();
  EventDecoder(const EventDecoder&) = delete;
  EventDecoder& operator=(const EventDecoder&) = delete;

  // On success fills *out (reusing its buffers) and returns nullopt; on
  // failure returns why, and *out is unspecified.
  std::optional<Invalid> Decode(std::string_view payload, Click* out);
  std::optional<Invalid> Decode(std::string_view payload, Conversion* out);
  // Output types: used by tally-verify, tests and downstream examples.
  std::optional<Invalid> Decode(std::string_view payload, Commission* out);
  std::optional<Invalid> Decode(std::string_view payload, RejectedEvent* out);
  std::optional<Invalid> Decode(std::string_view payload, UnattributedConversion* out);

  WireFormat format() const { return format_; }

 private:
  struct Impl;
  WireFormat format_;
  DecodeLimits limits_;
  std::unique_ptr<Impl> impl_;
};

class EventEncoder {
 public:
  explicit EventEncoder(WireFormat format);
  ~EventEncoder();
  EventEncoder(const EventEncoder&) = delete;
  EventEncoder& operator=(const EventEncoder&) = delete;

  // Replaces *out with the encoding. Encoding a valid event always succeeds;
  // Decode(Encode(x)) == x for every event that passes validation.
  void Encode(const Click& event, std::string* out);
  void Encode(const Conversion& event, std::string* out);
  void Encode(const Commission& event, std::string* out);
  void Encode(const RejectedEvent& event, std::string* out);
  void Encode(const UnattributedConversion& event, std::string* out);

  WireFormat format() const { return format_; }

 private:
  struct Impl;
  WireFormat format_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tally

#endif  // TALLY_PROCESSOR_CODEC_CODEC_H_
