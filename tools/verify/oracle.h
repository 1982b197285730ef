// The attribution oracle: what a correct Tally processor must write to its
// output topics for a given input, computed by a deliberately simple,
// single-threaded simulation over in-memory maps. It shares no code with the
// processor's pipeline (dedup, fraud filter, joiner, state store) so that a
// bug there cannot hide itself by being reproduced here; it reuses only the
// unit-tested pure parts that define the money: OffersCatalog for the terms
// and tally::Attribute for the commissions. The fraud rule MATCHING (bot
// patterns, CIDRs) is passed in as predicates (main.cc wires FraudRules).
//
// Pure: no Kafka, no files, no clock. Input is every message of the input
// topics per partition in offset order, already decoded.
//
// Semantics (the processor implements exactly these):
//  - Clicks, per partition in offset order: undecodable -> rejected with the
//    codec's reason; a repeated click_id -> duplicate_click (first occurrence
//    wins; partitions in ascending order for the never-generated case of one
//    click_id on two partitions); then bot_user_agent, ip_blocklisted,
//    ip_click_flood, in that order. The rest are accepted.
//  - Flood: WHICH clicks of an (ip, floor(ts / window)) group exceed the
//    limit depends on how the processor interleaved its partitions, so it is
//    taken from Observations; the oracle checks only that exactly
//    max(0, n - limit) clicks of every group were flood-rejected.
//  - Conversions, per partition in offset order, against the clicks of the
//    partition with the same number (same key, same partition): dedup by
//    (offer, goal, conversion_id, status); a known identity follows its
//    first message's fate (commissions re-emitted with the new status,
//    negated for `reversed`; or the same unattributed / reject reason; or
//    pending); an unknown identity is rejected unknown_conversion if
//    `reversed`, invalid_value if its offer has no terms, else resolved
//    against the clicks partition (see Resolve in oracle.cc).
//  - The clicks and conversions partitions of one number are consumed
//    concurrently, so the oracle does not model time but positions: the
//    click watermark after position i is W(i) = (max ts of every decodable
//    click at positions <= i) - max_click_lateness; a click at position p
//    ARRIVED at W(p - 1). Horizon(t) is the first position whose watermark
//    exceeds t: the clicks at positions <= Horizon(t) arrived before the
//    watermark passed t. No horizon (the input ended first) and no
//    decision yet: the conversion is pending.
//  - Visible to a conversion: clicks at positions <= Horizon(ts + grace)
//    and not older than ts - click_retention (what the processor's store
//    keeps for it).
//  - click_id mode: the named click, if visible, decides alone (another
//    offer: click_not_found; outside the window: outside_window); not
//    visible: click_not_found once the grace has passed, else pending.
//  - user_id mode: once Horizon(ts) exists, the candidates are the in-window
//    clicks at positions <= Horizon(ts), all of them; without any, once the
//    grace has passed, the in-window clicks at positions <= Horizon(ts +
//    grace), all of them; without any, outside_window if the user has a
//    visible click on the offer, else no_user_clicks.
//    (accept_observed_candidate_prefix relaxes this for processors that
//    evaluate with the clicks they happen to hold: any first-k prefix
//    observed on the topic is then accepted.)
#ifndef TALLY_TOOLS_VERIFY_ORACLE_H_
#define TALLY_TOOLS_VERIFY_ORACLE_H_

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "processor/model/events.h"
#include "processor/offers/offers.h"
#include "tools/verify/message_ref.h"

