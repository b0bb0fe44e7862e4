#include "core/tokenizer.h"

namespace ds {

std::vector<int64_t> encode_bytes(const std::string& text) {
  std::vector<int64_t> ids;
  ids.reserve(text.size());
  for (unsigned char c : text) ids.push_back(c);
  return ids;
}

std::string decode_bytes(const std::vector<int64_t>& ids) {
  std::string s;
  s.reserve(ids.size());
  for (int64_t id : ids) s += static_cast<char>(id & 0xff);
  return s;
}

}  // namespace ds
