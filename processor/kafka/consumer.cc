// Consumer: a KafkaConsumer in a group, with our own rebalance handling
// (eager and cooperative), per-partition EOF tracking and explicit,
// synchronous offset commits.
#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "librdkafka/rdkafka.h"
#include "librdkafka/rdkafkacpp.h"
#include "processor/common/log.h"
#include "processor/kafka/internal/rdkafka_util.h"
#include "processor/kafka/kafka.h"
#include "simdjson.h"

namespace tally::kafka {
namespace {

using internal::KafkaStatus;
using internal::ToTimeoutMs;

class RdMessage final : public Message {
 public:
  explicit RdMessage(std::unique_ptr<RdKafka::Message> message) : message_(std::move(message)) {}

  std::string_view topic() const override {
    // The C name lives in the topic handle the message holds a reference
    // to; topic_name() would copy it into a std::string per message.
    const rd_kafka_message_t* c_message = message_->c_ptr();
    if (c_message == nullptr || c_message->rkt == nullptr) return {};
    const char* name = rd_kafka_topic_name(c_message->rkt);
    return name == nullptr ? std::string_view() : std::string_view(name);
  }
  int32_t partition() const override { return message_->partition(); }
  int64_t offset() const override { return message_->offset(); }
  std::string_view key() const override {
    const void* key = message_->key_pointer();
    return key == nullptr ? std::string_view()
                          : std::string_view(static_cast<const char*>(key), message_->key_len());
  }
  std::string_view value() const override {
    const void* payload = message_->payload();
    return payload == nullptr
               ? std::string_view()
               : std::string_view(static_cast<const char*>(payload), message_->len());
  }
  int64_t timestamp_ms() const override {
    RdKafka::MessageTimestamp ts = message_->timestamp();
    return ts.type == RdKafka::MessageTimestamp::MSG_TIMESTAMP_NOT_AVAILABLE ? -1 : ts.timestamp;
  }

 private:
  std::unique_ptr<RdKafka::Message> message_;
};

std::vector<TopicPartition> ToOurs(const std::vector<RdKafka::TopicPartition*>& partitions) {
  std::vector<TopicPartition> out;
  out.reserve(partitions.size());
  for (const RdKafka::TopicPartition* p : partitions) {
    out.push_back(TopicPartition{p->topic(), p->partition()});
  }
  return out;
}

std::string Describe(const std::vector<TopicPartition>& partitions) {
  std::string out;
  for (const TopicPartition& p : partitions) {
    absl::StrAppend(&out, out.empty() ? "" : ",", p.topic, "[", p.partition, "]");
  }
  return out;
}

// Lets the per-message EOF bookkeeping look a partition up by the topic
// name librdkafka already holds, without building a std::string.
struct PartitionRef {
  std::string_view topic;
  int32_t partition;
};
struct PartitionLess {
  using is_transparent = void;
  static std::pair<std::string_view, int32_t> Key(const TopicPartition& p) {
    return {p.topic, p.partition};
  }
  static std::pair<std::string_view, int32_t> Key(const PartitionRef& p) {
    return {p.topic, p.partition};
  }
  template <typename A, typename B>
  bool operator()(const A& a, const B& b) const {
    return Key(a) < Key(b);
  }
};

PartitionRef RefOf(const Message& message) {
  return PartitionRef{message.topic(), message.partition()};
}

}  // namespace

struct RdConsumerImpl {
  class RebalanceCb : public RdKafka::RebalanceCb {
   public:
    explicit RebalanceCb(RdConsumerImpl* impl) : impl_(impl) {}
    void rebalance_cb(RdKafka::KafkaConsumer* consumer, RdKafka::ErrorCode err,
                      std::vector<RdKafka::TopicPartition*>& partitions) override {
      impl_->OnRebalance(consumer, err, partitions);
    }

   private:
    RdConsumerImpl* const impl_;
  };

