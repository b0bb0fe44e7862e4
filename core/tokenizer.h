// Byte-level tokenizer: token = byte value (vocabulary 256). No merges, so any text round-trips
// and no vocabulary file is needed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ds {

constexpr int64_t kByteVocab = 256;

std::vector<int64_t> encode_bytes(const std::string& text);
std::string decode_bytes(const std::vector<int64_t>& ids);

}  // namespace ds
