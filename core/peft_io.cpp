#include "core/peft_io.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include "core/hf_layout.h"

namespace ds {

namespace {

const char* kPrefix = "base_model.model.";

std::string layer_of(int64_t i, const std::string& t) {
  const bool attn = t == "q" || t == "k" || t == "v" || t == "o";
  return "blocks." + std::to_string(i) + (attn ? ".attn." : ".mlp.") + t;
}

std::vector<std::string> model_targets(const ModelConfig& m) {
  std::vector<std::string> t{"q", "k", "v", "o"};
  if (m.activation == Activation::SwiGlu) t.push_back("gate");
  t.push_back("up");
  t.push_back("down");
  return t;
}

// What PEFT's target_modules holds for one of our targets: a suffix of the module path.
std::string target_suffix(const std::string& t, const ModelConfig& m) {
  const std::string full = hf_module_name(layer_of(0, t), m);
  if (m.layout == Layout::Llama) return t + "_proj";
  const size_t second_last = full.rfind('.', full.rfind('.') - 1);
  return full.substr(second_last + 1);  // attn.c_attn, mlp.c_fc, attn.q, ...
}

int64_t qkv_offset(const std::string& t) { return t == "q" ? 0 : t == "k" ? 1 : 2; }

double lora_scale(double alpha, int64_t r, bool rslora) {
  return rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);
}

// PEFT matches a pattern key against a module path as the whole path or a dotted suffix.
// nullptr when no key matches; a FileError naming the pattern when its value is not a number.
const Json* pattern_for(const JsonFields& c, const char* name, const std::string& module) {
  if (!c.has(name)) return nullptr;
  const Json& patterns = c.at(name);
  if (!patterns.is_object()) c.fail(name, "expected an object of module patterns");
  for (const auto& kv : patterns.items()) {
    const std::string& k = kv.key();
    if (module == k || (module.size() > k.size() && module.compare(module.size() - k.size(), k.size(), k) == 0 &&
                        module[module.size() - k.size() - 1] == '.')) {
      if (!kv.value().is_number()) c.fail(std::string(name) + "." + k, "expected a number");
      return &kv.value();
    }
  }
  return nullptr;
}

}  // namespace

PeftFiles export_peft(const ModelConfig& m, const PeftConfig& p, const std::map<std::string, torch::Tensor>& lora,
                      const std::string& base_model) {
  auto get = [&](const std::string& n) {
    auto it = lora.find(n);
    if (it == lora.end()) throw FileError("checkpoint: missing LoRA tensor '" + n + "'");
    return it->second.to(torch::kFloat).contiguous();
  };
  const bool fuse = m.layout == Layout::Gpt2;
  std::vector<std::string> qkv;
  for (const char* t : {"q", "k", "v"}) {
    if (fuse && std::find(p.targets.begin(), p.targets.end(), t) != p.targets.end()) qkv.push_back(t);
  }
  const int64_t r = p.r, d = m.d_model, R = static_cast<int64_t>(qkv.size()) * r;
  PeftFiles f;
  for (int64_t i = 0; i < m.n_layer; ++i) {
    if (!qkv.empty()) {
      std::vector<torch::Tensor> as;
      torch::Tensor B = torch::zeros({3 * d, R});
      for (size_t k = 0; k < qkv.size(); ++k) {
        const std::string l = layer_of(i, qkv[k]);
        as.push_back(get(l + ".lora_A"));
        B.narrow(0, qkv_offset(qkv[k]) * d, d).narrow(1, static_cast<int64_t>(k) * r, r).copy_(get(l + ".lora_B"));
      }
      const std::string key = kPrefix + hf_module_name(layer_of(i, "q"), m);
      f.tensors.emplace_back(key + ".lora_A.weight", torch::cat(as, 0));
      f.tensors.emplace_back(key + ".lora_B.weight", B);
    }
    for (const auto& t : p.targets) {
      if (std::find(qkv.begin(), qkv.end(), t) != qkv.end()) continue;
      const std::string l = layer_of(i, t), key = kPrefix + hf_module_name(l, m);
      f.tensors.emplace_back(key + ".lora_A.weight", get(l + ".lora_A"));
      f.tensors.emplace_back(key + ".lora_B.weight", get(l + ".lora_B"));
    }
  }
  Json targets = Json::array();
  std::set<std::string> seen;
  for (const auto& t : p.targets) {
    const std::string s = target_suffix(t, m);
    if (seen.insert(s).second) targets.push_back(s);
  }
  Json rank_pattern = Json::object(), alpha_pattern = Json::object();
  if (qkv.size() > 1) {
    const double n = static_cast<double>(qkv.size());
    rank_pattern["attn.c_attn"] = R;
    alpha_pattern["attn.c_attn"] = p.use_rslora ? p.alpha * std::sqrt(n) : p.alpha * n;
  }
  Json& c = f.config = Json::object();
  c["peft_type"] = "LORA";
  c["task_type"] = "CAUSAL_LM";
  c["base_model_name_or_path"] = base_model;
  c["r"] = r;
  c["lora_alpha"] = p.alpha;
  c["lora_dropout"] = p.dropout;
  c["target_modules"] = targets;
  c["fan_in_fan_out"] = fuse;  // GPT-2's Conv1D stores weights [in, out]
  c["bias"] = "none";
  c["use_rslora"] = p.use_rslora;
  c["use_dora"] = false;
  c["init_lora_weights"] = true;
  c["inference_mode"] = true;
  c["modules_to_save"] = Json();
  c["layers_to_transform"] = Json();
  c["layers_pattern"] = Json();
  c["rank_pattern"] = rank_pattern;
  c["alpha_pattern"] = alpha_pattern;
  c["revision"] = Json();
  std::string q;
  for (const auto& t : qkv) q += (q.empty() ? "" : ",") + t;
  f.metadata = {{"format", "pt"}, {"deltashard_qkv", q}, {"deltashard_r", std::to_string(r)}};
  return f;
}

