// Fuzz target for the byte-level BPE (core/bpe_tokenizer.h) on arbitrary bytes as text, with the
// GPT-2 head fixture. Properties, checked with abort() so libFuzzer and the replay both fail:
//   - each pre-tokenizer cuts the text into non-empty pieces that concatenate back to it;
//   - decode(encode(text)) == text, for any bytes, invalid UTF-8 included;
//   - every id is in the vocabulary.
// Built like fuzz_safetensors.cpp: a libFuzzer target under launch/fuzz.sh bpe, a corpus replay in
// the normal build.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/bpe_tokenizer.h"

namespace {
void check(bool ok, const char* what, const std::string& text) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_bpe: %s fails on %zu bytes\n", what, text.size());
  std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const ds::BpeTokenizer tok = ds::read_bpe_tokenizer(std::string(DS_FIXTURES) + "/gpt2_tokenizer_head.json");
  const std::string text(reinterpret_cast<const char*>(data), size);
  for (auto pre : {ds::PreTokenizer::Gpt2, ds::PreTokenizer::Llama3}) {
    std::string joined;
    for (const std::string& p : ds::pretokenize(pre, text)) {
      check(!p.empty(), "non-empty pieces", text);
      joined += p;
    }
    check(joined == text, "pieces concatenate to the text", text);
  }
  const std::vector<int64_t> ids = ds::bpe_encode(tok, text);
  for (int64_t id : ids) check(id >= 0 && id < tok.vocab_size(), "ids in the vocabulary", text);
  check(ds::bpe_decode(tok, ids) == text, "decode(encode(text)) == text", text);
  return 0;
}

#ifndef DELTASHARD_LIBFUZZER
#include "tests/fuzz/replay_main.h"
int main(int argc, char** argv) { return replay_corpus("fuzz_bpe", "every property held", argc, argv); }
#endif
