// Tally's only door to librdkafka. Everything that touches an RdKafka handle
// lives in processor/kafka/; the rest of the code sees these types.
//
// Every handle is owned by an RAII object; callback objects are members of
// the owner and are declared before the handle so they outlive it.
#ifndef TALLY_PROCESSOR_KAFKA_KAFKA_H_
#define TALLY_PROCESSOR_KAFKA_KAFKA_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tally::kafka {

// librdkafka properties ("bootstrap.servers", "security.protocol",
// "sasl.password", ...), passed through unchanged. Every set() is checked;
// an unknown key or bad value is an InvalidArgument naming the key.
using Properties = std::map<std::string, std::string>;

// Our classification of librdkafka errors, decided in one place.
enum class ErrorClass {
  kRetriable,  // transient: retry after polling (queue full, timeouts, ...)
  kFatal,      // the client is unusable; exit and let the orchestrator restart
  kFenced,     // another instance took over (transactions); stop this task
  kAbortable,  // abort the current transaction and retry the batch
  kPermanent,  // this request will never succeed (unknown topic, too large)
};
ErrorClass ClassifyError(int rd_kafka_resp_err);
std::string_view ErrorClassName(ErrorClass error_class);

// Every Status this component returns for a librdkafka failure carries the
// error's class and rd_kafka_resp_err_t code as a payload, and its canonical
// code follows the class: kRetriable -> kUnavailable (kDeadlineExceeded when
// one of our own time limits ran out), kAbortable -> kAborted, kFenced ->
// kFailedPrecondition, kFatal -> kInternal, kPermanent -> kInvalidArgument.
// Transaction calls take the class from librdkafka's own verdict
// (txn_requires_abort(), is_fatal()), which can be finer than the code.
// Returns nullopt for statuses that do not come from librdkafka (OK, bad
// configuration, misuse such as a transaction call on a plain producer).
std::optional<ErrorClass> ErrorClassOf(const absl::Status& status);
// The rd_kafka_resp_err_t code carried by `status`, or 0 if none.
int KafkaErrorCode(const absl::Status& status);
// A classified status exactly as this component builds one for a librdkafka
// failure (payload, canonical code, librdkafka's name of the code in the
// message), for implementations of these interfaces outside librdkafka
// (the in-process fake). `deadline` selects kDeadlineExceeded: one of our own
// time limits ran out (a flush that timed out with messages in flight).
absl::Status MakeKafkaError(ErrorClass error_class, int rd_kafka_resp_err, std::string_view what,
                            bool deadline = false);

// Whether `status` says only that one of our time limits ran out while
// Kafka had not answered yet: a flush with messages in flight
// (kDeadlineExceeded), or a transactional call that timed out (retriable;
// librdkafka resumes it when it is called again).
bool TimedOut(const absl::Status& status);

// `status` with `context` in front of its message, keeping its code and its
// payloads (the error class above travels in one: a bare
// absl::Status(code, message) turns a retriable Kafka error into one that
// nobody may retry).
absl::Status WithContext(const absl::Status& status, std::string_view context);

// True for property keys whose values are secrets: the key contains
// "password", "secret", "sasl.oauthbearer" or "ssl.key" (case-insensitive).
bool IsSecretProperty(std::string_view key);
// "key=value, ..." in key order with secret values replaced by
// "[redacted]"; the printable form for start-up logs and error messages.
std::string PropertiesForLog(const Properties& props);

struct TopicPartition {
  std::string topic;
  int32_t partition = -1;
  friend bool operator==(const TopicPartition&, const TopicPartition&) = default;
  friend auto operator<=>(const TopicPartition&, const TopicPartition&) = default;
};

struct TopicPartitionOffset {
  std::string topic;
  int32_t partition = -1;
  int64_t offset = -1;  // the NEXT offset to consume (Kafka commit semantics)
};

// A Kafka record header (KIP-82): a name and bytes. Views: Produce copies.
struct Header {
  std::string_view name;
  std::string_view value;
};

// What a produced record carries besides its key and value.
struct RecordMeta {
  // The record's timestamp (CreateTime), ms since the epoch; 0: the
  // producer's clock when it is produced (librdkafka's default).
  int64_t timestamp_ms = 0;
  std::span<const Header> headers;
};

struct DeliveryReport {
  uint64_t tag = 0;  // the caller's tag given to Produce()
  std::string topic;
  int32_t partition = -1;
  int64_t offset = -1;
  int error = 0;  // rd_kafka_resp_err_t; 0 on success
  std::string error_text;
};

