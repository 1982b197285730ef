#include "tools/verify/oracle.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <limits>
#include <span>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "processor/commission/commission_engine.h"

namespace tally::verify {
namespace {

// Mathematical floor division: the flood window of a timestamp. Event times
// are positive after decoding, but the oracle must not be the place where a
// negative one would silently land in the wrong window.
int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

// The payout basis a correct processor states on the commissions of one
// conversion, worked out from the terms here rather than taken from the
// engine's Attribute, so that a wrong basis, rate, override flag or
// offer_version is a mismatch: one credited click is paid by its
// affiliate's override for the goal if there is one, several by the offer's
// own payout; a goal without payout is a CPA of 0; the version is the hash
// of the canonical terms, recomputed.
void SetExpectedBasis(const OfferTerms& terms, const Conversion& conversion,
                      std::vector<Commission>* commissions) {
  const std::string version = OfferTermsVersion(terms);
  for (Commission& c : *commissions) {
    const Payout* payout = nullptr;
    bool override_applied = false;
    if (commissions->size() == 1) {
      if (auto a = terms.affiliate_payouts.find(c.affiliate_id);
          a != terms.affiliate_payouts.end()) {
        if (auto g = a->second.find(conversion.goal); g != a->second.end()) {
          payout = &g->second;
          override_applied = true;
        }
      }
    }
    if (payout == nullptr) {
      if (auto g = terms.payouts.find(conversion.goal); g != terms.payouts.end())
        payout = &g->second;
    }
    c.basis = payout != nullptr && payout->kind == Payout::Kind::kRevshare ? PayoutBasis::kRevshare
                                                                           : PayoutBasis::kCpa;
    c.rate = payout == nullptr                   ? 0
             : c.basis == PayoutBasis::kRevshare ? payout->revshare_bps
                                                 : payout->cpa.minor;
    c.base = conversion.amount;
    c.override_applied = override_applied;
    c.offer_version = version;
  }
}

// The fate of a conversion identity, decided by its first message; every
// later status of the identity follows it.
struct Fate {
  enum class Kind { kAttributed, kRejected, kUnattributed, kPending };
  Kind kind = Kind::kPending;
  std::vector<Commission> commissions;  // kAttributed, with the first message's status
  RejectReason reject_reason = RejectReason::kInvalidValue;
  UnattributedReason unattributed_reason = UnattributedReason::kClickNotFound;

  static Fate Rejected(RejectReason reason) {
    Fate f;
    f.kind = Kind::kRejected;
    f.reject_reason = reason;
    return f;
  }
  static Fate Unattributed(UnattributedReason reason) {
    Fate f;
    f.kind = Kind::kUnattributed;
    f.unattributed_reason = reason;
    return f;
  }
  static Fate Pending() { return Fate{}; }

  // Two fates with the same key produce the same output messages.
  std::string Key() const {
    std::string key = absl::StrCat(static_cast<int>(kind), "/", static_cast<int>(reject_reason),
                                   "/", static_cast<int>(unattributed_reason));
    if (kind == Kind::kAttributed) {
      for (const Commission& c : commissions) {
        absl::StrAppend(&key, "|", c.commission_id, ":", c.payout.minor, ":", c.credit_ppm, ":",
                        c.click_count);
      }
    }
    return key;
  }
};

// The clicks of one partition as the conversions of the same partition can
// see them.
struct ClickPartition {
  std::vector<const Click*> clicks;  // by position; nullptr when undecodable
  // watermark[i]: max event time of the decodable clicks at positions 0..i
  // (whatever their verdict) - max_click_lateness; non-decreasing.
  std::vector<int64_t> watermark;
  absl::flat_hash_map<std::string, size_t> accepted_by_click_id;  // -> position
  // (user_id, offer_id) -> positions of accepted clicks, ascending.
  std::map<std::pair<std::string, std::string>, std::vector<size_t>> accepted_by_user_offer;

  // The first position at which the watermark exceeds `threshold`;
  // clicks.size() when it never does.
  size_t Horizon(int64_t threshold) const {
    return static_cast<size_t>(std::upper_bound(watermark.begin(), watermark.end(), threshold) -
                               watermark.begin());
  }
};

ClickRecord RecordOf(const Click& click) {
  ClickRecord r;
  r.click_id = click.click_id;
  r.event_time_ms = click.event_time_ms;
  r.affiliate_id = click.affiliate_id;
  r.offer_id = click.offer_id;
  r.user_id = click.user_id;
  r.sub_ids = click.sub_ids;
  return r;
}

class Simulation {
 public:
  Simulation(const OracleInput& input, const OracleRules& rules, const Observations& observed)
      : input_(input), rules_(rules), observed_(observed) {}

  OracleOutput Run() {
    RunClicks();
    RunConversions();
    return std::move(out_);
  }

