// tally-loadgen: produces deterministic synthetic clicks and conversions to
// Kafka and writes the ground truth of what a correct processor must do with
// each message. Flags and file format: tools/loadgen/README.md.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "processor/kafka/kafka.h"
#include "tools/loadgen/codec_encoder.h"
#include "tools/loadgen/generator.h"
#include "tools/loadgen/json_text.h"
#include "tools/loadgen/options.h"
#include "tools/loadgen/truth.h"

namespace tally::loadgen {
namespace {

constexpr char kUsage[] = R"(usage: tally-loadgen [flags]
  --bootstrap-servers HOST:PORT   Kafka brokers (required unless --dry-run)
  --clicks-topic NAME             default clicks
  --conversions-topic NAME        default conversions
  --clicks N                      valid clicks to generate (default 100000)
  --messages N                    instead: stop after exactly N messages
  --seed N                        default 1
  --key-mode click_id|user_id     Kafka key of both topics (default click_id)
  --format json|protobuf          wire format (default json)
  --affiliates N --offers N       default 200, 50 (Zipf-distributed)
  --users N                       default clicks / clicks-per-user
  --clicks-per-user X             default 3
  --zipf-exponent X               default 1.1
  --conversion-rate X             share of clicks that convert (0.05)
  --duplicate-rate X              share of messages re-sent identically (0.01)
  --bot-share X                   clicks with a bot user agent (0.02)
  --blocklisted-ip-share X        clicks from 198.51.100.0/24, 2001:db8:bad::/48 (0.005)
  --flood-share X                 clicks in one-IP bursts (0.005)
  --out-of-order-share X          conversions produced before their click (0.02)
  --bad-share X                   messages with exactly one defect (0.01)
  --status-change-share X         conversions that later change status (0.1)
  --unknown-order-share X         per conversion: reversal of an order never sent (0.01)
  --start-time T                  first event time: RFC 3339 or epoch ms (2026-01-01T00:00:00Z)
  --event-clicks-per-second X     event-time click rate (20)
  --rate N                        messages/s to produce, 0 = as fast as possible (0)
  --truth PATH                    ground-truth JSON Lines file
  --producer-property KEY=VALUE   librdkafka producer property (repeatable)
  --dry-run                       print messages as JSON Lines on stdout, no Kafka
)";

struct Flags {
  LoadOptions options;
  std::string bootstrap_servers;
  std::string clicks_topic = "clicks";
  std::string conversions_topic = "conversions";
  double rate = 0;
  std::string truth_path;
  kafka::Properties producer_properties;
  bool dry_run = false;
};

absl::Status Bad(std::string_view flag, std::string_view value) {
  return absl::InvalidArgumentError(
      absl::StrCat("bad value for --", std::string(flag), ": '", std::string(value), "'"));
}

absl::StatusOr<int64_t> ParseTimeMs(const std::string& text) {
  int64_t ms;
  if (absl::SimpleAtoi(text, &ms)) return ms;
  absl::Time t;
  std::string err;
  if (absl::ParseTime(absl::RFC3339_full, text, &t, &err)) {
    return absl::ToUnixMillis(t);
  }
  return absl::InvalidArgumentError(absl::StrCat("bad time '", text, "': ", err));
}

// Parses --flag value and --flag=value; '_' and '-' are interchangeable.
absl::Status ParseFlags(int argc, char** argv, Flags* f, bool* help) {
  LoadOptions& o = f->options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      *help = true;
      return absl::OkStatus();
    }
    if (arg.rfind("--", 0) != 0) return absl::InvalidArgumentError("unexpected argument " + arg);
    arg = arg.substr(2);
    std::optional<std::string> inline_value;
    if (const size_t eq = arg.find('='); eq != std::string::npos) {
      inline_value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    }
    const std::string name = absl::StrReplaceAll(arg, {{"_", "-"}});
    if (name == "dry-run") {
      f->dry_run = inline_value.value_or("true") != "false";
      continue;
    }
    std::string value;
    if (inline_value.has_value()) {
      value = *inline_value;
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
    }
    auto u64 = [&](uint64_t* out) {
      return absl::SimpleAtoi(value, out) ? absl::OkStatus() : Bad(name, value);
    };
    auto dbl = [&](double* out) {
      return absl::SimpleAtod(value, out) ? absl::OkStatus() : Bad(name, value);
    };
    absl::Status s;
    if (name == "bootstrap-servers") {
      f->bootstrap_servers = value;
    } else if (name == "clicks-topic") {
      f->clicks_topic = value;
    } else if (name == "conversions-topic") {
      f->conversions_topic = value;
    } else if (name == "clicks") {
      s = u64(&o.clicks);
    } else if (name == "messages") {
      s = u64(&o.messages);
    } else if (name == "seed") {
      s = u64(&o.seed);
    } else if (name == "key-mode") {
      auto m = ParseKeyMode(value);
      if (m.ok()) o.key_mode = *m;
      s = m.status();
    } else if (name == "format") {
      auto m = ParseFormatName(value);
      if (m.ok()) o.format = *m;
      s = m.status();
    } else if (name == "affiliates") {
      s = u64(&o.affiliates);
    } else if (name == "offers") {
      s = u64(&o.offers);
    } else if (name == "users") {
      s = u64(&o.users);
    } else if (name == "clicks-per-user") {
      s = dbl(&o.clicks_per_user);
    } else if (name == "zipf-exponent") {
      s = dbl(&o.zipf_exponent);
    } else if (name == "conversion-rate") {
      s = dbl(&o.conversion_rate);
    } else if (name == "duplicate-rate") {
      s = dbl(&o.duplicate_rate);
    } else if (name == "bot-share") {
      s = dbl(&o.bot_share);
    } else if (name == "blocklisted-ip-share") {
      s = dbl(&o.blocklisted_ip_share);
    } else if (name == "flood-share") {
      s = dbl(&o.flood_share);
    } else if (name == "out-of-order-share") {
      s = dbl(&o.out_of_order_share);
    } else if (name == "bad-share") {
      s = dbl(&o.bad_share);
    } else if (name == "status-change-share") {
      s = dbl(&o.status_change_share);
    } else if (name == "unknown-order-share") {
      s = dbl(&o.unknown_order_share);
    } else if (name == "start-time") {
      auto t = ParseTimeMs(value);
      if (t.ok()) o.start_time_ms = *t;
      s = t.status();
    } else if (name == "event-clicks-per-second") {
      s = dbl(&o.event_clicks_per_second);
    } else if (name == "click-disorder-ms") {
      s = u64(&o.click_disorder_ms);
    } else if (name == "quiet-gap-share") {
      s = dbl(&o.quiet_gap_share);
    } else if (name == "quiet-gap-ms") {
      s = u64(&o.quiet_gap_ms);
    } else if (name == "conversion-lag-ms") {
      s = u64(&o.conversion_lag_ms);
    } else if (name == "rate") {
      s = dbl(&f->rate);
      if (s.ok() && !(f->rate >= 0)) s = Bad(name, value);
    } else if (name == "truth") {
      f->truth_path = value;
    } else if (name == "producer-property") {
      const size_t eq = value.find('=');
      if (eq == std::string::npos || eq == 0) return Bad(name, value);
      f->producer_properties[value.substr(0, eq)] = value.substr(eq + 1);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    if (!s.ok()) return s;
  }
  if (!f->dry_run && f->bootstrap_servers.empty() &&
      f->producer_properties.count("bootstrap.servers") == 0) {
    return absl::InvalidArgumentError("--bootstrap-servers is required (or --dry-run)");
  }
  return o.Validate();
}

