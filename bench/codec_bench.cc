// The codec on Tally's hot path: decoding a realistic click (~350 bytes of
// JSON) and conversion in both wire formats, and encoding the outputs
// (Commission, RejectedEvent). Items/s = messages per second on one thread;
// bytes/s = payload bytes read (decode) or written (encode).
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "benchmark/benchmark.h"
#include "processor/codec/codec.h"
#include "processor/model/events.h"
#include "processor/model/ip_address.h"
#include "processor/model/money.h"

namespace tally {
namespace {

// A typical tracker click: browser user agent, a referrer, two sub_ids.
constexpr std::string_view kClickJson =
    R"({"click_id":"c-5573252a56606f93","ts":1767225605948,"affiliate_id":"aff-48",)"
    R"("offer_id":"off-2","user_id":"u-186a7f3e","ip":"65.3.72.22",)"
    R"("user_agent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 )"
    R"((KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",)"
    R"("referrer":"https://blog.example.com/best-shoes-2026",)"
    R"("sub_ids":["summer_sale","banner_728x90"],"country":"DE"})";

constexpr std::string_view kConversionJson =
    R"({"conversion_id":"ord-2026-0001-9912","ts":1767227405948,"offer_id":"off-2",)"
    R"("click_id":"c-5573252a56606f93","user_id":"u-186a7f3e","goal":"sale",)"
    R"("amount":4599,"currency":"EUR","status":"approved"})";

template <typename Event>
Event MustDecodeJson(std::string_view json) {
  EventDecoder decoder(WireFormat::kJson);
  Event event;
  if (auto invalid = decoder.Decode(json, &event)) {
    std::fprintf(stderr, "benchmark fixture does not decode: %s\n", invalid->detail.c_str());
    std::abort();
  }
  return event;
}

// The fixture payload in `format` (protobuf: the JSON fixture re-encoded).
template <typename Event>
std::string Payload(std::string_view json, WireFormat format) {
  if (format == WireFormat::kJson) return std::string(json);
  EventEncoder encoder(format);
  std::string out;
  encoder.Encode(MustDecodeJson<Event>(json), &out);
  return out;
}

template <typename Event>
void BM_Decode(benchmark::State& state, std::string_view json, WireFormat format) {
  const std::string payload = Payload<Event>(json, format);
  EventDecoder decoder(format);
  Event event;
  if (auto invalid = decoder.Decode(payload, &event)) {
    state.SkipWithError(("fixture does not decode: " + invalid->detail).c_str());
    return;
  }
  for (auto _ : state) {
    auto invalid = decoder.Decode(payload, &event);
    benchmark::DoNotOptimize(invalid);
    benchmark::DoNotOptimize(event);
  }
  state.SetLabel(std::to_string(payload.size()) + " B");
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(payload.size()));
}

void BM_DecodeClick(benchmark::State& state, WireFormat format) {
  BM_Decode<Click>(state, kClickJson, format);
}
void BM_DecodeConversion(benchmark::State& state, WireFormat format) {
  BM_Decode<Conversion>(state, kConversionJson, format);
}

Currency Eur() {
  Currency c;
  Currency::Parse("EUR", &c);
  return c;
}

Commission SampleCommission() {
  Commission c;
  c.commission_id = "201313a42960bcfca479693ab1a8496c";
  c.conversion_id = "ord-2026-0001-9912";
  c.offer_id = "off-2";
  c.goal = "sale";
  c.click_id = "c-5573252a56606f93";
  c.affiliate_id = "aff-48";
  c.sub_ids = {"summer_sale", "banner_728x90"};
  c.click_time_ms = 1'767'225'605'948;
  c.conversion_time_ms = 1'767'227'405'948;
  c.payout = Money{4599, Eur()};
  c.status = ConversionStatus::kApproved;
  c.model = AttributionModel::kLastClick;
  // The v1.1 members, so that the encode benchmark measures today's record.
  c.basis = PayoutBasis::kRevshare;
  c.rate = 800;
  c.base = Money{57'488, Eur()};
  c.offer_version = "e96c8d77c815d346d1b7df967dbc030a5274bfc16f2f3766d1f0c77b4f3854fd";
  c.produced_at_ms = 1'767'227'406'012;
  return c;
}

RejectedEvent SampleRejected() {
  RejectedEvent r;
  r.reason = RejectReason::kInvalidValue;
  r.detail = "field 'ip': not an IPv4 or IPv6 address";
  r.source_topic = "clicks";
  r.source_partition = 7;
  r.source_offset = 123'456'789;
  r.original_key = "c-5573252a56606f93";
  r.original_value = std::string(kClickJson);  // base64 in JSON: the costly part
  r.rejected_at_ms = 1'767'225'606'120;
  return r;
}

template <typename Event>
void BM_Encode(benchmark::State& state, const Event& event, WireFormat format) {
  EventEncoder encoder(format);
  std::string out;
  int64_t bytes = 0;
  for (auto _ : state) {
    encoder.Encode(event, &out);
    bytes += static_cast<int64_t>(out.size());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetLabel(std::to_string(out.size()) + " B");
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(bytes);
}

void BM_EncodeCommission(benchmark::State& state, WireFormat format) {
  BM_Encode(state, SampleCommission(), format);
}
void BM_EncodeRejected(benchmark::State& state, WireFormat format) {
  BM_Encode(state, SampleRejected(), format);
}

BENCHMARK_CAPTURE(BM_DecodeClick, json, WireFormat::kJson);
BENCHMARK_CAPTURE(BM_DecodeClick, protobuf, WireFormat::kProtobuf);
BENCHMARK_CAPTURE(BM_DecodeConversion, json, WireFormat::kJson);
BENCHMARK_CAPTURE(BM_DecodeConversion, protobuf, WireFormat::kProtobuf);
BENCHMARK_CAPTURE(BM_EncodeCommission, json, WireFormat::kJson);
BENCHMARK_CAPTURE(BM_EncodeCommission, protobuf, WireFormat::kProtobuf);
BENCHMARK_CAPTURE(BM_EncodeRejected, json, WireFormat::kJson);
BENCHMARK_CAPTURE(BM_EncodeRejected, protobuf, WireFormat::kProtobuf);

}  // namespace
}  // namespace tally
