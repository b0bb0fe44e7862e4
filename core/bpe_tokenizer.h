// Byte-level BPE, read from a Hugging Face tokenizer.json (GPT-2's, LLaMA 3's): the text is split
// on added tokens, pre-tokenized by the model's regex (both are written out by hand in the .cpp),
// each piece's bytes mapped to printable characters, and merges applied lowest rank first, on ids.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ds {

// The two pre-tokenizer regexes in use with byte-level BPE.
//   Gpt2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   Llama3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*
//           |\s*[\r\n]+|\s+(?!\S)|\s+
enum class PreTokenizer { Gpt2, Llama3 };

// Token string -> id, looked up by view (no string built per lookup): the strings in one buffer,
// open addressing with linear probing over their hashes.
class Vocab {
 public:
  void reserve(size_t n);
  void set(std::string_view token, int64_t id);  // a token given twice keeps the last id
  int64_t find(std::string_view token) const;    // -1 when absent
  bool contains(std::string_view token) const { return find(token) >= 0; }
  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }

 private:
  struct Entry {
    uint64_t hash;
    size_t at;
    uint32_t len;
    int32_t id;
  };
  std::string chars_;
  std::vector<Entry> entries_;
  std::vector<uint32_t> slots_;  // entry index + 1; 0 is empty
  size_t mask_ = 0;
};

// The merges by the pair of ids they join: (left << 32 | right) -> the merge's rank and the id it
// makes. Open addressing with linear probing in a power-of-two table, so a lookup while encoding
// is a multiply, a shift and (nearly always) one slot.
class MergeTable {
 public:
  struct Slot {
    uint64_t key = kEmpty;
    int32_t rank = 0, id = 0;
  };
  void reserve(size_t n);
  // False (and no change) when the pair is already there: the first, lowest rank stays.
  bool insert(int32_t left, int32_t right, int32_t rank, int32_t id);
  const Slot* find(int32_t left, int32_t right) const {
    if (slots_.empty()) return nullptr;
    const uint64_t key = pack(left, right);
    for (size_t i = hash(key);; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.key == key) return &s;
      if (s.key == kEmpty) return nullptr;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};  // ids are below 2^24, so no pair packs to it
  static uint64_t pack(int32_t l, int32_t r) { return (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r); }
  size_t hash(uint64_t key) const { return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_); }
  std::vector<Slot> slots_;
  size_t size_ = 0, mask_ = 0;
  int shift_ = 64;
};

struct BpeTokenizer {
  std::string path;
  PreTokenizer pre = PreTokenizer::Gpt2;
  bool add_prefix_space = false;
  bool ignore_merges = false;  // LLaMA 3: a piece that is itself in the vocabulary is not merged
  Vocab vocab;
  MergeTable merges;                                   // by ids: rank and result
  int32_t byte_id[256] = {};                           // the token of each byte's stand-in character
  std::vector<std::string> id_to_token;                // "" where an id is unused
  std::vector<std::pair<std::string, int64_t>> added;  // content, id; longest first
  std::vector<bool> is_added;                          // by id
  // post_processor's TemplateProcessing for one sequence (LLaMA 3: <|begin_of_text|> before it).
  std::vector<int64_t> template_prefix, template_suffix;

  int64_t vocab_size() const { return static_cast<int64_t>(id_to_token.size()); }
};

// Parses the file with nlohmann-json. Throws FileError naming the file and the key for anything it
// cannot read or does not support (invalid JSON with its byte position, a value of the wrong
// type, another model type, byte fallback, an unknown pre-tokenizer, a merge of unknown tokens).
// A model without "type" is BPE when it has "vocab" and "merges" (older Hub files), as in
// `tokenizers`.
BpeTokenizer read_bpe_tokenizer(const std::string& path);

std::vector<int64_t> bpe_encode(const BpeTokenizer& tok, const std::string& text);
// The special tokens the tokenizer's template puts around one sequence, as `transformers` adds
// them by default (add_special_tokens=True) to a prompt.
std::vector<int64_t> add_special_tokens(const BpeTokenizer& tok, std::vector<int64_t> ids);
// Ids the tokenizer does not know (a model's padded vocabulary rows) are skipped, as `tokenizers` does.
std::string bpe_decode(const BpeTokenizer& tok, const std::vector<int64_t>& ids);

// The pre-tokenizer alone, on UTF-8 text: the pieces the regex matches, in order.
std::vector<std::string> pretokenize(PreTokenizer pre, const std::string& text);

}  // namespace ds
