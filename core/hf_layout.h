// Hugging Face checkpoint layouts, to and from DeltaShard's parameter names:
//   GPT-2  (model_type gpt2): transformer.h.N.attn.c_attn is a Conv1D, weight stored [in, out] with
//          q, k, v fused along out; c_proj, mlp.c_fc, mlp.c_proj are Conv1Ds too; tied LM head.
//   LLaMA  (model_type llama): model.layers.N.self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj as
//          nn.Linear [out, in]; RMSNorm weights; rotary positions; grouped-query attention.
// Config translation both ways; tensors are renamed, split/fused and transposed, never rescaled.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/model_config.h"
#include "core/safetensors.h"

namespace ds {

// config.json of a gpt2 or llama model -> ModelConfig (layout set). FileError names the file and
// key for anything DeltaShard cannot represent (rope_scaling, attention biases, other activations).
ModelConfig config_from_hf(const Json& json, const std::string& path);
// Throws ConfigError, naming the key, when `cfg` cannot be written in `layout`
// (gpt2 needs layernorm, gelu, learned positions, biases, tied embeddings; llama needs rmsnorm,
// swiglu, rope, no biases).
void check_layout(const ModelConfig& cfg, Layout layout);
// ModelConfig (layout gpt2 or llama) -> the config.json transformers reads.
Json hf_config_json(const ModelConfig& cfg);

// HF tensors -> DeltaShard names and layout. A missing tensor is a FileError naming `source`
// and the HF name.
std::map<std::string, torch::Tensor> from_hf(const std::map<std::string, torch::Tensor>& hf, const ModelConfig& cfg,
                                             const std::string& source);
// One tensor of a layout's files and how it is made from DeltaShard's tensors (renamed, fused along
// a dimension, transposed; never rescaled): make(sources) in the order `sources` names them.
struct LayoutTensor {
  std::string name;
  std::vector<std::string> sources;  // DeltaShard parameter names
  std::function<torch::Tensor(const std::vector<torch::Tensor>&)> make;
};
// Every tensor of cfg.layout's files (gpt2 or llama), in file order: GPT-2 with the
// "transformer." prefix and without the tied head. One entry needs at most one layer's tensors
// (GPT-2's c_attn fuses q, k, v), so a writer can make them one at a time.
std::vector<LayoutTensor> hf_layout_tensors(const ModelConfig& cfg);
// DeltaShard base tensors -> HF names and layout: hf_layout_tensors applied to all of them.
NamedTensors to_hf(const NamedTensors& ours, const ModelConfig& cfg);

// The HF module path of a DeltaShard LoRA-able layer "blocks.N.attn.q" (for PEFT adapter files):
// llama: model.layers.N.self_attn.q_proj; gpt2: transformer.h.N.attn.c_attn (q, k, v share it).
std::string hf_module_name(const std::string& ours, const ModelConfig& cfg);

}  // namespace ds