  // Runs inside consume()/close() on the polling thread.
  void OnRebalance(RdKafka::KafkaConsumer* consumer, RdKafka::ErrorCode err,
                   std::vector<RdKafka::TopicPartition*>& partitions) {
    const bool cooperative = consumer->rebalance_protocol() == "COOPERATIVE";
    std::vector<TopicPartition> ours = ToOurs(partitions);
    if (err == RdKafka::ERR__ASSIGN_PARTITIONS) {
      TALLY_LOG(kInfo, "kafka", "consumer ", consumer->name(), " assigned (",
                cooperative ? "incremental" : "eager", "): ", Describe(ours));
      // Before assigning, so that the listener sees the partitions before
      // any of their messages.
      if (listener != nullptr) listener->OnAssigned(ours);
      {
        absl::MutexLock lock(&mu);
        // An eager assignment replaces the whole set; a cooperative one adds.
        if (!cooperative) at_eof.clear();
        for (const TopicPartition& p : ours) at_eof[p] = false;
      }
      if (cooperative) {
        absl::Status status = internal::StatusFromError(consumer->incremental_assign(partitions),
                                                        "incremental assign");
        if (!status.ok()) TALLY_LOG(kError, "kafka", status.ToString());
      } else {
        RdKafka::ErrorCode assign_err = consumer->assign(partitions);
        if (assign_err != RdKafka::ERR_NO_ERROR) {
          TALLY_LOG(kError, "kafka", "assign: ", RdKafka::err2str(assign_err));
        }
      }
      return;
    }
    if (err == RdKafka::ERR__REVOKE_PARTITIONS) {
      if (consumer->assignment_lost()) {
        // Another member may already own them: commits for them will fail.
        TALLY_LOG(kWarning, "kafka", "consumer ", consumer->name(),
                  " lost its assignment (session timed out?): ", Describe(ours));
      } else {
        TALLY_LOG(kInfo, "kafka", "consumer ", consumer->name(), " revoked (",
                  cooperative ? "incremental" : "eager", "): ", Describe(ours));
      }
      // Before unassigning, so the listener may still commit for them.
      if (listener != nullptr) listener->OnRevoked(ours);
      {
        absl::MutexLock lock(&mu);
        if (!cooperative) {
          at_eof.clear();
          paused.clear();
        } else {
          for (const TopicPartition& p : ours) {
            at_eof.erase(p);
            paused.erase(p);
          }
        }
      }
      if (cooperative) {
        absl::Status status = internal::StatusFromError(consumer->incremental_unassign(partitions),
                                                        "incremental unassign");
        if (!status.ok()) TALLY_LOG(kError, "kafka", status.ToString());
      } else {
        RdKafka::ErrorCode unassign_err = consumer->unassign();
        if (unassign_err != RdKafka::ERR_NO_ERROR) {
          TALLY_LOG(kError, "kafka", "unassign: ", RdKafka::err2str(unassign_err));
        }
      }
      return;
    }
    // A failed rebalance: librdkafka requires unassign() to resynchronise,
    // so everything we held is gone.
    TALLY_LOG(kError, "kafka", "consumer ", consumer->name(),
              " rebalance failed: ", RdKafka::err2str(err));
    std::vector<TopicPartition> held;
    {
      absl::MutexLock lock(&mu);
      for (const auto& [p, eof] : at_eof) held.push_back(p);
      at_eof.clear();
    }
    if (listener != nullptr && !held.empty()) listener->OnRevoked(held);
    consumer->unassign();
  }

