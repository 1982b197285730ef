#include "processor/kafka/fake_kafka.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "librdkafka/rdkafka.h"

namespace tally::kafka::fake {
namespace {

// Debian's Abseil has its own string_view type (no implicit conversion).
absl::string_view A(std::string_view s) { return {s.data(), s.size()}; }

// FNV-1a 64: stable across runs, processes and standard libraries.
int32_t KeyPartition(std::string_view key, int32_t partitions) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : key) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return static_cast<int32_t>(h % static_cast<uint64_t>(partitions));
}

std::string Describe(const TopicPartition& tp) {
  return absl::StrCat(tp.topic, "[", tp.partition, "]");
}

absl::Status ErrorFrom(const InjectedError& e, std::string_view what) {
  return MakeKafkaError(e.error_class, e.code, absl::StrCat("fake ", A(what)), e.deadline);
}

// Properties "isolation.level": true for read_committed.
absl::StatusOr<bool> ReadCommitted(const Properties& props, std::string_view who) {
  auto it = props.find("isolation.level");
  if (it == props.end() || it->second == "read_uncommitted") return false;
  if (it->second == "read_committed") return true;
  return absl::InvalidArgumentError(
      absl::StrCat("fake ", A(who), ": isolation.level \"", it->second, "\" is not a valid value"));
}

absl::Status Dead(std::string_view what) {
  return MakeKafkaError(ErrorClass::kFatal, RD_KAFKA_RESP_ERR__DESTROY,
                        absl::StrCat("fake ", A(what), ": the process crashed"));
}

class FakeMessage final : public Message {
 public:
  FakeMessage(std::string topic, int32_t partition, const Record& record)
      : topic_(std::move(topic)), partition_(partition), record_(record) {}
  std::string_view topic() const override { return topic_; }
  int32_t partition() const override { return partition_; }
  int64_t offset() const override { return record_.offset; }
  std::string_view key() const override { return record_.key; }
  std::string_view value() const override {
    return record_.value_is_null ? std::string_view() : std::string_view(record_.value);
  }
  bool value_is_null() const override { return record_.value_is_null; }
  int64_t timestamp_ms() const override { return record_.timestamp_ms; }

 private:
  const std::string topic_;
  const int32_t partition_;
  const Record record_;
};

}  // namespace

struct FakeCluster::Member {
  std::string id;
  uint64_t client = 0;  // 0: JoinGroup (no client)
  std::vector<std::string> topics;
  int64_t generation = -1;  // of `assignment`
  std::vector<TopicPartition> assignment;
  std::map<TopicPartition, int64_t> position;
  std::set<TopicPartition> paused;
  std::set<TopicPartition> eof;  // a fetch found the position at the log end
};

struct FakeCluster::Group {
  int64_t generation = 0;
  std::map<std::string, std::unique_ptr<Member>> members;
  std::map<TopicPartition, int64_t> committed;
  int revokes = 0;
  int assigns = 0;
};

FakeCluster::FakeCluster() = default;
FakeCluster::~FakeCluster() = default;

std::string_view PointName(Point point) {
  switch (point) {
    case Point::kBeforePoll:
      return "before poll";
    case Point::kAfterProduce:
      return "after produce";
    case Point::kAfterFlush:
      return "after flush";
    case Point::kBeforeCommit:
      return "before offset commit";
    case Point::kAfterCommit:
      return "after offset commit";
    case Point::kAfterBeginTransaction:
      return "after begin transaction";
    case Point::kAfterSendOffsets:
      return "after send offsets to transaction";
    case Point::kBeforeCommitTransaction:
      return "before commit transaction";
    case Point::kAfterCommitTransaction:
      return "after commit transaction";
  }
  return "unknown";
}

void FakeCluster::CreateTopic(const std::string& topic, int32_t partitions,
                              const std::map<std::string, std::string>& configs) {
  absl::MutexLock lock(&mu_);
  Topic& t = topics_[topic];
  t.partitions.resize(static_cast<size_t>(std::max(partitions, 1)));
  t.configs = configs;
}

bool FakeCluster::HasTopic(const std::string& topic) const {
  absl::MutexLock lock(&mu_);
  return topics_.contains(topic);
}

std::map<std::string, std::string> FakeCluster::TopicConfigs(const std::string& topic) const {
  absl::MutexLock lock(&mu_);
  auto it = topics_.find(topic);
  return it == topics_.end() ? std::map<std::string, std::string>() : it->second.configs;
}

FakeCluster::Partition* FakeCluster::PartitionLocked(std::string_view topic, int32_t partition) {
  auto it = topics_.find(topic);
  if (it == topics_.end() || partition < 0 ||
      partition >= static_cast<int32_t>(it->second.partitions.size())) {
    return nullptr;
  }
  return &it->second.partitions[static_cast<size_t>(partition)];
}

const FakeCluster::Partition* FakeCluster::PartitionLocked(std::string_view topic,
                                                           int32_t partition) const {
  auto it = topics_.find(topic);
  if (it == topics_.end() || partition < 0 ||
      partition >= static_cast<int32_t>(it->second.partitions.size())) {
    return nullptr;
  }
  return &it->second.partitions[static_cast<size_t>(partition)];
}

int64_t FakeCluster::AppendLocked(const std::string& topic, int32_t partition, std::string_view key,
                                  std::optional<std::string_view> value, uint64_t transaction,
                                  const RecordMeta& meta) {
  Partition& p = *PartitionLocked(topic, partition);
  Record r;
  r.offset = p.next_offset++;
  r.key = std::string(key);
  if (meta.timestamp_ms != 0) r.timestamp_ms = meta.timestamp_ms;
  for (const Header& h : meta.headers) r.headers.emplace_back(h.name, h.value);
  if (value.has_value()) {
    r.value = std::string(*value);
  } else {
    r.value_is_null = true;
  }
  r.transaction = transaction;
  if (transaction != 0) {
    Transaction& t = transactions_.at(transaction);
    if (t.partitions.insert(TopicPartition{topic, partition}).second)
      p.open[r.offset] = transaction;
  }
  p.log.push_back(std::move(r));
  return p.log.back().offset;
}

int64_t FakeCluster::Append(const std::string& topic, int32_t partition, std::string_view key,
                            std::string_view value) {
  absl::MutexLock lock(&mu_);
  return AppendLocked(topic, partition, key, value);
}

int64_t FakeCluster::AppendTombstone(const std::string& topic, int32_t partition,
                                     std::string_view key) {
  absl::MutexLock lock(&mu_);
  return AppendLocked(topic, partition, key, std::nullopt);
}

TxnState FakeCluster::StateLocked(const Record& record) const {
  if (record.transaction == 0) return TxnState::kNone;
  return transactions_.at(record.transaction).state;
}

bool FakeCluster::VisibleLocked(const Record& record, bool read_committed) const {
  if (record.control) return false;
  if (!read_committed) return true;
  const TxnState state = StateLocked(record);
  return state == TxnState::kNone || state == TxnState::kCommitted;
}

