// Producer: idempotent by default, never drops on a full local queue, and
// hands every delivery report to the caller with the caller's tag.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "librdkafka/rdkafka.h"
#include "librdkafka/rdkafkacpp.h"
#include "processor/common/log.h"
#include "processor/kafka/internal/rdkafka_util.h"
#include "processor/kafka/kafka.h"

namespace tally::kafka {
namespace {

using internal::KafkaStatus;
using internal::ToAbsl;
using internal::ToTimeoutMs;

// The caller's 64-bit tag travels as librdkafka's per-message opaque.
static_assert(sizeof(void*) >= sizeof(uint64_t), "tags are stored in a pointer");

// How long a Produce() on a full queue blocks in one poll before retrying.
// Short enough to retry soon after a batch is acknowledged, long enough not
// to spin.
constexpr absl::Duration kQueueFullPoll = absl::Milliseconds(50);
// Bound on the destructor's flush: long enough for in-flight batches on a
// healthy cluster, short enough for a pod's termination grace period.
constexpr absl::Duration kDestructorFlush = absl::Seconds(10);
// init_transactions() bound at start-up (finds the coordinator, bumps the
// epoch, which fences any previous instance with the same id).
constexpr absl::Duration kInitTransactionsTimeout = absl::Seconds(30);

bool IsPurge(RdKafka::ErrorCode err) {
  return err == RdKafka::ERR__PURGE_QUEUE || err == RdKafka::ERR__PURGE_INFLIGHT;
}

}  // namespace

struct RdProducerImpl {
  class DeliveryCb : public RdKafka::DeliveryReportCb {
   public:
    explicit DeliveryCb(RdProducerImpl* impl) : impl_(impl) {}
    void dr_cb(RdKafka::Message& message) override { impl_->OnDelivery(message); }

   private:
    RdProducerImpl* const impl_;
  };

  // Runs on the thread serving poll() (Produce/Poll/Flush callers).
  void OnDelivery(RdKafka::Message& message) {
    DeliveryReport report;
    report.tag = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(message.msg_opaque()));
    report.topic = message.topic_name();
    report.partition = message.partition();
    report.offset = message.offset();
    report.error = message.err();
    if (message.err() == RdKafka::ERR_NO_ERROR) {
      // Relaxed: a statistic; nothing else is published through it.
      delivered.fetch_add(1, std::memory_order_relaxed);
    } else {
      report.error_text = message.errstr();
      failed.fetch_add(1, std::memory_order_relaxed);  // relaxed: a statistic
      // Purges only come from AbortTransaction() (or destruction), which
      // the caller asked for; they must not fail the next Flush().
      if (!IsPurge(message.err())) {
        if (failed_since_flush == 0) {
          first_failure_code = message.err();
          first_failure_text =
              absl::StrCat(report.topic, "[", report.partition, "]: ", report.error_text);
        }
        ++failed_since_flush;
      }
    }
    if (on_delivery) on_delivery(report);
  }

  absl::StatusOr<RdKafka::Topic*> GetTopic(std::string_view name) {
    absl::MutexLock lock(&topics_mu);
    auto it = topics.find(name);
    if (it != topics.end()) return it->second.get();
    std::string errstr;
    std::unique_ptr<RdKafka::Topic> topic(
        RdKafka::Topic::create(handle.get(), std::string(name), nullptr, errstr));
    if (topic == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("kafka topic \"", ToAbsl(name), "\": ", errstr));
    }
    RdKafka::Topic* raw = topic.get();
    topics.emplace(std::string(name), std::move(topic));
    return raw;
  }

  absl::Status RequireTransactional(std::string_view what) const {
    if (transactional) return absl::OkStatus();
    return absl::FailedPreconditionError(
        absl::StrCat(ToAbsl(what), ": the producer was created without a transactional_id"));
  }

  // Declaration order is destruction order reversed: the callbacks and the
  // state they touch are declared before `handle` so they outlive it, and
  // the topic handles after it so they are destroyed before it.
  Producer::DeliveryHandler on_delivery;
  internal::LogEventCb event_cb{"producer"};
  DeliveryCb delivery_cb{this};
  Properties props;  // effective properties, for scrubbing error messages
  bool transactional = false;

  // Written by OnDelivery on the polling thread, read from any thread.
  std::atomic<uint64_t> delivered{0};
  std::atomic<uint64_t> failed{0};
  // Polling thread only (OnDelivery and Flush run there).
  uint64_t failed_since_flush = 0;
  int first_failure_code = 0;
  std::string first_failure_text;

  std::unique_ptr<RdKafka::Producer> handle;

  absl::Mutex topics_mu;
  std::map<std::string, std::unique_ptr<RdKafka::Topic>, std::less<>> topics
      ABSL_GUARDED_BY(topics_mu);
};

