// The replay test of a fuzz target: runs LLVMFuzzerTestOneInput once on every
// file of the checked-in corpus, so `bazel test //...` checks the corpus in
// the plain, tsan and asan builds. Fuzzing itself is a separate binary built
// with --config=fuzz (see BUILD).

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gtest/gtest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::string corpus_dir;  // from argv

TEST(FuzzReplay, EveryCorpusInputRunsClean) {
  ASSERT_FALSE(corpus_dir.empty()) << "usage: <test> CORPUS_DIR";
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(corpus_dir)) {
    if (entry.is_regular_file()) files.push_back(entry.path());
  }
  ASSERT_FALSE(files.empty()) << "no corpus in " << corpus_dir;
  std::sort(files.begin(), files.end());
  for (const auto& file : files) {
    std::ifstream in(file, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    SCOPED_TRACE(file.string());
    // A broken invariant aborts the process, which fails this test.
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  std::printf("replayed %zu corpus inputs from %s\n", files.size(), corpus_dir.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc > 1) corpus_dir = argv[1];
  return RUN_ALL_TESTS();
}
