#include "processor/codec/codec.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "processor/codec/internal/json_codec.h"
#include "processor/codec/internal/proto_codec.h"

namespace tally {

absl::StatusOr<WireFormat> ParseWireFormat(std::string_view name) {
  if (name == "json") return WireFormat::kJson;
  if (name == "protobuf") return WireFormat::kProtobuf;
  return absl::InvalidArgumentError(absl::StrCat("unknown wire format '",
                                                 absl::string_view(name.data(), name.size()),
                                                 "' (expected json or protobuf)"));
}

const char* WireFormatName(WireFormat format) {
  switch (format) {
    case WireFormat::kJson:
      return "json";
    case WireFormat::kProtobuf:
      return "protobuf";
  }
  return "unknown";
}

const char* WireFormatContentType(WireFormat format) {
  switch (format) {
    case WireFormat::kJson:
      return "application/json";
    case WireFormat::kProtobuf:
      return "application/x-protobuf";
  }
  return "application/octet-stream";
}

struct EventDecoder::Impl {
  Impl(WireFormat format, const DecodeLimits& limits) : proto(limits) {
    // Only a JSON decoder owns a parser and buffers worth having.
    if (format == WireFormat::kJson) json = std::make_unique<codec_internal::JsonDecoder>(limits);
  }

  template <typename Event>
  std::optional<Invalid> Decode(std::string_view payload, Event* out) {
    return json != nullptr ? json->Decode(payload, out) : proto.Decode(payload, out);
  }

  std::unique_ptr<codec_internal::JsonDecoder> json;
  codec_internal::ProtoDecoder proto;
};

EventDecoder::EventDecoder(WireFormat format, DecodeLimits limits)
    : format_(format), limits_(limits), impl_(std::make_unique<Impl>(format, limits)) {}

EventDecoder::~EventDecoder() = default;

namespace {

// Input topics only: the output types are Tally's own, and a rejected event
// carries an input message of any size (a payload_too_large one included).
std::optional<Invalid> CheckSize(std::string_view payload, const DecodeLimits& limits) {
  if (payload.size() <= limits.max_payload_bytes) return std::nullopt;
  return Invalid{
      RejectReason::kPayloadTooLarge,
      absl::StrCat("payload of ", payload.size(),
                   " bytes exceeds limits.max_payload_bytes=", limits.max_payload_bytes)};
}

}  // namespace

std::optional<Invalid> EventDecoder::Decode(std::string_view payload, Click* out) {
  if (auto too_large = CheckSize(payload, limits_)) return too_large;
  return impl_->Decode(payload, out);
}

std::optional<Invalid> EventDecoder::Decode(std::string_view payload, Conversion* out) {
  if (auto too_large = CheckSize(payload, limits_)) return too_large;
  return impl_->Decode(payload, out);
}

std::optional<Invalid> EventDecoder::Decode(std::string_view payload, Commission* out) {
  return impl_->Decode(payload, out);
}

std::optional<Invalid> EventDecoder::Decode(std::string_view payload, RejectedEvent* out) {
  return impl_->Decode(payload, out);
}

std::optional<Invalid> EventDecoder::Decode(std::string_view payload, UnattributedConversion* out) {
  return impl_->Decode(payload, out);
}

struct EventEncoder::Impl {
  codec_internal::ProtoEncoder proto;
};

EventEncoder::EventEncoder(WireFormat format) : format_(format), impl_(std::make_unique<Impl>()) {}

EventEncoder::~EventEncoder() = default;

namespace {

template <typename Event>
void EncodeAny(WireFormat format, codec_internal::ProtoEncoder& proto, const Event& event,
               std::string* out) {
  if (format == WireFormat::kProtobuf) {
    proto.Encode(event, out);
  } else {
    codec_internal::EncodeJson(event, out);
  }
}

}  // namespace

void EventEncoder::Encode(const Click& event, std::string* out) {
  EncodeAny(format_, impl_->proto, event, out);
}
void EventEncoder::Encode(const Conversion& event, std::string* out) {
  EncodeAny(format_, impl_->proto, event, out);
}
void EventEncoder::Encode(const Commission& event, std::string* out) {
  EncodeAny(format_, impl_->proto, event, out);
}
void EventEncoder::Encode(const RejectedEvent& event, std::string* out) {
  EncodeAny(format_, impl_->proto, event, out);
}
void EventEncoder::Encode(const UnattributedConversion& event, std::string* out) {
  EncodeAny(format_, impl_->proto, event, out);
}

}  // namespace tally
