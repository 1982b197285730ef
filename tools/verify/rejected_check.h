// Does a `rejected` record carry the input message it names? Its original
// key and value must be the input's bytes when whole; when marked truncated,
// a strict prefix of them, with the size and SHA-256 of the whole input
// bytes (schemas/README.md, Rejected). Size and hash are required in both
// cases: tally-verify checks the current processor, which always writes them.
#ifndef TALLY_TOOLS_VERIFY_REJECTED_CHECK_H_
#define TALLY_TOOLS_VERIFY_REJECTED_CHECK_H_

#include <string>
#include <string_view>

#include "processor/model/events.h"

namespace tally::verify {

// "" when `rejected` matches the input message's `key` and `value`, else
// what differs (one line, names the part: "original value: ...").
std::string CheckRejectedOriginal(const RejectedEvent& rejected, std::string_view key,
                                  std::string_view value);

}  // namespace tally::verify

#endif  // TALLY_TOOLS_VERIFY_REJECTED_CHECK_H_
