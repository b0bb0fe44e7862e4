// LoRA adapters in Hugging Face PEFT's file format: adapter_config.json (peft_type LORA, r,
// lora_alpha, target_modules, rank_pattern, alpha_pattern, ...) and adapter_model.safetensors with
// keys base_model.model.<module>.lora_A.weight [r, in] and .lora_B.weight [out, r].
//
// GPT-2 fuses q, k, v into one Conv1D (attn.c_attn, out = 3d). Separate q, k, v LoRAs of rank r
// are written as ONE LoRA of rank R = n·r (n = how many of q, k, v are targeted) with
//   A = [A_q; A_k; A_v]  (R × d)      B = blockdiag(B_q, B_k, B_v) placed in rows q | k | v  (3d × R)
// so B·A = [B_q·A_q; B_k·A_k; B_v·A_v] exactly, and rank_pattern/alpha_pattern give c_attn rank R
// and alpha' with alpha'/R = alpha/r (rsLoRA: alpha'/√R = alpha/√r). Reading, such a block
// layout (marked in the file's metadata) splits back exactly; any other c_attn LoRA (PEFT's own:
// one A shared by q, k, v) becomes q, k, v LoRAs that share A and take B's row blocks, also exact.
#pragma once

#include <map>
#include <string>

#include "core/json.h"
#include "core/model_config.h"
#include "core/peft.h"
#include "core/safetensors.h"

namespace ds {

struct PeftFiles {
  Json config;  // adapter_config.json
  NamedTensors tensors;
  std::map<std::string, std::string> metadata;
};

// `lora`: DeltaShard names (blocks.N.attn.q.lora_A, ...), whole tensors.
PeftFiles export_peft(const ModelConfig& model, const PeftConfig& peft,
                      const std::map<std::string, torch::Tensor>& lora, const std::string& base_model);

struct PeftImport {
  PeftConfig peft;  // method lora, r, alpha, use_rslora, targets
  std::map<std::string, torch::Tensor> lora;
};

// `source` is the adapter directory. FileError naming its adapter_config.json or
// adapter_model.safetensors for anything DeltaShard cannot represent: another peft_type, bias
// training, DoRA, modules_to_save, per-layer ranks or scales that differ, unknown modules.
PeftImport import_peft(const ModelConfig& model, const Json& config,
                       const std::map<std::string, torch::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata, const std::string& source);

}  // namespace ds
