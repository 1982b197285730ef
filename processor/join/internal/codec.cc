#include "processor/join/internal/codec.h"

#include <cstring>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tally::join_internal {
namespace {

constexpr uint64_t kSignFlip = uint64_t{1} << 63;

absl::Status Corrupt(std::string_view what) {
  return absl::DataLossError(absl::StrCat("state store: corrupt ",
                                          absl::string_view(what.data(), what.size()), " record"));
}

void PutMoney(std::string* out, const Money& money) {
  PutZigZag(out, money.minor);
  // Three raw bytes: "\0\0\0" for the empty currency.
  std::string_view code = money.currency.code();
  if (money.currency.empty()) {
    out->append(3, '\0');
  } else {
    out->append(code.data(), code.size());
  }
}

bool GetMoney(Reader& r, Money* money) {
  if (!r.ZigZag(&money->minor)) return false;
  std::string_view rest = r.rest();
  if (rest.size() < 3) return false;
  std::string_view code = rest.substr(0, 3);
  Reader skip(rest.substr(3));
  r = skip;
  if (code == std::string_view("\0\0\0", 3)) {
    money->currency = Currency();
    return true;
  }
  return Currency::Parse(code, &money->currency);
}

void PutConversion(std::string* out, const Conversion& c) {
  PutString(out, c.conversion_id);
  PutTime(out, c.event_time_ms);
  PutString(out, c.offer_id);
  PutString(out, c.click_id);
  PutString(out, c.user_id);
  PutString(out, c.goal);
  PutMoney(out, c.amount);
  out->push_back(static_cast<char>(c.status));
}

bool GetStatus(Reader& r, ConversionStatus* status) {
  uint8_t s;
  if (!r.Byte(&s) || s > static_cast<uint8_t>(ConversionStatus::kReversed)) return false;
  *status = static_cast<ConversionStatus>(s);
  return true;
}

bool GetConversion(Reader& r, Conversion* c) {
  return r.String(&c->conversion_id) && r.Time(&c->event_time_ms) && r.String(&c->offer_id) &&
         r.String(&c->click_id) && r.String(&c->user_id) && r.String(&c->goal) &&
         GetMoney(r, &c->amount) && GetStatus(r, &c->status);
}

void PutSource(std::string* out, const StoredSource& s) {
  PutString(out, s.topic);
  PutZigZag(out, s.partition);
  PutZigZag(out, s.offset);
  PutString(out, s.key);
  PutString(out, s.value);
}

bool GetSource(Reader& r, StoredSource* s) {
  int64_t partition;
  if (!r.String(&s->topic) || !r.ZigZag(&partition) || !r.ZigZag(&s->offset) ||
      !r.String(&s->key) || !r.String(&s->value)) {
    return false;
  }
  if (partition < INT32_MIN || partition > INT32_MAX) return false;
  s->partition = static_cast<int32_t>(partition);
  return true;
}

void PutStrings(std::string* out, const std::vector<std::string>& v) {
  PutVarint(out, v.size());
  for (const std::string& s : v) PutString(out, s);
}

bool GetStrings(Reader& r, std::vector<std::string>* v) {
  uint64_t n;
  // Every element takes at least one byte: a count above the remaining
  // bytes is corruption, not a reason to allocate.
  if (!r.Varint(&n) || n > r.rest().size()) return false;
  v->resize(n);
  for (std::string& s : *v) {
    if (!r.String(&s)) return false;
  }
  return true;
}

void PutCommission(std::string* out, const Commission& c) {
  PutString(out, c.commission_id);
  PutString(out, c.click_id);
  PutString(out, c.affiliate_id);
  PutStrings(out, c.sub_ids);
  PutTime(out, c.click_time_ms);
  PutTime(out, c.conversion_time_ms);
  PutMoney(out, c.payout);
  out->push_back(static_cast<char>(c.status));
  out->push_back(static_cast<char>(c.model));
  PutZigZag(out, c.credit_ppm);
  PutZigZag(out, c.click_count);
  out->push_back(static_cast<char>(c.basis));
  PutZigZag(out, c.rate);
  PutMoney(out, c.base);
  out->push_back(static_cast<char>(c.override_applied ? 1 : 0));
  PutString(out, c.offer_version);
}

// The basis of ledger version 2 (PutCommission's tail).
bool GetBasis(Reader& r, Commission* c) {
  uint8_t basis, override_applied;
  if (!r.Byte(&basis) || basis > static_cast<uint8_t>(PayoutBasis::kRevshare) ||
      !r.ZigZag(&c->rate) || !GetMoney(r, &c->base) || !r.Byte(&override_applied) ||
      override_applied > 1 || !r.String(&c->offer_version)) {
    return false;
  }
  c->basis = static_cast<PayoutBasis>(basis);
  c->override_applied = override_applied == 1;
  return true;
}

bool GetCommission(Reader& r, const ConversionIdentity& identity, uint8_t ledger_version,
                   Commission* c) {
  uint8_t model;
  int64_t ppm, count;
  if (!r.String(&c->commission_id) || !r.String(&c->click_id) || !r.String(&c->affiliate_id) ||
      !GetStrings(r, &c->sub_ids) || !r.Time(&c->click_time_ms) ||
      !r.Time(&c->conversion_time_ms) || !GetMoney(r, &c->payout) || !GetStatus(r, &c->status) ||
      !r.Byte(&model) || model > static_cast<uint8_t>(AttributionModel::kPositionBased) ||
      !r.ZigZag(&ppm) || !r.ZigZag(&count)) {
    return false;
  }
  c->model = static_cast<AttributionModel>(model);
  c->credit_ppm = static_cast<int32_t>(ppm);
  c->click_count = static_cast<int32_t>(count);
  c->offer_id = identity.offer_id;
  c->goal = identity.goal;
  c->conversion_id = identity.conversion_id;
  return ledger_version == kLedgerVersionLegacy || GetBasis(r, c);
}

bool GetVersion(Reader& r) {
  uint8_t v;
  return r.Byte(&v) && v == kValueVersion;
}

}  // namespace

