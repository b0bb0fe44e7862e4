// Fuzz target for the safetensors reader (core/safetensors.h). Any input must either parse or
// throw FileError; anything else (a crash, a sanitizer report, another exception) is a bug.
// Built two ways: with clang -fsanitize=fuzzer (DELTASHARD_LIBFUZZER, by launch/fuzz.sh) it is a
// libFuzzer target; in the normal build it is a replay tool that ctest runs over the corpus.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const ds::SafetensorsFile f = ds::parse_safetensors(data, size, "fuzz-input");
    for (const auto& [name, t] : f.tensors) {
      // Touch every byte the reader claims is a tensor: out-of-range views show up here.
      if (t.numel() > 0) (void)t.to(torch::kFloat).sum().item<float>();
    }
  } catch (const ds::FileError&) {
  }
  return 0;
}

#ifndef DELTASHARD_LIBFUZZER
int main(int argc, char** argv) {
  int n = 0;
  for (int i = 1; i < argc; ++i) {
    std::ifstream in(argv[i], std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "fuzz_safetensors: cannot read %s\n", argv[i]);
      return 1;
    }
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    ++n;
  }
  std::printf("fuzz_safetensors: %d inputs replayed without a crash\n", n);
  return 0;
}
#endif
