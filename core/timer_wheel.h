#ifndef TASKRT_CORE_TIMER_WHEEL_H_
#define TASKRT_CORE_TIMER_WHEEL_H_

// TimerWheel: a hierarchical timing wheel with nanosecond resolution, as in
// Tokio (tokio/src/runtime/time/wheel) and the Linux kernel, used by every
// event loop for its timers (event_loops/loop_base) and by schedulers for
// their tasks' deadlines.
//
// Shape
//   11 levels of 64 slots. A slot of level L spans 64^L nanoseconds, so a
//   level-0 slot is one nanosecond and the 11 levels cover all 64-bit times.
//   A node lives in the level where its deadline first differs from the
//   wheel's own time, elapsed() (not the real clock), in the slot its
//   deadline selects there. Each level keeps a 64-bit occupancy bitmap, so
//   the next slot to visit is one count-trailing-zeros per level. When the
//   wheel reaches a slot of level L > 0 it moves the slot's nodes, in list
//   order, down to the levels where they now belong; a level-0 slot holds
//   nodes of one deadline, in arming order. So nodes fire exactly in deadline
//   order and, for equal deadlines, in the order inserted, and that order
//   survives the moves: a deadline's place depends only on elapsed(), so a
//   node inserted later always queues behind the earlier ones.
//
//   A deadline already behind elapsed() goes to an "overdue" list, which
//   Advance() sorts (stable) by deadline before it fires the overdue nodes
//   ahead of everything in the wheel.
//
// Nodes
//   Intrusive: the caller embeds a Node (or derives from it) and keeps it
//   alive while it is inserted; the wheel allocates nothing per node.
//   Insert() and Remove() are O(1); Advance() is O(1) per slot visited plus
//   the nodes it fires or moves (a node moves down at most 10 times).
//
// Thread safety: none. One thread uses a wheel (the loop thread).

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>

namespace taskrt {

class TimerWheel {
 public:
  static constexpr int kLevels = 11;
  static constexpr int kSlotBits = 6;
  static constexpr int kSlots = 1 << kSlotBits;

  struct Link {
    Link* prev = nullptr;
    Link* next = nullptr;
  };

  // Embed one per timer. The fields are the wheel's while the node is
  // inserted; `deadline` may be read at any time.
  struct Node : Link {
    uint64_t deadline = 0;
    uint32_t sequence = 0;  // insertion order (wrapping): nodes inserted during Advance wait
    uint16_t list = kUnlinked;
    bool linked() const { return list != kUnlinked; }
  };

  // The wheel starts at time `start_ns`.
  explicit TimerWheel(uint64_t start_ns = 0);
  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;

  // Inserts `node`, which must not be inserted already, to fire at
  // `deadline_ns`. A deadline behind elapsed() fires at the next Advance().
  void Insert(Node* node, uint64_t deadline_ns) {
    node->deadline = deadline_ns;
    node->sequence = next_sequence_++;
    Place(node);
    ++size_;
  }

  // Takes `node` out; it will not fire. Does nothing if it is not inserted.
  void Remove(Node* node) {
    if (!node->linked()) return;
    Unlink(node);
    if (node->list != kOverdueList && heads_[node->list].next == &heads_[node->list]) {
      occupied_[node->list >> kSlotBits] &= ~(uint64_t{1} << (node->list & (kSlots - 1)));
    }
    node->list = kUnlinked;
    --size_;
  }

  // When the caller should next call Advance(): nullopt if the wheel is
  // empty; else a time no later than the earliest deadline. It is that
  // deadline when the earliest node is overdue or within 64 ns of
  // elapsed(); otherwise it is the start of the slot that holds the node,
  // where Advance() moves it down a level (a node far ahead is visited a
  // few times before its deadline, never after it).
  std::optional<uint64_t> NextDeadline();

