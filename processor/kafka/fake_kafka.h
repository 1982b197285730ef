// An in-process Kafka behind the kafka::Producer / kafka::Consumer
// interfaces, for unit tests of the processing loop. Linked by tests only
// (target tally_kafka_fake).
//
// What it honours (the semantics the Processor relies on):
//  1. Topics have a fixed number of partitions, each an append-only log;
//     offsets start at 0 and never change. Producing with partition -1
//     picks FNV-1a(key) % partitions (stable across runs and processes).
//  2. A consumer group keeps committed offsets per (topic, partition). A
//     member's fetch position for a newly assigned partition is its
//     committed offset, or 0 (auto.offset.reset=earliest).
//  3. Membership changes (Subscribe, Close, a crash, JoinGroup/LeaveGroup,
//     Rebalance()) start a new generation. Each member rebalances inside its
//     next Poll, eagerly: OnRevoked with its whole assignment, then
//     OnAssigned with the new one (range: partition p of every subscribed
//     topic to the same member; or the custom Assignor). Messages fetched in
//     that Poll before the rebalance are returned too (as librdkafka
//     returns what it fetched before the callback), and fetching continues
//     after it, so a newly assigned partition can deliver messages before
//     the listener had a chance to pause it. Members rebalance
//     independently: two members polling on two threads may overlap for
//     one Poll (tests here run one processor at a time).
//  4. A commit from a member whose generation is stale fails with
//     REBALANCE_IN_PROGRESS (retriable), as a broker answers.
//  5. Produced messages are appended at Produce() time (the broker has
//     them); they are acknowledged at Flush()/Poll(). A scripted delivery
//     failure drops the message instead and fails the next Flush() with the
//     first failure's class and code, as the librdkafka producer does.
//  6. EOF: a partition is at EOF once a fetch found its position at the log
//     end, and stays so while that remains true (a Seek back or a new
//     append ends it). Paused partitions do not count for AllAssignedAtEof.
//  7. Poll never blocks: with nothing to return it returns at once (tests
//     must not sleep; the Processor's idle exit ends a run).
//
// Failure injection: FailNext() scripts the next calls of one operation to
// fail with a chosen class and code. The crash facility: a Hook is called at
// named points of a batch (after each produce, after a flush succeeded,
// before and after an offset commit, before each poll). A test's hook calls
// CrashNow(), which kills every client the cluster has created so far (their
// members leave the group without revoke callbacks, as after a session
// timeout; what they appended stays on the logs, uncommitted offsets are
// lost) and throws FakeCrash out of the client call, through the Processor,
// to the test. The test then destroys the Processor and the stage (their
// uncommitted state is gone) and starts new ones over the same state
// directory and the same cluster.
//
// Thread safety: every FakeCluster method is thread-safe (one mutex). A
// client is used as the interfaces say (one polling thread); the cluster
// may be shared by clients on several threads. Listener callbacks and hooks
// are called without the cluster's lock held.
#ifndef TALLY_PROCESSOR_KAFKA_FAKE_KAFKA_H_
#define TALLY_PROCESSOR_KAFKA_FAKE_KAFKA_H_

#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "processor/kafka/kafka.h"

namespace tally::kafka::fake {

struct Record {
  int64_t offset = -1;
  std::string key;
  std::string value;
  int64_t timestamp_ms = -1;
};

// Operations a failure can be scripted for.
enum class Op {
  kProduce,  // Produce() returns the error; nothing is appended
  kDeliver,  // the message is not appended; the next Flush() reports it
  kFlush,    // Flush() returns the error (messages stay appended, unacked)
  kCommit,   // Consumer::Commit() returns the error; nothing is committed
  kSeek,     // Consumer::Seek() returns the error; positions do not move
  kPoll,     // kFatal/kFenced: Poll() returns it; other classes: Poll()
             // returns nothing this time (the real consumer retries those)
};

// Named points of a batch at which the Hook is called.
enum class Point {
  kBeforePoll,    // Consumer::Poll() entered
  kAfterProduce,  // a message was appended
  kAfterFlush,    // Flush() is about to return OK
  kBeforeCommit,  // Consumer::Commit() entered (the state write is done)
  kAfterCommit,   // the offsets are committed, Commit() about to return OK
};
std::string_view PointName(Point point);

// Thrown by CrashNow(): the simulated death of the process.
struct FakeCrash : std::exception {
  const char* what() const noexcept override { return "fake Kafka: simulated crash"; }
};

struct InjectedError {
  ErrorClass error_class = ErrorClass::kRetriable;
  int code = 0;           // rd_kafka_resp_err_t
  bool deadline = false;  // kDeadlineExceeded (a flush that timed out)
};

class FakeCluster {
 public:
  // member id -> assigned partitions. `members` sorted; `topics` maps each
  // topic any member subscribed to its partition count.
  using Assignor = std::function<std::map<std::string, std::vector<TopicPartition>>(
      const std::vector<std::string>& members, const std::map<std::string, int32_t>& topics)>;
  using Hook = std::function<void(Point point)>;

