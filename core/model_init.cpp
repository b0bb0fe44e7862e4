#include "core/model_init.h"

#include <ATen/CPUGeneratorImpl.h>

#include <random>
#include <stdexcept>

#include "core/files.h"
#include "core/hf_layout.h"
#include "core/yaml_fields.h"

namespace ds {

Transformer meta_model(const ModelConfig& cfg, torch::ScalarType dtype) {
  ParamOptions p;
  p.options = torch::TensorOptions().dtype(dtype).device(torch::kMeta);
  p.random_init = false;
  p.compute = dtype;
  return Transformer(cfg, dense_factory(p));
}

std::map<std::string, InitRule> init_rules(torch::nn::Module& model) {
  using K = InitRule::Kind;
  const auto normal = [](double s) { return s > 0 ? InitRule{K::Normal, s} : InitRule{K::Zeros, 0.0}; };
  std::map<std::string, InitRule> out;
  for (const auto& item : model.named_modules()) {
    const std::string prefix = item.key().empty() ? "" : item.key() + ".";
    torch::nn::Module* m = item.value().get();
    for (const auto& p : m->named_parameters(/*recurse=*/false)) {
      const std::string& n = p.key();
      std::optional<InitRule> rule;
      if (auto* lin = dynamic_cast<LinearImpl*>(m)) {
        if (n == "weight") rule = normal(lin->options().spec.init_std);
        if (n == "bias") rule = InitRule{K::Zeros, 0.0};
      } else if (auto* emb = dynamic_cast<EmbeddingImpl*>(m)) {
        if (n == "weight") rule = normal(emb->init_std);
      } else if (dynamic_cast<NormImpl*>(m)) {
        if (n == "weight") rule = InitRule{K::Ones, 0.0};
        if (n == "bias") rule = InitRule{K::Zeros, 0.0};
      }
      if (!rule) throw std::logic_error("init: no initialisation rule for parameter '" + prefix + n + "'");
      out[prefix + n] = *rule;
    }
  }
  return out;
}

uint64_t tensor_seed(uint64_t seed, const std::string& name) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a of the name
  for (unsigned char c : name) {
    h ^= c;
    h *= 1099511628211ull;
  }
  // std::seed_seq's mixing is specified by the standard, so the seed is the same everywhere.
  std::seed_seq mix{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(h),
                    static_cast<uint32_t>(h >> 32)};
  uint32_t out = 0;
  mix.generate(&out, &out + 1);
  return out;
}

torch::Tensor init_tensor(const std::string& name, const std::vector<int64_t>& shape, const InitRule& rule,
                          uint64_t seed) {
  torch::NoGradGuard no_grad;
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat);
  switch (rule.kind) {
    case InitRule::Kind::Ones:
      return torch::ones(shape, f32);
    case InitRule::Kind::Zeros:
      return torch::zeros(shape, f32);
    case InitRule::Kind::Normal:
      break;
  }
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(tensor_seed(seed, name));
  return torch::empty(shape, f32).normal_(0.0, rule.stddev, gen);
}

Layout auto_layout(const ModelConfig& cfg) {
  for (Layout l : {Layout::Llama, Layout::Gpt2}) {
    try {
      check_layout(cfg, l);
      return l;
    } catch (const ConfigError&) {
    }
  }
  return Layout::DeltaShard;
}

ModelFiles init_model_files(const ModelConfig& cfg, const InitOptions& options) {
  const torch::ScalarType dtype = scalar_type(options.dtype);
  Transformer model = meta_model(cfg, dtype);
  std::map<std::string, std::pair<InitRule, std::vector<int64_t>>> how;
  for (const auto& [name, rule] : init_rules(*model)) how[name].first = rule;
  NamedTensors ours;
  for (const auto& item : model->named_parameters()) {
    ours.emplace_back(item.key(), item.value());
    how[item.key()].second = item.value().sizes().vec();
  }
  const uint64_t seed = options.seed;
  return layout_files(cfg, ours, [how = std::move(how), seed, dtype](const std::string& name) {
    const auto& [rule, shape] = how.at(name);
    return init_tensor(name, shape, rule, seed).to(dtype);
  });
}

ModelConfig read_model_section(const std::string& file) {
  std::string text;
  try {
    text = read_file(file);
  } catch (const FileError& e) {
    throw ConfigError(e.what());
  }
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(file + ":" + std::to_string(e.mark.line + 1) + ": not valid YAML: " + e.msg);
  }
  if (!root.IsMap() || !root["model"]) {
    throw ConfigError(file + ": expected a `model:` section (a model file such as configs/models/llama-7b.yaml, "
                             "or a run config)");
  }
  check_duplicate_keys(root["model"], "model", file);
  ModelConfig cfg;
  parse_model_config(root["model"], file_locator(file), cfg);
  if (!cfg.path.empty()) {
    throw ConfigError(file_locator(file)("model.path", root["model"]["path"]) +
                      ": model.path: names an existing model; init makes a new one from the sizes (remove it)");
  }
  if (cfg.n_kv_head == cfg.n_head) cfg.n_kv_head = 0;
  return cfg;
}

}  // namespace ds
