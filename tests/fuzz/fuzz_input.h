#ifndef TASKRT_TESTS_FUZZ_FUZZ_INPUT_H_
#define TASKRT_TESTS_FUZZ_FUZZ_INPUT_H_

// FuzzInput: reads a fuzzer's bytes as small integers and byte strings. Past
// the end every read returns zeros, so every input is a valid program.
//
// FUZZ_CHECK: a broken invariant prints what broke and aborts, which
// libFuzzer reports as a crash and the replay test as a failure.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#define FUZZ_CHECK(condition, ...)                                              \
  do {                                                                          \
    if (!(condition)) {                                                         \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed: ", __FILE__, __LINE__, \
                   #condition);                                                 \
      std::fprintf(stderr, __VA_ARGS__);                                        \
      std::fprintf(stderr, "\n");                                               \
      std::abort();                                                             \
    }                                                                           \
  } while (0)

namespace taskrt::fuzz {

class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  bool empty() const { return position_ >= size_; }

  uint8_t Byte() { return empty() ? 0 : data_[position_++]; }
  uint8_t Peek() const { return empty() ? 0 : data_[position_]; }

  uint16_t U16() {
    const uint16_t high = Byte();
    return static_cast<uint16_t>(high << 8 | Byte());
  }

  // A value in [0, bound); 0 when bound is 0.
  size_t Below(size_t bound) { return bound == 0 ? 0 : U16() % bound; }

  // Up to `max` bytes, length first.
  std::string Bytes(size_t max) {
    size_t length = Below(max + 1);
    std::string out;
    while (length-- > 0 && !empty()) out.push_back(static_cast<char>(Byte()));
    return out;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t position_ = 0;
};

}  // namespace taskrt::fuzz

#endif  // TASKRT_TESTS_FUZZ_FUZZ_INPUT_H_
