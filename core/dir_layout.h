// The directories DeltaShard writes and how it finds them again. Every directory it creates holds a
// marker, deltashard.json {kind, format_version, files}, written last: a directory without one is
// incomplete or not ours. An output path that exists and is neither empty nor ours (of the same
// kind) is refused, never overwritten. Checkpoints live in one root per run:
//   DIR/deltashard.json            kind "checkpoints"
//   DIR/step-00000120/             one per save, its marker (kind "checkpoint") written last
//   DIR/latest                     "step-00000120", renamed into place after the step is complete
// Readers take DIR (its newest complete step) or a step directory.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/config_fields.h"

namespace ds {

enum class DirKind { Checkpoints, Checkpoint, Model, PeftAdapter };
DS_ENUM_NAMES(DirKind,
              {DirKind::Checkpoints, "checkpoints"},
              {DirKind::Checkpoint, "checkpoint"},
              {DirKind::Model, "model"},
              {DirKind::PeftAdapter, "peft_adapter"});

constexpr int kFormatVersion = 1;
constexpr const char* kMarkerName = "deltashard.json";

struct Marker {
  DirKind kind = DirKind::Model;
  int format_version = kFormatVersion;
  std::vector<std::string> files;  // what the directory holds besides the marker
  // The manifest of a checkpoint: each file's size and xxHash64 (16 hex digits), by name, so a
  // reader can tell a truncated or altered file from a good one (trainer/manifest.h).
  std::map<std::string, int64_t> sizes;
  std::map<std::string, std::string> xxh64;
};

// nullopt when `dir` has no marker; FileError when it has one that cannot be read.
std::optional<Marker> read_marker(const std::string& dir);
void write_marker(const std::string& dir, DirKind kind, const std::vector<std::string>& files = {});
void write_marker(const std::string& dir, const Marker& marker);

// Makes `dir` ready to receive an output of `kind`: creates it (and its parents) when absent,
// takes it when it is an empty directory or carries our marker of the same kind; otherwise a
// UsageError naming `option` and the path ("refusing to overwrite"). Returns the existing marker.
std::optional<Marker> claim_output_dir(const std::string& dir, DirKind kind, const std::string& option);

// Replacing what we wrote: removes the marker first, then the files it lists, so a crash in
// between leaves a directory that readers see as incomplete.
void clear_marked_dir(const std::string& dir, const Marker& marker);

std::string step_dir_name(int64_t step);
// The step of "step-00000120", or nullopt for any other name.
std::optional<int64_t> step_of(const std::string& name);

// Complete step directories of a checkpoint root, oldest first: (step, path).
std::vector<std::pair<int64_t, std::string>> complete_steps(const std::string& root);
// A checkpoint root (its newest complete step) or a step directory -> the step directory to read.
// FileError naming `dir` when there is none.
std::string resolve_checkpoint(const std::string& dir);
// model.path and --model: a model directory, or a full fine-tuning checkpoint (root or step),
// which is also a model directory. FileError when it is neither.
std::string resolve_model_dir(const std::string& path);

}  // namespace ds
