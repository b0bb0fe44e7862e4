#include "core/files.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/fault.h"

namespace ds {

namespace fs = std::filesystem;

std::string read_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw FileError(path + ": cannot open: " + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) throw FileError(path + ": is a directory, not a file");
  if (!S_ISREG(st.st_mode)) throw FileError(path + ": not a regular file (a FIFO, socket or device)");
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw FileError(path + ": cannot open: " + std::strerror(errno));
  std::string out;
  out.resize(static_cast<size_t>(st.st_size));
  size_t off = 0;
  while (off < out.size()) {
    const ssize_t r = ::read(fd, out.data() + off, out.size() - off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      const std::string err = r < 0 ? std::strerror(errno) : "file shrank while reading";
      ::close(fd);
      throw FileError(path + ": read failed: " + err);
    }
    off += static_cast<size_t>(r);
  }
  ::close(fd);
  return out;
}

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool path_exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw FileError(tmp + ": cannot create: " + std::strerror(errno));
  auto fail = [&](const std::string& what, int err) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw FileError(path + ": " + what + ": " + std::strerror(err));
  };
  if (fault_fires("write.enospc")) fail("write failed", ENOSPC);
  size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t w = ::write(fd, bytes.data() + off, bytes.size() - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("write failed", errno);
    }
    off += static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0) fail("fsync failed", errno);
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw FileError(path + ": close failed: " + std::strerror(errno));
  }
  try {
    rename_path(tmp, path);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
}

void rename_path(const std::string& from, const std::string& to) {
  fault_point("rename");
  if (std::rename(from.c_str(), to.c_str()) != 0) {
    throw FileError(to + ": cannot rename " + from + " to it: " + std::strerror(errno));
  }
}

void remove_file(const std::string& path) {
  fault_point("unlink");
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    throw FileError(path + ": cannot remove: " + std::strerror(errno));
  }
}

void remove_tree(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;
  if (!S_ISDIR(st.st_mode)) {
    remove_file(path);
    return;
  }
  for (const auto& name : list_dir(path)) remove_tree(path + "/" + name);
  if (::rmdir(path.c_str()) != 0 && errno != ENOENT) {
    throw FileError(path + ": cannot remove: " + std::strerror(errno));
  }
}

void make_dirs(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec || !is_directory(path)) {
    throw FileError(path + ": cannot create the directory: " + (ec ? ec.message() : "a file is in the way"));
  }
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) throw FileError(dir + ": cannot list: " + std::strerror(errno));
  while (const dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::string absolute_path(const std::string& path) {
  if (path.empty()) return path;
  fs::path p = fs::absolute(fs::path(path)).lexically_normal();
  // "dir/" and "dir" are one path: no trailing separator (except the root's own).
  if (!p.has_filename() && p != p.root_path()) p = p.parent_path();
  return p.string();
}

}  // namespace ds
