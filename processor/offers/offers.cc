#include "processor/offers/offers.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "processor/config/internal/values.h"
#include "processor/model/sha256.h"
#include "yaml-cpp/yaml.h"

// Local to this file: the status plumbing of the parser below.
#define OFFERS_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    absl::Status offers_status_ = (expr);            \
    if (!offers_status_.ok()) return offers_status_; \
  } while (0)

namespace tally {
namespace {

namespace ci = config_internal;

absl::string_view ToAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

constexpr int64_t kMillisPerDay = 24LL * 3600 * 1000;
// Longer than any commercial attribution window; also bounds the state the
// joiner must keep (and the dedup horizon that must cover it).
constexpr int64_t kMaxDurationMs = 400 * kMillisPerDay;
// The same bound as a conversion amount (schemas/README.md), so that a CPA
// can never be a value the codec would refuse.
constexpr int64_t kMaxCpaMinor = 1'000'000'000'000'000;
constexpr int32_t kMaxRevshareBps = 10'000;

constexpr const char* kModelList = "last_click, first_click, linear, time_decay, position_based";

// The schemas' "id rule": 1..64 characters of [A-Za-z0-9._:-].
bool IsValidId(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == ':' ||
           c == '-';
  });
}

// The schemas' goal rule: [a-z0-9_]{1,32}.
bool IsValidGoal(std::string_view goal) {
  if (goal.empty() || goal.size() > 32) return false;
  return std::all_of(goal.begin(), goal.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

std::string FormatMs(int64_t ms) { return ci::FormatDurationValue(absl::Milliseconds(ms)); }

using GoalPayouts = absl::flat_hash_map<std::string, Payout>;
using AffiliatePayouts = absl::flat_hash_map<std::string, GoalPayouts>;

// The keys one `defaults` block or one offer sets; unset keys are inherited.
struct PartialTerms {
  std::optional<int64_t> window_ms;
  std::optional<AttributionModel> model;
  std::optional<int64_t> half_life_ms;
  std::optional<int64_t> ctit_min_ms;
  std::optional<int64_t> ctit_max_ms;
  GoalPayouts payouts;
  AffiliatePayouts affiliate_payouts;
};

std::string JoinPath(std::string_view path, std::string_view key) {
  if (path.empty()) return std::string(key);
  return absl::StrCat(ToAbsl(path), ".", ToAbsl(key));
}

const char* KindOf(const YAML::Node& node) {
  if (node.IsMap()) return "a map";
  if (node.IsSequence()) return "a list";
  if (node.IsNull()) return "nothing";
  return "a value";
}

// Walks the YAML tree; every error names the key path and the source line.
class Parser {
 public:
  explicit Parser(std::string_view origin) : origin_(origin) {}

  absl::Status Error(const YAML::Node& node, std::string_view path,
                     std::string_view message) const {
    std::string where = absl::StrCat(" (in ", ToAbsl(origin_));
    if (!node.Mark().is_null()) absl::StrAppend(&where, " line ", node.Mark().line + 1);
    where += ")";
    if (path.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("offers.file: ", ToAbsl(message), where));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("offers.file: ", ToAbsl(path), ": ", ToAbsl(message), where));
  }

  // Checks that `node` is a map whose keys are plain, unique and allowed,
  // then calls visit(key, value, key_node) for each entry in file order.
  // `allowed` empty: any key (the caller validates it).
  template <typename Visit>
  absl::Status ForEachEntry(const YAML::Node& node, std::string_view path, std::string_view what,
                            std::initializer_list<std::string_view> allowed, Visit visit) const {
    if (!node.IsMap()) {
      return Error(node, path, absl::StrCat("expected ", ToAbsl(what), ", got ", KindOf(node)));
    }
    absl::flat_hash_set<std::string> seen;
    for (const auto& entry : node) {
      // Copies: yaml-cpp nodes are handles, and the entry is a temporary.
      const YAML::Node key_node = entry.first;
      const YAML::Node value = entry.second;
      if (!key_node.IsScalar()) return Error(key_node, path, "keys must be plain strings");
      const std::string& key = key_node.Scalar();
      const std::string key_path = JoinPath(path, key);
      if (allowed.size() > 0 &&
          std::find(allowed.begin(), allowed.end(), std::string_view(key)) == allowed.end()) {
        return Error(key_node, key_path, UnknownKeyMessage(key, allowed));
      }
      if (!seen.insert(key).second) return Error(key_node, key_path, "set more than once");
      OFFERS_RETURN_IF_ERROR(visit(key, value, key_node, key_path));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> Scalar(const YAML::Node& node, std::string_view path) const {
    if (node.IsNull()) return Error(node, path, "no value given");
    if (!node.IsScalar()) {
      return Error(node, path, absl::StrCat("expected a value, got ", KindOf(node)));
    }
    return node.Scalar();
  }

  // A duration in whole milliseconds, 0 (allow_zero) or 1ms .. 400d.
  absl::StatusOr<int64_t> DurationMs(const YAML::Node& node, std::string_view path,
                                     bool allow_zero) const {
    absl::StatusOr<std::string> text = Scalar(node, path);
    if (!text.ok()) return text.status();
    absl::StatusOr<absl::Duration> d = ci::ParseDurationValue(*text);
    if (!d.ok()) return Error(node, path, std::string(d.status().message()));
    const std::string range = allow_zero
                                  ? absl::StrCat("must be between 0 and ", FormatMs(kMaxDurationMs))
                                  : absl::StrCat("must be > 0 and <= ", FormatMs(kMaxDurationMs));
    if (*d < absl::ZeroDuration() || (!allow_zero && *d == absl::ZeroDuration()) ||
        *d > absl::Milliseconds(kMaxDurationMs)) {
      return Error(node, path, absl::StrCat(range, ", got ", ci::FormatDurationValue(*d)));
    }
    absl::Duration remainder;
    absl::IDivDuration(*d, absl::Milliseconds(1), &remainder);
    if (remainder != absl::ZeroDuration()) {
      return Error(node, path,
                   absl::StrCat("must be a whole number of milliseconds, got ",
                                ci::FormatDurationValue(*d)));
    }
    return absl::ToInt64Milliseconds(*d);
  }

  absl::StatusOr<int64_t> Integer(const YAML::Node& node, std::string_view path) const {
    absl::StatusOr<std::string> text = Scalar(node, path);
    if (!text.ok()) return text.status();
    absl::StatusOr<int64_t> value = ci::ParseInteger(*text);
    if (!value.ok()) return Error(node, path, std::string(value.status().message()));
    return *value;
  }

  // {cpa: {amount, currency}} or {revshare_bps: n}.
  absl::StatusOr<Payout> ParsePayout(const YAML::Node& node, std::string_view path) const {
    Payout payout;
    bool has_cpa = false;
    bool has_revshare = false;
    OFFERS_RETURN_IF_ERROR(ForEachEntry(
        node, path, "a map with cpa or revshare_bps", {"cpa", "revshare_bps"},
        [&](const std::string& key, const YAML::Node& value, const YAML::Node&,
            const std::string& key_path) -> absl::Status {
          if (key == "revshare_bps") {
            has_revshare = true;
            absl::StatusOr<int64_t> bps = Integer(value, key_path);
            if (!bps.ok()) return bps.status();
            if (*bps < 0 || *bps > kMaxRevshareBps) {
              return Error(
                  value, path,
                  absl::StrCat("revshare_bps must be 0..", kMaxRevshareBps, ", got ", *bps));
            }
            payout.kind = Payout::Kind::kRevshare;
            payout.revshare_bps = static_cast<int32_t>(*bps);
            return absl::OkStatus();
          }
          has_cpa = true;
          payout.kind = Payout::Kind::kCpa;
          return ParseCpa(value, key_path, &payout.cpa);
        }));
    if (has_cpa == has_revshare) return Error(node, path, "exactly one of cpa, revshare_bps");
    return payout;
  }

  absl::Status ParseCpa(const YAML::Node& node, std::string_view path, Money* out) const {
    bool has_amount = false;
    bool has_currency = false;
    OFFERS_RETURN_IF_ERROR(ForEachEntry(
        node, path, "a map with amount and currency", {"amount", "currency"},
        [&](const std::string& key, const YAML::Node& value, const YAML::Node&,
            const std::string& key_path) -> absl::Status {
          if (key == "amount") {
            has_amount = true;
            absl::StatusOr<int64_t> amount = Integer(value, key_path);
            if (!amount.ok()) return amount.status();
            if (*amount < 0 || *amount > kMaxCpaMinor) {
              return Error(
                  value, key_path,
                  absl::StrCat("must be 0..", kMaxCpaMinor, " (minor units), got ", *amount));
            }
            out->minor = *amount;
            return absl::OkStatus();
          }
          has_currency = true;
          absl::StatusOr<std::string> code = Scalar(value, key_path);
          if (!code.ok()) return code.status();
          if (!Currency::Parse(*code, &out->currency)) {
            return Error(value, key_path,
                         absl::StrCat("unknown currency '", *code,
                                      "' (expected an ISO 4217 code such as EUR)"));
          }
          return absl::OkStatus();
        }));
    if (!has_amount) return Error(node, path, "missing key 'amount'");
    if (!has_currency) return Error(node, path, "missing key 'currency'");
    return absl::OkStatus();
  }

  // goal -> payout.
  absl::Status ParseGoalPayouts(const YAML::Node& node, std::string_view path,
                                GoalPayouts* out) const {
    return ForEachEntry(
        node, path, "a map of goal: payout", {},
        [&](const std::string& goal, const YAML::Node& value, const YAML::Node& key_node,
            const std::string& key_path) -> absl::Status {
          if (!IsValidGoal(goal)) {
            return Error(key_node, key_path, "goal must match [a-z0-9_]{1,32}");
          }
          absl::StatusOr<Payout> payout = ParsePayout(value, key_path);
          if (!payout.ok()) return payout.status();
          out->emplace(goal, *payout);
          return absl::OkStatus();
        });
  }

  // The keys shared by `defaults` and an offer; `id` only when is_offer.
  absl::Status ParseTerms(const YAML::Node& node, std::string_view path, bool is_offer,
                          std::string* id, PartialTerms* out) const {
    bool has_id = false;
    auto visit = [&](const std::string& key, const YAML::Node& value, const YAML::Node&,
                     const std::string& key_path) -> absl::Status {
      if (key == "id") {
        has_id = true;
        absl::StatusOr<std::string> text = Scalar(value, key_path);
        if (!text.ok()) return text.status();
        if (!IsValidId(*text)) {
          return Error(value, key_path,
                       absl::StrCat("offer id must be 1..64 characters of [A-Za-z0-9._:-], got '",
                                    *text, "'"));
        }
        *id = *text;
        return absl::OkStatus();
      }
      if (key == "attribution_window" || key == "half_life" || key == "ctit_min" ||
          key == "ctit_max") {
        const bool allow_zero = key == "ctit_min" || key == "ctit_max";
        absl::StatusOr<int64_t> ms = DurationMs(value, key_path, allow_zero);
        if (!ms.ok()) return ms.status();
        if (key == "attribution_window") out->window_ms = *ms;
        if (key == "half_life") out->half_life_ms = *ms;
        if (key == "ctit_min") out->ctit_min_ms = *ms;
        if (key == "ctit_max") out->ctit_max_ms = *ms;
        return absl::OkStatus();
      }
      if (key == "model") {
        absl::StatusOr<std::string> name = Scalar(value, key_path);
        if (!name.ok()) return name.status();
        AttributionModel model;
        if (!ParseAttributionModel(*name, &model)) {
          return Error(value, key_path,
                       absl::StrCat("unknown model '", *name, "' (", kModelList, ")"));
        }
        out->model = model;
        return absl::OkStatus();
      }
      if (key == "payouts") return ParseGoalPayouts(value, key_path, &out->payouts);
      // affiliate_payouts: affiliate_id -> goal -> payout.
      return ForEachEntry(
          value, key_path, "a map of affiliate_id: {goal: payout}", {},
          [&](const std::string& affiliate, const YAML::Node& goals, const YAML::Node& aff_key,
              const std::string& aff_path) -> absl::Status {
            if (!IsValidId(affiliate)) {
              return Error(aff_key, aff_path,
                           "affiliate id must be 1..64 characters of [A-Za-z0-9._:-]");
            }
            return ParseGoalPayouts(goals, aff_path, &out->affiliate_payouts[affiliate]);
          });
    };
    if (is_offer) {
      OFFERS_RETURN_IF_ERROR(ForEachEntry(node, path, "an offer (a map)",
                                          {"id", "attribution_window", "model", "half_life",
                                           "ctit_min", "ctit_max", "payouts", "affiliate_payouts"},
                                          visit));
      if (!has_id) return Error(node, path, "missing key 'id'");
    } else {
      OFFERS_RETURN_IF_ERROR(ForEachEntry(node, path, "a map",
                                          {"attribution_window", "model", "half_life", "ctit_min",
                                           "ctit_max", "payouts", "affiliate_payouts"},
                                          visit));
    }
    return absl::OkStatus();
  }

 private:
  static std::string UnknownKeyMessage(std::string_view key,
                                       std::initializer_list<std::string_view> allowed) {
    std::string best;
    size_t best_distance = 3;  // suggest only close matches
    for (std::string_view candidate : allowed) {
      const size_t distance = ci::EditDistance(key, candidate);
      if (distance < best_distance) {
        best_distance = distance;
        best = std::string(candidate);
      }
    }
    std::string message = "unknown key";
    if (!best.empty()) absl::StrAppend(&message, " (did you mean '", best, "'?)");
    return message;
  }

  std::string_view origin_;
};

// `base` overlaid with what `top` sets: scalars replace, payouts merge per
// goal, affiliate overrides per (affiliate, goal).
PartialTerms Overlay(const PartialTerms& base, const PartialTerms& top) {
  PartialTerms merged = base;
  if (top.window_ms) merged.window_ms = top.window_ms;
  if (top.model) merged.model = top.model;
  if (top.half_life_ms) merged.half_life_ms = top.half_life_ms;
  if (top.ctit_min_ms) merged.ctit_min_ms = top.ctit_min_ms;
  if (top.ctit_max_ms) merged.ctit_max_ms = top.ctit_max_ms;
  for (const auto& [goal, payout] : top.payouts) merged.payouts[goal] = payout;
  for (const auto& [affiliate, goals] : top.affiliate_payouts) {
    for (const auto& [goal, payout] : goals) merged.affiliate_payouts[affiliate][goal] = payout;
  }
  return merged;
}

OfferTerms Finish(std::string offer_id, PartialTerms partial) {
  OfferTerms terms;  // built-in defaults for anything still unset
  terms.offer_id = std::move(offer_id);
  if (partial.window_ms) terms.attribution_window_ms = *partial.window_ms;
  if (partial.model) terms.model = *partial.model;
  if (partial.half_life_ms) terms.half_life_ms = *partial.half_life_ms;
  if (partial.ctit_min_ms) terms.ctit_min_ms = *partial.ctit_min_ms;
  if (partial.ctit_max_ms) terms.ctit_max_ms = *partial.ctit_max_ms;
  terms.payouts = std::move(partial.payouts);
  terms.affiliate_payouts = std::move(partial.affiliate_payouts);
  terms.version = OfferTermsVersion(terms);
  return terms;
}

void AppendCanonicalPayout(const Payout& payout, std::string* out) {
  switch (payout.kind) {
    case Payout::Kind::kCpa:
      absl::StrAppend(out, " cpa ", payout.cpa.minor, " ",
                      payout.cpa.currency.empty() ? "" : ToAbsl(payout.cpa.currency.code()), "\n");
      return;
    case Payout::Kind::kRevshare:
      absl::StrAppend(out, " revshare_bps ", payout.revshare_bps, "\n");
      return;
  }
}

// The entries of a hash map in byte order of their keys (the canonical
// encoding must not depend on the map's iteration order).
template <typename Map>
std::vector<const typename Map::value_type*> SortedEntries(const Map& map) {
  std::vector<const typename Map::value_type*> entries;
  entries.reserve(map.size());
  for (const auto& entry : map) entries.push_back(&entry);
  std::sort(entries.begin(), entries.end(),
            [](const auto* a, const auto* b) { return a->first < b->first; });
  return entries;
}

// ctit_max bounds from above only when set (non-zero).
bool CtitConsistent(const OfferTerms& terms) {
  return terms.ctit_max_ms == 0 || terms.ctit_max_ms >= terms.ctit_min_ms;
}

std::string CtitMessage(const OfferTerms& terms) {
  return absl::StrCat("ctit_max (", FormatMs(terms.ctit_max_ms), ") must be >= ctit_min (",
                      FormatMs(terms.ctit_min_ms), ") when both are set");
}

}  // namespace

std::optional<Payout> OfferTerms::PayoutFor(std::string_view goal,
                                            std::string_view affiliate_id) const {
  if (!affiliate_id.empty()) {
    const auto affiliate = affiliate_payouts.find(ToAbsl(affiliate_id));
    if (affiliate != affiliate_payouts.end()) {
      const auto it = affiliate->second.find(ToAbsl(goal));
      if (it != affiliate->second.end()) return it->second;
    }
  }
  const auto it = payouts.find(ToAbsl(goal));
  if (it == payouts.end()) return std::nullopt;
  return it->second;
}

bool OfferTerms::HasOverride(std::string_view goal, std::string_view affiliate_id) const {
  if (affiliate_id.empty()) return false;
  const auto affiliate = affiliate_payouts.find(ToAbsl(affiliate_id));
  return affiliate != affiliate_payouts.end() && affiliate->second.contains(ToAbsl(goal));
}

std::string CanonicalOfferTerms(const OfferTerms& terms) {
  std::string out = absl::StrCat(
      "tally.offer_terms.v1\nattribution_window_ms=", terms.attribution_window_ms,
      "\nmodel=", AttributionModelName(terms.model), "\nhalf_life_ms=", terms.half_life_ms,
      "\nctit_min_ms=", terms.ctit_min_ms, "\nctit_max_ms=", terms.ctit_max_ms, "\n");
  for (const auto* goal : SortedEntries(terms.payouts)) {
    absl::StrAppend(&out, "payout ", goal->first);
    AppendCanonicalPayout(goal->second, &out);
  }
  for (const auto* affiliate : SortedEntries(terms.affiliate_payouts)) {
    for (const auto* goal : SortedEntries(affiliate->second)) {
      absl::StrAppend(&out, "override ", affiliate->first, " ", goal->first);
      AppendCanonicalPayout(goal->second, &out);
    }
  }
  return out;
}

std::string OfferTermsVersion(const OfferTerms& terms) {
  return Sha256Hex(CanonicalOfferTerms(terms));
}

absl::StatusOr<std::shared_ptr<const OffersCatalog>> OffersCatalog::FromYaml(
    std::string_view yaml, std::string_view origin) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("offers.file: '", ToAbsl(origin),
                                                   "' is not valid YAML: line ", e.mark.line + 1,
                                                   " column ", e.mark.column + 1, ": ", e.msg));
  }
  const Parser parser(origin);
  auto catalog = std::make_shared<OffersCatalog>();
  // yaml-cpp reports misuse by throwing; none is expected after the type
  // checks of the parser, but no exception may leave this component.
  try {
    if (!root.IsMap()) {
      return parser.Error(root, "",
                          absl::StrCat("expected a map with 'defaults' and/or 'offers' at the top "
                                       "level, got ",
                                       KindOf(root)));
    }
    std::optional<PartialTerms> defaults;
    std::optional<YAML::Node> offers_node;
    OFFERS_RETURN_IF_ERROR(parser.ForEachEntry(
        root, "", "a map", {"defaults", "offers"},
        [&](const std::string& key, const YAML::Node& value, const YAML::Node&,
            const std::string& key_path) -> absl::Status {
          if (key == "offers") {
            offers_node.emplace(value);
            return absl::OkStatus();
          }
          defaults.emplace();
          return parser.ParseTerms(value, key_path, /*is_offer=*/false, nullptr, &*defaults);
        }));
    if (defaults) {
      OfferTerms terms = Finish("", *defaults);
      if (!CtitConsistent(terms)) {
        return parser.Error(root["defaults"], "defaults", CtitMessage(terms));
      }
      catalog->max_window_ms_ = terms.attribution_window_ms;
      catalog->default_ = std::move(terms);
    }
    // "offers:" with nothing under it is an empty list (all commented out).
    if (offers_node && !offers_node->IsNull()) {
      if (!offers_node->IsSequence()) {
        return parser.Error(*offers_node, "offers",
                            absl::StrCat("expected a list of offers, got ", KindOf(*offers_node)));
      }
      absl::flat_hash_map<std::string, size_t> index_of;
      for (size_t i = 0; i < offers_node->size(); ++i) {
        const YAML::Node entry = (*offers_node)[i];
        const std::string path = absl::StrCat("offers[", i, "]");
        std::string id;
        PartialTerms own;
        OFFERS_RETURN_IF_ERROR(parser.ParseTerms(entry, path, /*is_offer=*/true, &id, &own));
        const auto [it, inserted] = index_of.emplace(id, i);
        if (!inserted) {
          return parser.Error(
              entry["id"], absl::StrCat(path, ".id"),
              absl::StrCat("duplicate offer id '", id, "' (also offers[", it->second, "])"));
        }
        OfferTerms terms = Finish(id, defaults ? Overlay(*defaults, own) : std::move(own));
        if (!CtitConsistent(terms)) {
          const bool own_max = entry["ctit_max"].IsDefined();
          return parser.Error(entry, absl::StrCat(path, own_max ? ".ctit_max" : ".ctit_min"),
                              CtitMessage(terms));
        }
        catalog->max_window_ms_ = std::max(catalog->max_window_ms_, terms.attribution_window_ms);
        catalog->offers_.emplace(id, std::move(terms));
      }
    }
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("offers.file: '", ToAbsl(origin), "': ", e.what()));
  }
  return std::shared_ptr<const OffersCatalog>(std::move(catalog));
}

absl::StatusOr<std::shared_ptr<const OffersCatalog>> OffersCatalog::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("offers.file: cannot read '", path, "': ", std::strerror(errno)));
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) {
    return absl::InvalidArgumentError(
        absl::StrCat("offers.file: cannot read '", path, "': read error"));
  }
  return FromYaml(buffer.str(), path);
}

const OfferTerms* OffersCatalog::Find(std::string_view offer_id) const {
  const auto it = offers_.find(ToAbsl(offer_id));
  if (it != offers_.end()) return &it->second;
  return default_ ? &*default_ : nullptr;
}

}  // namespace tally

#undef OFFERS_RETURN_IF_ERROR
