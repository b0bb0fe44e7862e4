// Times the byte-level BPE alone, without the deltashard process around it (MPI, LibTorch):
// read_bpe_tokenizer on a tokenizer.json, then one bpe_encode call on the files' bytes joined, as
// many times as asked; prints each and the best. Built and run by launch/bench_tokenizer.sh.
// usage: bench_tokenizer TOKENIZER_JSON REPEATS FILE...
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/bpe_tokenizer.h"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: bench_tokenizer TOKENIZER_JSON REPEATS FILE...\n");
    return 2;
  }
  using clock = std::chrono::steady_clock;
  auto seconds = [](clock::time_point a, clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };
  const int repeats = std::atoi(argv[2]);
  std::string text;
  for (int i = 3; i < argc; ++i) {
    std::ifstream in(argv[i], std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "bench_tokenizer: cannot open %s\n", argv[i]);
      return 1;
    }
    text.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  double best_load = 1e9, best_encode = 1e9;
  size_t tokens = 0;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = clock::now();
    const ds::BpeTokenizer tok = ds::read_bpe_tokenizer(argv[1]);
    const auto t1 = clock::now();
    const std::vector<int64_t> ids = ds::bpe_encode(tok, text);
    const auto t2 = clock::now();
    tokens = ids.size();
    best_load = std::min(best_load, seconds(t0, t1));
    best_encode = std::min(best_encode, seconds(t1, t2));
    std::printf("run %d: read_bpe_tokenizer %.3f s (%lld tokens), encode %zu bytes -> %zu tokens in %.3f s: %.0f tokens/s\n", r + 1,
                seconds(t0, t1), static_cast<long long>(tok.vocab_size()), text.size(), tokens, seconds(t1, t2),
                tokens / seconds(t1, t2));
  }
  std::printf("best: read_bpe_tokenizer %.3f s, encode %.3f s: %.0f tokens/s\n", best_load, best_encode, tokens / best_encode);
  return 0;
}