namespace tally::verify {

enum class AttributionKey : uint8_t { kClickId, kUserId };

// One consumed input message. `invalid` is the codec's verdict; when it is
// set the event is meaningless.
struct ClickInput {
  int64_t offset = -1;
  std::optional<RejectReason> invalid;
  Click click;
};
struct ConversionInput {
  int64_t offset = -1;
  std::optional<RejectReason> invalid;
  Conversion conversion;
};

struct OracleInput {
  std::string clicks_topic = "clicks";
  std::string conversions_topic = "conversions";
  // partition -> every message of that partition, in offset order.
  std::map<int32_t, std::vector<ClickInput>> clicks;
  std::map<int32_t, std::vector<ConversionInput>> conversions;
};

struct OracleRules {
  AttributionKey key = AttributionKey::kClickId;
  int64_t max_clicks_per_ip = 20;
  int64_t flood_window_ms = 60'000;
  int64_t pending_grace_ms = 10 * 60'000;
  int64_t max_click_lateness_ms = 0;  // processing.max_click_lateness
  // The processor's click retention: the longest attribution window +
  // pending_grace.
  int64_t click_retention_ms = std::numeric_limits<int64_t>::max() / 4;
  const OffersCatalog* offers = nullptr;  // required
  std::function<bool(std::string_view user_agent)> is_bot_user_agent;
  std::function<bool(const IpAddress& ip)> is_blocklisted;
  // user_id mode: accept the observed candidate prefix (see above). False:
  // always expect all candidates, i.e. a processor that waits until it has
  // every click up to the conversion's time.
  bool accept_observed_candidate_prefix = false;
};

// (offer_id, goal, conversion_id).
using ConversionIdentity = std::tuple<std::string, std::string, std::string>;
ConversionIdentity IdentityOf(const Conversion& conversion);

// What the processor was seen to do where a correct processor has a choice.
struct Observations {
  // Clicks on `rejected` with reason ip_click_flood.
  absl::flat_hash_set<MessageRef> flood_rejected;
  // Every (source message, reason) on `rejected` (the last one if several).
  absl::flat_hash_map<MessageRef, RejectReason> rejected;
  // The commission ids on `commissions`, per conversion identity.
  std::map<ConversionIdentity, std::set<std::string>> commission_ids;
};

struct ExpectedRejection {
  MessageRef ref;
  RejectReason reason;
};
struct ExpectedUnattributed {
  MessageRef ref;
  Conversion conversion;  // this message's conversion (its own status)
  UnattributedReason reason;
};
struct ExpectedCommission {
  MessageRef source;  // the conversion message that causes it
  Commission commission;
};

struct OracleStats {
  uint64_t clicks = 0;  // input messages
  uint64_t conversions = 0;
  uint64_t accepted_clicks = 0;
  uint64_t attributed_messages = 0;  // conversion messages that emit commissions
  // Conversions (identities) still waiting at the end; OracleOutput::pending
  // also holds the status changes queued behind them.
  uint64_t pending_conversions = 0;
  uint64_t flood_groups = 0;  // (ip, window) groups that reached the flood rule
  uint64_t flood_groups_over_limit = 0;
  // Conversions whose outcome depends on the interleaving (user_id mode,
  // candidate prefixes with different outputs), and how many of them were
  // decided by the observed output rather than by "all candidates".
  uint64_t interleaving_dependent = 0;
  uint64_t decided_by_observation = 0;
};

struct OracleOutput {
  std::vector<ExpectedRejection> rejected;
  std::vector<ExpectedUnattributed> unattributed;
  // In emission order: for one commission_id, the order its statuses must
  // have on the topic.
  std::vector<ExpectedCommission> commissions;
  std::vector<MessageRef> accepted_clicks;
  std::vector<MessageRef> pending;  // conversion messages still waiting at the end
  // Violations the oracle can see in the observations alone (flood groups
  // with the wrong number of flood rejections). Each is one mismatch.
  std::vector<std::string> problems;
  OracleStats stats;
};

// Runs the simulation. `rules.offers` must be set; the predicates may be
// empty (never match).
OracleOutput RunOracle(const OracleInput& input, const OracleRules& rules,
                       const Observations& observed);

}  // namespace tally::verify

#endif  // TALLY_TOOLS_VERIFY_ORACLE_H_
