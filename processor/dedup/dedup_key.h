// The identity under which an event is deduplicated, in a canonical byte
// form that is stable across processes, builds and machines: the joiner
// persists it (processor/join) and reads it back after a restart, so the
// encoding below is a storage format. Never change it; add a new Kind.
//
// Encoding (`encoded()`):
//   click:      'c' click_id
//   conversion: 'v' len(offer_id) offer_id len(goal) goal
//                   len(conversion_id) conversion_id status
// where len() is an unsigned LEB128 varint and status is the numeric value of
// ConversionStatus (one byte). The length prefixes make the encoding
// injective: ("ab","c") and ("a","bc") never share a key.
#ifndef TALLY_PROCESSOR_DEDUP_DEDUP_KEY_H_
#define TALLY_PROCESSOR_DEDUP_DEDUP_KEY_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/statusor.h"
#include "processor/model/events.h"

namespace tally {

class DedupKey {
 public:
  enum class Kind : uint8_t {
    kClick = 'c',
    kConversion = 'v',
  };

  DedupKey() = default;

  // Parses a canonical encoding (as persisted by the durable index).
  // Returns InvalidArgument for anything ClickKey/ConversionKey cannot produce.
  static absl::StatusOr<DedupKey> FromEncoded(std::string_view encoded);

  Kind kind() const { return static_cast<Kind>(encoded_[0]); }
  // The canonical bytes; valid as long as this key is alive and unmodified.
  std::string_view encoded() const { return encoded_; }

  friend bool operator==(const DedupKey&, const DedupKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const DedupKey& key) {
    return H::combine(std::move(h), key.encoded_);
  }

 private:
  friend DedupKey ClickKey(std::string_view click_id);
  friend DedupKey ConversionKey(std::string_view offer_id, std::string_view goal,
                                std::string_view conversion_id, ConversionStatus status);
  explicit DedupKey(std::string encoded) : encoded_(std::move(encoded)) {}

  std::string encoded_;  // never empty once constructed by a factory
};

// A click is a duplicate when its click id was seen before.
DedupKey ClickKey(std::string_view click_id);
// A conversion is a duplicate when the same identity (offer, goal, advertiser
// conversion id) arrived before WITH THE SAME STATUS; a status change of a
// known conversion is a new key (pending -> approved is not a duplicate).
DedupKey ConversionKey(std::string_view offer_id, std::string_view goal,
                       std::string_view conversion_id, ConversionStatus status);

// Appends `field` as an unsigned LEB128 length followed by its bytes: the
// injective field encoding of DedupKey, shared by every persisted or hashed
// identity (commission ids use it too). A storage format: never change it.
void AppendLengthPrefixed(std::string_view field, std::string* out);

// A fixed 64-bit hash of a byte string: MurmurHash3's 64-bit block mix
// applied to 8-byte little-endian words, length-seeded, finished with
// MurmurHash3's fmix64. Unlike absl::Hash it is not salted per process, so a
// value computed today equals the value computed after a restart or on
// another machine (a golden-value test pins it). Not cryptographic: the
// deduplicator only uses it as a hint and confirms every hit by full key.
uint64_t DedupHash64(std::string_view bytes);

}  // namespace tally

#endif  // TALLY_PROCESSOR_DEDUP_DEDUP_KEY_H_
