#include "core/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>

#include "core/fault.h"
#include "core/json.h"

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

// Live file mappings, so that release_mapped_pages touches nothing else.
std::mutex g_maps_mu;
std::map<uintptr_t, size_t> g_maps;  // start -> size

struct Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr && addr != MAP_FAILED) {
      {
        std::lock_guard<std::mutex> lock(g_maps_mu);
        g_maps.erase(reinterpret_cast<uintptr_t>(addr));
      }
      munmap(addr, size);
    }
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
  Json root;
  try {
    root = Json::parse(header);
  } catch (const Json::parse_error& e) {
    bad(path, "header is not valid JSON at byte " + std::to_string(e.byte));
  }
  if (!root.is_object()) bad(path, "header is not a JSON object");
  const uint8_t* base = data + 8 + n;
  const size_t data_size = size - 8 - n;

  SafetensorsFile out;
  std::vector<std::pair<uint64_t, std::pair<uint64_t, std::string>>> ranges;
  for (const auto& kv : root.items()) {
    const std::string name = kv.key();
    const Json& e = kv.value();
    if (name == "__metadata__") {
      if (!e.is_object()) bad(path, "__metadata__ is not an object");
      for (const auto& m : e.items()) out.metadata[m.key()] = m.value().is_string() ? m.value().get<std::string>() : "";
      continue;
    }
    const std::string where = "tensor '" + name + "': ";
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets")) {
      bad(path, where + "needs dtype, shape and data_offsets");
    }
    const Json& jd = e["dtype"];
    const DtypeInfo* dt = jd.is_string() ? dtype_by_name(jd.get<std::string>()) : nullptr;
    if (!dt) bad(path, where + "unknown dtype '" + (jd.is_string() ? jd.get<std::string>() : "?") + "'");
    std::vector<int64_t> shape;
    uint64_t numel = 1;
    if (!e["shape"].is_array()) bad(path, where + "shape is not a list");
    for (const auto& d : e["shape"]) {
      if (!d.is_number_integer()) bad(path, where + "shape entries must be integers");
      const int64_t v = d.get<int64_t>();
      if (v < 0 || v > (int64_t{1} << 48)) bad(path, where + "shape entry " + std::to_string(v) + " out of range");
      shape.push_back(v);
      if (v != 0 && numel > (uint64_t{1} << 62) / static_cast<uint64_t>(v)) bad(path, where + "shape too large");
      numel *= static_cast<uint64_t>(v);
    }
    const Json& off = e["data_offsets"];
    if (!off.is_array() || off.size() != 2) bad(path, where + "data_offsets must be [begin, end]");
    if (!off[0].is_number_integer() || !off[1].is_number_integer()) bad(path, where + "data_offsets must be integers");
    if (off[0].get<int64_t>() < 0 || off[1].get<int64_t>() < 0) bad(path, where + "negative data_offsets");
    const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
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
  {
    std::lock_guard<std::mutex> lock(g_maps_mu);
    g_maps[reinterpret_cast<uintptr_t>(map->addr)] = map->size;
  }
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

void release_mapped_pages(const torch::Tensor& view) {
  if (!view.defined() || !view.has_storage()) return;
  const auto lo = reinterpret_cast<uintptr_t>(view.storage().data());
  const uintptr_t hi = lo + view.storage().nbytes();
  std::lock_guard<std::mutex> lock(g_maps_mu);
  auto it = g_maps.upper_bound(lo);
  if (it == g_maps.begin()) return;
  --it;
  if (hi > it->first + it->second) return;  // not inside this mapping
  // Whole pages inside [lo, hi): the pages it shares with a neighbour are read again if needed.
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t a = (lo + page - 1) / page * page, b = hi / page * page;
  if (b > a) madvise(reinterpret_cast<void*>(a), b - a, MADV_DONTNEED);
}

int64_t SafetensorsEntry::nbytes() const {
  int64_t n = static_cast<int64_t>(dtype_by_type(dtype).size);
  for (int64_t d : shape) n *= d;
  return n;
}

