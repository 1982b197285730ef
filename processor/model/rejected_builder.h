// Builds the `rejected` record of a refused input message, bounded by
// RejectedLimits (rejected_limits.h): the original key and value are kept
// whole when they fit, otherwise their first max_*_bytes bytes are kept and
// the record is marked truncated. The size and SHA-256 of the whole key and
// value are always recorded, so a truncated record still identifies its
// message exactly (tally-verify checks prefix + size + hash).
//
// Bytes are bytes: the prefix may end inside a UTF-8 sequence (key and value
// are `bytes` on the wire). The detail is text, so it is cut at a UTF-8
// character boundary.
//
// Thread safety: pure functions.
#ifndef TALLY_PROCESSOR_MODEL_REJECTED_BUILDER_H_
#define TALLY_PROCESSOR_MODEL_REJECTED_BUILDER_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "processor/model/events.h"
#include "processor/model/reject_reason.h"
#include "processor/model/rejected_limits.h"

namespace tally {

// Where the refused message came from. Views: valid for the call only.
struct RejectedSource {
  std::string_view topic;
  int32_t partition = -1;
  int64_t offset = -1;
  std::string_view key;
  std::string_view value;
};

// REQUIRES: detail is valid UTF-8 (the cut keeps it so).
RejectedEvent BuildRejectedEvent(const RejectedSource& source, RejectReason reason,
                                 std::string_view detail, const RejectedLimits& limits,
                                 TimestampMs rejected_at_ms);

}  // namespace tally

#endif  // TALLY_PROCESSOR_MODEL_REJECTED_BUILDER_H_