  // librdkafka's statistics JSON (every statistics.interval.ms, on the
  // polling thread): consumer lag of the assigned partitions and whether
  // any broker connection is up.
  void OnStatistics(std::string_view json) {
    simdjson::ondemand::parser parser;
    simdjson::padded_string padded(json.data(), json.size());
    simdjson::ondemand::document doc;
    if (parser.iterate(padded).get(doc) != simdjson::SUCCESS) return;
    std::vector<PartitionLag> lags;
    std::vector<std::pair<TopicPartition, int64_t>> fetch_queued;
    ConsumerStats stats;
    bool any_broker_up = false;
    simdjson::ondemand::object root;
    if (doc.get_object().get(root) != simdjson::SUCCESS) return;
    for (auto field : root) {
      std::string_view key;
      if (field.unescaped_key().get(key) != simdjson::SUCCESS) return;
      if (key == "brokers") {
        simdjson::ondemand::object brokers;
        if (field.value().get_object().get(brokers) != simdjson::SUCCESS) return;
        for (auto broker : brokers) {
          simdjson::ondemand::object b;
          if (broker.value().get_object().get(b) != simdjson::SUCCESS) return;
          int64_t nodeid = -1;
          std::string_view state;
          BrokerStats bs;
          for (auto bf : b) {
            std::string_view bk;
            if (bf.unescaped_key().get(bk) != simdjson::SUCCESS) return;
            if (bk == "nodeid") {
              if (bf.value().get_int64().get(nodeid) != simdjson::SUCCESS) nodeid = -1;
            } else if (bk == "state") {
              if (bf.value().get_string().get(state) != simdjson::SUCCESS) state = {};
            } else if (bk == "outbuf_cnt") {
              if (bf.value().get_int64().get(bs.requests_waiting) != simdjson::SUCCESS) {
                bs.requests_waiting = 0;
              }
            } else if (bk == "waitresp_cnt") {
              if (bf.value().get_int64().get(bs.requests_in_flight) != simdjson::SUCCESS) {
                bs.requests_in_flight = 0;
              }
            } else if (bk == "rtt") {
              simdjson::ondemand::object rtt;
              if (bf.value().get_object().get(rtt) != simdjson::SUCCESS) return;
              for (auto rf : rtt) {
                std::string_view rk;
                if (rf.unescaped_key().get(rk) != simdjson::SUCCESS) return;
                int64_t* into = rk == "avg"   ? &bs.rtt_avg_us
                                : rk == "p99" ? &bs.rtt_p99_us
                                              : nullptr;
                if (into != nullptr && rf.value().get_int64().get(*into) != simdjson::SUCCESS) {
                  *into = -1;
                }
              }
            }
          }
          // nodeid -1 is the bootstrap placeholder, not a broker.
          if (nodeid >= 0 && state == "UP") any_broker_up = true;
          if (nodeid >= 0) {
            bs.node_id = static_cast<int32_t>(nodeid);
            stats.brokers.push_back(bs);
          }
        }
      } else if (key == "topics") {
        simdjson::ondemand::object topics;
        if (field.value().get_object().get(topics) != simdjson::SUCCESS) return;
        for (auto topic : topics) {
          std::string_view name;
          if (topic.unescaped_key().get(name) != simdjson::SUCCESS) return;
          std::string topic_name(name);
          simdjson::ondemand::object t;
          if (topic.value().get_object().get(t) != simdjson::SUCCESS) return;
          for (auto tf : t) {
            std::string_view tk;
            if (tf.unescaped_key().get(tk) != simdjson::SUCCESS) return;
            if (tk != "partitions") continue;
            simdjson::ondemand::object partitions;
            if (tf.value().get_object().get(partitions) != simdjson::SUCCESS) return;
            for (auto partition : partitions) {
              std::string_view id_text;
              if (partition.unescaped_key().get(id_text) != simdjson::SUCCESS) return;
              int32_t id = -1;
              if (!absl::SimpleAtoi(internal::ToAbsl(id_text), &id) || id < 0) continue;
              simdjson::ondemand::object pf;
              if (partition.value().get_object().get(pf) != simdjson::SUCCESS) return;
              int64_t messages = -1;
              int64_t queued = 0;
              for (auto f : pf) {
                std::string_view fk;
                if (f.unescaped_key().get(fk) != simdjson::SUCCESS) return;
                if (fk == "consumer_lag" &&
                    f.value().get_int64().get(messages) != simdjson::SUCCESS) {
                  messages = -1;
                } else if (fk == "fetchq_cnt" &&
                           f.value().get_int64().get(queued) != simdjson::SUCCESS) {
                  queued = 0;
                }
              }
              lags.push_back(PartitionLag{topic_name, id, messages});
              fetch_queued.emplace_back(TopicPartition{topic_name, id}, queued);
            }
          }
        }
      }
    }
    absl::MutexLock lock(&mu);
    // Only assigned partitions: the statistics also list partitions this
    // member merely knows from metadata.
    std::erase_if(lags, [this](const PartitionLag& l) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return !at_eof.contains(PartitionRef{l.topic, l.partition});
    });
    lag = std::move(lags);
    for (const auto& [tp, queued] : fetch_queued) {
      if (at_eof.contains(tp)) stats.fetch_queue_messages += queued;
    }
    consumer_stats = std::move(stats);
    brokers_up.store(any_broker_up, std::memory_order_relaxed);
    // A report of a connection up well after the last connection error
    // means the broker is back, even if nothing was consumed since.
    if (any_broker_up &&
        NowMs() - last_broker_error_ms.load(std::memory_order_relaxed) > kReachableAfterErrorMs) {
      MarkBrokerOk();
    }
  }

