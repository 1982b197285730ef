#include "processor/offers/offers.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tally {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kDay = 24LL * 3600 * 1000;

Money M(int64_t minor, const char* code) {
  Money m;
  m.minor = minor;
  EXPECT_TRUE(Currency::Parse(code, &m.currency)) << code;
  return m;
}

Payout Cpa(int64_t minor, const char* code) {
  Payout p;
  p.kind = Payout::Kind::kCpa;
  p.cpa = M(minor, code);
  return p;
}

Payout Revshare(int32_t bps) {
  Payout p;
  p.kind = Payout::Kind::kRevshare;
  p.revshare_bps = bps;
  return p;
}

std::shared_ptr<const OffersCatalog> MustLoad(const std::string& yaml) {
  auto catalog = OffersCatalog::FromYaml(yaml, "test.yaml");
  EXPECT_TRUE(catalog.ok()) << catalog.status();
  return catalog.ok() ? *catalog : nullptr;
}

std::string ErrorOf(const std::string& yaml) {
  auto catalog = OffersCatalog::FromYaml(yaml, "test.yaml");
  EXPECT_FALSE(catalog.ok()) << yaml;
  if (catalog.ok()) return "";
  EXPECT_EQ(catalog.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(catalog.status().message());
}

// A valid offer with `extra` lines (indented by 4) appended.
std::string OneOffer(const std::string& extra) { return "offers:\n  - id: off-1\n" + extra; }

TEST(OffersCatalog, ShippedFileLoadsAndCoversTheLoadGenerator) {
  auto catalog = OffersCatalog::Load(std::string(TALLY_SOURCE_DIR) + "/deploy/config/offers.yaml");
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  EXPECT_GE((*catalog)->size(), 1u);
  // Every offer of tally-loadgen has terms that pay both of its goals, and
  // its conversions (up to 2 days after the click) fit every window.
  for (int i = 1; i <= 50; ++i) {
    const std::string id = absl::StrCat("off-", i);
    const OfferTerms* terms = (*catalog)->Find(id);
    ASSERT_NE(terms, nullptr) << id;
    EXPECT_GE(terms->attribution_window_ms, 2 * kDay) << id;
    EXPECT_TRUE(terms->PayoutFor("sale", "").has_value()) << id;
    EXPECT_TRUE(terms->PayoutFor("lead", "").has_value()) << id;
  }
  // The dedup horizon default (35d) covers the longest window.
  EXPECT_LE((*catalog)->max_attribution_window_ms(), 35 * kDay);
  EXPECT_EQ((*catalog)->max_attribution_window_ms(), 30 * kDay);
}

TEST(OffersCatalog, ShippedFileValues) {
  auto catalog = OffersCatalog::Load(std::string(TALLY_SOURCE_DIR) + "/deploy/config/offers.yaml");
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  const OfferTerms* off1 = (*catalog)->Find("off-1");
  ASSERT_NE(off1, nullptr);
  EXPECT_EQ(off1->offer_id, "off-1");
  EXPECT_EQ(off1->attribution_window_ms, 7 * kDay);
  EXPECT_EQ(off1->model, AttributionModel::kLinear);
  EXPECT_EQ(off1->PayoutFor("sale", ""), Cpa(1500, "USD"));
  EXPECT_EQ(off1->PayoutFor("sale", "aff-3"), Revshare(1500));
  EXPECT_EQ(off1->PayoutFor("lead", ""), Cpa(250, "EUR"));  // inherited
  const OfferTerms* unlisted = (*catalog)->Find("off-50");
  ASSERT_NE(unlisted, nullptr);
  EXPECT_EQ(unlisted->model, AttributionModel::kLastClick);
  EXPECT_EQ(unlisted->PayoutFor("sale", ""), Revshare(1000));
}

// offer_version is a contract (schemas/README.md): this is its worked
// example, off-4 of the shipped file merged with its defaults, which the
// README's Python one-liner reproduces. A change of the canonical encoding
// changes every offer_version downstream and must fail here.
TEST(OfferTermsVersion, CanonicalEncodingAndGoldenHashOfTheWorkedExample) {
  auto catalog = OffersCatalog::Load(std::string(TALLY_SOURCE_DIR) + "/deploy/config/offers.yaml");
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  const OfferTerms* off4 = (*catalog)->Find("off-4");
  ASSERT_NE(off4, nullptr);
  EXPECT_EQ(CanonicalOfferTerms(*off4),
            "tally.offer_terms.v1\n"
            "attribution_window_ms=2592000000\n"
            "model=first_click\n"
            "half_life_ms=604800000\n"
            "ctit_min_ms=0\n"
            "ctit_max_ms=0\n"
            "payout lead cpa 250 EUR\n"
            "payout sale revshare_bps 1200\n"
            "override aff-1 lead cpa 400 EUR\n"
            "override aff-1 sale revshare_bps 1500\n");
  EXPECT_EQ(off4->version, "72080e85b559b89700b5f6fcbfc60253b835c6862b9076c8b2fa71d256da085b");
  EXPECT_EQ(OfferTermsVersion(*off4), off4->version);
}

TEST(OfferTermsVersion, FollowsEveryTermAndNothingElse) {
  auto catalog = MustLoad(
      "offers:\n"
      "  - id: a\n    payouts: {sale: {cpa: {amount: 100, currency: EUR}}}\n"
      "  - id: b\n    payouts: {sale: {cpa: {amount: 100, currency: EUR}}}\n"
      "  - id: c\n    payouts: {sale: {cpa: {amount: 101, currency: EUR}}}\n"
      "  - id: d\n    payouts: {sale: {cpa: {amount: 100, currency: USD}}}\n"
      "  - id: e\n    payouts: {sale: {cpa: {amount: 100, currency: EUR}}}\n"
      "    affiliate_payouts: {x: {sale: {revshare_bps: 5}}}\n"
      "  - id: f\n    ctit_min: 1s\n    payouts: {sale: {cpa: {amount: 100, currency: EUR}}}\n");
  ASSERT_NE(catalog, nullptr);
  const std::string a = catalog->Find("a")->version;
  EXPECT_EQ(a.size(), 64u);
  EXPECT_EQ(catalog->Find("b")->version, a);  // same terms, another offer id
  for (const char* other : {"c", "d", "e", "f"}) {
    EXPECT_NE(catalog->Find(other)->version, a) << other;
  }
}

TEST(OffersCatalog, LoadMissingFile) {
  auto catalog = OffersCatalog::Load("/nonexistent/offers.yaml");
  ASSERT_FALSE(catalog.ok());
  EXPECT_THAT(catalog.status().message(),
              HasSubstr("offers.file: cannot read '/nonexistent/offers.yaml'"));
}

TEST(OffersCatalog, FullOfferParses) {
  auto catalog = MustLoad(R"(
offers:
  - id: "a.b_c:d-1"
    attribution_window: 1d12h
    model: time_decay
    half_life: 36h
    ctit_min: 100ms
    ctit_max: 2d
    payouts:
      sale: {revshare_bps: 10000}
      lead: {cpa: {amount: 0, currency: JPY}}
      install: {cpa: {amount: 1000000000000000, currency: KWD}}
    affiliate_payouts:
      aff-9: {sale: {revshare_bps: 0}}
)");
  ASSERT_NE(catalog, nullptr);
  EXPECT_EQ(catalog->size(), 1u);
  const OfferTerms* t = catalog->Find("a.b_c:d-1");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->attribution_window_ms, 36 * 3600 * 1000LL);
  EXPECT_EQ(t->model, AttributionModel::kTimeDecay);
  EXPECT_EQ(t->half_life_ms, 36 * 3600 * 1000LL);
  EXPECT_EQ(t->ctit_min_ms, 100);
  EXPECT_EQ(t->ctit_max_ms, 2 * kDay);
  EXPECT_EQ(t->PayoutFor("sale", ""), Revshare(10000));
  EXPECT_EQ(t->PayoutFor("lead", ""), Cpa(0, "JPY"));
  EXPECT_EQ(t->PayoutFor("install", ""), Cpa(1'000'000'000'000'000, "KWD"));
  EXPECT_EQ(t->PayoutFor("sale", "aff-9"), Revshare(0));
  EXPECT_EQ(t->PayoutFor("lead", "aff-9"), Cpa(0, "JPY"));  // no override for lead
  EXPECT_EQ(t->PayoutFor("sale", "aff-other"), Revshare(10000));
  EXPECT_EQ(t->PayoutFor("refund", ""), std::nullopt);
  EXPECT_EQ(t->PayoutFor("refund", "aff-9"), std::nullopt);
  EXPECT_EQ(catalog->max_attribution_window_ms(), 36 * 3600 * 1000LL);
}

TEST(OffersCatalog, BuiltInDefaultsWhenNothingIsSet) {
  auto catalog = MustLoad("offers:\n  - id: off-1\n");
  ASSERT_NE(catalog, nullptr);
  const OfferTerms* t = catalog->Find("off-1");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->attribution_window_ms, 30 * kDay);
  EXPECT_EQ(t->model, AttributionModel::kLastClick);
  EXPECT_EQ(t->half_life_ms, 7 * kDay);
  EXPECT_EQ(t->ctit_min_ms, 0);
  EXPECT_EQ(t->ctit_max_ms, 0);
  EXPECT_TRUE(t->payouts.empty());
  EXPECT_TRUE(t->affiliate_payouts.empty());
}

TEST(OffersCatalog, DefaultsInheritance) {
  auto catalog = MustLoad(R"(
defaults:
  attribution_window: 20d
  model: position_based
  half_life: 2d
  ctit_min: 5s
  ctit_max: 3d
  payouts:
    sale: {revshare_bps: 1000}
    lead: {cpa: {amount: 250, currency: EUR}}
  affiliate_payouts:
    aff-1: {sale: {revshare_bps: 2000}, lead: {cpa: {amount: 1, currency: EUR}}}
offers:
  - id: off-1
    attribution_window: 7d
    ctit_max: 0s
    payouts:
      sale: {cpa: {amount: 1500, currency: USD}}
    affiliate_payouts:
      aff-1: {sale: {revshare_bps: 3000}}
  - id: off-2
)");
  ASSERT_NE(catalog, nullptr);
  const OfferTerms* t = catalog->Find("off-1");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->offer_id, "off-1");
  EXPECT_EQ(t->attribution_window_ms, 7 * kDay);          // own
  EXPECT_EQ(t->model, AttributionModel::kPositionBased);  // inherited
  EXPECT_EQ(t->half_life_ms, 2 * kDay);
  EXPECT_EQ(t->ctit_min_ms, 5000);
  EXPECT_EQ(t->ctit_max_ms, 0);  // explicitly "no bound" beats the default
  // Payouts merge per goal.
  EXPECT_EQ(t->PayoutFor("sale", ""), Cpa(1500, "USD"));
  EXPECT_EQ(t->PayoutFor("lead", ""), Cpa(250, "EUR"));
  // Overrides merge per (affiliate, goal).
  EXPECT_EQ(t->PayoutFor("sale", "aff-1"), Revshare(3000));
  EXPECT_EQ(t->PayoutFor("lead", "aff-1"), Cpa(1, "EUR"));

  const OfferTerms* t2 = catalog->Find("off-2");
  ASSERT_NE(t2, nullptr);
  EXPECT_EQ(t2->offer_id, "off-2");
  EXPECT_EQ(t2->attribution_window_ms, 20 * kDay);
  EXPECT_EQ(t2->ctit_max_ms, 3 * kDay);
  EXPECT_EQ(t2->PayoutFor("sale", ""), Revshare(1000));
  EXPECT_EQ(t2->PayoutFor("sale", "aff-1"), Revshare(2000));
  EXPECT_EQ(catalog->size(), 2u);
}

