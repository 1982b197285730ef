#include "processor/join/internal/codec.h"

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace tally::join_internal {
namespace {

Money Eur(int64_t minor) {
  Money m;
  m.minor = minor;
  EXPECT_TRUE(Currency::Parse("EUR", &m.currency));
  return m;
}

TEST(CodecTest, VarintAndZigZagRoundTrip) {
  for (int64_t v : {int64_t{0}, int64_t{1}, int64_t{-1}, int64_t{127}, int64_t{128}, int64_t{-300},
                    std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::min()}) {
    std::string out;
    PutZigZag(&out, v);
    Reader r(out);
    int64_t back;
    ASSERT_TRUE(r.ZigZag(&back));
    EXPECT_EQ(back, v);
    EXPECT_TRUE(r.empty());
  }
  std::string out;
  PutVarint(&out, 300);
  EXPECT_EQ(out, std::string("\xac\x02", 2));
}

TEST(CodecTest, TruncatedInputFails) {
  Reader r(std::string_view("\x80", 1));
  uint64_t v;
  EXPECT_FALSE(r.Varint(&v));
  Reader s(
      std::string_view("\x05"
                       "abc",
                       4));
  std::string_view str;
  EXPECT_FALSE(s.String(&str));
  Reader t(std::string_view("1234567", 7));
  TimestampMs ts;
  EXPECT_FALSE(t.Time(&ts));
}

TEST(CodecTest, TimeIsBigEndianAndSortsNumerically) {
  EXPECT_EQ(TimeBytes(0), std::string("\x80\0\0\0\0\0\0\0", 8));
  EXPECT_EQ(TimeBytes(1), std::string("\x80\0\0\0\0\0\0\x01", 8));
  std::vector<TimestampMs> times = {std::numeric_limits<TimestampMs>::min(),
                                    -86'400'000,
                                    -1,
                                    0,
                                    1,
                                    255,
                                    256,
                                    1'700'000'000'000,
                                    1'700'000'000'001,
                                    std::numeric_limits<TimestampMs>::max()};
  for (size_t i = 0; i + 1 < times.size(); ++i) {
    EXPECT_LT(TimeBytes(times[i]), TimeBytes(times[i + 1])) << times[i];
    const std::string bytes = TimeBytes(times[i]);  // Reader views it
    Reader r(bytes);
    TimestampMs back;
    ASSERT_TRUE(r.Time(&back));
    EXPECT_EQ(back, times[i]);
  }
}

TEST(CodecTest, UserClickKeysSortByTimeWithinUserAndOffer) {
  const std::string a = UserClickKey("u1", "off", 1'000, "zzz");
  const std::string b = UserClickKey("u1", "off", 2'000, "aaa");
  const std::string c = UserClickKey("u1", "off", 2'000, "bbb");
  const std::string d = UserClickKey("u1", "off", 256, "x");
  EXPECT_LT(d, a);
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  const std::string prefix = UserClickPrefix("u1", "off");
  for (const std::string& k : {a, b, c, d}) EXPECT_EQ(k.substr(0, prefix.size()), prefix);
  TimestampMs ts;
  std::string_view id;
  ASSERT_TRUE(ParseUserClickKey(c, &ts, &id));
  EXPECT_EQ(ts, 2'000);
  EXPECT_EQ(id, "bbb");
}

TEST(CodecTest, LengthPrefixesKeepFieldsApart) {
  // ("ab","c") and ("a","bc") must neither collide nor be prefixes of
  // each other's scans.
  const std::string p1 = UserClickPrefix("ab", "c");
  const std::string p2 = UserClickPrefix("a", "bc");
  EXPECT_NE(p1, p2);
  EXPECT_NE(UserClickKey("a", "bc", 5, "x").substr(0, p1.size()), p1);
  EXPECT_NE(PendingClickPrefix("ab"), PendingClickPrefix("a").append("b"));
  EXPECT_NE(LedgerKey({"ab", "c", "d"}), LedgerKey({"a", "bc", "d"}));
  // A click-mode prefix never matches a user-mode key.
  EXPECT_NE(PendingClickPrefix("x")[0], PendingUserPrefix("x", "o")[0]);
  // A click id that is a prefix of another does not pick up its pending
  // conversions.
  const std::string key = PendingKey(PendingClickPrefix("abc"), {"o", "sale", "1"});
  EXPECT_NE(key.substr(0, PendingClickPrefix("ab").size()), PendingClickPrefix("ab"));
}

TEST(CodecTest, PendingTimeKeysSortByTime) {
  const std::string early = PendingTimeKey(1'000, "zz");
  const std::string late = PendingTimeKey(2'000, "aa");
  EXPECT_LT(early, late);
  TimestampMs ts;
  std::string_view key;
  ASSERT_TRUE(ParsePendingTimeKey(late, &ts, &key));
  EXPECT_EQ(ts, 2'000);
  EXPECT_EQ(key, "aa");
}

TEST(CodecTest, LedgerKeyRoundTrip) {
  ConversionIdentity id{"off-1", "sale", "order-9"};
  auto back = ParseLedgerKey(LedgerKey(id));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, id);
  EXPECT_FALSE(ParseLedgerKey(LedgerKey(id) + "x").ok());
}

TEST(CodecTest, ClickRoundTrip) {
  ClickRecord click{"clk-1", 1'700'000'000'123, "aff-1", "off-1", "user-1", {"s1", "", "s3"}};
  const std::string value = EncodeClick(click);
  EXPECT_EQ(value[0], static_cast<char>(kValueVersion));
  auto back = DecodeClick("clk-1", value);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, click);
  TimestampMs ts;
  ASSERT_TRUE(ValueEventTime(value, &ts));
  EXPECT_EQ(ts, click.event_time_ms);
  // Every truncation is detected.
  for (size_t n = 0; n < value.size(); ++n) {
    EXPECT_FALSE(DecodeClick("clk-1", value.substr(0, n)).ok()) << n;
  }
  std::string future = value;
  future[0] = 3;  // 2 is a ledger version, which ValueEventTime accepts
  EXPECT_EQ(DecodeClick("clk-1", future).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(ValueEventTime(future, &ts));
}

Conversion MakeConversion(std::string id, ConversionStatus status) {
  Conversion c;
  c.conversion_id = std::move(id);
  c.event_time_ms = 1'700'000'100'000;
  c.offer_id = "off-1";
  c.click_id = "clk-1";
  c.user_id = "";
  c.goal = "sale";
  c.amount = Eur(12'345);
  c.status = status;
  return c;
}

TEST(CodecTest, PendingRoundTrip) {
  PendingConversion p;
  p.conversion = MakeConversion("o-1", ConversionStatus::kPending);
  p.source = {"conversions", 3, 42, "key", std::string("va\0lue", 6)};
  p.queued.push_back(
      {MakeConversion("o-1", ConversionStatus::kApproved), {"conversions", 3, 50, "", "v2"}});
  p.queued.push_back(
      {MakeConversion("o-1", ConversionStatus::kReversed), {"conversions", 3, 51, "k", "v3"}});
  p.conversion.amount.currency = Currency();  // empty currency survives too
  const std::string value = EncodePending(p);
  auto back = DecodePending(value);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, p);
  for (size_t n = 0; n < value.size(); ++n) EXPECT_FALSE(DecodePending(value.substr(0, n)).ok());
}

TEST(CodecTest, LedgerRoundTrip) {
  ConversionIdentity id{"off-1", "sale", "o-1"};
  LedgerEntry e;
  e.conversion_time_ms = 1'700'000'100'000;
  e.status = ConversionStatus::kApproved;
  e.outcome = LedgerOutcome::kAttributed;
  Commission c;
  c.commission_id = "0123456789abcdef0123456789abcdef";
  c.conversion_id = id.conversion_id;
  c.offer_id = id.offer_id;
  c.goal = id.goal;
  c.click_id = "clk-1";
  c.affiliate_id = "aff-1";
  c.sub_ids = {"a", "b"};
  c.click_time_ms = 1'700'000'000'000;
  c.conversion_time_ms = e.conversion_time_ms;
  c.payout = Eur(-700);
  c.status = ConversionStatus::kPending;
  c.model = AttributionModel::kLinear;
  c.credit_ppm = 333'333;
  c.click_count = 3;
  c.basis = PayoutBasis::kRevshare;
  c.rate = 1'000;
  c.base = Eur(7'000);
  c.override_applied = true;
  c.offer_version = std::string(64, 'a');
  e.commissions = {c, c};
  e.commissions[1].click_id = "clk-2";
  std::string value = EncodeLedger(e);
  EXPECT_EQ(value[0], static_cast<char>(kLedgerVersion));
  auto back = DecodeLedger(id, value);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, e);
  TimestampMs ts;
  ASSERT_TRUE(ValueEventTime(value, &ts));
  EXPECT_EQ(ts, e.conversion_time_ms);

  LedgerEntry rejected;
  rejected.outcome = LedgerOutcome::kRejected;
  rejected.reject_reason = RejectReason::kCtitTooLong;
  rejected.detail = "too long";
  back = DecodeLedger(id, EncodeLedger(rejected));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, rejected);

  LedgerEntry unattributed;
  unattributed.outcome = LedgerOutcome::kUnattributed;
  unattributed.unattributed_reason = UnattributedReason::kNoUserClicks;
  back = DecodeLedger(id, EncodeLedger(unattributed));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, unattributed);

  LedgerEntry pending;
  pending.pending_key = PendingKey(PendingClickPrefix("c"), id);
  back = DecodeLedger(id, EncodeLedger(pending));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, pending);
  for (size_t n = 0; n < value.size(); ++n) EXPECT_FALSE(DecodeLedger(id, value.substr(0, n)).ok());
}

// A ledger written before contract v1.1 (version 1: no basis) still decodes,
// with its stored commission id and payout and basis kUnknown: a status
// change after an upgrade must re-emit exactly what the old build emitted.
TEST(CodecTest, LegacyLedgerDecodesWithItsIdAndUnknownBasis) {
  const ConversionIdentity id{"off-1", "sale", "o-1"};
  // Version 1 layout, byte for byte as the builds before v1.1 wrote it.
  std::string value(1, static_cast<char>(kLedgerVersionLegacy));
  PutTime(&value, 1'700'000'100'000);
  value.push_back(static_cast<char>(ConversionStatus::kPending));
  value.push_back(static_cast<char>(LedgerOutcome::kAttributed));
  value.push_back(0);     // reason
  PutString(&value, "");  // detail
  PutString(&value, "");  // pending key
  PutVarint(&value, 1);
  PutString(&value, "legacy-commission-id");
  PutString(&value, "clk-1");
  PutString(&value, "aff-1");
  PutVarint(&value, 0);  // sub_ids
  PutTime(&value, 1'700'000'000'000);
  PutTime(&value, 1'700'000'100'000);
  PutZigZag(&value, 1'234);
  value.append("EUR");
  value.push_back(static_cast<char>(ConversionStatus::kPending));
  value.push_back(static_cast<char>(AttributionModel::kLastClick));
  PutZigZag(&value, 1'000'000);
  PutZigZag(&value, 1);

  auto back = DecodeLedger(id, value);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->commissions.size(), 1u);
  const Commission& c = back->commissions[0];
  EXPECT_EQ(c.commission_id, "legacy-commission-id");
  EXPECT_EQ(c.payout, Eur(1'234));
  EXPECT_EQ(c.basis, PayoutBasis::kUnknown);
  EXPECT_TRUE(c.offer_version.empty());
  TimestampMs ts;
  ASSERT_TRUE(ValueEventTime(value, &ts));
  EXPECT_EQ(ts, 1'700'000'100'000);
  // Re-encoded it becomes version 2 and keeps everything it had.
  const std::string upgraded = EncodeLedger(*back);
  EXPECT_EQ(upgraded[0], static_cast<char>(kLedgerVersion));
  auto again = DecodeLedger(id, upgraded);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *back);
  // A version 1 value with a version 2 tail is corrupt, not silently cut.
  std::string mixed = EncodeLedger(*back);
  mixed[0] = static_cast<char>(kLedgerVersionLegacy);
  EXPECT_EQ(DecodeLedger(id, mixed).status().code(), absl::StatusCode::kDataLoss);
}

TEST(CodecTest, DedupValue) {
  TimestampMs ts;
  ASSERT_TRUE(ValueEventTime(EncodeDedupValue(-5), &ts));
  EXPECT_EQ(ts, -5);
}

}  // namespace
}  // namespace tally::join_internal