  static int64_t NowMs() { return absl::ToUnixMillis(absl::Now()); }
  // Connection-level errors (the broker closed or refused the connection,
  // its name does not resolve, every broker down) make the brokers
  // unreachable until a fetch or commit succeeds again, or a statistics
  // report shows a connection up kReachableAfterErrorMs after the last
  // such error. librdkafka repeats these errors at every reconnect attempt
  // while the broker is away; the statistics alone (every 5 s) can miss an
  // outage shorter than their interval.
  void OnError(RdKafka::ErrorCode err) {
    switch (err) {
      case RdKafka::ERR__TRANSPORT:
      case RdKafka::ERR__ALL_BROKERS_DOWN:
      case RdKafka::ERR__RESOLVE:
        last_broker_error_ms.store(NowMs(), std::memory_order_relaxed);
        broker_error_pending.store(true, std::memory_order_relaxed);
        return;
      default:
        return;
    }
  }
  void MarkBrokerOk() { broker_error_pending.store(false, std::memory_order_relaxed); }
  static constexpr int64_t kReachableAfterErrorMs = 2000;

  // Written by the statistics callback (polling thread), read by health
  // checks on any thread; relaxed: an isolated flag, nothing else is
  // published through it.
  std::atomic<bool> brokers_up{true};
  // Set by connection errors, cleared by evidence the broker is back (see
  // OnError). relaxed, like brokers_up: isolated flags.
  std::atomic<int64_t> last_broker_error_ms{0};
  std::atomic<bool> broker_error_pending{false};

  // Declaration order is destruction order reversed: everything the
  // callbacks touch is declared before `handle`, so it outlives it.
  RebalanceListener* listener = nullptr;  // not owned; outlives the consumer
  internal::LogEventCb event_cb{"consumer", [this](std::string_view json) { OnStatistics(json); },
                                [this](RdKafka::ErrorCode err) { OnError(err); }};
  RebalanceCb rebalance_cb{this};
  Properties props;
  bool closed = false;  // polling thread only

  // Written on the polling thread (rebalances, Poll), read from any thread
  // by Assignment()/AllAssignedAtEof().
  mutable absl::Mutex mu;
  // Assigned partitions -> "EOF reached and nothing consumed since".
  std::map<TopicPartition, bool, PartitionLess> at_eof ABSL_GUARDED_BY(mu);
  // Paused partitions do not count for AllAssignedAtEof (they are not read).
  std::set<TopicPartition> paused ABSL_GUARDED_BY(mu);
  std::vector<PartitionLag> lag ABSL_GUARDED_BY(mu);
  ConsumerStats consumer_stats ABSL_GUARDED_BY(mu);

  std::unique_ptr<RdKafka::KafkaConsumer> handle;
};

// The librdkafka implementation of Consumer.
class RdConsumer final : public Consumer {
 public:
  RdConsumer() : impl_(std::make_unique<RdConsumerImpl>()) {}
  ~RdConsumer() override;  // closes (leaves the group) then destroys the handle

  absl::Status Subscribe(const std::vector<std::string>& topics) override;
  absl::Status Poll(size_t max_messages, absl::Duration timeout,
                    std::vector<std::unique_ptr<Message>>* out) override;
  absl::Status Commit(const std::vector<TopicPartitionOffset>& offsets) override;
  absl::Status Seek(const std::vector<TopicPartitionOffset>& offsets) override;
  absl::Status Pause(const std::vector<TopicPartition>& partitions) override;
  absl::Status Resume(const std::vector<TopicPartition>& partitions) override;
  std::vector<TopicPartition> Assignment() const override;
  bool AllAssignedAtEof() const override;
  std::vector<PartitionLag> Lag() const override;
  ConsumerStats Stats() const override;
  bool BrokersReachable() const override;
  absl::Status Close() override;
  void* group_metadata_handle() const override;

  RdConsumerImpl& impl() { return *impl_; }

 private:
  absl::Status SetPaused(const std::vector<TopicPartition>& partitions, bool paused);

  std::unique_ptr<RdConsumerImpl> impl_;
};

