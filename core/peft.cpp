#include "core/peft.h"

#include <algorithm>
#include <stdexcept>

#include <map>

namespace ds {

const std::vector<std::string>& lora_target_names() {
  static const std::vector<std::string> names{"q", "k", "v", "o", "gate", "up", "down"};
  return names;
}

void parse_peft_config(const YAML::Node& node, const Locator& where, PeftConfig& cfg) {
  FieldReader r(node, "peft", where);
  describe(r, cfg);
  if (cfg.method == PeftMethod::Lora && cfg.targets.empty()) r.fail("targets", "LoRA needs at least one target");
  r.finish();
}

int64_t adapter_bottleneck(const PeftConfig& cfg, int64_t d_model) {
  const int64_t m = cfg.adapter_size > 0 ? cfg.adapter_size : d_model / cfg.adapter_reduction;
  return std::max<int64_t>(m, 1);
}

void check_peft_fits(const PeftConfig& cfg, const ModelConfig& m, const std::string& file) {
  if (cfg.method == PeftMethod::Lora) {
    const int64_t kv = m.kv_heads() * m.head_dim();
    for (const auto& t : cfg.targets) {
      const int64_t in = t == "down" ? m.d_ff : m.d_model;
      const int64_t out = t == "k" || t == "v" ? kv : t == "up" || t == "gate" ? m.d_ff : m.d_model;
      if (cfg.r > std::min(in, out)) {
        throw ConfigError(file + ": peft.r: " + std::to_string(cfg.r) + " exceeds the smaller side of target " + t +
                          " (" + std::to_string(out) + " x " + std::to_string(in) + ")");
      }
    }
  }
  if ((cfg.method == PeftMethod::Adapter) && cfg.adapter_size == 0 && m.d_model / cfg.adapter_reduction == 0) {
    throw ConfigError(file + ": peft.adapter_reduction: " + std::to_string(cfg.adapter_reduction) +
                      " leaves a bottleneck of 0 for model.d_model " + std::to_string(m.d_model) +
                      " (set peft.adapter_size)");
  }
}

std::vector<std::pair<std::string, Linear>> target_layers(Block& b) {
  std::vector<std::pair<std::string, Linear>> out{{"q", b->attn->q}, {"k", b->attn->k}, {"v", b->attn->v},
                                                  {"o", b->attn->o}};
  if (b->mlp->gate) out.emplace_back("gate", b->mlp->gate);
  out.emplace_back("up", b->mlp->up);
  out.emplace_back("down", b->mlp->down);
  return out;
}

std::vector<Linear> targeted_layers(Transformer& model, const std::vector<std::string>& targets) {
  std::vector<Linear> out;
  for (auto& b : model->blocks) {
    const auto layers = target_layers(b);
    for (const auto& t : targets) {
      auto it = std::find_if(layers.begin(), layers.end(), [&](const auto& l) { return l.first == t; });
      if (it == layers.end()) {
        throw ConfigError("peft.targets: '" + t + "' is not a layer of this model (gate needs model.activation swiglu)");
      }
      out.push_back(it->second);
    }
  }
  return out;
}

std::vector<std::pair<std::string, Linear>> lora_layers(Transformer& model) {
  std::vector<std::pair<std::string, Linear>> out;
  for (size_t i = 0; i < model->blocks.size(); ++i) {
    auto& b = model->blocks[i];
    const std::string p = "blocks." + std::to_string(i) + ".";
    for (const auto& [t, layer] : target_layers(b)) {
      if (layer->has_lora()) out.emplace_back(p + (t == "q" || t == "k" || t == "v" || t == "o" ? "attn." : "mlp.") + t, layer);
    }
  }
  return out;
}

ParamReport apply_peft(Transformer& model, const PeftConfig& cfg, const LinearFactory& adapter_factory) {
  for (auto& p : model->parameters()) p.set_requires_grad(cfg.method == PeftMethod::Full);
  if (cfg.method == PeftMethod::Lora) {
    LoraOptions lo{cfg.r, cfg.alpha, cfg.dropout, cfg.use_rslora, cfg.lora_init};
    for (auto& layer : targeted_layers(model, cfg.targets)) layer->add_lora(lo);
  } else if (cfg.method == PeftMethod::Adapter) {
    AdapterOptions ao;
    ao.d_model = model->cfg.d_model;
    ao.size = adapter_bottleneck(cfg, model->cfg.d_model);
    ao.nonlinearity = cfg.adapter_nonlinearity;
    for (auto& b : model->blocks) {
      if (cfg.adapter_placement == AdapterPlacement::Houlsby) {
        b->attn_adapter = b->register_module("attn_adapter", Adapter(ao, adapter_factory, "attn_adapter"));
      }
      b->mlp_adapter = b->register_module("mlp_adapter", Adapter(ao, adapter_factory, "mlp_adapter"));
    }
  }
  // What each method trains besides the frozen base.
  for (auto& item : model->named_parameters()) {
    const std::string& n = item.key();
    bool train = cfg.method == PeftMethod::Full;
    if (cfg.method == PeftMethod::Lora) train = n.find("lora_") != std::string::npos;
    if (cfg.method == PeftMethod::Adapter) {
      // Houlsby et al. also train the layer norms and the head; a tied head is the embedding
      // table, which stays frozen.
      train = n.find("_adapter.") != std::string::npos || n.find(".ln") != std::string::npos ||
              n.rfind("ln_f.", 0) == 0 || n.rfind("lm_head.", 0) == 0;
    }
    item.value().set_requires_grad(train);
  }
  return count_params(model);
}

ModuleKind module_kind(const std::string& param) {
  if (param.find("lora_") != std::string::npos) return ModuleKind::Lora;
  if (param.find("_adapter.") != std::string::npos) return ModuleKind::Adapter;
  if (param.find("ln") != std::string::npos) return ModuleKind::Norm;
  if (param.rfind("wte.", 0) == 0 || param.rfind("wpe.", 0) == 0) return ModuleKind::Embedding;
  return ModuleKind::Base;
}

ParamReport count_params(Transformer& model) {
  ParamReport r;
  const auto shards = collect_param_shards(*model);
  std::map<std::string, size_t> index;
  for (const auto& item : model->named_parameters()) {
    const std::string& n = item.key();
    const torch::Tensor& p = item.value();
    int64_t numel = p.numel();
    auto it = shards.find(n);
    if (it != shards.end() && it->second.dim >= 0) numel *= it->second.size;
    const bool trainable = p.requires_grad();
    r.total_params += numel;
    const ModuleKind kind = module_kind(n);
    if (kind == ModuleKind::Lora || kind == ModuleKind::Adapter) r.delta_params += numel;
    if (trainable) {
      r.trainable_params += numel;
      r.trainable_bytes += numel * static_cast<int64_t>(p.element_size());
    }
    // Group by owning module; LoRA factors are listed apart from the frozen weight they modify.
    std::string module = n.substr(0, n.rfind('.'));
    if (kind == ModuleKind::Lora) module += ".lora";
    auto pos = index.find(module);
    if (pos == index.end()) {
      pos = index.emplace(module, r.modules.size()).first;
      r.modules.push_back({module, kind, 0, 0});
    }
    r.modules[pos->second].params += numel;
    if (trainable) r.modules[pos->second].trainable += numel;
  }
  return r;
}

Json ParamReport::to_json() const {
  Json j = Json::object();
  j["total_params"] = total_params;
  j["trainable_params"] = trainable_params;
  j["trainable_bytes"] = trainable_bytes;
  j["delta_params"] = delta_params;
  j["trainable_fraction"] = total_params ? static_cast<double>(trainable_params) / total_params : 0.0;
  Json mods = Json::array();
  for (const auto& m : modules) {
    Json e = Json::object();
    e["name"] = m.name;
    e["kind"] = enum_name(m.kind);
    e["params"] = m.params;
    e["trainable"] = m.trainable;
    mods.push_back(e);
  }
  j["modules"] = mods;
  return j;
}

}  // namespace ds
