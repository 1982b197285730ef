// libFuzzer: Conversion decoding from JSON, plus the encode/decode round trip
// of everything that decodes (see round_trip.h).
#include <cstddef>
#include <cstdint>

#include "fuzz/round_trip.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static auto* const codec = new tally::fuzz::Codec(tally::WireFormat::kJson);
  tally::fuzz::DecodeRoundTrip<tally::Conversion>(*codec, tally::fuzz::AsView(data, size));
  return 0;
}
