// An IPv4 or IPv6 address in a fixed 16-byte form: IPv4 is held as the
// IPv4-mapped IPv6 address ::ffff:a.b.c.d, so CIDR matching and hashing treat
// both families with one code path.
#ifndef TALLY_PROCESSOR_MODEL_IP_ADDRESS_H_
#define TALLY_PROCESSOR_MODEL_IP_ADDRESS_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace tally {

class IpAddress {
 public:
  IpAddress() = default;
  // Accepts dotted-quad IPv4 and RFC 4291 / RFC 5952 IPv6 text (including
  // embedded IPv4 and "::" compression). No zone ids, no brackets, no ports.
  static bool Parse(std::string_view text, IpAddress* out);
  static IpAddress FromV4(uint32_t host_order);
  static IpAddress FromBytes(const std::array<uint8_t, 16>& bytes);

  bool is_v4() const;  // true for ::ffff:0:0/96
  const std::array<uint8_t, 16>& bytes() const { return bytes_; }
  // Canonical text: dotted quad for IPv4, RFC 5952 for IPv6.
  std::string ToString() const;

  friend bool operator==(const IpAddress&, const IpAddress&) = default;

 private:
  std::array<uint8_t, 16> bytes_{};
};

}  // namespace tally

#endif  // TALLY_PROCESSOR_MODEL_IP_ADDRESS_H_
