// An in-process Kafka behind the kafka::Producer / kafka::Consumer
// interfaces, for unit tests of the processing loop. Linked by tests only
// (target tally_kafka_fake).
//
// What it honours (the semantics the Processor relies on):
//  1. Topics have a fixed number of partitions, each an append-only log;
//     offsets start at 0 and never change (retention and compaction remove
//     records, never renumber them). Producing with partition -1
//     picks FNV-1a(key) % partitions (stable across runs and processes).
//  2. A consumer group keeps committed offsets per (topic, partition). A
//     member's fetch position for a newly assigned partition is its
//     committed offset, or the log start (auto.offset.reset=earliest).
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
//  6. EOF: a partition is at EOF once a fetch found its position at the
//     visible end (the log end; the LSO under read_committed, see 11), and
//     stays so while that remains true (a Seek back or a new append ends it). Paused partitions do
//     not count for AllAssignedAtEof.
//  7. Poll never blocks: with nothing to return it returns at once (tests
//     must not sleep; the Processor's idle exit ends a run).
//  8. Records may have a null value (a tombstone: ProduceTombstone,
//     AppendTombstone); Message::value_is_null reports it, value() is empty.
//  9. Delivery reports: the handler given to CreateProducer runs on the
//     producing thread inside Poll(), Flush(), CommitTransaction() and
//     AbortTransaction() (as librdkafka serves them from poll), once per
//     produced record, with its tag, topic, partition and offset (a scripted
//     delivery failure: offset -1 and the error code).
// 10. Transactions (KIP-98, KIP-447). A producer created with a
//     transactional_id runs init_transactions: it bumps the id's epoch,
//     which FENCES the previous producer of that id (its later calls fail
//     with kFenced, RD_KAFKA_RESP_ERR__FENCED) and aborts that producer's
//     open transaction. Produce outside a transaction fails (__STATE).
//     Records produced in a transaction are appended at once, marked with
//     it; the partition's last stable offset (LSO) stays at the first
//     offset of its oldest open transaction. CommitTransaction serves the
//     delivery reports, appends a commit control marker to every partition
//     the transaction wrote (a marker occupies one offset, as in Kafka) and
//     commits the offsets SendOffsetsToTransaction added to the consumer's
//     group. AbortTransaction appends abort markers instead: the records
//     stay in the log as aborted, occupying their offsets; the offsets are
//     dropped; reports not yet served fail with __PURGE_QUEUE (they do not
//     fail the next Flush). A delivery failure inside a transaction makes
//     it abortable (CommitTransaction then fails with kAbortable, as do
//     Produce and SendOffsets, until AbortTransaction).
//     KIP-447: SendOffsetsToTransaction fails with an abortable error
//     (ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID) when the consumer's generation
//     is stale, and so does CommitTransaction when the group has moved to a
//     new generation since the offsets were sent (stricter than a broker,
//     which would commit them and make the new owner wait for them: here the
//     batch is aborted and the new owner starts from the last committed
//     offsets; both outcomes are exactly-once).
//     A crash (CrashNow) aborts the open transactions of the killed
//     producers (as their transaction timeout, or the restarted instance's
//     init, would); SetAbortOnCrash(false) leaves them open (the LSO stays
//     blocked) until a producer with the same id inits or
//     ExpireTransactions() runs. Destroying a producer leaves its
//     transaction open the same way.
// 11. Isolation (consumers and readers, property isolation.level):
//     read_uncommitted (the default) returns every data record, aborted and
//     open ones included, like librdkafka's mock cluster; read_committed
//     returns only records outside transactions or of committed ones, and
//     never reads past the LSO (its EOF is at the LSO). Control markers are
//     never returned (positions step over them).
// 12. PartitionReader: Assign at offsets (kOffsetBeginning: the log start;
//     kOffsetEnd: the visible end; below the log start: the log start), Poll in
//     offset order (round robin over partitions), AtEnd once a Poll left
//     the position at the visible end (LSO for read_committed) and nothing
//     was appended visibly since, Watermarks = (log start, log end).
// 13. Topics: CreateTopic (admin or test) stores its configs; TopicConfig
//     returns the named entries (set ones, else the broker default for the
//     few defaults the fake knows). DeleteRecordsBefore moves the log start
//     (retention); Compact keeps the latest record per key below the LSO (a
//     compacted changelog), dropping aborted records; markers stay.
//
// Failure injection: FailNext() scripts the next calls of one operation to
// fail with a chosen class and code. The crash facility: a Hook is called at
// named points of a batch (after each produce, after a flush succeeded,
// before and after an offset commit, before each poll, and around the
// transaction steps: after begin, after send offsets, before and after the
// transaction commit). A test's hook calls CrashNow(), which kills every
// client the cluster has created so far (their members leave the group
// without revoke callbacks, as after a session timeout; what they appended
// stays on the logs, uncommitted offsets are lost, open transactions of
// killed producers are aborted) and throws FakeCrash out of the client call,
// through the Processor, to the test. The test then destroys the Processor
// and the stage (their uncommitted state is gone) and starts new ones over
// the same state directory and the same cluster.
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