// The librdkafka implementation of Producer.
class RdProducer final : public Producer {
 public:
  RdProducer() : impl_(std::make_unique<RdProducerImpl>()) {}
  ~RdProducer() override;  // flushes for at most 10 s, then destroys the handle

  absl::Status Produce(std::string_view topic, int32_t partition, std::string_view key,
                       std::string_view value, uint64_t tag, absl::Duration timeout) override;
  absl::Status ProduceRecord(std::string_view topic, int32_t partition, std::string_view key,
                             std::string_view value, const RecordMeta& meta, uint64_t tag,
                             absl::Duration timeout) override;
  absl::Status ProduceTombstone(std::string_view topic, int32_t partition, std::string_view key,
                                uint64_t tag, absl::Duration timeout) override;
  void Poll(absl::Duration timeout) override;
  absl::Status Flush(absl::Duration timeout) override;
  absl::Status BeginTransaction() override;
  absl::Status SendOffsetsToTransaction(const std::vector<TopicPartitionOffset>& offsets,
                                        const Consumer& consumer, absl::Duration timeout) override;
  absl::Status CommitTransaction(absl::Duration timeout) override;
  absl::Status AbortTransaction(absl::Duration timeout) override;
  absl::StatusOr<int32_t> PartitionCount(const std::string& topic, absl::Duration timeout) override;
  absl::StatusOr<std::optional<int32_t>> FindTopic(const std::string& topic,
                                                   absl::Duration timeout) override;
  absl::Status CreateTopic(const std::string& topic, int32_t partitions, int replication,
                           const std::map<std::string, std::string>& configs,
                           absl::Duration timeout) override;
  absl::StatusOr<std::map<std::string, std::string>> TopicConfig(
      const std::string& topic, const std::vector<std::string>& names,
      absl::Duration timeout) override;
  uint64_t delivered() const override;
  uint64_t failed() const override;
  int64_t queued() const override { return impl_->handle->outq_len(); }

  RdProducerImpl& impl() { return *impl_; }

 private:
  // value nullptr: a null value (tombstone). meta nullptr: no headers, the
  // producer's timestamp.
  absl::Status ProduceBytes(std::string_view topic, int32_t partition, std::string_view key,
                            const char* value, size_t size, uint64_t tag, absl::Duration timeout,
                            const RecordMeta* meta = nullptr);

  std::unique_ptr<RdProducerImpl> impl_;
};

namespace internal {

absl::StatusOr<Properties> ProducerProperties(const Properties& props,
                                              const std::string& transactional_id) {
  if (!props.contains("bootstrap.servers")) {
    return absl::InvalidArgumentError("kafka producer: property \"bootstrap.servers\" is required");
  }
  Properties effective = props;
  // Idempotence keeps retries from duplicating or reordering messages;
  // acks=all keeps an acknowledged message when a leader fails.
  internal::SetDefault(&effective, "enable.idempotence", "true");
  internal::SetDefault(&effective, "acks", "all");
  // librdkafka's default (consistent_random, CRC32) disagrees with the Java
  // client; murmur2 keeps a key on the same partition whoever produced it.
  internal::SetDefault(&effective, "partitioner", "murmur2_random");
  if (!transactional_id.empty()) {
    auto it = effective.find("transactional.id");
    if (it != effective.end() && it->second != transactional_id) {
      return absl::InvalidArgumentError(
          "kafka producer: property \"transactional.id\" disagrees with the transactional_id "
          "argument");
    }
    effective["transactional.id"] = transactional_id;
  }
  return effective;
}

}  // namespace internal

