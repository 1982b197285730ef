#include "processor/model/events.h"

#include <array>
#include <string_view>

namespace tally {
namespace {

// Finds `name` in a table of wire names indexed by enum value.
template <typename Enum, size_t N>
bool ParseByName(const std::array<std::string_view, N>& names, std::string_view name, Enum* out) {
  for (size_t i = 0; i < N; ++i) {
    if (names[i] == name) {
      *out = static_cast<Enum>(i);
      return true;
    }
  }
  return false;
}

template <typename Enum, size_t N>
const char* NameOf(const std::array<std::string_view, N>& names, Enum value) {
  const auto i = static_cast<size_t>(value);
  return i < N ? names[i].data() : "unknown";
}

// string_views over literals, so data() is NUL-terminated.
constexpr std::array<std::string_view, 3> kStatusNames = {"pending", "approved", "reversed"};
constexpr std::array<std::string_view, 5> kModelNames = {"last_click", "first_click", "linear",
                                                         "time_decay", "position_based"};
constexpr std::array<std::string_view, 3> kUnattributedNames = {"click_not_found", "outside_window",
                                                                "no_user_clicks"};
// Indexed by PayoutBasis; kUnknown has no wire name.
constexpr std::array<std::string_view, 3> kBasisNames = {"", "cpa", "revshare"};

}  // namespace

const char* ConversionStatusName(ConversionStatus status) { return NameOf(kStatusNames, status); }
bool ParseConversionStatus(std::string_view name, ConversionStatus* status) {
  return ParseByName(kStatusNames, name, status);
}

const char* AttributionModelName(AttributionModel model) { return NameOf(kModelNames, model); }
bool ParseAttributionModel(std::string_view name, AttributionModel* model) {
  return ParseByName(kModelNames, name, model);
}

const char* UnattributedReasonName(UnattributedReason reason) {
  return NameOf(kUnattributedNames, reason);
}
bool ParseUnattributedReason(std::string_view name, UnattributedReason* reason) {
  return ParseByName(kUnattributedNames, name, reason);
}

const char* PayoutBasisName(PayoutBasis basis) { return NameOf(kBasisNames, basis); }
bool ParsePayoutBasis(std::string_view name, PayoutBasis* basis) {
  return !name.empty() && ParseByName(kBasisNames, name, basis);
}

}  // namespace tally