void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

void PutString(std::string* out, std::string_view s) {
  PutVarint(out, s.size());
  out->append(s.data(), s.size());
}

void PutTime(std::string* out, TimestampMs t) {
  uint64_t u = static_cast<uint64_t>(t) ^ kSignFlip;
  for (int shift = 56; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((u >> shift) & 0xff));
  }
}

void PutZigZag(std::string* out, int64_t v) {
  PutVarint(out, (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63));
}

std::string TimeBytes(TimestampMs t) {
  std::string out;
  PutTime(&out, t);
  return out;
}

bool Reader::Byte(uint8_t* v) {
  if (rest_.empty()) return false;
  *v = static_cast<uint8_t>(rest_[0]);
  rest_.remove_prefix(1);
  return true;
}

bool Reader::Varint(uint64_t* v) {
  uint64_t result = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    uint8_t b;
    if (!Byte(&b)) return false;
    result |= uint64_t{b & 0x7fu} << shift;
    if ((b & 0x80) == 0) {
      *v = result;
      return true;
    }
  }
  rest_ = {};  // more than 10 bytes: malformed
  return false;
}

bool Reader::ZigZag(int64_t* v) {
  uint64_t u;
  if (!Varint(&u)) return false;
  *v = static_cast<int64_t>(u >> 1) ^ -static_cast<int64_t>(u & 1);
  return true;
}

bool Reader::String(std::string_view* s) {
  uint64_t n;
  if (!Varint(&n) || n > rest_.size()) return false;
  *s = rest_.substr(0, n);
  rest_.remove_prefix(n);
  return true;
}

bool Reader::String(std::string* s) {
  std::string_view view;
  if (!String(&view)) return false;
  s->assign(view.data(), view.size());
  return true;
}

