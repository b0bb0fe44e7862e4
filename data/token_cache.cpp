#include "data/token_cache.h"

#include <xxhash.h>

#include <cstdio>
#include <cstring>
#include <limits>

#include "core/files.h"

namespace ds {

namespace {

constexpr char kMagic[8] = {'D', 'S', 'T', 'O', 'K', 'E', 'N', '1'};

template <class T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

// Reads a T at `at`, moving it on; false past the end.
template <class T>
bool get(const std::string& in, size_t& at, T& v) {
  if (in.size() - at < sizeof v) return false;
  std::memcpy(&v, in.data() + at, sizeof v);
  at += sizeof v;
  return true;
}

std::vector<int32_t> ids32(const torch::Tensor& t, const char* what) {
  const torch::Tensor c = t.contiguous();
  if (c.numel() > 0 && c.max().item<int64_t>() > std::numeric_limits<int32_t>::max()) {
    throw std::runtime_error(std::string("token cache: ") + what + " holds an id past int32");
  }
  const torch::Tensor i = c.to(torch::kInt);
  return {i.data_ptr<int32_t>(), i.data_ptr<int32_t>() + i.numel()};
}

torch::Tensor tensor_of(const std::vector<int32_t>& v) {
  return torch::tensor(torch::ArrayRef<int32_t>(v), torch::kInt).to(torch::kLong);
}

}  // namespace

uint64_t token_cache_key(const std::vector<std::string>& files, const std::string& tokenizer_path,
                         const std::string& settings) {
  // The key hashes the hashes: each input's own hash is independent of the others' sizes.
  std::string parts = "deltashard tokens v1\n" + settings + "\n";
  auto add = [&parts](const std::string& bytes) { put(parts, static_cast<uint64_t>(XXH64(bytes.data(), bytes.size(), 0))); };
  for (const auto& f : files) add(read_file(f));
  add(tokenizer_path == "bytes" || tokenizer_path.empty() ? std::string("bytes") : read_file(tokenizer_path));
  return XXH64(parts.data(), parts.size(), 0);
}

std::string token_cache_file(const std::string& dir, uint64_t key) {
  char name[40];
  std::snprintf(name, sizeof name, "tokens-%016llx.bin", static_cast<unsigned long long>(key));
  return dir + "/" + name;
}

std::optional<TokenArrays> read_token_cache(const std::string& file, uint64_t key, std::string& why) {
  if (!is_regular_file(file)) {
    why = "absent";
    return std::nullopt;
  }
  const std::string in = read_file(file);
  if (in.size() < sizeof kMagic + 3 * sizeof(uint64_t) || std::memcmp(in.data(), kMagic, sizeof kMagic) != 0) {
    why = "not a token cache";
    return std::nullopt;
  }
  uint64_t sum = 0;
  std::memcpy(&sum, in.data() + in.size() - sizeof sum, sizeof sum);
  if (XXH64(in.data(), in.size() - sizeof sum, 0) != sum) {
    why = "checksum mismatch (damaged)";
    return std::nullopt;
  }
  size_t at = sizeof kMagic;
  uint64_t file_key = 0, n = 0;
  get(in, at, file_key);
  get(in, at, n);
  if (file_key != key) {
    why = "of another key";
    return std::nullopt;
  }
  const size_t end = in.size() - sizeof sum;
  TokenArrays out(n);
  for (auto& a : out) {
    uint64_t len = 0;
    if (!get(in, at, len) || len > (end - at) / sizeof(int32_t)) {
      why = "truncated";
      return std::nullopt;
    }
    a.resize(len);
    std::memcpy(a.data(), in.data() + at, len * sizeof(int32_t));
    at += len * sizeof(int32_t);
  }
  return out;
}

void write_token_cache(const std::string& file, uint64_t key, const TokenArrays& arrays) {
  std::string out(kMagic, sizeof kMagic);
  put(out, key);
  put(out, static_cast<uint64_t>(arrays.size()));
  for (const auto& a : arrays) {
    put(out, static_cast<uint64_t>(a.size()));
    out.append(reinterpret_cast<const char*>(a.data()), a.size() * sizeof(int32_t));
  }
  put(out, static_cast<uint64_t>(XXH64(out.data(), out.size(), 0)));
  write_file_atomic(file, out);
}

TokenArrays to_arrays(const TokenDataset& d) {
  return {ids32(d.train_ids(), "training text"), ids32(d.val_ids(), "held-out text")};
}

TokenDataset token_dataset_from(const TokenArrays& a, std::vector<std::string> files) {
  if (a.size() != 2) throw std::runtime_error("token cache: expected 2 arrays for a text dataset");
  return TokenDataset::from_tokens(tensor_of(a[0]), tensor_of(a[1]), std::move(files));
}

// [records, skipped_empty, dropped, truncated, n_train], then ids and mask of each example.
TokenArrays to_arrays(const SftEncoded& e) {
  const SftStats& c = e.counts;
  TokenArrays out{{static_cast<int32_t>(c.records), static_cast<int32_t>(c.skipped_empty),
                   static_cast<int32_t>(c.dropped), static_cast<int32_t>(c.truncated),
                   static_cast<int32_t>(e.train.size())}};
  for (const auto* part : {&e.train, &e.val}) {
    for (const Example& x : *part) {
      out.emplace_back(x.ids.begin(), x.ids.end());
      out.emplace_back(x.counted.begin(), x.counted.end());
    }
  }
  return out;
}

SftEncoded sft_encoded_from(const TokenArrays& a, std::vector<std::string> files) {
  if (a.empty() || a[0].size() != 5 || (a.size() - 1) % 2 != 0) {
    throw std::runtime_error("token cache: not an instruction dataset");
  }
  SftEncoded e;
  e.counts.records = a[0][0];
  e.counts.skipped_empty = a[0][1];
  e.counts.dropped = a[0][2];
  e.counts.truncated = a[0][3];
  const size_t n_train = static_cast<size_t>(a[0][4]);
  for (size_t i = 1; i + 1 < a.size(); i += 2) {
    Example x;
    x.ids.assign(a[i].begin(), a[i].end());
    x.counted.assign(a[i + 1].begin(), a[i + 1].end());
    ((i - 1) / 2 < n_train ? e.train : e.val).push_back(std::move(x));
  }
  e.files = std::move(files);
  return e;
}

}  // namespace ds
