// Money is an integer count of the currency's minor unit (cents for USD,
// yen for JPY) plus an ISO 4217 code. Never floating point.
#ifndef TALLY_PROCESSOR_MODEL_MONEY_H_
#define TALLY_PROCESSOR_MODEL_MONEY_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace tally {

// A validated ISO 4217 alphabetic code (three upper-case letters that are an
// active currency). Default-constructed is the empty code "\0\0\0".
class Currency {
 public:
  Currency() = default;
  // Returns false (and leaves *out untouched) for anything that is not an
  // active ISO 4217 code, e.g. "usd", "US", "XYZ".
  static bool Parse(std::string_view code, Currency* out);
  std::string_view code() const { return {code_.data(), code_.size()}; }
  bool empty() const { return code_[0] == '\0'; }
  // Digits of the minor unit (2 for USD, 0 for JPY, 3 for KWD).
  int minor_unit_digits() const;

  friend bool operator==(const Currency&, const Currency&) = default;

 private:
  std::array<char, 3> code_{};
};

struct Money {
  int64_t minor = 0;
  Currency currency;

  friend bool operator==(const Money&, const Money&) = default;
};

}  // namespace tally

#endif  // TALLY_PROCESSOR_MODEL_MONEY_H_
