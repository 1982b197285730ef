// tally-verify: reads Tally's input and output topics, computes with the
// attribution oracle (oracle.h) what a correct processor must have written,
// and compares that with what is on the output topics. Exit 0 when nothing
// is lost, changed or wrongly decided (identical copies, which at-least-once
// delivery allows, are counted and tolerated up to --max-copies), 1 on any
// mismatch, 2 on bad flags or I/O errors. Copies vs mismatches and the
// status-order rule with copies: see classify.h.
//
// Checked:
//  - `commissions`: the multiset of (commission_id, status, payout, click_id,
//    affiliate_id, conversion_id, credit_ppm, click_count) equals the
//    oracle's up to identical copies, and the statuses of each commission_id
//    obey the order rule of classify.h (one id is one key, so one partition);
//  - `rejected`: exactly the expected (source topic, partition, offset,
//    reason) set, with the original key and value bytes (or, when marked
//    truncated, a prefix of them with the size and SHA-256 of the whole;
//    rejected_check.h); a second identical rejection of one message is a
//    copy, a different one a mismatch;
//  - `unattributed`: exactly the expected conversions with their reasons, up
//    to identical copies;
//  - flood groups: exactly max(0, n - limit) clicks of each (ip, window)
//    group are rejected as ip_click_flood (which ones is the processor's
//    choice, fed back into the oracle);
//  - the ground truth agrees with what is on the input topics (every record
//    is there, with the decode verdict our decoder gives);
//  - with --processor-summary (repeatable: one per instance or restart, summed):
//    when no copies were found, the processors together consumed exactly
//    the input and passed on exactly its decodable events (clean stops
//    never replay); with copies, replays may consume messages twice and a
//    killed run writes no summary, so only the sums are printed. The pending
//    count is checked only with a single summary (it is a per-instance
//    figure).
//  - with --processor-log (repeatable): the processors' stderr; every
//    `state gap: partition=<p> ...` line marks task p (partition p of both
//    input topics) as gapped, and every mismatch that can be placed on an
//    input partition is reported as on a gapped partition or not. With
//    --allow-gap-mismatches only mismatches elsewhere fail the run.
//
// The last stdout line is machine-readable for scripts:
//   tally-verify: RESULT mismatches=<n> gapped_mismatches=<n> copies=<n>
//       commissions=<n> state_gaps=<n> verdict=<EXACT_MATCH|COPIES_ONLY|...>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "processor/codec/codec.h"
#include "processor/fraud/fraud_rules.h"
#include "processor/kafka/kafka.h"
#include "processor/offers/offers.h"
#include "simdjson.h"
#include "tools/verify/classify.h"
#include "tools/verify/oracle.h"
#include "tools/verify/rejected_check.h"
#include "tools/verify/truth.h"

ABSL_FLAG(std::string, bootstrap_servers, "", "Kafka bootstrap servers");
ABSL_FLAG(std::string, truth, "", "Ground-truth file written by tally-loadgen");
ABSL_FLAG(std::string, clicks_topic, "clicks", "Input topic of clicks");
ABSL_FLAG(std::string, conversions_topic, "conversions", "Input topic of conversions");
ABSL_FLAG(std::string, commissions_topic, "commissions", "Output topic of commissions");
ABSL_FLAG(std::string, rejected_topic, "rejected", "Output topic of rejected input");
ABSL_FLAG(std::string, unattributed_topic, "unattributed",
          "Output topic of unattributed conversions");
ABSL_FLAG(std::string, format, "json", "Output wire format: json | protobuf");
ABSL_FLAG(std::string, input_format, "json", "Input wire format used by the load generator");
ABSL_FLAG(std::string, offers_file, "deploy/config/offers.yaml", "Offers file (offers.file)");
ABSL_FLAG(std::string, bot_user_agents_file, "deploy/config/bot_user_agents.txt",
          "Bot user-agent patterns (fraud.bot_user_agents_file)");
ABSL_FLAG(std::string, ip_blocklist_file, "deploy/config/ip_blocklist.txt",
          "IP blocklist (fraud.ip_blocklist_file)");
ABSL_FLAG(int64_t, max_clicks_per_ip, 20, "fraud.max_clicks_per_ip");
ABSL_FLAG(std::string, flood_window, "1m", "fraud.flood_window: milliseconds or a duration");
ABSL_FLAG(std::string, attribution_key, "click_id",
          "processing.attribution_key: click_id | user_id");
ABSL_FLAG(std::string, pending_grace, "10m",
          "processing.pending_grace: milliseconds or a duration");
ABSL_FLAG(std::string, max_click_lateness, "30s",
          "processing.max_click_lateness: milliseconds or a duration");
ABSL_FLAG(bool, accept_candidate_prefixes, false,
          "user_id mode: also accept commissions computed from the first k candidate clicks "
          "when that is what is on the topic (a processor that does not wait for its clicks "
          "input); default: expect every click up to the conversion");
ABSL_FLAG(std::vector<std::string>, processor_summary, {},
          "Optional, repeatable: files with the processors' summary JSON (summed)");
ABSL_FLAG(std::vector<std::string>, processor_log, {},
          "Optional, repeatable: processors' stderr logs; their state-gap lines mark tasks");
ABSL_FLAG(int64_t, max_copies, -1,
          "Fail when more identical copies than this are on the output topics (-1: unlimited; "
          "0: any copy fails)");
ABSL_FLAG(bool, allow_revocation_copies, false,
          "Identical copies on a task whose partitions were revoked with uncommitted offsets, "
          "or whose transaction was aborted (both logged by the processor; the mock broker "
          "refuses commits during a rebalance and keeps aborted records visible) do not count "
          "against --max-copies (they are printed and counted)");
ABSL_FLAG(bool, allow_gap_mismatches, false,
          "Mismatches that lie on a partition with a logged state gap do not fail the run "
          "(they are still printed and counted)");
