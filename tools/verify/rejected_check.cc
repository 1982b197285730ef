#include "tools/verify/rejected_check.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "processor/model/sha256.h"

namespace tally::verify {
namespace {

// This absl's string_view is not std::string_view.
absl::string_view A(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::string CheckPart(std::string_view part, std::string_view kept, int64_t size,
                      std::string_view sha256, bool truncated, std::string_view input) {
  if (truncated) {
    if (kept.size() >= input.size() || input.substr(0, kept.size()) != kept) {
      return absl::StrCat(A(part), ": marked truncated, but its ", kept.size(),
                          " bytes are not a strict prefix of the input's ", input.size());
    }
  } else if (kept != input) {
    return absl::StrCat(A(part), ": its ", kept.size(), " bytes differ from the input's ",
                        input.size(), " (not marked truncated)");
  }
  if (size != static_cast<int64_t>(input.size())) {
    return absl::StrCat(A(part), ": size ", size, ", the input has ", input.size(), " bytes");
  }
  if (const std::string expected = Sha256Hex(input); sha256 != expected) {
    return absl::StrCat(A(part), ": sha256 '", A(sha256), "', the input's is ", expected);
  }
  return "";
}

}  // namespace

std::string CheckRejectedOriginal(const RejectedEvent& r, std::string_view key,
                                  std::string_view value) {
  std::string problem = CheckPart("original key", r.original_key, r.original_key_size,
                                  r.original_key_sha256, r.original_key_truncated, key);
  if (!problem.empty()) return problem;
  return CheckPart("original value", r.original_value, r.original_value_size,
                   r.original_value_sha256, r.original_value_truncated, value);
}

}  // namespace tally::verify
