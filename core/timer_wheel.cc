#include "core/timer_wheel.h"

namespace taskrt {
namespace {

using Link = TimerWheel::Link;
using Node = TimerWheel::Node;

// Stable merge of two null-terminated chains (linked by `next`) by deadline.
Link* Merge(Link* left, Link* right) {
  Link head;
  Link* tail = &head;
  while (left != nullptr && right != nullptr) {
    if (static_cast<Node*>(right)->deadline < static_cast<Node*>(left)->deadline) {
      tail->next = right;
      right = right->next;
    } else {
      tail->next = left;
      left = left->next;
    }
    tail = tail->next;
  }
  tail->next = left != nullptr ? left : right;
  return head.next;
}

// Stable merge sort of a null-terminated chain of `count` links.
Link* SortChain(Link* chain, size_t count) {
  if (count < 2) return chain;
  const size_t half = count / 2;
  Link* last_of_left = chain;
  for (size_t i = 1; i < half; ++i) last_of_left = last_of_left->next;
  Link* right = last_of_left->next;
  last_of_left->next = nullptr;
  return Merge(SortChain(chain, half), SortChain(right, count - half));
}

}  // namespace

TimerWheel::TimerWheel(uint64_t start_ns) : elapsed_(start_ns) {
  for (Link& head : heads_) head.prev = head.next = &head;
}

std::optional<TimerWheel::Expiry> TimerWheel::NextExpiry() const {
  for (int level = 0; level < kLevels; ++level) {
    const uint64_t occupied = occupied_[level];
    if (occupied == 0) continue;
    const int shift = level * kSlotBits;
    const int now_slot = static_cast<int>((elapsed_ >> shift) & (kSlots - 1));
    // Every node of this level lies in the same 64-slot block as elapsed_,
    // at or after its slot.
    const uint64_t ahead = occupied & (~uint64_t{0} << now_slot);
    if (ahead == 0) continue;  // not reached: the placement keeps it so
    const int slot = std::countr_zero(ahead);
    const int block_shift = shift + kSlotBits;
    const uint64_t block_start =
        block_shift >= 64 ? 0 : elapsed_ & ~((uint64_t{1} << block_shift) - 1);
    return Expiry{level, slot, block_start + (static_cast<uint64_t>(slot) << shift)};
  }
  return std::nullopt;
}

void TimerWheel::Cascade(const Expiry& expiry) {
  Link* head = &heads_[expiry.level * kSlots + expiry.slot];
  Link* node = head->next;
  head->prev->next = nullptr;
  head->prev = head->next = head;
  occupied_[expiry.level] &= ~(uint64_t{1} << expiry.slot);
  while (node != nullptr) {
    Link* next = node->next;
    Place(static_cast<Node*>(node));
    node = next;
  }
}

void TimerWheel::SortOverdue() {
  if (overdue_sorted_) return;
  overdue_sorted_ = true;
  Link* head = &heads_[kOverdueList];
  if (head->next == head) return;
  size_t count = 0;
  for (Link* link = head->next; link != head; link = link->next) ++count;
  head->prev->next = nullptr;
  Link* chain = SortChain(head->next, count);
  head->prev = head->next = head;
  while (chain != nullptr) {
    Link* next = chain->next;
    Append(head, chain);
    chain = next;
  }
}

std::optional<uint64_t> TimerWheel::NextDeadline() {
  if (size_ == 0) return std::nullopt;
  SortOverdue();
  const Link* overdue = &heads_[kOverdueList];
  if (overdue->next != overdue) return static_cast<const Node*>(overdue->next)->deadline;
  const std::optional<Expiry> expiry = NextExpiry();
  if (!expiry.has_value()) return std::nullopt;
  return expiry->deadline;
}

}  // namespace taskrt
