#include "core/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>

#include "core/json_writer.h"

namespace ds {

namespace {

constexpr uint64_t kMaxHeader = 100ull * 1000 * 1000;

struct DtypeInfo {
  const char* name;
  torch::ScalarType type;
  size_t size;
};

const DtypeInfo kDtypes[] = {
    {"F64", torch::kFloat64, 8}, {"F32", torch::kFloat32, 4}, {"F16", torch::kFloat16, 2},
    {"BF16", torch::kBFloat16, 2}, {"I64", torch::kInt64, 8}, {"I32", torch::kInt32, 4},
    {"I16", torch::kInt16, 2},   {"I8", torch::kInt8, 1},    {"U8", torch::kUInt8, 1},
    {"BOOL", torch::kBool, 1},
};

const DtypeInfo* dtype_by_name(const std::string& n) {
  for (const auto& d : kDtypes) {
    if (n == d.name) return &d;
  }
  return nullptr;
}

const DtypeInfo& dtype_by_type(torch::ScalarType t) {
  for (const auto& d : kDtypes) {
    if (t == d.type) return d;
  }
  throw std::invalid_argument(std::string("safetensors: unsupported dtype ") + c10::toString(t));
}

struct Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr && addr != MAP_FAILED) munmap(addr, size);
  }
};

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw FileError(path + ": " + what);
}

}  // namespace

const torch::Tensor& SafetensorsFile::at(const std::string& name, const std::string& path) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) throw FileError(path + ": missing tensor '" + name + "'");
  return it->second;
}

