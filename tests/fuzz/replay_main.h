// The non-libFuzzer build of a fuzz target: main() runs LLVMFuzzerTestOneInput over the files
// named on the command line (the corpus), so ctest replays every saved input.
#pragma once

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

// Prints "NAME: N inputs replayed, OUTCOME" when every file was read and replayed.
inline int replay_corpus(const char* name, const char* outcome, int argc, char** argv) {
  int n = 0;
  for (int i = 1; i < argc; ++i) {
    std::ifstream in(argv[i], std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "%s: cannot read %s\n", name, argv[i]);
      return 1;
    }
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    ++n;
  }
  std::printf("%s: %d inputs replayed, %s\n", name, n, outcome);
  return 0;
}