bool Reader::Time(TimestampMs* t) {
  if (rest_.size() < 8) return false;
  uint64_t u = 0;
  for (int i = 0; i < 8; ++i) u = (u << 8) | static_cast<uint8_t>(rest_[i]);
  rest_.remove_prefix(8);
  *t = static_cast<TimestampMs>(u ^ kSignFlip);
  return true;
}

std::string UserClickPrefix(std::string_view user_id, std::string_view offer_id) {
  std::string out;
  PutString(&out, user_id);
  PutString(&out, offer_id);
  return out;
}

std::string UserClickKey(std::string_view user_id, std::string_view offer_id, TimestampMs ts,
                         std::string_view click_id) {
  std::string out = UserClickPrefix(user_id, offer_id);
  PutTime(&out, ts);
  out.append(click_id.data(), click_id.size());
  return out;
}

bool ParseUserClickKey(std::string_view key, TimestampMs* ts, std::string_view* click_id) {
  Reader r(key);
  std::string_view user, offer;
  if (!r.String(&user) || !r.String(&offer) || !r.Time(ts)) return false;
  *click_id = r.rest();
  return true;
}

std::string PendingClickPrefix(std::string_view click_id) {
  std::string out = "c";
  PutString(&out, click_id);
  return out;
}

std::string PendingUserPrefix(std::string_view user_id, std::string_view offer_id) {
  std::string out = "u";
  PutString(&out, user_id);
  PutString(&out, offer_id);
  return out;
}

std::string PendingKey(std::string_view prefix, const ConversionIdentity& identity) {
  std::string out(prefix);
  out += LedgerKey(identity);
  return out;
}

std::string PendingTimeKey(TimestampMs ts, std::string_view pending_key) {
  std::string out = TimeBytes(ts);
  out.append(pending_key.data(), pending_key.size());
  return out;
}

bool ParsePendingTimeKey(std::string_view key, TimestampMs* ts, std::string_view* pending_key) {
  Reader r(key);
  if (!r.Time(ts)) return false;
  *pending_key = r.rest();
  return true;
}

std::string LedgerKey(const ConversionIdentity& identity) {
  std::string out;
  PutString(&out, identity.offer_id);
  PutString(&out, identity.goal);
  PutString(&out, identity.conversion_id);
  return out;
}

absl::StatusOr<ConversionIdentity> ParseLedgerKey(std::string_view key) {
  Reader r(key);
  ConversionIdentity id;
  if (!r.String(&id.offer_id) || !r.String(&id.goal) || !r.String(&id.conversion_id) ||
      !r.empty()) {
    return Corrupt("ledger key");
  }
  return id;
}

std::string EncodeClick(const ClickRecord& click) {
  std::string out(1, static_cast<char>(kValueVersion));
  PutTime(&out, click.event_time_ms);
  PutString(&out, click.affiliate_id);
  PutString(&out, click.offer_id);
  PutString(&out, click.user_id);
  PutStrings(&out, click.sub_ids);
  // Trailing and optional: records written before it read as visible to
  // every conversion (min()).
  if (click.arrival_watermark_ms != std::numeric_limits<TimestampMs>::min()) {
    PutTime(&out, click.arrival_watermark_ms);
  }
  return out;
}

absl::StatusOr<ClickRecord> DecodeClick(std::string_view click_id, std::string_view value) {
  Reader r(value);
  ClickRecord click;
  click.click_id.assign(click_id.data(), click_id.size());
  if (!GetVersion(r) || !r.Time(&click.event_time_ms) || !r.String(&click.affiliate_id) ||
      !r.String(&click.offer_id) || !r.String(&click.user_id) || !GetStrings(r, &click.sub_ids) ||
      (!r.empty() && !r.Time(&click.arrival_watermark_ms)) || !r.empty()) {
    return Corrupt("click");
  }
  return click;
}