absl::StatusOr<std::unique_ptr<Producer>> Producer::Create(const Properties& props,
                                                           DeliveryHandler on_delivery,
                                                           const std::string& transactional_id) {
  absl::StatusOr<Properties> effective_or = internal::ProducerProperties(props, transactional_id);
  if (!effective_or.ok()) return effective_or.status();
  const Properties& effective = *effective_or;
  auto producer = std::make_unique<RdProducer>();
  RdProducerImpl& impl = producer->impl();
  impl.on_delivery = std::move(on_delivery);
  impl.props = effective;
  impl.transactional = !transactional_id.empty();

  absl::StatusOr<std::unique_ptr<RdKafka::Conf>> conf_or = internal::MakeConf(effective);
  if (!conf_or.ok()) return conf_or.status();
  std::unique_ptr<RdKafka::Conf> conf = *std::move(conf_or);
  std::string errstr;
  if (conf->set("dr_cb", &impl.delivery_cb, errstr) != RdKafka::Conf::CONF_OK ||
      conf->set("event_cb", &impl.event_cb, errstr) != RdKafka::Conf::CONF_OK) {
    return absl::InternalError(absl::StrCat("kafka producer: registering callbacks: ", errstr));
  }
  impl.handle.reset(RdKafka::Producer::create(conf.get(), errstr));
  if (impl.handle == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("kafka producer: ", internal::ScrubSecrets(std::move(errstr), effective)));
  }
  TALLY_LOG(kInfo, "kafka", "producer ", impl.handle->name(),
            " created: ", PropertiesForLog(effective));
  if (impl.transactional) {
    absl::Status status = internal::StatusFromError(
        impl.handle->init_transactions(ToTimeoutMs(kInitTransactionsTimeout)),
        "kafka producer: init transactions");
    if (!status.ok()) return status;
  }
  return producer;
}

RdProducer::~RdProducer() {
  if (impl_ == nullptr || impl_->handle == nullptr) return;
  RdKafka::ErrorCode err = impl_->handle->flush(ToTimeoutMs(kDestructorFlush));
  if (err != RdKafka::ERR_NO_ERROR) {
    TALLY_LOG(kError, "kafka", "producer ", impl_->handle->name(), ": ", impl_->handle->outq_len(),
              " messages/requests not delivered at shutdown: ", RdKafka::err2str(err));
  }
}

absl::Status RdProducer::Produce(std::string_view topic, int32_t partition, std::string_view key,
                                 std::string_view value, uint64_t tag, absl::Duration timeout) {
  // A non-null pointer even for an empty value: null is a tombstone.
  static const char kEmpty = 0;
  return ProduceBytes(topic, partition, key, value.empty() ? &kEmpty : value.data(), value.size(),
                      tag, timeout);
}

absl::Status RdProducer::ProduceRecord(std::string_view topic, int32_t partition,
                                       std::string_view key, std::string_view value,
                                       const RecordMeta& meta, uint64_t tag,
                                       absl::Duration timeout) {
  static const char kEmpty = 0;  // as in Produce(): an empty value is not a tombstone
  return ProduceBytes(topic, partition, key, value.empty() ? &kEmpty : value.data(), value.size(),
                      tag, timeout, &meta);
}

absl::Status RdProducer::ProduceTombstone(std::string_view topic, int32_t partition,
                                          std::string_view key, uint64_t tag,
                                          absl::Duration timeout) {
  return ProduceBytes(topic, partition, key, nullptr, 0, tag, timeout);
}

