// Where an input message is: topic, partition, offset. Shared by the ground
// truth reader and the oracle, which both speak about input messages.
#ifndef TALLY_TOOLS_VERIFY_MESSAGE_REF_H_
#define TALLY_TOOLS_VERIFY_MESSAGE_REF_H_

#include <cstdint>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace tally::verify {

struct MessageRef {
  std::string topic;
  int32_t partition = -1;
  int64_t offset = -1;
  template <typename H>
  friend H AbslHashValue(H h, const MessageRef& m) {
    return H::combine(std::move(h), m.topic, m.partition, m.offset);
  }
  friend bool operator==(const MessageRef&, const MessageRef&) = default;
  friend auto operator<=>(const MessageRef&, const MessageRef&) = default;

  // "clicks/3@1042", the form every mismatch message uses.
  std::string ToString() const { return absl::StrCat(topic, "/", partition, "@", offset); }
};

}  // namespace tally::verify

#endif  // TALLY_TOOLS_VERIFY_MESSAGE_REF_H_
