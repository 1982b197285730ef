// tally-verify: reads Tally's output topics and compares them with
// tally-loadgen's ground truth. Exit 0 only on an exact match.
//
// Checked today (first path):
//  - every message the ground truth marks as undecodable is on `rejected`
//    exactly once, with the expected reason, and its original bytes still
//    decode to that same reason;
//  - nothing the ground truth marks as valid is on `rejected`;
//  - no rejected record points at a message the ground truth does not know;
//  - with --processor-summary: the processor consumed exactly the messages
//    produced and handed exactly the valid ones on.
#include <algorithm>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "processor/codec/codec.h"
#include "processor/kafka/kafka.h"
#include "simdjson.h"
#include "tools/verify/truth.h"

ABSL_FLAG(std::string, bootstrap_servers, "", "Kafka bootstrap servers");
ABSL_FLAG(std::string, truth, "", "Ground-truth file written by tally-loadgen");
ABSL_FLAG(std::string, rejected_topic, "rejected", "Rejected topic");
ABSL_FLAG(std::string, format, "json", "Output wire format: json | protobuf");
ABSL_FLAG(std::string, input_format, "json", "Input wire format used by the load generator");
ABSL_FLAG(std::string, processor_summary, "", "Optional: file with the processor's summary JSON");
ABSL_FLAG(int, timeout_seconds, 120, "Give up reading topics after this long");
ABSL_FLAG(int, max_errors_shown, 20, "Mismatches printed in detail");

namespace tally::verify {
namespace {

struct Report {
  uint64_t checked = 0;
  uint64_t errors = 0;
  int shown = 0;
  void Error(const std::string& what) {
    ++errors;
    if (shown < absl::GetFlag(FLAGS_max_errors_shown)) {
      ++shown;
      std::cerr << "MISMATCH: " << what << "\n";
    }
  }
};

// A consumed message, copied out: librdkafka's handle cannot be destroyed
// while any of its messages is alive (rd_kafka_destroy waits for them), so
// nothing that outlives the consumer may hold a kafka::Message.
struct ConsumedMessage {
  int32_t partition = -1;
  int64_t offset = -1;
  std::string value;
};

absl::StatusOr<std::vector<ConsumedMessage>> ReadTopicToEnd(const std::string& topic) {
  kafka::Properties props{
      {"bootstrap.servers", absl::GetFlag(FLAGS_bootstrap_servers)},
      {"group.id", absl::StrCat("tally-verify-", getpid(), "-", absl::ToUnixMicros(absl::Now()))},
      {"session.timeout.ms", "6000"},
      {"queued.min.messages", "1000000"},
  };
  auto consumer = kafka::Consumer::Create(props, nullptr);
  if (!consumer.ok()) return consumer.status();
  if (auto s = (*consumer)->Subscribe({topic}); !s.ok()) return s;
  std::vector<ConsumedMessage> messages;
  std::vector<std::unique_ptr<kafka::Message>> batch;
  const absl::Time deadline =
      absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_timeout_seconds));
  while (absl::Now() < deadline) {
    batch.clear();
    if (auto s = (*consumer)->Poll(10000, absl::Milliseconds(200), &batch); !s.ok()) return s;
    for (const auto& m : batch) {
      messages.push_back({m->partition(), m->offset(), std::string(m->value())});
    }
    if (batch.empty() && !(*consumer)->Assignment().empty() &&
        (*consumer)->AllAssignedAtEof()) {
      (void)(*consumer)->Close();
      return messages;
    }
  }
  return absl::DeadlineExceededError(
      absl::StrCat("reading topic '", topic, "' did not reach its end in time"));
}