std::string EncodePending(const PendingConversion& pending) {
  std::string out(1, static_cast<char>(kValueVersion));
  PutConversion(&out, pending.conversion);
  PutSource(&out, pending.source);
  PutVarint(&out, pending.queued.size());
  for (const QueuedStatus& q : pending.queued) {
    PutConversion(&out, q.conversion);
    PutSource(&out, q.source);
  }
  return out;
}

absl::StatusOr<PendingConversion> DecodePending(std::string_view value) {
  Reader r(value);
  PendingConversion p;
  uint64_t n;
  if (!GetVersion(r) || !GetConversion(r, &p.conversion) || !GetSource(r, &p.source) ||
      !r.Varint(&n) || n > r.rest().size()) {
    return Corrupt("pending");
  }
  p.queued.resize(n);
  for (QueuedStatus& q : p.queued) {
    if (!GetConversion(r, &q.conversion) || !GetSource(r, &q.source)) return Corrupt("pending");
  }
  if (!r.empty()) return Corrupt("pending");
  return p;
}

std::string EncodeLedger(const LedgerEntry& e) {
  std::string out(1, static_cast<char>(kLedgerVersion));
  PutTime(&out, e.conversion_time_ms);
  out.push_back(static_cast<char>(e.status));
  out.push_back(static_cast<char>(e.outcome));
  // One reason byte; its meaning depends on the outcome.
  uint8_t reason = 0;
  if (e.outcome == LedgerOutcome::kRejected) reason = static_cast<uint8_t>(e.reject_reason);
  if (e.outcome == LedgerOutcome::kUnattributed) {
    reason = static_cast<uint8_t>(e.unattributed_reason);
  }
  out.push_back(static_cast<char>(reason));
  PutString(&out, e.detail);
  PutString(&out, e.pending_key);
  PutVarint(&out, e.commissions.size());
  for (const Commission& c : e.commissions) PutCommission(&out, c);
  return out;
}

absl::StatusOr<LedgerEntry> DecodeLedger(const ConversionIdentity& identity,
                                         std::string_view value) {
  Reader r(value);
  LedgerEntry e;
  uint8_t version, outcome, reason;
  uint64_t n;
  if (!r.Byte(&version) || (version != kLedgerVersionLegacy && version != kLedgerVersion) ||
      !r.Time(&e.conversion_time_ms) || !GetStatus(r, &e.status) || !r.Byte(&outcome) ||
      outcome > static_cast<uint8_t>(LedgerOutcome::kRejected) || !r.Byte(&reason) ||
      !r.String(&e.detail) || !r.String(&e.pending_key) || !r.Varint(&n) || n > r.rest().size()) {
    return Corrupt("ledger");
  }
  e.outcome = static_cast<LedgerOutcome>(outcome);
  if (e.outcome == LedgerOutcome::kRejected) {
    if (reason >= kRejectReasonCount) return Corrupt("ledger");
    e.reject_reason = static_cast<RejectReason>(reason);
  }
  if (e.outcome == LedgerOutcome::kUnattributed) {
    if (reason > static_cast<uint8_t>(UnattributedReason::kNoUserClicks)) {
      return Corrupt("ledger");
    }
    e.unattributed_reason = static_cast<UnattributedReason>(reason);
  }
  e.commissions.resize(n);
  for (Commission& c : e.commissions) {
    if (!GetCommission(r, identity, version, &c)) return Corrupt("ledger");
  }
  if (!r.empty()) return Corrupt("ledger");
  return e;
}

std::string EncodeDedupValue(TimestampMs ts) {
  std::string out(1, static_cast<char>(kValueVersion));
  PutTime(&out, ts);
  return out;
}

bool ValueEventTime(std::string_view value, TimestampMs* ts) {
  Reader r(value);
  uint8_t version;
  // Clicks and dedup values are version 1, ledgers 1 or 2: the event time
  // follows the version byte in all of them.
  return r.Byte(&version) && (version == kValueVersion || version == kLedgerVersion) && r.Time(ts);
}

}  // namespace tally::join_internal
