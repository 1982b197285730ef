// TrafficGenerator: a deterministic stream of click and conversion messages
// with known ground truth.
//
// Design. Clicks are generated in event-time order (a Poisson process at
// LoadOptions::event_clicks_per_second). A click that converts schedules its
// conversion 30 s .. 2 days later in a priority queue; a conversion that
// changes status schedules the follow-up message. Before each click the
// generator releases every scheduled message whose event time has passed, so
// the stream is in (near) event-time order, as trackers deliver it, except
// for the deliberate out-of-order conversions, which are emitted right
// before their click. Independently, any message may be followed a few
// messages later by an identical re-send (duplicate), and a bad message with
// exactly one defect may be slipped in at any point.
//
// Memory is bounded by what is scheduled (about conversion_rate x clicks in
// the worst case, as specs, not bytes) and not by the length of the run.
//
// Determinism: the same options and encoder give a byte-identical sequence.
// Every random decision is drawn from one std::mt19937_64 through our own
// distributions (random.h); per-user attributes are hashes of the user index.
//
// Not thread-safe; one generator per thread.
#ifndef TALLY_TOOLS_LOADGEN_GENERATOR_H_
#define TALLY_TOOLS_LOADGEN_GENERATOR_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tools/loadgen/options.h"
#include "tools/loadgen/payload.h"
#include "tools/loadgen/random.h"

namespace tally::loadgen {

enum class Topic : uint8_t { kClicks = 0, kConversions = 1 };

// Tags: how a message was generated (not what the processor must decide,
// which also depends on its configuration).
enum TruthTag : uint32_t {
  kTagBot = 1u << 0,            // click with a bot user agent
  kTagBlocklistedIp = 1u << 1,  // click from 198.51.100.0/24 or 2001:db8:bad::/48
  kTagFlood = 1u << 2,          // click inside a one-IP burst
  kTagDuplicate = 1u << 3,      // identical re-send of an earlier message
  kTagOutOfOrder = 1u << 4,     // conversion produced before its click
  kTagStatusChange = 1u << 5,   // second message of a conversion, new status
  kTagUnknownOrder = 1u << 6,   // status change for an order never sent
};
inline constexpr int kTagCount = 7;
// Wire names in bit order: "bot", "blocklisted_ip", "flood", "duplicate",
// "out_of_order", "status_change", "unknown_order".
const char* TagName(int bit);

// What the ground truth records about one message.
struct MessageTruth {
  uint64_t seq = 0;  // position in the generated sequence, from 0
  Topic topic = Topic::kClicks;
  // click_id of a click, conversion_id of a conversion; empty when the
  // payload does not carry it intact (malformed, or the id is the defect).
  std::string id;
  std::string decode = "ok";           // "ok" or the RejectReason wire name
  std::string defect;                  // empty for a valid message
  std::optional<uint64_t> dup_of_seq;  // for a duplicate: the seq it repeats
  bool has_duplicate = false;          // a later message repeats this one
  uint32_t tags = 0;

  // The event (for a bad message: the valid template the defect was
  // applied to). For a conversion, click_id / affiliate_id / click_ts are
  // those of the click it was generated from, even when the payload does
  // not carry the click_id (key mode user_id).
  std::string click_id;
  std::string conversion_id;
  std::string offer_id;
  std::string affiliate_id;
  std::string user_id;
  std::string ip;
  std::string goal;
  std::string currency;
  std::string status;
  int64_t amount = 0;
  int64_t ts = 0;
  int64_t click_ts = 0;
  // For a status change: the status of the conversion message it follows.
  std::string previous_status;
};

struct GeneratedMessage {
  Topic topic = Topic::kClicks;
  std::string key;
  std::string value;
  MessageTruth truth;
};

// Counts over everything generated so far.
struct GenerationStats {
  uint64_t messages = 0;
  uint64_t click_messages = 0;
  uint64_t conversion_messages = 0;
  uint64_t valid_clicks = 0;       // first sends, decode ok
  uint64_t valid_conversions = 0;  // first sends of new conversions, decode ok
  uint64_t status_changes = 0;     // incl. unknown orders
  uint64_t duplicates = 0;
  uint64_t bad = 0;
  uint64_t bytes = 0;
  std::map<std::string, uint64_t> bad_by_reason;
  uint64_t tag_counts[kTagCount] = {};
};

class TrafficGenerator {
 public:
  // `encoder` encodes valid events (and the protobuf defects the model can
  // carry); its format must equal options.format.
  static absl::StatusOr<std::unique_ptr<TrafficGenerator>> Create(
      const LoadOptions& options, std::unique_ptr<PayloadEncoder> encoder);

  // Fills *out with the next message; false when the stream is complete.
  bool Next(GeneratedMessage* out);

  const GenerationStats& stats() const { return stats_; }
  const LoadOptions& options() const { return options_; }

 private:
  struct Scheduled {
    int64_t ts = 0;
    uint64_t order = 0;  // tie-break: scheduling order, for determinism
    ConversionSpec spec;
    MessageTruth truth;  // pre-filled event fields and tags
    bool operator>(const Scheduled& other) const {
      return ts != other.ts ? ts > other.ts : order > other.order;
    }
  };
  struct PendingDuplicate {
    uint64_t due_seq = 0;
    uint64_t order = 0;
    GeneratedMessage message;
    bool operator>(const PendingDuplicate& other) const {
      return due_seq != other.due_seq ? due_seq > other.due_seq : order > other.order;
    }
  };

  TrafficGenerator(const LoadOptions& options, std::unique_ptr<PayloadEncoder> encoder);

  // Produces one message that is not a re-send; false when nothing is left.
  bool NextOriginal(GeneratedMessage* out);
  void GenerateClick();  // appends the click (and maybe its conversion) to ready_
  void MakeBad(GeneratedMessage* out);
  void EmitScheduled(Scheduled s, GeneratedMessage* out);
  void FillConversionMessage(const ConversionSpec& spec, MessageTruth truth, GeneratedMessage* out);

  ClickSpec MakeClickSpec(uint64_t user, int64_t ts);
  std::string NewClickId();
  std::string NewConversionId();
  void ChooseAmount(ConversionSpec* spec);
  void Account(const GeneratedMessage& m);

  const LoadOptions options_;
  std::unique_ptr<PayloadEncoder> encoder_;
  Rng rng_;
  const ZipfTable affiliates_;
  const ZipfTable offers_;
  const uint64_t users_;
  const uint64_t id_salt_;
  const uint64_t clicks_to_generate_;

  int64_t clock_ms_;
  uint64_t clicks_generated_ = 0;
  uint64_t click_counter_ = 0;       // ids, incl. bad templates
  uint64_t conversion_counter_ = 0;  // ids, incl. bad templates and unknown orders
  uint64_t schedule_order_ = 0;
  uint64_t next_seq_ = 0;

  // Flood burst in progress.
  uint64_t burst_left_ = 0;
  std::string burst_ip_;
  uint64_t burst_gap_ms_ = 0;

  std::priority_queue<Scheduled, std::vector<Scheduled>, std::greater<>> scheduled_;
  std::priority_queue<PendingDuplicate, std::vector<PendingDuplicate>, std::greater<>> duplicates_;
  std::deque<GeneratedMessage> ready_;  // generated together, emitted in order
  std::string scratch_;
  GenerationStats stats_;
};

}  // namespace tally::loadgen

#endif  // TALLY_TOOLS_LOADGEN_GENERATOR_H_
