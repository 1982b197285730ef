// Byte encodings of the joiner's state store: keys and values of every
// column family. A storage format (data written by one build is read by the
// next): layouts are documented with byte diagrams in docs/design.md, and a
// change needs a new value version (first byte) or a new format version in
// `meta`, never an in-place reinterpretation.
//
// Building blocks:
//   varint  unsigned LEB128 (as DedupKey's length prefixes);
//   str     varint length + bytes (length prefixes make concatenations
//           injective: ("ab","c") and ("a","bc") differ, and a prefix of
//           whole fields is a prefix of exactly the keys that start with
//           those fields);
//   time    8 bytes big-endian of (uint64)ts XOR 2^63, so that the bytewise
//           order RocksDB uses equals the numeric order, negatives included;
//   zigzag  signed varint (money, offsets, partitions).
#ifndef TALLY_PROCESSOR_JOIN_INTERNAL_CODEC_H_
#define TALLY_PROCESSOR_JOIN_INTERNAL_CODEC_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "processor/commission/commission_engine.h"
#include "processor/join/records.h"
#include "processor/model/events.h"

namespace tally::join_internal {

// First byte of every value this build writes. A reader rejects (DataLoss)
// a version it does not know rather than guessing.
inline constexpr uint8_t kValueVersion = 1;
// The ledger's own version since contract v1.1: 2 appends each commission's
// payout basis (PutBasis). Version 1 ledgers, written before, still decode
// (basis kUnknown), so that a status change of a commission emitted by an
// older build re-emits it with the id and payout it was first emitted with.
// A build older than v1.1 reads a version 2 ledger as DataLoss: rolling back
// past v1.1 needs the state rebuilt.
inline constexpr uint8_t kLedgerVersionLegacy = 1;
inline constexpr uint8_t kLedgerVersion = 2;
// Stored under meta key kMetaFormat; covers the key layouts and the set of
// families. Bumped (with a migration) when a key layout changes.
inline constexpr uint64_t kFormatVersion = 1;

// Primitives.
void PutVarint(std::string* out, uint64_t v);
void PutString(std::string* out, std::string_view s);
void PutTime(std::string* out, TimestampMs t);
void PutZigZag(std::string* out, int64_t v);
std::string TimeBytes(TimestampMs t);

// A cursor over encoded bytes. Every getter returns false (and leaves the
// cursor unusable) on truncated or malformed input.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : rest_(bytes) {}
  bool Byte(uint8_t* v);
  bool Varint(uint64_t* v);
  bool ZigZag(int64_t* v);
  bool String(std::string_view* s);
  bool String(std::string* s);
  bool Time(TimestampMs* t);
  bool empty() const { return rest_.empty(); }
  std::string_view rest() const { return rest_; }

 private:
  std::string_view rest_;
};

// ---- Keys ----------------------------------------------------------------

// clicks: the click id itself (no framing: the key is one field).
// user_clicks: str(user_id) str(offer_id) time(click ts) click_id-bytes.
std::string UserClickPrefix(std::string_view user_id, std::string_view offer_id);
std::string UserClickKey(std::string_view user_id, std::string_view offer_id, TimestampMs ts,
                         std::string_view click_id);
// Splits a user_clicks key; false if malformed.
bool ParseUserClickKey(std::string_view key, TimestampMs* ts, std::string_view* click_id);

// pending: attribution-key part, then str(offer_id) str(goal)
// str(conversion_id). The attribution-key part is 'c' str(click_id) in
// click_id mode and 'u' str(user_id) str(offer_id) in user_id mode, so a
// click finds every conversion waiting for it with one prefix scan.
std::string PendingClickPrefix(std::string_view click_id);
std::string PendingUserPrefix(std::string_view user_id, std::string_view offer_id);
std::string PendingKey(std::string_view prefix, const ConversionIdentity& identity);
// pending_by_time: time(conversion ts) pending-key. Orders pending
// conversions by event time for grace expiry and capacity eviction.
std::string PendingTimeKey(TimestampMs ts, std::string_view pending_key);
bool ParsePendingTimeKey(std::string_view key, TimestampMs* ts, std::string_view* pending_key);

// ledger: str(offer_id) str(goal) str(conversion_id).
std::string LedgerKey(const ConversionIdentity& identity);
absl::StatusOr<ConversionIdentity> ParseLedgerKey(std::string_view key);

// ---- Values --------------------------------------------------------------

// clicks: ver time(ts) str(affiliate) str(offer) str(user) varint(n) str(sub)*n.
// The click id is the key and is not repeated.
std::string EncodeClick(const ClickRecord& click);
absl::StatusOr<ClickRecord> DecodeClick(std::string_view click_id, std::string_view value);

// pending: ver conversion source varint(n) (conversion source)*n.
std::string EncodePending(const PendingConversion& pending);
absl::StatusOr<PendingConversion> DecodePending(std::string_view value);

// ledger: ver time(conversion ts) status outcome reason str(detail)
// str(pending_key) varint(n) commission*n. Commissions omit the identity
// fields (offer, goal, conversion id): they are the key's. Ledger version 2
// appends to each commission byte(basis) zigzag(rate) money(base)
// byte(override_applied) str(offer_version).
std::string EncodeLedger(const LedgerEntry& entry);
absl::StatusOr<LedgerEntry> DecodeLedger(const ConversionIdentity& identity,
                                         std::string_view value);

// dedup: ver time(event ts).
std::string EncodeDedupValue(TimestampMs ts);

// The event time every TTL'd value carries right after its version byte
// (clicks, ledger, dedup): the compaction filter reads it without decoding
// the rest. False for an unknown version or a short value.
bool ValueEventTime(std::string_view value, TimestampMs* ts);

// ---- meta ----------------------------------------------------------------
inline constexpr std::string_view kMetaFormat = "format";                       // varint
inline constexpr std::string_view kMetaPartition = "partition";                 // zigzag
inline constexpr std::string_view kMetaClickWatermark = "wm/clicks";            // time
inline constexpr std::string_view kMetaConversionWatermark = "wm/conversions";  // time
inline constexpr std::string_view kMetaDedupWatermark = "wm/dedup";             // time
inline constexpr std::string_view kMetaOffsetPrefix = "offset/";                // + topic -> zigzag
// The changelog offset after the last marker this store applied (local only:
// never itself changelogged).
inline constexpr std::string_view kMetaChangelogNext = "changelog/next";  // zigzag
// Wall time (ms) of the write that stored kMetaChangelogNext (local only).
inline constexpr std::string_view kMetaChangelogTime = "changelog/time";  // zigzag

}  // namespace tally::join_internal

#endif  // TALLY_PROCESSOR_JOIN_INTERNAL_CODEC_H_
