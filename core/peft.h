// Parameter-efficient fine-tuning applied to a Transformer in one call: add LoRA factors or
// bottleneck adapters, freeze what the method freezes, and count parameters exactly.
#pragma once

#include <string>
#include <vector>

#include "core/json_writer.h"
#include "core/transformer.h"
#include "core/yaml_fields.h"

namespace ds {

struct PeftConfig {
  std::string method = "lora";  // lora | adapter | full | none
  // LoRA
  int64_t r = 8;
  double alpha = 16;
  double dropout = 0.0;
  std::vector<std::string> targets{"q", "v"};  // any of q k v o gate up down
  bool use_rslora = false;
  std::string lora_init = "kaiming";  // kaiming | gaussian
  // Adapters
  int64_t adapter_size = 0;        // bottleneck m; 0 means d_model / adapter_reduction
  int64_t adapter_reduction = 16;
  std::string adapter_placement = "houlsby";  // houlsby | pfeiffer
  std::string adapter_nonlinearity = "relu";  // relu | gelu
  std::string adapter_tp = "sharded";  // sharded | replicated (only matters when tp > 1)
};

void parse_peft_config(const YAML::Node& node, const Locator& where, PeftConfig& cfg);

struct ModuleCount {
  std::string name;
  std::string kind;  // lora | adapter | norm | embedding | base
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

// The LoRA layers the targets select, by dotted module name.
std::vector<std::pair<std::string, Linear>> lora_layers(Transformer& model);

int64_t adapter_bottleneck(const PeftConfig& cfg, int64_t d_model);

}  // namespace ds
