#include "tools/loadgen/payload.h"

#include "absl/strings/str_cat.h"

namespace tally::loadgen {

std::vector<JsonMember> ClickMembers(const ClickSpec& s) {
  std::vector<JsonMember> m;
  m.reserve(10);
  m.push_back({"click_id", JsonString(s.click_id)});
  m.push_back({"ts", absl::StrCat(s.ts)});
  m.push_back({"affiliate_id", JsonString(s.affiliate_id)});
  m.push_back({"offer_id", JsonString(s.offer_id)});
  m.push_back({"user_id", JsonString(s.user_id)});
  m.push_back({"ip", JsonString(s.ip)});
  if (!s.user_agent.empty()) m.push_back({"user_agent", JsonString(s.user_agent)});
  if (!s.referrer.empty()) m.push_back({"referrer", JsonString(s.referrer)});
  if (!s.sub_ids.empty()) {
    std::string list = "[";
    for (size_t i = 0; i < s.sub_ids.size(); ++i) {
      if (i > 0) list.push_back(',');
      AppendJsonString(&list, s.sub_ids[i]);
    }
    list.push_back(']');
    m.push_back({"sub_ids", std::move(list)});
  }
  if (!s.country.empty()) m.push_back({"country", JsonString(s.country)});
  return m;
}

std::vector<JsonMember> ConversionMembers(const ConversionSpec& s) {
  std::vector<JsonMember> m;
  m.reserve(9);
  m.push_back({"conversion_id", JsonString(s.conversion_id)});
  m.push_back({"ts", absl::StrCat(s.ts)});
  m.push_back({"offer_id", JsonString(s.offer_id)});
  if (!s.click_id.empty()) m.push_back({"click_id", JsonString(s.click_id)});
  if (!s.user_id.empty()) m.push_back({"user_id", JsonString(s.user_id)});
  m.push_back({"goal", JsonString(s.goal)});
  m.push_back({"amount", absl::StrCat(s.amount)});
  m.push_back({"currency", JsonString(s.currency)});
  m.push_back({"status", JsonString(s.status)});
  return m;
}

namespace {

class HandJsonEncoder final : public PayloadEncoder {
 public:
  WireFormat format() const override { return WireFormat::kJson; }
  bool Encode(const ClickSpec& spec, std::string* out) override {
    *out = SerializeObject(ClickMembers(spec));
    return true;
  }
  bool Encode(const ConversionSpec& spec, std::string* out) override {
    *out = SerializeObject(ConversionMembers(spec));
    return true;
  }
};

}  // namespace

std::unique_ptr<PayloadEncoder> MakeHandJsonEncoder() {
  return std::make_unique<HandJsonEncoder>();
}

namespace pb {

void AppendVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

void AppendBytesField(std::string* out, uint32_t field_number, std::string_view bytes) {
  AppendVarint(out, (static_cast<uint64_t>(field_number) << 3) | 2);
  AppendVarint(out, bytes.size());
  out->append(bytes);
}

namespace {

bool ReadVarint(std::string_view bytes, size_t* pos, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (*pos >= bytes.size()) return false;
    const auto b = static_cast<unsigned char>(bytes[(*pos)++]);
    *v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

}  // namespace

bool ParseFields(std::string_view bytes, std::vector<WireField>* out) {
  out->clear();
  size_t pos = 0;
  while (pos < bytes.size()) {
    WireField f;
    f.begin = pos;
    uint64_t key;
    if (!ReadVarint(bytes, &pos, &key)) return false;
    f.number = static_cast<uint32_t>(key >> 3);
    f.wire_type = static_cast<uint32_t>(key & 7);
    if (f.number == 0) return false;
    uint64_t v;
    switch (f.wire_type) {
      case 0:
        f.payload_begin = pos;
        if (!ReadVarint(bytes, &pos, &v)) return false;
        break;
      case 1:
        f.payload_begin = pos;
        pos += 8;
        break;
      case 2:
        if (!ReadVarint(bytes, &pos, &v)) return false;
        f.payload_begin = pos;
        if (v > bytes.size() - pos) return false;
        pos += v;
        break;
      case 5:
        f.payload_begin = pos;
        pos += 4;
        break;
      default:
        return false;
    }
    if (pos > bytes.size()) return false;
    f.end = pos;
    out->push_back(f);
  }
  return true;
}

}  // namespace pb

}  // namespace tally::loadgen