PeftImport import_peft(const ModelConfig& m, const Json& config, const std::map<std::string, torch::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata, const std::string& source) {
  const std::string config_file = source + "/adapter_config.json";
  const std::string weights_file = source + "/adapter_model.safetensors";
  const JsonFields c(config, config_file);
  const std::string type = c.string_or("peft_type", "");
  if (type != "LORA") throw FileError(config_file + ": peft_type '" + type + "' is not LORA");
  const std::string bias = c.string_or("bias", "none");
  if (bias != "none") throw FileError(config_file + ": bias '" + bias + "' is not supported (none)");
  if (c.bool_or("use_dora", false)) throw FileError(config_file + ": use_dora is not supported");
  if (c.has("modules_to_save") && !(c.at("modules_to_save").is_array() && c.at("modules_to_save").empty())) {
    throw FileError(config_file + ": modules_to_save is not supported");
  }
  if (!c.has("r") || !c.has("lora_alpha")) throw FileError(config_file + ": r and lora_alpha are required");
  c.need_int("r");
  const double alpha = c.need_number("lora_alpha");
  const bool rslora = c.bool_or("use_rslora", false);

  // Module path -> our layers (GPT-2's c_attn -> q, k, v).
  std::map<std::string, std::vector<std::pair<int64_t, std::string>>> modules;
  for (int64_t i = 0; i < m.n_layer; ++i) {
    for (const auto& t : model_targets(m)) modules[hf_module_name(layer_of(i, t), m)].emplace_back(i, t);
  }
  std::map<std::string, std::pair<torch::Tensor, torch::Tensor>> found;
  for (const auto& [key, t] : tensors) {
    const size_t prefix = std::strlen(kPrefix), suffix = std::strlen(".lora_A.weight");
    auto ends_with = [&](const char* s) { return key.size() > suffix && key.compare(key.size() - suffix, suffix, s) == 0; };
    const bool is_a = ends_with(".lora_A.weight"), is_b = ends_with(".lora_B.weight");
    if (key.rfind(kPrefix, 0) != 0 || (!is_a && !is_b)) {
      throw FileError(weights_file + ": tensor '" + key + "' is not a LoRA factor (base_model.model.<module>.lora_A/B.weight)");
    }
    const std::string module = key.substr(prefix, key.size() - prefix - suffix);
    if (!modules.count(module)) throw FileError(weights_file + ": tensor '" + key + "': no layer '" + module + "' in this model");
    (is_a ? found[module].first : found[module].second) = t.to(torch::kFloat);
  }
  if (found.empty()) throw FileError(weights_file + ": no LoRA tensors");

  const std::string meta_qkv = metadata.count("deltashard_qkv") ? metadata.at("deltashard_qkv") : "";
  PeftImport out;
  struct Seen { int64_t rank; double scale; };
  std::map<std::string, Seen> layers;  // our layer -> rank, scale
  const int64_t d = m.d_model;
  for (const auto& [module, ab] : found) {
    const auto& [A, B] = ab;
    if (!A.defined() || !B.defined()) throw FileError(weights_file + ": module '" + module + "' lacks lora_A or lora_B");
    const int64_t R = A.size(0);
    if (A.dim() != 2 || B.dim() != 2 || B.size(1) != R) {
      throw FileError(weights_file + ": module '" + module + "': lora_A [r, in] and lora_B [out, r] disagree on r");
    }
    const Json* rp = pattern_for(c, "rank_pattern", module);
    if (rp && rp->get<double>() != static_cast<double>(R)) {
      throw FileError(weights_file + ": module '" + module + "': rank_pattern says " + rp->dump() +
                      ", the tensors have rank " + std::to_string(R));
    }
    const Json* ap = pattern_for(c, "alpha_pattern", module);
    const double scale = lora_scale(ap ? ap->get<double>() : alpha, R, rslora);
    const auto& targets = modules.at(module);
    auto put = [&](int64_t i, const std::string& t, const torch::Tensor& a, const torch::Tensor& b, int64_t rank) {
      const std::string l = layer_of(i, t);
      out.lora[l + ".lora_A"] = a.contiguous();
      out.lora[l + ".lora_B"] = b.contiguous();
      layers[l] = {rank, scale};
    };
    if (targets.size() == 1) {
      put(targets[0].first, targets[0].second, A, B, R);
      continue;
    }
    // GPT-2 c_attn: q, k, v rows of B.
    if (B.size(0) != 3 * d) throw FileError(weights_file + ": module '" + module + "': lora_B must have 3·d_model rows");
    const int64_t i = targets[0].first;
    std::vector<std::string> listed;
    for (size_t a = 0, b; a < meta_qkv.size(); a = b + 1) {
      b = meta_qkv.find(',', a);
      if (b == std::string::npos) b = meta_qkv.size();
      listed.push_back(meta_qkv.substr(a, b - a));
    }
    bool block = !listed.empty() && R % static_cast<int64_t>(listed.size()) == 0;
    if (block) {  // our own block layout: split exactly, checking the zero blocks really are zero
      const int64_t r = R / static_cast<int64_t>(listed.size());
      torch::Tensor rebuilt = torch::zeros_like(B);
      for (size_t k = 0; k < listed.size(); ++k) {
        const int64_t row = qkv_offset(listed[k]) * d, col = static_cast<int64_t>(k) * r;
        rebuilt.narrow(0, row, d).narrow(1, col, r).copy_(B.narrow(0, row, d).narrow(1, col, r));
      }
      block = torch::equal(rebuilt, B);
      if (block) {
        for (size_t k = 0; k < listed.size(); ++k) {
          const int64_t row = qkv_offset(listed[k]) * d, col = static_cast<int64_t>(k) * r;
          put(i, listed[k], A.narrow(0, col, r), B.narrow(0, row, d).narrow(1, col, r), r);
        }
      }
    }
    if (!block) {  // one A shared by q, k, v; B's row blocks
      for (const char* t : {"q", "k", "v"}) put(i, t, A, B.narrow(0, qkv_offset(t) * d, d), R);
    }
  }
  // DeltaShard trains one r and one scale: every imported layer must agree, and every layer must
  // have the same targets.
  const Seen first = layers.begin()->second;
  std::map<int64_t, std::set<std::string>> per_layer;
  for (const auto& [l, s] : layers) {
    if (s.rank != first.rank || std::abs(s.scale - first.scale) > 1e-9 * std::abs(first.scale)) {
      throw FileError(weights_file + ": layer '" + l + "' has rank " + std::to_string(s.rank) + " and scale " +
                      std::to_string(s.scale) + ", others rank " + std::to_string(first.rank) + " and scale " +
                      std::to_string(first.scale) + "; DeltaShard trains one r and one lora_alpha");
    }
    const int64_t i = std::stoll(l.substr(7, l.find('.', 7) - 7));
    per_layer[i].insert(l.substr(l.rfind('.') + 1));
  }
  for (const auto& [i, ts] : per_layer) {
    if (ts != per_layer.begin()->second) {
      throw FileError(weights_file + ": layer " + std::to_string(i) + " has other LoRA targets than layer " +
                      std::to_string(per_layer.begin()->first) + "; DeltaShard applies one target list to every layer");
    }
  }
  if (static_cast<int64_t>(per_layer.size()) != m.n_layer) {
    throw FileError(weights_file + ": LoRA covers " + std::to_string(per_layer.size()) + " of " +
                    std::to_string(m.n_layer) + " layers; layers_to_transform is not supported");
  }
  out.peft.method = PeftMethod::Lora;
  out.peft.r = first.rank;
  out.peft.use_rslora = rslora;
  out.peft.alpha = rslora ? first.scale * std::sqrt(static_cast<double>(first.rank)) : first.scale * first.rank;
  out.peft.dropout = c.number_or("lora_dropout", 0.0);
  out.peft.targets.clear();
  for (const auto& t : model_targets(m)) {
    if (per_layer.begin()->second.count(t)) out.peft.targets.push_back(t);
  }
  return out;
}

}  // namespace ds
