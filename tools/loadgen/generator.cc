#include "tools/loadgen/generator.h"

#include <cmath>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tools/loadgen/defects.h"

namespace tally::loadgen {
namespace {

constexpr int64_t kSecond = 1000;
constexpr int64_t kMinute = 60 * kSecond;
constexpr int64_t kHour = 60 * kMinute;
constexpr int64_t kDay = 24 * kHour;

// Flood bursts: more than the processor's default of 20 clicks per IP per
// one-minute window, packed into at most 30 s so that most bursts trip the
// rule even when they straddle a window boundary.
constexpr int64_t kBurstMin = 30;
constexpr int64_t kBurstMax = 60;
constexpr int64_t kBurstMaxGapMs = 500;

// Re-sends follow the original within this many messages: trackers retry
// promptly, and staying close keeps a re-sent click within the processor's
// click lateness of its partition's watermark.
constexpr uint64_t kDuplicateMaxDistance = 20;

// Share of bad messages that are conversions (the rest are clicks): enough
// that every conversion defect shows up in a 100k-message run.
constexpr double kBadConversionShare = 0.35;

constexpr std::string_view kBrowserAgents[] = {
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.6099.43 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.61",
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/16.6 Mobile/15E148 Safari/604.1",
};

// Each contains one of the substrings listed in tools/loadgen/README.md
// ("Googlebot", "python-requests", "HeadlessChrome", "curl/", "bingbot",
// "AhrefsBot", "Scrapy").
constexpr std::string_view kBotAgents[] = {
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "python-requests/2.31.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/120.0.6099.109 Safari/537.36",
    "curl/8.4.0",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Scrapy/2.11.0 (+https://scrapy.org)",
};

constexpr std::string_view kCountries[] = {"DE", "US", "GB", "FR", "NL", "ES", "IT",
                                           "PL", "SE", "JP", "BR", "CA", "AT", "CH"};
constexpr std::string_view kReferrers[] = {
    "https://blog.example/post",       "https://news.example.org/deals",
    "https://www.example.com/compare", "https://forum.example.net/t/123",
    "https://social.example/share",    "https://coupons.example/summer",
};
constexpr std::string_view kSubIds[] = {"summer", "banner2", "email", "retarget",
                                        "video",  "push",    "seo",   "brand"};

struct CurrencyWeight {
  std::string_view code;
  int weight;
};
constexpr CurrencyWeight kCurrencies[] = {{"EUR", 45}, {"USD", 30}, {"GBP", 10},
                                          {"JPY", 5},  {"SEK", 5},  {"CHF", 5}};

template <typename T, size_t N>
const T& PickFrom(Rng& rng, const T (&items)[N]) {
  return items[rng.Below(N)];
}

std::string Hex16(uint64_t v) { return absl::StrFormat("%016x", v); }

}  // namespace

const char* TagName(int bit) {
  static constexpr const char* kNames[kTagCount] = {
      "bot",          "blocklisted_ip", "flood",        "duplicate",
      "out_of_order", "status_change",  "unknown_order"};
  return (bit >= 0 && bit < kTagCount) ? kNames[bit] : "?";
}

absl::StatusOr<std::unique_ptr<TrafficGenerator>> TrafficGenerator::Create(
    const LoadOptions& options, std::unique_ptr<PayloadEncoder> encoder) {
  if (auto s = options.Validate(); !s.ok()) return s;
  if (encoder == nullptr) return absl::InvalidArgumentError("no payload encoder");
  if (encoder->format() != options.format) {
    return absl::InvalidArgumentError("encoder format differs from options.format");
  }
  return std::unique_ptr<TrafficGenerator>(new TrafficGenerator(options, std::move(encoder)));
}

namespace {

uint64_t ClicksToGenerate(const LoadOptions& o) {
  if (o.messages == 0) return o.clicks;
  // Messages per valid click, then a margin so the cap, not the supply of
  // clicks, ends the stream.
  const double per_click =
      (1.0 + o.conversion_rate * (1.0 + o.status_change_share + o.unknown_order_share)) /
      (1.0 - o.bad_share) / (1.0 - o.duplicate_rate);
  return static_cast<uint64_t>(static_cast<double>(o.messages) / per_click * 1.1) + 1000;
}

}  // namespace

TrafficGenerator::TrafficGenerator(const LoadOptions& options,
                                   std::unique_ptr<PayloadEncoder> encoder)
    : options_(options),
      encoder_(std::move(encoder)),
      rng_(options.seed),
      affiliates_(options.affiliates, options.zipf_exponent),
      offers_(options.offers, options.zipf_exponent),
      users_(options.EffectiveUsers()),
      id_salt_(Mix64(options.seed ^ 0x7a11e7a11e7a11e7ULL)),
      clicks_to_generate_(ClicksToGenerate(options)),
      clock_ms_(options.start_time_ms) {}

bool TrafficGenerator::Next(GeneratedMessage* out) {
  if (options_.messages > 0 && next_seq_ >= options_.messages) return false;
  const bool due = !duplicates_.empty() && duplicates_.top().due_seq <= next_seq_;
  if (due || !NextOriginal(out)) {
    if (duplicates_.empty()) return false;
    // priority_queue::top() is const; the element is popped right away.
    *out = std::move(const_cast<PendingDuplicate&>(duplicates_.top()).message);
    duplicates_.pop();
  } else {
    // An original: maybe re-send it later. p = d / (1 - d) makes
    // duplicates a share d of all messages.
    const double p = options_.duplicate_rate / (1.0 - options_.duplicate_rate);
    if (rng_.Chance(p)) {
      out->truth.has_duplicate = true;
      PendingDuplicate dup;
      dup.due_seq = next_seq_ + 1 + rng_.Below(kDuplicateMaxDistance);
      dup.order = schedule_order_++;
      dup.message = *out;
      dup.message.truth.has_duplicate = false;
      dup.message.truth.dup_of_seq = next_seq_;
      dup.message.truth.tags |= kTagDuplicate;
      duplicates_.push(std::move(dup));
    }
  }
  out->truth.seq = next_seq_++;
  Account(*out);
  return true;
}

bool TrafficGenerator::NextOriginal(GeneratedMessage* out) {
  const bool clicks_left = clicks_generated_ < clicks_to_generate_;
  if (ready_.empty() && scheduled_.empty() && !clicks_left) return false;
  if (rng_.Chance(options_.bad_share)) {
    MakeBad(out);
    return true;
  }
  if (ready_.empty()) {
    if (!scheduled_.empty() &&
        (!clicks_left ||
         scheduled_.top().ts + static_cast<int64_t>(options_.conversion_lag_ms) <= clock_ms_)) {
      Scheduled s = std::move(const_cast<Scheduled&>(scheduled_.top()));
      scheduled_.pop();
      EmitScheduled(std::move(s), out);
      return true;
    }
    GenerateClick();
  }
  *out = std::move(ready_.front());
  ready_.pop_front();
  return true;
}

std::string TrafficGenerator::NewClickId() {
  return "c-" + Hex16(Mix64(id_salt_ + click_counter_++));
}

std::string TrafficGenerator::NewConversionId() {
  return "ord-" + Hex16(Mix64((id_salt_ ^ 0x5bd1e9955bd1e995ULL) + conversion_counter_++));
}

ClickSpec TrafficGenerator::MakeClickSpec(uint64_t user, int64_t ts) {
  ClickSpec c;
  c.click_id = NewClickId();
  c.ts = ts;
  c.affiliate_id = absl::StrCat("aff-", affiliates_.Sample(rng_));
  c.offer_id = absl::StrCat("off-", offers_.Sample(rng_));
  c.user_id = absl::StrCat("u-", user);
  // A user's device: stable across visits, derived from the user index.
  const uint64_t h = Mix64(id_salt_ ^ Mix64(user));
  if (h % 10 == 0) {
    // 2a02::/16 is a real allocation, far from the blocklisted 2001:db8:bad::/48.
    c.ip = absl::StrFormat("2a02:%x:%x:%x::%x", (h >> 8) & 0xffff, (h >> 24) & 0xffff,
                           (h >> 40) & 0xffff, (h >> 4) & 0xfff);
  } else {
    // First octet 11..99: clear of 10/8, 127/8 and the blocklisted 198.51.100.0/24.
    c.ip = absl::StrFormat("%d.%d.%d.%d", 11 + (h >> 8) % 89, (h >> 16) & 0xff, (h >> 24) & 0xff,
                           1 + (h >> 32) % 254);
  }
  c.user_agent = std::string(kBrowserAgents[(h >> 40) % std::size(kBrowserAgents)]);
  if ((h >> 56) % 10 != 0) c.country = std::string(kCountries[(h >> 48) % std::size(kCountries)]);
  if (rng_.Chance(0.7)) c.referrer = std::string(PickFrom(rng_, kReferrers));
  const uint64_t subs = rng_.Below(4);
  for (uint64_t i = 0; i < subs; ++i) c.sub_ids.emplace_back(PickFrom(rng_, kSubIds));
  return c;
}

void TrafficGenerator::ChooseAmount(ConversionSpec* spec) {
  if (rng_.Chance(0.15)) {
    spec->goal = "lead";
    spec->amount = 0;
    spec->currency = rng_.Chance(0.5) ? "EUR" : "USD";
    return;
  }
  spec->goal = "sale";
  int64_t w = static_cast<int64_t>(rng_.Below(100));
  for (const auto& c : kCurrencies) {
    if (w < c.weight) {
      spec->currency = std::string(c.code);
      break;
    }
    w -= c.weight;
  }
  // Minor units: JPY has none, so its amounts are about 100x in count.
  const bool yen = spec->currency == "JPY";
  spec->amount = std::llround(rng_.LogUniform(yen ? 700 : 500, yen ? 75'000 : 50'000));
}

void TrafficGenerator::GenerateClick() {
  const double f = options_.flood_share;
  const double mean_burst = static_cast<double>(kBurstMin + kBurstMax) / 2.0;
  uint32_t tags = 0;
  if (burst_left_ == 0 && f > 0 && f < 1 && rng_.Chance(f / (mean_burst * (1.0 - f) + f))) {
    burst_left_ = static_cast<uint64_t>(rng_.Between(kBurstMin, kBurstMax));
    const uint64_t h = rng_.Next();
    // 185.0.0.0/8: outside the users' 11..99 first octets.
    burst_ip_ =
        absl::StrFormat("185.%d.%d.%d", (h >> 8) & 0xff, (h >> 16) & 0xff, 1 + (h >> 24) % 254);
    burst_gap_ms_ = static_cast<uint64_t>(rng_.Between(1, kBurstMaxGapMs));
  }
  const uint64_t user = rng_.Below(users_);
  // Event time up to click_disorder_ms behind the clock: out of order
  // within that bound, as trackers with several nodes deliver them.
  const int64_t disorder = options_.click_disorder_ms == 0
                               ? 0
                               : static_cast<int64_t>(rng_.Below(options_.click_disorder_ms + 1));
  ClickSpec click = MakeClickSpec(user, clock_ms_ - disorder);
  if (burst_left_ > 0) {
    --burst_left_;
    tags |= kTagFlood;
    click.ip = burst_ip_;
  } else {
    const double rest = 1.0 - f;
    const double u = rng_.Unit() * rest;
    if (u < options_.bot_share) {
      tags |= kTagBot;
      click.user_agent = std::string(PickFrom(rng_, kBotAgents));
    } else if (u < options_.bot_share + options_.blocklisted_ip_share) {
      tags |= kTagBlocklistedIp;
      const uint64_t h = rng_.Next();
      click.ip = (h & 1) ? absl::StrFormat("198.51.100.%d", 1 + (h >> 8) % 254)
                         : absl::StrFormat("2001:db8:bad:%x::%x", (h >> 8) & 0xffff,
                                           1 + (h >> 24) % 0xfffe);
    }
  }
  ++clicks_generated_;

  GeneratedMessage msg;
  msg.topic = Topic::kClicks;
  msg.key = options_.key_mode == KeyMode::kClickId ? click.click_id : click.user_id;
  encoder_->Encode(click, &msg.value);
  MessageTruth& t = msg.truth;
  t.topic = Topic::kClicks;
  t.id = click.click_id;
  t.tags = tags;
  t.click_id = click.click_id;
  t.offer_id = click.offer_id;
  t.affiliate_id = click.affiliate_id;
  t.user_id = click.user_id;
  t.ip = click.ip;
  t.ts = click.ts;
  t.click_ts = click.ts;

  // Next click time: a Poisson process, or the burst's tight spacing.
  clock_ms_ += burst_left_ > 0
                   ? rng_.Between(0, static_cast<int64_t>(burst_gap_ms_))
                   : std::llround(rng_.Exponential(1000.0 / options_.event_clicks_per_second));
  if (options_.quiet_gap_share > 0 && rng_.Chance(options_.quiet_gap_share)) {
    clock_ms_ += static_cast<int64_t>(options_.quiet_gap_ms);
  }

  if (!rng_.Chance(options_.conversion_rate)) {
    ready_.push_back(std::move(msg));
    return;
  }
  ConversionSpec conv;
  conv.conversion_id = NewConversionId();
  // 30 s .. 1 h for most, up to 2 days for a long tail; log-uniform within.
  const double delay =
      rng_.Chance(0.8) ? rng_.LogUniform(30 * kSecond, kHour) : rng_.LogUniform(kHour, 2 * kDay);
  conv.ts = click.ts + std::max<int64_t>(30 * kSecond, std::llround(delay));
  conv.offer_id = click.offer_id;
  if (options_.key_mode == KeyMode::kClickId) {
    conv.click_id = click.click_id;
    if (rng_.Chance(0.5)) conv.user_id = click.user_id;
  } else {
    conv.user_id = click.user_id;
  }
  ChooseAmount(&conv);
  conv.status = rng_.Chance(0.6) ? "approved" : "pending";

  MessageTruth ct;
  ct.topic = Topic::kConversions;
  ct.click_id = click.click_id;
  ct.affiliate_id = click.affiliate_id;
  ct.click_ts = click.ts;
  ct.ip = click.ip;

  if (rng_.Chance(options_.status_change_share)) {
    Scheduled s;
    s.spec = conv;
    s.spec.status = conv.status == "pending" ? "approved" : "reversed";
    s.spec.ts = conv.ts + std::llround(rng_.LogUniform(10 * kMinute, 3 * kDay));
    s.ts = s.spec.ts;
    s.order = schedule_order_++;
    s.truth = ct;
    s.truth.tags = kTagStatusChange;
    s.truth.previous_status = conv.status;
    scheduled_.push(std::move(s));
  }
  if (rng_.Chance(options_.unknown_order_share)) {
    // A reversal of an order the advertiser never reported: only a reversal
    // is unambiguous, a first "approved" would simply be a new conversion.
    Scheduled s;
    s.spec = conv;
    s.spec.conversion_id = NewConversionId();
    s.spec.status = "reversed";
    s.spec.ts = conv.ts + std::llround(rng_.LogUniform(10 * kMinute, kDay));
    s.ts = s.spec.ts;
    s.order = schedule_order_++;
    s.truth = ct;
    s.truth.tags = kTagStatusChange | kTagUnknownOrder;
    scheduled_.push(std::move(s));
  }
  if (rng_.Chance(options_.out_of_order_share)) {
    GeneratedMessage early;
    ct.tags = kTagOutOfOrder;
    FillConversionMessage(conv, ct, &early);
    ready_.push_back(std::move(early));
    ready_.push_back(std::move(msg));
  } else {
    ready_.push_back(std::move(msg));
    Scheduled s;
    s.ts = conv.ts;
    s.order = schedule_order_++;
    s.spec = std::move(conv);
    s.truth = std::move(ct);
    scheduled_.push(std::move(s));
  }
}

void TrafficGenerator::FillConversionMessage(const ConversionSpec& spec, MessageTruth truth,
                                             GeneratedMessage* out) {
  out->topic = Topic::kConversions;
  // The attribution key; in click_id mode that of the generating click,
  // which the payload carries.
  out->key = options_.key_mode == KeyMode::kClickId ? truth.click_id : spec.user_id;
  encoder_->Encode(spec, &out->value);
  truth.topic = Topic::kConversions;
  truth.id = spec.conversion_id;
  truth.conversion_id = spec.conversion_id;
  truth.offer_id = spec.offer_id;
  truth.user_id = spec.user_id;
  truth.goal = spec.goal;
  truth.currency = spec.currency;
  truth.status = spec.status;
  truth.amount = spec.amount;
  truth.ts = spec.ts;
  out->truth = std::move(truth);
}

void TrafficGenerator::EmitScheduled(Scheduled s, GeneratedMessage* out) {
  FillConversionMessage(s.spec, std::move(s.truth), out);
}

void TrafficGenerator::MakeBad(GeneratedMessage* out) {
  // The template is a complete valid event (every optional field set) with
  // fresh ids; it never becomes a real click or conversion.
  ClickSpec click = MakeClickSpec(rng_.Below(users_), clock_ms_);
  if (click.referrer.empty()) click.referrer = std::string(kReferrers[0]);
  if (click.sub_ids.empty()) click.sub_ids.emplace_back(kSubIds[0]);
  if (click.country.empty()) click.country = "DE";
  MessageTruth t;
  t.click_id = click.click_id;
  t.offer_id = click.offer_id;
  t.affiliate_id = click.affiliate_id;
  t.user_id = click.user_id;
  t.ip = click.ip;
  t.click_ts = click.ts;
  BadPayload bad;
  if (!rng_.Chance(kBadConversionShare)) {
    bad = MakeBadClick(click, *encoder_, rng_);
    out->topic = Topic::kClicks;
    out->key = options_.key_mode == KeyMode::kClickId ? click.click_id : click.user_id;
    t.ts = click.ts;
    if (bad.id_intact) t.id = click.click_id;
  } else {
    ConversionSpec conv;
    conv.conversion_id = NewConversionId();
    conv.ts = click.ts + 5 * kMinute;
    conv.offer_id = click.offer_id;
    if (options_.key_mode == KeyMode::kClickId) {
      conv.click_id = click.click_id;
      if (rng_.Chance(0.5)) conv.user_id = click.user_id;
    } else {
      conv.user_id = click.user_id;
    }
    ChooseAmount(&conv);
    conv.status = "approved";
    bad = MakeBadConversion(conv, *encoder_, rng_);
    out->topic = Topic::kConversions;
    out->key = options_.key_mode == KeyMode::kClickId ? conv.click_id : conv.user_id;
    t.conversion_id = conv.conversion_id;
    t.user_id = conv.user_id;
    t.goal = conv.goal;
    t.currency = conv.currency;
    t.status = conv.status;
    t.amount = conv.amount;
    t.ts = conv.ts;
    if (bad.id_intact) t.id = conv.conversion_id;
  }
  t.topic = out->topic;
  t.decode = std::move(bad.reason);
  t.defect = std::move(bad.defect);
  out->value = std::move(bad.value);
  out->truth = std::move(t);
}

void TrafficGenerator::Account(const GeneratedMessage& m) {
  GenerationStats& s = stats_;
  ++s.messages;
  s.bytes += m.key.size() + m.value.size();
  const MessageTruth& t = m.truth;
  if (m.topic == Topic::kClicks) {
    ++s.click_messages;
  } else {
    ++s.conversion_messages;
  }
  for (int bit = 0; bit < kTagCount; ++bit) {
    if (t.tags & (1u << bit)) ++s.tag_counts[bit];
  }
  if (t.dup_of_seq.has_value()) {
    ++s.duplicates;
    return;
  }
  if (t.decode != "ok") {
    ++s.bad;
    ++s.bad_by_reason[t.decode];
    return;
  }
  if (m.topic == Topic::kClicks) {
    ++s.valid_clicks;
  } else if (t.tags & kTagStatusChange) {
    ++s.status_changes;
  } else {
    ++s.valid_conversions;
  }
}

}  // namespace tally::loadgen
