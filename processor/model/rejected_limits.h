// Bounds of a `rejected` record, so that one always fits the output topic
// whatever the input message was (issue 6: a rejected 750 KB message must not
// stop the pipeline because its record exceeds the producer's
// message.max.bytes). Shared by the builder (rejected_builder.h), which
// applies them, and the configuration, which checks at start-up that the
// worst-case record they allow fits `message.max.bytes`.
#ifndef TALLY_PROCESSOR_MODEL_REJECTED_LIMITS_H_
#define TALLY_PROCESSOR_MODEL_REJECTED_LIMITS_H_

#include <cstddef>

namespace tally {

// Input keys are attribution keys (click_id: 64 bytes, user_id: 128 bytes),
// so every legitimate key is kept whole; anything longer is junk that must
// not grow the record (it is stored twice: Kafka key and original_key).
inline constexpr size_t kMaxRejectedKeyBytes = 1024;

// Details name a field and sizes, never values; the longest today is well
// under 200 bytes. The bound only guards against a future detail that
// embeds input.
inline constexpr size_t kMaxRejectedDetailBytes = 1024;

// Default of limits.max_rejected_original_bytes: the default
// limits.max_payload_bytes, so every message that was refused for its
// content (not its size) is kept whole and can be replayed.
inline constexpr size_t kDefaultMaxRejectedValueBytes = size_t{64} << 10;

struct RejectedLimits {
  size_t max_value_bytes = kDefaultMaxRejectedValueBytes;  // limits.max_rejected_original_bytes
  size_t max_key_bytes = kMaxRejectedKeyBytes;
  size_t max_detail_bytes = kMaxRejectedDetailBytes;
};

}  // namespace tally

#endif  // TALLY_PROCESSOR_MODEL_REJECTED_LIMITS_H_