int64_t FakeCluster::LsoLocked(const Partition& p) const {
  return p.open.empty() ? p.next_offset : p.open.begin()->first;
}

int64_t FakeCluster::VisibleEndLocked(const Partition& p, bool read_committed) const {
  return read_committed ? LsoLocked(p) : p.next_offset;
}

const Record* FakeCluster::FetchLocked(const Partition& p, int64_t* position,
                                       bool read_committed) const {
  if (*position < p.log_start) *position = p.log_start;  // auto.offset.reset=earliest
  const int64_t end = VisibleEndLocked(p, read_committed);
  auto it = std::lower_bound(p.log.begin(), p.log.end(), *position,
                             [](const Record& r, int64_t offset) { return r.offset < offset; });
  for (; it != p.log.end() && it->offset < end; ++it) {
    if (VisibleLocked(*it, read_committed)) {
      *position = it->offset + 1;
      return &*it;
    }
  }
  if (*position < end) *position = end;
  return nullptr;
}

int32_t FakeCluster::PartitionFor(const std::string& topic, std::string_view key) const {
  const int32_t n = PartitionCount(topic);
  return n <= 0 ? -1 : KeyPartition(key, n);
}

int32_t FakeCluster::PartitionCount(const std::string& topic) const {
  absl::MutexLock lock(&mu_);
  auto it = topics_.find(topic);
  return it == topics_.end() ? 0 : static_cast<int32_t>(it->second.partitions.size());
}

std::vector<Record> FakeCluster::Records(const std::string& topic, int32_t partition) const {
  absl::MutexLock lock(&mu_);
  std::vector<Record> out;
  for (const Record& r : PartitionLocked(topic, partition)->log) {
    if (r.control) continue;
    out.push_back(r);
    out.back().state = StateLocked(r);
  }
  return out;
}

std::vector<Record> FakeCluster::AllRecords(const std::string& topic) const {
  std::vector<Record> out;
  const int32_t n = PartitionCount(topic);
  for (int32_t p = 0; p < n; ++p) {
    std::vector<Record> records = Records(topic, p);
    out.insert(out.end(), records.begin(), records.end());
  }
  return out;
}

std::vector<Record> FakeCluster::LogWithMarkers(const std::string& topic, int32_t partition) const {
  absl::MutexLock lock(&mu_);
  std::vector<Record> out = PartitionLocked(topic, partition)->log;
  for (Record& r : out) r.state = StateLocked(r);
  return out;
}

std::vector<Record> FakeCluster::CommittedRecords(const std::string& topic,
                                                  int32_t partition) const {
  absl::MutexLock lock(&mu_);
  const Partition& p = *PartitionLocked(topic, partition);
  std::vector<Record> out;
  int64_t position = p.log_start;
  while (const Record* r = FetchLocked(p, &position, /*read_committed=*/true)) {
    out.push_back(*r);
    out.back().state = StateLocked(*r);
  }
  return out;
}

int64_t FakeCluster::EndOffset(const std::string& topic, int32_t partition) const {
  absl::MutexLock lock(&mu_);
  return PartitionLocked(topic, partition)->next_offset;
}

int64_t FakeCluster::LastStableOffset(const std::string& topic, int32_t partition) const {
  absl::MutexLock lock(&mu_);
  return LsoLocked(*PartitionLocked(topic, partition));
}

int64_t FakeCluster::LogStartOffset(const std::string& topic, int32_t partition) const {
  absl::MutexLock lock(&mu_);
  return PartitionLocked(topic, partition)->log_start;
}

void FakeCluster::DeleteRecordsBefore(const std::string& topic, int32_t partition, int64_t offset) {
  absl::MutexLock lock(&mu_);
  Partition& p = *PartitionLocked(topic, partition);
  offset = std::min(offset, p.next_offset);
  if (offset <= p.log_start) return;
  std::erase_if(p.log, [&](const Record& r) { return r.offset < offset; });
  p.log_start = offset;
}

void FakeCluster::Compact(const std::string& topic, int32_t partition, bool drop_tombstones) {
  absl::MutexLock lock(&mu_);
  Partition& p = *PartitionLocked(topic, partition);
  const int64_t lso = LsoLocked(p);
  std::map<std::string, int64_t> latest;  // key -> offset of its latest kept record
  for (const Record& r : p.log) {
    if (r.offset >= lso) break;
    if (r.control || StateLocked(r) == TxnState::kAborted) continue;
    latest[r.key] = r.offset;
  }
  std::erase_if(p.log, [&](const Record& r) {
    if (r.offset >= lso || r.control) return false;
    if (StateLocked(r) == TxnState::kAborted) return true;
    if (drop_tombstones && r.value_is_null) return true;
    return latest.at(r.key) != r.offset;
  });
}

int FakeCluster::OpenTransactions() const {
  absl::MutexLock lock(&mu_);
  int n = 0;
  for (const auto& [id, t] : transactions_) n += t.state == TxnState::kOpen ? 1 : 0;
  return n;
}

int64_t FakeCluster::ProducerEpoch(const std::string& transactional_id) const {
  absl::MutexLock lock(&mu_);
  auto it = transactional_ids_.find(transactional_id);
  return it == transactional_ids_.end() ? -1 : it->second.epoch;
}

void FakeCluster::ExpireTransactions() {
  absl::MutexLock lock(&mu_);
  for (auto& [id, t] : transactions_) {
    if (t.state == TxnState::kOpen) EndTransactionLocked(id, /*commit=*/false);
  }
}

void FakeCluster::SetAbortOnCrash(bool abort) {
  absl::MutexLock lock(&mu_);
  abort_on_crash_ = abort;
}

int64_t FakeCluster::InitProducerIdLocked(const std::string& transactional_id, uint64_t client) {
  TransactionalId& id = transactional_ids_[transactional_id];
  if (id.open != 0) EndTransactionLocked(id.open, /*commit=*/false);
  ++id.epoch;
  id.client = client;
  return id.epoch;
}

uint64_t FakeCluster::BeginTransactionLocked(const std::string& transactional_id, uint64_t client) {
  const uint64_t n = next_transaction_++;
  Transaction& t = transactions_[n];
  t.transactional_id = transactional_id;
  t.client = client;
  transactional_ids_[transactional_id].open = n;
  return n;
}

void FakeCluster::EndTransactionLocked(uint64_t transaction, bool commit) {
  Transaction& t = transactions_.at(transaction);
  if (t.state != TxnState::kOpen) return;
  for (const TopicPartition& tp : t.partitions) {
    Partition& p = *PartitionLocked(tp.topic, tp.partition);
    Record marker;
    marker.offset = p.next_offset++;
    marker.transaction = transaction;
    marker.control = true;
    p.log.push_back(std::move(marker));
    std::erase_if(p.open, [&](const auto& entry) { return entry.second == transaction; });
  }
  t.state = commit ? TxnState::kCommitted : TxnState::kAborted;
  if (commit) {
    for (const GroupOffsets& o : t.offsets) {
      Group& g = GroupLocked(o.group);
      for (const auto& [tp, offset] : o.offsets) g.committed[tp] = offset;
    }
  }
  t.offsets.clear();
  TransactionalId& id = transactional_ids_[t.transactional_id];
  if (id.open == transaction) id.open = 0;
}

