// Valid sample events and JSON building helpers shared by the codec tests.
#ifndef TALLY_TESTS_CODEC_TEST_EVENTS_H_
#define TALLY_TESTS_CODEC_TEST_EVENTS_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "processor/codec/codec.h"
#include "processor/model/events.h"

namespace tally::testing {

inline IpAddress Ip(const char* text) {
  IpAddress ip;
  if (!IpAddress::Parse(text, &ip)) std::abort();
  return ip;
}

inline Currency Cur(const char* code) {
  Currency c;
  if (!Currency::Parse(code, &c)) std::abort();
  return c;
}

// Every field set.
inline Click FullClick() {
  Click c;
  c.click_id = "c-0123456789abcdef";
  c.event_time_ms = 1'767'225'600'000;
  c.affiliate_id = "aff-17";
  c.offer_id = "off-3";
  c.user_id = "u-8812 \xC3\xA9t\xC3\xA9";  // UTF-8 is fine in a user id
  c.ip = Ip("203.0.113.7");
  c.user_agent = "Mozilla/5.0 (X11; Linux x86_64) \"quoted\" \\ back";
  c.referrer = "https://blog.example/post?a=1&b=2";
  c.sub_ids = {"summer", "banner2", ""};
  c.country = "DE";
  return c;
}

// Only the required fields.
inline Click MinimalClick() {
  Click c;
  c.click_id = "c1";
  c.event_time_ms = 946'684'800'000;
  c.affiliate_id = "a";
  c.offer_id = "o";
  c.user_id = "u";
  c.ip = Ip("2001:db8::1");
  return c;
}

inline Conversion FullConversion() {
  Conversion c;
  c.conversion_id = "ord-9912";
  c.event_time_ms = 1'767'225'900'000;
  c.offer_id = "off-3";
  c.click_id = "c-0123456789abcdef";
  c.user_id = "u-8812";
  c.goal = "sale";
  c.amount = Money{4599, Cur("EUR")};
  c.status = ConversionStatus::kApproved;
  return c;
}

inline Commission FullCommission() {
  Commission c;
  c.commission_id = "cm-1";
  c.conversion_id = "ord-9912";
  c.offer_id = "off-3";
  c.goal = "sale";
  c.click_id = "c-1";
  c.affiliate_id = "aff-17";
  c.sub_ids = {"s1", "s2"};
  c.click_time_ms = 1'767'225'600'000;
  c.conversion_time_ms = 1'767'225'900'000;
  c.payout = Money{-1250, Cur("JPY")};
  c.status = ConversionStatus::kReversed;
  c.model = AttributionModel::kPositionBased;
  c.credit_ppm = 400'000;
  c.click_count = 3;
  c.basis = PayoutBasis::kCpa;
  c.rate = 3'750;
  c.base = Money{129'900, Cur("JPY")};
  c.override_applied = false;
  c.offer_version = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
  c.produced_at_ms = 1'767'225'901'234;
  return c;
}

inline RejectedEvent FullRejected() {
  RejectedEvent r;
  r.reason = RejectReason::kInvalidUtf8;
  r.detail = "field 'user_agent': not valid UTF-8 \"x\"\n";
  r.source_topic = "clicks";
  r.source_partition = 7;
  r.source_offset = 123'456'789'012;
  for (int i = 0; i < 256; ++i) r.original_value.push_back(static_cast<char>(i));
  r.original_key = std::string("k\0\xff", 3);
  r.rejected_at_ms = 1'767'225'999'000;
  r.original_key_size = 3;
  r.original_key_sha256 = std::string(64, 'a');
  r.original_key_truncated = false;
  r.original_value_size = 900'000;
  r.original_value_sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
  r.original_value_truncated = true;
  r.produced_at_ms = 1'767'225'999'001;
  return r;
}

inline UnattributedConversion FullUnattributed() {
  UnattributedConversion u;
  u.conversion = FullConversion();
  u.conversion.click_id.clear();
  u.conversion.status = ConversionStatus::kPending;
  u.reason = UnattributedReason::kNoUserClicks;
  u.detail = "no click of the user on offer off-3";
  u.produced_at_ms = 1'767'226'000'002;
  return u;
}

// A JSON object as (name, raw JSON value) members, in order.
using Members = std::vector<std::pair<std::string, std::string>>;

inline std::string Quote(const std::string& s) { return "\"" + s + "\""; }

inline Members ClickMembers() {
  return {{"click_id", "\"c-1\""},           {"ts", "1767225600000"},
          {"affiliate_id", "\"aff-17\""},    {"offer_id", "\"off-3\""},
          {"user_id", "\"u-8812\""},         {"ip", "\"203.0.113.7\""},
          {"user_agent", "\"Mozilla/5.0\""}, {"referrer", "\"https://r.example/\""},
          {"sub_ids", "[\"a\",\"b\"]"},      {"country", "\"DE\""}};
}

inline Members ConversionMembers() {
  return {{"conversion_id", "\"ord-1\""},
          {"ts", "1767225900000"},
          {"offer_id", "\"off-3\""},
          {"click_id", "\"c-1\""},
          {"user_id", "\"u-8812\""},
          {"goal", "\"sale\""},
          {"amount", "4599"},
          {"currency", "\"EUR\""},
          {"status", "\"approved\""}};
}

inline Members With(Members m, const std::string& name, const std::string& raw) {
  for (auto& [n, v] : m) {
    if (n == name) {
      v = raw;
      return m;
    }
  }
  m.emplace_back(name, raw);
  return m;
}

inline Members Without(Members m, const std::string& name) {
  std::erase_if(m, [&](const auto& x) { return x.first == name; });
  return m;
}

inline std::string Json(const Members& m) {
  std::string out = "{";
  for (size_t i = 0; i < m.size(); ++i) {
    if (i > 0) out += ",";
    out += "\"" + m[i].first + "\":" + m[i].second;
  }
  return out + "}";
}

inline std::string ReasonOf(const std::optional<Invalid>& invalid) {
  return invalid ? std::string(RejectReasonName(invalid->reason)) : "ok";
}

}  // namespace tally::testing

#endif  // TALLY_TESTS_CODEC_TEST_EVENTS_H_