TEST(OffersCatalog, FindUnlistedOfferUsesDefaults) {
  auto catalog = MustLoad(R"(
defaults:
  model: linear
  payouts:
    sale: {revshare_bps: 500}
offers:
  - id: off-1
)");
  ASSERT_NE(catalog, nullptr);
  const OfferTerms* t = catalog->Find("off-unlisted");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->offer_id, "");  // shared object: callers use the event's offer id
  EXPECT_EQ(t->model, AttributionModel::kLinear);
  EXPECT_EQ(t->PayoutFor("sale", ""), Revshare(500));
  EXPECT_EQ(catalog->Find("off-other"), t);
  EXPECT_EQ(catalog->size(), 1u);
}

TEST(OffersCatalog, FindUnlistedOfferWithoutDefaults) {
  auto catalog = MustLoad("offers:\n  - id: off-1\n");
  ASSERT_NE(catalog, nullptr);
  EXPECT_NE(catalog->Find("off-1"), nullptr);
  EXPECT_EQ(catalog->Find("off-2"), nullptr);
  EXPECT_EQ(catalog->Find(""), nullptr);
}

TEST(OffersCatalog, DefaultsOnlyAndEmptyOffers) {
  auto catalog = MustLoad("defaults:\n  attribution_window: 3d\noffers:\n");
  ASSERT_NE(catalog, nullptr);
  EXPECT_EQ(catalog->size(), 0u);
  ASSERT_NE(catalog->Find("x"), nullptr);
  EXPECT_EQ(catalog->Find("x")->attribution_window_ms, 3 * kDay);
  EXPECT_EQ(catalog->max_attribution_window_ms(), 3 * kDay);
}

