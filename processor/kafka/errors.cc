// Error classification: the single place where a librdkafka error code
// becomes one of our ErrorClass values.
//
// Policy, in the order a reader should check it:
//  - kFenced: another instance owns the work now (producer fenced by a newer
//    epoch, consumer kicked out of its group generation). Stop the task and
//    drop uncommitted work; never retry with the same identity.
//  - kAbortable: the outcome of the current batch is unknown or was purged,
//    but the client is still usable. Abort the transaction (or, without
//    transactions, redo the batch) and continue.
//  - kFatal: the client cannot recover by itself (idempotence broken,
//    authentication/authorisation, configuration the broker rejects, our
//    own state machine violated). Exit and let the orchestrator restart.
//    Codes we do not know are treated as fatal: a restart is safe, silently
//    continuing past an unknown failure may lose data.
//  - kPermanent: this particular request can never succeed (message too
//    large, unknown partition, bad argument); retrying it is pointless but
//    the client is fine.
//  - kRetriable: transient; poll/back off and retry. Informational codes
//    (partition EOF, rebalance events, NO_ERROR) are listed here too so the
//    switch is exhaustive; callers handle them before classifying.
//
// The switch has no `default:` so that -Wswitch (an error under
// tally_warnings) flags every code a new librdkafka adds.
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "librdkafka/rdkafka.h"
#include "processor/kafka/internal/rdkafka_util.h"
#include "processor/kafka/kafka.h"

