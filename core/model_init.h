// A randomly initialised model directory (deltashard init), written tensor by tensor. How each
// tensor starts is read off a meta-device model, so the rules are the model's own (the modules'
// init_std: N(0, init_std²) for most matrices, init_std/sqrt(2·n_layer) for attn.o and mlp.down,
// init_std/2 for learned positions; norm weights one; biases zero). The values come from a
// generator seeded by (seed, DeltaShard tensor name), so they do not depend on the layout, the
// shard size or the order the tensors are made in, and one tensor at a time is ever held.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/model_io.h"
#include "core/transformer.h"

namespace ds {

struct InitRule {
  enum class Kind { Normal, Ones, Zeros };
  Kind kind = Kind::Zeros;
  double stddev = 0;  // Normal only
};

// The model of `cfg`, unsharded, on the meta device with its base parameters in `dtype`: names,
// shapes and types only, nothing allocated.
Transformer meta_model(const ModelConfig& cfg, torch::ScalarType dtype = torch::kFloat);

// How each parameter of `model` starts, by name, read off its modules (Linear's spec.init_std,
// Embedding's init_std, Norm). std::logic_error for a parameter of a module without a rule.
std::map<std::string, InitRule> init_rules(torch::nn::Module& model);

// The 32-bit seed (mt19937 keeps 32 bits) of tensor `name`'s generator.
uint64_t tensor_seed(uint64_t seed, const std::string& name);
// Tensor `name` drawn by `rule` in float32 on the CPU, from its own generator.
torch::Tensor init_tensor(const std::string& name, const std::vector<int64_t>& shape, const InitRule& rule,
                          uint64_t seed);

// --layout auto: llama when the model fits that layout (rmsnorm, swiglu, rope, no biases), else
// gpt2 when it fits GPT-2's (layernorm, gelu, learned positions, biases, tied), else deltashard.
Layout auto_layout(const ModelConfig& cfg);

struct InitOptions {
  DType dtype = DType::Fp32;  // the files' storage type (drawn in float32, then rounded)
  uint64_t seed = 0;
};

// The weight files of a freshly initialised model of `cfg` in cfg.layout: every tensor planned
// from the meta model, each made only when make(i) is called.
ModelFiles init_model_files(const ModelConfig& cfg, const InitOptions& options);

// The `model:` section of a YAML file, read by the strict model reader (parse_model_config): a
// model file such as configs/models/llama-7b.yaml, or a whole run config, whose other sections are
// ignored. ConfigError naming the file (and line) when there is no model section, a key is
// unknown or a value wrong, or model.path is set (that names an existing model).
ModelConfig read_model_section(const std::string& file);

}  // namespace ds
