// Fuzz target for the safetensors reader (core/safetensors.h). Any input must either parse or
// throw FileError; anything else (a crash, a sanitizer report, another exception) is a bug.
// Built two ways: with clang -fsanitize=fuzzer (DELTASHARD_LIBFUZZER, by launch/fuzz.sh) it is a
// libFuzzer target; in the normal build it is a replay tool that ctest runs over the corpus.
#include <cstdint>
#include <cstdio>
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
#include "tests/fuzz/replay_main.h"
int main(int argc, char** argv) { return replay_corpus("fuzz_safetensors", "none crashed", argc, argv); }
#endif