std::optional<int64_t> FakeCluster::Committed(const std::string& group, const std::string& topic,
                                              int32_t partition) const {
  absl::MutexLock lock(&mu_);
  auto g = groups_.find(group);
  if (g == groups_.end()) return std::nullopt;
  auto it = g->second->committed.find(TopicPartition{topic, partition});
  if (it == g->second->committed.end()) return std::nullopt;
  return it->second;
}

std::vector<std::string> FakeCluster::Members(const std::string& group) const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  auto g = groups_.find(group);
  if (g == groups_.end()) return out;
  for (const auto& [id, member] : g->second->members) out.push_back(id);
  return out;
}

int FakeCluster::RevokeCallbacks(const std::string& group) const {
  absl::MutexLock lock(&mu_);
  auto g = groups_.find(group);
  return g == groups_.end() ? 0 : g->second->revokes;
}

int FakeCluster::AssignCallbacks(const std::string& group) const {
  absl::MutexLock lock(&mu_);
  auto g = groups_.find(group);
  return g == groups_.end() ? 0 : g->second->assigns;
}

FakeCluster::Group& FakeCluster::GroupLocked(const std::string& group) {
  std::unique_ptr<Group>& g = groups_[group];
  if (g == nullptr) g = std::make_unique<Group>();
  return *g;
}

void FakeCluster::BumpGeneration(Group& group) { ++group.generation; }

void FakeCluster::JoinGroup(const std::string& group, const std::string& member,
                            const std::vector<std::string>& topics) {
  absl::MutexLock lock(&mu_);
  Group& g = GroupLocked(group);
  auto m = std::make_unique<Member>();
  m->id = member;
  m->topics = topics;
  g.members[member] = std::move(m);
  BumpGeneration(g);
}

void FakeCluster::LeaveGroup(const std::string& group, const std::string& member) {
  absl::MutexLock lock(&mu_);
  Group& g = GroupLocked(group);
  if (g.members.erase(member) > 0) BumpGeneration(g);
}

void FakeCluster::Rebalance(const std::string& group) {
  absl::MutexLock lock(&mu_);
  BumpGeneration(GroupLocked(group));
}

void FakeCluster::SetAssignor(Assignor assignor) {
  absl::MutexLock lock(&mu_);
  assignor_ = std::move(assignor);
}

void FakeCluster::FailNext(Op op, InjectedError error, int count) {
  absl::MutexLock lock(&mu_);
  for (int i = 0; i < count; ++i) failures_[op].push_back(error);
}

int FakeCluster::PendingFailures(Op op) const {
  absl::MutexLock lock(&mu_);
  auto it = failures_.find(op);
  return it == failures_.end() ? 0 : static_cast<int>(it->second.size());
}

void FakeCluster::ClearFailures() {
  absl::MutexLock lock(&mu_);
  failures_.clear();
}

std::optional<absl::Status> FakeCluster::TakeFailure(Op op, std::string_view what) {
  auto it = failures_.find(op);
  if (it == failures_.end() || it->second.empty()) return std::nullopt;
  InjectedError e = it->second.front();
  it->second.pop_front();
  return ErrorFrom(e, what);
}

void FakeCluster::SetHook(Hook hook) {
  absl::MutexLock lock(&mu_);
  hook_ = std::move(hook);
}

void FakeCluster::CallHook(Point point) {
  Hook hook;
  {
    absl::MutexLock lock(&mu_);
    hook = hook_;
  }
  if (hook) hook(point);
}

void FakeCluster::CrashNow() {
  {
    absl::MutexLock lock(&mu_);
    for (uint64_t c = 1; c < next_client_; ++c) dead_clients_.insert(c);
    // Their members vanish without callbacks (the session timed out).
    for (auto& [name, group] : groups_) {
      const size_t removed = std::erase_if(group->members, [this](const auto& entry) {
        return entry.second->client != 0 && dead_clients_.contains(entry.second->client);
      });
      if (removed > 0) BumpGeneration(*group);
    }
    if (abort_on_crash_) {
      for (auto& [id, t] : transactions_) {
        if (t.state == TxnState::kOpen && dead_clients_.contains(t.client)) {
          EndTransactionLocked(id, /*commit=*/false);
        }
      }
    }
  }
  throw FakeCrash();
}

void FakeCluster::SetBrokersReachable(bool reachable) {
  absl::MutexLock lock(&mu_);
  brokers_reachable_ = reachable;
}

uint64_t FakeCluster::RegisterClient() { return next_client_++; }

bool FakeCluster::IsDead(uint64_t client) const { return dead_clients_.contains(client); }

