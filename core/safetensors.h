// Safetensors files, read and written by us: 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets}, "__metadata__": {..}}, then the data, 8-byte aligned.
// Reading memory-maps the file and validates every field; writing is atomic (temp, fsync, rename).
#pragma once

#include <torch/torch.h>

#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace ds {

struct FileError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

struct SafetensorsFile {
  std::map<std::string, torch::Tensor> tensors;  // views into the mapping (copy-on-write)
  std::map<std::string, std::string> metadata;

  const torch::Tensor& at(const std::string& name, const std::string& path) const;
};

// Throws FileError naming the file (and tensor) on any malformed input.
SafetensorsFile read_safetensors(const std::string& path);
SafetensorsFile parse_safetensors(const uint8_t* data, size_t size, const std::string& path);

void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Writes `bytes` to `path` atomically: a crash leaves either the old file or the new one.
void write_file_atomic(const std::string& path, const std::string& bytes);
// A whole file's bytes; FileError naming it when it cannot be read.
std::string read_file(const std::string& path);
bool is_regular_file(const std::string& path);

}  // namespace ds