namespace internal {

absl::StatusOr<Properties> ConsumerProperties(const Properties& props) {
  for (const char* required : {"bootstrap.servers", "group.id"}) {
    if (!props.contains(required)) {
      return absl::InvalidArgumentError(
          absl::StrCat("kafka consumer: property \"", required, "\" is required"));
    }
  }
  Properties effective = props;
  // Offsets are committed explicitly, after the output is durable.
  internal::SetDefault(&effective, "enable.auto.commit", "false");
  internal::SetDefault(&effective, "enable.auto.offset.store", "false");
  internal::SetDefault(&effective, "auto.offset.reset", "earliest");
  // range: with co-partitioned topics (same partition count, all members
  // subscribed to both) it gives partition p of every topic to the same
  // member, which is what a task needs. cooperative-sticky does not (seen
  // with 3 members: clicks[0,3,6] + conversions[1,4,7] on one instance);
  // its rebalances are cheaper but librdkafka 2.0.2 has no custom assignor
  // to fix that. The processor still verifies every assignment.
  internal::SetDefault(&effective, "partition.assignment.strategy", "range");
  internal::SetDefault(&effective, "statistics.interval.ms", "5000");
  auto eof = effective.find("enable.partition.eof");
  if (eof != effective.end() && eof->second != "true") {
    return absl::InvalidArgumentError(
        "kafka consumer: property \"enable.partition.eof\" must be true (AllAssignedAtEof needs "
        "it)");
  }
  effective["enable.partition.eof"] = "true";

  return effective;
}

}  // namespace internal

absl::StatusOr<std::unique_ptr<Consumer>> Consumer::Create(const Properties& props,
                                                           RebalanceListener* listener) {
  absl::StatusOr<Properties> effective_or = internal::ConsumerProperties(props);
  if (!effective_or.ok()) return effective_or.status();
  const Properties& effective = *effective_or;
  auto consumer = std::make_unique<RdConsumer>();
  RdConsumerImpl& impl = consumer->impl();
  impl.listener = listener;
  impl.props = effective;

  absl::StatusOr<std::unique_ptr<RdKafka::Conf>> conf_or = internal::MakeConf(effective);
  if (!conf_or.ok()) return conf_or.status();
  std::unique_ptr<RdKafka::Conf> conf = *std::move(conf_or);
  std::string errstr;
  if (conf->set("rebalance_cb", &impl.rebalance_cb, errstr) != RdKafka::Conf::CONF_OK ||
      conf->set("event_cb", &impl.event_cb, errstr) != RdKafka::Conf::CONF_OK) {
    return absl::InternalError(absl::StrCat("kafka consumer: registering callbacks: ", errstr));
  }
  impl.handle.reset(RdKafka::KafkaConsumer::create(conf.get(), errstr));
  if (impl.handle == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("kafka consumer: ", internal::ScrubSecrets(std::move(errstr), effective)));
  }
  TALLY_LOG(kInfo, "kafka", "consumer ", impl.handle->name(),
            " created: ", PropertiesForLog(effective));
  return consumer;
}

RdConsumer::~RdConsumer() {
  if (impl_ == nullptr || impl_->handle == nullptr) return;
  absl::Status status = Close();
  if (!status.ok()) TALLY_LOG(kWarning, "kafka", "consumer close: ", status.ToString());
}

absl::Status RdConsumer::Subscribe(const std::vector<std::string>& topics) {
  if (impl_->closed) return absl::FailedPreconditionError("kafka subscribe: consumer is closed");
  RdKafka::ErrorCode err = impl_->handle->subscribe(topics);
  if (err != RdKafka::ERR_NO_ERROR) return KafkaStatus(err, "kafka subscribe");
  return absl::OkStatus();
}

