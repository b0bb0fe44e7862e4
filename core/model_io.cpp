#include "core/model_io.h"

#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/hf_layout.h"
#include "core/json_writer.h"

namespace ds {

bool is_delta_param(const std::string& name) {
  return name.find("lora_") != std::string::npos || name.find("_adapter.") != std::string::npos;
}

ModelConfig read_model_config(const std::string& dir) {
  const std::string path = dir + "/config.json";
  std::ifstream in(path);
  if (!in) throw FileError(path + ": cannot open (is '" + dir + "' a model directory?)");
  YAML::Node root;
  try {
    root = YAML::Load(in);
  } catch (const YAML::Exception& e) {
    throw FileError(path + ": not valid JSON: " + e.what());
  }
  if (!root.IsMap()) throw FileError(path + ": not a JSON object");
  const std::string type = root["model_type"] ? root["model_type"].as<std::string>() : "";
  if (type != "deltashard-gpt") return config_from_hf(root, path);
  // The same strict reader as the YAML model section, without the file-only keys.
  YAML::Node m = YAML::Clone(root);
  m.remove("model_type");
  m.remove("architectures");
  ModelConfig cfg;
  try {
    parse_model_config(m, file_locator(path), cfg);
  } catch (const ConfigError& e) {
    throw FileError(e.what());
  }
  return cfg;
}

namespace {
// The raw tensors of a model directory: model.safetensors, or the shards that
// model.safetensors.index.json maps every tensor to. The files stay memory-mapped.
std::map<std::string, torch::Tensor> read_weight_files(const std::string& dir, std::string& source) {
  const std::string single = dir + "/model.safetensors", index = dir + "/model.safetensors.index.json";
  std::ifstream idx(index);
  if (!idx) {
    source = single;
    return read_safetensors(single).tensors;
  }
  source = index;
  YAML::Node root;
  try {
    root = YAML::Load(idx);
  } catch (const YAML::Exception& e) {
    throw FileError(index + ": not valid JSON: " + e.what());
  }
  if (!root["weight_map"] || !root["weight_map"].IsMap()) throw FileError(index + ": weight_map is missing");
  std::map<std::string, std::map<std::string, torch::Tensor>> files;
  std::map<std::string, torch::Tensor> out;
  for (const auto& kv : root["weight_map"]) {
    const std::string name = kv.first.Scalar(), file = kv.second.Scalar();
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
  return cfg.layout == "deltashard" ? raw : from_hf(raw, cfg, source);
}

std::string tokenizer_in(const std::string& dir) {
  const std::string path = dir + "/tokenizer.json";
  return !dir.empty() && is_regular_file(path) ? path : "";
}

void save_model_dir(const std::string& dir, const ModelConfig& cfg, const NamedTensors& tensors,
                    int64_t shard_bytes, const std::string& tokenizer_from) {
  ::mkdir(dir.c_str(), 0755);
  Json c;
  NamedTensors out = tensors;
  if (cfg.layout == "deltashard") {
    c = Json::object();
    c["model_type"] = "deltashard-gpt";
    c["vocab_size"] = cfg.vocab_size;
    c["n_layer"] = cfg.n_layer;
    c["n_head"] = cfg.n_head;
    c["n_kv_head"] = cfg.n_kv_head;  // 0: as many as n_head
    c["d_model"] = cfg.d_model;
    c["d_ff"] = cfg.d_ff;
    c["max_seq_len"] = cfg.max_seq_len;
    c["tie_embeddings"] = cfg.tie_embeddings;
    c["norm"] = cfg.norm;
    c["activation"] = cfg.activation;
    c["positions"] = cfg.positions;
    c["bias"] = cfg.bias;
    c["rope_theta"] = cfg.rope_theta;
    c["norm_eps"] = cfg.norm_eps;
    c["init_std"] = cfg.init_std;
  } else {
    c = hf_config_json(cfg);
    out = to_hf(tensors, cfg);
  }
  // Weights first, config last: a directory with a config.json is complete.
  int64_t total = 0;
  for (const auto& nt : out) total += nt.second.numel() * nt.second.element_size();
  if (shard_bytes <= 0 || total <= shard_bytes) {
    write_safetensors(dir + "/model.safetensors", out, {{"format", "pt"}});
  } else {
    // Hugging Face's sharded layout: model-0000i-of-0000N.safetensors and an index.
    std::vector<NamedTensors> shards(1);
    int64_t in_shard = 0;
    for (const auto& nt : out) {
      const int64_t b = nt.second.numel() * nt.second.element_size();
      if (in_shard > 0 && in_shard + b > shard_bytes) {
        shards.emplace_back();
        in_shard = 0;
      }
      shards.back().push_back(nt);
      in_shard += b;
    }
    Json map = Json::object();
    for (size_t i = 0; i < shards.size(); ++i) {
      char name[64];
      std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
      write_safetensors(dir + "/" + name, shards[i], {{"format", "pt"}});
      for (const auto& nt : shards[i]) map[nt.first] = std::string(name);
    }
    Json index = Json::object();
    Json meta = Json::object();
    meta["total_size"] = total;
    index["metadata"] = meta;
    index["weight_map"] = map;
    write_file_atomic(dir + "/model.safetensors.index.json", index.dump(2) + "\n");
  }
  if (!tokenizer_from.empty() && tokenizer_from != dir) {
    for (const char* name : {"tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json",
                             "special_tokens_map.json"}) {
      const std::string from = tokenizer_from + "/" + name;
      if (is_regular_file(from)) write_file_atomic(dir + "/" + name, read_file(from));
    }
  }
  write_file_atomic(dir + "/config.json", c.dump(2) + "\n");
}

NamedTensors base_tensors(Transformer& model) {
  NamedTensors out;
  for (const auto& item : model->named_parameters()) {
    if (!is_delta_param(item.key())) out.emplace_back(item.key(), item.value().detach());
  }
  return out;
}

void load_params(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& full,
                 const std::string& source, const std::function<bool(const std::string&)>& select) {
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
    dst.copy_(local_shard(src, shard));
  }
}

void load_model_weights(const std::string& dir, Transformer& model) {
  load_params(*model, read_model_tensors(dir, model->cfg), dir,
              [](const std::string& n) { return !is_delta_param(n); });
}

}  // namespace ds
