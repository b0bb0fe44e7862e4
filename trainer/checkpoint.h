// Checkpoints in the step layout of core/dir_layout.h. A step directory holds
// trainable.safetensors (the trainable parameters, whole, by parameter name), optimizer.safetensors
// (AdamW moments by parameter name), state.json (step, optimizer steps, the grid it was written on,
// the method and the model's sizes), config.yaml (the resolved run config), the model files for a
// full fine-tune (so it is also a model directory), and its marker, written last. The newest
// complete checkpoint is never removed before a newer one is complete.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>

#include "core/safetensors.h"
#include "core/transformer.h"
#include "dist/process_grid.h"
#include "trainer/loss_scaler.h"
#include "trainer/run_config.h"

namespace ds {

class Trainer;

struct CheckpointState {
  int64_t step = 0;
  int64_t optimizer_steps = 0;
  int dp = 1, tp = 1;
  PeftMethod method = PeftMethod::Lora;
  std::map<std::string, std::string> model;  // architecture fields as text (field_texts)
  // An fp16 base on CUDA: the loss scaler's state, so a resumed run scales as the uninterrupted
  // one would (absent from other checkpoints; a run without a scaler ignores it).
  std::optional<LossScaler> scaler;
};

struct CheckpointFiles {
  NamedTensors trainable;
  NamedTensors optimizer;
  CheckpointState state;
  std::string config_yaml;
  // Extra files written into the step directory before its marker (a model directory's), by name.
  std::function<std::vector<std::string>(const std::string& dir)> extra;
};

// Rank 0 only: DIR/step-N written (its marker last, with the manifest: every file's size and
// xxHash64), DIR/latest renamed into place, then all but the newest `keep` complete steps pruned.
// `root` is refused when it exists and is not a DeltaShard checkpoint root (or empty). A complete
// step N already there is left as it is (a step's checkpoint is a function of the run).
// Returns the step directory.
std::string write_checkpoint(const std::string& root, const CheckpointFiles& files, int64_t keep = 2);

// What one rank contributes to a checkpoint of trainable parameters, under the names a run of its
// own gives them: a run's (Trainer) or one campaign job's.
struct TrainableState {
  std::vector<std::pair<std::string, torch::Tensor>> params;  // this rank's shards, model order
  std::map<std::string, ParamShard> shards;                     // by the same names (absent: whole)
  std::map<std::string, torch::Tensor> exp_avg, exp_avg_sq;     // AdamW moments, the params' local shapes
  int64_t step = 0, optimizer_steps = 0;
  std::optional<LossScaler> scaler;  // an fp16 base on CUDA: saved in state.json
};

// All ranks call; TP shards are gathered, rank 0 writes root/step-N with cfg's config.yaml and
// `extra`'s files. A failed write is a FileError on every rank.
void save_checkpoint(const TrainableState& s, const RunConfig& cfg, ProcessGrid& grid, const std::string& root,
                     const std::function<std::vector<std::string>(const std::string&)>& extra = {});

// The AdamW moments of s.params from a step directory (this rank's shards), each checked:
// present, floating point, the full shape, finite. With `params`, the parameters' values too,
// copied into s.params.
void read_trainable_state(const std::string& step_dir, TrainableState& s, bool params);

// All ranks call; TP shards and ZeRO shards are gathered, rank 0 writes. A write that fails
// (a full disk) is a FileError on every rank, and the previous checkpoint is left as it was.
void save_checkpoint(Trainer& trainer, const std::string& root);

// A checkpoint's trainable parameters (root or step directory, verified against its manifest) into
// `model`, each rank its slice.
// FileError naming the file and tensor for a tensor the model lacks, a shape that disagrees, an
// integer tensor or NaN/Inf.
// `verified`: `checkpoint` is a step directory open_checkpoint has already checked.
void load_trainable(Transformer& model, const RunConfig& cfg, const std::string& checkpoint, bool verified = false);
// AdamW moments and step count of a step directory into the trainer.
void load_optimizer_state(Trainer& trainer, const std::string& step_dir);

// state.json, validated: FileError naming the file and the field.
CheckpointState read_checkpoint_state(const std::string& step_dir);
// The run must match the checkpoint's method and model sizes.
void check_checkpoint_matches(const CheckpointState& state, const RunConfig& cfg, const std::string& step_dir);

}  // namespace ds
