// Shared body of the libFuzzer targets: decoding must never crash, and every
// payload that decodes must survive encode -> decode unchanged (in the same
// wire format). A violation aborts, which libFuzzer reports as a crash with
// the input saved as an artifact.
#ifndef TALLY_FUZZ_ROUND_TRIP_H_
#define TALLY_FUZZ_ROUND_TRIP_H_

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "processor/codec/codec.h"
#include "processor/model/events.h"
#include "processor/model/reject_reason.h"

namespace tally::fuzz {

[[noreturn]] inline void Fail(const char* what, const Invalid* invalid, const std::string& bytes) {
  std::fprintf(stderr, "round trip violation: %s", what);
  if (invalid != nullptr) {
    const std::string_view reason = RejectReasonName(invalid->reason);
    std::fprintf(stderr, " (%.*s: %s)", static_cast<int>(reason.size()), reason.data(),
                 invalid->detail.c_str());
  }
  std::fprintf(stderr, "\nre-encoded (%zu bytes): ", bytes.size());
  std::fwrite(bytes.data(), 1, bytes.size() < 2048 ? bytes.size() : 2048, stderr);
  std::fputc('\n', stderr);
  std::abort();
}

// Decoder and encoder of one format, built once per process (they keep
// reusable buffers, and libFuzzer runs inputs on one thread).
struct Codec {
  explicit Codec(WireFormat f) : decoder(f), redecoder(f), encoder(f) {}
  EventDecoder decoder;
  EventDecoder redecoder;
  EventEncoder encoder;
  std::string encoded;
};

template <typename Event>
void DecodeRoundTrip(Codec& codec, std::string_view payload) {
  Event event;
  if (codec.decoder.Decode(payload, &event).has_value()) return;  // rejected: fine
  codec.encoder.Encode(event, &codec.encoded);
  Event again;
  const std::optional<Invalid> invalid = codec.redecoder.Decode(codec.encoded, &again);
  if (invalid.has_value())
    Fail("encoding of a decoded event does not decode", &*invalid, codec.encoded);
  if (!(again == event)) Fail("decode(encode(event)) != event", nullptr, codec.encoded);
  // Encoding is a function of the event: encoding the copy gives the same bytes.
  std::string second;
  codec.encoder.Encode(again, &second);
  if (second != codec.encoded) Fail("encoding is not deterministic", nullptr, second);
}

inline std::string_view AsView(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace tally::fuzz

#endif  // TALLY_FUZZ_ROUND_TRIP_H_
