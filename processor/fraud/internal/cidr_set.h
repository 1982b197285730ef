// A set of IPv4/IPv6 CIDR blocks answering "is this address in any of them?"
// without allocation. Internal to processor/fraud (FraudRules owns one).
//
// Representation: every address is its 16-byte IpAddress form read as a
// 128-bit big-endian integer (IPv4 is ::ffff:a.b.c.d, so an IPv4 /n is the
// IPv6 /(96+n) inside ::ffff:0:0/96 and one structure serves both families).
// A CIDR is the closed integer range [base, base | host_mask]. At build time
// the ranges are sorted and overlapping or adjacent ones merged, leaving
// disjoint, sorted ranges; a lookup is one binary search over their starts.
//
// Why a sorted range table and not a binary trie: a lookup is ~log2(n)
// comparisons over two contiguous arrays (14 for 10k ranges, the upper levels
// staying in cache), against up to 128 dependent pointer hops for an IPv6
// trie walk; memory is 32 bytes per merged range; merging makes overlapping
// entries in the file harmless; and the build is a sort. The trie's
// advantages (longest-prefix match, incremental updates) are not needed: we
// only ask membership and rebuild the whole set on reload.
//
// Immutable after Build: safe to use from any number of threads.
#ifndef TALLY_PROCESSOR_FRAUD_INTERNAL_CIDR_SET_H_
#define TALLY_PROCESSOR_FRAUD_INTERNAL_CIDR_SET_H_

#include <cstdint>
#include <string_view>
#include <vector>

#include "processor/model/ip_address.h"

namespace tally::fraud_internal {

using Uint128 = unsigned __int128;

Uint128 IpToUint128(const IpAddress& ip);

struct Cidr {
  IpAddress base;  // host bits zero
  int prefix = 0;  // 0..128, over the 16-byte form (IPv4 /n is 96+n)
};

// Parses "a.b.c.d", "a.b.c.d/n" (n in 0..32), an IPv6 address or "v6/n" (n in
// 0..128). Rejects host bits set below the prefix ("10.0.0.1/8"): silently
// masking would block more than the operator wrote. On failure returns false
// and sets *error to a short description (without the text itself).
bool ParseCidr(std::string_view text, Cidr* out, std::string_view* error);

class CidrSet {
 public:
  CidrSet() = default;
  explicit CidrSet(const std::vector<Cidr>& cidrs);

  bool Contains(const IpAddress& ip) const;

  // Disjoint ranges after merging (for tests and the start-up log).
  size_t range_count() const { return starts_.size(); }

 private:
  // Sorted, disjoint, non-adjacent: starts_[i] <= ends_[i] < starts_[i+1] - 1.
  // Separate arrays so the binary search touches only the starts.
  std::vector<Uint128> starts_;
  std::vector<Uint128> ends_;
};

}  // namespace tally::fraud_internal

#endif  // TALLY_PROCESSOR_FRAUD_INTERNAL_CIDR_SET_H_
