#include "trainer/manifest.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "core/files.h"

namespace ds {

std::string file_xxh64(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw FileError(path + ": cannot open: " + std::strerror(errno));
  std::unique_ptr<XXH64_state_t, XXH_errorcode (*)(XXH64_state_t*)> st(XXH64_createState(), XXH64_freeState);
  XXH64_reset(st.get(), 0);
  std::vector<char> buf(size_t{1} << 20);
  for (;;) {
    const ssize_t r = ::read(fd, buf.data(), buf.size());
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      const int err = errno;
      ::close(fd);
      throw FileError(path + ": read failed: " + std::strerror(err));
    }
    if (r == 0) break;
    XXH64_update(st.get(), buf.data(), static_cast<size_t>(r));
  }
  ::close(fd);
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(XXH64_digest(st.get())));
  return hex;
}

namespace {
int64_t file_size(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return -1;
  return static_cast<int64_t>(st.st_size);
}
}  // namespace

void add_manifest(const std::string& dir, Marker& m) {
  for (const auto& name : m.files) {
    const std::string path = dir + "/" + name;
    if (!is_regular_file(path)) continue;  // a directory of a model layout: its files are not hashed
    m.sizes[name] = file_size(path);
    m.xxh64[name] = file_xxh64(path);
  }
}

void verify_checkpoint(const std::string& dir) {
  const std::optional<Marker> m = read_marker(dir);
  if (!m) throw FileError(dir + ": not a complete checkpoint (no " + std::string(kMarkerName) + ")");
  const std::string manifest = " than the checkpoint's manifest (" + dir + "/" + kMarkerName + ") records";
  for (const auto& name : m->files) {
    const std::string path = dir + "/" + name;
    auto h = m->xxh64.find(name);
    if (h == m->xxh64.end()) continue;
    if (!is_regular_file(path)) throw FileError(path + ": missing, but listed in the checkpoint's manifest");
    auto sz = m->sizes.find(name);
    const int64_t have = file_size(path);
    if (sz != m->sizes.end() && have != sz->second) {
      throw FileError(path + ": " + (have < sz->second ? "truncated" : "altered") + ": " + std::to_string(have) +
                      " bytes, " + std::to_string(sz->second) + " recorded in the checkpoint's manifest");
    }
    const std::string got = file_xxh64(path);
    if (got != h->second) {
      throw FileError(path + ": altered: xxh64 " + got + ", " + h->second + " recorded in the checkpoint's manifest");
    }
  }
}

std::string open_checkpoint(const std::string& dir) {
  const std::string step = resolve_checkpoint(dir);
  verify_checkpoint(step);
  return step;
}

std::optional<std::string> resume_auto(const std::string& root, const std::function<void(const std::string&)>& warn) {
  if (!is_directory(root)) return std::nullopt;
  const auto steps = complete_steps(root);
  if (steps.empty()) return std::nullopt;
  std::string newest_error;
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    try {
      verify_checkpoint(it->second);
    } catch (const FileError& e) {
      if (newest_error.empty()) newest_error = e.what();
      const auto older = std::next(it);
      if (older != steps.rend()) {
        warn(std::string(e.what()) + "; falling back to the previous complete checkpoint " + older->second);
      }
      continue;
    }
    return it->second;
  }
  throw FileError(root + ": --resume auto: " + std::to_string(steps.size()) +
                  " complete checkpoint(s), none valid (newest: " + newest_error + "); refusing to start fresh");
}

}  // namespace ds