TEST(OffersCatalog, MaxAttributionWindow) {
  // Over the offers and the defaults (unlisted offers use the defaults).
  auto a = MustLoad(R"(
defaults: {attribution_window: 10d}
offers:
  - {id: a, attribution_window: 1d}
  - {id: b, attribution_window: 45d}
  - {id: c}
)");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->max_attribution_window_ms(), 45 * kDay);
  auto b = MustLoad(R"(
defaults: {attribution_window: 60d}
offers:
  - {id: a, attribution_window: 1d}
)");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->max_attribution_window_ms(), 60 * kDay);
  auto c = MustLoad("offers: []\n");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->max_attribution_window_ms(), 0);
  auto d = MustLoad("offers:\n  - {id: a}\n");  // built-in 30d
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->max_attribution_window_ms(), 30 * kDay);
  auto e = MustLoad("offers:\n  - {id: a, attribution_window: 400d}\n");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->max_attribution_window_ms(), 400 * kDay);
}

// ---- Validation errors: each names the key path. ----------------------------

TEST(OffersValidation, PayoutNeedsExactlyOneForm) {
  EXPECT_THAT(ErrorOf(OneOffer("    payouts:\n      sale: {}\n")),
              HasSubstr("offers.file: offers[0].payouts.sale: exactly one of cpa, revshare_bps"));
  EXPECT_THAT(ErrorOf(OneOffer("    payouts:\n      sale: {revshare_bps: 5, cpa: {amount: 1, "
                               "currency: EUR}}\n")),
              HasSubstr("offers[0].payouts.sale: exactly one of cpa, revshare_bps"));
  EXPECT_THAT(ErrorOf(OneOffer("    payouts:\n      sale: 5\n")),
              HasSubstr("offers[0].payouts.sale: expected a map with cpa or revshare_bps"));
}