 private:
  MessageRef ClickRef(int32_t partition, int64_t offset) const {
    return MessageRef{input_.clicks_topic, partition, offset};
  }
  MessageRef ConversionRef(int32_t partition, int64_t offset) const {
    return MessageRef{input_.conversions_topic, partition, offset};
  }
  void Reject(MessageRef ref, RejectReason reason) {
    out_.rejected.push_back(ExpectedRejection{std::move(ref), reason});
  }

  void RunClicks() {
    absl::flat_hash_set<std::string> seen_click_ids;
    struct Member {
      int32_t partition;
      size_t position;
    };
    // (ip, window) -> the clicks that reached the flood rule. std::map: the
    // problems are reported in a stable order.
    std::map<std::pair<std::array<uint8_t, 16>, int64_t>, std::vector<Member>> flood_groups;

    for (const auto& [partition, messages] : input_.clicks) {
      ClickPartition& part = clicks_[partition];
      part.clicks.assign(messages.size(), nullptr);
      part.watermark.assign(messages.size(), std::numeric_limits<int64_t>::min());
      int64_t watermark = std::numeric_limits<int64_t>::min();
      for (size_t i = 0; i < messages.size(); ++i) {
        const ClickInput& m = messages[i];
        ++out_.stats.clicks;
        if (m.invalid) {
          part.watermark[i] = watermark;
          Reject(ClickRef(partition, m.offset), *m.invalid);
          continue;
        }
        const Click& click = m.click;
        part.clicks[i] = &click;
        watermark = std::max(watermark, click.event_time_ms - rules_.max_click_lateness_ms);
        part.watermark[i] = watermark;
        if (!seen_click_ids.insert(click.click_id).second) {
          Reject(ClickRef(partition, m.offset), RejectReason::kDuplicateClick);
        } else if (rules_.is_bot_user_agent && rules_.is_bot_user_agent(click.user_agent)) {
          Reject(ClickRef(partition, m.offset), RejectReason::kBotUserAgent);
        } else if (rules_.is_blocklisted && rules_.is_blocklisted(click.ip)) {
          Reject(ClickRef(partition, m.offset), RejectReason::kIpBlocklisted);
        } else {
          flood_groups[{click.ip.bytes(), FloorDiv(click.event_time_ms, rules_.flood_window_ms)}]
              .push_back(Member{partition, i});
        }
      }
    }

    for (const auto& [group, members] : flood_groups) {
      ++out_.stats.flood_groups;
      const int64_t n = static_cast<int64_t>(members.size());
      const int64_t excess = std::max<int64_t>(0, n - rules_.max_clicks_per_ip);
      if (excess > 0) ++out_.stats.flood_groups_over_limit;
      int64_t flooded = 0;
      for (const Member& member : members) {
        const ClickInput& m = input_.clicks.at(member.partition)[member.position];
        const MessageRef ref = ClickRef(member.partition, m.offset);
        if (observed_.flood_rejected.contains(ref)) {
          // The processor's choice of the excess clicks is taken as given;
          // only their number is checked (below).
          ++flooded;
          Reject(ref, RejectReason::kIpClickFlood);
        } else {
          Accept(member.partition, member.position, ref);
        }
      }
      if (flooded != excess) {
        const Click& first = *clicks_[members.front().partition].clicks[members.front().position];
        out_.problems.push_back(absl::StrCat(
            "flood group ip ", first.ip.ToString(), " window ", group.second, " (",
            group.second * rules_.flood_window_ms, " ms): ", n,
            " clicks reached the flood rule, limit ", rules_.max_clicks_per_ip, ", so ", excess,
            " must be rejected as ip_click_flood; the processor rejected ", flooded));
      }
    }
    for (auto& [partition, part] : clicks_) {
      for (auto& [key, positions] : part.accepted_by_user_offer) {
        std::sort(positions.begin(), positions.end());
      }
    }
  }

  void Accept(int32_t partition, size_t position, const MessageRef& ref) {
    ClickPartition& part = clicks_[partition];
    const Click& click = *part.clicks[position];
    part.accepted_by_click_id[click.click_id] = position;
    part.accepted_by_user_offer[{click.user_id, click.offer_id}].push_back(position);
    out_.accepted_clicks.push_back(ref);
    ++out_.stats.accepted_clicks;
  }