std::map<std::string, std::vector<TopicPartition>> FakeCluster::AssignLocked(const Group& group) {
  std::vector<std::string> members;
  std::map<std::string, int32_t> topics;
  for (const auto& [id, member] : group.members) {
    members.push_back(id);
    for (const std::string& t : member->topics) {
      auto it = topics_.find(t);
      if (it != topics_.end()) topics[t] = static_cast<int32_t>(it->second.partitions.size());
    }
  }
  if (assignor_) return assignor_(members, topics);
  // Range, per topic, over the members subscribed to it (sorted by id).
  std::map<std::string, std::vector<TopicPartition>> out;
  for (const auto& [topic, n] : topics) {
    std::vector<std::string> subscribed;
    for (const auto& [id, member] : group.members) {
      if (std::find(member->topics.begin(), member->topics.end(), topic) != member->topics.end()) {
        subscribed.push_back(id);
      }
    }
    const int32_t m = static_cast<int32_t>(subscribed.size());
    const int32_t per = n / m, extra = n % m;
    for (int32_t i = 0; i < m; ++i) {
      const int32_t first = i * per + std::min(i, extra);
      const int32_t count = per + (i < extra ? 1 : 0);
      for (int32_t p = first; p < first + count; ++p) out[subscribed[i]].push_back({topic, p});
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Producer.

class FakeConsumer;
namespace {
// The consumer's group membership, for SendOffsetsToTransaction.
struct ConsumerIdentity {
  const std::string* group = nullptr;
  const std::string* member = nullptr;
  uint64_t client = 0;
  bool closed = false;
};
// nullopt: not a fake consumer.
std::optional<ConsumerIdentity> IdentityOf(const Consumer& consumer);
}  // namespace

class FakeProducer final : public Producer {
 public:
  FakeProducer(FakeCluster* cluster, std::string transactional_id, DeliveryHandler on_delivery)
      : cluster_(cluster),
        transactional_id_(std::move(transactional_id)),
        on_delivery_(std::move(on_delivery)) {
    absl::MutexLock lock(&cluster_->mu_);
    client_ = cluster_->RegisterClient();
    if (!transactional_id_.empty()) {
      epoch_ = cluster_->InitProducerIdLocked(transactional_id_, client_);
    }
  }

  absl::Status Produce(std::string_view topic, int32_t partition, std::string_view key,
                       std::string_view value, uint64_t tag, absl::Duration /*timeout*/) override {
    return ProduceValue(topic, partition, key, value, tag);
  }
  absl::Status ProduceRecord(std::string_view topic, int32_t partition, std::string_view key,
                             std::string_view value, const RecordMeta& meta, uint64_t tag,
                             absl::Duration /*timeout*/) override {
    return ProduceValue(topic, partition, key, value, tag, meta);
  }
  absl::Status ProduceTombstone(std::string_view topic, int32_t partition, std::string_view key,
                                uint64_t tag, absl::Duration /*timeout*/) override {
    return ProduceValue(topic, partition, key, std::nullopt, tag);
  }

  void Poll(absl::Duration /*timeout*/) override { Serve(); }

  absl::Status Flush(absl::Duration /*timeout*/) override {
    {
      absl::MutexLock lock(&cluster_->mu_);
      if (absl::Status s = UsableLocked("flush"); !s.ok()) return s;
      if (auto f = cluster_->TakeFailure(Op::kFlush, "flush"); f.has_value()) return *f;
    }
    Serve();
    if (failed_since_flush_ > 0) {
      absl::Status result = absl::Status(
          first_failure_.code(),
          absl::StrCat(failed_since_flush_, " message(s) failed since the previous flush; first: ",
                       first_failure_.message()));
      first_failure_.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) {
        result.SetPayload(url, payload);
      });
      failed_since_flush_ = 0;
      first_failure_ = absl::OkStatus();
      return result;
    }
    cluster_->CallHook(Point::kAfterFlush);
    return absl::OkStatus();
  }

  absl::StatusOr<std::optional<int32_t>> FindTopic(const std::string& topic,
                                                   absl::Duration) override {
    {
      absl::MutexLock lock(&cluster_->mu_);
      if (cluster_->IsDead(client_)) return Dead("metadata");
    }
    const int32_t n = cluster_->PartitionCount(topic);
    if (n == 0) return std::nullopt;
    return n;
  }
  absl::Status CreateTopic(const std::string& topic, int32_t partitions, int /*replication*/,
                           const std::map<std::string, std::string>& configs,
                           absl::Duration) override {
    if (partitions <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("fake create topic ", topic, ": partitions must be > 0"));
    }
    absl::MutexLock lock(&cluster_->mu_);
    if (cluster_->IsDead(client_)) return Dead("create topic");
    if (cluster_->topics_.contains(topic)) return absl::OkStatus();  // TOPIC_ALREADY_EXISTS
    FakeCluster::Topic& t = cluster_->topics_[topic];
    t.partitions.resize(static_cast<size_t>(partitions));
    t.configs = configs;
    return absl::OkStatus();
  }
  absl::StatusOr<std::map<std::string, std::string>> TopicConfig(
      const std::string& topic, const std::vector<std::string>& names, absl::Duration) override {
    // The broker defaults DescribeConfigs reports for what a topic did not set.
    static const auto* const kDefaults = new std::map<std::string, std::string>{
        {"cleanup.policy", "delete"},        {"retention.ms", "604800000"},
        {"min.compaction.lag.ms", "0"},      {"segment.bytes", "1073741824"},
        {"min.insync.replicas", "1"},        {"retention.bytes", "-1"},
        {"delete.retention.ms", "86400000"}, {"max.message.bytes", "1048588"},
    };
    absl::MutexLock lock(&cluster_->mu_);
    if (cluster_->IsDead(client_)) return Dead("describe configs");
    auto it = cluster_->topics_.find(topic);
    if (it == cluster_->topics_.end()) {
      return MakeKafkaError(ErrorClass::kRetriable, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
                            absl::StrCat("fake describe configs of topic ", topic));
    }
    std::map<std::string, std::string> out;
    for (const std::string& name : names) {
      auto set = it->second.configs.find(name);
      if (set != it->second.configs.end()) {
        out[name] = set->second;
      } else if (auto d = kDefaults->find(name); d != kDefaults->end()) {
        out[name] = d->second;
      }
    }
    return out;
  }

  absl::Status BeginTransaction() override {
    if (absl::Status s = RequireTransactional("begin transaction"); !s.ok()) return s;
    {
      absl::MutexLock lock(&cluster_->mu_);
      if (absl::Status s = UsableLocked("begin transaction"); !s.ok()) return s;
      if (phase_ != Phase::kReady) {
        return MakeKafkaError(ErrorClass::kFatal, RD_KAFKA_RESP_ERR__STATE,
                              "fake begin transaction: a transaction is already in progress");
      }
      if (auto f = cluster_->TakeFailure(Op::kBeginTransaction, "begin transaction")) {
        return InjectedLocked(*f);
      }
      transaction_ = cluster_->BeginTransactionLocked(transactional_id_, client_);
      phase_ = Phase::kInTransaction;
    }
    cluster_->CallHook(Point::kAfterBeginTransaction);
    return absl::OkStatus();
  }

  absl::Status SendOffsetsToTransaction(const std::vector<TopicPartitionOffset>& offsets,
                                        const Consumer& consumer, absl::Duration) override {
    if (absl::Status s = RequireTransactional("send offsets to transaction"); !s.ok()) return s;
    const std::optional<ConsumerIdentity> identity = IdentityOf(consumer);
    if (!identity.has_value()) {
      return absl::InvalidArgumentError(
          "fake send offsets to transaction: the consumer is not a fake consumer");
    }
    const ConsumerIdentity& who = *identity;
    if (who.closed) {
      return absl::FailedPreconditionError("send offsets to transaction: the consumer is closed");
    }
    {
      absl::MutexLock lock(&cluster_->mu_);
      if (absl::Status s = InTransactionLocked("send offsets to transaction"); !s.ok()) return s;
      if (auto f = cluster_->TakeFailure(Op::kSendOffsets, "send offsets to transaction")) {
        return InjectedLocked(*f);
      }
      FakeCluster::Group& g = cluster_->GroupLocked(*who.group);
      auto m = g.members.find(*who.member);
      if (m == g.members.end() || m->second->client != who.client) {
        return AbortableLocked(MakeKafkaError(
            ErrorClass::kAbortable, RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID,
            "fake send offsets to transaction: the consumer is not a member of its group"));
      }
      if (m->second->generation != g.generation) {
        return AbortableLocked(MakeKafkaError(
            ErrorClass::kAbortable, RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION,
            absl::StrCat("fake send offsets to transaction: the consumer's generation ",
                         m->second->generation, " is stale (group generation ", g.generation,
                         ")")));
      }
      FakeCluster::GroupOffsets sent;
      sent.group = *who.group;
      sent.member = *who.member;
      sent.generation = g.generation;
      for (const TopicPartitionOffset& o : offsets) {
        sent.offsets[TopicPartition{o.topic, o.partition}] = o.offset;
      }
      cluster_->transactions_.at(transaction_).offsets.push_back(std::move(sent));
    }
    cluster_->CallHook(Point::kAfterSendOffsets);
    return absl::OkStatus();
  }

  absl::Status CommitTransaction(absl::Duration) override {
    if (absl::Status s = RequireTransactional("commit transaction"); !s.ok()) return s;
    cluster_->CallHook(Point::kBeforeCommitTransaction);
    {
      absl::MutexLock lock(&cluster_->mu_);
      if (absl::Status s = InTransactionLocked("commit transaction"); !s.ok()) return s;
      if (auto f = cluster_->TakeFailure(Op::kCommitTransaction, "commit transaction")) {
        return InjectedLocked(*f);
      }
    }
    // commit_transaction flushes: every report is served first.
    Serve();
    {
      absl::MutexLock lock(&cluster_->mu_);
      if (absl::Status s = InTransactionLocked("commit transaction"); !s.ok()) return s;
      FakeCluster::Transaction& t = cluster_->transactions_.at(transaction_);
      for (const FakeCluster::GroupOffsets& o : t.offsets) {
        const FakeCluster::Group& g = cluster_->GroupLocked(o.group);
        auto m = g.members.find(o.member);
        if (m == g.members.end() || g.generation != o.generation) {
          return AbortableLocked(
              MakeKafkaError(ErrorClass::kAbortable, RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION,
                             absl::StrCat("fake commit transaction: group ", o.group,
                                          " rebalanced since the offsets were sent (generation ",
                                          o.generation, ", now ", g.generation, ")")));
        }
      }
      cluster_->EndTransactionLocked(transaction_, /*commit=*/true);
      transaction_ = 0;
      phase_ = Phase::kReady;
    }
    cluster_->CallHook(Point::kAfterCommitTransaction);
    return absl::OkStatus();
  }

  absl::Status AbortTransaction(absl::Duration) override {
    if (absl::Status s = RequireTransactional("abort transaction"); !s.ok()) return s;
    {
      absl::MutexLock lock(&cluster_->mu_);
      if (absl::Status s = UsableLocked("abort transaction"); !s.ok()) return s;
      if (phase_ == Phase::kReady) {
        return MakeKafkaError(ErrorClass::kFatal, RD_KAFKA_RESP_ERR__STATE,
                              "fake abort transaction: no transaction in progress");
      }
      if (auto f = cluster_->TakeFailure(Op::kAbortTransaction, "abort transaction")) {
        // An abortable class leaves the transaction as it was.
        std::optional<ErrorClass> c = ErrorClassOf(*f);
        if (c == ErrorClass::kAbortable) return *f;
        return InjectedLocked(*f);
      }
      cluster_->EndTransactionLocked(transaction_, /*commit=*/false);
      transaction_ = 0;
      phase_ = Phase::kReady;
      txn_error_ = absl::OkStatus();
      // Reports not served yet are purged (they fail with __PURGE_QUEUE).
      for (DeliveryReport& r : unserved_) {
        if (r.error != 0) continue;
        r.error = RD_KAFKA_RESP_ERR__PURGE_QUEUE;
        r.error_text = "Local: Purged in queue (transaction aborted)";
        r.offset = -1;
      }
    }
    Serve();
    // As librdkafka's producer (producer.cc): the aborted messages' failures
    // do not carry over to the next transaction's flush.
    failed_since_flush_ = 0;
    first_failure_ = absl::OkStatus();
    return absl::OkStatus();
  }

  absl::StatusOr<int32_t> PartitionCount(const std::string& topic, absl::Duration) override {
    const int32_t n = cluster_->PartitionCount(topic);
    if (n == 0) {
      return MakeKafkaError(ErrorClass::kPermanent, RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC,
                            absl::StrCat("fake metadata for '", topic, "'"));
    }
    return n;
  }

  uint64_t delivered() const override { return delivered_.load(std::memory_order_relaxed); }
  uint64_t failed() const override { return failed_.load(std::memory_order_relaxed); }

 private:
  enum class Phase {
    kReady,          // no transaction (or not transactional)
    kInTransaction,  // BeginTransaction succeeded
    kAbortable,      // the transaction must be aborted (txn_error_)
    kFatal,          // unusable (txn_error_)
  };

  absl::Status RequireTransactional(std::string_view what) const {
    if (!transactional_id_.empty()) return absl::OkStatus();
    return absl::FailedPreconditionError(
        absl::StrCat(A(what), ": the producer was created without a transactional_id"));
  }

  // Dead, fenced or fatal: the error every call returns.
  absl::Status UsableLocked(std::string_view what) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(cluster_->mu_) {
    if (cluster_->IsDead(client_)) return Dead(what);
    if (!transactional_id_.empty() &&
        cluster_->transactional_ids_.at(transactional_id_).epoch != epoch_) {
      return MakeKafkaError(
          ErrorClass::kFenced, RD_KAFKA_RESP_ERR__FENCED,
          absl::StrCat("fake ", A(what), ": producer fenced by a newer instance of '",
                       transactional_id_, "' (epoch ", epoch_, ")"));
    }
    if (phase_ == Phase::kFatal) return txn_error_;
    return absl::OkStatus();
  }

  // Usable, in a transaction, and the transaction is not abortable.
  absl::Status InTransactionLocked(std::string_view what) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(cluster_->mu_) {
    if (absl::Status s = UsableLocked(what); !s.ok()) return s;
    if (phase_ == Phase::kReady) {
      return MakeKafkaError(ErrorClass::kFatal, RD_KAFKA_RESP_ERR__STATE,
                            absl::StrCat("fake ", A(what), ": no transaction in progress"));
    }
    if (phase_ == Phase::kAbortable) return txn_error_;
    return absl::OkStatus();
  }

  absl::Status AbortableLocked(absl::Status error) ABSL_EXCLUSIVE_LOCKS_REQUIRED(cluster_->mu_) {
    if (phase_ == Phase::kInTransaction) {
      phase_ = Phase::kAbortable;
      txn_error_ = error;
    }
    return error;
  }

  // A scripted transaction-call failure: the state change its class implies.
  absl::Status InjectedLocked(absl::Status error) ABSL_EXCLUSIVE_LOCKS_REQUIRED(cluster_->mu_) {
    switch (ErrorClassOf(error).value_or(ErrorClass::kRetriable)) {
      case ErrorClass::kFatal:
        phase_ = Phase::kFatal;
        txn_error_ = error;
        break;
      case ErrorClass::kFenced:
        // As if a newer producer with this id had initialised.
        cluster_->InitProducerIdLocked(transactional_id_, 0);
        break;
      case ErrorClass::kAbortable:
        return AbortableLocked(std::move(error));
      case ErrorClass::kRetriable:
      case ErrorClass::kPermanent:
        break;
    }
    return error;
  }

  absl::Status ProduceValue(std::string_view topic, int32_t partition, std::string_view key,
                            std::optional<std::string_view> value, uint64_t tag,
                            const RecordMeta& meta = {}) {
    {
      absl::MutexLock lock(&cluster_->mu_);
      if (absl::Status s = UsableLocked("produce"); !s.ok()) return s;
      if (!transactional_id_.empty()) {
        if (phase_ == Phase::kReady) {
          return MakeKafkaError(
              ErrorClass::kFatal, RD_KAFKA_RESP_ERR__STATE,
              "fake produce: a transactional producer produces only inside a transaction");
        }
        if (phase_ == Phase::kAbortable) return txn_error_;
      }
      if (auto f = cluster_->TakeFailure(Op::kProduce, "produce"); f.has_value()) return *f;
      auto it = cluster_->topics_.find(topic);
      if (it == cluster_->topics_.end()) {
        return MakeKafkaError(ErrorClass::kPermanent, RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC,
                              absl::StrCat("fake produce to '", A(topic), "'"));
      }
      const auto n = static_cast<int32_t>(it->second.partitions.size());
      if (partition >= n) {
        return MakeKafkaError(ErrorClass::kPermanent, RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION,
                              absl::StrCat("fake produce to '", A(topic), "'[", partition, "]"));
      }
      if (partition < 0) partition = KeyPartition(key, n);
      DeliveryReport report;
      report.tag = tag;
      report.topic = std::string(topic);
      report.partition = partition;
      std::optional<absl::Status> lost = cluster_->TakeFailure(Op::kDeliver, "delivery");
      if (lost.has_value()) {
        report.error = KafkaErrorCode(*lost);
        report.error_text = std::string(lost->message());
        lost_.push_back(*lost);
        // A failed delivery makes the open transaction abortable.
        AbortableLocked(MakeKafkaError(ErrorClass::kAbortable, report.error,
                                       absl::StrCat("fake transaction: a message failed delivery: ",
                                                    lost->message())))
            .IgnoreError();
      } else {
        report.offset =
            cluster_->AppendLocked(report.topic, partition, key, value, transaction_, meta);
      }
      unserved_.push_back(std::move(report));
    }
    cluster_->CallHook(Point::kAfterProduce);
    return absl::OkStatus();
  }

  // Serves the delivery reports (producing thread, without the lock).
  void Serve() {
    std::vector<DeliveryReport> reports = std::exchange(unserved_, {});
    std::deque<absl::Status> lost = std::exchange(lost_, {});
    for (const DeliveryReport& r : reports) {
      // relaxed: statistics, read by any thread, publish nothing else.
      if (r.error == 0) {
        delivered_.fetch_add(1, std::memory_order_relaxed);
      } else {
        failed_.fetch_add(1, std::memory_order_relaxed);
        if (r.error != RD_KAFKA_RESP_ERR__PURGE_QUEUE && !lost.empty()) {
          if (failed_since_flush_++ == 0) first_failure_ = lost.front();
          lost.pop_front();
        }
      }
      if (on_delivery_) on_delivery_(r);
    }
  }

  FakeCluster* const cluster_;
  const std::string transactional_id_;
  const DeliveryHandler on_delivery_;
  uint64_t client_ = 0;
  int64_t epoch_ = -1;
  // Producing thread only (guarded by the cluster's lock where the
  // annotations say so, for the transaction state).
  Phase phase_ = Phase::kReady;
  uint64_t transaction_ = 0;
  absl::Status txn_error_;
  std::vector<DeliveryReport> unserved_;
  std::deque<absl::Status> lost_;  // the scripted failures of unserved reports
  uint64_t failed_since_flush_ = 0;
  absl::Status first_failure_;
  std::atomic<uint64_t> delivered_{0};
  std::atomic<uint64_t> failed_{0};
};