// The producing half of Kafka as the processor sees it. The librdkafka
// implementation comes from Producer::Create; tests substitute an in-process
// fake (processor/kafka/fake_kafka.h) behind the same interface.
//
// Thread safety: Produce(), Poll(), Flush() and the transaction calls are
// made from one thread at a time (the delivery handler runs on it);
// delivered(), failed() and PartitionCount() may be called from any thread.
class Producer {
 public:
  // Called on the thread that calls Produce()/Poll()/Flush() (librdkafka
  // serves delivery reports from poll), once per produced message.
  using DeliveryHandler = std::function<void(const DeliveryReport&)>;

  // The librdkafka producer. `props` must contain bootstrap.servers. Sets
  // enable.idempotence=true and acks=all unless the caller set them.
  // `transactional_id` non-empty makes this a transactional producer
  // (init_transactions is called).
  static absl::StatusOr<std::unique_ptr<Producer>> Create(const Properties& props,
                                                          DeliveryHandler on_delivery = nullptr,
                                                          const std::string& transactional_id = "");
  virtual ~Producer() = default;

  // Enqueues one message. partition -1 lets the partitioner choose (murmur2
  // of the key, Java-compatible, so keys co-partition with other clients;
  // Create() sets partitioner=murmur2_random unless the caller set one). An
  // empty key is sent as a null key.
  // On a full local queue it polls and retries until `timeout`; it never
  // drops. Returns an error only for non-retriable failures or the timeout.
  virtual absl::Status Produce(std::string_view topic, int32_t partition, std::string_view key,
                               std::string_view value, uint64_t tag = 0,
                               absl::Duration timeout = absl::Seconds(60)) = 0;
  // Produce() with a record timestamp and headers (`meta`). Used for the
  // outputs, whose timestamp is the event time they are about and whose
  // headers name their schema; transactional like Produce().
  virtual absl::Status ProduceRecord(std::string_view topic, int32_t partition,
                                     std::string_view key, std::string_view value,
                                     const RecordMeta& meta, uint64_t tag = 0,
                                     absl::Duration timeout = absl::Seconds(60)) = 0;
  // Enqueues a tombstone: a record with a null value, which compaction of a
  // `cleanup.policy=compact` topic treats as the deletion of its key
  // (an empty value would be kept forever). Otherwise as Produce().
  virtual absl::Status ProduceTombstone(std::string_view topic, int32_t partition,
                                        std::string_view key, uint64_t tag = 0,
                                        absl::Duration timeout = absl::Seconds(60)) = 0;
  // Serves delivery reports.
  virtual void Poll(absl::Duration timeout = absl::ZeroDuration()) = 0;
  // Waits until every enqueued message is delivered or failed. A timeout is
  // kRetriable with kDeadlineExceeded (messages are still in flight: call
  // again). Otherwise returns an error if any message produced since the
  // previous Flush() failed (its class is the first failure's). Failures of
  // an aborted transaction's messages belong to it: AbortTransaction clears
  // them, so the next transaction's Flush reports only its own.
  virtual absl::Status Flush(absl::Duration timeout) = 0;

  // Transactions (transactional producers only).
  virtual absl::Status BeginTransaction() = 0;
  // Adds consumer offsets to the transaction (consumer group metadata from
  // `consumer`).
  virtual absl::Status SendOffsetsToTransaction(const std::vector<TopicPartitionOffset>& offsets,
                                                const class Consumer& consumer,
                                                absl::Duration timeout) = 0;
  virtual absl::Status CommitTransaction(absl::Duration timeout) = 0;
  virtual absl::Status AbortTransaction(absl::Duration timeout) = 0;

  // Number of partitions of `topic` from cluster metadata.
  virtual absl::StatusOr<int32_t> PartitionCount(const std::string& topic,
                                                 absl::Duration timeout) = 0;

  // Internal topics (the state changelog). FindTopic asks for the metadata
  // of every topic, so it never auto-creates the one it looks for (a
  // request naming a topic does, on brokers with auto.create.topics.enable).
  // nullopt: the cluster has no such topic.
  virtual absl::StatusOr<std::optional<int32_t>> FindTopic(const std::string& topic,
                                                           absl::Duration timeout) = 0;
  // Admin CreateTopics with `configs` (cleanup.policy=compact, ...);
  // replication -1 takes the broker's default.replication.factor. A topic
  // created meanwhile by another instance is not an error.
  virtual absl::Status CreateTopic(const std::string& topic, int32_t partitions, int replication,
                                   const std::map<std::string, std::string>& configs,
                                   absl::Duration timeout) = 0;
  // The topic's configuration entries named in `names` (DescribeConfigs),
  // for the start-up check of internal topics.
  virtual absl::StatusOr<std::map<std::string, std::string>> TopicConfig(
      const std::string& topic, const std::vector<std::string>& names, absl::Duration timeout) = 0;

