// Reading tally-loadgen's ground-truth file (tools/loadgen/README.md): one
// JSON object per produced message, with the partition and offset the
// message got, and what a correct processor must do with it.
#ifndef TALLY_TOOLS_VERIFY_TRUTH_H_
#define TALLY_TOOLS_VERIFY_TRUTH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "tools/verify/message_ref.h"

namespace tally::verify {

struct TruthRecord {
  MessageRef ref;
  std::string kind;    // "click" | "conversion"
  std::string id;      // may be empty for malformed payloads
  std::string decode;  // "ok" or a RejectReason name
};

struct GroundTruth {
  std::vector<TruthRecord> records;
  absl::flat_hash_map<MessageRef, size_t> by_ref;  // index into records
};

absl::StatusOr<GroundTruth> LoadGroundTruth(const std::string& path);

}  // namespace tally::verify

#endif  // TALLY_TOOLS_VERIFY_TRUTH_H_