// ---------------------------------------------------------------------------
// Consumer.

class FakeConsumer final : public Consumer {
 public:
  FakeConsumer(FakeCluster* cluster, std::string group, std::string member,
               RebalanceListener* listener, bool read_committed)
      : cluster_(cluster),
        group_(std::move(group)),
        member_(std::move(member)),
        listener_(listener),
        read_committed_(read_committed) {
    absl::MutexLock lock(&cluster_->mu_);
    client_ = cluster_->RegisterClient();
  }
  ~FakeConsumer() override { Close().IgnoreError(); }

  absl::Status Subscribe(const std::vector<std::string>& topics) override {
    if (closed_) return absl::FailedPreconditionError("fake subscribe: consumer is closed");
    absl::MutexLock lock(&cluster_->mu_);
    if (cluster_->IsDead(client_)) return Dead("subscribe");
    FakeCluster::Group& g = cluster_->GroupLocked(group_);
    auto m = std::make_unique<FakeCluster::Member>();
    m->id = member_;
    m->client = client_;
    m->topics = topics;
    g.members[member_] = std::move(m);
    cluster_->BumpGeneration(g);
    return absl::OkStatus();
  }

  absl::Status Poll(size_t max_messages, absl::Duration /*timeout*/,
                    std::vector<std::unique_ptr<Message>>* out) override {
    if (closed_) return absl::FailedPreconditionError("fake poll: consumer is closed");
    cluster_->CallHook(Point::kBeforePoll);
    size_t taken = 0;
    {
      absl::MutexLock lock(&cluster_->mu_);
      if (cluster_->IsDead(client_)) return Dead("poll");
      if (auto f = cluster_->TakeFailure(Op::kPoll, "consume"); f.has_value()) {
        std::optional<ErrorClass> c = ErrorClassOf(*f);
        if (c == ErrorClass::kFatal || c == ErrorClass::kFenced) return *f;
        return absl::OkStatus();  // retried inside the real consumer
      }
      taken += FetchLocked(max_messages, out);
    }
    RebalanceIfNeeded();
    if (taken < max_messages) {
      absl::MutexLock lock(&cluster_->mu_);
      FetchLocked(max_messages - taken, out);
    }
    return absl::OkStatus();
  }

