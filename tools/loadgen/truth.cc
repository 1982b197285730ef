#include "tools/loadgen/truth.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tools/loadgen/json_text.h"

namespace tally::loadgen {
namespace {

void AddString(std::string* out, const char* name, std::string_view value) {
  absl::StrAppend(out, ",\"", name, "\":");
  AppendJsonString(out, value);
}

void AddStringOrNull(std::string* out, const char* name, std::string_view value) {
  if (value.empty()) {
    absl::StrAppend(out, ",\"", name, "\":null");
  } else {
    AddString(out, name, value);
  }
}

template <typename T>
void AddOptional(std::string* out, const char* name, const std::optional<T>& v) {
  if (v.has_value()) {
    absl::StrAppend(out, ",\"", name, "\":", *v);
  } else {
    absl::StrAppend(out, ",\"", name, "\":null");
  }
}

}  // namespace

std::string TruthHeaderLine(const LoadOptions& options) {
  return absl::StrCat("{\"ground_truth_version\":", kGroundTruthVersion,
                      ",\"generator\":\"tally-loadgen\",\"options\":", OptionsToJson(options), "}");
}

std::string TruthRecordLine(const MessageTruth& t, std::string_view topic_name,
                            std::optional<int32_t> partition, std::optional<int64_t> offset,
                            std::optional<int64_t> dup_of_offset) {
  const bool click = t.topic == Topic::kClicks;
  std::string out;
  out.reserve(512);
  absl::StrAppend(&out, "{\"seq\":", t.seq);
  AddString(&out, "topic", topic_name);
  AddOptional(&out, "partition", partition);
  AddOptional(&out, "offset", offset);
  AddString(&out, "kind", click ? "click" : "conversion");
  AddStringOrNull(&out, "id", t.id);
  AddString(&out, "decode", t.decode);
  AddStringOrNull(&out, "defect", t.defect);
  AddOptional(&out, "dup_of_seq", t.dup_of_seq);
  AddOptional(&out, "dup_of_offset", dup_of_offset);
  out.append(",\"tags\":[");
  bool first = true;
  for (int bit = 0; bit < kTagCount; ++bit) {
    if ((t.tags & (1u << bit)) == 0) continue;
    if (!first) out.push_back(',');
    first = false;
    AppendJsonString(&out, TagName(bit));
  }
  out.push_back(']');
  AddString(&out, "click_id", t.click_id);
  if (!click) AddString(&out, "conversion_id", t.conversion_id);
  AddString(&out, "offer_id", t.offer_id);
  AddString(&out, "affiliate_id", t.affiliate_id);
  AddStringOrNull(&out, "user_id", t.user_id);
  AddString(&out, "ip", t.ip);
  absl::StrAppend(&out, ",\"ts\":", t.ts, ",\"click_ts\":", t.click_ts);
  if (!click) {
    AddString(&out, "goal", t.goal);
    absl::StrAppend(&out, ",\"amount\":", t.amount);
    AddString(&out, "currency", t.currency);
    AddString(&out, "status", t.status);
    AddStringOrNull(&out, "previous_status", t.previous_status);
  }
  out.push_back('}');
  return out;
}

std::string TruthSummaryLine(const GenerationStats& s, const RunTotals& totals) {
  std::string out = absl::StrCat(
      "{\"summary\":{\"messages\":", s.messages, ",\"clicks\":", s.click_messages,
      ",\"conversions\":", s.conversion_messages, ",\"valid_clicks\":", s.valid_clicks,
      ",\"valid_conversions\":", s.valid_conversions, ",\"status_changes\":", s.status_changes,
      ",\"duplicates\":", s.duplicates, ",\"bad\":", s.bad, ",\"bad_by_reason\":{");
  bool first = true;
  for (const auto& [reason, n] : s.bad_by_reason) {
    if (!first) out.push_back(',');
    first = false;
    AppendJsonString(&out, reason);
    absl::StrAppend(&out, ":", n);
  }
  out.append("},\"tags\":{");
  for (int bit = 0; bit < kTagCount; ++bit) {
    if (bit > 0) out.push_back(',');
    AppendJsonString(&out, TagName(bit));
    absl::StrAppend(&out, ":", s.tag_counts[bit]);
  }
  absl::StrAppend(&out, "},\"bytes\":", s.bytes, ",\"delivered\":", totals.delivered,
                  ",\"failed\":", totals.failed,
                  ",\"elapsed_seconds\":", absl::StrFormat("%.3f", totals.elapsed_seconds), "}}");
  return out;
}

absl::StatusOr<std::unique_ptr<TruthWriter>> TruthWriter::Open(const std::string& path) {
  std::FILE* file = nullptr;
  if (!path.empty()) {
    file = std::fopen(path.c_str(), "w");
    if (file == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot write ground truth '", path, "': ", std::strerror(errno)));
    }
    // Large buffer: the file gets a line per message.
    std::setvbuf(file, nullptr, _IOFBF, 1 << 20);
  }
  return std::unique_ptr<TruthWriter>(new TruthWriter(file));
}

TruthWriter::~TruthWriter() { (void)Close(); }

void TruthWriter::Line(const std::string& line) {
  if (file_ == nullptr) return;
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() ||
      std::fputc('\n', file_) == EOF) {
    write_error_ = true;
  }
}

void TruthWriter::WriteHeader(const LoadOptions& options) { Line(TruthHeaderLine(options)); }

void TruthWriter::WriteDelivered(const MessageTruth& truth, std::string_view topic_name,
                                 std::optional<int32_t> partition, std::optional<int64_t> offset) {
  std::optional<int64_t> dup_of_offset;
  if (truth.dup_of_seq.has_value()) {
    if (auto it = offset_of_seq_.find(*truth.dup_of_seq); it != offset_of_seq_.end()) {
      dup_of_offset = it->second;
      offset_of_seq_.erase(it);
    }
  }
  if (truth.has_duplicate && offset.has_value()) offset_of_seq_[truth.seq] = *offset;
  Line(TruthRecordLine(truth, topic_name, partition, offset, dup_of_offset));
}

void TruthWriter::WriteTrailer(const GenerationStats& stats, const RunTotals& totals) {
  Line(TruthSummaryLine(stats, totals));
}

absl::Status TruthWriter::Close() {
  if (file_ == nullptr) return absl::OkStatus();
  const bool flush_failed = std::fflush(file_) != 0;
  const bool close_failed = std::fclose(file_) != 0;
  file_ = nullptr;
  if (write_error_ || flush_failed || close_failed) {
    return absl::DataLossError("writing the ground-truth file failed");
  }
  return absl::OkStatus();
}

}  // namespace tally::loadgen
