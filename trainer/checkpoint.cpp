#include "trainer/checkpoint.h"

#include <cmath>
#include <set>

#include "core/dir_layout.h"
#include "core/files.h"
#include "core/json.h"
#include "core/model_io.h"
#include "dist/tp_gather.h"
#include "trainer/manifest.h"
#include "trainer/trainer.h"

namespace ds {

namespace {

Json state_json(const CheckpointState& s) {
  Json j = Json::object();
  j["format"] = kFormatVersion;
  j["step"] = s.step;
  j["optimizer_steps"] = s.optimizer_steps;
  j["dp"] = s.dp;
  j["tp"] = s.tp;
  j["method"] = enum_name(s.method);
  j["model"] = s.model;
  if (s.scaler) {
    j["loss_scale"] = {{"scale", s.scaler->scale}, {"good_steps", s.scaler->good_steps}, {"skips", s.scaler->skips}};
  }
  return j;
}

void write_latest(const std::string& root, const std::string& step_name) {
  write_file_atomic(root + "/latest", step_name + "\n");
}

// Removes incomplete step directories and all but the newest kept complete ones; marker first.
void prune(const std::string& root, const std::string& keep_dir, int64_t n_keep) {
  const auto complete = complete_steps(root);
  std::set<std::string> keep{keep_dir};
  const size_t n = static_cast<size_t>(std::max<int64_t>(1, n_keep));
  for (size_t i = complete.size() > n ? complete.size() - n : 0; i < complete.size(); ++i) {
    keep.insert(complete[i].second);
  }
  for (const auto& name : list_dir(root)) {
    const std::string dir = root + "/" + name;
    if (!step_of(name) || !is_directory(dir) || keep.count(dir)) continue;
    remove_file(dir + "/" + kMarkerName);
    remove_tree(dir);
  }
}

}  // namespace

std::string write_checkpoint(const std::string& root, const CheckpointFiles& f, int64_t keep) {
  if (!claim_output_dir(root, DirKind::Checkpoints, "checkpoint.dir")) write_marker(root, DirKind::Checkpoints);
  const std::string name = step_dir_name(f.state.step);
  const std::string dir = root + "/" + name;
  for (const auto& [step, d] : complete_steps(root)) {
    if (d == dir) {  // already saved at this step
      write_latest(root, name);
      return dir;
    }
  }
  remove_tree(dir);  // an incomplete leftover of a crash: ours, inside our root
  make_dirs(dir);
  std::vector<std::string> files{"trainable.safetensors", "optimizer.safetensors", "config.yaml", "state.json"};
  write_safetensors(dir + "/trainable.safetensors", f.trainable, {{"format", "pt"}});
  write_safetensors(dir + "/optimizer.safetensors", f.optimizer, {{"format", "pt"}});
  write_file_atomic(dir + "/config.yaml", f.config_yaml);
  if (f.extra) {
    for (const auto& x : f.extra(dir)) files.push_back(x);
  }
  write_file_atomic(dir + "/state.json", json_pretty(state_json(f.state)));
  Marker marker;
  marker.kind = DirKind::Checkpoint;
  marker.files = files;
  add_manifest(dir, marker);
  write_marker(dir, marker);
  write_latest(root, name);
  prune(root, dir, keep);
  return dir;
}

namespace {
NamedTensors detached(const std::vector<std::pair<std::string, torch::Tensor>>& v) {
  NamedTensors out;
  for (const auto& [n, t] : v) out.emplace_back(n, t.detach());
  return out;
}
}  // namespace

void save_checkpoint(Trainer& t, const std::string& root) {
  ProcessGrid& grid = t.grid();
  const RunConfig& cfg = t.config();
  TrainableState s;
  s.params = t.trainable();
  s.shards = collect_param_shards(*t.model());
  s.exp_avg = t.grad_sync().unflatten(t.optimizer().m);
  s.exp_avg_sq = t.grad_sync().unflatten(t.optimizer().v);
  s.step = t.step_index();
  s.optimizer_steps = t.optimizer().steps();
  if (t.scaler().enabled) s.scaler = t.scaler();
  std::function<std::vector<std::string>(const std::string&)> extra;
  if (cfg.peft.method == PeftMethod::Full) {
    // A fully fine-tuned checkpoint is also a model directory that model.path can load.
    const NamedTensors base = gather_tp(base_tensors(t.model()), s.shards, *grid.tp_group, "checkpoint.gather_base");
    const ModelConfig mc = cfg.model;
    extra = [base, mc](const std::string& d) { return write_model_files(d, mc, base, 0, mc.path); };
  }
  save_checkpoint(s, cfg, grid, root, extra);
}

void save_checkpoint(const TrainableState& s, const RunConfig& cfg, ProcessGrid& grid, const std::string& root,
                     const std::function<std::vector<std::string>(const std::string&)>& extra) {
  CheckpointFiles f;
  f.trainable = gather_tp(detached(s.params), s.shards, *grid.tp_group, "checkpoint.gather_params");
  NamedTensors moments;
  for (const auto& [n, p] : s.params) {
    moments.emplace_back("exp_avg." + n, s.exp_avg.at(n));
    moments.emplace_back("exp_avg_sq." + n, s.exp_avg_sq.at(n));
  }
  std::map<std::string, ParamShard> moment_shards;
  for (const auto& [n, sh] : s.shards) {
    moment_shards["exp_avg." + n] = sh;
    moment_shards["exp_avg_sq." + n] = sh;
  }
  f.optimizer = gather_tp(moments, moment_shards, *grid.tp_group, "checkpoint.gather_state");
  f.state = {s.step, s.optimizer_steps, grid.dp, grid.tp, cfg.peft.method, field_texts(cfg.model), s.scaler};
  for (const char* k : {"path", "dtype", "check_finite"}) f.state.model.erase(k);
  f.config_yaml = dump_run_config(cfg);
  f.extra = extra;
  // Every rank learns whether rank 0's write succeeded, so all stop alike on a failed write.
  std::string error;
  if (grid.world_rank == 0) {
    try {
      write_checkpoint(root, f, cfg.checkpoint.keep);
    } catch (const FileError& e) {
      error = e.what();
    }
  }
  // On the parameters' device: NCCL, the backend on cuda, takes only CUDA tensors.
  const torch::Device device = s.params.empty() ? torch::Device(torch::kCPU) : s.params.front().second.device();
  torch::Tensor failed = torch::full({1}, error.empty() ? 0.0 : 1.0, torch::TensorOptions().dtype(torch::kDouble).device(device));
  grid.world->all_reduce(failed, ReduceOp::Max, "checkpoint.done");
  if (failed.cpu().item<double>() > 0) {
    throw FileError(grid.world_rank == 0 ? "checkpoint step " + std::to_string(s.step) + " not written: " + error
                                         : "the checkpoint write on rank 0 failed");
  }
}

void load_trainable(Transformer& model, const RunConfig& cfg, const std::string& checkpoint, bool verified) {
  const std::string dir = verified ? checkpoint : open_checkpoint(checkpoint);
  const std::string path = dir + "/trainable.safetensors";
  const SafetensorsFile f = read_safetensors(path);
  std::set<std::string> params, trainable;
  for (const auto& item : model->named_parameters()) {
    params.insert(item.key());
    if (item.value().requires_grad()) trainable.insert(item.key());
  }
  for (const auto& [name, t] : f.tensors) {
    if (!params.count(name)) {
      throw FileError(path + ": tensor '" + name + "' is not a parameter of this model with peft.method " +
                      enum_name(cfg.peft.method) + " (was the checkpoint made with another method or targets?)");
    }
  }
  LoadOptions lo;
  lo.check_finite = true;
  load_params(*model, f.tensors, path, [&](const std::string& n) { return trainable.count(n) > 0; }, lo);
}

namespace {
// Tensor `key` of a checkpoint file, checked against parameter `p` and cut to this rank's shard.
torch::Tensor checked_local(const SafetensorsFile& f, const std::string& key, const std::string& path,
                            const torch::Tensor& p, const ParamShard& s) {
  const torch::Tensor& x = f.at(key, path);
  if (!x.is_floating_point()) throw FileError(path + ": tensor '" + key + "' is not a floating-point type");
  if (x.sizes().vec() != full_shape(p, s)) throw FileError(path + ": tensor '" + key + "' has the wrong shape");
  if (!torch::isfinite(x).all().item<bool>()) throw FileError(path + ": tensor '" + key + "' holds NaN or Inf");
  return local_shard(x, s).to(p.device(), torch::kFloat);
}
}  // namespace

void read_trainable_state(const std::string& dir, TrainableState& s, bool params) {
  const std::string path = dir + "/optimizer.safetensors";
  const SafetensorsFile f = read_safetensors(path);
  std::optional<SafetensorsFile> values;
  if (params) values = read_safetensors(dir + "/trainable.safetensors");
  for (const auto& [n, p] : s.params) {
    auto sh = s.shards.find(n);
    const ParamShard shard = sh != s.shards.end() ? sh->second : ParamShard{};
    s.exp_avg[n] = checked_local(f, "exp_avg." + n, path, p, shard);
    s.exp_avg_sq[n] = checked_local(f, "exp_avg_sq." + n, path, p, shard);
    if (values) {
      torch::NoGradGuard no_grad;
      p.copy_(checked_local(*values, n, dir + "/trainable.safetensors", p, shard));
    }
  }
}

void load_optimizer_state(Trainer& t, const std::string& dir) {
  TrainableState s;
  s.params = t.trainable();
  s.shards = collect_param_shards(*t.model());
  read_trainable_state(dir, s, false);
  t.optimizer().m = t.grad_sync().flatten(s.exp_avg);
  t.optimizer().v = t.grad_sync().flatten(s.exp_avg_sq);
  t.optimizer().set_steps(read_checkpoint_state(dir).optimizer_steps);
}

CheckpointState read_checkpoint_state(const std::string& dir) {
  const std::string path = dir + "/state.json";
  if (!is_regular_file(path)) throw FileError(path + ": missing: not a complete checkpoint");
  const Json j = read_json_file(path);
  const JsonFields n(j, path);
  CheckpointState s;
  s.step = n.need_int("step");
  s.optimizer_steps = n.need_int("optimizer_steps");
  if (s.step < 0) n.fail("step", "is negative (" + std::to_string(s.step) + ")");
  if (s.optimizer_steps < 0 || s.optimizer_steps > s.step) {
    n.fail("optimizer_steps", std::to_string(s.optimizer_steps) + " is not in [0, step]");
  }
  const int64_t dp = n.need_int("dp"), tp = n.need_int("tp");
  if (dp < 1 || tp < 1) n.fail(dp < 1 ? "dp" : "tp", "must be at least 1");
  s.dp = static_cast<int>(dp);
  s.tp = static_cast<int>(tp);
  const std::string method = n.need_string("method");
  const auto m = enum_from<PeftMethod>(method);
  if (!m) n.fail("method", "'" + method + "' is not one of " + join_choices(enum_choices<PeftMethod>()));
  s.method = *m;
  if (!n.has("model") || !n.at("model").is_object()) n.fail("model", "is missing (the model's sizes)");
  for (const auto& kv : n.at("model").items()) {
    if (!kv.value().is_string()) n.fail("model." + kv.key(), "expected a string");
    s.model[kv.key()] = kv.value().get<std::string>();
  }
  if (n.has("loss_scale")) {
    const JsonFields ls(n.at("loss_scale"), path, "loss_scale.");
    LossScaler sc;
    sc.scale = ls.need_number("scale");
    sc.good_steps = ls.need_int("good_steps");
    sc.skips = ls.need_int("skips");
    if (!(sc.scale > 0) || !std::isfinite(sc.scale)) ls.fail("scale", "must be a positive finite number");
    if (sc.good_steps < 0 || sc.skips < 0) ls.fail(sc.skips < 0 ? "skips" : "good_steps", "is negative");
    s.scaler = sc;
  }
  return s;
}

void check_checkpoint_matches(const CheckpointState& s, const RunConfig& cfg, const std::string& dir) {
  const std::string path = dir + "/state.json";
  if (s.method != cfg.peft.method) {
    throw FileError(path + ": method " + enum_name(s.method) + " does not match this run's peft.method " +
                    enum_name(cfg.peft.method));
  }
  const auto have = field_texts(cfg.model);
  for (const auto& [k, v] : s.model) {
    auto it = have.find(k);
    if (it != have.end() && it->second != v) {
      throw FileError(path + ": model." + k + " is " + v + " in the checkpoint, " + it->second + " in this run");
    }
  }
}

}  // namespace ds