  absl::Status Commit(const std::vector<TopicPartitionOffset>& offsets) override {
    if (closed_) return absl::FailedPreconditionError("fake commit: consumer is closed");
    cluster_->CallHook(Point::kBeforeCommit);
    {
      absl::MutexLock lock(&cluster_->mu_);
      if (cluster_->IsDead(client_)) return Dead("commit");
      if (auto f = cluster_->TakeFailure(Op::kCommit, "commit"); f.has_value()) return *f;
      FakeCluster::Group& g = cluster_->GroupLocked(group_);
      auto m = g.members.find(member_);
      if (m == g.members.end()) {
        return MakeKafkaError(ErrorClass::kFenced, RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID,
                              "fake commit");
      }
      if (m->second->generation != g.generation) {
        return MakeKafkaError(ErrorClass::kRetriable, RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
                              "fake commit");
      }
      for (const TopicPartitionOffset& o : offsets) {
        g.committed[TopicPartition{o.topic, o.partition}] = o.offset;
      }
    }
    cluster_->CallHook(Point::kAfterCommit);
    return absl::OkStatus();
  }

  absl::Status Seek(const std::vector<TopicPartitionOffset>& offsets) override {
    if (closed_) return absl::FailedPreconditionError("fake seek: consumer is closed");
    absl::MutexLock lock(&cluster_->mu_);
    if (cluster_->IsDead(client_)) return Dead("seek");
    if (auto f = cluster_->TakeFailure(Op::kSeek, "seek"); f.has_value()) return *f;
    FakeCluster::Member* m = MemberLocked();
    for (const TopicPartitionOffset& o : offsets) {
      TopicPartition tp{o.topic, o.partition};
      if (m == nullptr || !m->position.contains(tp)) {
        return MakeKafkaError(ErrorClass::kPermanent, RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION,
                              absl::StrCat("fake seek of ", Describe(tp), " (not assigned)"));
      }
      m->position[tp] = o.offset;
      m->eof.erase(tp);
    }
    return absl::OkStatus();
  }

