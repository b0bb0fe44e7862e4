// Checkpoint directories: trainable.safetensors (the trainable parameters, whole, by parameter
// name), optimizer.safetensors (AdamW moments by parameter name, and the RNG state), state.json
// and config.yaml. The directory is replaced atomically: written as DIR.tmp, then swapped in by
// renames, so a crash leaves the previous checkpoint (as DIR, or DIR.old mid-swap) usable.
#pragma once

#include <string>

#include "core/safetensors.h"

namespace ds {

struct CheckpointState {
  int64_t step = 0;
  int64_t optimizer_steps = 0;
  int dp = 1, tp = 1;
  std::string method;
};

struct CheckpointFiles {
  NamedTensors trainable;
  NamedTensors optimizer;
  CheckpointState state;
  std::string config_yaml;
  // Optional extra files written into the same directory (e.g. a model directory's files).
  std::function<void(const std::string& dir)> extra;
};

void write_checkpoint(const std::string& dir, const CheckpointFiles& files);
// The directory to read: DIR, or DIR.old when a swap was interrupted. Throws FileError.
std::string checkpoint_dir_to_read(const std::string& dir);
CheckpointState read_checkpoint_state(const std::string& dir);

}  // namespace ds
