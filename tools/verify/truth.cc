#include "tools/verify/truth.h"

#include <fstream>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "simdjson.h"

namespace tally::verify {
namespace {

absl::Status LineError(const std::string& path, size_t line, std::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat(path, ":", line, ": ", absl::string_view(what.data(), what.size())));
}

}  // namespace

absl::StatusOr<GroundTruth> LoadGroundTruth(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ground truth '", path, "'"));
  GroundTruth truth;
  simdjson::ondemand::parser parser;
  std::string line;
  size_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    simdjson::padded_string padded(line);
    simdjson::ondemand::document doc;
    if (parser.iterate(padded).get(doc) != simdjson::SUCCESS) {
      return LineError(path, line_no, "not JSON");
    }
    simdjson::ondemand::object object;
    if (doc.get_object().get(object) != simdjson::SUCCESS) {
      return LineError(path, line_no, "not a JSON object");
    }
    TruthRecord record;
    bool has_topic = false;
    bool is_meta = false;
    for (auto field : object) {
      std::string_view key;
      if (field.unescaped_key().get(key) != simdjson::SUCCESS) {
        return LineError(path, line_no, "bad key");
      }
      auto value = field.value();
      if (key == "ground_truth_version" || key == "summary") {
        is_meta = true;
      } else if (key == "topic") {
        std::string_view s;
        if (value.get_string().get(s) != simdjson::SUCCESS) {
          return LineError(path, line_no, "'topic' is not a string");
        }
        record.ref.topic = std::string(s);
        has_topic = true;
      } else if (key == "partition") {
        int64_t v;
        if (value.get_int64().get(v) != simdjson::SUCCESS) {
          return LineError(path, line_no, "'partition' is not an integer");
        }
        record.ref.partition = static_cast<int32_t>(v);
      } else if (key == "offset") {
        int64_t v;
        if (value.get_int64().get(v) != simdjson::SUCCESS) {
          return LineError(path, line_no, "'offset' is not an integer");
        }
        record.ref.offset = v;
      } else if (key == "kind" || key == "id" || key == "decode") {
        std::string_view s;
        bool is_null = false;
        if (value.is_null().get(is_null) == simdjson::SUCCESS && is_null) continue;
        if (value.get_string().get(s) != simdjson::SUCCESS) {
          return LineError(
              path, line_no,
              absl::StrCat("'", absl::string_view(key.data(), key.size()), "' is not a string"));
        }
        std::string& target =
            key == "kind" ? record.kind : (key == "id" ? record.id : record.decode);
        target = std::string(s);
      }
    }
    if (is_meta) continue;
    if (!has_topic || record.ref.partition < 0 || record.ref.offset < 0 || record.decode.empty()) {
      return LineError(path, line_no, "record lacks topic/partition/offset/decode");
    }
    const size_t index = truth.records.size();
    if (!truth.by_ref.emplace(record.ref, index).second) {
      return LineError(path, line_no,
                       absl::StrCat("two records for ", record.ref.topic, "/", record.ref.partition,
                                    "@", record.ref.offset));
    }
    truth.records.push_back(std::move(record));
  }
  return truth;
}

}  // namespace tally::verify
