// libFuzzer: the output types (Commission, RejectedEvent,
// UnattributedConversion) in both wire formats, as read by tally-verify and
// downstream consumers. The first input byte selects the case:
//   bit 0      wire format (0 = JSON, 1 = protobuf)
//   (b >> 1) % 3  type (0 = Commission, 1 = Rejected, 2 = Unattributed)
// The rest is the payload. Decoding must not crash; what decodes must
// survive the encode/decode round trip (see round_trip.h).
#include <cstddef>
#include <cstdint>

#include "fuzz/round_trip.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using tally::WireFormat;
  using tally::fuzz::Codec;
  static auto* const json = new Codec(WireFormat::kJson);
  static auto* const protobuf = new Codec(WireFormat::kProtobuf);
  if (size == 0) return 0;
  const uint8_t selector = data[0];
  Codec& codec = (selector & 1) != 0 ? *protobuf : *json;
  const std::string_view payload = tally::fuzz::AsView(data + 1, size - 1);
  switch ((selector >> 1) % 3) {
    case 0:
      tally::fuzz::DecodeRoundTrip<tally::Commission>(codec, payload);
      break;
    case 1:
      tally::fuzz::DecodeRoundTrip<tally::RejectedEvent>(codec, payload);
      break;
    default:
      tally::fuzz::DecodeRoundTrip<tally::UnattributedConversion>(codec, payload);
      break;
  }
  return 0;
}
