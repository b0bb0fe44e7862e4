#include "data/token_dataset.h"

#include <glob.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/bpe_tokenizer.h"
#include "core/safetensors.h"

namespace ds {

namespace fs = std::filesystem;

void parse_data_config(const YAML::Node& node, const Locator& where, DataConfig& cfg) {
  FieldReader r(node, "data", where);
  describe(r, cfg);
  if (cfg.tokenizer.empty()) r.fail("tokenizer", "must be auto, bytes or the path of a tokenizer.json");
  r.finish();
}

std::vector<std::string> expand_paths(const std::vector<std::string>& paths) {
  std::vector<std::string> files;
  for (const auto& p : paths) {
    std::vector<std::string> matches;
    if (p.find_first_of("*?[") != std::string::npos) {
      glob_t g{};
      if (::glob(p.c_str(), 0, nullptr, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; ++i) matches.emplace_back(g.gl_pathv[i]);
      }
      globfree(&g);
    } else {
      matches.push_back(p);
    }
    if (matches.empty()) throw FileError(p + ": matches no file");
    for (const auto& m : matches) {
      std::error_code ec;
      if (fs::is_directory(m, ec)) {
        std::vector<std::string> inside;
        for (const auto& e : fs::directory_iterator(m)) {
          // fortune directories hold index files (*.dat) and *.u8 links to the same text.
          if (e.is_symlink() || !e.is_regular_file() || e.path().extension() == ".dat") continue;
          inside.push_back(e.path().string());
        }
        std::sort(inside.begin(), inside.end());
        if (inside.empty()) throw FileError(m + ": directory holds no text files");
        files.insert(files.end(), inside.begin(), inside.end());
      } else if (fs::is_regular_file(m, ec)) {
        files.push_back(m);
      } else if (fs::exists(m, ec)) {
        throw FileError(m + ": not a regular file (a FIFO, socket or device); data.path takes text files");
      } else {
        throw FileError(m + ": no such file or directory");
      }
    }
  }
  return files;
}

TokenDataset TokenDataset::load(const DataConfig& cfg, const BpeTokenizer* tokenizer) {
  if (cfg.paths.empty()) throw ConfigError("data.path: is required");
  TokenDataset d;
  d.files_ = expand_paths(cfg.paths);
  // Bytes stay one byte each until the end; BPE ids need int64 as they come.
  std::string train_text, val_text;
  std::vector<int64_t> train_ids, val_ids;
  for (const auto& f : d.files_) {
    const std::string text = read_file(f);
    const size_t cut = text.size() - static_cast<size_t>(static_cast<double>(text.size()) * cfg.val_fraction);
    if (!tokenizer) {
      train_text.append(text, 0, cut);
      val_text.append(text, cut, std::string::npos);
      continue;
    }
    for (auto [ids, part] : {std::pair{&train_ids, text.substr(0, cut)}, std::pair{&val_ids, text.substr(cut)}}) {
      const std::vector<int64_t> enc = bpe_encode(*tokenizer, part);
      ids->insert(ids->end(), enc.begin(), enc.end());
    }
  }
  auto bytes = [](const std::string& s) {
    return torch::from_blob(const_cast<char*>(s.data()), {static_cast<int64_t>(s.size())}, torch::kUInt8).to(torch::kLong);
  };
  auto ids = [](const std::vector<int64_t>& v) { return torch::tensor(torch::ArrayRef<int64_t>(v), torch::kLong); };
  d.train_ = tokenizer ? ids(train_ids) : bytes(train_text);
  d.val_ = tokenizer ? ids(val_ids) : bytes(val_text);
  return d;
}

TokenDataset TokenDataset::from_tokens(torch::Tensor train, torch::Tensor val, std::vector<std::string> files) {
  TokenDataset d;
  d.files_ = std::move(files);
  d.train_ = train.to(torch::kLong);
  d.val_ = val.to(torch::kLong);
  return d;
}

namespace {
uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
}  // namespace

torch::Tensor TokenDataset::train_windows(uint64_t seed, int64_t step, int64_t first, int64_t count,
                                          int64_t seq_len) const {
  const int64_t span = train_.numel() - (seq_len + 1);
  if (span < 0) {
    throw std::runtime_error("training text has " + std::to_string(train_.numel()) +
                             " tokens, fewer than one window of " + std::to_string(seq_len + 1));
  }
  torch::Tensor out = torch::empty({count, seq_len + 1}, torch::kLong);
  const int64_t* src = train_.data_ptr<int64_t>();
  int64_t* dst = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < count; ++i) {
    const uint64_t h = splitmix64(splitmix64(seed) ^ splitmix64(static_cast<uint64_t>(step) << 20 ^
                                                                 static_cast<uint64_t>(first + i)));
    const int64_t start = static_cast<int64_t>(h % static_cast<uint64_t>(span + 1));
    std::copy(src + start, src + start + seq_len + 1, dst + i * (seq_len + 1));
  }
  return out;
}

int64_t TokenDataset::num_eval_windows(int64_t seq_len) const {
  return val_.numel() > seq_len ? (val_.numel() - 1) / seq_len : 0;
}

torch::Tensor TokenDataset::eval_windows(int64_t first, int64_t count, int64_t seq_len) const {
  std::vector<torch::Tensor> rows;
  for (int64_t i = first; i < first + count; ++i) rows.push_back(val_.narrow(0, i * seq_len, seq_len + 1));
  if (rows.empty()) return torch::empty({0, seq_len + 1}, torch::kLong);
  return torch::stack(rows);
}

}  // namespace ds
