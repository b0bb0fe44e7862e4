// Parameter-efficient fine-tuning applied to a Transformer in one call: add LoRA factors or
// bottleneck adapters, freeze what the method freezes, and count parameters exactly.
#pragma once

#include <string>
#include <vector>

#include "core/json.h"
#include "core/transformer.h"
#include "core/yaml_fields.h"

namespace ds {

enum class PeftMethod { Lora, Adapter, Full, None };
enum class AdapterPlacement { Houlsby, Pfeiffer };
// sharded: W_down column-parallel, W_up row-parallel (+1 all-reduce each way per adapter);
// replicated: every TP rank holds the whole adapter (no collective, tp x the memory).
enum class AdapterTp { Sharded, Replicated };

DS_ENUM_NAMES(PeftMethod,
              {PeftMethod::Lora, "lora"},
              {PeftMethod::Adapter, "adapter"},
              {PeftMethod::Full, "full"},
              {PeftMethod::None, "none"});
DS_ENUM_NAMES(AdapterPlacement, {AdapterPlacement::Houlsby, "houlsby"}, {AdapterPlacement::Pfeiffer, "pfeiffer"});
DS_ENUM_NAMES(AdapterTp, {AdapterTp::Sharded, "sharded"}, {AdapterTp::Replicated, "replicated"});

// The LoRA target names, in model order.
const std::vector<std::string>& lora_target_names();

struct PeftConfig {
  PeftMethod method = PeftMethod::Lora;
  // LoRA
  int64_t r = 8;
  double alpha = 16;
  double dropout = 0.0;
  std::vector<std::string> targets{"q", "v"};  // any of lora_target_names()
  bool use_rslora = false;
  LoraInit lora_init = LoraInit::Kaiming;
  // Adapters
  int64_t adapter_size = 0;        // bottleneck m; 0 means d_model / adapter_reduction
  int64_t adapter_reduction = 16;
  AdapterPlacement adapter_placement = AdapterPlacement::Houlsby;
  Nonlinearity adapter_nonlinearity = Nonlinearity::Relu;
  AdapterTp adapter_tp = AdapterTp::Sharded;  // only matters when tp > 1
};

template <class V>
void describe(V& v, PeftConfig& c) {
  v("method", c.method);
  v("r", c.r, 1, int64_t{1} << 20);
  v("alpha", c.alpha, 0.0, 1e9);
  v("dropout", c.dropout, 0.0, 0.999);
  v("targets", c.targets, lora_target_names());
  v("use_rslora", c.use_rslora);
  v("lora_init", c.lora_init);
  v("adapter_size", c.adapter_size, 0, int64_t{1} << 30);
  v("adapter_reduction", c.adapter_reduction, 1, int64_t{1} << 30);
  v("adapter_placement", c.adapter_placement);
  v("adapter_nonlinearity", c.adapter_nonlinearity);
  v("adapter_tp", c.adapter_tp);
}

void parse_peft_config(const YAML::Node& node, const Locator& where, PeftConfig& cfg);

// What a parameter belongs to, by its name.
enum class ModuleKind { Lora, Adapter, Norm, Embedding, Base };
DS_ENUM_NAMES(ModuleKind,
              {ModuleKind::Lora, "lora"},
              {ModuleKind::Adapter, "adapter"},
              {ModuleKind::Norm, "norm"},
              {ModuleKind::Embedding, "embedding"},
              {ModuleKind::Base, "base"});
ModuleKind module_kind(const std::string& param_name);

struct ModuleCount {
  std::string name;
  ModuleKind kind = ModuleKind::Base;
  int64_t params = 0;     // full (unsharded) count
  int64_t trainable = 0;
};

struct ParamReport {
  int64_t total_params = 0;
  int64_t trainable_params = 0;
  int64_t trainable_bytes = 0;
  int64_t delta_params = 0;  // what the method added: LoRA factors or adapters
  std::vector<ModuleCount> modules;
  Json to_json() const;
};

// Adds the method's parameters (adapters are built with `adapter_factory`), sets requires_grad
// on exactly the trainable ones, and returns the count.
ParamReport apply_peft(Transformer& model, const PeftConfig& cfg, const LinearFactory& adapter_factory);

// Exact full-model counts (a tensor-parallel shard is counted as its whole tensor, once).
ParamReport count_params(Transformer& model);

// The layers of one block that LoRA can target, by target name, in model order: q k v o
// (gate) up down.
std::vector<std::pair<std::string, Linear>> target_layers(Block& block);

// The layers `targets` name in every block, in the order LoRA is added to them (blocks, then the
// targets as listed); ConfigError for a target the model lacks.
std::vector<Linear> targeted_layers(Transformer& model, const std::vector<std::string>& targets);

// The LoRA layers the targets select, by dotted module name.
std::vector<std::pair<std::string, Linear>> lora_layers(Transformer& model);

int64_t adapter_bottleneck(const PeftConfig& cfg, int64_t d_model);

// Refuses a PEFT setup the model cannot hold, before anything is built: a LoRA rank above the
// smaller side of a target matrix (the update would not be low-rank; its A or B would be
// rank-deficient by construction) and an adapter bottleneck that rounds to 0. Messages start with
// `file`.
void check_peft_fits(const PeftConfig& cfg, const ModelConfig& model, const std::string& file);

}  // namespace ds
