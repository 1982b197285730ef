// The JSON side of the codec: a decoder built on simdjson On-Demand (one
// parser and one padded input buffer, both reused across calls) and an
// encoder that appends RFC 8259 text.
#ifndef TALLY_PROCESSOR_CODEC_INTERNAL_JSON_CODEC_H_
#define TALLY_PROCESSOR_CODEC_INTERNAL_JSON_CODEC_H_

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "processor/codec/codec.h"
#include "processor/model/events.h"

namespace tally::codec_internal {

// Size limits are the caller's (EventDecoder); everything after that is here.
class JsonDecoder {
 public:
  explicit JsonDecoder(const DecodeLimits& limits);
  ~JsonDecoder();
  JsonDecoder(const JsonDecoder&) = delete;
  JsonDecoder& operator=(const JsonDecoder&) = delete;

  std::optional<Invalid> Decode(std::string_view payload, Click* out);
  std::optional<Invalid> Decode(std::string_view payload, Conversion* out);
  std::optional<Invalid> Decode(std::string_view payload, Commission* out);
  std::optional<Invalid> Decode(std::string_view payload, RejectedEvent* out);
  std::optional<Invalid> Decode(std::string_view payload, UnattributedConversion* out);

 private:
  struct State;  // keeps simdjson out of this header
  std::unique_ptr<State> state_;
};

// Each replaces *out.
void EncodeJson(const Click& event, std::string* out);
void EncodeJson(const Conversion& event, std::string* out);
void EncodeJson(const Commission& event, std::string* out);
void EncodeJson(const RejectedEvent& event, std::string* out);
void EncodeJson(const UnattributedConversion& event, std::string* out);

// A JSON string literal for `s` (quotes included); exposed for tests.
void AppendJsonString(std::string* out, std::string_view s);

}  // namespace tally::codec_internal

#endif  // TALLY_PROCESSOR_CODEC_INTERNAL_JSON_CODEC_H_