  absl::Status Pause(const std::vector<TopicPartition>& partitions) override {
    absl::MutexLock lock(&cluster_->mu_);
    FakeCluster::Member* m = MemberLocked();
    if (m == nullptr) return absl::OkStatus();
    for (const TopicPartition& tp : partitions) {
      if (m->position.contains(tp)) m->paused.insert(tp);
    }
    return absl::OkStatus();
  }

  absl::Status Resume(const std::vector<TopicPartition>& partitions) override {
    absl::MutexLock lock(&cluster_->mu_);
    FakeCluster::Member* m = MemberLocked();
    if (m == nullptr) return absl::OkStatus();
    for (const TopicPartition& tp : partitions) m->paused.erase(tp);
    return absl::OkStatus();
  }

  std::vector<TopicPartition> Assignment() const override {
    absl::MutexLock lock(&cluster_->mu_);
    const FakeCluster::Member* m = MemberLocked();
    return m == nullptr ? std::vector<TopicPartition>() : m->assignment;
  }

  bool AllAssignedAtEof() const override {
    absl::MutexLock lock(&cluster_->mu_);
    const FakeCluster::Member* m = MemberLocked();
    if (m == nullptr || m->assignment.empty()) return false;
    for (const TopicPartition& tp : m->assignment) {
      if (m->paused.contains(tp)) continue;
      if (!m->eof.contains(tp) || m->position.at(tp) < VisibleEndLocked(tp)) return false;
    }
    return true;
  }

  std::vector<PartitionLag> Lag() const override {
    absl::MutexLock lock(&cluster_->mu_);
    std::vector<PartitionLag> out;
    const FakeCluster::Member* m = MemberLocked();
    if (m == nullptr) return out;
    for (const TopicPartition& tp : m->assignment) {
      // librdkafka: from the LSO under read_committed, else the high watermark.
      out.push_back({tp.topic, tp.partition,
                     std::max<int64_t>(0, VisibleEndLocked(tp) - m->position.at(tp))});
    }
    return out;
  }

  bool BrokersReachable() const override {
    absl::MutexLock lock(&cluster_->mu_);
    return cluster_->brokers_reachable_;
  }

  absl::Status Close() override {
    if (closed_) return absl::OkStatus();
    closed_ = true;
    std::vector<TopicPartition> held;
    {
      absl::MutexLock lock(&cluster_->mu_);
      // A crashed process runs no callbacks; its member is gone already.
      if (cluster_->IsDead(client_)) return absl::OkStatus();
      if (FakeCluster::Member* m = MemberLocked(); m != nullptr) held = m->assignment;
    }
    if (!held.empty() && listener_ != nullptr) listener_->OnRevoked(held);
    absl::MutexLock lock(&cluster_->mu_);
    FakeCluster::Group& g = cluster_->GroupLocked(group_);
    if (!held.empty()) ++g.revokes;
    if (g.members.erase(member_) > 0) cluster_->BumpGeneration(g);
    return absl::OkStatus();
  }

  void* group_metadata_handle() const override { return nullptr; }

  // The group metadata SendOffsetsToTransaction needs (the fake's
  // rd_kafka_consumer_group_metadata): the generation is the member's, read
  // from the cluster.
  const std::string& group() const { return group_; }
  const std::string& member() const { return member_; }
  uint64_t client() const { return client_; }
  bool closed() const { return closed_; }

 private:
  FakeCluster::Member* MemberLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(cluster_->mu_) {
    auto g = cluster_->groups_.find(group_);
    if (g == cluster_->groups_.end()) return nullptr;
    auto m = g->second->members.find(member_);
    return m == g->second->members.end() ? nullptr : m->second.get();
  }
  // Where EOF is (and lag is measured from): the LSO under read_committed.
  int64_t VisibleEndLocked(const TopicPartition& tp) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(cluster_->mu_) {
    return cluster_->VisibleEndLocked(*cluster_->PartitionLocked(tp.topic, tp.partition),
                                      read_committed_);
  }

  // Round-robin over the assigned, unpaused partitions, one message at a
  // time, so a batch mixes both inputs as a real fetch does.
  size_t FetchLocked(size_t max, std::vector<std::unique_ptr<Message>>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(cluster_->mu_) {
    FakeCluster::Member* m = MemberLocked();
    if (m == nullptr) return 0;
    size_t taken = 0;
    bool progress = true;
    while (taken < max && progress) {
      progress = false;
      for (const TopicPartition& tp : m->assignment) {
        if (taken >= max) break;
        if (m->paused.contains(tp)) continue;
        int64_t& pos = m->position.at(tp);
        const Record* r = cluster_->FetchLocked(*cluster_->PartitionLocked(tp.topic, tp.partition),
                                                &pos, read_committed_);
        if (r == nullptr) continue;
        out->push_back(std::make_unique<FakeMessage>(tp.topic, tp.partition, *r));
        ++taken;
        progress = true;
      }
    }
    for (const TopicPartition& tp : m->assignment) {
      if (!m->paused.contains(tp) && m->position.at(tp) >= VisibleEndLocked(tp)) {
        m->eof.insert(tp);
      }
    }
    return taken;
  }

  // Eager: the whole assignment is revoked, then the new one assigned; the
  // listener hears both on this thread, inside Poll.
  void RebalanceIfNeeded() {
    std::vector<TopicPartition> old;
    {
      absl::MutexLock lock(&cluster_->mu_);
      FakeCluster::Group& g = cluster_->GroupLocked(group_);
      FakeCluster::Member* m = MemberLocked();
      if (m == nullptr || m->generation == g.generation) return;
      old = m->assignment;
    }
    if (!old.empty() && listener_ != nullptr) listener_->OnRevoked(old);
    std::vector<TopicPartition> fresh;
    {
      absl::MutexLock lock(&cluster_->mu_);
      FakeCluster::Group& g = cluster_->GroupLocked(group_);
      FakeCluster::Member* m = MemberLocked();
      if (m == nullptr) return;
      if (!old.empty()) ++g.revokes;
      m->assignment.clear();
      m->position.clear();
      m->paused.clear();
      m->eof.clear();
      m->generation = g.generation;
      fresh = cluster_->AssignLocked(g)[member_];
    }
    if (listener_ != nullptr) listener_->OnAssigned(fresh);
    absl::MutexLock lock(&cluster_->mu_);
    FakeCluster::Group& g = cluster_->GroupLocked(group_);
    FakeCluster::Member* m = MemberLocked();
    if (m == nullptr) return;
    ++g.assigns;
    m->assignment = fresh;
    for (const TopicPartition& tp : fresh) {
      auto c = g.committed.find(tp);
      m->position[tp] = c == g.committed.end() ? 0 : c->second;
    }
  }

  FakeCluster* const cluster_;
  const std::string group_;
  const std::string member_;
  RebalanceListener* const listener_;  // may be null; outlives this
  const bool read_committed_;
  uint64_t client_ = 0;
  bool closed_ = false;  // polling thread only
};

namespace {
std::optional<ConsumerIdentity> IdentityOf(const Consumer& consumer) {
  const auto* fake = dynamic_cast<const FakeConsumer*>(&consumer);
  if (fake == nullptr) return std::nullopt;
  return ConsumerIdentity{&fake->group(), &fake->member(), fake->client(), fake->closed()};
}
}  // namespace

// ---------------------------------------------------------------------------
// PartitionReader.

class FakeReader final : public PartitionReader {
 public:
  FakeReader(FakeCluster* cluster, bool read_committed)
      : cluster_(cluster), read_committed_(read_committed) {
    absl::MutexLock lock(&cluster_->mu_);
    client_ = cluster_->RegisterClient();
  }

