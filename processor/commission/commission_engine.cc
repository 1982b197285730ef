#include "processor/commission/commission_engine.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <utility>

#include "processor/model/sha256.h"

namespace tally {
namespace {

// Quantisation scale of non-integral weights (the header's 2^40): fine
// enough that the share of a click is exact to ~1e-12, small enough that
// total * weight fits in __int128 for any int64 total and many clicks.
constexpr int kWeightBits = 40;
constexpr int64_t kWeightScale = int64_t{1} << kWeightBits;
// Integral weights up to 2^53 are exact in a double and are used as they are.
constexpr double kMaxExactIntegral = 9007199254740992.0;  // 2^53

// The weights as non-negative integers that SplitIntegral can use exactly:
// integral weights as they are, anything else scaled to the largest weight
// and rounded (llround(w / max_w * 2^40)). Negative, NaN and infinite
// weights count as 0 (they violate the contract; a zero credit is the
// harmless reading). If nothing is left, every weight counts as 1 so that
// the parts still add up to the total.
std::vector<int64_t> QuantiseWeights(std::span<const double> weights) {
  std::vector<int64_t> quantised(weights.size(), 0);
  double max_w = 0;
  bool integral = true;
  double sum = 0;
  for (double w : weights) {
    if (!std::isfinite(w) || w <= 0) continue;
    max_w = std::max(max_w, w);
    sum += w;
    if (w != std::floor(w) || w > kMaxExactIntegral) integral = false;
  }
  // The integral path keeps the sum within int64 with room to spare.
  if (integral && sum > 0x1p62) integral = false;
  if (max_w > 0) {
    for (size_t i = 0; i < weights.size(); ++i) {
      const double w = weights[i];
      if (!std::isfinite(w) || w <= 0) continue;
      quantised[i] = integral ? static_cast<int64_t>(w)
                              : std::llround(w / max_w * static_cast<double>(kWeightScale));
    }
  }
  if (std::all_of(quantised.begin(), quantised.end(), [](int64_t q) { return q == 0; })) {
    std::fill(quantised.begin(), quantised.end(), 1);
  }
  return quantised;
}

// Largest remainder on exact integer weights (not all zero): floor shares,
// then one unit each to the largest remainders, ties to the lower index.
std::vector<int64_t> SplitIntegral(int64_t total, std::span<const int64_t> weights) {
  std::vector<int64_t> parts(weights.size(), 0);
  if (weights.empty()) return parts;
  __int128 weight_sum = 0;
  for (int64_t w : weights) weight_sum += w;
  if (weight_sum <= 0) return parts;
  // |INT64_MIN| does not fit in int64: work on the magnitude in __int128.
  const __int128 magnitude = total < 0 ? -static_cast<__int128>(total) : total;
  std::vector<__int128> remainders(weights.size());
  __int128 assigned = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    const __int128 product = magnitude * weights[i];
    const __int128 share = product / weight_sum;
    remainders[i] = product % weight_sum;
    parts[i] = static_cast<int64_t>(share);
    assigned += share;
  }
  auto leftover = static_cast<size_t>(magnitude - assigned);  // < number of weights
  if (leftover > 0) {
    std::vector<size_t> order(weights.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      if (remainders[a] != remainders[b]) return remainders[a] > remainders[b];
      return a < b;
    });
    for (size_t k = 0; k < leftover; ++k) ++parts[order[k]];
  }
  if (total < 0) {
    for (int64_t& part : parts) part = -part;
  }
  return parts;
}

// 2^(-numerator/denominator) for 0 <= numerator < denominator, in Q62 fixed
// point, by the Taylor series of e^(-y ln 2) in integer arithmetic: the
// result depends on no floating point library, so every machine and build
// quantises time_decay weights identically.
__int128 Exp2NegFractionQ62(int64_t numerator, int64_t denominator) {
  constexpr int kBits = 62;
  constexpr __int128 kOne = static_cast<__int128>(1) << kBits;
  // ln 2 in Q62: round(0.693147180559945309417232121458 * 2^62).
  constexpr __int128 kLn2 = static_cast<__int128>(3196577161300663915LL);
  const __int128 y = kLn2 * numerator / denominator;  // < ln 2 in Q62
  __int128 sum = kOne;
  __int128 term = kOne;
  for (int n = 1; n < 40 && term != 0; ++n) {
    term = term * y / kOne / n;
    sum += (n % 2 == 1) ? -term : term;
  }
  return sum;
}