ABSL_FLAG(int, timeout_seconds, 120, "Give up reading topics after this long");
ABSL_FLAG(std::string, dump_outputs, "",
          "Optional: write every output record (commissions, rejected, unattributed) to this "
          "file as one line each, 'kind<TAB>partition<TAB>hex(key)<TAB>hex(value)', sorted, "
          "rejected_at and produced_at zeroed: two runs over one input can be compared byte "
          "for byte (tests/integration)");
ABSL_FLAG(int, max_errors_shown, 20, "Mismatches printed in detail");

namespace tally::verify {
namespace {

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Mismatches, counted per category so that the summary says where they are,
// and per whether they lie on a task (input partition) with a logged state
// gap. Identical copies are counted apart, per output topic.
struct Report {
  uint64_t errors = 0;
  uint64_t gapped_errors = 0;  // of `errors`
  int shown = 0;
  std::map<std::string, uint64_t> by_category;
  std::set<int32_t> gapped_partitions;
  std::map<int32_t, uint64_t> errors_by_partition;
  std::map<std::string, uint64_t> copies;  // output topic -> identical copies
  int copies_shown = 0;
  // Tasks revoked with offsets the broker would not commit (log lines), and
  // the copies that lie on them.
  std::set<int32_t> revoked_uncommitted;
  uint64_t revocation_copies = 0;
  // `partition`: the input partition (task) the mismatch lies on, -1 when it
  // cannot be placed on one.
  void Error(const std::string& category, const std::string& what, int32_t partition = -1) {
    ++errors;
    ++by_category[category];
    const bool gapped = partition >= 0 && gapped_partitions.contains(partition);
    if (gapped) ++gapped_errors;
    if (partition >= 0) ++errors_by_partition[partition];
    if (shown < absl::GetFlag(FLAGS_max_errors_shown)) {
      ++shown;
      std::cerr << "MISMATCH [" << category << "]"
                << (partition < 0
                        ? std::string()
                        : absl::StrCat(" [task ", partition,
                                       gapped ? ", state gap logged" : ", no state gap", "]"))
                << ": " << what << "\n";
    }
  }
  void Copy(const std::string& topic, const std::string& what, uint64_t n = 1,
            int32_t partition = -1) {
    copies[topic] += n;
    if (partition >= 0 && revoked_uncommitted.contains(partition)) revocation_copies += n;
    if (copies_shown < 5) {
      ++copies_shown;
      std::cerr << "copy [" << topic << "] x" << n << ": " << what << "\n";
    }
  }
  uint64_t total_copies() const {
    uint64_t n = 0;
    for (const auto& [topic, c] : copies) n += c;
    return n;
  }
};

// The config's duration syntax as far as the verifier needs it: integer
// milliseconds, absl durations ("30s", "1h30m"), or whole days ("35d").
absl::StatusOr<int64_t> ParseDurationMs(const std::string& flag, const std::string& text) {
  int64_t ms = 0;
  if (text.empty()) return absl::InvalidArgumentError(absl::StrCat("--", flag, ": empty"));
  if (absl::SimpleAtoi(text, &ms)) return ms;
  absl::Duration d = absl::ZeroDuration();
  std::string rest = text;
  if (size_t pos = text.find('d'); pos != std::string::npos && pos > 0 &&
                                   std::all_of(text.begin(), text.begin() + pos, ::isdigit)) {
    int64_t days = 0;
    if (!absl::SimpleAtoi(text.substr(0, pos), &days)) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag, ": bad duration '", text, "'"));
    }
    d = absl::Hours(24 * days);
    rest = text.substr(pos + 1);
  }
  absl::Duration more = absl::ZeroDuration();
  if (!rest.empty() && !absl::ParseDuration(rest, &more)) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": bad duration '", text, "'"));
  }
  return absl::ToInt64Milliseconds(d + more);
}

// A consumed message, copied out: librdkafka's handle cannot be destroyed
// while any of its messages is alive (rd_kafka_destroy waits for them), so
// nothing that outlives the consumer may hold a kafka::Message.
struct ConsumedMessage {
  int32_t partition = -1;
  int64_t offset = -1;
  std::string key;
  std::string value;
};

// Every topic to its end, with one consumer (one group join), messages per
// topic sorted by (partition, offset). A topic that does not exist reads as
// empty.
absl::StatusOr<std::map<std::string, std::vector<ConsumedMessage>>> ReadTopicsToEnd(
    const std::vector<std::string>& topics) {
  std::map<std::string, std::vector<ConsumedMessage>> messages;
  for (const std::string& topic : topics) messages[topic];
  {
    kafka::Properties props{
        {"bootstrap.servers", absl::GetFlag(FLAGS_bootstrap_servers)},
        {"group.id", absl::StrCat("tally-verify-", getpid(), "-", absl::ToUnixMicros(absl::Now()))},
        {"session.timeout.ms", "6000"},
        {"queued.min.messages", "1000000"},
        // Only what the processor committed is output.
        {"isolation.level", "read_committed"},
    };
    auto consumer = kafka::Consumer::Create(props, nullptr);
    if (!consumer.ok()) return consumer.status();
    if (auto s = (*consumer)->Subscribe(topics); !s.ok()) return s;
    std::vector<std::unique_ptr<kafka::Message>> batch;
    const absl::Time deadline = absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_timeout_seconds));
    bool done = false;
    while (!done) {
      if (absl::Now() >= deadline) {
        return absl::DeadlineExceededError("reading the topics did not reach their end in time");
      }
      batch.clear();
      if (auto s = (*consumer)->Poll(10000, absl::Milliseconds(200), &batch); !s.ok()) return s;
      for (const auto& m : batch) {
        messages[std::string(m->topic())].push_back(
            {m->partition(), m->offset(), std::string(m->key()), std::string(m->value())});
      }
      done = batch.empty() && !(*consumer)->Assignment().empty() && (*consumer)->AllAssignedAtEof();
    }
    batch.clear();
    (void)(*consumer)->Close();
  }
  for (auto& [topic, list] : messages) {
    std::stable_sort(list.begin(), list.end(), [](const auto& a, const auto& b) {
      return std::tie(a.partition, a.offset) < std::tie(b.partition, b.offset);
    });
  }
  return messages;
}