absl::Status RdConsumer::Poll(size_t max_messages, absl::Duration timeout,
                              std::vector<std::unique_ptr<Message>>* out) {
  if (impl_->closed) return absl::FailedPreconditionError("kafka poll: consumer is closed");
  const absl::Time deadline = absl::Now() + timeout;
  size_t taken = 0;
  while (taken < max_messages) {
    // Wait only for the first message; after that take what is fetched.
    const int wait_ms = taken == 0 ? ToTimeoutMs(deadline - absl::Now()) : 0;
    std::unique_ptr<RdKafka::Message> message(impl_->handle->consume(wait_ms));
    const RdKafka::ErrorCode err = message->err();
    switch (err) {
      case RdKafka::ERR_NO_ERROR: {
        impl_->MarkBrokerOk();
        auto ours = std::make_unique<RdMessage>(std::move(message));
        {
          absl::MutexLock lock(&impl_->mu);
          auto it = impl_->at_eof.find(RefOf(*ours));
          if (it != impl_->at_eof.end()) it->second = false;
        }
        out->push_back(std::move(ours));
        ++taken;
        break;
      }
      case RdKafka::ERR__PARTITION_EOF: {
        bool all_at_eof = false;
        {
          absl::MutexLock lock(&impl_->mu);
          auto it = impl_->at_eof.find(RefOf(RdMessage(std::move(message))));
          if (it != impl_->at_eof.end()) it->second = true;
          all_at_eof = !impl_->at_eof.empty();
          for (const auto& [p, at_eof] : impl_->at_eof) all_at_eof = all_at_eof && at_eof;
        }
        // Nothing more is coming soon: do not sit out the timeout.
        if (all_at_eof) return absl::OkStatus();
        break;
      }
      case RdKafka::ERR__TIMED_OUT:
        return absl::OkStatus();
      default: {
        ErrorClass error_class = ClassifyError(err);
        if (error_class == ErrorClass::kFatal || error_class == ErrorClass::kFenced) {
          std::string why = message->errstr();
          int code = err;
          if (err == RdKafka::ERR__FATAL) code = impl_->handle->fatal_error(why);
          return KafkaStatus(error_class, code, "kafka consume", why, /*deadline=*/false);
        }
        // librdkafka retries these itself (broker down, unknown topic until
        // it is created, ...): report and go on.
        TALLY_LOG(kWarning, "kafka", "consume: ", RdKafka::err2str(err), ": ", message->errstr());
        if (taken == 0 && absl::Now() >= deadline) return absl::OkStatus();
        break;
      }
    }
  }
  return absl::OkStatus();
}

absl::Status RdConsumer::Commit(const std::vector<TopicPartitionOffset>& offsets) {
  if (impl_->closed) return absl::FailedPreconditionError("kafka commit: consumer is closed");
  if (offsets.empty()) return absl::OkStatus();
  internal::OwnedPartitions list;
  list.list.reserve(offsets.size());
  for (const TopicPartitionOffset& o : offsets) {
    list.list.push_back(RdKafka::TopicPartition::create(o.topic, o.partition, o.offset));
  }
  RdKafka::ErrorCode err = impl_->handle->commitSync(list.list);
  if (err != RdKafka::ERR_NO_ERROR) return KafkaStatus(err, "kafka commit");
  for (const RdKafka::TopicPartition* p : list.list) {
    if (p->err() != RdKafka::ERR_NO_ERROR) {
      return KafkaStatus(p->err(),
                         absl::StrCat("kafka commit of ", p->topic(), "[", p->partition(), "]"));
    }
  }
  impl_->MarkBrokerOk();
  return absl::OkStatus();
}

std::vector<TopicPartition> RdConsumer::Assignment() const {
  absl::MutexLock lock(&impl_->mu);
  std::vector<TopicPartition> out;
  out.reserve(impl_->at_eof.size());
  for (const auto& [p, at_eof] : impl_->at_eof) out.push_back(p);
  return out;
}

bool RdConsumer::AllAssignedAtEof() const {
  absl::MutexLock lock(&impl_->mu);
  if (impl_->at_eof.empty()) return false;
  for (const auto& [p, at_eof] : impl_->at_eof) {
    if (!at_eof && !impl_->paused.contains(p)) return false;
  }
  return true;
}

absl::Status RdConsumer::Seek(const std::vector<TopicPartitionOffset>& offsets) {
  if (impl_->closed) return absl::FailedPreconditionError("kafka seek: consumer is closed");
  for (const TopicPartitionOffset& o : offsets) {
    std::unique_ptr<RdKafka::TopicPartition> tp(
        RdKafka::TopicPartition::create(o.topic, o.partition, o.offset));
    // Synchronous (timeout > 0): when it returns, messages fetched beyond
    // the new position are purged from the local queue.
    RdKafka::ErrorCode err = impl_->handle->seek(*tp, 10'000);
    if (err != RdKafka::ERR_NO_ERROR) {
      return KafkaStatus(
          err, absl::StrCat("kafka seek of ", o.topic, "[", o.partition, "] to ", o.offset));
    }
    absl::MutexLock lock(&impl_->mu);
    auto it = impl_->at_eof.find(PartitionRef{o.topic, o.partition});
    if (it != impl_->at_eof.end()) it->second = false;
  }
  return absl::OkStatus();
}

absl::Status RdConsumer::Pause(const std::vector<TopicPartition>& partitions) {
  return SetPaused(partitions, true);
}

absl::Status RdConsumer::Resume(const std::vector<TopicPartition>& partitions) {
  return SetPaused(partitions, false);
}

absl::Status RdConsumer::SetPaused(const std::vector<TopicPartition>& partitions, bool paused) {
  if (partitions.empty()) return absl::OkStatus();
  internal::OwnedPartitions list;
  for (const TopicPartition& p : partitions) {
    list.list.push_back(RdKafka::TopicPartition::create(p.topic, p.partition));
  }
  RdKafka::ErrorCode err =
      paused ? impl_->handle->pause(list.list) : impl_->handle->resume(list.list);
  if (err != RdKafka::ERR_NO_ERROR)
    return KafkaStatus(err, paused ? "kafka pause" : "kafka resume");
  absl::MutexLock lock(&impl_->mu);
  for (const TopicPartition& p : partitions) {
    if (paused) {
      impl_->paused.insert(p);
    } else {
      impl_->paused.erase(p);
    }
  }
  return absl::OkStatus();
}

std::vector<PartitionLag> RdConsumer::Lag() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->lag;
}

