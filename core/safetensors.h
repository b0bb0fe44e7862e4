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

#include "core/errors.h"
#include "core/files.h"

namespace ds {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

struct SafetensorsFile {
  std::map<std::string, torch::Tensor> tensors;  // views into the mapping (copy-on-write)
  std::map<std::string, std::string> metadata;

  const torch::Tensor& at(const std::string& name, const std::string& path) const;
};

// Throws FileError naming the file (and tensor) on any malformed input.
SafetensorsFile read_safetensors(const std::string& path);
SafetensorsFile parse_safetensors(const uint8_t* data, size_t size, const std::string& path);

// Drops the pages of the file range `view` reads (a tensor of read_safetensors, or a view of one)
// from this process's resident memory once it has been copied; the mapping stays valid and pages
// are read again if touched. A no-op for tensors that do not live in a file mapping.
void release_mapped_pages(const torch::Tensor& view);

void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace ds
