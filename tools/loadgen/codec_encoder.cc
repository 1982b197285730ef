#include "tools/loadgen/codec_encoder.h"

#include <utility>

namespace tally::loadgen {
namespace {

class CodecEncoder final : public PayloadEncoder {
 public:
  explicit CodecEncoder(WireFormat format) : encoder_(format) {}

  WireFormat format() const override { return encoder_.format(); }

  bool Encode(const ClickSpec& spec, std::string* out) override {
    click_.click_id = spec.click_id;
    click_.event_time_ms = spec.ts;
    click_.affiliate_id = spec.affiliate_id;
    click_.offer_id = spec.offer_id;
    click_.user_id = spec.user_id;
    if (!IpAddress::Parse(spec.ip, &click_.ip)) return false;
    click_.user_agent = spec.user_agent;
    click_.referrer = spec.referrer;
    click_.sub_ids = spec.sub_ids;
    click_.country = spec.country;
    encoder_.Encode(click_, out);
    return true;
  }

  bool Encode(const ConversionSpec& spec, std::string* out) override {
    conversion_.conversion_id = spec.conversion_id;
    conversion_.event_time_ms = spec.ts;
    conversion_.offer_id = spec.offer_id;
    conversion_.click_id = spec.click_id;
    conversion_.user_id = spec.user_id;
    conversion_.goal = spec.goal;
    conversion_.amount.minor = spec.amount;
    if (!Currency::Parse(spec.currency, &conversion_.amount.currency)) return false;
    if (!ParseConversionStatus(spec.status, &conversion_.status)) return false;
    encoder_.Encode(conversion_, out);
    return true;
  }

 private:
  EventEncoder encoder_;
  // Reused between calls to keep their buffers.
  Click click_;
  Conversion conversion_;
};

}  // namespace

std::unique_ptr<PayloadEncoder> MakeCodecEncoder(WireFormat format) {
  return std::make_unique<CodecEncoder>(format);
}

}  // namespace tally::loadgen