  void RunConversions() {
    // Dedup spans all partitions (the processor's deduplicator is global);
    // the ledger is per partition (the processor keeps state per partition).
    absl::flat_hash_set<std::tuple<std::string, std::string, std::string, int>> seen;
    static const ClickPartition kNoClicks;
    for (const auto& [partition, messages] : input_.conversions) {
      auto it = clicks_.find(partition);
      const ClickPartition& part = it == clicks_.end() ? kNoClicks : it->second;
      std::map<ConversionIdentity, Fate> ledger;
      for (const ConversionInput& m : messages) {
        ++out_.stats.conversions;
        const MessageRef ref = ConversionRef(partition, m.offset);
        if (m.invalid) {
          Reject(ref, *m.invalid);
          continue;
        }
        const Conversion& conversion = m.conversion;
        if (!seen.emplace(conversion.offer_id, conversion.goal, conversion.conversion_id,
                          static_cast<int>(conversion.status))
                 .second) {
          Reject(ref, RejectReason::kDuplicateConversion);
          continue;
        }
        ConversionIdentity identity = IdentityOf(conversion);
        if (auto known = ledger.find(identity); known != ledger.end()) {
          Apply(known->second, conversion, ref);
          continue;
        }
        if (conversion.status == ConversionStatus::kReversed) {
          // Nothing to reverse; not recorded, so a later first message of
          // the identity is a new conversion.
          Reject(ref, RejectReason::kUnknownConversion);
          continue;
        }
        Fate fate = Resolve(conversion, part, identity, ref);
        if (fate.kind == Fate::Kind::kPending) ++out_.stats.pending_conversions;
        Apply(fate, conversion, ref);
        ledger.emplace(std::move(identity), std::move(fate));
      }
    }
  }

  // Writes the outputs of one conversion message whose identity has `fate`.
  void Apply(const Fate& fate, const Conversion& conversion, const MessageRef& ref) {
    switch (fate.kind) {
      case Fate::Kind::kAttributed:
        ++out_.stats.attributed_messages;
        for (Commission c : fate.commissions) {
          // Same id and amount for every status; a reversal takes the money
          // back, a later status gives it again.
          const int64_t amount = std::abs(c.payout.minor);
          c.status = conversion.status;
          c.payout.minor = conversion.status == ConversionStatus::kReversed ? -amount : amount;
          out_.commissions.push_back(ExpectedCommission{ref, std::move(c)});
        }
        break;
      case Fate::Kind::kRejected:
        Reject(ref, fate.reject_reason);
        break;
      case Fate::Kind::kUnattributed:
        out_.unattributed.push_back(
            ExpectedUnattributed{ref, conversion, fate.unattributed_reason});
        break;
      case Fate::Kind::kPending:
        out_.pending.push_back(ref);
        break;
    }
  }

  // The fate of a new identity (first message, not `reversed`).
  Fate Resolve(const Conversion& conversion, const ClickPartition& part,
               const ConversionIdentity& identity, const MessageRef& ref) {
    const OfferTerms* terms = rules_.offers->Find(conversion.offer_id);
    if (terms == nullptr) return Fate::Rejected(RejectReason::kInvalidValue);

    // Clicks at positions <= horizon arrived before the watermark passed
    // the grace; the click at the horizon is the one whose event time
    // passes it, and the processor takes it into state before it decides.
    const size_t horizon = part.Horizon(conversion.event_time_ms + rules_.pending_grace_ms);
    const bool grace_passed = horizon < part.clicks.size();
    auto in_window = [&](const Click& click) {
      const int64_t delta = conversion.event_time_ms - click.event_time_ms;
      return delta >= 0 && delta <= terms->attribution_window_ms;
    };
    auto visible = [&](size_t position) {
      return position <= horizon && part.clicks[position]->event_time_ms >=
                                        conversion.event_time_ms - rules_.click_retention_ms;
    };

    std::vector<ClickRecord> candidates;  // in position order
    if (rules_.key == AttributionKey::kClickId) {
      // Click ids are unique after dedup, so the named click decides alone,
      // whenever it is visible; an unfit one cannot be replaced by another.
      if (conversion.click_id.empty()) {
        return Fate::Unattributed(UnattributedReason::kClickNotFound);
      }
      auto it = part.accepted_by_click_id.find(conversion.click_id);
      if (it == part.accepted_by_click_id.end() || !visible(it->second)) {
        return grace_passed ? Fate::Unattributed(UnattributedReason::kClickNotFound)
                            : Fate::Pending();
      }
      const Click& click = *part.clicks[it->second];
      if (click.offer_id != conversion.offer_id) {
        return Fate::Unattributed(UnattributedReason::kClickNotFound);
      }
      if (!in_window(click)) return Fate::Unattributed(UnattributedReason::kOutsideWindow);
      candidates.push_back(RecordOf(click));
    } else {
      if (conversion.user_id.empty()) return Fate::Unattributed(UnattributedReason::kNoUserClicks);
      // The processor decides a user_id conversion once its clicks
      // partition has passed the conversion's time: every in-window click
      // that arrived before that is a candidate. Without any, once the grace
      // has passed, every in-window click that arrived before that.
      const size_t ready = part.Horizon(conversion.event_time_ms);
      if (ready >= part.clicks.size()) return Fate::Pending();
      bool user_has_clicks = false;
      std::vector<ClickRecord> late;
      auto it = part.accepted_by_user_offer.find({conversion.user_id, conversion.offer_id});
      if (it != part.accepted_by_user_offer.end()) {
        for (size_t position : it->second) {
          if (position > horizon) break;
          if (!visible(position)) continue;
          user_has_clicks = true;
          const Click& click = *part.clicks[position];
          if (!in_window(click)) continue;
          (position <= ready ? candidates : late).push_back(RecordOf(click));
        }
      }
      if (candidates.empty()) {
        // Later clicks of the user may still arrive, until the grace passes.
        if (!grace_passed) return Fate::Pending();
        candidates = std::move(late);
      }
      if (candidates.empty()) {
        return Fate::Unattributed(user_has_clicks ? UnattributedReason::kOutsideWindow
                                                  : UnattributedReason::kNoUserClicks);
      }
      // The processor orders candidates by (event time, click id).
      std::sort(
          candidates.begin(), candidates.end(), [](const ClickRecord& a, const ClickRecord& b) {
            return std::tie(a.event_time_ms, a.click_id) < std::tie(b.event_time_ms, b.click_id);
          });
    }

    // The processor evaluates with the candidates it holds at that moment:
    // the first k of them for some k >= 1 (all when it is up to date).
    std::vector<Fate> options;
    for (size_t k = 1; k <= candidates.size(); ++k) {
      options.push_back(
          Evaluate(*terms, conversion, std::span<const ClickRecord>(candidates.data(), k)));
    }
    return Choose(std::move(options), identity, ref);
  }