// The transactional state of a record (or of a transaction).
enum class TxnState {
  kNone,       // produced outside any transaction
  kOpen,       // its transaction has not ended yet
  kCommitted,  // its transaction committed
  kAborted,    // its transaction aborted (the record stays in the log)
};

struct Record {
  int64_t offset = -1;
  std::string key;
  std::string value;
  bool value_is_null = false;  // a tombstone (value is empty)
  int64_t timestamp_ms = -1;   // as given to ProduceRecord; -1 otherwise
  std::vector<std::pair<std::string, std::string>> headers;  // in produce order
  uint64_t transaction = 0;  // the fake's number of its transaction; 0: none
  TxnState state = TxnState::kNone;
  bool control = false;  // a commit/abort marker (only LogWithMarkers has them)
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
  // Transaction calls: the call returns the error and does nothing else,
  // except by class: kFatal makes the producer unusable (every later call
  // fails with it; its open transaction stays open until a producer with
  // the same id inits); kFenced fences it (as if a newer producer with its
  // id had initialised: its open transaction is aborted); kAbortable puts
  // the open transaction in the abortable state (only AbortTransaction
  // succeeds); other classes change nothing (the call may be retried).
  kBeginTransaction,
  kSendOffsets,
  kCommitTransaction,  // checked after the Point::kBeforeCommitTransaction hook
  kAbortTransaction,
  kReaderPoll,  // PartitionReader::Poll, as kPoll
};

// Named points of a batch at which the Hook is called.
enum class Point {
  kBeforePoll,               // Consumer::Poll() entered
  kAfterProduce,             // a message was appended
  kAfterFlush,               // Flush() is about to return OK
  kBeforeCommit,             // Consumer::Commit() entered (the state write is done)
  kAfterCommit,              // the offsets are committed, Commit() about to return OK
  kAfterBeginTransaction,    // BeginTransaction() about to return OK
  kAfterSendOffsets,         // offsets added, SendOffsetsToTransaction() about to return OK
  kBeforeCommitTransaction,  // CommitTransaction() entered (nothing done yet)
  kAfterCommitTransaction,   // committed (visible, offsets committed), about to return OK
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
  void CreateTopic(const std::string& topic, int32_t partitions,
                   const std::map<std::string, std::string>& configs = {});
  bool HasTopic(const std::string& topic) const;
  // The configs given at creation.
  std::map<std::string, std::string> TopicConfigs(const std::string& topic) const;
  // Appends directly (a test writing input, outside any transaction);
  // returns the offset.
  int64_t Append(const std::string& topic, int32_t partition, std::string_view key,
                 std::string_view value);
  int64_t AppendTombstone(const std::string& topic, int32_t partition, std::string_view key);
  // The partition Produce(partition = -1) chooses for `key`.
  int32_t PartitionFor(const std::string& topic, std::string_view key) const;
  int32_t PartitionCount(const std::string& topic) const;  // 0 if unknown
  // The data records of the log (aborted and open ones included, with their
  // state; no control markers).
  std::vector<Record> Records(const std::string& topic, int32_t partition) const;
  // Every partition's records, partition by partition.
  std::vector<Record> AllRecords(const std::string& topic) const;
  // The log as stored: data records and control markers.
  std::vector<Record> LogWithMarkers(const std::string& topic, int32_t partition) const;
  // What a read_committed consumer reads: records outside transactions or
  // of committed ones, below the LSO.
  std::vector<Record> CommittedRecords(const std::string& topic, int32_t partition) const;
  // The log end offset (high watermark): the next offset to be written.
  int64_t EndOffset(const std::string& topic, int32_t partition) const;
  // The last stable offset: the first offset of the oldest open
  // transaction on the partition, or the log end.
  int64_t LastStableOffset(const std::string& topic, int32_t partition) const;
  int64_t LogStartOffset(const std::string& topic, int32_t partition) const;
  // Retention / DeleteRecords: records below `offset` are gone and the log
  // start moves there. REQUIRES: offset <= EndOffset.
  void DeleteRecordsBefore(const std::string& topic, int32_t partition, int64_t offset);
  // Log compaction of everything below the LSO: keeps the latest data
  // record of each key (tombstones included), drops aborted records;
  // control markers and offsets stay. `drop_tombstones`: the tombstones go
  // too (a cleaner pass after delete.retention.ms).
  void Compact(const std::string& topic, int32_t partition, bool drop_tombstones = false);