// The time_decay weight of a click `age_ms` older than the newest click, as
// a multiple of 2^-40 (the newest click weighs 2^40, i.e. 1.0).
int64_t TimeDecayUnits(int64_t age_ms, int64_t half_life_ms) {
  const int64_t halvings = age_ms / half_life_ms;
  const int64_t rest = age_ms % half_life_ms;
  const __int128 fraction = Exp2NegFractionQ62(rest, half_life_ms);  // in (0.5, 1] Q62
  // fraction * 2^40 * 2^-halvings, rounded half up: shift by 22 + halvings.
  const int64_t shift = 62 - kWeightBits + halvings;
  if (shift >= 100) return 0;
  return static_cast<int64_t>((fraction + (static_cast<__int128>(1) << (shift - 1))) >> shift);
}

bool ClickBefore(const ClickRecord* a, const ClickRecord* b) {
  if (a->event_time_ms != b->event_time_ms) return a->event_time_ms < b->event_time_ms;
  return a->click_id < b->click_id;  // std::string compares bytes as unsigned char
}

// ModelWeights on clicks ordered by (event_time, click_id).
std::vector<double> WeightsOfSorted(const OfferTerms& terms,
                                    std::span<const ClickRecord* const> clicks) {
  const size_t n = clicks.size();
  std::vector<double> weights(n, 0.0);
  if (n == 0) return weights;
  switch (terms.model) {
    case AttributionModel::kLastClick: {
      // The first click of the latest timestamp: equal times go to the
      // smaller click id, which sorts first.
      size_t winner = n - 1;
      while (winner > 0 && clicks[winner - 1]->event_time_ms == clicks[n - 1]->event_time_ms) {
        --winner;
      }
      weights[winner] = 1;
      break;
    }
    case AttributionModel::kFirstClick:
      weights[0] = 1;
      break;
    case AttributionModel::kPositionBased:
      if (n <= 2) {
        std::fill(weights.begin(), weights.end(), 1.0);
      } else {
        // 40 % / 20 % shared by the middle / 40 % in integers: the ends get
        // 2 (n-2) each, the n-2 middle clicks 1 each, out of 5 (n-2).
        std::fill(weights.begin(), weights.end(), 1.0);
        weights.front() = weights.back() = 2.0 * static_cast<double>(n - 2);
      }
      break;
    case AttributionModel::kTimeDecay: {
      if (terms.half_life_ms <= 0) {  // impossible after validation: linear
        std::fill(weights.begin(), weights.end(), 1.0);
        break;
      }
      // Relative to the newest click rather than to the conversion: the
      // same ratios, but the newest weighs exactly 1 and the weights cannot
      // all underflow to 0 when the conversion comes many half-lives later.
      const TimestampMs newest = clicks[n - 1]->event_time_ms;
      for (size_t i = 0; i < n; ++i) {
        const int64_t age = newest - clicks[i]->event_time_ms;
        weights[i] = static_cast<double>(TimeDecayUnits(age, terms.half_life_ms)) /
                     static_cast<double>(kWeightScale);
      }
      break;
    }
    case AttributionModel::kLinear:
    default:
      std::fill(weights.begin(), weights.end(), 1.0);
      break;
  }
  return weights;
}

std::vector<const ClickRecord*> SortedClicks(std::span<const ClickRecord> clicks) {
  std::vector<const ClickRecord*> sorted;
  sorted.reserve(clicks.size());
  for (const ClickRecord& click : clicks) sorted.push_back(&click);
  std::sort(sorted.begin(), sorted.end(), ClickBefore);
  return sorted;
}

}  // namespace

std::string CommissionId(std::string_view offer_id, std::string_view goal,
                         std::string_view conversion_id, std::string_view click_id) {
  std::string bytes;
  bytes.reserve(4 * 4 + offer_id.size() + goal.size() + conversion_id.size() + click_id.size());
  for (std::string_view field : {offer_id, goal, conversion_id, click_id}) {
    // Fields are at most 64 bytes (codec limits); the 4-byte prefix is the
    // documented encoding, not a bound.
    const auto size = static_cast<uint32_t>(field.size());
    for (int shift = 24; shift >= 0; shift -= 8) {
      bytes.push_back(static_cast<char>((size >> shift) & 0xFF));
    }
    bytes.append(field);
  }
  return Sha256Hex(bytes).substr(0, 32);
}

int64_t DivideRoundHalfAwayFromZero(__int128 numerator, int64_t denominator) {
  const __int128 quotient = numerator / denominator;  // truncates toward zero
  const __int128 remainder = numerator % denominator;
  const __int128 twice = remainder < 0 ? -2 * remainder : 2 * remainder;
  if (twice >= denominator) return static_cast<int64_t>(quotient + (numerator < 0 ? -1 : 1));
  return static_cast<int64_t>(quotient);
}

