#include "core/model_io.h"

#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "core/dir_layout.h"
#include "core/hf_layout.h"
#include "core/json.h"

namespace ds {

bool is_delta_param(const std::string& name) {
  return name.find("lora_") != std::string::npos || name.find("_adapter.") != std::string::npos;
}

ModelConfig read_model_config(const std::string& dir) {
  const std::string path = dir + "/config.json";
  if (!is_regular_file(path)) throw FileError(path + ": cannot open (is '" + dir + "' a model directory?)");
  const Json root = read_json_file(path);
  if (JsonFields(root, path).string_or("model_type", "") != "deltashard-gpt") return config_from_hf(root, path);
  // The same table, ranges and messages as the YAML model section.
  ModelConfig cfg;
  JsonFieldReader r(root, path);
  describe_architecture(r, cfg);
  r.finish({"model_type", "architectures"});
  try {
    validate_model_config(cfg, path);
  } catch (const ConfigError& e) {
    throw FileError(e.what());
  }
  if (cfg.n_kv_head == cfg.n_head) cfg.n_kv_head = 0;
  return cfg;
}

namespace {
// The raw tensors of a model directory: model.safetensors, or the shards that
// model.safetensors.index.json maps every tensor to. The files stay memory-mapped.
std::map<std::string, torch::Tensor> read_weight_files(const std::string& dir, std::string& source) {
  const std::string single = dir + "/model.safetensors", index = dir + "/model.safetensors.index.json";
  if (!is_regular_file(index)) {
    source = single;
    return read_safetensors(single).tensors;
  }
  source = index;
  const Json root = read_json_file(index);
  const Json& weight_map = JsonFields(root, index).at("weight_map");
  if (!weight_map.is_object()) throw FileError(index + ": weight_map: expected an object");
  std::map<std::string, std::map<std::string, torch::Tensor>> files;
  std::map<std::string, torch::Tensor> out;
  for (const auto& kv : weight_map.items()) {
    if (!kv.value().is_string()) throw FileError(index + ": weight_map." + kv.key() + ": expected a file name");
    const std::string name = kv.key(), file = kv.value().get<std::string>();
    if (file.empty() || file.find('/') != std::string::npos) {
      throw FileError(index + ": tensor '" + name + "' maps to an invalid file name '" + file + "'");
    }
    if (!files.count(file)) files[file] = read_safetensors(dir + "/" + file).tensors;
    auto it = files[file].find(name);
    if (it == files[file].end()) {
      throw FileError(index + ": tensor '" + name + "' is mapped to " + file + ", which does not hold it");
    }
    out[name] = it->second;
  }
  return out;
}
}  // namespace

std::map<std::string, torch::Tensor> read_model_tensors(const std::string& dir, const ModelConfig& cfg) {
  std::string source;
  std::map<std::string, torch::Tensor> raw = read_weight_files(dir, source);
  return cfg.layout == Layout::DeltaShard ? raw : from_hf(raw, cfg, source);
}

std::string tokenizer_in(const std::string& dir) {
  const std::string path = dir + "/tokenizer.json";
  return !dir.empty() && is_regular_file(path) ? path : "";
}

ModelFiles layout_files(const ModelConfig& cfg, const NamedTensors& ours,
                        std::function<torch::Tensor(const std::string&)> fetch) {
  std::vector<LayoutTensor> lts;
  if (cfg.layout == Layout::DeltaShard) {
    for (const auto& nt : ours) lts.push_back({nt.first, {nt.first}, [](const std::vector<torch::Tensor>& t) { return t[0]; }});
  } else {
    lts = hf_layout_tensors(cfg);
  }
  // Names, types and shapes: the layout's operations run on meta tensors.
  std::map<std::string, torch::Tensor> meta;
  for (const auto& [name, t] : ours) meta[name] = torch::empty(t.sizes(), t.options().device(torch::kMeta));
  ModelFiles out;
  for (const auto& lt : lts) {
    std::vector<torch::Tensor> src;
    for (const auto& s : lt.sources) {
      auto it = meta.find(s);
      if (it == meta.end()) throw FileError("model: missing tensor '" + s + "' for '" + lt.name + "'");
      src.push_back(it->second);
    }
    const torch::Tensor t = lt.make(src);
    out.tensors.push_back({lt.name, t.scalar_type(), t.sizes().vec()});
  }
  out.make = [lts = std::move(lts), fetch = std::move(fetch)](size_t i) {
    std::vector<torch::Tensor> src;
    for (const auto& s : lts.at(i).sources) src.push_back(fetch(s));
    return lts[i].make(src);
  };
  return out;
}

std::vector<std::vector<size_t>> plan_shards(const std::vector<SafetensorsEntry>& tensors, int64_t shard_bytes) {
  int64_t total = 0;
  for (const auto& e : tensors) total += e.nbytes();
  std::vector<std::vector<size_t>> shards(1);
  int64_t in_shard = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const int64_t b = tensors[i].nbytes();
    if (shard_bytes > 0 && total > shard_bytes && in_shard > 0 && in_shard + b > shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(i);
    in_shard += b;
  }
  return shards;
}

std::vector<std::string> write_model_files(const std::string& dir, const ModelConfig& cfg, const NamedTensors& tensors,
                                           int64_t shard_bytes, const std::string& tokenizer_from) {
  const std::map<std::string, torch::Tensor> by_name(tensors.begin(), tensors.end());
  const ModelFiles files = layout_files(cfg, tensors, [&by_name](const std::string& n) { return by_name.at(n); });
  return write_model_files(dir, cfg, files, shard_bytes, tokenizer_from);
}

std::vector<std::string> write_model_files(const std::string& dir, const ModelConfig& cfg, const ModelFiles& files,
                                           int64_t shard_bytes, const std::string& tokenizer_from) {
  std::vector<std::string> written;
  Json c;
  if (cfg.layout == Layout::DeltaShard) {
    c = Json::object();
    c["model_type"] = "deltashard-gpt";
    JsonFieldWriter w(c);
    describe_architecture(w, const_cast<ModelConfig&>(cfg));
  } else {
    c = hf_config_json(cfg);
    // The type the weights are stored in, when they share one (transformers' torch_dtype).
    std::set<torch::ScalarType> types;
    for (const auto& e : files.tensors) types.insert(e.dtype);
    if (types == std::set<torch::ScalarType>{torch::kBFloat16}) c["torch_dtype"] = "bfloat16";
    if (types == std::set<torch::ScalarType>{torch::kFloat16}) c["torch_dtype"] = "float16";
  }
  int64_t total = 0;
  for (const auto& e : files.tensors) total += e.nbytes();
  const std::vector<std::vector<size_t>> shards = plan_shards(files.tensors, shard_bytes);
  auto write_file = [&](const std::string& name, const std::vector<size_t>& which) {
    std::vector<SafetensorsEntry> entries;
    for (size_t i : which) entries.push_back(files.tensors[i]);
    SafetensorsWriter w(dir + "/" + name, std::move(entries), {{"format", "pt"}});
    for (size_t i : which) w.add(files.make(i));
    w.finish();
    written.push_back(name);
  };
  if (shards.size() == 1) {
    write_file("model.safetensors", shards[0]);
  } else {
    // Hugging Face's sharded layout: model-0000i-of-0000N.safetensors and an index.
    Json map = Json::object();
    for (size_t i = 0; i < shards.size(); ++i) {
      char name[64];
      std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
      write_file(name, shards[i]);
      for (size_t t : shards[i]) map[files.tensors[t].name] = std::string(name);
    }
    Json index = Json::object();
    Json meta = Json::object();
    meta["total_size"] = total;
    index["metadata"] = meta;
    index["weight_map"] = map;
    write_file_atomic(dir + "/model.safetensors.index.json", json_pretty(index));
    written.push_back("model.safetensors.index.json");
  }
  if (!tokenizer_from.empty() && tokenizer_from != dir) {
    for (const char* name : {"tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json",
                             "special_tokens_map.json"}) {
      const std::string from = tokenizer_from + "/" + name;
      if (is_regular_file(from)) {
        write_file_atomic(dir + "/" + name, read_file(from));
        written.push_back(name);
      }
    }
  }
  write_file_atomic(dir + "/config.json", json_pretty(c));
  written.push_back("config.json");
  return written;
}

void save_model_dir(const std::string& dir, const ModelConfig& cfg, const NamedTensors& tensors, int64_t shard_bytes,
                    const std::string& tokenizer_from, const std::string& option) {
  const std::map<std::string, torch::Tensor> by_name(tensors.begin(), tensors.end());
  save_model_dir(dir, cfg, layout_files(cfg, tensors, [&by_name](const std::string& n) { return by_name.at(n); }),
                 shard_bytes, tokenizer_from, option);
}

void save_model_dir(const std::string& dir, const ModelConfig& cfg, const ModelFiles& files, int64_t shard_bytes,
                    const std::string& tokenizer_from, const std::string& option) {
  if (!tokenizer_from.empty() && absolute_path(tokenizer_from) == absolute_path(dir)) {
    throw UsageError(option + " " + dir + ": is the model being read; write to another directory");
  }
  if (const auto old = claim_output_dir(dir, DirKind::Model, option)) clear_marked_dir(dir, *old);
  const std::vector<std::string> written = write_model_files(dir, cfg, files, shard_bytes, tokenizer_from);
  write_marker(dir, DirKind::Model, written);
}

NamedTensors base_tensors(Transformer& model) {
  NamedTensors out;
  for (const auto& item : model->named_parameters()) {
    if (!is_delta_param(item.key())) out.emplace_back(item.key(), item.value().detach());
  }
  return out;
}

void load_params(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& full,
                 const std::string& source, const std::function<bool(const std::string&)>& select,
                 const LoadOptions& options) {
  const auto shards = collect_param_shards(module);
  torch::NoGradGuard no_grad;
  for (auto& item : module.named_parameters()) {
    const std::string& name = item.key();
    if (!select(name)) continue;
    auto it = full.find(name);
    if (it == full.end()) throw FileError(source + ": missing tensor '" + name + "'");
    torch::Tensor src = it->second;
    torch::Tensor& dst = item.value();
    auto sh = shards.find(name);
    const ParamShard shard = sh != shards.end() ? sh->second : ParamShard{};
    const std::vector<int64_t> want = full_shape(dst, shard);
    if (src.sizes().vec() != want) {
      std::ostringstream os;
      os << source << ": tensor '" << name << "' has shape " << src.sizes() << ", the model needs "
         << torch::IntArrayRef(want);
      throw FileError(os.str());
    }
    if (!src.is_floating_point()) {
      throw FileError(source + ": tensor '" + name + "' is stored as " + std::string(c10::toString(src.scalar_type())) +
                      ", not a floating-point type");
    }
    dst.copy_(local_shard(src, shard));
    if (options.release_pages) release_mapped_pages(src);
    if (options.check_finite && !torch::isfinite(dst).all().item<bool>()) {
      throw FileError(source + ": tensor '" + name + "' holds NaN or Inf");
    }
  }
}

void load_model_weights(const std::string& dir, Transformer& model, const LoadOptions& options) {
  load_params(*model, read_model_tensors(dir, model->cfg), dir, [](const std::string& n) { return !is_delta_param(n); },
              options);
}

}  // namespace ds