  // Transactions. Open transactions (of every transactional id).
  int OpenTransactions() const;
  // The current producer epoch of a transactional id (-1: never initialised).
  int64_t ProducerEpoch(const std::string& transactional_id) const;
  // Aborts every open transaction (transaction.timeout.ms ran out).
  void ExpireTransactions();
  // Whether CrashNow aborts the killed producers' open transactions
  // (default true).
  void SetAbortOnCrash(bool abort);

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
  friend class FakeReader;
  friend class FakeClientFactory;

  struct Member;
  struct Group;

  struct Partition {
    std::vector<Record> log;  // ascending offsets (gaps after compaction)
    int64_t log_start = 0;
    int64_t next_offset = 0;
    std::map<int64_t, uint64_t> open;  // first offset -> open transaction
  };
  struct Topic {
    std::vector<Partition> partitions;
    std::map<std::string, std::string> configs;
  };
  struct GroupOffsets {
    std::string group;
    std::string member;
    int64_t generation = -1;
    std::map<TopicPartition, int64_t> offsets;
  };
  struct Transaction {
    std::string transactional_id;
    uint64_t client = 0;  // the producer
    TxnState state = TxnState::kOpen;
    std::set<TopicPartition> partitions;
    std::vector<GroupOffsets> offsets;
  };
  struct TransactionalId {
    int64_t epoch = -1;
    uint64_t client = 0;  // the producer holding the current epoch
    uint64_t open = 0;    // its open transaction, 0: none
  };

  // Returns the scripted error for `op`, consuming one use.
  std::optional<absl::Status> TakeFailure(Op op, std::string_view what)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CallHook(Point point);  // without mu_
  Group& GroupLocked(const std::string& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BumpGeneration(Group& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::map<std::string, std::vector<TopicPartition>> AssignLocked(const Group& group)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // nullptr: no such topic or partition.
  Partition* PartitionLocked(std::string_view topic, int32_t partition)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const Partition* PartitionLocked(std::string_view topic, int32_t partition) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // REQUIRES: the partition exists. `transaction` 0: outside transactions.
  int64_t AppendLocked(const std::string& topic, int32_t partition, std::string_view key,
                       std::optional<std::string_view> value, uint64_t transaction = 0,
                       const RecordMeta& meta = {}) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  TxnState StateLocked(const Record& record) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool VisibleLocked(const Record& record, bool read_committed) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t LsoLocked(const Partition& p) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t VisibleEndLocked(const Partition& p, bool read_committed) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The next record visible at or after *position (which moves past it, or
  // past everything invisible up to the visible end); nullptr: none.
  const Record* FetchLocked(const Partition& p, int64_t* position, bool read_committed) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // init_transactions: bumps the epoch (aborting the open transaction of
  // the id's previous producer) and returns it.
  int64_t InitProducerIdLocked(const std::string& transactional_id, uint64_t client)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t BeginTransactionLocked(const std::string& transactional_id, uint64_t client)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Appends the markers; commit: makes the records visible to
  // read_committed and commits the transaction's offsets.
  void EndTransactionLocked(uint64_t transaction, bool commit) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t RegisterClient() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool IsDead(uint64_t client) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, Topic, std::less<>> topics_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::unique_ptr<Group>> groups_ ABSL_GUARDED_BY(mu_);
  std::map<Op, std::deque<InjectedError>> failures_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Transaction> transactions_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, TransactionalId> transactional_ids_ ABSL_GUARDED_BY(mu_);
  uint64_t next_transaction_ ABSL_GUARDED_BY(mu_) = 1;
  bool abort_on_crash_ ABSL_GUARDED_BY(mu_) = true;
  Assignor assignor_ ABSL_GUARDED_BY(mu_);
  Hook hook_ ABSL_GUARDED_BY(mu_);
  bool brokers_reachable_ ABSL_GUARDED_BY(mu_) = true;
  uint64_t next_client_ ABSL_GUARDED_BY(mu_) = 1;
  std::set<uint64_t> dead_clients_ ABSL_GUARDED_BY(mu_);
  uint64_t next_member_ ABSL_GUARDED_BY(mu_) = 1;
};

// kafka::ClientFactory over a FakeCluster. Consumers need "group.id";
// "client.id", when set, names the member (otherwise "member-<n>").
// Consumers and readers take "isolation.level" (read_uncommitted, the
// default, or read_committed). `cluster` must outlive the factory and every
// client it creates.
class FakeClientFactory final : public ClientFactory {
 public:
  explicit FakeClientFactory(FakeCluster* cluster) : cluster_(cluster) {}
  // A transactional_id initialises transactions at once (see 10. above).
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
