// The shape of a transformer, as a plain struct filled from the YAML `model` section or a
// model directory's config.json.
#pragma once

#include <cstdint>
#include <string>

#include "core/yaml_fields.h"

namespace ds {

struct ModelConfig {
  std::string path;  // a model directory to load; when set, the sizes below come from it
  int64_t vocab_size = 256;
  int64_t n_layer = 4;
  int64_t n_head = 4;
  int64_t d_model = 128;
  int64_t d_ff = 512;
  int64_t max_seq_len = 256;
  bool tie_embeddings = true;
  // GPT-2: layernorm, gelu, learned positions, biases. LLaMA: rmsnorm, swiglu (gate, up, down),
  // rotary positions, no biases, grouped-query attention (n_kv_head < n_head).
  std::string norm = "layernorm";     // layernorm | rmsnorm
  std::string activation = "gelu";    // gelu | swiglu
  std::string positions = "learned";  // learned | rope
  bool bias = true;
  int64_t n_kv_head = 0;  // 0: n_head
  double rope_theta = 10000.0;
  double norm_eps = 1e-5;
  double init_std = 0.02;
  // Where the weights came from and how a merged model is written back: deltashard | gpt2 | llama
  // (Hugging Face layouts). Not a YAML key; set by the model-directory reader.
  std::string layout = "deltashard";

  int64_t head_dim() const { return d_model / n_head; }
  int64_t kv_heads() const { return n_kv_head > 0 ? n_kv_head : n_head; }
};

// Fills `cfg` from a `model:` mapping; throws ConfigError naming the key and line.
void parse_model_config(const YAML::Node& node, const Locator& where, ModelConfig& cfg);
// Shape checks that span keys (heads divide the width, ...).
void validate_model_config(const ModelConfig& cfg, const std::string& where);

}  // namespace ds
