// The shape of a transformer, as a plain struct filled from the YAML `model` section or a model
// directory's config.json. `describe` is its one table of fields: reading, writing and checking
// a config all go through it.
#pragma once

#include <cstdint>
#include <string>

#include "core/config_fields.h"
#include "core/dtype.h"

namespace ds {

// GPT-2: layernorm, gelu, learned positions, biases. LLaMA: rmsnorm, swiglu (gate, up, down),
// rotary positions, no biases, grouped-query attention (n_kv_head < n_head).
enum class NormKind { LayerNorm, RmsNorm };
enum class Activation { Gelu, SwiGlu };
enum class Positions { Learned, Rope };
// How a model directory names and lays out its tensors (and how a merged model is written back).
enum class Layout { DeltaShard, Gpt2, Llama };

DS_ENUM_NAMES(NormKind, {NormKind::LayerNorm, "layernorm"}, {NormKind::RmsNorm, "rmsnorm"});
DS_ENUM_NAMES(Activation, {Activation::Gelu, "gelu"}, {Activation::SwiGlu, "swiglu"});
DS_ENUM_NAMES(Positions, {Positions::Learned, "learned"}, {Positions::Rope, "rope"});
DS_ENUM_NAMES(Layout, {Layout::DeltaShard, "deltashard"}, {Layout::Gpt2, "gpt2"}, {Layout::Llama, "llama"});

struct ModelConfig {
  std::string path;  // a model directory to load; when set, the sizes below come from it
  DType dtype = DType::Fp32;  // the frozen base's type in memory
  bool check_finite = false;  // refuse base weights holding NaN or Inf when loading
  int64_t vocab_size = 256;
  int64_t n_layer = 4;
  int64_t n_head = 4;
  int64_t n_kv_head = 0;  // 0: n_head
  int64_t d_model = 128;
  int64_t d_ff = 512;
  int64_t max_seq_len = 256;
  bool tie_embeddings = true;
  NormKind norm = NormKind::LayerNorm;
  Activation activation = Activation::Gelu;
  Positions positions = Positions::Learned;
  bool bias = true;
  double rope_theta = 10000.0;
  double norm_eps = 1e-5;
  double init_std = 0.02;
  // Where the weights came from; not a YAML key: set by the model-directory reader.
  Layout layout = Layout::DeltaShard;

  int64_t head_dim() const { return d_model / n_head; }
  int64_t kv_heads() const { return n_kv_head > 0 ? n_kv_head : n_head; }
};

// The architecture's fields: what a model directory's config.json determines. A YAML model
// section that sets model.path may repeat them only with the directory's values.
template <class V>
void describe_architecture(V& v, ModelConfig& c) {
  const int64_t big = int64_t{1} << 40;
  v("vocab_size", c.vocab_size, 1, big);
  v("n_layer", c.n_layer, 1, 4096);
  v("n_head", c.n_head, 1, 4096);
  v("n_kv_head", c.n_kv_head, 0, 4096);
  v("d_model", c.d_model, 1, big);
  v("d_ff", c.d_ff, 1, big);
  v("max_seq_len", c.max_seq_len, 1, big);
  v("tie_embeddings", c.tie_embeddings);
  v("norm", c.norm);
  v("activation", c.activation);
  v("positions", c.positions);
  v("bias", c.bias);
  v("rope_theta", c.rope_theta, 1.0, 1e12);
  v("norm_eps", c.norm_eps, 0.0, 1.0);
  v("init_std", c.init_std, 0.0, 10.0);
}

// The whole `model:` section.
template <class V>
void describe(V& v, ModelConfig& c) {
  v("path", c.path);
  v("dtype", c.dtype);
  v("check_finite", c.check_finite);
  describe_architecture(v, c);
}

// Fills `cfg` from a `model:` mapping; throws ConfigError naming the key and line.
void parse_model_config(const YAML::Node& node, const Locator& where, ModelConfig& cfg);
// Checks that span keys (heads divide the width, rope needs an even head size); `where` prefixes
// the message (a file, or "model"). Every single value is in its range by construction.
void validate_model_config(const ModelConfig& cfg, const std::string& where);

}  // namespace ds