ConsumerStats RdConsumer::Stats() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->consumer_stats;
}

bool RdConsumer::BrokersReachable() const {
  return impl_->brokers_up.load(std::memory_order_relaxed) &&
         !impl_->broker_error_pending.load(std::memory_order_relaxed);
}

absl::Status RdConsumer::Close() {
  if (impl_->closed) return absl::OkStatus();
  impl_->closed = true;
  // close() revokes the assignment through the rebalance callback (so the
  // listener hears about it) and leaves the group.
  RdKafka::ErrorCode err = impl_->handle->close();
  {
    absl::MutexLock lock(&impl_->mu);
    impl_->at_eof.clear();
  }
  if (err != RdKafka::ERR_NO_ERROR) return KafkaStatus(err, "kafka consumer close");
  return absl::OkStatus();
}

void* RdConsumer::group_metadata_handle() const {
  return impl_->closed ? nullptr : impl_->handle.get();
}

}  // namespace tally::kafka

namespace tally::kafka::internal {

absl::StatusOr<Properties> ReaderProperties(const Properties& props) {
  if (!props.contains("bootstrap.servers")) {
    return absl::InvalidArgumentError("kafka reader: property \"bootstrap.servers\" is required");
  }
  Properties effective = props;
  // The C++ KafkaConsumer insists on a group.id; nothing joins or commits
  // with it (no subscribe(), no commit()).
  internal::SetDefault(&effective, "group.id", "tally-reader");
  effective["enable.auto.commit"] = "false";
  effective["enable.auto.offset.store"] = "false";
  effective["enable.partition.eof"] = "true";
  internal::SetDefault(&effective, "auto.offset.reset", "earliest");
  // A restore ends at an empty fetch (EOF): the broker holds an empty
  // fetch for fetch.wait.max.ms (500 ms by default), which per restored
  // partition dominated restore time (35k records/s in bench/run.sh).
  internal::SetDefault(&effective, "fetch.wait.max.ms", "10");
  return effective;
}

}  // namespace tally::kafka::internal

namespace tally::kafka {

// The librdkafka PartitionReader: a KafkaConsumer that never subscribes
// (so never joins its group) and never commits; assign() with explicit
// offsets decides what it reads.
class RdPartitionReader final : public PartitionReader {
 public:
  ~RdPartitionReader() override {
    if (handle_ != nullptr) handle_->close();
  }

  static absl::StatusOr<std::unique_ptr<PartitionReader>> Make(const Properties& props) {
    absl::StatusOr<Properties> effective_or = internal::ReaderProperties(props);
    if (!effective_or.ok()) return effective_or.status();
    const Properties& effective = *effective_or;
    auto reader = std::unique_ptr<RdPartitionReader>(new RdPartitionReader());
    absl::StatusOr<std::unique_ptr<RdKafka::Conf>> conf_or = internal::MakeConf(effective);
    if (!conf_or.ok()) return conf_or.status();
    std::unique_ptr<RdKafka::Conf> conf = *std::move(conf_or);
    std::string errstr;
    if (conf->set("event_cb", &reader->event_cb_, errstr) != RdKafka::Conf::CONF_OK) {
      return absl::InternalError(absl::StrCat("kafka reader: registering callbacks: ", errstr));
    }
    reader->handle_.reset(RdKafka::KafkaConsumer::create(conf.get(), errstr));
    if (reader->handle_ == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("kafka reader: ", internal::ScrubSecrets(std::move(errstr), effective)));
    }
    return std::unique_ptr<PartitionReader>(std::move(reader));
  }

