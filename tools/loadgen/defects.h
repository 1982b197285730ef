// Bad input with exactly one defect per message, so that the reject reason a
// correct decoder must give is known in advance (validation order in
// notes/json_contract.md: size, UTF-8, syntax, then fields in document
// order, then missing fields).
#ifndef TALLY_TOOLS_LOADGEN_DEFECTS_H_
#define TALLY_TOOLS_LOADGEN_DEFECTS_H_

#include <string>
#include <string_view>
#include <vector>

#include "tools/loadgen/payload.h"
#include "tools/loadgen/random.h"

namespace tally::loadgen {

struct BadPayload {
  std::string value;
  std::string reason;  // RejectReason wire name, e.g. "missing_field"
  std::string defect;  // which defect, e.g. "missing_ip"
  // The event's own id (click_id / conversion_id) is present, valid and the
  // payload parses, so a rejected record can be matched to it.
  bool id_intact = false;
};

// Names of every defect applicable to a topic in a format.
std::vector<std::string> ClickDefectNames(WireFormat format);
std::vector<std::string> ConversionDefectNames(WireFormat format);

// Applies one defect, chosen uniformly among those applicable, to a valid
// template. The template must have every optional field set (user_agent,
// referrer, at least one sub_id, country; for a conversion a click_id or a
// user_id) so that each defect has something to act on.
BadPayload MakeBadClick(const ClickSpec& tmpl, PayloadEncoder& encoder, Rng& rng);
BadPayload MakeBadConversion(const ConversionSpec& tmpl, PayloadEncoder& encoder, Rng& rng);

// The named defect (for tests). Returns false for an unknown name.
bool MakeBadClickNamed(std::string_view defect, const ClickSpec& tmpl, PayloadEncoder& encoder,
                       Rng& rng, BadPayload* out);
bool MakeBadConversionNamed(std::string_view defect, const ConversionSpec& tmpl,
                            PayloadEncoder& encoder, Rng& rng, BadPayload* out);

}  // namespace tally::loadgen

#endif  // TALLY_TOOLS_LOADGEN_DEFECTS_H_