int Run() {
  auto output_format = ParseWireFormat(absl::GetFlag(FLAGS_format));
  auto input_format = ParseWireFormat(absl::GetFlag(FLAGS_input_format));
  if (!output_format.ok() || !input_format.ok()) {
    std::cerr << "tally-verify: --format/--input-format must be json or protobuf\n";
    return 2;
  }
  auto truth = LoadGroundTruth(absl::GetFlag(FLAGS_truth));
  if (!truth.ok()) {
    std::cerr << "tally-verify: " << truth.status() << "\n";
    return 2;
  }
  auto rejected = ReadTopicToEnd(absl::GetFlag(FLAGS_rejected_topic));
  if (!rejected.ok()) {
    std::cerr << "tally-verify: " << rejected.status() << "\n";
    return 2;
  }

  Report report;
  EventDecoder output_decoder(*output_format);
  EventDecoder input_decoder(*input_format);
  std::vector<int> seen(truth->records.size(), 0);
  std::map<std::string, uint64_t> rejected_by_reason;
  RejectedEvent event;
  Click click;
  Conversion conversion;
  for (const auto& message : *rejected) {
    ++report.checked;
    if (auto invalid = output_decoder.Decode(message.value, &event); invalid) {
      report.Error(absl::StrCat("rejected@", message.partition, "/", message.offset,
                                " does not decode: ", invalid->detail));
      continue;
    }
    const std::string reason(RejectReasonName(event.reason));
    ++rejected_by_reason[reason];
    MessageRef ref{event.source_topic, event.source_partition, event.source_offset};
    auto it = truth->by_ref.find(ref);
    const std::string where =
        absl::StrCat(ref.topic, "/", ref.partition, "@", ref.offset);
    if (it == truth->by_ref.end()) {
      report.Error(absl::StrCat("rejected ", where, " (", reason,
                                ") is not a message of the ground truth"));
      continue;
    }
    const TruthRecord& record = truth->records[it->second];
    if (++seen[it->second] > 1) {
      report.Error(absl::StrCat(where, " rejected more than once"));
    }
    if (record.decode == "ok") {
      report.Error(absl::StrCat(where, " is valid but was rejected as ", reason, ": ",
                                event.detail));
      continue;
    }
    if (record.decode != reason) {
      report.Error(absl::StrCat(where, " rejected as ", reason, " (", event.detail,
                                "), expected ", record.decode));
    }
    // The original bytes must have survived intact: decoding them again gives
    // the same verdict.
    std::optional<Invalid> again = record.kind == "click"
                                       ? input_decoder.Decode(event.original_value, &click)
                                       : input_decoder.Decode(event.original_value, &conversion);
    if (!again || again->reason != event.reason) {
      report.Error(absl::StrCat(where, " original bytes on `rejected` do not reproduce ",
                                reason));
    }
  }
  uint64_t expected_clicks = 0, expected_conversions = 0, expected_valid = 0;
  for (size_t i = 0; i < truth->records.size(); ++i) {
    const TruthRecord& record = truth->records[i];
    (record.kind == "click" ? expected_clicks : expected_conversions)++;
    if (record.decode == "ok") {
      ++expected_valid;
    } else if (seen[i] == 0) {
      report.Error(absl::StrCat(record.ref.topic, "/", record.ref.partition, "@",
                                record.ref.offset, " should be rejected as ", record.decode,
                                " but is not on `rejected` (lost)"));
    }
  }

  if (const std::string path = absl::GetFlag(FLAGS_processor_summary); !path.empty()) {
    std::ifstream in(path);
    std::stringstream buffer;
    buffer << in.rdbuf();
    simdjson::padded_string padded(buffer.str());
    simdjson::ondemand::parser parser;
    simdjson::ondemand::document doc;
    uint64_t clicks_in = 0, conversions_in = 0, valid_clicks = 0, valid_conversions = 0;
    if (parser.iterate(padded).get(doc) != simdjson::SUCCESS ||
        doc["clicks_in"].get_uint64().get(clicks_in) != simdjson::SUCCESS ||
        doc["conversions_in"].get_uint64().get(conversions_in) != simdjson::SUCCESS ||
        doc["valid_clicks"].get_uint64().get(valid_clicks) != simdjson::SUCCESS ||
        doc["valid_conversions"].get_uint64().get(valid_conversions) != simdjson::SUCCESS) {
      report.Error(absl::StrCat("processor summary '", path, "' is not readable"));
    } else {
      if (clicks_in != expected_clicks || conversions_in != expected_conversions) {
        report.Error(absl::StrCat("processor consumed ", clicks_in, " clicks and ",
                                  conversions_in, " conversions; produced were ",
                                  expected_clicks, " and ", expected_conversions));
      }
      if (valid_clicks + valid_conversions != expected_valid) {
        report.Error(absl::StrCat("processor passed on ", valid_clicks + valid_conversions,
                                  " valid events; expected ", expected_valid));
      }
    }
  }

  std::cout << "tally-verify: " << truth->records.size() << " input messages, "
            << rejected->size() << " on rejected";
  for (const auto& [reason, count] : rejected_by_reason) {
    std::cout << " " << reason << "=" << count;
  }
  std::cout << "\n";
  if (report.errors == 0) {
    std::cout << "tally-verify: EXACT MATCH\n";
    return 0;
  }
  std::cout << "tally-verify: " << report.errors << " mismatches\n";
  return 1;
}

}  // namespace
}  // namespace tally::verify

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Compares Tally's output topics with tally-loadgen's ground truth.\n"
      "  tally-verify --bootstrap-servers=HOST:PORT --truth=FILE [--processor-summary=FILE]");
  // Accept --flag-name as well as --flag_name, like the other Tally tools.
  std::vector<std::string> args(argv, argv + argc);
  std::vector<char*> argv_underscored;
  for (std::string& arg : args) {
    if (arg.size() > 2 && arg.compare(0, 2, "--") == 0) {
      const size_t name_end = std::min(arg.find('='), arg.size());
      std::replace(arg.begin() + 2, arg.begin() + static_cast<std::ptrdiff_t>(name_end), '-',
                   '_');
    }
    argv_underscored.push_back(arg.data());
  }
  absl::ParseCommandLine(static_cast<int>(argv_underscored.size()), argv_underscored.data());
  if (absl::GetFlag(FLAGS_bootstrap_servers).empty() || absl::GetFlag(FLAGS_truth).empty()) {
    std::cerr << "tally-verify: --bootstrap-servers and --truth are required\n";
    return 2;
  }
  return tally::verify::Run();
}
