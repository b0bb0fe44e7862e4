// Fuzz target for the byte-level BPE (core/bpe_tokenizer.h) on arbitrary bytes as text, with the
// GPT-2 head fixture. Properties, checked with abort() so libFuzzer and the replay both fail:
//   - each pre-tokenizer cuts the text into non-empty pieces that concatenate back to it;
//   - decode(encode(text)) == text, for any bytes, invalid UTF-8 included;
//   - every id is in the vocabulary;
//   - the ids are those of GPT-2's merge loop on strings (encoder.py), which the merges on id
//     pairs replaced.
// Built like fuzz_safetensors.cpp: a libFuzzer target under launch/fuzz.sh bpe, a corpus replay in
// the normal build.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/bpe_tokenizer.h"

namespace {
void check(bool ok, const char* what, const std::string& text) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_bpe: %s fails on %zu bytes\n", what, text.size());
  std::abort();
}

const std::string kFixture = std::string(DS_FIXTURES) + "/gpt2_tokenizer_head.json";

// GPT-2's encoder.py on strings: added tokens cut out, pieces as stand-in characters, the
// lowest-ranked "left right" merged everywhere left to right until none applies.
struct StringBpe {
  const ds::BpeTokenizer& tok;
  std::unordered_map<std::string, int64_t> rank;
  std::string to_char[256];

  explicit StringBpe(const ds::BpeTokenizer& t) : tok(t) {
    std::ifstream in(kFixture);
    const auto j = nlohmann::json::parse(std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()));
    int64_t r = 0;
    for (const auto& m : j["model"]["merges"]) rank.emplace(m.get<std::string>(), r++);
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      const uint32_t cp = printable ? b : next++;
      to_char[b] = cp < 0x80 ? std::string(1, static_cast<char>(cp))
                             : std::string{static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
    }
  }
  void plain(const std::string& text, std::vector<int64_t>& ids) const {
    for (const std::string& piece : ds::pretokenize(tok.pre, text)) {
      std::vector<std::string> sym;
      for (unsigned char b : piece) sym.push_back(to_char[b]);
      while (sym.size() > 1) {
        int64_t best = std::numeric_limits<int64_t>::max();
        size_t at = 0;
        for (size_t k = 0; k + 1 < sym.size(); ++k) {
          auto it = rank.find(sym[k] + " " + sym[k + 1]);
          if (it != rank.end() && it->second < best) best = it->second, at = k;
        }
        if (best == std::numeric_limits<int64_t>::max()) break;
        const std::string left = sym[at], right = sym[at + 1];
        std::vector<std::string> merged;
        for (size_t k = 0; k < sym.size(); ++k) {
          const bool hit = k + 1 < sym.size() && sym[k] == left && sym[k + 1] == right;
          merged.push_back(hit ? left + right : sym[k]);
          k += hit;
        }
        sym.swap(merged);
      }
      for (const std::string& s : sym) ids.push_back(tok.vocab.find(s));
    }
  }
  std::vector<int64_t> encode(const std::string& text) const {
    std::vector<int64_t> ids;
    size_t from = 0;
    for (size_t i = 0; i < text.size();) {
      const std::pair<std::string, int64_t>* hit = nullptr;
      for (const auto& a : tok.added) {  // longest first
        if (text.compare(i, a.first.size(), a.first) == 0) {
          hit = &a;
          break;
        }
      }
      if (!hit) {
        ++i;
        continue;
      }
      plain(text.substr(from, i - from), ids);
      ids.push_back(hit->second);
      i += hit->first.size();
      from = i;
    }
    plain(text.substr(from), ids);
    return ids;
  }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const ds::BpeTokenizer tok = ds::read_bpe_tokenizer(kFixture);
  static const StringBpe reference(tok);
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
  check(ids == reference.encode(text), "ids equal the string merge loop's", text);
  return 0;
}

#ifndef DELTASHARD_LIBFUZZER
#include "tests/fuzz/replay_main.h"
int main(int argc, char** argv) { return replay_corpus("fuzz_bpe", "every property held", argc, argv); }
#endif