  absl::Status Assign(const std::vector<TopicPartitionOffset>& from) override {
    internal::OwnedPartitions list;
    list.list.reserve(from.size());
    for (const TopicPartitionOffset& o : from) {
      const int64_t offset = o.offset == kOffsetBeginning ? RdKafka::Topic::OFFSET_BEGINNING
                             : o.offset == kOffsetEnd     ? RdKafka::Topic::OFFSET_END
                                                          : o.offset;
      list.list.push_back(RdKafka::TopicPartition::create(o.topic, o.partition, offset));
    }
    at_end_.clear();
    RdKafka::ErrorCode err = handle_->assign(list.list);
    if (err != RdKafka::ERR_NO_ERROR) return KafkaStatus(err, "kafka reader assign");
    return absl::OkStatus();
  }

  absl::Status Poll(size_t max_messages, absl::Duration timeout,
                    std::vector<std::unique_ptr<Message>>* out) override {
    int wait_ms = ToTimeoutMs(timeout);
    size_t taken = 0;
    while (taken < max_messages) {
      std::unique_ptr<RdKafka::Message> message(handle_->consume(wait_ms));
      wait_ms = 0;
      if (message == nullptr) break;
      const RdKafka::ErrorCode err = message->err();
      if (err == RdKafka::ERR__TIMED_OUT) break;
      if (err == RdKafka::ERR__PARTITION_EOF) {
        at_end_.insert(TopicPartition{message->topic_name(), message->partition()});
        continue;
      }
      if (err != RdKafka::ERR_NO_ERROR) {
        const ErrorClass error_class = ClassifyError(err);
        if (error_class == ErrorClass::kFatal || error_class == ErrorClass::kFenced) {
          return KafkaStatus(error_class, err, "kafka reader consume", message->errstr(),
                             /*deadline=*/false);
        }
        TALLY_LOG(kWarning, "kafka", "reader: ", message->errstr());
        continue;
      }
      at_end_.erase(TopicPartition{message->topic_name(), message->partition()});
      out->push_back(std::make_unique<RdMessage>(std::move(message)));
      ++taken;
    }
    return absl::OkStatus();
  }

  bool AtEnd(const TopicPartition& tp) const override { return at_end_.contains(tp); }

  absl::StatusOr<std::pair<int64_t, int64_t>> Watermarks(const TopicPartition& tp,
                                                         absl::Duration timeout) override {
    int64_t low = -1, high = -1;
    RdKafka::ErrorCode err =
        handle_->query_watermark_offsets(tp.topic, tp.partition, &low, &high, ToTimeoutMs(timeout));
    if (err != RdKafka::ERR_NO_ERROR) {
      return KafkaStatus(ClassifyError(err), err,
                         absl::StrCat("kafka watermarks of ", tp.topic, "[", tp.partition, "]"), "",
                         /*deadline=*/err == RdKafka::ERR__TIMED_OUT);
    }
    return std::make_pair(low, high);
  }

 private:
  RdPartitionReader() = default;
  internal::LogEventCb event_cb_{"reader"};  // outlives handle_
  std::unique_ptr<RdKafka::KafkaConsumer> handle_;
  std::set<TopicPartition> at_end_;
};

absl::StatusOr<std::unique_ptr<PartitionReader>> PartitionReader::Create(const Properties& props) {
  return RdPartitionReader::Make(props);
}

}  // namespace tally::kafka

namespace tally::kafka {
namespace {

class LibRdKafkaFactory final : public ClientFactory {
 public:
  absl::StatusOr<std::unique_ptr<Producer>> CreateProducer(
      const Properties& props, const std::string& transactional_id,
      Producer::DeliveryHandler on_delivery) override {
    return Producer::Create(props, std::move(on_delivery), transactional_id);
  }
  absl::StatusOr<std::unique_ptr<Consumer>> CreateConsumer(const Properties& props,
                                                           RebalanceListener* listener) override {
    return Consumer::Create(props, listener);
  }
  absl::StatusOr<std::unique_ptr<PartitionReader>> CreateReader(const Properties& props) override {
    return PartitionReader::Create(props);
  }
};

}  // namespace

ClientFactory& LibRdKafkaClients() {
  static LibRdKafkaFactory* const factory = new LibRdKafkaFactory();  // never destroyed
  return *factory;
}

}  // namespace tally::kafka