SafetensorsWriter::SafetensorsWriter(std::string path, std::vector<SafetensorsEntry> entries,
                                     const std::map<std::string, std::string>& metadata)
    : path_(std::move(path)), entries_(std::move(entries)) {
  Json header = Json::object();
  if (!metadata.empty()) {
    Json m = Json::object();
    for (const auto& kv : metadata) m[kv.first] = kv.second;
    header["__metadata__"] = m;
  }
  uint64_t offset = 0;
  for (const auto& e : entries_) {
    if (e.name == "__metadata__" || header.contains(e.name)) {
      throw std::invalid_argument("safetensors: tensor name '" + e.name + "' used twice (or reserved)");
    }
    Json j = Json::object();
    j["dtype"] = dtype_by_type(e.dtype).name;
    j["shape"] = e.shape;
    const auto bytes = static_cast<uint64_t>(e.nbytes());
    j["data_offsets"] = {offset, offset + bytes};
    header[e.name] = j;
    offset += bytes;
  }
  std::string h = json_line(header);
  while ((8 + h.size()) % 8 != 0) h += ' ';  // data starts 8-byte aligned
  std::string head;
  const uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) head += static_cast<char>((n >> (8 * i)) & 0xff);
  head += h;

  tmp_ = path_ + ".tmp." + std::to_string(::getpid());
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd_ < 0) throw FileError(tmp_ + ": cannot create: " + std::strerror(errno));
  if (fault_fires("write.enospc")) fail("write failed", ENOSPC);
  write_bytes(head.data(), head.size());
}

SafetensorsWriter::~SafetensorsWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void SafetensorsWriter::fail(const std::string& what, int err) {
  ::close(fd_);
  fd_ = -1;
  ::unlink(tmp_.c_str());
  throw FileError(path_ + ": " + what + ": " + std::strerror(err));
}

void SafetensorsWriter::write_bytes(const void* data, size_t n) {
  const auto* p = static_cast<const char*>(data);
  size_t off = 0;
  while (off < n) {
    const ssize_t w = ::write(fd_, p + off, n - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("write failed", errno);
    }
    off += static_cast<size_t>(w);
  }
}

void SafetensorsWriter::add(const torch::Tensor& tensor) {
  if (fd_ < 0) throw std::logic_error(path_ + ": add() after finish() or a failed write");
  if (next_ >= entries_.size()) {
    throw std::invalid_argument(path_ + ": more tensors than the " + std::to_string(entries_.size()) + " planned");
  }
  const SafetensorsEntry& e = entries_[next_];
  if (tensor.scalar_type() != e.dtype || tensor.sizes().vec() != e.shape) {
    std::ostringstream os;
    os << path_ << ": tensor '" << e.name << "' is " << tensor.scalar_type() << " " << tensor.sizes()
       << ", the header says " << e.dtype << " " << torch::IntArrayRef(e.shape);
    throw std::invalid_argument(os.str());
  }
  const torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
  write_bytes(t.data_ptr(), static_cast<size_t>(e.nbytes()));
  data_bytes_ += e.nbytes();
  ++next_;
}

void SafetensorsWriter::finish() {
  if (fd_ < 0) throw std::logic_error(path_ + ": finish() twice or after a failed write");
  if (next_ != entries_.size()) {
    throw std::logic_error(path_ + ": " + std::to_string(next_) + " of " + std::to_string(entries_.size()) +
                           " planned tensors written");
  }
  if (::fsync(fd_) != 0) fail("fsync failed", errno);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    ::unlink(tmp_.c_str());
    throw FileError(path_ + ": close failed: " + std::strerror(errno));
  }
  try {
    rename_path(tmp_, path_);
  } catch (...) {
    ::unlink(tmp_.c_str());
    throw;
  }
}

void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<SafetensorsEntry> entries;
  for (const auto& [name, t] : tensors) entries.push_back({name, t.scalar_type(), t.sizes().vec()});
  SafetensorsWriter w(path, std::move(entries), metadata);
  for (const auto& nt : tensors) w.add(nt.second);
  w.finish();
}

}  // namespace ds
