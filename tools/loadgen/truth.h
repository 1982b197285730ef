// The ground-truth file (JSON Lines), format documented in
// tools/loadgen/README.md: a header line, one line per delivered message
// (written from its delivery report, so in delivery order, carrying the
// partition and offset it got), and a trailer line with the summary.
#ifndef TALLY_TOOLS_LOADGEN_TRUTH_H_
#define TALLY_TOOLS_LOADGEN_TRUTH_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tools/loadgen/generator.h"
#include "tools/loadgen/options.h"

namespace tally::loadgen {

inline constexpr int kGroundTruthVersion = 1;

std::string TruthHeaderLine(const LoadOptions& options);
// partition/offset absent (null) for a dry run.
std::string TruthRecordLine(const MessageTruth& truth, std::string_view topic_name,
                            std::optional<int32_t> partition, std::optional<int64_t> offset,
                            std::optional<int64_t> dup_of_offset);

struct RunTotals {
  uint64_t delivered = 0;
  uint64_t failed = 0;
  double elapsed_seconds = 0;
};
std::string TruthSummaryLine(const GenerationStats& stats, const RunTotals& totals);

// Writes the file. Remembers the offsets of messages that will be re-sent
// until their duplicate is recorded, so that a duplicate's line names the
// offset it repeats (a re-send has the same key, hence the same partition,
// and is delivered after its original: per-partition order is kept by the
// idempotent producer). Not thread-safe: call from the delivery thread.
class TruthWriter {
 public:
  // An empty path writes nothing (and every call succeeds).
  static absl::StatusOr<std::unique_ptr<TruthWriter>> Open(const std::string& path);
  ~TruthWriter();
  TruthWriter(const TruthWriter&) = delete;
  TruthWriter& operator=(const TruthWriter&) = delete;

  void WriteHeader(const LoadOptions& options);
  void WriteDelivered(const MessageTruth& truth, std::string_view topic_name,
                      std::optional<int32_t> partition, std::optional<int64_t> offset);
  void WriteTrailer(const GenerationStats& stats, const RunTotals& totals);
  // Flushes and closes; reports write errors.
  absl::Status Close();

 private:
  explicit TruthWriter(std::FILE* file) : file_(file) {}
  void Line(const std::string& line);

  std::FILE* file_;  // owned; null for "no file"
  bool write_error_ = false;
  absl::flat_hash_map<uint64_t, int64_t> offset_of_seq_;  // originals awaiting their re-send
};

}  // namespace tally::loadgen

#endif  // TALLY_TOOLS_LOADGEN_TRUTH_H_
