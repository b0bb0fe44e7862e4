// Byte-level BPE, read from a Hugging Face tokenizer.json (GPT-2's, LLaMA 3's): the text is split
// on added tokens, pre-tokenized by the model's regex (both are written out by hand in the .cpp),
// each piece's bytes mapped to printable characters, and merges applied lowest rank first.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace ds {

// The two pre-tokenizer regexes in use with byte-level BPE.
//   Gpt2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   Llama3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*
//           |\s*[\r\n]+|\s+(?!\S)|\s+
enum class PreTokenizer { Gpt2, Llama3 };

struct BpeTokenizer {
  std::string path;
  PreTokenizer pre = PreTokenizer::Gpt2;
  bool add_prefix_space = false;
  bool ignore_merges = false;  // LLaMA 3: a piece that is itself in the vocabulary is not merged
  std::unordered_map<std::string, int64_t> vocab;
  std::unordered_map<std::string, int64_t> merge_rank;  // "left right" -> rank
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
