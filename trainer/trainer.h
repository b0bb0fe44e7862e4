// One training run on one process grid, on top of the model builder: the DP-invariant data
// stream, gradient sync of the trainable parameters, AdamW and its schedule, the step loop and
// evaluation. Checkpoints are read and written beside it (trainer/checkpoint.h).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "data/sft_dataset.h"
#include "data/token_dataset.h"
#include "dist/grad_sync.h"
#include "dist/process_grid.h"
#include "trainer/adamw.h"
#include "trainer/model_builder.h"
#include "trainer/loss_scaler.h"
#include "trainer/run_config.h"

namespace ds {

struct StepResult {
  int64_t step = 0;
  double loss = 0;       // mean over the global batch's tokens
  double grad_norm = 0;  // before clipping
  // From the step's control all-reduce, alike on every rank: a stop signal reached some rank;
  // the loss or gradient norm was NaN or Inf, so the optimizer step was skipped; and with
  // `fatal`, past train.max_skipped (or under train.nonfinite: stop) the run must end.
  bool stop = false;
  bool skipped = false;
  bool fatal = false;
  int64_t skipped_steps = 0;  // skipped so far in this process
  // fp16 base on CUDA: steps skipped by the loss scaler for overflowing gradients (apart from
  // skipped_steps, not counted against train.max_skipped), and the scale after this step.
  int64_t scaler_skips = 0;
  double loss_scale = 1.0;
  double lr = 0;
  double ms = 0;         // this rank's wall time of the step
  int64_t tokens = 0;    // global: every rank's tokens of this step
  int64_t counted = 0;   // global: targets counted in the loss (instruction data: responses only)
  std::vector<CommRecord> comm;
  // With TrainerOptions::time_phases: the device time of the forward passes, the backward passes
  // and the update (gradient sync, clipping, AdamW), measured with CUDA events on a GPU.
  double forward_ms = 0, backward_ms = 0, update_ms = 0;
};

struct EvalResult {
  double loss = 0;
  double perplexity = 0;
  int64_t tokens = 0;  // held-out tokens scored (instruction data: counted targets), over every DP rank
};

struct TrainerOptions {
  std::string resume;        // a checkpoint root or step directory to continue from (any DP or TP size)
  bool need_data = true;     // false: no dataset (commands that only build and save)
  bool random_data = false;  // uniformly random tokens instead of data.path (benchmarks)
  bool time_phases = false;  // fill StepResult's phase times
  // Tokens through data.cache_dir: only for `train`, whose checkpoint.dir has been claimed.
  bool cache_data = false;
};

class Trainer {
 public:
  Trainer(RunConfig cfg, ProcessGrid& grid, const TrainerOptions& options = {});

  StepResult step();
  EvalResult evaluate();
  bool done() const { return step_ >= cfg_.train.steps; }
  int64_t step_index() const { return step_; }

  // All ranks call these; rank 0 writes.
  void save_checkpoint(const std::string& root);
  void load_trainable(const std::string& checkpoint);

  const RunConfig& config() const { return cfg_; }
  Transformer& model() { return built_.model; }
  const ParamReport& report() const { return built_.report; }
  torch::Device device() const { return built_.device; }
  GradSync& grad_sync() { return *sync_; }
  FlatAdamW& optimizer() { return *opt_; }
  const LossScaler& scaler() const { return scaler_; }
  ProcessGrid& grid() { return grid_; }
  const TokenDataset& data() const { return *data_; }  // text runs
  const SftDataset* sft() const { return sft_.get(); }  // data.format jsonl, else null
  const std::vector<std::pair<std::string, torch::Tensor>>& trainable() const { return trainable_; }

 private:
  // Micro-batches of global batch `step` for this rank, on the device.
  std::vector<Batch> batches_for(int64_t step) const;

  RunConfig cfg_;
  ProcessGrid& grid_;
  BuiltModel built_;
  std::unique_ptr<TokenDataset> data_;
  std::unique_ptr<SftDataset> sft_;
  std::unique_ptr<GradSync> sync_;
  std::unique_ptr<FlatAdamW> opt_;
  std::vector<std::pair<std::string, torch::Tensor>> trainable_;
  std::vector<Batch> next_;  // the next step's batches, prepared while the device computes
  int64_t next_step_ = -1;
  int64_t step_ = 0;
  bool time_phases_ = false;
  int64_t skipped_total_ = 0, skipped_in_row_ = 0;
  LossScaler scaler_;
};

// The micro batches of global batch `step` that this rank takes (train.grad_accum of them), from
// `data` (text) or `sft` (data.format jsonl), on `device`.
std::vector<Batch> micro_batches(const RunConfig& cfg, const TokenDataset* data, const SftDataset* sft,
                                 const ProcessGrid& grid, int64_t step, torch::Device device);
// train.epochs -> train.steps from the number of training sequences (a no-op without epochs).
void steps_from_epochs(RunConfig& cfg, const SftDataset* sft, int dp);
// The global generator's seed at the start of `step`: dropout masks the same on the ranks of a TP
// group, different across DP ranks, and a function of the step alone, so resuming is exact.
uint64_t dropout_seed(int64_t seed, int dp_rank, int64_t step);

// Held-out loss of `model` on `data`'s evaluation windows (train.eval_windows of them, split over
// the DP ranks); every rank returns the same figures.
EvalResult evaluate_model(Transformer& model, const TokenDataset& data, const TrainOptions& t, ProcessGrid& grid,
                          torch::Device device);

// data.path through data.tokenizer (the builder's tokenizer), split into training and held-out.
// With a tokenizer and a `grid` (a run, whose checkpoint.dir is claimed), through data.cache_dir:
// rank 0 tokenizes once and keeps the tokens; the other ranks wait and read them.
TokenDataset load_dataset(const RunConfig& cfg, const std::optional<BpeTokenizer>& tokenizer,
                          ProcessGrid* grid = nullptr);
// data.format jsonl: records through data.template into masked examples, cached the same way.
SftDataset load_sft_dataset(const RunConfig& cfg, const std::optional<BpeTokenizer>& tokenizer,
                            ProcessGrid* grid = nullptr);
// The directory data.cache_dir resolves to; "" when nothing is cached (none, bytes, no checkpoint.dir).
std::string cache_dir_of(const RunConfig& cfg);
Codec codec_for(const RunConfig& cfg, const std::optional<BpeTokenizer>& tokenizer);
// Held-out loss over the counted targets of the held-out examples (train.eval_windows sequences, 0: all).
EvalResult evaluate_model(Transformer& model, const SftDataset& data, const TrainOptions& t, ProcessGrid& grid,
                          torch::Device device);

}  // namespace ds
