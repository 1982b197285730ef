// JSON encoding: members in the contract's order, compact, no allocation
// beyond the output string.
#include "absl/strings/str_cat.h"
#include "processor/codec/internal/json_codec.h"
#include "processor/codec/internal/rules.h"

namespace tally::codec_internal {

void AppendJsonString(std::string* out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  size_t run = 0;  // start of the pending run of bytes that need no escape
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out->append(s.data() + run, i - run);
    run = i + 1;
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(c));
    } else {
      const char escape[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xf]};
      out->append(escape, sizeof(escape));
    }
  }
  out->append(s.data() + run, s.size() - run);
  out->push_back('"');
}

namespace {

// Appends `"name":` preceded by '{' for the first member, ',' otherwise.
class ObjectWriter {
 public:
  explicit ObjectWriter(std::string* out) : out_(out) { out_->push_back('{'); }

  void Key(std::string_view name) {
    if (!first_) out_->push_back(',');
    first_ = false;
    out_->push_back('"');
    out_->append(name);
    out_->append("\":");
  }
  void String(std::string_view name, std::string_view value) {
    Key(name);
    AppendJsonString(out_, value);
  }
  void StringIfSet(std::string_view name, std::string_view value) {
    if (!value.empty()) String(name, value);
  }
  void Int(std::string_view name, int64_t value) {
    Key(name);
    absl::StrAppend(out_, value);
  }
  void Bool(std::string_view name, bool value) {
    Key(name);
    out_->append(value ? "true" : "false");
  }
  void ListIfSet(std::string_view name, const std::vector<std::string>& values) {
    if (values.empty()) return;
    Key(name);
    out_->push_back('[');
    for (size_t i = 0; i < values.size(); ++i) {
      if (i > 0) out_->push_back(',');
      AppendJsonString(out_, values[i]);
    }
    out_->push_back(']');
  }
  void End() { out_->push_back('}'); }
  std::string* out() { return out_; }

 private:
  std::string* out_;
  bool first_ = true;
};

std::string_view CurrencyCode(const Currency& currency) {
  return currency.empty() ? std::string_view() : currency.code();
}

void WriteConversion(const Conversion& c, std::string* out) {
  ObjectWriter w(out);
  w.String("conversion_id", c.conversion_id);
  w.Int("ts", c.event_time_ms);
  w.String("offer_id", c.offer_id);
  w.StringIfSet("click_id", c.click_id);
  w.StringIfSet("user_id", c.user_id);
  w.String("goal", c.goal);
  w.Int("amount", c.amount.minor);
  w.String("currency", CurrencyCode(c.amount.currency));
  w.String("status", ConversionStatusName(c.status));
  w.End();
}

}  // namespace

void EncodeJson(const Click& c, std::string* out) {
  out->clear();
  ObjectWriter w(out);
  w.String("click_id", c.click_id);
  w.Int("ts", c.event_time_ms);
  w.String("affiliate_id", c.affiliate_id);
  w.String("offer_id", c.offer_id);
  w.String("user_id", c.user_id);
  w.String("ip", c.ip.ToString());
  w.StringIfSet("user_agent", c.user_agent);
  w.StringIfSet("referrer", c.referrer);
  w.ListIfSet("sub_ids", c.sub_ids);
  w.StringIfSet("country", c.country);
  w.End();
}

void EncodeJson(const Conversion& c, std::string* out) {
  out->clear();
  WriteConversion(c, out);
}

void EncodeJson(const Commission& c, std::string* out) {
  out->clear();
  ObjectWriter w(out);
  w.String("commission_id", c.commission_id);
  w.String("conversion_id", c.conversion_id);
  w.String("offer_id", c.offer_id);
  w.String("goal", c.goal);
  w.String("click_id", c.click_id);
  w.String("affiliate_id", c.affiliate_id);
  w.ListIfSet("sub_ids", c.sub_ids);
  w.Int("click_ts", c.click_time_ms);
  w.Int("conversion_ts", c.conversion_time_ms);
  w.Int("amount", c.payout.minor);
  w.String("currency", CurrencyCode(c.payout.currency));
  w.String("status", ConversionStatusName(c.status));
  w.String("model", AttributionModelName(c.model));
  w.Int("credit_ppm", c.credit_ppm);
  w.Int("click_count", c.click_count);
  // v1.1. The basis is unknown only on the status changes of commissions a
  // v1.0 build first emitted; the record then reads as a v1.0 one.
  if (c.basis != PayoutBasis::kUnknown) {
    w.String("basis", PayoutBasisName(c.basis));
    w.Int("rate", c.rate);
    w.Int("base_amount", c.base.minor);
    w.String("base_currency", CurrencyCode(c.base.currency));
    w.Bool("override_applied", c.override_applied);
    w.String("offer_version", c.offer_version);
  }
  w.Int("produced_at", c.produced_at_ms);
  w.End();
}

void EncodeJson(const RejectedEvent& r, std::string* out) {
  out->clear();
  ObjectWriter w(out);
  w.String("reason", RejectReasonName(r.reason));
  w.String("detail", r.detail);
  w.String("source_topic", r.source_topic);
  w.Int("source_partition", r.source_partition);
  w.Int("source_offset", r.source_offset);
  w.Key("original_key_b64");
  out->push_back('"');
  AppendBase64(out, r.original_key);
  out->push_back('"');
  w.Key("original_value_b64");
  out->push_back('"');
  AppendBase64(out, r.original_value);
  out->push_back('"');
  w.Int("rejected_at", r.rejected_at_ms);
  w.Int("original_key_size", r.original_key_size);
  w.String("original_key_sha256", r.original_key_sha256);
  w.Bool("original_key_truncated", r.original_key_truncated);
  w.Int("original_value_size", r.original_value_size);
  w.String("original_value_sha256", r.original_value_sha256);
  w.Bool("original_value_truncated", r.original_value_truncated);
  w.Int("produced_at", r.produced_at_ms);
  w.End();
}

void EncodeJson(const UnattributedConversion& u, std::string* out) {
  out->clear();
  ObjectWriter w(out);
  w.Key("conversion");
  WriteConversion(u.conversion, out);
  w.String("reason", UnattributedReasonName(u.reason));
  w.String("detail", u.detail);
  w.Int("produced_at", u.produced_at_ms);
  w.End();
}

}  // namespace tally::codec_internal