absl::Status RdProducer::ProduceBytes(std::string_view topic, int32_t partition,
                                      std::string_view key, const char* value, size_t size,
                                      uint64_t tag, absl::Duration timeout,
                                      const RecordMeta* meta) {
  absl::StatusOr<RdKafka::Topic*> rkt = impl_->GetTopic(topic);
  if (!rkt.ok()) return rkt.status();
  const absl::Time deadline = absl::Now() + timeout;
  void* opaque = reinterpret_cast<void*>(static_cast<uintptr_t>(tag));
  for (;;) {
    // RK_MSG_COPY: the caller's views need not outlive this call.
    RdKafka::ErrorCode err;
    if (meta == nullptr) {
      err = impl_->handle->produce(*rkt, partition, RdKafka::Producer::RK_MSG_COPY,
                                   const_cast<char*>(value), size,
                                   key.empty() ? nullptr : key.data(), key.size(), opaque);
    } else {
      // The header variant frees the headers when it succeeds and leaves
      // them to the caller when it fails (rdkafkacpp.h): one set per try.
      std::unique_ptr<RdKafka::Headers> headers(RdKafka::Headers::create());
      for (const Header& h : meta->headers) {
        headers->add(std::string(h.name), h.value.data(), h.value.size());
      }
      err =
          impl_->handle->produce(std::string(topic), partition, RdKafka::Producer::RK_MSG_COPY,
                                 const_cast<char*>(value), size, key.empty() ? nullptr : key.data(),
                                 key.size(), meta->timestamp_ms, headers.get(), opaque);
      if (err == RdKafka::ERR_NO_ERROR) (void)headers.release();  // librdkafka's now
    }
    if (err == RdKafka::ERR_NO_ERROR) return absl::OkStatus();
    if (err == RdKafka::ERR__QUEUE_FULL) {
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) {
        return KafkaStatus(ErrorClass::kRetriable, err,
                           absl::StrCat("kafka produce to ", ToAbsl(topic)),
                           "local queue still full when the timeout ran out", /*deadline=*/true);
      }
      // Serving delivery reports is what frees queue slots.
      impl_->handle->poll(ToTimeoutMs(std::min(left, kQueueFullPoll)));
      continue;
    }
    if (err == RdKafka::ERR__FATAL) {
      std::string why;
      RdKafka::ErrorCode cause = impl_->handle->fatal_error(why);
      return KafkaStatus(ErrorClass::kFatal, cause,
                         absl::StrCat("kafka produce to ", ToAbsl(topic)), why,
                         /*deadline=*/false);
    }
    return KafkaStatus(err, absl::StrCat("kafka produce to ", ToAbsl(topic)));
  }
}

void RdProducer::Poll(absl::Duration timeout) { impl_->handle->poll(ToTimeoutMs(timeout)); }

absl::Status RdProducer::Flush(absl::Duration timeout) {
  // flush() serves delivery reports itself (no background event thread).
  RdKafka::ErrorCode err = impl_->handle->flush(ToTimeoutMs(timeout));
  if (err == RdKafka::ERR__TIMED_OUT) {
    return KafkaStatus(ErrorClass::kRetriable, err, "kafka flush",
                       absl::StrCat(impl_->handle->outq_len(),
                                    " messages/requests still in flight when the timeout ran out"),
                       /*deadline=*/true);
  }
  if (err != RdKafka::ERR_NO_ERROR) return KafkaStatus(err, "kafka flush");
  if (impl_->failed_since_flush > 0) {
    absl::Status status = KafkaStatus(
        impl_->first_failure_code, "kafka flush",
        absl::StrCat(
            impl_->failed_since_flush,
            " message(s) failed since the previous flush; first: ", impl_->first_failure_text));
    impl_->failed_since_flush = 0;
    impl_->first_failure_code = 0;
    impl_->first_failure_text.clear();
    return status;
  }
  return absl::OkStatus();
}

