#include "core/dir_layout.h"

#include <cstdio>

#include "core/files.h"
#include "core/json.h"

namespace ds {

std::optional<Marker> read_marker(const std::string& dir) {
  const std::string path = dir + "/" + kMarkerName;
  if (!path_exists(path)) return std::nullopt;
  const Json j = read_json_file(path);
  const JsonFields f(j, path);
  Marker m;
  const std::string kind = f.need_string("kind");
  const auto k = enum_from<DirKind>(kind);
  if (!k) f.fail("kind", "'" + kind + "' is not one of " + join_choices(enum_choices<DirKind>()));
  m.kind = *k;
  m.format_version = static_cast<int>(f.need_int("format_version"));
  if (m.format_version > kFormatVersion) {
    f.fail("format_version", std::to_string(m.format_version) + " is newer than this build reads (" +
                                 std::to_string(kFormatVersion) + ")");
  }
  if (f.has("files")) {
    for (const auto& x : f.at("files")) {
      if (!x.is_string()) f.fail("files", "expected a list of file names");
      const std::string name = x.get<std::string>();
      if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
        f.fail("files", "'" + name + "' is not a plain file name");
      }
      m.files.push_back(name);
    }
  }
  if (f.has("sizes")) {
    if (!f.at("sizes").is_object()) f.fail("sizes", "expected an object of file names");
    for (const auto& kv : f.at("sizes").items()) {
      if (!kv.value().is_number_integer() || kv.value().get<int64_t>() < 0) f.fail("sizes." + kv.key(), "expected a byte count");
      m.sizes[kv.key()] = kv.value().get<int64_t>();
    }
  }
  if (f.has("xxh64")) {
    if (!f.at("xxh64").is_object()) f.fail("xxh64", "expected an object of file names");
    for (const auto& kv : f.at("xxh64").items()) {
      if (!kv.value().is_string() || kv.value().get<std::string>().size() != 16) {
        f.fail("xxh64." + kv.key(), "expected 16 hex digits");
      }
      m.xxh64[kv.key()] = kv.value().get<std::string>();
    }
  }
  return m;
}

void write_marker(const std::string& dir, const Marker& m) {
  Json j = Json::object();
  j["kind"] = enum_name(m.kind);
  j["format_version"] = kFormatVersion;
  j["files"] = m.files;
  if (!m.sizes.empty()) j["sizes"] = m.sizes;
  if (!m.xxh64.empty()) j["xxh64"] = m.xxh64;
  write_file_atomic(dir + "/" + kMarkerName, json_pretty(j));
}

void write_marker(const std::string& dir, DirKind kind, const std::vector<std::string>& files) {
  Marker m;
  m.kind = kind;
  m.files = files;
  write_marker(dir, m);
}

std::optional<Marker> claim_output_dir(const std::string& dir, DirKind kind, const std::string& option) {
  const std::string what = option.empty() ? dir : option + " " + dir;
  if (!path_exists(dir)) {
    make_dirs(dir);
    return std::nullopt;
  }
  if (!is_directory(dir)) throw UsageError(what + ": exists and is not a directory; refusing to overwrite it");
  std::optional<Marker> m = read_marker(dir);
  if (!m) {
    // Empty but for our marker's temporary file: a crash while claiming it.
    bool empty = true;
    for (const auto& name : list_dir(dir)) {
      if (name.rfind(std::string(kMarkerName) + ".tmp.", 0) != 0) empty = false;
    }
    if (empty) return std::nullopt;
    throw UsageError(what + ": exists and was not written by DeltaShard (no " + std::string(kMarkerName) +
                     "); refusing to overwrite it: choose a new or empty directory");
  }
  if (m->kind != kind) {
    throw UsageError(what + ": holds a DeltaShard " + enum_name(m->kind) + ", not a " + enum_name(kind) +
                     "; refusing to overwrite it");
  }
  return m;
}

void clear_marked_dir(const std::string& dir, const Marker& marker) {
  remove_file(dir + "/" + kMarkerName);
  for (const auto& f : marker.files) remove_tree(dir + "/" + f);
}

std::string step_dir_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%08lld", static_cast<long long>(step));
  return buf;
}

std::optional<int64_t> step_of(const std::string& name) {
  if (name.size() < 6 || name.compare(0, 5, "step-") != 0) return std::nullopt;
  int64_t v = 0;
  for (size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    v = v * 10 + (name[i] - '0');
    if (v > (int64_t{1} << 50)) return std::nullopt;
  }
  return v;
}

std::vector<std::pair<int64_t, std::string>> complete_steps(const std::string& root) {
  std::vector<std::pair<int64_t, std::string>> out;
  for (const auto& name : list_dir(root)) {
    const auto step = step_of(name);
    const std::string dir = root + "/" + name;
    if (!step || !is_directory(dir)) continue;
    std::optional<Marker> m;
    try {
      m = read_marker(dir);
    } catch (const FileError&) {
      continue;  // a marker cut short by a crash: incomplete
    }
    if (m && m->kind == DirKind::Checkpoint) out.emplace_back(*step, dir);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string resolve_checkpoint(const std::string& dir) {
  if (!is_directory(dir)) throw FileError(dir + ": no such checkpoint directory");
  const std::optional<Marker> m = read_marker(dir);
  if (m && m->kind == DirKind::Checkpoint) return dir;
  if (m && m->kind != DirKind::Checkpoints) {
    throw FileError(dir + ": holds a DeltaShard " + std::string(enum_name(m->kind)) + ", not a checkpoint");
  }
  const auto steps = complete_steps(dir);
  if (steps.empty()) {
    if (m) throw FileError(dir + ": no complete checkpoint in it (no step-* directory with its marker)");
    throw FileError(dir + ": not a checkpoint directory (no " + std::string(kMarkerName) + ")");
  }
  return steps.back().second;
}

std::string resolve_model_dir(const std::string& path) {
  if (!is_directory(path)) throw FileError(path + ": no such model directory");
  std::optional<Marker> m;
  try {
    m = read_marker(path);
  } catch (const FileError&) {
    m = std::nullopt;
  }
  if (m && (m->kind == DirKind::Checkpoints || m->kind == DirKind::Checkpoint)) {
    const std::string step = resolve_checkpoint(path);
    if (!is_regular_file(step + "/config.json")) {
      throw FileError(path + ": a checkpoint of trainable parameters only, not a model (only peft.method full "
                             "checkpoints hold the whole model; merge a LoRA checkpoint first)");
    }
    return step;
  }
  return path;
}

}  // namespace ds
