// SHA-256 (OpenSSL EVP), the one standard hash of Tally's contracts: the
// hashes of a rejected record's original key and value, the offer_version
// of a commission and the commission_id (schemas/README.md), so that any
// language can recompute them.
#ifndef TALLY_PROCESSOR_MODEL_SHA256_H_
#define TALLY_PROCESSOR_MODEL_SHA256_H_

#include <string>
#include <string_view>

namespace tally {

// SHA-256 of `bytes` as 64 lowercase hex digits. Aborts only when libcrypto
// cannot allocate a digest context or lacks SHA-256: neither leaves a way to
// write a correct record.
std::string Sha256Hex(std::string_view bytes);

}  // namespace tally

#endif  // TALLY_PROCESSOR_MODEL_SHA256_H_
