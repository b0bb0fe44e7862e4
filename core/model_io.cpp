#include "core/model_io.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>

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
  if (type != "deltashard-gpt") {
    throw FileError(path + ": model_type '" + type + "' is not supported (expected deltashard-gpt)");
  }
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

void save_model_dir(const std::string& dir, const ModelConfig& cfg, const NamedTensors& tensors) {
  ::mkdir(dir.c_str(), 0755);
  Json c = Json::object();
  c["model_type"] = "deltashard-gpt";
  c["vocab_size"] = cfg.vocab_size;
  c["n_layer"] = cfg.n_layer;
  c["n_head"] = cfg.n_head;
  c["d_model"] = cfg.d_model;
  c["d_ff"] = cfg.d_ff;
  c["max_seq_len"] = cfg.max_seq_len;
  c["tie_embeddings"] = cfg.tie_embeddings;
  c["norm"] = cfg.norm;
  c["activation"] = cfg.activation;
  c["norm_eps"] = cfg.norm_eps;
  c["init_std"] = cfg.init_std;
  // Weights first, config last: a directory with a config.json is complete.
  write_safetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}});
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
  const std::string path = dir + "/model.safetensors";
  const SafetensorsFile f = read_safetensors(path);
  load_params(*model, f.tensors, path, [](const std::string& n) { return !is_delta_param(n); });
}

}  // namespace ds
