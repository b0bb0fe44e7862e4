// Files as DeltaShard reads and writes them: whole reads, atomic writes (temp, fsync, rename), and
// the renames and removals every save goes through, so the crash tests' fault hook (core/fault.h)
// can stop the process at each of them. Errors are FileErrors naming the path.
#pragma once

#include <string>
#include <vector>

#include "core/errors.h"

namespace ds {

// A whole file's bytes; FileError naming it when it cannot be read (missing, a directory, a FIFO).
std::string read_file(const std::string& path);
bool is_regular_file(const std::string& path);
bool is_directory(const std::string& path);
bool path_exists(const std::string& path);  // anything at all, a dangling link included
// Writes `bytes` to `path` atomically: a crash leaves either the old file or the new one. Fault
// point "write.enospc" makes a write fail as a full disk would.
void write_file_atomic(const std::string& path, const std::string& bytes);
// rename(2), fault point "rename".
void rename_path(const std::string& from, const std::string& to);
// unlink(2) of a file, fault point "unlink"; a missing file is not an error.
void remove_file(const std::string& path);
// A directory and everything in it (files through remove_file); a missing one is not an error.
void remove_tree(const std::string& path);
// mkdir -p.
void make_dirs(const std::string& path);
// The names in a directory (not . or ..), sorted.
std::vector<std::string> list_dir(const std::string& dir);
// Absolute and normalised, without resolving links; "" stays "".
std::string absolute_path(const std::string& path);

}  // namespace ds
