// tally-pipe-baseline: the floor for the end-to-end harness. It reads the
// click and conversion topics and copies every message to one output topic
// with the same batch / flush / commit loop as the processor, but no decoding
// and no processing. tally's end-to-end rate is reported as a ratio of this
// one, measured in the same run on the same machine (bench/run.sh).
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "processor/kafka/kafka.h"

ABSL_FLAG(std::string, bootstrap_servers, "", "Kafka bootstrap servers");
ABSL_FLAG(std::string, group_id, "tally-pipe-baseline", "Consumer group");
ABSL_FLAG(std::string, output_topic, "rejected", "Topic the copies go to");
ABSL_FLAG(int, batch_max_messages, 10000, "Messages per batch");
ABSL_FLAG(double, idle_seconds, 2.0, "Stop after all partitions are at EOF this long");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  using tally::kafka::Consumer;
  using tally::kafka::Producer;
  const std::string bootstrap = absl::GetFlag(FLAGS_bootstrap_servers);
  auto producer = Producer::Create({{"bootstrap.servers", bootstrap}, {"linger.ms", "5"}});
  if (!producer.ok()) {
    std::cerr << producer.status() << "\n";
    return 1;
  }
  auto consumer = Consumer::Create({{"bootstrap.servers", bootstrap},
                                    {"group.id", absl::GetFlag(FLAGS_group_id)},
                                    {"session.timeout.ms", "6000"},
                                    {"queued.min.messages", "1000000"}},
                                   nullptr);
  if (!consumer.ok()) {
    std::cerr << consumer.status() << "\n";
    return 1;
  }
  if (auto s = (*consumer)->Subscribe({"clicks", "conversions"}); !s.ok()) {
    std::cerr << s << "\n";
    return 1;
  }
  const std::string out_topic = absl::GetFlag(FLAGS_output_topic);
  std::vector<std::unique_ptr<tally::kafka::Message>> batch;
  uint64_t total = 0;
  absl::Time first = absl::InfiniteFuture(), last = absl::InfinitePast();
  absl::Time idle_since = absl::InfiniteFuture();
  while (true) {
    batch.clear();
    if (auto s = (*consumer)->Poll(absl::GetFlag(FLAGS_batch_max_messages), absl::Milliseconds(100),
                                   &batch);
        !s.ok()) {
      std::cerr << s << "\n";
      return 1;
    }
    if (batch.empty()) {
      if (!(*consumer)->Assignment().empty() && (*consumer)->AllAssignedAtEof()) {
        if (idle_since == absl::InfiniteFuture()) idle_since = absl::Now();
        if (absl::Now() - idle_since > absl::Seconds(absl::GetFlag(FLAGS_idle_seconds))) break;
      }
      continue;
    }
    idle_since = absl::InfiniteFuture();
    if (first == absl::InfiniteFuture()) first = absl::Now();
    absl::flat_hash_map<std::pair<std::string, int32_t>, int64_t> next;
    for (const auto& m : batch) {
      if (auto s = (*producer)->Produce(out_topic, -1, m->key(), m->value()); !s.ok()) {
        std::cerr << s << "\n";
        return 1;
      }
      next[{std::string(m->topic()), m->partition()}] = m->offset() + 1;
    }
    if (auto s = (*producer)->Flush(absl::Seconds(60)); !s.ok()) {
      std::cerr << s << "\n";
      return 1;
    }
    std::vector<tally::kafka::TopicPartitionOffset> commits;
    for (const auto& [tp, offset] : next) commits.push_back({tp.first, tp.second, offset});
    if (auto s = (*consumer)->Commit(commits); !s.ok()) {
      std::cerr << s << "\n";
      return 1;
    }
    total += batch.size();
    last = absl::Now();
  }
  (void)(*consumer)->Close();
  const double seconds = total == 0 ? 0 : absl::ToDoubleSeconds(last - first);
  // One JSON line, like tally's summary, for bench/run.sh.
  std::cout << "{\"messages\":" << total << ",\"busy_seconds\":" << seconds << "}" << std::endl;
  return 0;
}
