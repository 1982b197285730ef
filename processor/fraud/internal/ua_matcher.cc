#include "processor/fraud/internal/ua_matcher.h"

#include <deque>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tally::fraud_internal {
namespace {

uint8_t FoldAscii(uint8_t b) { return (b >= 'A' && b <= 'Z') ? static_cast<uint8_t>(b + 32) : b; }

}  // namespace

absl::StatusOr<UaMatcher> UaMatcher::Build(const std::vector<std::string>& patterns) {
  UaMatcher m;
  m.pattern_count_ = patterns.size();

  // Alphabet reduction: class 0 = every byte in no pattern; one class per
  // distinct (folded) byte that occurs in some pattern.
  std::array<uint8_t, 256> folded_class{};
  uint32_t classes = 1;
  for (const std::string& p : patterns) {
    if (p.empty()) return absl::InvalidArgumentError("empty user-agent pattern");
    for (const char c : p) {
      const uint8_t f = FoldAscii(static_cast<uint8_t>(c));
      if (folded_class[f] == 0) {
        // At most 256 distinct bytes, but class 0 is reserved: 255 + 1 fits
        // a uint8_t only if not every byte value occurs; cap accordingly.
        if (classes == 256) return absl::InvalidArgumentError("too many distinct pattern bytes");
        folded_class[f] = static_cast<uint8_t>(classes++);
      }
    }
  }
  for (int b = 0; b < 256; ++b) m.class_of_[b] = folded_class[FoldAscii(static_cast<uint8_t>(b))];

  // 1. Trie over class sequences. goto_[s * classes + c] = child or 0 (the
  //    root is never a child, so 0 means "none" during construction).
  std::vector<uint32_t> trie(classes, 0);
  std::vector<bool> accepting(1, false);
  for (const std::string& p : patterns) {
    uint32_t s = 0;
    for (const char c : p) {
      const uint32_t cls = m.class_of_[static_cast<uint8_t>(c)];
      uint32_t& child = trie[uint64_t{s} * classes + cls];
      if (child == 0) {
        const uint64_t states = accepting.size();
        if ((states + 1) * classes > kMaxTableEntries) {
          return absl::InvalidArgumentError(
              absl::StrCat("user-agent patterns too large: more than ", kMaxTableEntries,
                           " automaton entries; use fewer or shorter patterns"));
        }
        child = static_cast<uint32_t>(states);
        trie.resize((states + 1) * classes, 0);
        accepting.push_back(false);
      }
      s = trie[uint64_t{s} * classes + cls];
    }
    accepting[s] = true;
  }
  const uint32_t states = static_cast<uint32_t>(accepting.size());

  // 2. BFS: failure links folded into a complete transition function (the
  //    classic DFA construction), and accepting propagated along failure
  //    links (a state whose suffix is a pattern also accepts).
  std::vector<uint32_t> fail(states, 0);
  std::vector<uint32_t> delta(uint64_t{states} * classes, 0);
  std::deque<uint32_t> queue;
  for (uint32_t c = 0; c < classes; ++c) {
    const uint32_t child = trie[c];
    delta[c] = child;  // 0 (stay at root) when absent
    if (child != 0) queue.push_back(child);
  }
  while (!queue.empty()) {
    const uint32_t s = queue.front();
    queue.pop_front();
    if (accepting[fail[s]]) accepting[s] = true;
    for (uint32_t c = 0; c < classes; ++c) {
      const uint32_t child = trie[uint64_t{s} * classes + c];
      const uint32_t via_fail = delta[uint64_t{fail[s]} * classes + c];
      if (child != 0) {
        fail[child] = via_fail;
        delta[uint64_t{s} * classes + c] = child;
        queue.push_back(child);
      } else {
        delta[uint64_t{s} * classes + c] = via_fail;
      }
    }
  }

  // 3. Row offsets and the kMatch sentinel. BFS order guarantees a state's
  //    failure target was finalised before it, so `accepting` is complete.
  m.next_.resize(delta.size());
  for (uint64_t i = 0; i < delta.size(); ++i) {
    const uint32_t to = delta[i];
    m.next_[i] = accepting[to] ? kMatch : to * classes;
  }
  m.state_count_ = states;
  return m;
}

}  // namespace tally::fraud_internal