// The output records as sorted lines (the kind, not the topic name, so that
// two runs writing to differently named topics compare equal). The
// processing-time fields of the contract, `rejected_at` and (v1.1)
// `produced_at`, are zeroed (decoded and re-encoded in the output format):
// everything else must be equal.
absl::Status DumpOutputs(const std::map<std::string, std::vector<ConsumedMessage>>& topics,
                         const std::vector<std::pair<std::string, std::string>>& kinds,
                         WireFormat format, const std::string& path) {
  EventDecoder decoder(format);
  EventEncoder encoder(format);
  std::vector<std::string> lines;
  for (const auto& [kind, topic] : kinds) {
    auto it = topics.find(topic);
    if (it == topics.end()) continue;
    for (const ConsumedMessage& m : it->second) {
      std::string value = m.value;
      RejectedEvent rejected;
      Commission commission;
      UnattributedConversion unattributed;
      if (kind == "rejected" && !decoder.Decode(m.value, &rejected).has_value()) {
        rejected.rejected_at_ms = 0;
        rejected.produced_at_ms = 0;
        encoder.Encode(rejected, &value);
      } else if (kind == "commissions" && !decoder.Decode(m.value, &commission).has_value()) {
        commission.produced_at_ms = 0;
        encoder.Encode(commission, &value);
      } else if (kind == "unattributed" && !decoder.Decode(m.value, &unattributed).has_value()) {
        unattributed.produced_at_ms = 0;
        encoder.Encode(unattributed, &value);
      }
      lines.push_back(absl::StrCat(kind, "\t", m.partition, "\t", absl::BytesToHexString(m.key),
                                   "\t", absl::BytesToHexString(value)));
    }
  }
  std::sort(lines.begin(), lines.end());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  for (const std::string& line : lines) out << line << "\n";
  out.close();
  if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

std::string CommissionKey(const Commission& c) {
  return absl::StrCat("commission_id=", c.commission_id, " status=", ConversionStatusName(c.status),
                      " payout=", c.payout.minor, " ", AV(c.payout.currency.code()),
                      " click_id=", c.click_id, " affiliate_id=", c.affiliate_id,
                      " conversion_id=", c.conversion_id, " credit_ppm=", c.credit_ppm,
                      " click_count=", c.click_count, " basis=", PayoutBasisName(c.basis),
                      " rate=", c.rate, " base=", c.base.minor, " ",
                      c.base.currency.empty() ? "" : AV(c.base.currency.code()),
                      " override_applied=", c.override_applied, " offer_version=", c.offer_version);
}

std::string UnattributedKey(const Conversion& c, UnattributedReason reason) {
  return absl::StrCat("conversion_id=", c.conversion_id, " offer_id=", c.offer_id, " goal=", c.goal,
                      " status=", ConversionStatusName(c.status), " ts=", c.event_time_ms,
                      " click_id=", c.click_id, " user_id=", c.user_id, " amount=", c.amount.minor,
                      " ", AV(c.amount.currency.code()),
                      " reason=", UnattributedReasonName(reason));
}

std::string Name(RejectReason reason) { return std::string(RejectReasonName(reason)); }

// Compares expected and observed record descriptions of one output topic:
// differences are mismatches (placed on a task by `partition_of`), extra
// identical records are copies.
void CompareRecords(const std::string& category, const std::string& topic,
                    const std::vector<std::string>& expected,
                    const std::vector<std::string>& observed,
                    const absl::flat_hash_map<std::string, int32_t>& partition_of, Report& report) {
  const MultisetClassification c = ClassifyMultiset(expected, observed);
  auto where = [&](const std::string& key) {
    auto it = partition_of.find(key);
    return it == partition_of.end() ? -1 : it->second;
  };
  for (const std::string& key : c.missing) {
    report.Error(category, absl::StrCat("missing (expected, not on the topic): ", key), where(key));
  }
  for (const std::string& key : c.unexpected) {
    report.Error(category, absl::StrCat("unexpected (on the topic, not expected): ", key),
                 where(key));
  }
  for (const auto& [key, n] : c.copied) report.Copy(topic, key, n, where(key));
  report.copies[topic] += 0;  // every topic appears in the summary
}

// Reads the processors' logs for state-gap lines and for revocations with
// uncommitted offsets (their tasks go into *revoked_uncommitted).
absl::StatusOr<std::vector<StateGap>> ReadStateGaps(const std::vector<std::string>& paths,
                                                    std::set<int32_t>* revoked_uncommitted) {
  std::vector<StateGap> gaps;
  for (const std::string& path : paths) {
    std::ifstream in(path);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read processor log ", path));
    std::string line;
    while (std::getline(in, line)) {
      if (auto gap = ParseStateGapLine(line)) gaps.push_back(std::move(*gap));
      if (auto revoked = ParseUncommittedRevocationLine(line)) {
        revoked_uncommitted->insert(revoked->begin(), revoked->end());
      }
    }
  }
  return gaps;
}

int Run() {
  // ---- flags and configuration files
  auto output_format = ParseWireFormat(absl::GetFlag(FLAGS_format));
  auto input_format = ParseWireFormat(absl::GetFlag(FLAGS_input_format));
  if (!output_format.ok() || !input_format.ok()) {
    std::cerr << "tally-verify: --format/--input-format must be json or protobuf\n";
    return 2;
  }
  OracleRules rules;
  const std::string key_name = absl::GetFlag(FLAGS_attribution_key);
  if (key_name == "click_id") {
    rules.key = AttributionKey::kClickId;
  } else if (key_name == "user_id") {
    rules.key = AttributionKey::kUserId;
  } else {
    std::cerr << "tally-verify: --attribution-key must be click_id or user_id\n";
    return 2;
  }
  auto flood_window = ParseDurationMs("flood-window", absl::GetFlag(FLAGS_flood_window));
  auto grace = ParseDurationMs("pending-grace", absl::GetFlag(FLAGS_pending_grace));
  auto lateness = ParseDurationMs("max-click-lateness", absl::GetFlag(FLAGS_max_click_lateness));
  if (!flood_window.ok() || !grace.ok() || !lateness.ok() || *flood_window < 1 || *grace < 0 ||
      *lateness < 0 || absl::GetFlag(FLAGS_max_clicks_per_ip) < 1) {
    std::cerr << "tally-verify: need --flood-window >= 1ms, --pending-grace >= 0, "
                 "--max-click-lateness >= 0 and --max-clicks-per-ip >= 1\n";
    return 2;
  }
  rules.max_click_lateness_ms = *lateness;
  rules.flood_window_ms = *flood_window;
  rules.pending_grace_ms = *grace;
  rules.max_clicks_per_ip = absl::GetFlag(FLAGS_max_clicks_per_ip);
  rules.accept_observed_candidate_prefix = absl::GetFlag(FLAGS_accept_candidate_prefixes);
  auto offers = OffersCatalog::Load(absl::GetFlag(FLAGS_offers_file));
  if (!offers.ok()) {
    std::cerr << "tally-verify: " << offers.status() << "\n";
    return 2;
  }
  rules.offers = offers->get();
  // As the processor derives it (state.click_retention).
  rules.click_retention_ms = (*offers)->max_attribution_window_ms() + *grace;
  // FraudRules for the matching only (patterns and CIDRs); which rule wins
  // and the flood counting are the oracle's own.
  auto fraud = FraudRules::Load(absl::GetFlag(FLAGS_bot_user_agents_file),
                                absl::GetFlag(FLAGS_ip_blocklist_file));
  if (!fraud.ok()) {
    std::cerr << "tally-verify: " << fraud.status() << "\n";
    return 2;
  }
  std::shared_ptr<const FraudRules> fraud_rules = *fraud;
  rules.is_bot_user_agent = [fraud_rules](std::string_view ua) {
    return fraud_rules->IsBotUserAgent(ua);
  };
  rules.is_blocklisted = [fraud_rules](const IpAddress& ip) {
    return fraud_rules->IsBlocklisted(ip);
  };
  auto truth = LoadGroundTruth(absl::GetFlag(FLAGS_truth));
  if (!truth.ok()) {
    std::cerr << "tally-verify: " << truth.status() << "\n";
    return 2;
  }

  // ---- the topics
  const std::string clicks_topic = absl::GetFlag(FLAGS_clicks_topic);
  const std::string conversions_topic = absl::GetFlag(FLAGS_conversions_topic);
  const std::string commissions_topic = absl::GetFlag(FLAGS_commissions_topic);
  const std::string rejected_topic = absl::GetFlag(FLAGS_rejected_topic);
  const std::string unattributed_topic = absl::GetFlag(FLAGS_unattributed_topic);
  auto topics = ReadTopicsToEnd(
      {clicks_topic, conversions_topic, commissions_topic, rejected_topic, unattributed_topic});
  if (!topics.ok()) {
    std::cerr << "tally-verify: " << topics.status() << "\n";
    return 2;
  }
  if (const std::string dump = absl::GetFlag(FLAGS_dump_outputs); !dump.empty()) {
    if (absl::Status s = DumpOutputs(*topics,
                                     {{"commissions", commissions_topic},
                                      {"rejected", rejected_topic},
                                      {"unattributed", unattributed_topic}},
                                     *output_format, dump);
        !s.ok()) {
      std::cerr << "tally-verify: --dump-outputs: " << s << "\n";
      return 2;
    }
  }
  Report report;
  auto gaps = ReadStateGaps(absl::GetFlag(FLAGS_processor_log), &report.revoked_uncommitted);
  if (!gaps.ok()) {
    std::cerr << "tally-verify: " << gaps.status() << "\n";
    return 2;
  }
  for (const StateGap& gap : *gaps) report.gapped_partitions.insert(gap.partition);

  // ---- inputs: decode, index the raw bytes, cross-check the ground truth
  EventDecoder input_decoder(*input_format);
  OracleInput input;
  input.clicks_topic = clicks_topic;
  input.conversions_topic = conversions_topic;
  absl::flat_hash_map<MessageRef, const ConsumedMessage*> raw;
  absl::flat_hash_map<MessageRef, std::string> decode_verdict;  // "ok" or a reason
  uint64_t decodable = 0;
  for (const bool is_click : {true, false}) {
    const std::string& topic = is_click ? clicks_topic : conversions_topic;
    for (const ConsumedMessage& m : (*topics)[topic]) {
      MessageRef ref{topic, m.partition, m.offset};
      raw[ref] = &m;
      std::optional<Invalid> invalid;
      if (is_click) {
        ClickInput& in = input.clicks[m.partition].emplace_back();
        in.offset = m.offset;
        invalid = input_decoder.Decode(m.value, &in.click);
        if (invalid) in.invalid = invalid->reason;
      } else {
        ConversionInput& in = input.conversions[m.partition].emplace_back();
        in.offset = m.offset;
        invalid = input_decoder.Decode(m.value, &in.conversion);
        if (invalid) in.invalid = invalid->reason;
      }
      if (!invalid) ++decodable;
      decode_verdict[ref] = invalid ? Name(invalid->reason) : "ok";
    }
  }
  for (const TruthRecord& record : truth->records) {
    const std::string where = record.ref.ToString();
    auto it = decode_verdict.find(record.ref);
    if (it == decode_verdict.end()) {
      report.Error("truth", absl::StrCat(where, " is in the ground truth but not on the topic"));
    } else if (it->second != record.decode) {
      report.Error("truth", absl::StrCat(where, " decodes as ", it->second,
                                         ", the ground truth says ", record.decode));
    }
  }
  // A record on an input topic that the truth lacks is a mismatch, unless
  // it is a byte copy of a truth record shortly after it on the same
  // partition: the load generator's producer retried a batch the broker had
  // written but answered with an error (the mock broker under injected
  // Produce errors; idempotence prevents it on a real cluster). Such input
  // duplicates are inputs like any other (the oracle decides them, usually
  // duplicate_click); they are counted, not blamed on the truth.
  constexpr int64_t kRetryReach = 10'000;
  uint64_t producer_retry_copies = 0;
  for (const auto& [ref, verdict] : decode_verdict) {
    if (truth->by_ref.contains(ref)) continue;
    const ConsumedMessage* copy = raw.at(ref);
    bool retried = false;
    for (int64_t o = ref.offset + 1; o <= ref.offset + kRetryReach && !retried; ++o) {
      const MessageRef later{ref.topic, ref.partition, o};
      auto original = raw.find(later);
      if (original == raw.end()) break;
      retried = truth->by_ref.contains(later) && original->second->key == copy->key &&
                original->second->value == copy->value;
    }
    if (retried) {
      ++producer_retry_copies;
      continue;
    }
    report.Error("truth", absl::StrCat(ref.ToString(), " is on the topic but not in the truth"));
  }

  // ---- outputs: decode, and collect what the oracle takes as given
  EventDecoder output_decoder(*output_format);
  // produced_at is not compared (processing time) but must be there.
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  auto check_produced_at = [&](const std::string& category, const std::string& topic,
                               const ConsumedMessage& m, int64_t produced_at_ms) {
    if (auto problem = CheckProducedAt(produced_at_ms, now_ms)) {
      report.Error(category, absl::StrCat(topic, "/", m.partition, "@", m.offset, ": ", *problem),
                   -1);
    }
  };
  Observations observed;
  struct ObservedRejection {
    MessageRef source;
    RejectedEvent event;
  };
  std::vector<ObservedRejection> rejections;
  for (const ConsumedMessage& m : (*topics)[rejected_topic]) {
    RejectedEvent event;
    if (auto invalid = output_decoder.Decode(m.value, &event); invalid) {
      report.Error("rejected", absl::StrCat(rejected_topic, "/", m.partition, "@", m.offset,
                                            " does not decode: ", invalid->detail));
      continue;
    }
    MessageRef ref{event.source_topic, event.source_partition, event.source_offset};
    check_produced_at("rejected", rejected_topic, m, event.produced_at_ms);
    observed.rejected[ref] = event.reason;
    if (event.reason == RejectReason::kIpClickFlood && ref.topic == clicks_topic) {
      observed.flood_rejected.insert(ref);
    }
    rejections.push_back({std::move(ref), std::move(event)});
  }
  struct ObservedCommission {
    int32_t partition;
    int64_t offset;
    Commission commission;
  };
  std::vector<ObservedCommission> commissions;
  for (const ConsumedMessage& m : (*topics)[commissions_topic]) {
    Commission c;
    if (auto invalid = output_decoder.Decode(m.value, &c); invalid) {
      report.Error("commissions", absl::StrCat(commissions_topic, "/", m.partition, "@", m.offset,
                                               " does not decode: ", invalid->detail));
      continue;
    }
    check_produced_at("commissions", commissions_topic, m, c.produced_at_ms);
    observed.commission_ids[{c.offer_id, c.goal, c.conversion_id}].insert(c.commission_id);
    commissions.push_back({m.partition, m.offset, std::move(c)});
  }
  std::vector<UnattributedConversion> unattributed;
  for (const ConsumedMessage& m : (*topics)[unattributed_topic]) {
    UnattributedConversion u;
    if (auto invalid = output_decoder.Decode(m.value, &u); invalid) {
      report.Error("unattributed", absl::StrCat(unattributed_topic, "/", m.partition, "@", m.offset,
                                                " does not decode: ", invalid->detail));
      continue;
    }
    check_produced_at("unattributed", unattributed_topic, m, u.produced_at_ms);
    unattributed.push_back(std::move(u));
  }

  // ---- the oracle
  const OracleOutput expected = RunOracle(input, rules, observed);
  for (const std::string& problem : expected.problems) report.Error("flood", problem);

  // Every input message has exactly one fate; `fate` describes it for the
  // mismatch messages.
  absl::flat_hash_map<MessageRef, std::string> fate;
  auto set_fate = [&](const MessageRef& ref, std::string what) {
    auto [it, inserted] = fate.emplace(ref, what);
    if (!inserted && it->second != what) {
      report.Error("accounting", absl::StrCat("oracle gives ", ref.ToString(),
                                              " two fates: ", it->second, " and ", what));
    }
  };
  for (const MessageRef& ref : expected.accepted_clicks) set_fate(ref, "an accepted click");
  for (const ExpectedCommission& c : expected.commissions) set_fate(c.source, "attributed");
  for (const ExpectedRejection& r : expected.rejected) {
    set_fate(r.ref, absl::StrCat("rejected as ", Name(r.reason)));
  }
  for (const ExpectedUnattributed& u : expected.unattributed) {
    set_fate(u.ref, absl::StrCat("unattributed (", UnattributedReasonName(u.reason), ")"));
  }
  for (const MessageRef& ref : expected.pending) set_fate(ref, "pending");
  uint64_t attributed_messages = 0;
  {
    absl::flat_hash_map<MessageRef, bool> seen;
    for (const ExpectedCommission& c : expected.commissions) seen[c.source] = true;
    attributed_messages = seen.size();
  }
  const uint64_t inputs = expected.stats.clicks + expected.stats.conversions;
  const uint64_t accounted = expected.accepted_clicks.size() + attributed_messages +
                             expected.rejected.size() + expected.unattributed.size() +
                             expected.pending.size();
  if (fate.size() != raw.size() || accounted != inputs) {
    report.Error("accounting", absl::StrCat(inputs, " input messages but ", accounted,
                                            " fates for ", fate.size(), " messages"));
  }
  auto fate_of = [&](const MessageRef& ref) -> std::string {
    auto it = fate.find(ref);
    return it == fate.end() ? std::string("not an input message") : it->second;
  };

  // ---- rejected
  std::map<std::string, uint64_t> expected_by_reason, observed_by_reason;
  absl::flat_hash_map<MessageRef, RejectReason> expected_rejected;
  for (const ExpectedRejection& r : expected.rejected) {
    expected_rejected[r.ref] = r.reason;
    ++expected_by_reason[Name(r.reason)];
  }
  // The first rejection of a message is judged; a later one is an identical
  // copy when every field equals the first's, else a mismatch.
  absl::flat_hash_map<MessageRef, const ObservedRejection*> rejected_seen;
  auto same_rejection = [](const RejectedEvent& a, const RejectedEvent& b) {
    return a.reason == b.reason && a.detail == b.detail && a.original_key == b.original_key &&
           a.original_value == b.original_value;
  };
  for (const ObservedRejection& r : rejections) {
    const std::string where = r.source.ToString();
    const std::string reason = Name(r.event.reason);
    const int32_t task = r.source.partition;
    ++observed_by_reason[reason];
    auto [first, inserted] = rejected_seen.emplace(r.source, &r);
    if (!inserted) {
      if (same_rejection(first->second->event, r.event)) {
        report.Copy(rejected_topic, absl::StrCat(where, " rejected as ", reason), 1, task);
      } else {
        report.Error(
            "rejected",
            absl::StrCat(where, " is on `rejected` twice, differently: as ",
                         Name(first->second->event.reason), " (", first->second->event.detail,
                         ") and as ", reason, " (", r.event.detail, ")"),
            task);
      }
      continue;
    }
    auto it = expected_rejected.find(r.source);
    if (it == expected_rejected.end()) {
      report.Error("rejected",
                   absl::StrCat(where, " rejected as ", reason, " (", r.event.detail,
                                "), expected: ", fate_of(r.source)),
                   task);
      continue;
    }
    if (it->second != r.event.reason) {
      report.Error("rejected",
                   absl::StrCat(where, " rejected as ", reason, " (", r.event.detail,
                                "), expected ", Name(it->second)),
                   task);
    }
    if (auto m = raw.find(r.source); m != raw.end()) {
      if (std::string problem = CheckRejectedOriginal(r.event, m->second->key, m->second->value);
          !problem.empty()) {
        report.Error("rejected", absl::StrCat(where, ": on `rejected`, ", problem), task);
      }
    }
  }
  report.copies[rejected_topic] += 0;
  for (const ExpectedRejection& r : expected.rejected) {
    if (!rejected_seen.contains(r.ref)) {
      report.Error("rejected",
                   absl::StrCat(r.ref.ToString(), " should be rejected as ", Name(r.reason),
                                " but is not on `rejected`"),
                   r.ref.partition);
    }
  }

  // The task (input partition) of a conversion identity, to place
  // commission and unattributed mismatches.
  std::map<ConversionIdentity, int32_t> identity_task;
  for (const auto& [partition, list] : input.conversions) {
    for (const ConversionInput& in : list) {
      if (!in.invalid) identity_task.emplace(IdentityOf(in.conversion), partition);
    }
  }
  auto task_of = [&](const std::string& offer, const std::string& goal,
                     const std::string& conversion_id) -> int32_t {
    auto it = identity_task.find({offer, goal, conversion_id});
    return it == identity_task.end() ? -1 : it->second;
  };

  // ---- commissions: multiset, then the order of each id's statuses
  std::vector<std::string> expected_commission_keys, observed_commission_keys;
  absl::flat_hash_map<std::string, int32_t> commission_task;  // key or id -> input partition
  std::map<std::string, std::vector<std::string>> expected_sequence, observed_sequence;
  for (const ExpectedCommission& c : expected.commissions) {
    const std::string key = CommissionKey(c.commission);
    expected_commission_keys.push_back(key);
    commission_task.emplace(key, c.source.partition);
    commission_task.emplace(c.commission.commission_id, c.source.partition);
    expected_sequence[c.commission.commission_id].push_back(key);
  }
  absl::flat_hash_map<std::string, int32_t> id_partition;
  for (const ObservedCommission& c : commissions) {
    const std::string key = CommissionKey(c.commission);
    observed_commission_keys.push_back(key);
    commission_task.emplace(
        key, task_of(c.commission.offer_id, c.commission.goal, c.commission.conversion_id));
    observed_sequence[c.commission.commission_id].push_back(key);
    auto [it, inserted] = id_partition.emplace(c.commission.commission_id, c.partition);
    if (!inserted && it->second != c.partition) {
      report.Error("commissions",
                   absl::StrCat("commission ", c.commission.commission_id, " is on partitions ",
                                it->second, " and ", c.partition, " (its key must be its id)"));
    }
  }
  CompareRecords("commissions", commissions_topic, expected_commission_keys,
                 observed_commission_keys, commission_task, report);
  uint64_t order_errors = 0;
  for (const auto& [id, sequence] : expected_sequence) {
    auto it = observed_sequence.find(id);
    if (it == observed_sequence.end() || it->second == sequence) continue;
    if (auto problem = CheckStatusOrder(sequence, it->second)) {
      ++order_errors;
      auto task = commission_task.find(id);
      report.Error("commissions", absl::StrCat("commission ", id, ": ", *problem),
                   task == commission_task.end() ? -1 : task->second);
    }
  }

  // ---- unattributed
  std::vector<std::string> expected_unattributed_keys, observed_unattributed_keys;
  absl::flat_hash_map<std::string, int32_t> unattributed_task;
  for (const ExpectedUnattributed& u : expected.unattributed) {
    expected_unattributed_keys.push_back(UnattributedKey(u.conversion, u.reason));
    unattributed_task.emplace(expected_unattributed_keys.back(), u.ref.partition);
  }
  for (const UnattributedConversion& u : unattributed) {
    observed_unattributed_keys.push_back(UnattributedKey(u.conversion, u.reason));
    unattributed_task.emplace(
        observed_unattributed_keys.back(),
        task_of(u.conversion.offer_id, u.conversion.goal, u.conversion.conversion_id));
  }
  CompareRecords("unattributed", unattributed_topic, expected_unattributed_keys,
                 observed_unattributed_keys, unattributed_task, report);

  // ---- the processor's own summary
  const std::vector<std::string> summary_paths = absl::GetFlag(FLAGS_processor_summary);
  const uint64_t copies_found = report.total_copies();
  std::string summary_line;
  if (!summary_paths.empty()) {
    uint64_t clicks_in = 0, conversions_in = 0, valid_clicks = 0, valid_conversions = 0;
    uint64_t pending = 0;
    bool pending_reported = true;
    bool readable = true;
    for (const std::string& path : summary_paths) {
      std::ifstream in(path);
      std::stringstream buffer;
      buffer << in.rdbuf();
      simdjson::padded_string padded(buffer.str());
      simdjson::ondemand::parser parser;
      simdjson::ondemand::document doc;
      uint64_t c = 0, v = 0, vc = 0, vv = 0, p = 0;
      if (!in || parser.iterate(padded).get(doc) != simdjson::SUCCESS ||
          doc["clicks_in"].get_uint64().get(c) != simdjson::SUCCESS ||
          doc["conversions_in"].get_uint64().get(v) != simdjson::SUCCESS ||
          doc["valid_clicks"].get_uint64().get(vc) != simdjson::SUCCESS ||
          doc["valid_conversions"].get_uint64().get(vv) != simdjson::SUCCESS) {
        report.Error("summary", absl::StrCat("processor summary '", path, "' is not readable"));
        readable = false;
        continue;
      }
      clicks_in += c;
      conversions_in += v;
      valid_clicks += vc;
      valid_conversions += vv;
      // Optional: only newer processors report it.
      if (doc["pending"].get_uint64().get(p) == simdjson::SUCCESS) {
        pending += p;
      } else {
        pending_reported = false;
      }
    }
    summary_line = absl::StrCat(summary_paths.size(), " summaries: consumed ", clicks_in,
                                " clicks + ", conversions_in, " conversions (input ",
                                expected.stats.clicks, " + ", expected.stats.conversions, ")");
    // Replays (copies, or partitions revoked with uncommitted offsets, whose
    // range the next owner consumes again) may consume a message twice:
    // then every message must have been consumed at least once.
    const bool replayed = copies_found > 0 || !report.revoked_uncommitted.empty();
    if (replayed) {
      absl::StrAppend(&summary_line,
                      "; replays may have consumed messages twice: at least the input required");
      if (readable &&
          (clicks_in < expected.stats.clicks || conversions_in < expected.stats.conversions ||
           valid_clicks + valid_conversions < decodable)) {
        report.Error("summary",
                     absl::StrCat("processor consumed ", clicks_in, " clicks and ", conversions_in,
                                  " conversions (", valid_clicks + valid_conversions,
                                  " valid); the topics hold ", expected.stats.clicks, " and ",
                                  expected.stats.conversions, " (", decodable,
                                  " decodable): something was skipped"));
      }
    }
    if (readable && !replayed) {
      if (clicks_in != expected.stats.clicks || conversions_in != expected.stats.conversions) {
        report.Error("summary",
                     absl::StrCat("processor consumed ", clicks_in, " clicks and ", conversions_in,
                                  " conversions; the topics hold ", expected.stats.clicks, " and ",
                                  expected.stats.conversions));
      }
      if (valid_clicks + valid_conversions != decodable) {
        report.Error("summary",
                     absl::StrCat("processor passed on ", valid_clicks + valid_conversions,
                                  " valid events; expected ", decodable));
      }
      // It counts waiting conversions; the status changes queued behind them
      // are not extra. Per instance, so only comparable with one summary.
      if (summary_paths.size() == 1 && pending_reported &&
          pending != expected.stats.pending_conversions) {
        report.Error("summary",
                     absl::StrCat("processor reports ", pending, " pending conversions; expected ",
                                  expected.stats.pending_conversions, " (", expected.pending.size(),
                                  " messages)"));
      }
    }
  }

  // ---- summary
  const OracleStats& s = expected.stats;
  auto reasons = [](const std::map<std::string, uint64_t>& by_reason) {
    std::string out;
    for (const auto& [reason, count] : by_reason) absl::StrAppend(&out, " ", reason, "=", count);
    return out;
  };
  auto errors_in = [&](const std::string& category) {
    auto it = report.by_category.find(category);
    return it == report.by_category.end() ? uint64_t{0} : it->second;
  };
  std::cout << "tally-verify: input " << s.clicks << " clicks on " << input.clicks.size()
            << " partitions, " << s.conversions << " conversions on " << input.conversions.size()
            << " partitions, " << decodable << " decodable\n";
  std::cout << "tally-verify: truth " << truth->records.size() << " records, " << errors_in("truth")
            << " mismatches; input copies from producer retries " << producer_retry_copies << "\n";
  std::cout << "tally-verify: clicks accepted " << s.accepted_clicks << "; flood groups "
            << s.flood_groups << ", over the limit " << s.flood_groups_over_limit << ", "
            << errors_in("flood") << " with a wrong number of flood rejections\n";
  std::cout << "tally-verify: conversions attributed " << attributed_messages << ", unattributed "
            << expected.unattributed.size() << ", pending " << s.pending_conversions << " ("
            << expected.pending.size() << " messages); interleaving-dependent "
            << s.interleaving_dependent
            << " (decided by the observed output: " << s.decided_by_observation << ")\n";
  std::cout << "tally-verify: commissions expected " << expected.commissions.size()
            << ", on the topic " << commissions.size() << ", " << errors_in("commissions")
            << " mismatches (" << order_errors << " in status order)\n";
  std::cout << "tally-verify: rejected expected " << expected.rejected.size() << ","
            << reasons(expected_by_reason) << "\n";
  const auto truncated = std::count_if(rejections.begin(), rejections.end(), [](const auto& r) {
    return r.event.original_value_truncated || r.event.original_key_truncated;
  });
  std::cout << "tally-verify: rejected on the topic " << rejections.size() << ","
            << reasons(observed_by_reason) << "; " << truncated << " truncated; "
            << errors_in("rejected") << " mismatches\n";
  std::cout << "tally-verify: unattributed expected " << expected.unattributed.size()
            << ", on the topic " << unattributed.size() << ", " << errors_in("unattributed")
            << " mismatches\n";
  std::cout << "tally-verify: accounting " << inputs << " inputs = " << s.accepted_clicks
            << " accepted clicks + " << attributed_messages << " attributed + "
            << expected.rejected.size() << " rejected + " << expected.unattributed.size()
            << " unattributed + " << expected.pending.size() << " pending; "
            << errors_in("accounting") << " mismatches\n";
  if (!summary_line.empty() || report.by_category.contains("summary")) {
    std::cout << "tally-verify: processor " << summary_line << "; " << errors_in("summary")
              << " mismatches\n";
  }
  {
    std::string per_topic;
    for (const auto& [topic, n] : report.copies) absl::StrAppend(&per_topic, " ", topic, "=", n);
    std::cout << "tally-verify: identical copies " << copies_found << ":" << per_topic;
    if (!report.revoked_uncommitted.empty()) {
      std::cout << "; " << report.revocation_copies
                << " on tasks revoked with uncommitted offsets or with an aborted transaction";
    }
    std::cout << "\n";
  }
  if (!absl::GetFlag(FLAGS_processor_log).empty()) {
    std::string parts;
    for (int32_t p : report.gapped_partitions) absl::StrAppend(&parts, parts.empty() ? "" : ",", p);
    std::cout << "tally-verify: state gaps logged " << gaps->size() << " on tasks [" << parts
              << "]; mismatches on gapped tasks " << report.gapped_errors << ", elsewhere "
              << report.errors - report.gapped_errors << "\n";
    std::string by_task;
    for (const auto& [p, n] : report.errors_by_partition) {
      absl::StrAppend(&by_task, " ", p, report.gapped_partitions.contains(p) ? "(gap)" : "", "=",
                      n);
    }
    if (!by_task.empty()) std::cout << "tally-verify: mismatches per task:" << by_task << "\n";
  }
  const int64_t max_copies = absl::GetFlag(FLAGS_max_copies);
  const uint64_t counted_copies = absl::GetFlag(FLAGS_allow_revocation_copies)
                                      ? copies_found - report.revocation_copies
                                      : copies_found;
  const bool too_many_copies =
      max_copies >= 0 && counted_copies > static_cast<uint64_t>(max_copies);
  const uint64_t failing = absl::GetFlag(FLAGS_allow_gap_mismatches)
                               ? report.errors - report.gapped_errors
                               : report.errors;
  std::string verdict;
  if (report.errors == 0 && copies_found == 0) {
    verdict = "EXACT_MATCH";
    std::cout << "tally-verify: EXACT MATCH\n";
  } else if (failing == 0 && !too_many_copies) {
    verdict = report.errors == 0 ? "COPIES_ONLY" : "GAP_MISMATCHES_ONLY";
    std::cout << "tally-verify: MATCH up to " << copies_found << " identical copies";
    if (report.errors > 0) {
      std::cout << "; " << report.errors
                << " mismatches, all on tasks with a logged state gap (--allow-gap-mismatches)";
    }
    std::cout << "\n";
  } else {
    verdict = "FAIL";
    if (failing > 0) std::cout << "tally-verify: " << failing << " mismatches\n";
    if (too_many_copies) {
      std::cout << "tally-verify: " << counted_copies
                << " identical copies, more than --max-copies=" << max_copies << "\n";
    }
  }
  std::cout << "tally-verify: RESULT mismatches=" << report.errors
            << " gapped_mismatches=" << report.gapped_errors << " copies=" << copies_found
            << " revocation_copies=" << report.revocation_copies
            << " commissions=" << commissions.size() << " state_gaps=" << gaps->size()
            << " verdict=" << verdict << "\n";
  return verdict == "FAIL" ? 1 : 0;
}

}  // namespace
}  // namespace tally::verify

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Computes what Tally must output for the input topics and compares it with the output "
      "topics.\n"
      "  tally-verify --bootstrap-servers=HOST:PORT --truth=FILE [--input-format=json] "
      "[--format=json]\n"
      "      [--offers-file=F] [--bot-user-agents-file=F] [--ip-blocklist-file=F]\n"
      "      [--max-clicks-per-ip=20] [--flood-window=1m] [--attribution-key=click_id]\n"
      "      [--pending-grace=10m] [--processor-summary=FILE]... [--processor-log=FILE]...\n"
      "      [--max-copies=N] [--allow-gap-mismatches]");
  // Accept --flag-name as well as --flag_name, like the other Tally tools.
  std::vector<std::string> args(argv, argv + argc);
  std::vector<char*> argv_underscored;
  for (std::string& arg : args) {
    if (arg.size() > 2 && arg.compare(0, 2, "--") == 0) {
      const size_t name_end = std::min(arg.find('='), arg.size());
      std::replace(arg.begin() + 2, arg.begin() + static_cast<std::ptrdiff_t>(name_end), '-', '_');
    }
  }
  // --processor-summary and --processor-log are repeatable (absl keeps only
  // the last occurrence of a flag): gather them into one comma list each.
  std::map<std::string, std::string> repeated{{"--processor_summary", ""}, {"--processor_log", ""}};
  std::vector<std::string> kept;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    const std::string name = arg.substr(0, arg.find('='));
    auto it = repeated.find(name);
    if (it == repeated.end()) {
      kept.push_back(arg);
      continue;
    }
    std::string value;
    if (name.size() < arg.size()) {
      value = arg.substr(name.size() + 1);
    } else if (i + 1 < args.size()) {
      value = args[++i];
    }
    if (!value.empty()) absl::StrAppend(&it->second, it->second.empty() ? "" : ",", value);
  }
  for (const auto& [name, values] : repeated) {
    if (!values.empty()) kept.push_back(absl::StrCat(name, "=", values));
  }
  args = std::move(kept);
  argv_underscored.reserve(args.size());
  for (std::string& arg : args) argv_underscored.push_back(arg.data());
  absl::ParseCommandLine(static_cast<int>(argv_underscored.size()), argv_underscored.data());
  if (absl::GetFlag(FLAGS_bootstrap_servers).empty() || absl::GetFlag(FLAGS_truth).empty()) {
    std::cerr << "tally-verify: --bootstrap-servers and --truth are required\n";
    return 2;
  }
  return tally::verify::Run();
}
