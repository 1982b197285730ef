// The commercial terms of each offer: how long a click can earn a
// conversion, which attribution model shares the credit, what each goal
// pays, and the click-to-conversion time bounds of the fraud filter. Loaded
// once at start-up from `offers.file` (YAML, see deploy/config/offers.yaml),
// validated with errors that name the offending key, then immutable and
// shared read-only by every thread.
#ifndef TALLY_PROCESSOR_OFFERS_OFFERS_H_
#define TALLY_PROCESSOR_OFFERS_OFFERS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "processor/model/events.h"

namespace tally {

// What one goal of an offer pays. Exactly one of the two forms.
struct Payout {
  enum class Kind : uint8_t { kCpa = 0, kRevshare = 1 };
  Kind kind = Kind::kCpa;
  Money cpa;                 // kCpa: fixed amount in minor units + currency
  int32_t revshare_bps = 0;  // kRevshare: basis points of the conversion amount
                             // (0..10000), paid in the conversion's currency

  friend bool operator==(const Payout&, const Payout&) = default;
};

struct OfferTerms {
  std::string offer_id;
  // A click can earn a conversion when 0 <= conversion.ts - click.ts <= window.
  int64_t attribution_window_ms = 30LL * 24 * 3600 * 1000;
  AttributionModel model = AttributionModel::kLastClick;
  int64_t half_life_ms = 7LL * 24 * 3600 * 1000;  // time_decay only
  // Click-to-install/conversion time bounds (fraud filter); 0 = no bound.
  int64_t ctit_min_ms = 0;
  int64_t ctit_max_ms = 0;
  // Payout per goal ("sale", "lead", ...). A goal not listed pays nothing
  // (a zero-amount commission is still emitted so the credit is visible).
  absl::flat_hash_map<std::string, Payout> payouts;
  // Per-affiliate overrides, per goal: affiliate_id -> goal -> payout. They
  // apply only when a single click is credited (multi-touch splits divide
  // the offer's own payout).
  absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, Payout>> affiliate_payouts;
  // OfferTermsVersion of these terms, set by the catalogue when it loads
  // them (computed once: every commission carries it as offer_version).
  // Terms built by hand have "" unless the caller sets it.
  std::string version;

  // The payout of `goal`, with the override of `affiliate_id` if any
  // (pass an empty affiliate_id for the offer's own payout).
  std::optional<Payout> PayoutFor(std::string_view goal, std::string_view affiliate_id) const;
  // Whether `affiliate_id` has its own payout for `goal`.
  bool HasOverride(std::string_view goal, std::string_view affiliate_id) const;
};

// The canonical encoding of the terms that decide a commission (everything
// but offer_id and version), as documented in schemas/README.md
// ("offer_version"): one line per item, each ending in "\n":
//   tally.offer_terms.v1
//   attribution_window_ms=<int>   model=<wire name>   half_life_ms=<int>
//   ctit_min_ms=<int>             ctit_max_ms=<int>
//   payout <goal> cpa <amount> <currency> | payout <goal> revshare_bps <bps>
//     (one per goal, goals in byte order)
//   override <affiliate_id> <goal> cpa ... | ... revshare_bps <bps>
//     (one per override, by affiliate id, then goal, in byte order)
// Integers in decimal without leading zeros. Ids, goals and currency codes
// cannot contain a space or a newline (the loader's rules), so the text is
// unambiguous. Two offers with the same terms have the same version.
std::string CanonicalOfferTerms(const OfferTerms& terms);
// Lowercase hex SHA-256 of CanonicalOfferTerms: the commission's
// offer_version, which any consumer can recompute from the offers file.
std::string OfferTermsVersion(const OfferTerms& terms);

class OffersCatalog {
 public:
  // Parses and validates a YAML document (see deploy/config/offers.yaml).
  // Errors name the key path, e.g. "offers.file: offers[2].payouts.sale:
  // revshare_bps must be 0..10000, got 12000".
  static absl::StatusOr<std::shared_ptr<const OffersCatalog>> FromYaml(std::string_view yaml,
                                                                       std::string_view origin);
  static absl::StatusOr<std::shared_ptr<const OffersCatalog>> Load(const std::string& path);

  // The terms of an offer, or the `defaults` terms when the offer is not
  // listed (their offer_id is empty: a shared object cannot carry the
  // caller's id, so callers take the offer id from the event); nullptr when
  // neither exists.
  const OfferTerms* Find(std::string_view offer_id) const;
  // The longest attribution window of any offer, the defaults included
  // (unlisted offers use them); 0 when there are no terms at all. The dedup
  // horizon and the state TTL must cover it.
  int64_t max_attribution_window_ms() const { return max_window_ms_; }
  size_t size() const { return offers_.size(); }

 private:
  absl::flat_hash_map<std::string, OfferTerms> offers_;
  std::optional<OfferTerms> default_;
  int64_t max_window_ms_ = 0;
};

}  // namespace tally

#endif  // TALLY_PROCESSOR_OFFERS_OFFERS_H_