namespace tally::kafka {
namespace {

constexpr absl::string_view kPayloadUrl = "type.tally.dev/kafka.error";

ErrorClass ClassifyKnown(rd_kafka_resp_err_t err) {
  switch (err) {
    // Not errors, or informational events. Callers test for them first.
    case RD_KAFKA_RESP_ERR_NO_ERROR:
    case RD_KAFKA_RESP_ERR__PARTITION_EOF:
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
    case RD_KAFKA_RESP_ERR__NOOP:
    case RD_KAFKA_RESP_ERR_DUPLICATE_SEQUENCE_NUMBER:  // already written: benign
      return ErrorClass::kRetriable;

    // Transient client-side conditions.
    case RD_KAFKA_RESP_ERR__FAIL:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__RESOLVE:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
    case RD_KAFKA_RESP_ERR__ISR_INSUFF:
    case RD_KAFKA_RESP_ERR__NODE_UPDATE:
    case RD_KAFKA_RESP_ERR__WAIT_COORD:
    case RD_KAFKA_RESP_ERR__UNKNOWN_GROUP:
    case RD_KAFKA_RESP_ERR__IN_PROGRESS:
    case RD_KAFKA_RESP_ERR__PREV_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR__OUTDATED:
    case RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE:
    case RD_KAFKA_RESP_ERR__WAIT_CACHE:
    case RD_KAFKA_RESP_ERR__INTR:
    case RD_KAFKA_RESP_ERR__PARTIAL:
    case RD_KAFKA_RESP_ERR__RETRY:
    case RD_KAFKA_RESP_ERR__UNKNOWN_BROKER:
    // Transient broker-side conditions (Kafka marks these retriable).
    case RD_KAFKA_RESP_ERR_INVALID_MSG:            // CRC mismatch in transit
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:  // metadata propagation lag
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_REPLICA_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_STALE_CTRL_EPOCH:
    case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
    case RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_NOT_CONTROLLER:
    case RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS:
    case RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR:
    case RD_KAFKA_RESP_ERR_REASSIGNMENT_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_FETCH_SESSION_ID_NOT_FOUND:
    case RD_KAFKA_RESP_ERR_INVALID_FETCH_SESSION_EPOCH:
    case RD_KAFKA_RESP_ERR_LISTENER_NOT_FOUND:
    case RD_KAFKA_RESP_ERR_FENCED_LEADER_EPOCH:  // leader epoch, not our epoch
    case RD_KAFKA_RESP_ERR_UNKNOWN_LEADER_EPOCH:
    case RD_KAFKA_RESP_ERR_STALE_BROKER_EPOCH:
    case RD_KAFKA_RESP_ERR_OFFSET_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_MEMBER_ID_REQUIRED:
    case RD_KAFKA_RESP_ERR_PREFERRED_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_ELIGIBLE_LEADERS_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_UNSTABLE_OFFSET_COMMIT:
    case RD_KAFKA_RESP_ERR_THROTTLING_QUOTA_EXCEEDED:
      return ErrorClass::kRetriable;

    // The batch's outcome is unknown or it was purged: redo it.
    // A message timeout may or may not have written the message, so plain
    // re-sending inside the same transaction could duplicate it.
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
    case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_ID_MAPPING:
    case RD_KAFKA_RESP_ERR_OPERATION_NOT_ATTEMPTED:
    case RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID:
      return ErrorClass::kAbortable;

    // Someone else owns our partitions or our transactional id now.
    case RD_KAFKA_RESP_ERR__FENCED:
    case RD_KAFKA_RESP_ERR__MAX_POLL_EXCEEDED:  // we left the group
    case RD_KAFKA_RESP_ERR__ASSIGNMENT_LOST:
    case RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID:
    case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH:
    case RD_KAFKA_RESP_ERR_TRANSACTION_COORDINATOR_FENCED:
    case RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID:
    case RD_KAFKA_RESP_ERR_PRODUCER_FENCED:
      return ErrorClass::kFenced;

    // The client cannot continue; restart it.
    case RD_KAFKA_RESP_ERR__BEGIN:  // sentinels: never a real error
    case RD_KAFKA_RESP_ERR__END:
    case RD_KAFKA_RESP_ERR_END_ALL:
    case RD_KAFKA_RESP_ERR_UNKNOWN:  // broker's UNKNOWN_SERVER_ERROR
    case RD_KAFKA_RESP_ERR__DESTROY:
    case RD_KAFKA_RESP_ERR__CRIT_SYS_RESOURCE:
    case RD_KAFKA_RESP_ERR__FS:
    case RD_KAFKA_RESP_ERR__SSL:
    case RD_KAFKA_RESP_ERR__STATE:  // our call sequence is wrong
    case RD_KAFKA_RESP_ERR__UNKNOWN_PROTOCOL:
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
    case RD_KAFKA_RESP_ERR__FATAL:
    case RD_KAFKA_RESP_ERR__INCONSISTENT:
    case RD_KAFKA_RESP_ERR__GAPLESS_GUARANTEE:
    case RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET:  // position lost: data at risk
    case RD_KAFKA_RESP_ERR_INCONSISTENT_GROUP_PROTOCOL:
    case RD_KAFKA_RESP_ERR_INVALID_GROUP_ID:
    case RD_KAFKA_RESP_ERR_INVALID_SESSION_TIMEOUT:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_SASL_MECHANISM:
    case RD_KAFKA_RESP_ERR_ILLEGAL_SASL_STATE:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION:
    case RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER:  // idempotence broken
    case RD_KAFKA_RESP_ERR_INVALID_TXN_STATE:
    case RD_KAFKA_RESP_ERR_INVALID_TRANSACTION_TIMEOUT:
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_SECURITY_DISABLED:
    case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
    case RD_KAFKA_RESP_ERR_DELEGATION_TOKEN_AUTH_DISABLED:
    case RD_KAFKA_RESP_ERR_DELEGATION_TOKEN_NOT_FOUND:
    case RD_KAFKA_RESP_ERR_DELEGATION_TOKEN_OWNER_MISMATCH:
    case RD_KAFKA_RESP_ERR_DELEGATION_TOKEN_REQUEST_NOT_ALLOWED:
    case RD_KAFKA_RESP_ERR_DELEGATION_TOKEN_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_DELEGATION_TOKEN_EXPIRED:
    case RD_KAFKA_RESP_ERR_INVALID_PRINCIPAL_TYPE:
    case RD_KAFKA_RESP_ERR_GROUP_MAX_SIZE_REACHED:
    case RD_KAFKA_RESP_ERR_UNACCEPTABLE_CREDENTIAL:
    case RD_KAFKA_RESP_ERR_PRINCIPAL_DESERIALIZATION_FAILURE:
      return ErrorClass::kFatal;

    // This request will never succeed; the client is fine.
    case RD_KAFKA_RESP_ERR__BAD_MSG:
    case RD_KAFKA_RESP_ERR__BAD_COMPRESSION:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR__EXISTING_SUBSCRIPTION:
    case RD_KAFKA_RESP_ERR__CONFLICT:
    case RD_KAFKA_RESP_ERR__NOT_IMPLEMENTED:
    case RD_KAFKA_RESP_ERR__NO_OFFSET:
    case RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE:
    case RD_KAFKA_RESP_ERR__KEY_SERIALIZATION:
    case RD_KAFKA_RESP_ERR__VALUE_SERIALIZATION:
    case RD_KAFKA_RESP_ERR__KEY_DESERIALIZATION:
    case RD_KAFKA_RESP_ERR__VALUE_DESERIALIZATION:
    case RD_KAFKA_RESP_ERR__READ_ONLY:
    case RD_KAFKA_RESP_ERR__NOENT:
    case RD_KAFKA_RESP_ERR__UNDERFLOW:
    case RD_KAFKA_RESP_ERR__INVALID_TYPE:
    case RD_KAFKA_RESP_ERR__NOT_CONFIGURED:
    case RD_KAFKA_RESP_ERR__APPLICATION:
    case RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS:
    case RD_KAFKA_RESP_ERR_INVALID_COMMIT_OFFSET_SIZE:
    case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:
    case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS:
    case RD_KAFKA_RESP_ERR_INVALID_PARTITIONS:
    case RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR:
    case RD_KAFKA_RESP_ERR_INVALID_REPLICA_ASSIGNMENT:
    case RD_KAFKA_RESP_ERR_INVALID_CONFIG:
    case RD_KAFKA_RESP_ERR_INVALID_REQUEST:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_FOR_MESSAGE_FORMAT:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
    case RD_KAFKA_RESP_ERR_LOG_DIR_NOT_FOUND:
    case RD_KAFKA_RESP_ERR_NON_EMPTY_GROUP:
    case RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND:
    case RD_KAFKA_RESP_ERR_TOPIC_DELETION_DISABLED:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_COMPRESSION_TYPE:
    case RD_KAFKA_RESP_ERR_ELECTION_NOT_NEEDED:
    case RD_KAFKA_RESP_ERR_NO_REASSIGNMENT_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_GROUP_SUBSCRIBED_TO_TOPIC:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_RESOURCE_NOT_FOUND:
    case RD_KAFKA_RESP_ERR_DUPLICATE_RESOURCE:
    case RD_KAFKA_RESP_ERR_INCONSISTENT_VOTER_SET:
    case RD_KAFKA_RESP_ERR_INVALID_UPDATE_VERSION:
    case RD_KAFKA_RESP_ERR_FEATURE_UPDATE_FAILED:
      return ErrorClass::kPermanent;
  }
  // A gap inside the enumeration's range (a code from a newer broker).
  return ErrorClass::kFatal;
}

absl::StatusCode CanonicalCode(ErrorClass error_class) {
  switch (error_class) {
    case ErrorClass::kRetriable:
      return absl::StatusCode::kUnavailable;
    case ErrorClass::kFatal:
      return absl::StatusCode::kInternal;
    case ErrorClass::kFenced:
      return absl::StatusCode::kFailedPrecondition;
    case ErrorClass::kAbortable:
      return absl::StatusCode::kAborted;
    case ErrorClass::kPermanent:
      return absl::StatusCode::kInvalidArgument;
  }
  return absl::StatusCode::kUnknown;
}

}  // namespace

ErrorClass ClassifyError(int rd_kafka_resp_err) {
  // Casting a value outside the enumeration's range to it is undefined.
  if (rd_kafka_resp_err < RD_KAFKA_RESP_ERR__BEGIN ||
      rd_kafka_resp_err >= RD_KAFKA_RESP_ERR_END_ALL) {
    return ErrorClass::kFatal;
  }
  return ClassifyKnown(static_cast<rd_kafka_resp_err_t>(rd_kafka_resp_err));
}

std::string_view ErrorClassName(ErrorClass error_class) {
  switch (error_class) {
    case ErrorClass::kRetriable:
      return "retriable";
    case ErrorClass::kFatal:
      return "fatal";
    case ErrorClass::kFenced:
      return "fenced";
    case ErrorClass::kAbortable:
      return "abortable";
    case ErrorClass::kPermanent:
      return "permanent";
  }
  return "unknown";
}

bool TimedOut(const absl::Status& status) {
  if (status.code() == absl::StatusCode::kDeadlineExceeded) return true;
  return ErrorClassOf(status) == ErrorClass::kRetriable &&
         KafkaErrorCode(status) == RD_KAFKA_RESP_ERR__TIMED_OUT;
}

absl::Status WithContext(const absl::Status& status, std::string_view context) {
  absl::Status out(status.code(), absl::StrCat(absl::string_view(context.data(), context.size()),
                                               status.message()));
  status.ForEachPayload(
      [&out](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
}

std::optional<ErrorClass> ErrorClassOf(const absl::Status& status) {
  auto payload = status.GetPayload(kPayloadUrl);  // absl::optional on Debian
  if (!payload.has_value()) return std::nullopt;
  // Payload: "<class number>:<code>".
  std::pair<std::string, std::string> parts = absl::StrSplit(std::string(*payload), ':');
  int value = 0;
  if (!absl::SimpleAtoi(parts.first, &value)) return std::nullopt;
  return static_cast<ErrorClass>(value);
}

int KafkaErrorCode(const absl::Status& status) {
  auto payload = status.GetPayload(kPayloadUrl);  // absl::optional on Debian
  if (!payload.has_value()) return 0;
  std::pair<std::string, std::string> parts = absl::StrSplit(std::string(*payload), ':');
  int code = 0;
  if (!absl::SimpleAtoi(parts.second, &code)) return 0;
  return code;
}

absl::Status MakeKafkaError(ErrorClass error_class, int rd_kafka_resp_err, std::string_view what,
                            bool deadline) {
  return internal::KafkaStatus(error_class, rd_kafka_resp_err, what, /*detail=*/"", deadline);
}

namespace internal {

absl::Status KafkaStatus(ErrorClass error_class, int code, std::string_view context,
                         std::string_view detail, bool deadline) {
  absl::StatusCode canonical =
      deadline ? absl::StatusCode::kDeadlineExceeded : CanonicalCode(error_class);
  const auto err = static_cast<rd_kafka_resp_err_t>(code);
  absl::Status status(
      canonical,
      absl::StrCat(ToAbsl(context), ": ",
                   detail.empty() ? absl::string_view(rd_kafka_err2str(err)) : ToAbsl(detail), " (",
                   rd_kafka_err2name(err), ", ", ToAbsl(ErrorClassName(error_class)), ")"));
  status.SetPayload(kPayloadUrl,
                    absl::Cord(absl::StrCat(static_cast<int>(error_class), ":", code)));
  return status;
}

absl::Status KafkaStatus(int code, std::string_view context, std::string_view detail) {
  return KafkaStatus(ClassifyError(code), code, context, detail, /*deadline=*/false);
}

}  // namespace internal
}  // namespace tally::kafka