  FakeCluster();
  ~FakeCluster();
  FakeCluster(const FakeCluster&) = delete;
  FakeCluster& operator=(const FakeCluster&) = delete;

  // REQUIRES: partitions > 0; the topic does not exist yet.
  void CreateTopic(const std::string& topic, int32_t partitions);
  // Appends directly (a test writing input); returns the offset.
  int64_t Append(const std::string& topic, int32_t partition, std::string_view key,
                 std::string_view value);
  // The partition Produce(partition = -1) chooses for `key`.
  int32_t PartitionFor(const std::string& topic, std::string_view key) const;
  int32_t PartitionCount(const std::string& topic) const;  // 0 if unknown
  std::vector<Record> Records(const std::string& topic, int32_t partition) const;
  // Every partition's records, partition by partition.
  std::vector<Record> AllRecords(const std::string& topic) const;
  int64_t EndOffset(const std::string& topic, int32_t partition) const;

  std::optional<int64_t> Committed(const std::string& group, const std::string& topic,
                                   int32_t partition) const;
  // Members currently in the group, sorted.
  std::vector<std::string> Members(const std::string& group) const;
  // How many OnRevoked / OnAssigned callbacks the group's consumers ran.
  int RevokeCallbacks(const std::string& group) const;
  int AssignCallbacks(const std::string& group) const;

  // A member without a client (it holds partitions and reads nothing), to
  // move partitions away from the processor and back.
  void JoinGroup(const std::string& group, const std::string& member,
                 const std::vector<std::string>& topics);
  void LeaveGroup(const std::string& group, const std::string& member);
  // Starts a new generation without a membership change (e.g. after
  // SetAssignor).
  void Rebalance(const std::string& group);
  // nullptr: range.
  void SetAssignor(Assignor assignor);

  // The next `count` calls of `op` (by any client) fail with `error`.
  // Scripts for one op run in the order given.
  void FailNext(Op op, InjectedError error, int count = 1);
  // Failures scripted and not yet used.
  int PendingFailures(Op op) const;
  void ClearFailures();

  void SetHook(Hook hook);
  // Kills every client created so far and throws FakeCrash. Call from a hook.
  [[noreturn]] void CrashNow();
  void SetBrokersReachable(bool reachable);

 private:
  friend class FakeProducer;
  friend class FakeConsumer;
  friend class FakeClientFactory;

  struct Member;
  struct Group;

  struct Partition {
    std::vector<Record> log;
  };
  struct Topic {
    std::vector<Partition> partitions;
  };

  // Returns the scripted error for `op`, consuming one use.
  std::optional<absl::Status> TakeFailure(Op op, std::string_view what)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CallHook(Point point);  // without mu_
  Group& GroupLocked(const std::string& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BumpGeneration(Group& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::map<std::string, std::vector<TopicPartition>> AssignLocked(const Group& group)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t AppendLocked(const std::string& topic, int32_t partition, std::string_view key,
                       std::string_view value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t RegisterClient() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool IsDead(uint64_t client) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, Topic> topics_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::unique_ptr<Group>> groups_ ABSL_GUARDED_BY(mu_);
  std::map<Op, std::deque<InjectedError>> failures_ ABSL_GUARDED_BY(mu_);
  Assignor assignor_ ABSL_GUARDED_BY(mu_);
  Hook hook_ ABSL_GUARDED_BY(mu_);
  bool brokers_reachable_ ABSL_GUARDED_BY(mu_) = true;
  uint64_t next_client_ ABSL_GUARDED_BY(mu_) = 1;
  std::set<uint64_t> dead_clients_ ABSL_GUARDED_BY(mu_);
  uint64_t next_member_ ABSL_GUARDED_BY(mu_) = 1;
};

// kafka::ClientFactory over a FakeCluster. Consumers need "group.id";
// "client.id", when set, names the member (otherwise "member-<n>").
// `cluster` must outlive the factory and every client it creates.
class FakeClientFactory final : public ClientFactory {
 public:
  explicit FakeClientFactory(FakeCluster* cluster) : cluster_(cluster) {}
  absl::StatusOr<std::unique_ptr<Producer>> CreateProducer(
      const Properties& props, const std::string& transactional_id = "",
      Producer::DeliveryHandler on_delivery = nullptr) override;
  absl::StatusOr<std::unique_ptr<PartitionReader>> CreateReader(const Properties& props) override;
  absl::StatusOr<std::unique_ptr<Consumer>> CreateConsumer(const Properties& props,
                                                           RebalanceListener* listener) override;

 private:
  FakeCluster* const cluster_;
};

}  // namespace tally::kafka::fake

#endif  // TALLY_PROCESSOR_KAFKA_FAKE_KAFKA_H_
