// The run configuration: the YAML file's sections as plain structs, with `--set section.key=value`
// overrides applied before validation (values parsed as YAML). Errors name the file, line and key.
#pragma once

#include <string>
#include <vector>

#include "core/model_config.h"
#include "core/peft.h"
#include "core/token_dataset.h"

namespace ds {

struct TrainOptions {
  int64_t steps = 200;
  int64_t micro_batch = 8;
  int64_t grad_accum = 1;
  int64_t seq_len = 128;
  double lr = 3e-4;
  double min_lr_ratio = 0.1;  // cosine decays to lr × this
  int64_t warmup_steps = 20;
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double grad_clip = 1.0;  // 0 disables
  int64_t seed = 1234;
  int64_t eval_every = 50;   // 0: only at the start and the end
  int64_t eval_windows = 64; // held-out windows per evaluation (0: all)
  int threads = 0;           // intra-op threads per rank; 0: cores / ranks on this node
  std::string device = "cpu";
};

struct CheckpointConfig {
  std::string dir;  // where the final (and periodic) checkpoint goes
  int64_t every = 0;
};

struct LogConfig {
  int64_t every = 10;
  std::string jsonl;  // metrics file; empty: none
};

struct ParallelConfig {
  int tp = 1;
  double bucket_mb = 25;
  bool overlap_grad_sync = false;
  int zero = 0;
  std::string backend = "mpi";
  double timeout_s = 300;
};

struct RunConfig {
  std::string file;
  ModelConfig model;
  PeftConfig peft;
  DataConfig data;
  TrainOptions train;
  CheckpointConfig checkpoint;
  LogConfig log;
  ParallelConfig parallel;
};

// Reads `file`, applies overrides ("section.key=value"), validates everything.
RunConfig load_run_config(const std::string& file, const std::vector<std::string>& overrides);

// The resolved configuration as YAML, stored beside checkpoints.
std::string dump_run_config(const RunConfig& cfg);

}  // namespace ds