SafetensorsFile parse_safetensors(const uint8_t* data, size_t size, const std::string& path) {
  if (size < 8) bad(path, "truncated: " + std::to_string(size) + " bytes, no header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
  if (n > kMaxHeader) bad(path, "header of " + std::to_string(n) + " bytes exceeds the 100 MB limit");
  if (n > size - 8) bad(path, "truncated: header says " + std::to_string(n) + " bytes, file has " +
                                  std::to_string(size - 8) + " after the length");
  const std::string header(reinterpret_cast<const char*>(data + 8), n);
  YAML::Node root;
  try {
    root = YAML::Load(header);
  } catch (const YAML::Exception& e) {
    bad(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!root.IsMap()) bad(path, "header is not a JSON object");
  const uint8_t* base = data + 8 + n;
  const size_t data_size = size - 8 - n;

  SafetensorsFile out;
  std::vector<std::pair<uint64_t, std::pair<uint64_t, std::string>>> ranges;
  for (const auto& kv : root) {
    const std::string name = kv.first.Scalar();
    const YAML::Node& e = kv.second;
    if (name == "__metadata__") {
      if (!e.IsMap()) bad(path, "__metadata__ is not an object");
      for (const auto& m : e) out.metadata[m.first.Scalar()] = m.second.IsScalar() ? m.second.Scalar() : "";
      continue;
    }
    const std::string where = "tensor '" + name + "': ";
    if (!e.IsMap() || !e["dtype"] || !e["shape"] || !e["data_offsets"]) {
      bad(path, where + "needs dtype, shape and data_offsets");
    }
    const DtypeInfo* dt = e["dtype"].IsScalar() ? dtype_by_name(e["dtype"].Scalar()) : nullptr;
    if (!dt) bad(path, where + "unknown dtype '" + (e["dtype"].IsScalar() ? e["dtype"].Scalar() : "?") + "'");
    std::vector<int64_t> shape;
    uint64_t numel = 1;
    try {
      if (!e["shape"].IsSequence()) bad(path, where + "shape is not a list");
      for (const auto& d : e["shape"]) {
        const int64_t v = d.as<int64_t>();
        if (v < 0 || v > (int64_t{1} << 48)) bad(path, where + "shape entry " + std::to_string(v) + " out of range");
        shape.push_back(v);
        if (v != 0 && numel > (uint64_t{1} << 62) / static_cast<uint64_t>(v)) bad(path, where + "shape too large");
        numel *= static_cast<uint64_t>(v);
      }
    } catch (const YAML::Exception&) {
      bad(path, where + "shape entries must be integers");
    }
    if (!e["data_offsets"].IsSequence() || e["data_offsets"].size() != 2) {
      bad(path, where + "data_offsets must be [begin, end]");
    }
    uint64_t begin = 0, end = 0;
    try {
      const int64_t b = e["data_offsets"][0].as<int64_t>(), en = e["data_offsets"][1].as<int64_t>();
      if (b < 0 || en < 0) bad(path, where + "negative data_offsets");
      begin = static_cast<uint64_t>(b);
      end = static_cast<uint64_t>(en);
    } catch (const YAML::Exception&) {
      bad(path, where + "data_offsets must be integers");
    }
    if (begin > end || end > data_size) {
      bad(path, where + "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                    ") out of range of " + std::to_string(data_size) + " data bytes");
    }
    if (end - begin != numel * dt->size) {
      bad(path, where + "shape needs " + std::to_string(numel * dt->size) + " bytes but data_offsets span " +
                    std::to_string(end - begin));
    }
    ranges.push_back({begin, {end, name}});
    torch::Tensor t;
    const uint8_t* ptr = base + begin;
    if (reinterpret_cast<uintptr_t>(ptr) % dt->size == 0) {
      t = torch::from_blob(const_cast<uint8_t*>(ptr), shape, torch::TensorOptions().dtype(dt->type));
    } else {  // misaligned for its type: copy into aligned memory
      t = torch::empty(shape, torch::TensorOptions().dtype(dt->type));
      std::memcpy(t.data_ptr(), ptr, end - begin);
    }
    out.tensors[name] = t;
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first < ranges[i - 1].second.first) {
      bad(path, "tensors '" + ranges[i - 1].second.second + "' and '" + ranges[i].second.second +
                    "' overlap in the data section");
    }
  }
  return out;
}

SafetensorsFile read_safetensors(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw FileError(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    throw FileError(path + ": cannot stat: " + std::strerror(errno));
  }
  auto map = std::make_shared<Mapping>();
  map->size = static_cast<size_t>(st.st_size);
  if (map->size == 0) {
    ::close(fd);
    throw FileError(path + ": empty file");
  }
  // Private and writable: tensors viewing the file can be modified in place without touching it.
  map->addr = mmap(nullptr, map->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map->addr == MAP_FAILED) throw FileError(path + ": cannot map: " + std::strerror(errno));
  SafetensorsFile f = parse_safetensors(static_cast<const uint8_t*>(map->addr), map->size, path);
  // Each tensor keeps the mapping alive; tensors are re-wrapped with a deleter holding it.
  for (auto& kv : f.tensors) {
    torch::Tensor& t = kv.second;
    const auto* lo = static_cast<const uint8_t*>(map->addr);
    const auto* p = static_cast<const uint8_t*>(t.data_ptr());
    if (p >= lo && p < lo + map->size) {
      auto keep = map;
      t = torch::from_blob(t.data_ptr(), t.sizes(), [keep](void*) {}, t.options());
    }
  }
  return f;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FileError(path + ": cannot open");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

bool is_regular_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw FileError(tmp + ": cannot create: " + std::strerror(errno));
  size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t w = ::write(fd, bytes.data() + off, bytes.size() - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      const std::string err = std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      throw FileError(tmp + ": write failed: " + err);
    }
    off += static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw FileError(tmp + ": fsync/close failed: " + std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    throw FileError(path + ": rename failed: " + std::strerror(errno));
  }
}

void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata) {
  Json header = Json::object();
  if (!metadata.empty()) {
    Json m = Json::object();
    for (const auto& kv : metadata) m[kv.first] = kv.second;
    header["__metadata__"] = m;
  }
  std::vector<torch::Tensor> cpu;
  uint64_t offset = 0;
  for (const auto& kv : tensors) {
    torch::Tensor t = kv.second.detach().to(torch::kCPU).contiguous();
    const DtypeInfo& dt = dtype_by_type(t.scalar_type());
    Json e = Json::object();
    e["dtype"] = dt.name;
    Json shape = Json::array();
    for (int64_t d : t.sizes()) shape.push(d);
    e["shape"] = shape;
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * dt.size;
    Json offs = Json::array();
    offs.push(static_cast<int64_t>(offset));
    offs.push(static_cast<int64_t>(offset + bytes));
    e["data_offsets"] = offs;
    header[kv.first] = e;
    offset += bytes;
    cpu.push_back(t);
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h += ' ';  // data starts 8-byte aligned
  std::string out;
  out.reserve(8 + h.size() + offset);
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out += static_cast<char>((n >> (8 * i)) & 0xff);
  out += h;
  for (const auto& t : cpu) out.append(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  write_file_atomic(path, out);
}

}  // namespace ds