  // Moves the wheel's time to `now_ns` (a time behind elapsed() counts as
  // elapsed()) and calls `fn(Node*)` for every node whose deadline is at or
  // before it, in deadline order, equal deadlines in insertion order. Each
  // node is out of the wheel when `fn` sees it, so `fn` may reuse it. `fn`
  // may Insert and Remove any node; nodes inserted during this call do not
  // fire in it: Advance() stops at the first of them in deadline order, and
  // elapsed() stays there, so the next call continues in order. Returns the
  // number of nodes fired.
  template <typename Fn>
  size_t Advance(uint64_t now_ns, Fn&& fn);

  uint64_t elapsed() const { return elapsed_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  static constexpr uint16_t kOverdueList = kLevels * kSlots;
  static constexpr uint16_t kUnlinked = kOverdueList + 1;

  struct Expiry {
    int level;
    int slot;
    uint64_t deadline;  // the slot's start
  };

  // Whether `node` was inserted at or after the insertion numbered `limit`
  // (valid while fewer than 2^31 nodes are inserted during one Advance).
  static bool InsertedSince(const Node* node, uint32_t limit) {
    return static_cast<int32_t>(node->sequence - limit) >= 0;
  }

  static int LevelFor(uint64_t elapsed, uint64_t deadline) {
    const uint64_t masked = (elapsed ^ deadline) | (kSlots - 1);
    return (63 - std::countl_zero(masked)) / kSlotBits;
  }

  void Place(Node* node) {
    const uint64_t deadline = node->deadline;
    if (deadline < elapsed_) {
      Link* head = &heads_[kOverdueList];
      if (head->prev != head && static_cast<Node*>(head->prev)->deadline > deadline) {
        overdue_sorted_ = false;
      }
      Append(head, node);
      node->list = kOverdueList;
      return;
    }
    const int level = LevelFor(elapsed_, deadline);
    const int slot = static_cast<int>((deadline >> (level * kSlotBits)) & (kSlots - 1));
    const int index = level * kSlots + slot;
    Append(&heads_[index], node);
    node->list = static_cast<uint16_t>(index);
    occupied_[level] |= uint64_t{1} << slot;
  }

  static void Append(Link* head, Link* node) {
    node->prev = head->prev;
    node->next = head;
    head->prev->next = node;
    head->prev = node;
  }
  static void Unlink(Link* node) {
    node->prev->next = node->next;
    node->next->prev = node->prev;
    node->prev = node->next = nullptr;
  }

  // The first occupied slot at or after elapsed(), lowest level first.
  std::optional<Expiry> NextExpiry() const;
  // Moves the nodes of a slot of level > 0 down, relative to elapsed().
  void Cascade(const Expiry& expiry);
  void SortOverdue();

  std::array<Link, kLevels * kSlots + 1> heads_;  // circular lists; last: overdue
  std::array<uint64_t, kLevels> occupied_{};
  uint64_t elapsed_;
  uint32_t next_sequence_ = 0;
  size_t size_ = 0;
  bool overdue_sorted_ = true;
};

template <typename Fn>
size_t TimerWheel::Advance(uint64_t now_ns, Fn&& fn) {
  if (now_ns < elapsed_) now_ns = elapsed_;
  const uint32_t limit = next_sequence_;
  size_t fired = 0;
  SortOverdue();
  for (Link* head = &heads_[kOverdueList]; head->next != head;) {
    Node* node = static_cast<Node*>(head->next);
    if (InsertedSince(node, limit)) return fired;
    Remove(node);
    fn(node);
    ++fired;
  }
  while (true) {
    const std::optional<Expiry> expiry = NextExpiry();
    if (!expiry.has_value() || expiry->deadline > now_ns) break;
    elapsed_ = expiry->deadline;
    if (expiry->level > 0) {
      Cascade(*expiry);
      continue;
    }
    for (Link* head = &heads_[expiry->slot]; head->next != head;) {
      Node* node = static_cast<Node*>(head->next);
      if (InsertedSince(node, limit)) return fired;
      Remove(node);
      fn(node);
      ++fired;
    }
  }
  elapsed_ = now_ns;
  return fired;
}

}  // namespace taskrt

#endif  // TASKRT_CORE_TIMER_WHEEL_H_
