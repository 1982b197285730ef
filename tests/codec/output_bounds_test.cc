// The start-up check of output record sizes (processor/config,
// WorstCaseOutputRecordBytes) is only as good as its bounds: here the real
// encoders write worst-case records and must stay within them (regression:
// issue 6, a rejected record over message.max.bytes stopped the pipeline).
#include <cstdint>
#include <limits>
#include <string>

#include "gtest/gtest.h"
#include "processor/codec/codec.h"
#include "processor/config/config.h"
#include "processor/model/rejected_builder.h"

namespace tally {
namespace {

// librdkafka's per-record framing is at most about 40 bytes, and the three
// output headers (processor/app/processor.cc) add their names, values and
// two varints each; the bound reserves more.
constexpr uint64_t kOutputHeaderBytes =
    (sizeof("tally.schema") + sizeof("tally.v1.Unattributed")) +
    (sizeof("tally.schema_version") + sizeof("1.1")) +
    (sizeof("content-type") + sizeof("application/x-protobuf")) + 3 * 2;
constexpr uint64_t kLibrdkafkaRecordOverhead = 40 + kOutputHeaderBytes;

PayloadFormat ToPayloadFormat(WireFormat format) {
  return format == WireFormat::kJson ? PayloadFormat::kJson : PayloadFormat::kProtobuf;
}

class OutputBoundsTest : public ::testing::TestWithParam<WireFormat> {};

TEST_P(OutputBoundsTest, WorstCaseRejectedRecordFitsTheBound) {
  for (uint64_t value_limit : {uint64_t{0}, uint64_t{1}, uint64_t{64 * 1024}, uint64_t{700'001}}) {
    SCOPED_TRACE(value_limit);
    TallyConfig config;
    config.formats.output = ToPayloadFormat(GetParam());
    config.limits.max_rejected_original_bytes = value_limit;
    RejectedLimits limits;
    limits.max_value_bytes = value_limit;
    // Every part at its longest: control characters (6 bytes each in JSON),
    // the longest reason, the most digits.
    const std::string topic(249, 'T');
    const std::string key(5000, '\xff');
    const std::string value(value_limit + 5000, '\x01');
    const std::string detail(5000, '\x01');
    RejectedEvent r = BuildRejectedEvent({topic, std::numeric_limits<int32_t>::min(),
                                          std::numeric_limits<int64_t>::min(), key, value},
                                         RejectReason::kTimestampOutOfRange, detail, limits,
                                         std::numeric_limits<int64_t>::min());
    r.original_key_size = std::numeric_limits<int64_t>::max();
    r.original_value_size = std::numeric_limits<int64_t>::max();
    r.produced_at_ms = std::numeric_limits<int64_t>::min();
    ASSERT_TRUE(r.original_key_truncated);
    ASSERT_TRUE(r.original_value_truncated);
    EventEncoder encoder(GetParam());
    std::string encoded;
    encoder.Encode(r, &encoded);
    const uint64_t record = encoded.size() + r.original_key.size() + kLibrdkafkaRecordOverhead;
    EXPECT_LE(record, WorstCaseOutputRecordBytes(config).rejected);
    // And the bound is not wildly loose (it is what the hint is computed from).
    EXPECT_GE(record + 2048, WorstCaseOutputRecordBytes(config).rejected);
  }
}

TEST_P(OutputBoundsTest, WorstCaseUnattributedRecordFitsTheBound) {
  TallyConfig config;
  config.formats.output = ToPayloadFormat(GetParam());
  UnattributedConversion u;
  Conversion& c = u.conversion;
  c.conversion_id = std::string(64, 'c');
  c.event_time_ms = std::numeric_limits<int64_t>::min();
  c.offer_id = std::string(64, 'o');
  c.click_id = std::string(64, 'k');
  c.user_id = std::string(128, '"');  // escaped to 2 bytes each in JSON
  c.goal = std::string(32, 'g');
  c.amount.minor = std::numeric_limits<int64_t>::min();
  ASSERT_TRUE(Currency::Parse("EUR", &c.amount.currency));
  c.status = ConversionStatus::kReversed;
  u.reason = UnattributedReason::kNoUserClicks;
  // Longer than any detail the joiner writes (an offer id and a fixed text).
  u.detail = std::string(512, 'd');
  u.produced_at_ms = std::numeric_limits<int64_t>::min();
  EventEncoder encoder(GetParam());
  std::string encoded;
  encoder.Encode(u, &encoded);
  const uint64_t record = encoded.size() + c.user_id.size() + kLibrdkafkaRecordOverhead;
  EXPECT_LE(record, WorstCaseOutputRecordBytes(config).unattributed);
}

INSTANTIATE_TEST_SUITE_P(Formats, OutputBoundsTest,
                         ::testing::Values(WireFormat::kJson, WireFormat::kProtobuf),
                         [](const auto& p) {
                           return std::string(p.param == WireFormat::kJson ? "Json" : "Protobuf");
                         });

}  // namespace
}  // namespace tally
