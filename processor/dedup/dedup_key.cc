#include "processor/dedup/dedup_key.h"

#include <cstring>

#include "absl/status/status.h"

namespace tally {

void AppendLengthPrefixed(std::string_view field, std::string* out) {
  uint64_t len = field.size();
  while (len >= 0x80) {
    out->push_back(static_cast<char>((len & 0x7F) | 0x80));
    len >>= 7;
  }
  out->push_back(static_cast<char>(len));
  out->append(field.data(), field.size());
}

namespace {

// Reads one length-prefixed field from the front of *in.
bool ReadField(std::string_view* in, std::string_view* field) {
  uint64_t len = 0;
  for (int shift = 0;; shift += 7) {
    if (in->empty() || shift > 63) return false;
    const uint8_t byte = static_cast<uint8_t>(in->front());
    in->remove_prefix(1);
    len |= static_cast<uint64_t>(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) break;
  }
  if (len > in->size()) return false;
  *field = in->substr(0, len);
  in->remove_prefix(len);
  return true;
}

constexpr uint64_t kC1 = 0x87c37b91114253d5ULL;  // MurmurHash3 x64 constants
constexpr uint64_t kC2 = 0x4cf5ad432745937fULL;

inline uint64_t Rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

inline uint64_t Fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

inline uint64_t MixBlock(uint64_t k) {
  k *= kC1;
  k = Rotl(k, 31);
  k *= kC2;
  return k;
}

// Explicit little-endian assembly so the value does not depend on the host.
inline uint64_t LoadLe(const unsigned char* p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

}  // namespace

DedupKey ClickKey(std::string_view click_id) {
  std::string encoded;
  encoded.reserve(1 + click_id.size());
  encoded.push_back(static_cast<char>(DedupKey::Kind::kClick));
  encoded.append(click_id.data(), click_id.size());
  return DedupKey(std::move(encoded));
}

DedupKey ConversionKey(std::string_view offer_id, std::string_view goal,
                       std::string_view conversion_id, ConversionStatus status) {
  std::string encoded;
  encoded.reserve(1 + 3 * 2 + offer_id.size() + goal.size() + conversion_id.size() + 1);
  encoded.push_back(static_cast<char>(DedupKey::Kind::kConversion));
  AppendLengthPrefixed(offer_id, &encoded);
  AppendLengthPrefixed(goal, &encoded);
  AppendLengthPrefixed(conversion_id, &encoded);
  encoded.push_back(static_cast<char>(status));
  return DedupKey(std::move(encoded));
}

absl::StatusOr<DedupKey> DedupKey::FromEncoded(std::string_view encoded) {
  if (encoded.empty()) return absl::InvalidArgumentError("dedup key: empty");
  std::string_view rest = encoded.substr(1);
  switch (static_cast<Kind>(encoded[0])) {
    case Kind::kClick:
      return ClickKey(rest);
    case Kind::kConversion: {
      std::string_view offer, goal, conversion_id;
      if (!ReadField(&rest, &offer) || !ReadField(&rest, &goal) ||
          !ReadField(&rest, &conversion_id) || rest.size() != 1) {
        return absl::InvalidArgumentError("dedup key: malformed conversion key");
      }
      const auto status_value = static_cast<uint8_t>(rest[0]);
      if (status_value > static_cast<uint8_t>(ConversionStatus::kReversed)) {
        return absl::InvalidArgumentError("dedup key: unknown conversion status");
      }
      return ConversionKey(offer, goal, conversion_id, static_cast<ConversionStatus>(status_value));
    }
  }
  return absl::InvalidArgumentError("dedup key: unknown kind");
}

uint64_t DedupHash64(std::string_view bytes) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  uint64_t h = 0x9E3779B97F4A7C15ULL ^ (static_cast<uint64_t>(n) * kC2);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    h ^= MixBlock(LoadLe(p + i, 8));
    h = Rotl(h, 27) * 5 + 0x52dce729;
  }
  if (i < n) h ^= MixBlock(LoadLe(p + i, n - i));
  return Fmix64(h ^ n);
}

}  // namespace tally