  absl::Status Assign(const std::vector<TopicPartitionOffset>& from) override {
    absl::MutexLock lock(&cluster_->mu_);
    if (cluster_->IsDead(client_)) return Dead("reader assign");
    std::map<TopicPartition, int64_t> next;
    for (const TopicPartitionOffset& o : from) {
      const TopicPartition tp{o.topic, o.partition};
      const FakeCluster::Partition* p = cluster_->PartitionLocked(o.topic, o.partition);
      if (p == nullptr) {
        return MakeKafkaError(ErrorClass::kPermanent, RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION,
                              absl::StrCat("fake reader assign of ", Describe(tp)));
      }
      int64_t offset = o.offset;
      if (offset == kOffsetBeginning) offset = p->log_start;
      // ListOffsets(latest) answers the LSO to a read_committed client.
      if (offset == kOffsetEnd) offset = cluster_->VisibleEndLocked(*p, read_committed_);
      if (offset < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("fake reader assign of ", Describe(tp), " at offset ", o.offset));
      }
      next[tp] = std::max(offset, p->log_start);  // auto.offset.reset=earliest
    }
    position_ = std::move(next);
    eof_.clear();
    return absl::OkStatus();
  }

  absl::Status Poll(size_t max_messages, absl::Duration /*timeout*/,
                    std::vector<std::unique_ptr<Message>>* out) override {
    absl::MutexLock lock(&cluster_->mu_);
    if (cluster_->IsDead(client_)) return Dead("reader poll");
    if (auto f = cluster_->TakeFailure(Op::kReaderPoll, "reader poll"); f.has_value()) {
      std::optional<ErrorClass> c = ErrorClassOf(*f);
      if (c == ErrorClass::kFatal || c == ErrorClass::kFenced) return *f;
      return absl::OkStatus();  // retried inside the real consumer
    }
    size_t taken = 0;
    bool progress = true;
    while (taken < max_messages && progress) {
      progress = false;
      for (auto& [tp, pos] : position_) {
        if (taken >= max_messages) break;
        const Record* r = cluster_->FetchLocked(*cluster_->PartitionLocked(tp.topic, tp.partition),
                                                &pos, read_committed_);
        if (r == nullptr) continue;
        out->push_back(std::make_unique<FakeMessage>(tp.topic, tp.partition, *r));
        ++taken;
        progress = true;
      }
    }
    for (const auto& [tp, pos] : position_) {
      if (pos >= VisibleEndLocked(tp)) eof_.insert(tp);
    }
    return absl::OkStatus();
  }

  bool AtEnd(const TopicPartition& tp) const override {
    absl::MutexLock lock(&cluster_->mu_);
    auto it = position_.find(tp);
    if (it == position_.end() || !eof_.contains(tp)) return false;
    // A visible append since the EOF ends it (skipped invisible records do not).
    int64_t pos = it->second;
    return cluster_->FetchLocked(*cluster_->PartitionLocked(tp.topic, tp.partition), &pos,
                                 read_committed_) == nullptr;
  }

  absl::StatusOr<std::pair<int64_t, int64_t>> Watermarks(const TopicPartition& tp,
                                                         absl::Duration) override {
    absl::MutexLock lock(&cluster_->mu_);
    if (cluster_->IsDead(client_)) return Dead("reader watermarks");
    const FakeCluster::Partition* p = cluster_->PartitionLocked(tp.topic, tp.partition);
    if (p == nullptr) {
      return MakeKafkaError(ErrorClass::kRetriable, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
                            absl::StrCat("fake watermarks of ", Describe(tp)));
    }
    return std::pair<int64_t, int64_t>(p->log_start, p->next_offset);
  }

 private:
  int64_t VisibleEndLocked(const TopicPartition& tp) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(cluster_->mu_) {
    return cluster_->VisibleEndLocked(*cluster_->PartitionLocked(tp.topic, tp.partition),
                                      read_committed_);
  }

  FakeCluster* const cluster_;
  const bool read_committed_;
  uint64_t client_ = 0;
  // Reading thread only.
  std::map<TopicPartition, int64_t> position_;
  std::set<TopicPartition> eof_;
};

absl::StatusOr<std::unique_ptr<Producer>> FakeClientFactory::CreateProducer(
    const Properties&, const std::string& transactional_id, Producer::DeliveryHandler on_delivery) {
  return std::make_unique<FakeProducer>(cluster_, transactional_id, std::move(on_delivery));
}

absl::StatusOr<std::unique_ptr<PartitionReader>> FakeClientFactory::CreateReader(
    const Properties& props) {
  absl::StatusOr<bool> read_committed = ReadCommitted(props, "reader");
  if (!read_committed.ok()) return read_committed.status();
  return std::make_unique<FakeReader>(cluster_, *read_committed);
}

absl::StatusOr<std::unique_ptr<Consumer>> FakeClientFactory::CreateConsumer(
    const Properties& props, RebalanceListener* listener) {
  auto group = props.find("group.id");
  if (group == props.end()) {
    return absl::InvalidArgumentError("fake consumer: property \"group.id\" is required");
  }
  absl::StatusOr<bool> read_committed = ReadCommitted(props, "consumer");
  if (!read_committed.ok()) return read_committed.status();
  std::string member;
  {
    absl::MutexLock lock(&cluster_->mu_);
    auto client_id = props.find("client.id");
    member = absl::StrCat(client_id == props.end() ? "member" : client_id->second, "-",
                          cluster_->next_member_++);
  }
  return std::make_unique<FakeConsumer>(cluster_, group->second, std::move(member), listener,
                                        *read_committed);
}

}  // namespace tally::kafka::fake