  virtual uint64_t delivered() const = 0;
  virtual uint64_t failed() const = 0;
  // Messages handed to Produce and not yet delivered or failed (librdkafka's
  // out queue, requests in flight included); -1 when unknown. Any thread.
  virtual int64_t queued() const { return -1; }
};

// One consumed message. Owns the underlying librdkafka message; views are
// valid while this object lives.
class Message {
 public:
  virtual ~Message() = default;
  virtual std::string_view topic() const = 0;
  virtual int32_t partition() const = 0;
  virtual int64_t offset() const = 0;
  virtual std::string_view key() const = 0;
  virtual std::string_view value() const = 0;
  // A null value (a tombstone), as opposed to an empty one.
  virtual bool value_is_null() const { return value().data() == nullptr; }
  virtual int64_t timestamp_ms() const = 0;  // Kafka timestamp, -1 if none
};

// Offsets for PartitionReader::Assign beside real ones.
inline constexpr int64_t kOffsetBeginning = -2;  // the partition's log start
inline constexpr int64_t kOffsetEnd = -1;        // only what is written from now on

// A consumer of explicitly chosen partitions outside any consumer group:
// restores task state from the changelog and keeps standby replicas warm.
// It never commits offsets (the stores hold their changelog positions).
// With isolation.level=read_committed (set by the processor under
// exactly-once) it returns only records of committed transactions and its
// end is the last stable offset.
//
// Thread safety: one thread at a time (the restore thread owns it).
class PartitionReader {
 public:
  static absl::StatusOr<std::unique_ptr<PartitionReader>> Create(const Properties& props);
  virtual ~PartitionReader() = default;
  // Replaces the assignment: each partition is read from its offset
  // (kOffsetBeginning allowed).
  virtual absl::Status Assign(const std::vector<TopicPartitionOffset>& from) = 0;
  // As Consumer::Poll (waits at most `timeout` for the first message).
  virtual absl::Status Poll(size_t max_messages, absl::Duration timeout,
                            std::vector<std::unique_ptr<Message>>* out) = 0;
  // True once the partition has been read to its end (EOF seen and nothing
  // returned since).
  virtual bool AtEnd(const TopicPartition& tp) const = 0;
  // The partition's log start and end offsets (low and high watermark).
  virtual absl::StatusOr<std::pair<int64_t, int64_t>> Watermarks(const TopicPartition& tp,
                                                                 absl::Duration timeout) = 0;
};

class RebalanceListener {
 public:
  virtual ~RebalanceListener() = default;
  // Called from inside Consumer::Poll() on the polling thread, before the
  // consumer starts fetching the partitions / after it stops.
  virtual void OnAssigned(const std::vector<TopicPartition>& partitions) = 0;
  virtual void OnRevoked(const std::vector<TopicPartition>& partitions) = 0;
};

// Consumer lag of one assigned partition, from librdkafka's statistics.
struct PartitionLag {
  std::string topic;
  int32_t partition = -1;
  int64_t lag = -1;  // messages between the consumer position and the high watermark; -1 unknown
};

// One broker connection of a client, from librdkafka's statistics.
struct BrokerStats {
  int32_t node_id = -1;
  int64_t rtt_avg_us = -1;  // request round trip, this statistics interval
  int64_t rtt_p99_us = -1;
  int64_t requests_waiting = 0;    // outbuf_cnt: requests queued to be sent
  int64_t requests_in_flight = 0;  // waitresp_cnt: sent, awaiting a response
};

// The consumer's latest statistics beyond lag.
struct ConsumerStats {
  std::vector<BrokerStats> brokers;  // real brokers only (no bootstrap placeholder)
  int64_t fetch_queue_messages = 0;  // fetched, not yet polled (assigned partitions)
};

