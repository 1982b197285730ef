// The production PayloadEncoder: specs become tally model events and are
// encoded by tally::EventEncoder, so valid traffic is byte for byte what the
// codec itself writes.
#ifndef TALLY_TOOLS_LOADGEN_CODEC_ENCODER_H_
#define TALLY_TOOLS_LOADGEN_CODEC_ENCODER_H_

#include <memory>

#include "processor/codec/codec.h"
#include "tools/loadgen/payload.h"

namespace tally::loadgen {

// Encode() returns false when a spec field cannot be held by the model types
// (an IP that does not parse, a currency that is not ISO 4217, an unknown
// status); every other value, valid or not, is passed through.
std::unique_ptr<PayloadEncoder> MakeCodecEncoder(WireFormat format);

}  // namespace tally::loadgen

#endif  // TALLY_TOOLS_LOADGEN_CODEC_ENCODER_H_
