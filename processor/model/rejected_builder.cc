#include "processor/model/rejected_builder.h"

#include <openssl/evp.h>

#include <array>
#include <cstdlib>
#include <memory>

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

struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};

}  // namespace

std::string Sha256Hex(std::string_view bytes) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  const std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx(EVP_MD_CTX_new());
  // These fail only on allocation failure or a libcrypto without SHA-256;
  // neither leaves a way to produce a correct record.
  if (ctx == nullptr || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), bytes.data(), bytes.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), digest.data(), &length) != 1 || length != 32) {
    std::abort();
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(size_t{2} * length);
  for (unsigned int i = 0; i < length; ++i) {
    hex.push_back(kHex[digest[i] >> 4]);
    hex.push_back(kHex[digest[i] & 0xf]);
  }
  return hex;
}

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
