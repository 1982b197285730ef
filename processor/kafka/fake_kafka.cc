#include "processor/kafka/fake_kafka.h"

#include <algorithm>
#include <atomic>
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
  std::string_view value() const override { return record_.value; }
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
  }
  return "unknown";
}

void FakeCluster::CreateTopic(const std::string& topic, int32_t partitions) {
  absl::MutexLock lock(&mu_);
  topics_[topic].partitions.resize(static_cast<size_t>(std::max(partitions, 1)));
}

int64_t FakeCluster::AppendLocked(const std::string& topic, int32_t partition, std::string_view key,
                                  std::string_view value) {
  std::vector<Record>& log = topics_.at(topic).partitions.at(static_cast<size_t>(partition)).log;
  Record r;
  r.offset = static_cast<int64_t>(log.size());
  r.key = std::string(key);
  r.value = std::string(value);
  log.push_back(std::move(r));
  return log.back().offset;
}

int64_t FakeCluster::Append(const std::string& topic, int32_t partition, std::string_view key,
                            std::string_view value) {
  absl::MutexLock lock(&mu_);
  return AppendLocked(topic, partition, key, value);
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
  return topics_.at(topic).partitions.at(static_cast<size_t>(partition)).log;
}

std::vector<Record> FakeCluster::AllRecords(const std::string& topic) const {
  absl::MutexLock lock(&mu_);
  std::vector<Record> out;
  for (const Partition& p : topics_.at(topic).partitions) {
    out.insert(out.end(), p.log.begin(), p.log.end());
  }
  return out;
}

int64_t FakeCluster::EndOffset(const std::string& topic, int32_t partition) const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(
      topics_.at(topic).partitions.at(static_cast<size_t>(partition)).log.size());
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

class FakeProducer final : public Producer {
 public:
  explicit FakeProducer(FakeCluster* cluster) : cluster_(cluster) {
    absl::MutexLock lock(&cluster_->mu_);
    client_ = cluster_->RegisterClient();
  }

  absl::Status Produce(std::string_view topic, int32_t partition, std::string_view key,
                       std::string_view value, uint64_t /*tag*/,
                       absl::Duration /*timeout*/) override {
    {
      absl::MutexLock lock(&cluster_->mu_);
      if (cluster_->IsDead(client_)) return Dead("produce");
      if (auto f = cluster_->TakeFailure(Op::kProduce, "produce"); f.has_value()) return *f;
      auto it = cluster_->topics_.find(std::string(topic));
      if (it == cluster_->topics_.end()) {
        return MakeKafkaError(ErrorClass::kPermanent, RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC,
                              absl::StrCat("fake produce to '", A(topic), "'"));
      }
      const auto n = static_cast<int32_t>(it->second.partitions.size());
      if (partition >= n) {
        return MakeKafkaError(ErrorClass::kPermanent, RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION,
                              absl::StrCat("fake produce to '", A(topic), "'[", partition, "]"));
      }
      std::optional<absl::Status> lost = cluster_->TakeFailure(Op::kDeliver, "delivery");
      if (lost.has_value()) {
        failed_.fetch_add(1, std::memory_order_relaxed);  // relaxed: a statistic
        if (failed_since_flush_++ == 0) first_failure_ = *lost;
        return absl::OkStatus();
      }
      const std::string name(topic);
      if (partition < 0) partition = KeyPartition(key, n);
      cluster_->AppendLocked(name, partition, key, value);
      ++unacked_;
    }
    cluster_->CallHook(Point::kAfterProduce);
    return absl::OkStatus();
  }

  void Poll(absl::Duration /*timeout*/) override { Acknowledge(); }