absl::Status RdProducer::BeginTransaction() {
  absl::Status status = impl_->RequireTransactional("begin transaction");
  if (!status.ok()) return status;
  return internal::StatusFromError(impl_->handle->begin_transaction(), "kafka begin transaction");
}

absl::Status RdProducer::SendOffsetsToTransaction(const std::vector<TopicPartitionOffset>& offsets,
                                                  const Consumer& consumer,
                                                  absl::Duration timeout) {
  absl::Status status = impl_->RequireTransactional("send offsets to transaction");
  if (!status.ok()) return status;
  auto* kafka_consumer = static_cast<RdKafka::KafkaConsumer*>(consumer.group_metadata_handle());
  if (kafka_consumer == nullptr) {
    return absl::FailedPreconditionError("send offsets to transaction: the consumer is closed");
  }
  std::unique_ptr<RdKafka::ConsumerGroupMetadata> metadata(kafka_consumer->groupMetadata());
  if (metadata == nullptr) {
    return absl::FailedPreconditionError(
        "send offsets to transaction: the consumer has no group metadata");
  }
  internal::OwnedPartitions list;
  list.list.reserve(offsets.size());
  for (const TopicPartitionOffset& o : offsets) {
    list.list.push_back(RdKafka::TopicPartition::create(o.topic, o.partition, o.offset));
  }
  return internal::StatusFromError(
      impl_->handle->send_offsets_to_transaction(list.list, metadata.get(), ToTimeoutMs(timeout)),
      "kafka send offsets to transaction");
}

absl::Status RdProducer::CommitTransaction(absl::Duration timeout) {
  absl::Status status = impl_->RequireTransactional("commit transaction");
  if (!status.ok()) return status;
  return internal::StatusFromError(impl_->handle->commit_transaction(ToTimeoutMs(timeout)),
                                   "kafka commit transaction");
}

absl::Status RdProducer::AbortTransaction(absl::Duration timeout) {
  absl::Status status = impl_->RequireTransactional("abort transaction");
  if (!status.ok()) return status;
  status = internal::StatusFromError(impl_->handle->abort_transaction(ToTimeoutMs(timeout)),
                                     "kafka abort transaction");
  if (!status.ok()) return status;
  // The aborted messages' reports (failures, purges) are served here and
  // forgotten: a replay of the batch must not fail on its predecessor's.
  impl_->handle->poll(0);
  impl_->failed_since_flush = 0;
  impl_->first_failure_code = 0;
  impl_->first_failure_text.clear();
  return status;
}

absl::StatusOr<int32_t> RdProducer::PartitionCount(const std::string& topic,
                                                   absl::Duration timeout) {
  absl::StatusOr<RdKafka::Topic*> rkt = impl_->GetTopic(topic);
  if (!rkt.ok()) return rkt.status();
  RdKafka::Metadata* raw = nullptr;
  RdKafka::ErrorCode err =
      impl_->handle->metadata(/*all_topics=*/false, *rkt, &raw, ToTimeoutMs(timeout));
  std::unique_ptr<RdKafka::Metadata> metadata(raw);
  if (err != RdKafka::ERR_NO_ERROR) {
    return KafkaStatus(ClassifyError(err), err, absl::StrCat("kafka metadata for ", topic), "",
                       /*deadline=*/err == RdKafka::ERR__TIMED_OUT);
  }
  for (const RdKafka::TopicMetadata* t : *metadata->topics()) {
    if (t->topic() != topic) continue;
    if (t->err() != RdKafka::ERR_NO_ERROR) {
      return KafkaStatus(t->err(), absl::StrCat("kafka metadata for ", topic));
    }
    return static_cast<int32_t>(t->partitions()->size());
  }
  return absl::NotFoundError(absl::StrCat("kafka metadata: topic ", topic, " not in the reply"));
}