TEST(OffersValidation, ErrorsNameTheSourceLine) {
  EXPECT_THAT(ErrorOf(OneOffer("    payouts:\n      sale: {}\n")),
              HasSubstr("(in test.yaml line 4)"));
}

TEST(OffersValidation, UnknownModel) {
  const std::string yaml = "offers:\n  - id: a\n  - id: b\n    model: lastclick\n";
  EXPECT_THAT(ErrorOf(yaml), HasSubstr("offers[1].model: unknown model 'lastclick' (last_click, "
                                       "first_click, linear, time_decay, position_based)"));
}

TEST(OffersValidation, UnknownKeys) {
  EXPECT_THAT(ErrorOf("offers: []\nofers: []\n"), HasSubstr("offers.file: ofers: unknown key"));
  EXPECT_THAT(ErrorOf(OneOffer("    atribution_window: 1d\n")),
              HasSubstr("offers[0].atribution_window: unknown key (did you mean "
                        "'attribution_window'?)"));
  EXPECT_THAT(ErrorOf("defaults:\n  id: x\n"), HasSubstr("defaults.id: unknown key"));
  EXPECT_THAT(ErrorOf(OneOffer("    payouts:\n      sale: {revshare: 5}\n")),
              HasSubstr("offers[0].payouts.sale.revshare: unknown key"));
  EXPECT_THAT(
      ErrorOf(OneOffer("    payouts:\n      sale: {cpa: {amount: 1, currency: EUR, cents: 1}}\n")),
      HasSubstr("offers[0].payouts.sale.cpa.cents: unknown key"));
}

TEST(OffersValidation, KeySetTwice) {
  EXPECT_THAT(ErrorOf(OneOffer("    model: linear\n    model: last_click\n")),
              HasSubstr("offers[0].model: set more than once"));
}