// Paces production at `rate` messages/s. Tokens accrue continuously up to a
// burst of 1/20 s worth, so the producer sends in small batches instead of
// sleeping before every message.
class TokenBucket {
 public:
  explicit TokenBucket(double rate)
      : rate_(rate),
        burst_(std::max(1.0, rate / 20.0)),
        tokens_(burst_),
        last_(std::chrono::steady_clock::now()) {}

  // Takes one token, waiting (and calling `idle` while waiting) if none.
  template <typename Idle>
  void Take(Idle idle) {
    if (rate_ <= 0) return;
    while (true) {
      const auto now = std::chrono::steady_clock::now();
      tokens_ =
          std::min(burst_, tokens_ + std::chrono::duration<double>(now - last_).count() * rate_);
      last_ = now;
      if (tokens_ >= 1.0) {
        tokens_ -= 1.0;
        return;
      }
      idle();
      const double wait_s = (1.0 - tokens_) / rate_;
      std::this_thread::sleep_for(std::chrono::duration<double>(std::max(wait_s, 0.0005)));
    }
  }

 private:
  const double rate_;
  const double burst_;
  double tokens_;
  std::chrono::steady_clock::time_point last_;
};

class Progress {
 public:
  Progress() : start_(absl::Now()), last_(start_) {}
  double Elapsed() const { return absl::ToDoubleSeconds(absl::Now() - start_); }
  void MaybePrint(uint64_t produced, uint64_t delivered, uint64_t failed, size_t in_flight) {
    const absl::Time now = absl::Now();
    if (now - last_ < absl::Seconds(1)) return;
    const double dt = absl::ToDoubleSeconds(now - last_);
    std::cerr << absl::StrFormat(
        "tally-loadgen: %d messages (%.0f/s), delivered %d, failed %d, in flight %d\n", produced,
        static_cast<double>(produced - last_produced_) / dt, delivered, failed, in_flight);
    last_ = now;
    last_produced_ = produced;
  }