absl::StatusOr<std::optional<int32_t>> RdProducer::FindTopic(const std::string& topic,
                                                             absl::Duration timeout) {
  RdKafka::Metadata* raw = nullptr;
  RdKafka::ErrorCode err =
      impl_->handle->metadata(/*all_topics=*/true, nullptr, &raw, ToTimeoutMs(timeout));
  std::unique_ptr<RdKafka::Metadata> metadata(raw);
  if (err != RdKafka::ERR_NO_ERROR) {
    return KafkaStatus(ClassifyError(err), err, "kafka metadata (all topics)", "",
                       /*deadline=*/err == RdKafka::ERR__TIMED_OUT);
  }
  for (const RdKafka::TopicMetadata* t : *metadata->topics()) {
    if (t->topic() != topic) continue;
    if (t->err() == RdKafka::ERR_UNKNOWN_TOPIC_OR_PART) return std::nullopt;
    if (t->err() != RdKafka::ERR_NO_ERROR) {
      return KafkaStatus(t->err(), absl::StrCat("kafka metadata for ", topic));
    }
    return static_cast<int32_t>(t->partitions()->size());
  }
  return std::nullopt;
}

namespace {

// Owners of the C admin API's objects (the C++ API has no admin calls).
struct QueueDeleter {
  void operator()(rd_kafka_queue_t* q) const { rd_kafka_queue_destroy(q); }
};
struct EventDeleter {
  void operator()(rd_kafka_event_t* e) const { rd_kafka_event_destroy(e); }
};
struct NewTopicDeleter {
  void operator()(rd_kafka_NewTopic_t* t) const { rd_kafka_NewTopic_destroy(t); }
};
struct ConfigResourceDeleter {
  void operator()(rd_kafka_ConfigResource_t* r) const { rd_kafka_ConfigResource_destroy(r); }
};
struct AdminOptionsDeleter {
  void operator()(rd_kafka_AdminOptions_t* o) const { rd_kafka_AdminOptions_destroy(o); }
};

// Waits for the one result event of an admin request on `queue`.
absl::StatusOr<std::unique_ptr<rd_kafka_event_t, EventDeleter>> AwaitAdminResult(
    rd_kafka_queue_t* queue, absl::Duration timeout, std::string_view what) {
  std::unique_ptr<rd_kafka_event_t, EventDeleter> event(
      rd_kafka_queue_poll(queue, ToTimeoutMs(timeout + absl::Seconds(1))));
  if (event == nullptr) {
    return KafkaStatus(ErrorClass::kRetriable, RD_KAFKA_RESP_ERR__TIMED_OUT, what,
                       "no answer from the cluster", /*deadline=*/true);
  }
  if (rd_kafka_event_error(event.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return KafkaStatus(rd_kafka_event_error(event.get()), what,
                       rd_kafka_event_error_string(event.get()));
  }
  return event;
}

}  // namespace

absl::Status RdProducer::CreateTopic(const std::string& topic, int32_t partitions, int replication,
                                     const std::map<std::string, std::string>& configs,
                                     absl::Duration timeout) {
  rd_kafka_t* rk = impl_->handle->c_ptr();
  const std::string what = absl::StrCat("kafka create topic ", topic);
  char errstr[512];
  std::unique_ptr<rd_kafka_NewTopic_t, NewTopicDeleter> new_topic(
      rd_kafka_NewTopic_new(topic.c_str(), partitions, replication, errstr, sizeof(errstr)));
  if (new_topic == nullptr) return absl::InvalidArgumentError(absl::StrCat(what, ": ", errstr));
  for (const auto& [name, value] : configs) {
    if (rd_kafka_NewTopic_set_config(new_topic.get(), name.c_str(), value.c_str()) !=
        RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": config ", name, "=", value));
    }
  }
  std::unique_ptr<rd_kafka_AdminOptions_t, AdminOptionsDeleter> options(
      rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS));
  rd_kafka_AdminOptions_set_operation_timeout(options.get(), ToTimeoutMs(timeout), errstr,
                                              sizeof(errstr));
  rd_kafka_AdminOptions_set_request_timeout(options.get(), ToTimeoutMs(timeout), errstr,
                                            sizeof(errstr));
  std::unique_ptr<rd_kafka_queue_t, QueueDeleter> queue(rd_kafka_queue_new(rk));
  rd_kafka_NewTopic_t* list[] = {new_topic.get()};
  rd_kafka_CreateTopics(rk, list, 1, options.get(), queue.get());
  auto event = AwaitAdminResult(queue.get(), timeout, what);
  if (!event.ok()) return event.status();
  const rd_kafka_CreateTopics_result_t* result = rd_kafka_event_CreateTopics_result(event->get());
  size_t count = 0;
  const rd_kafka_topic_result_t** results = rd_kafka_CreateTopics_result_topics(result, &count);
  for (size_t i = 0; i < count; ++i) {
    const rd_kafka_resp_err_t err = rd_kafka_topic_result_error(results[i]);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      continue;
    }
    const char* why = rd_kafka_topic_result_error_string(results[i]);
    return KafkaStatus(err, what, why == nullptr ? "" : why);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, std::string>> RdProducer::TopicConfig(
    const std::string& topic, const std::vector<std::string>& names, absl::Duration timeout) {
  rd_kafka_t* rk = impl_->handle->c_ptr();
  const std::string what = absl::StrCat("kafka describe configs of topic ", topic);
  // DescribeConfigs goes to the controller. A cluster whose metadata names
  // none (librdkafka's mock broker) would only time out: say so at once
  // instead of holding up start-up for `timeout`.
  if (rd_kafka_controllerid(rk, ToTimeoutMs(std::min(timeout, absl::Seconds(2)))) < 0) {
    return absl::UnavailableError(
        absl::StrCat(what, ": the cluster names no controller (a broker without the Admin API)"));
  }
  std::unique_ptr<rd_kafka_ConfigResource_t, ConfigResourceDeleter> resource(
      rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str()));
  char errstr[512];
  std::unique_ptr<rd_kafka_AdminOptions_t, AdminOptionsDeleter> options(
      rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS));
  rd_kafka_AdminOptions_set_request_timeout(options.get(), ToTimeoutMs(timeout), errstr,
                                            sizeof(errstr));
  std::unique_ptr<rd_kafka_queue_t, QueueDeleter> queue(rd_kafka_queue_new(rk));
  rd_kafka_ConfigResource_t* list[] = {resource.get()};
  rd_kafka_DescribeConfigs(rk, list, 1, options.get(), queue.get());
  auto event = AwaitAdminResult(queue.get(), timeout, what);
  if (!event.ok()) return event.status();
  const rd_kafka_DescribeConfigs_result_t* result =
      rd_kafka_event_DescribeConfigs_result(event->get());
  size_t count = 0;
  const rd_kafka_ConfigResource_t** resources =
      rd_kafka_DescribeConfigs_result_resources(result, &count);
  std::map<std::string, std::string> out;
  for (size_t i = 0; i < count; ++i) {
    if (rd_kafka_ConfigResource_error(resources[i]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return KafkaStatus(rd_kafka_ConfigResource_error(resources[i]), what,
                         rd_kafka_ConfigResource_error_string(resources[i]));
    }
    size_t entries = 0;
    const rd_kafka_ConfigEntry_t** configs =
        rd_kafka_ConfigResource_configs(resources[i], &entries);
    for (size_t j = 0; j < entries; ++j) {
      const char* name = rd_kafka_ConfigEntry_name(configs[j]);
      const char* value = rd_kafka_ConfigEntry_value(configs[j]);
      if (name == nullptr) continue;
      if (std::find(names.begin(), names.end(), name) == names.end()) continue;
      out[name] = value == nullptr ? "" : value;
    }
  }
  return out;
}

uint64_t RdProducer::delivered() const {
  return impl_->delivered.load(std::memory_order_relaxed);  // relaxed: a statistic
}

uint64_t RdProducer::failed() const {
  return impl_->failed.load(std::memory_order_relaxed);  // relaxed: a statistic
}

}  // namespace tally::kafka