TEST(OffersValidation, DuplicateOfferIds) {
  EXPECT_THAT(ErrorOf("offers:\n  - id: off-1\n  - id: off-2\n  - id: off-1\n"),
              HasSubstr("offers[2].id: duplicate offer id 'off-1' (also offers[0])"));
}

TEST(OffersValidation, OfferIdRule) {
  EXPECT_THAT(ErrorOf("offers:\n  - model: linear\n"), HasSubstr("offers[0]: missing key 'id'"));
  EXPECT_THAT(ErrorOf("offers:\n  - id: off 1\n"),
              HasSubstr("offers[0].id: offer id must be 1..64 characters of [A-Za-z0-9._:-], got "
                        "'off 1'"));
  EXPECT_THAT(ErrorOf("offers:\n  - id: off/1\n"), HasSubstr("offers[0].id: offer id must be"));
  EXPECT_THAT(ErrorOf("offers:\n  - id: \"\"\n"), HasSubstr("offers[0].id: offer id must be"));
  EXPECT_THAT(ErrorOf("offers:\n  - id: " + std::string(65, 'a') + "\n"),
              HasSubstr("offers[0].id: offer id must be"));
  EXPECT_NE(MustLoad("offers:\n  - id: " + std::string(64, 'a') + "\n"), nullptr);
  EXPECT_THAT(ErrorOf("offers:\n  - id:\n"), HasSubstr("offers[0].id: no value given"));
  EXPECT_THAT(ErrorOf("offers:\n  - id: [a]\n"),
              HasSubstr("offers[0].id: expected a value, got a list"));
}

TEST(OffersValidation, AttributionWindowBounds) {
  EXPECT_THAT(ErrorOf(OneOffer("    attribution_window: 0s\n")),
              HasSubstr("offers[0].attribution_window: must be > 0 and <= 400d, got 0"));
  EXPECT_THAT(ErrorOf(OneOffer("    attribution_window: 401d\n")),
              HasSubstr("offers[0].attribution_window: must be > 0 and <= 400d, got 401d"));
  EXPECT_THAT(ErrorOf(OneOffer("    attribution_window: -1d\n")),
              HasSubstr("offers[0].attribution_window: must be > 0 and <= 400d"));
  EXPECT_THAT(ErrorOf(OneOffer("    attribution_window: soon\n")),
              HasSubstr("offers[0].attribution_window: expected a duration"));
  EXPECT_THAT(ErrorOf(OneOffer("    attribution_window: 1500us\n")),
              HasSubstr("offers[0].attribution_window: must be a whole number of milliseconds"));
  EXPECT_THAT(ErrorOf("defaults:\n  attribution_window: 0s\n"),
              HasSubstr("defaults.attribution_window: must be > 0"));
}

TEST(OffersValidation, HalfLifePositive) {
  EXPECT_THAT(ErrorOf(OneOffer("    half_life: 0s\n")),
              HasSubstr("offers[0].half_life: must be > 0 and <= 400d, got 0"));
  EXPECT_NE(MustLoad(OneOffer("    half_life: 1ms\n")), nullptr);
}

TEST(OffersValidation, CtitBounds) {
  EXPECT_THAT(ErrorOf(OneOffer("    ctit_min: 1h\n    ctit_max: 10m\n")),
              HasSubstr("offers[0].ctit_max: ctit_max (10m) must be >= ctit_min (1h) when both are "
                        "set"));
  EXPECT_THAT(ErrorOf(OneOffer("    ctit_min: -1s\n")),
              HasSubstr("offers[0].ctit_min: must be between 0 and 400d"));
  // 0 means "no bound": no conflict.
  EXPECT_NE(MustLoad(OneOffer("    ctit_min: 1h\n    ctit_max: 0s\n")), nullptr);
  EXPECT_NE(MustLoad(OneOffer("    ctit_min: 1h\n    ctit_max: 1h\n")), nullptr);
  // A conflict that arises from inheritance names the offer's own key.
  EXPECT_THAT(ErrorOf("defaults:\n  ctit_max: 10m\noffers:\n  - id: a\n    ctit_min: 1h\n"),
              HasSubstr("offers[0].ctit_min: ctit_max (10m) must be >= ctit_min (1h)"));
  EXPECT_THAT(ErrorOf("defaults:\n  ctit_min: 1h\n  ctit_max: 10m\n"),
              HasSubstr("defaults: ctit_max (10m) must be >= ctit_min (1h)"));
}

