// A checkpoint's manifest: the size and xxHash64 of every file in a step directory, kept in its
// marker (core/dir_layout.h) and checked before anything is loaded, and the choice of checkpoint
// that `train --resume auto` continues from.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/dir_layout.h"

namespace ds {

// xxHash64 (seed 0) of a whole file as 16 lowercase hex digits; FileError naming it.
std::string file_xxh64(const std::string& path);

// Fills `marker.sizes` and `marker.xxh64` for every regular file it lists in `dir`.
void add_manifest(const std::string& dir, Marker& marker);

// FileError naming the first file of the step directory that is missing, truncated or altered
// against its manifest. A marker without a manifest (written before manifests) passes.
void verify_checkpoint(const std::string& step_dir);

// resolve_checkpoint, then verify_checkpoint: what every reader of a checkpoint calls.
std::string open_checkpoint(const std::string& dir);

// `--resume auto` on checkpoint root `root`: the newest complete step directory that verifies;
// nullopt when the root holds no complete checkpoint (a fresh start). Each newer one that fails is
// reported through `warn` with its error and the one used instead. Checkpoints that all fail: a
// FileError naming the root and the newest one's error, never a fresh start.
std::optional<std::string> resume_auto(const std::string& root, const std::function<void(const std::string&)>& warn);

}  // namespace ds