namespace {

// The money of `payout` (ConversionPayout's rules) for `conversion`.
Money PayoutAmount(const std::optional<Payout>& payout, const Conversion& conversion) {
  if (!payout) return Money{0, conversion.amount.currency};
  if (payout->kind == Payout::Kind::kCpa) return payout->cpa;
  return Money{DivideRoundHalfAwayFromZero(
                   static_cast<__int128>(conversion.amount.minor) * payout->revshare_bps, 10'000),
               conversion.amount.currency};
}

// The basis fields of the commissions of one conversion paid by `payout`.
void SetBasis(const OfferTerms& terms, const Conversion& conversion,
              const std::optional<Payout>& payout, bool override_applied, Commission* c) {
  c->base = conversion.amount;
  c->override_applied = override_applied;
  c->offer_version = terms.version;
  if (!payout) {  // a goal the offer does not pay: a CPA of 0
    c->basis = PayoutBasis::kCpa;
    c->rate = 0;
  } else if (payout->kind == Payout::Kind::kCpa) {
    c->basis = PayoutBasis::kCpa;
    c->rate = payout->cpa.minor;
  } else {
    c->basis = PayoutBasis::kRevshare;
    c->rate = payout->revshare_bps;
  }
}

}  // namespace

Money ConversionPayout(const OfferTerms& terms, const Conversion& conversion,
                       std::string_view affiliate_id) {
  return PayoutAmount(terms.PayoutFor(conversion.goal, affiliate_id), conversion);
}

std::vector<int64_t> SplitLargestRemainder(int64_t total, std::span<const double> weights) {
  const std::vector<int64_t> quantised = QuantiseWeights(weights);
  return SplitIntegral(total, quantised);
}

std::vector<double> ModelWeights(const OfferTerms& terms, std::span<const ClickRecord> clicks,
                                 TimestampMs /*conversion_time_ms*/) {
  std::vector<const ClickRecord*> pointers;
  pointers.reserve(clicks.size());
  for (const ClickRecord& click : clicks) pointers.push_back(&click);
  return WeightsOfSorted(terms, pointers);
}

std::vector<Commission> Attribute(const OfferTerms& terms, const Conversion& conversion,
                                  std::span<const ClickRecord> clicks) {
  std::vector<Commission> out;
  if (clicks.empty()) return out;
  const std::vector<const ClickRecord*> sorted = SortedClicks(clicks);
  const std::vector<int64_t> weights = QuantiseWeights(WeightsOfSorted(terms, sorted));

  // Credited = weight > 0 after quantisation, so that the set of clicks that
  // get a commission is exactly the set the split can give money to.
  __int128 weight_sum = 0;
  int32_t credited = 0;
  size_t single = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    if (weights[i] <= 0) continue;
    weight_sum += weights[i];
    ++credited;
    single = i;
  }

  // One credited affiliate: its override, if any, applies in full. Several:
  // the offer's own payout, so that affiliates' individual deals never
  // change what the other affiliates get.
  // Both arms string_view: with a std::string and "" the conditional would
  // be a temporary std::string, destroyed before payee is used.
  const std::string_view payee =
      credited == 1 ? std::string_view(sorted[single]->affiliate_id) : std::string_view();
  const std::optional<Payout> payout = terms.PayoutFor(conversion.goal, payee);
  const Money total = PayoutAmount(payout, conversion);
  std::vector<int64_t> parts;
  if (credited == 1) {
    parts.assign(weights.size(), 0);
    parts[single] = total.minor;
  } else {
    parts = SplitIntegral(total.minor, weights);
  }
  const bool override_applied = terms.HasOverride(conversion.goal, payee);

  out.reserve(static_cast<size_t>(credited));
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (weights[i] <= 0) continue;
    const ClickRecord& click = *sorted[i];
    Commission c;
    c.commission_id = CommissionId(conversion.offer_id, conversion.goal, conversion.conversion_id,
                                   click.click_id);
    c.conversion_id = conversion.conversion_id;
    c.offer_id = conversion.offer_id;
    c.goal = conversion.goal;
    c.click_id = click.click_id;
    c.affiliate_id = click.affiliate_id;
    c.sub_ids = click.sub_ids;
    c.click_time_ms = click.event_time_ms;
    c.conversion_time_ms = conversion.event_time_ms;
    c.payout = Money{parts[i], total.currency};
    c.status = conversion.status;
    c.model = terms.model;
    c.credit_ppm = static_cast<int32_t>(DivideRoundHalfAwayFromZero(
        static_cast<__int128>(weights[i]) * 1'000'000, static_cast<int64_t>(weight_sum)));
    c.click_count = credited;
    SetBasis(terms, conversion, payout, override_applied, &c);
    out.push_back(std::move(c));
  }
  return out;
}

std::vector<Commission> Reverse(std::span<const Commission> emitted) {
  std::vector<Commission> out(emitted.begin(), emitted.end());
  for (Commission& c : out) {
    c.payout.minor = -c.payout.minor;
    c.status = ConversionStatus::kReversed;
  }
  return out;
}

}  // namespace tally
