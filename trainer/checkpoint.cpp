#include "trainer/checkpoint.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>

#include "core/json_writer.h"

namespace ds {

namespace fs = std::filesystem;

void write_checkpoint(const std::string& dir, const CheckpointFiles& f) {
  const fs::path target(dir);
  const fs::path tmp = target.string() + ".tmp";
  const fs::path old = target.string() + ".old";
  std::error_code ec;
  fs::remove_all(tmp, ec);
  if (target.has_parent_path()) fs::create_directories(target.parent_path(), ec);
  if (!fs::create_directories(tmp, ec) && ec) throw FileError(tmp.string() + ": cannot create: " + ec.message());
  write_safetensors((tmp / "trainable.safetensors").string(), f.trainable, {{"format", "pt"}});
  write_safetensors((tmp / "optimizer.safetensors").string(), f.optimizer, {{"format", "pt"}});
  write_file_atomic((tmp / "config.yaml").string(), f.config_yaml);
  if (f.extra) f.extra(tmp.string());
  Json s = Json::object();
  s["format"] = 1;
  s["step"] = f.state.step;
  s["optimizer_steps"] = f.state.optimizer_steps;
  s["dp"] = f.state.dp;
  s["tp"] = f.state.tp;
  s["method"] = f.state.method;
  write_file_atomic((tmp / "state.json").string(), s.dump(2) + "\n");
  // Swap: DIR -> DIR.old, DIR.tmp -> DIR, drop DIR.old.
  fs::remove_all(old, ec);
  if (fs::exists(target)) {
    fs::rename(target, old, ec);
    if (ec) throw FileError(dir + ": cannot move the previous checkpoint aside: " + ec.message());
  }
  fs::rename(tmp, target, ec);
  if (ec) throw FileError(dir + ": cannot move the new checkpoint in place: " + ec.message());
  fs::remove_all(old, ec);
}

std::string checkpoint_dir_to_read(const std::string& dir) {
  if (fs::exists(fs::path(dir) / "state.json")) return dir;
  if (fs::exists(fs::path(dir + ".old") / "state.json")) return dir + ".old";
  throw FileError(dir + ": not a checkpoint directory (no state.json)");
}

CheckpointState read_checkpoint_state(const std::string& dir) {
  const std::string path = dir + "/state.json";
  CheckpointState s;
  try {
    YAML::Node n = YAML::LoadFile(path);
    s.step = n["step"].as<int64_t>();
    s.optimizer_steps = n["optimizer_steps"].as<int64_t>();
    s.dp = n["dp"].as<int>();
    s.tp = n["tp"].as<int>();
    s.method = n["method"].as<std::string>();
  } catch (const YAML::Exception& e) {
    throw FileError(path + ": corrupt or incomplete checkpoint state: " + e.what());
  }
  return s;
}

}  // namespace ds
