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

// One tensor of a file being written: what the header says before any data is written.
struct SafetensorsEntry {
  std::string name;
  torch::ScalarType dtype = torch::kFloat;
  std::vector<int64_t> shape;
  int64_t nbytes() const;
};

// A safetensors file written tensor by tensor, so that only the tensor being written need exist:
// the header is made from the entries planned up front, then each add() appends the next entry's
// data, and finish() fsyncs and renames the temporary file into place (atomic, like
// write_file_atomic, with the same fault points). Destroyed unfinished, it removes the temporary
// file. A tensor whose dtype or shape differs from its entry is a std::invalid_argument.
class SafetensorsWriter {
 public:
  SafetensorsWriter(std::string path, std::vector<SafetensorsEntry> entries,
                    const std::map<std::string, std::string>& metadata = {});
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  void add(const torch::Tensor& tensor);  // the next entry's values (any device, any strides)
  void finish();
  int64_t data_bytes() const { return data_bytes_; }

 private:
  void write_bytes(const void* data, size_t n);
  [[noreturn]] void fail(const std::string& what, int err);

  std::string path_, tmp_;
  std::vector<SafetensorsEntry> entries_;
  size_t next_ = 0;
  int fd_ = -1;
  int64_t data_bytes_ = 0;
};

// The whole file at once: a SafetensorsWriter over `tensors`.
void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace ds