  absl::Status Flush(absl::Duration /*timeout*/) override {
    absl::Status result;
    {
      absl::MutexLock lock(&cluster_->mu_);
      if (cluster_->IsDead(client_)) return Dead("flush");
      if (auto f = cluster_->TakeFailure(Op::kFlush, "flush"); f.has_value()) return *f;
    }
    Acknowledge();
    if (failed_since_flush_ > 0) {
      result = absl::Status(
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

  absl::Status ProduceTombstone(std::string_view, int32_t, std::string_view, uint64_t,
                                absl::Duration) override {
    return absl::UnimplementedError("fake producer: tombstones are not implemented");
  }
  absl::StatusOr<std::optional<int32_t>> FindTopic(const std::string& topic,
                                                   absl::Duration) override {
    const int32_t n = cluster_->PartitionCount(topic);
    if (n == 0) return std::nullopt;
    return n;
  }
  absl::Status CreateTopic(const std::string& topic, int32_t partitions, int,
                           const std::map<std::string, std::string>&, absl::Duration) override {
    if (cluster_->PartitionCount(topic) == 0) cluster_->CreateTopic(topic, partitions);
    return absl::OkStatus();
  }
  absl::StatusOr<std::map<std::string, std::string>> TopicConfig(const std::string&,
                                                                 const std::vector<std::string>&,
                                                                 absl::Duration) override {
    return std::map<std::string, std::string>{};
  }

  absl::Status BeginTransaction() override { return NoTransactions(); }
  absl::Status SendOffsetsToTransaction(const std::vector<TopicPartitionOffset>&, const Consumer&,
                                        absl::Duration) override {
    return NoTransactions();
  }
  absl::Status CommitTransaction(absl::Duration) override { return NoTransactions(); }
  absl::Status AbortTransaction(absl::Duration) override { return NoTransactions(); }

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
  static absl::Status NoTransactions() {
    return absl::UnimplementedError("fake producer: transactions are not implemented");
  }
  void Acknowledge() {
    // relaxed: statistics, read by any thread, publish nothing else.
    delivered_.fetch_add(unacked_, std::memory_order_relaxed);
    unacked_ = 0;
  }

  FakeCluster* const cluster_;
  uint64_t client_ = 0;
  // Producing thread only.
  uint64_t unacked_ = 0;
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
               RebalanceListener* listener)
      : cluster_(cluster),
        group_(std::move(group)),
        member_(std::move(member)),
        listener_(listener) {
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
      if (!m->eof.contains(tp) || m->position.at(tp) < EndLocked(tp)) return false;
    }
    return true;
  }

  std::vector<PartitionLag> Lag() const override {
    absl::MutexLock lock(&cluster_->mu_);
    std::vector<PartitionLag> out;
    const FakeCluster::Member* m = MemberLocked();
    if (m == nullptr) return out;
    for (const TopicPartition& tp : m->assignment) {
      out.push_back({tp.topic, tp.partition, EndLocked(tp) - m->position.at(tp)});
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

 private:
  FakeCluster::Member* MemberLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(cluster_->mu_) {
    auto g = cluster_->groups_.find(group_);
    if (g == cluster_->groups_.end()) return nullptr;
    auto m = g->second->members.find(member_);
    return m == g->second->members.end() ? nullptr : m->second.get();
  }
  int64_t EndLocked(const TopicPartition& tp) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(cluster_->mu_) {
    return static_cast<int64_t>(
        cluster_->topics_.at(tp.topic).partitions.at(static_cast<size_t>(tp.partition)).log.size());
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
        const std::vector<Record>& log =
            cluster_->topics_.at(tp.topic).partitions.at(static_cast<size_t>(tp.partition)).log;
        if (pos >= static_cast<int64_t>(log.size())) continue;
        out->push_back(
            std::make_unique<FakeMessage>(tp.topic, tp.partition, log[static_cast<size_t>(pos)]));
        ++pos;
        ++taken;
        progress = true;
      }
    }
    for (const TopicPartition& tp : m->assignment) {
      if (!m->paused.contains(tp) && m->position.at(tp) >= EndLocked(tp)) m->eof.insert(tp);
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
  uint64_t client_ = 0;
  bool closed_ = false;  // polling thread only
};

absl::StatusOr<std::unique_ptr<Producer>> FakeClientFactory::CreateProducer(
    const Properties&, const std::string& /*transactional_id*/,
    Producer::DeliveryHandler /*on_delivery*/) {
  return std::make_unique<FakeProducer>(cluster_);
}

absl::StatusOr<std::unique_ptr<PartitionReader>> FakeClientFactory::CreateReader(
    const Properties&) {
  return absl::UnimplementedError("fake: partition readers are not implemented");
}

absl::StatusOr<std::unique_ptr<Consumer>> FakeClientFactory::CreateConsumer(
    const Properties& props, RebalanceListener* listener) {
  auto group = props.find("group.id");
  if (group == props.end()) {
    return absl::InvalidArgumentError("fake consumer: property \"group.id\" is required");
  }
  std::string member;
  {
    absl::MutexLock lock(&cluster_->mu_);
    auto client_id = props.find("client.id");
    member = absl::StrCat(client_id == props.end() ? "member" : client_id->second, "-",
                          cluster_->next_member_++);
  }
  return std::make_unique<FakeConsumer>(cluster_, group->second, std::move(member), listener);
}

}  // namespace tally::kafka::fake
