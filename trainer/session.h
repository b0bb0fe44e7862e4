// One training run on one process grid: the model (fresh or loaded, sharded by the grid's TP
// group), the PEFT method applied, the DP-invariant data stream, gradient sync and AdamW.
// `train`, `eval`, `merge`, `bench step` and `compare` all drive this.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/peft.h"
#include "core/token_dataset.h"
#include "core/transformer.h"
#include "dist/grad_sync.h"
#include "dist/process_grid.h"
#include "trainer/adamw.h"
#include "trainer/run_config.h"

namespace ds {

struct StepResult {
  int64_t step = 0;
  double loss = 0;       // mean over the global batch's tokens
  double grad_norm = 0;  // before clipping (0 when clipping is off)
  double lr = 0;
  double ms = 0;
  int64_t tokens = 0;    // global
  std::vector<CommRecord> comm;
};

struct EvalResult {
  double loss = 0;
  double perplexity = 0;
  int64_t tokens = 0;
};

class TrainSession {
 public:
  // Builds everything; with `resume_dir`, continues from that checkpoint (any DP or TP size).
  TrainSession(RunConfig cfg, ProcessGrid& grid, const std::string& resume_dir = "", bool need_data = true);

  StepResult step();
  EvalResult evaluate();
  bool done() const { return step_ >= cfg_.train.steps; }
  int64_t step_index() const { return step_; }

  // All ranks call these; rank 0 writes.
  void save_checkpoint(const std::string& dir);
  void save_merged_model(const std::string& dir);
  // Loads trainable parameters (only) from a checkpoint, e.g. for eval.
  void load_trainable(const std::string& dir);
  void merge_lora(bool merge);

  const RunConfig& config() const { return cfg_; }
  Transformer& model() { return model_; }
  const ParamReport& report() const { return report_; }
  GradSync& grad_sync() { return *sync_; }
  FlatAdamW& optimizer() { return *opt_; }
  ProcessGrid& grid() { return grid_; }
  const TokenDataset& data() const { return *data_; }

 private:
  void load_optimizer(const std::string& dir);
  // data.path tokenized by data.tokenizer (auto: model.path's tokenizer.json, else bytes).
  void load_data();

  RunConfig cfg_;
  ProcessGrid& grid_;
  Transformer model_{nullptr};
  ParamReport report_;
  std::unique_ptr<TokenDataset> data_;
  std::unique_ptr<GradSync> sync_;
  std::unique_ptr<FlatAdamW> opt_;
  std::vector<std::pair<std::string, torch::Tensor>> trainable_;
  int64_t step_ = 0;
};

// Base model config: from model.path when set, otherwise the YAML sizes.
ModelConfig resolve_model_config(const RunConfig& cfg);

}  // namespace ds