  Fate Evaluate(const OfferTerms& terms, const Conversion& conversion,
                std::span<const ClickRecord> candidates) {
    int64_t latest = std::numeric_limits<int64_t>::min();
    for (const ClickRecord& c : candidates) latest = std::max(latest, c.event_time_ms);
    const int64_t ctit = conversion.event_time_ms - latest;
    if (terms.ctit_min_ms > 0 && ctit < terms.ctit_min_ms) {
      return Fate::Rejected(RejectReason::kCtitTooShort);
    }
    if (terms.ctit_max_ms > 0 && ctit > terms.ctit_max_ms) {
      return Fate::Rejected(RejectReason::kCtitTooLong);
    }
    Fate fate;
    fate.commissions = Attribute(terms, conversion, candidates);
    SetExpectedBasis(terms, conversion, &fate.commissions);
    // Every model credits at least one click; should one ever credit none,
    // no click earned the conversion.
    if (fate.commissions.empty()) return Fate::Unattributed(UnattributedReason::kOutsideWindow);
    fate.kind = Fate::Kind::kAttributed;
    return fate;
  }

  // Picks among the fates a correct processor may produce: the observed one
  // if it is among them, else the one with all candidates (the last).
  Fate Choose(std::vector<Fate> options, const ConversionIdentity& identity,
              const MessageRef& ref) {
    bool all_same = true;
    for (const Fate& f : options) all_same = all_same && f.Key() == options.back().Key();
    if (all_same) return std::move(options.back());
    ++out_.stats.interleaving_dependent;
    if (!rules_.accept_observed_candidate_prefix) return std::move(options.back());
    for (size_t i = options.size(); i-- > 0;) {
      if (Observed(options[i], identity, ref)) {
        if (i + 1 != options.size()) ++out_.stats.decided_by_observation;
        return std::move(options[i]);
      }
    }
    return std::move(options.back());
  }

  bool Observed(const Fate& fate, const ConversionIdentity& identity, const MessageRef& ref) {
    switch (fate.kind) {
      case Fate::Kind::kAttributed: {
        auto it = observed_.commission_ids.find(identity);
        if (it == observed_.commission_ids.end()) return false;
        std::set<std::string> ids;
        for (const Commission& c : fate.commissions) ids.insert(c.commission_id);
        return ids == it->second;
      }
      case Fate::Kind::kRejected: {
        auto it = observed_.rejected.find(ref);
        return it != observed_.rejected.end() && it->second == fate.reject_reason;
      }
      case Fate::Kind::kUnattributed:
      case Fate::Kind::kPending:
        break;
    }
    return false;
  }

  const OracleInput& input_;
  const OracleRules& rules_;
  const Observations& observed_;
  std::map<int32_t, ClickPartition> clicks_;
  OracleOutput out_;
};

}  // namespace

ConversionIdentity IdentityOf(const Conversion& conversion) {
  return {conversion.offer_id, conversion.goal, conversion.conversion_id};
}

OracleOutput RunOracle(const OracleInput& input, const OracleRules& rules,
                       const Observations& observed) {
  return Simulation(input, rules, observed).Run();
}

}  // namespace tally::verify
