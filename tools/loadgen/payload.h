// Events as the load generator sees them, and how they become bytes.
//
// The generator works on plain "specs" (every field as text or integer, so a
// spec can also hold a deliberately invalid value) and hands valid ones to a
// PayloadEncoder. The production encoder wraps tally::EventEncoder
// (codec_encoder.h, library tally_loadgen_codec); the hand-written JSON
// encoder here lets the generator be built and tested without the codec.
#ifndef TALLY_TOOLS_LOADGEN_PAYLOAD_H_
#define TALLY_TOOLS_LOADGEN_PAYLOAD_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "processor/codec/codec.h"
#include "tools/loadgen/json_text.h"

namespace tally::loadgen {

struct ClickSpec {
  std::string click_id;
  int64_t ts = 0;
  std::string affiliate_id;
  std::string offer_id;
  std::string user_id;
  std::string ip;  // text form
  std::string user_agent;
  std::string referrer;
  std::vector<std::string> sub_ids;
  std::string country;
};

struct ConversionSpec {
  std::string conversion_id;
  int64_t ts = 0;
  std::string offer_id;
  std::string click_id;  // empty: omitted
  std::string user_id;   // empty: omitted
  std::string goal;
  int64_t amount = 0;
  std::string currency;
  std::string status;
};

// Encodes specs. Implementations are not thread-safe.
class PayloadEncoder {
 public:
  virtual ~PayloadEncoder() = default;
  virtual WireFormat format() const = 0;
  // Returns false if the spec cannot be represented by this encoder (e.g.
  // an unparseable IP for the codec's model types); *out is then unspecified.
  virtual bool Encode(const ClickSpec& spec, std::string* out) = 0;
  virtual bool Encode(const ConversionSpec& spec, std::string* out) = 0;
};

// JSON members of a spec, in the contract's field order; optional fields
// that are empty are omitted.
std::vector<JsonMember> ClickMembers(const ClickSpec& spec);
std::vector<JsonMember> ConversionMembers(const ConversionSpec& spec);

// JSON per json_contract.md, written by hand (no codec needed).
std::unique_ptr<PayloadEncoder> MakeHandJsonEncoder();

// Protobuf wire-format helpers for crafting bad protobuf payloads.
namespace pb {

void AppendVarint(std::string* out, uint64_t v);
// A length-delimited field (wire type 2).
void AppendBytesField(std::string* out, uint32_t field_number, std::string_view bytes);

struct WireField {
  uint32_t number = 0;
  uint32_t wire_type = 0;
  size_t begin = 0;          // offset of the tag
  size_t payload_begin = 0;  // offset of the value (after tag, and length for type 2)
  size_t end = 0;            // one past the value
};
// Splits a top-level message into its fields. Returns false if `bytes` is
// not a well-formed sequence of fields.
bool ParseFields(std::string_view bytes, std::vector<WireField>* out);

}  // namespace pb

}  // namespace tally::loadgen

#endif  // TALLY_TOOLS_LOADGEN_PAYLOAD_H_
