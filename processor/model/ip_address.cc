#include "processor/model/ip_address.h"

#include <arpa/inet.h>

#include <cstring>

namespace tally {
namespace {

constexpr std::array<uint8_t, 12> kV4MappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

}  // namespace

bool IpAddress::Parse(std::string_view text, IpAddress* out) {
  // inet_pton needs a NUL-terminated string; anything longer than the
  // longest IPv6 text form (45 characters) is not an address.
  char buf[INET6_ADDRSTRLEN + 1];
  if (text.empty() || text.size() >= sizeof(buf)) return false;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  // glibc's inet_pton is strict: exactly four decimal octets for AF_INET
  // (no leading zeros, no shorthand), no zone ids, brackets or ports.
  in_addr v4;
  if (inet_pton(AF_INET, buf, &v4) == 1) {
    *out = FromV4(ntohl(v4.s_addr));
    return true;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, buf, &v6) == 1) {
    std::memcpy(out->bytes_.data(), v6.s6_addr, 16);
    return true;
  }
  return false;
}

IpAddress IpAddress::FromV4(uint32_t host_order) {
  IpAddress ip;
  std::memcpy(ip.bytes_.data(), kV4MappedPrefix.data(), kV4MappedPrefix.size());
  ip.bytes_[12] = static_cast<uint8_t>(host_order >> 24);
  ip.bytes_[13] = static_cast<uint8_t>(host_order >> 16);
  ip.bytes_[14] = static_cast<uint8_t>(host_order >> 8);
  ip.bytes_[15] = static_cast<uint8_t>(host_order);
  return ip;
}

IpAddress IpAddress::FromBytes(const std::array<uint8_t, 16>& bytes) {
  IpAddress ip;
  ip.bytes_ = bytes;
  return ip;
}

bool IpAddress::is_v4() const {
  return std::memcmp(bytes_.data(), kV4MappedPrefix.data(), kV4MappedPrefix.size()) == 0;
}

std::string IpAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN];
  if (is_v4()) {
    inet_ntop(AF_INET, bytes_.data() + 12, buf, sizeof(buf));
  } else {
    inet_ntop(AF_INET6, bytes_.data(), buf, sizeof(buf));
  }
  return buf;
}

}  // namespace tally
