#include "processor/fraud/internal/cidr_set.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"

namespace tally::fraud_internal {
namespace {

Uint128 HostMask(int prefix) {
  // prefix 0: every bit is a host bit; shifting a 128-bit value by 128 is
  // undefined, hence the special case.
  return prefix == 0 ? ~Uint128{0} : (Uint128{1} << (128 - prefix)) - 1;
}

}  // namespace

Uint128 IpToUint128(const IpAddress& ip) {
  Uint128 v = 0;
  for (const uint8_t b : ip.bytes()) v = (v << 8) | b;
  return v;
}

bool ParseCidr(std::string_view text, Cidr* out, std::string_view* error) {
  const size_t slash = text.find('/');
  const std::string_view addr_text = text.substr(0, slash);
  IpAddress addr;
  if (!IpAddress::Parse(addr_text, &addr)) {
    *error = "is not an IPv4/IPv6 address or CIDR";
    return false;
  }
  // The textual family decides the prefix range: "::ffff:1.2.3.0/120" is an
  // IPv6 CIDR (equal to 1.2.3.0/24), "1.2.3.0/24" an IPv4 one.
  const bool v4_text = addr_text.find(':') == std::string_view::npos;
  const int max_prefix = v4_text ? 32 : 128;
  int prefix = max_prefix;
  if (slash != std::string_view::npos) {
    const std::string_view digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        !absl::SimpleAtoi(absl::string_view(digits.data(), digits.size()), &prefix) ||
        prefix > max_prefix) {
      *error = "is not an IPv4/IPv6 address or CIDR";
      return false;
    }
  }
  if (v4_text) prefix += 96;
  if ((IpToUint128(addr) & HostMask(prefix)) != 0) {
    *error = "has host bits set below the prefix length";
    return false;
  }
  out->base = addr;
  out->prefix = prefix;
  return true;
}

CidrSet::CidrSet(const std::vector<Cidr>& cidrs) {
  std::vector<std::pair<Uint128, Uint128>> ranges;
  ranges.reserve(cidrs.size());
  for (const Cidr& c : cidrs) {
    const Uint128 base = IpToUint128(c.base);
    ranges.emplace_back(base, base | HostMask(c.prefix));
  }
  std::sort(ranges.begin(), ranges.end());
  for (const auto& [start, end] : ranges) {
    // Merge when overlapping or adjacent (start <= last end + 1; written to
    // avoid overflowing at the all-ones address).
    if (!ends_.empty() && (start <= ends_.back() || start - ends_.back() == 1)) {
      ends_.back() = std::max(ends_.back(), end);
    } else {
      starts_.push_back(start);
      ends_.push_back(end);
    }
  }
}

bool CidrSet::Contains(const IpAddress& ip) const {
  const Uint128 v = IpToUint128(ip);
  // The last range starting at or before v is the only candidate.
  const auto it = std::upper_bound(starts_.begin(), starts_.end(), v);
  if (it == starts_.begin()) return false;
  return v <= ends_[static_cast<size_t>(it - starts_.begin()) - 1];
}

}  // namespace tally::fraud_internal