TEST(OffersValidation, RevshareRange) {
  EXPECT_THAT(ErrorOf("offers:\n  - id: a\n  - id: b\n  - id: c\n    payouts:\n      sale: "
                      "{revshare_bps: 12000}\n"),
              HasSubstr("offers.file: offers[2].payouts.sale: revshare_bps must be 0..10000, got "
                        "12000"));
  EXPECT_THAT(ErrorOf(OneOffer("    payouts:\n      sale: {revshare_bps: -1}\n")),
              HasSubstr("offers[0].payouts.sale: revshare_bps must be 0..10000, got -1"));
  EXPECT_THAT(ErrorOf(OneOffer("    payouts:\n      sale: {revshare_bps: 10.5}\n")),
              HasSubstr("offers[0].payouts.sale.revshare_bps: expected an integer, got '10.5'"));
}

TEST(OffersValidation, CpaAmountAndCurrency) {
  EXPECT_THAT(
      ErrorOf(OneOffer("    payouts:\n      sale: {cpa: {amount: -1, currency: EUR}}\n")),
      HasSubstr("offers[0].payouts.sale.cpa.amount: must be 0..1000000000000000 (minor units), "
                "got -1"));
  EXPECT_THAT(ErrorOf(OneOffer(
                  "    payouts:\n      sale: {cpa: {amount: 1000000000000001, currency: EUR}}\n")),
              HasSubstr("offers[0].payouts.sale.cpa.amount: must be 0..1000000000000000"));
  EXPECT_THAT(ErrorOf(OneOffer("    payouts:\n      sale: {cpa: {amount: 1, currency: usd}}\n")),
              HasSubstr("offers[0].payouts.sale.cpa.currency: unknown currency 'usd'"));
  EXPECT_THAT(ErrorOf(OneOffer("    payouts:\n      sale: {cpa: {amount: 1, currency: XYZ}}\n")),
              HasSubstr("offers[0].payouts.sale.cpa.currency: unknown currency 'XYZ'"));
  EXPECT_THAT(ErrorOf(OneOffer("    payouts:\n      sale: {cpa: {amount: 1}}\n")),
              HasSubstr("offers[0].payouts.sale.cpa: missing key 'currency'"));
  EXPECT_THAT(ErrorOf(OneOffer("    payouts:\n      sale: {cpa: {currency: EUR}}\n")),
              HasSubstr("offers[0].payouts.sale.cpa: missing key 'amount'"));
}

TEST(OffersValidation, GoalAndAffiliateNames) {
  EXPECT_THAT(ErrorOf(OneOffer("    payouts:\n      Sale: {revshare_bps: 1}\n")),
              HasSubstr("offers[0].payouts.Sale: goal must match [a-z0-9_]{1,32}"));
  EXPECT_THAT(
      ErrorOf(OneOffer("    affiliate_payouts:\n      \"aff 1\": {sale: {revshare_bps: 1}}\n")),
      HasSubstr("offers[0].affiliate_payouts.aff 1: affiliate id must be"));
  EXPECT_THAT(
      ErrorOf(OneOffer("    affiliate_payouts:\n      aff-1: {sale: {revshare_bps: 20000}}\n")),
      HasSubstr(
          "offers[0].affiliate_payouts.aff-1.sale: revshare_bps must be 0..10000, got 20000"));
}

TEST(OffersValidation, DocumentShape) {
  EXPECT_THAT(ErrorOf(""),
              HasSubstr("offers.file: expected a map with 'defaults' and/or 'offers'"));
  EXPECT_THAT(ErrorOf("- a\n"), HasSubstr("expected a map with 'defaults' and/or 'offers'"));
  EXPECT_THAT(ErrorOf("offers: {id: a}\n"),
              HasSubstr("offers: expected a list of offers, got a map"));
  EXPECT_THAT(ErrorOf("offers:\n  - off-1\n"),
              HasSubstr("offers[0]: expected an offer (a map), got a value"));
  EXPECT_THAT(ErrorOf("defaults: 3\n"), HasSubstr("defaults: expected a map, got a value"));
  EXPECT_THAT(ErrorOf("offers: [\n"),
              HasSubstr("offers.file: 'test.yaml' is not valid YAML: line"));
}

}  // namespace
}  // namespace tally