 private:
  const absl::Time start_;
  absl::Time last_;
  uint64_t last_produced_ = 0;
};

std::string SummaryLine(const GenerationStats& s, const RunTotals& t, bool dry_run) {
  return absl::StrFormat(
      "tally-loadgen: done: %d messages (%d clicks, %d conversions; %d valid clicks, %d valid "
      "conversions, %d status changes, %d duplicates, %d bad) in %.2f s (%.0f msg/s)%s",
      s.messages, s.click_messages, s.conversion_messages, s.valid_clicks, s.valid_conversions,
      s.status_changes, s.duplicates, s.bad, t.elapsed_seconds,
      t.elapsed_seconds > 0 ? static_cast<double>(s.messages) / t.elapsed_seconds : 0.0,
      dry_run ? ", dry run" : absl::StrFormat(", delivered %d, failed %d", t.delivered, t.failed));
}

int DryRun(const Flags& flags, TrafficGenerator& gen, TruthWriter& truth) {
  Progress progress;
  GeneratedMessage msg;
  std::string line;
  std::string out;  // written in chunks: one fwrite per line is slow
  while (gen.Next(&msg)) {
    const std::string& topic =
        msg.topic == Topic::kClicks ? flags.clicks_topic : flags.conversions_topic;
    line = absl::StrCat("{\"seq\":", msg.truth.seq, ",\"topic\":", JsonString(topic),
                        ",\"key\":", JsonString(msg.key));
    if (flags.options.format == WireFormat::kJson && IsValidUtf8(msg.value)) {
      absl::StrAppend(&line, ",\"value\":", JsonString(msg.value));
    } else {
      absl::StrAppend(&line, ",\"value_b64\":\"", Base64(msg.value), "\"");
    }
    line.append("}\n");
    out.append(line);
    if (out.size() >= (1 << 20)) {
      std::fwrite(out.data(), 1, out.size(), stdout);
      out.clear();
    }
    truth.WriteDelivered(msg.truth, topic, std::nullopt, std::nullopt);
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
  RunTotals totals;
  totals.elapsed_seconds = progress.Elapsed();
  truth.WriteTrailer(gen.stats(), totals);
  const absl::Status closed = truth.Close();
  std::cerr << SummaryLine(gen.stats(), totals, true) << "\n";
  if (!closed.ok()) {
    std::cerr << "tally-loadgen: " << closed << "\n";
    return 1;
  }
  return 0;
}

int Produce(const Flags& flags, TrafficGenerator& gen, TruthWriter& truth) {
  // Declared before the producer: its delivery handler uses them until the
  // producer's destructor has run.
  absl::flat_hash_map<uint64_t, MessageTruth> in_flight;  // by tag (= seq)
  uint64_t delivered = 0;
  uint64_t failed = 0;
  int errors_shown = 0;
  auto on_delivery = [&](const kafka::DeliveryReport& r) {
    auto it = in_flight.find(r.tag);
    if (it == in_flight.end()) return;  // not ours: cannot happen
    if (r.error == 0) {
      ++delivered;
      truth.WriteDelivered(it->second, r.topic, r.partition, r.offset);
    } else {
      ++failed;
      if (errors_shown++ < 10) {
        std::cerr << "tally-loadgen: delivery of message " << r.tag << " to " << r.topic
                  << " failed: " << r.error_text << "\n";
      }
    }
    in_flight.erase(it);
  };

  kafka::Properties props = flags.producer_properties;
  if (!flags.bootstrap_servers.empty()) props["bootstrap.servers"] = flags.bootstrap_servers;
  // Throughput over latency unless the caller says otherwise.
  props.emplace("linger.ms", "5");
  props.emplace("compression.type", "lz4");
  auto producer = kafka::Producer::Create(props, on_delivery);
  if (!producer.ok()) {
    std::cerr << "tally-loadgen: cannot create producer: " << producer.status() << "\n";
    return 1;
  }
  TokenBucket bucket(flags.rate);
  Progress progress;
  GeneratedMessage msg;
  bool aborted = false;
  uint64_t produced = 0;
  while (gen.Next(&msg)) {
    bucket.Take([&] {
      (*producer)->Poll(absl::ZeroDuration());
      progress.MaybePrint(produced, delivered, failed, in_flight.size());
    });
    const uint64_t tag = msg.truth.seq;
    const std::string& topic =
        msg.topic == Topic::kClicks ? flags.clicks_topic : flags.conversions_topic;
    // Registered before Produce(): a full queue makes Produce() poll, which
    // may deliver reports for earlier messages (never for this one before it
    // is enqueued, but keep the order obvious).
    in_flight.emplace(tag, std::move(msg.truth));
    if (absl::Status s = (*producer)->Produce(topic, -1, msg.key, msg.value, tag); !s.ok()) {
      std::cerr << "tally-loadgen: produce to " << topic << " failed: " << s << "\n";
      in_flight.erase(tag);
      ++failed;
      aborted = true;
      break;
    }
    ++produced;
    // Serve delivery reports regularly so that in_flight stays small; the
    // clock is read only every 64 messages.
    if ((produced & 63) == 0) {
      (*producer)->Poll(absl::ZeroDuration());
      progress.MaybePrint(produced, delivered, failed, in_flight.size());
    }
  }
  const absl::Status flushed = (*producer)->Flush(absl::Minutes(5));
  if (!flushed.ok()) std::cerr << "tally-loadgen: flush: " << flushed << "\n";
  if (!in_flight.empty()) {
    std::cerr << "tally-loadgen: " << in_flight.size() << " messages without a delivery report\n";
    failed += in_flight.size();
    in_flight.clear();
  }
  producer->reset();

  RunTotals totals;
  totals.delivered = delivered;
  totals.failed = failed;
  totals.elapsed_seconds = progress.Elapsed();
  truth.WriteTrailer(gen.stats(), totals);
  const absl::Status closed = truth.Close();
  std::cerr << SummaryLine(gen.stats(), totals, false) << "\n";
  if (!closed.ok()) std::cerr << "tally-loadgen: " << closed << "\n";
  return (aborted || failed > 0 || !flushed.ok() || !closed.ok()) ? 1 : 0;
}

int Main(int argc, char** argv) {
  Flags flags;
  bool help = false;
  if (absl::Status s = ParseFlags(argc, argv, &flags, &help); !s.ok()) {
    std::cerr << "tally-loadgen: " << s.message() << "\n" << kUsage;
    return 2;
  }
  if (help) {
    std::cout << kUsage;
    return 0;
  }
  auto gen = TrafficGenerator::Create(flags.options, MakeCodecEncoder(flags.options.format));
  if (!gen.ok()) {
    std::cerr << "tally-loadgen: " << gen.status().message() << "\n";
    return 2;
  }
  auto truth = TruthWriter::Open(flags.truth_path);
  if (!truth.ok()) {
    std::cerr << "tally-loadgen: " << truth.status().message() << "\n";
    return 2;
  }
  (*truth)->WriteHeader(flags.options);
  return flags.dry_run ? DryRun(flags, **gen, **truth) : Produce(flags, **gen, **truth);
}

}  // namespace
}  // namespace tally::loadgen

int main(int argc, char** argv) { return tally::loadgen::Main(argc, argv); }
