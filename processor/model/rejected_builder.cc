#include "processor/model/rejected_builder.h"

#include "processor/model/sha256.h"

namespace tally {
namespace {

// Longest prefix of `s` of at most `max` bytes that does not end inside a
// UTF-8 sequence.
std::string_view Utf8Prefix(std::string_view s, size_t max) {
  if (s.size() <= max) return s;
  size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return s.substr(0, cut);
}

}  // namespace

RejectedEvent BuildRejectedEvent(const RejectedSource& source, RejectReason reason,
                                 std::string_view detail, const RejectedLimits& limits,
                                 TimestampMs rejected_at_ms) {
  RejectedEvent r;
  r.reason = reason;
  r.detail = std::string(Utf8Prefix(detail, limits.max_detail_bytes));
  r.source_topic = std::string(source.topic);
  r.source_partition = source.partition;
  r.source_offset = source.offset;
  r.rejected_at_ms = rejected_at_ms;
  r.original_key_truncated = source.key.size() > limits.max_key_bytes;
  r.original_key = std::string(source.key.substr(0, limits.max_key_bytes));
  r.original_key_size = static_cast<int64_t>(source.key.size());
  r.original_key_sha256 = Sha256Hex(source.key);
  r.original_value_truncated = source.value.size() > limits.max_value_bytes;
  r.original_value = std::string(source.value.substr(0, limits.max_value_bytes));
  r.original_value_size = static_cast<int64_t>(source.value.size());
  r.original_value_sha256 = Sha256Hex(source.value);
  return r;
}

}  // namespace tally