// The consuming half of Kafka as the processor sees it (librdkafka from
// Consumer::Create, or the in-process fake).
//
// Thread safety: one polling thread makes every call, except Assignment(),
// AllAssignedAtEof(), Lag() and BrokersReachable(), which may be called from
// any thread.
class Consumer {
 public:
  // The librdkafka consumer. `props` must contain bootstrap.servers and
  // group.id. Defaults unless set: enable.auto.commit=false,
  // auto.offset.reset=earliest, partition.assignment.strategy=range (keeps
  // partition p of every subscribed topic on one member; see
  // docs/design.md), enable.auto.offset.store=false,
  // statistics.interval.ms=5000 (for Lag()). `listener` may be null and must
  // outlive the consumer.
  static absl::StatusOr<std::unique_ptr<Consumer>> Create(const Properties& props,
                                                          RebalanceListener* listener);
  virtual ~Consumer() = default;  // implementations close (leave the group) first

  virtual absl::Status Subscribe(const std::vector<std::string>& topics) = 0;
  // Appends up to `max_messages` messages to *out, waiting at most `timeout`
  // for the first one, then taking only what is already fetched; returns
  // early (possibly with nothing) once every assigned partition is at EOF.
  // Every returned Message must be destroyed before this Consumer: the
  // handle's destruction waits for its outstanding messages.
  // Partition EOF and transient errors are not returned as messages (they
  // are logged); errors classified kFatal or kFenced are returned as a
  // Status, as is any call after Close().
  virtual absl::Status Poll(size_t max_messages, absl::Duration timeout,
                            std::vector<std::unique_ptr<Message>>* out) = 0;
  // Synchronous commit of explicit offsets (next offset to read).
  virtual absl::Status Commit(const std::vector<TopicPartitionOffset>& offsets) = 0;
  // Moves the fetch position of assigned partitions: the next Poll returns
  // their messages from `offset` on (messages already fetched beyond it are
  // discarded). Used to replay a batch that could not be completed.
  virtual absl::Status Seek(const std::vector<TopicPartitionOffset>& offsets) = 0;
  // Stops / restarts fetching assigned partitions (a half task waits for
  // its partner). Pausing survives until Resume or revocation.
  virtual absl::Status Pause(const std::vector<TopicPartition>& partitions) = 0;
  virtual absl::Status Resume(const std::vector<TopicPartition>& partitions) = 0;
  // Current assignment.
  virtual std::vector<TopicPartition> Assignment() const = 0;
  // True when every assigned, unpaused partition has reached its end (EOF
  // seen and nothing consumed since). False while nothing is assigned.
  virtual bool AllAssignedAtEof() const = 0;
  // The latest lag figures (refreshed every statistics interval).
  virtual std::vector<PartitionLag> Lag() const = 0;
  // The latest broker and queue figures (same refresh); empty if unknown.
  virtual ConsumerStats Stats() const { return {}; }
  // False while librdkafka reports every broker down.
  virtual bool BrokersReachable() const = 0;
  // Leaves the group; further Poll() calls return an error. Idempotent.
  virtual absl::Status Close() = 0;

  // For Producer::SendOffsetsToTransaction only: the underlying
  // RdKafka::KafkaConsumer* (nullptr for other implementations), opaque so
  // that this header stays free of librdkafka types.
  virtual void* group_metadata_handle() const = 0;
};

enum class ClientRole { kProducer, kConsumer, kReader };

// Everything the librdkafka client of `role` checks of its properties before
// it creates a handle: the properties Tally requires or manages, then every
// property (Tally's defaults included) set on a librdkafka Conf, each set()
// result checked. Creates no client, opens no connection, starts no thread
// (tally --check-config). InvalidArgument names the property.
absl::Status CheckClientProperties(ClientRole role, const Properties& props,
                                   const std::string& transactional_id = "");

// Creates clients: the processor takes one so that tests can run its loop
// over the in-process fake instead of librdkafka.
class ClientFactory {
 public:
  virtual ~ClientFactory() = default;
  // `transactional_id` non-empty: a transactional producer (see Producer).
  virtual absl::StatusOr<std::unique_ptr<Producer>> CreateProducer(
      const Properties& props, const std::string& transactional_id = "",
      Producer::DeliveryHandler on_delivery = nullptr) = 0;
  virtual absl::StatusOr<std::unique_ptr<Consumer>> CreateConsumer(const Properties& props,
                                                                   RebalanceListener* listener) = 0;
  virtual absl::StatusOr<std::unique_ptr<PartitionReader>> CreateReader(
      const Properties& props) = 0;
};
// Producer::Create / Consumer::Create. A process-wide stateless instance.
ClientFactory& LibRdKafkaClients();

}  // namespace tally::kafka

#endif  // TALLY_PROCESSOR_KAFKA_KAFKA_H_
