// The tokenized dataset on disk (data.cache_dir), so that a run, its resumption and the other
// ranks do not tokenize the same files again. A cache file is named by a hash of everything the
// tokens depend on: each data file's bytes, the tokenizer file's bytes, and the data settings.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "data/sft_dataset.h"
#include "data/token_dataset.h"

namespace ds {

// xxHash64 over the data files' contents (in order), the tokenizer file's contents and `settings`
// (the data options that change the tokens, written out by the caller).
uint64_t token_cache_key(const std::vector<std::string>& files, const std::string& tokenizer_path,
                         const std::string& settings);
// DIR/tokens-<key in hex>.bin
std::string token_cache_file(const std::string& dir, uint64_t key);

// The cache's payload: int32 arrays (ids, masks, counts). Each file ends in an xxHash64 of what
// precedes it; a file that is absent, of another key or damaged reads as nullopt with `why` set.
using TokenArrays = std::vector<std::vector<int32_t>>;
std::optional<TokenArrays> read_token_cache(const std::string& file, uint64_t key, std::string& why);
// Atomic (temp, fsync, rename): a reader sees the old file, the new one, or none.
void write_token_cache(const std::string& file, uint64_t key, const TokenArrays& arrays);

// The datasets to and from the payload: [train ids, held-out ids]; and for instruction data the
// counts, then each example's ids and counted mask.
TokenArrays to_arrays(const TokenDataset& d);
TokenDataset token_dataset_from(const TokenArrays& a, std::vector<std::string> files);
TokenArrays to_arrays(const SftEncoded& e);
SftEncoded sft_encoded_from(const TokenArrays& a, std::vector<std::string> files);

}  // namespace ds
