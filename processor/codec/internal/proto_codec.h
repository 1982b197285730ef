// The protobuf side of the codec, written against the wire format directly
// (https://protobuf.dev/programming-guides/encoding/) rather than through
// libprotobuf: decoding then needs no allocation beyond the event's own
// strings, and every defect maps to a precise reject reason. Field numbers
// are those of schemas/tally/v1/events.proto; the codec tests check the
// bytes against protoc's generated classes both ways.
#ifndef TALLY_PROCESSOR_CODEC_INTERNAL_PROTO_CODEC_H_
#define TALLY_PROCESSOR_CODEC_INTERNAL_PROTO_CODEC_H_

#include <optional>
#include <string>
#include <string_view>

#include "processor/codec/codec.h"
#include "processor/model/events.h"

namespace tally::codec_internal {

class ProtoDecoder {
 public:
  explicit ProtoDecoder(const DecodeLimits& limits) : limits_(limits) {}

  std::optional<Invalid> Decode(std::string_view payload, Click* out);
  std::optional<Invalid> Decode(std::string_view payload, Conversion* out);
  std::optional<Invalid> Decode(std::string_view payload, Commission* out);
  std::optional<Invalid> Decode(std::string_view payload, RejectedEvent* out);
  std::optional<Invalid> Decode(std::string_view payload, UnattributedConversion* out);

 private:
  DecodeLimits limits_;
};

class ProtoEncoder {
 public:
  // Each replaces *out.
  void Encode(const Click& event, std::string* out);
  void Encode(const Conversion& event, std::string* out);
  void Encode(const Commission& event, std::string* out);
  void Encode(const RejectedEvent& event, std::string* out);
  void Encode(const UnattributedConversion& event, std::string* out);

 private:
  std::string nested_;  // the embedded conversion, reused
};

}  // namespace tally::codec_internal

#endif  // TALLY_PROCESSOR_CODEC_INTERNAL_PROTO_CODEC_H_
