// Minimal JSON text output for the load generator: hand-crafted payloads
// (which must be able to carry exactly one deliberate defect, so a real JSON
// library that refuses bad input is no use) and ground-truth lines.
#ifndef TALLY_TOOLS_LOADGEN_JSON_TEXT_H_
#define TALLY_TOOLS_LOADGEN_JSON_TEXT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tally::loadgen {

// Appends `s` as a quoted JSON string. Quotes, backslashes and control
// characters are escaped; bytes >= 0x80 are copied unchanged, so valid UTF-8
// stays readable and deliberately invalid UTF-8 stays invalid.
void AppendJsonString(std::string* out, std::string_view s);
std::string JsonString(std::string_view s);

// One member of a hand-built JSON object: its name and the raw JSON text of
// its value (already encoded: "\"abc\"", "42", "[1,2]", "null").
struct JsonMember {
  std::string name;
  std::string raw_value;
};

// {"a":1,"b":"x"} with no whitespace, members in the given order.
std::string SerializeObject(const std::vector<JsonMember>& members);

// Standard base64 (RFC 4648, with padding).
std::string Base64(std::string_view bytes);

// True if `s` is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool IsValidUtf8(std::string_view s);

}  // namespace tally::loadgen

#endif  // TALLY_TOOLS_LOADGEN_JSON_TEXT_H_
