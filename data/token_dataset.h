// Token streams from text files (a file, a directory, a glob, or a list of them), split into a
// training part and a held-out part deterministically: the last `val_fraction` of every file.
// Training windows are a pure function of (seed, step, index), so any data-parallel split of a
// global batch sees the same sequences and resuming needs only the step.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "core/config_fields.h"
#include "data/records.h"
#include "data/templates.h"

namespace ds {

// auto: jsonl when the first data.path ends in .jsonl, else text (resolved by resolve_run_config).
enum class DataFormat { Auto, Text, Jsonl };
DS_ENUM_NAMES(DataFormat, {DataFormat::Auto, "auto"}, {DataFormat::Text, "text"}, {DataFormat::Jsonl, "jsonl"});
// An example longer than train.seq_len + 1 tokens: dropped, or its prompt cut from the left.
enum class Truncate { Drop, Left };
DS_ENUM_NAMES(Truncate, {Truncate::Drop, "drop"}, {Truncate::Left, "left"});

struct DataConfig {
  std::vector<std::string> paths;  // data.path: a string or a list; directories skip *.dat and links
  DataFormat format = DataFormat::Auto;
  Schema schema = Schema::Auto;          // jsonl: detected from each file's first record
  Template chat_template = Template::Plain;
  bool train_on_inputs = false;          // jsonl: prompts and scaffolding count in the loss too
  Truncate truncate = Truncate::Drop;
  bool packing = false;                  // jsonl: several examples per sequence
  double val_fraction = 0.1;
  // data.tokenizer: "auto" (model.path's tokenizer.json if there is one, else bytes), "bytes", or
  // the path of a tokenizer.json (byte-level BPE). A resolved run config holds bytes or a path.
  std::string tokenizer = "auto";
  // data.cache_dir: where the tokenized dataset is kept (data/token_cache.h) when a tokenizer is
  // used; "" (default): checkpoint.dir/.cache, none without a checkpoint.dir; "none": no cache.
  std::string cache_dir;
};

template <class V>
void describe(V& v, DataConfig& c) {
  v("path", c.paths, {});
  v("format", c.format);
  v("schema", c.schema);
  v("template", c.chat_template);
  v("train_on_inputs", c.train_on_inputs);
  v("truncate", c.truncate);
  v("packing", c.packing);
  v("val_fraction", c.val_fraction, 0.0, 0.9);
  v("tokenizer", c.tokenizer);
  v("cache_dir", c.cache_dir);
}

void parse_data_config(const YAML::Node& node, const Locator& where, DataConfig& cfg);

// Expands files, directories and globs; throws FileError naming what matched nothing.
std::vector<std::string> expand_paths(const std::vector<std::string>& paths);

struct BpeTokenizer;

class TokenDataset {
 public:
  // Bytes as tokens without a tokenizer; the split into training and held-out text is made on
  // bytes, then each part is encoded.
  static TokenDataset load(const DataConfig& cfg, const BpeTokenizer* tokenizer = nullptr);
  static TokenDataset from_tokens(torch::Tensor train, torch::Tensor val, std::vector<std::string> files = {});

  // [count, seq_len + 1] int64: the sequences global[first .. first+count) of batch `step`.
  torch::Tensor train_windows(uint64_t seed, int64_t step, int64_t first, int64_t count, int64_t seq_len) const;
  // Held-out windows laid end to end without overlap; window i of num_eval_windows().
  int64_t num_eval_windows(int64_t seq_len) const;
  torch::Tensor eval_windows(int64_t first, int64_t count, int64_t seq_len) const;

  int64_t train_tokens() const { return train_.numel(); }
  int64_t val_tokens() const { return val_.numel(); }
  const torch::Tensor& train_ids() const { return train_; }
  const torch::Tensor& val_ids() const { return val_; }
  const std::vector<std::string>& files() const { return files_; }

 private:
  torch::Tensor train_, val_;  // int64 token streams
  std::vector<std::string> files_;
};

}  // namespace ds
