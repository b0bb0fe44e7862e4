// Instruction examples as training sequences: JSONL records rendered through a template into ids
// and loss masks, cut or dropped to train.seq_len, one example per sequence (padded) or several
// (data.packing, with per-example positions and segment ids for block-diagonal attention). The
// sampler is a pure function of (seed, global sequence index): global batch i holds the same
// examples at any DP size, shuffled anew each epoch.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "data/templates.h"
#include "data/token_dataset.h"

namespace ds {

// One micro batch for the model: inputs, targets (-100 where not counted), and with packing each
// token's position within its example and its example's id in the row.
struct Batch {
  torch::Tensor x, y;
  torch::Tensor positions, segments;  // undefined without packing
  int64_t counted = 0;                // targets that are not -100
};

struct SftStats {
  int64_t records = 0;        // JSONL records read
  int64_t skipped_empty = 0;  // records without a non-empty response
  int64_t examples = 0;       // kept, training and held-out
  int64_t val_examples = 0;
  int64_t dropped = 0;        // longer than seq_len + 1 tokens (or, cut from the left, no response left)
  int64_t truncated = 0;      // prompt cut from the left
  int64_t tokens = 0;         // of kept examples
  int64_t counted = 0;        // targets counted in the loss, of kept examples
  int64_t train_rows = 0;     // training sequences
  double packing_efficiency = 0;  // example tokens / (train_rows × (seq_len + 1))
};

// A sequence of seq_len + 1 ids: examples laid end to end from offset 0, padding (id 0) after.
struct Row {
  std::vector<int64_t> ids;
  std::vector<uint8_t> counted;
  std::vector<int64_t> starts;  // each example's first offset
};

// Examples in order into rows of `len` ids: one each, or packed first-come while they fit.
std::vector<Row> make_rows(const std::vector<Example>& examples, int64_t len, bool packing);
// Rows [n] -> a batch of n × (len - 1) positions.
Batch make_batch(const std::vector<const Row*>& rows, bool packing);

// The records of every file (format jsonl) as examples, before they become rows: the last
// val_fraction of each file's examples held out. What data.cache_dir keeps.
struct SftEncoded {
  std::vector<Example> train, val;
  SftStats counts;  // records, skipped_empty, dropped, truncated
  std::vector<std::string> files;
};
SftEncoded encode_sft(const DataConfig& cfg, const Codec& codec, int64_t seq_len);

class SftDataset {
 public:
  // encode_sft, then from_encoded.
  static SftDataset load(const DataConfig& cfg, const Codec& codec, int64_t seq_len);
  static SftDataset from_encoded(SftEncoded e, int64_t seq_len, bool packing);
  static SftDataset from_examples(std::vector<Example> train, std::vector<Example> val, int64_t seq_len, bool packing);

  // Global sequences [first, first + count) of the run's stream (epoch after epoch).
  Batch train_batch(uint64_t seed, int64_t first, int64_t count) const;
  int64_t num_train_rows() const { return static_cast<int64_t>(train_rows_.size()); }
  int64_t num_eval_rows() const { return static_cast<int64_t>(val_rows_.size()); }
  Batch eval_batch(int64_t first, int64_t count) const;

  const SftStats& stats() const { return stats_; }
  const std::vector<Example>& train_examples() const { return train_; }
  const std::vector<std::string>& files() const { return files_; }

 private:
  const std::vector<int64_t>& epoch_order(uint64_t seed, int64_t epoch) const;

  std::vector<Example> train_, val_;
  std::vector<Row> train_rows_, val_rows_;
  int64_t seq_len_ = 0;
  bool packing_ = false;
  SftStats stats_;
  std::vector<std::string> files_;
  mutable int64_t order_epoch_ = -1;
  mutable uint64_t order_seed_ = 0;
  mutable std::vector<int64_t> order_;
};

// Ids and mask kept within `len` ids by `how`; false when the example is dropped.
bool fit_example(Example& e, int64_t len, Truncate how, bool& truncated);

}  // namespace ds
