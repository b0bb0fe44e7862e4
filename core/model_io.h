// Model directories and loading named full-size tensors into a possibly sharded module: each rank
// copies its own slice of every tensor. A directory is DeltaShard's own (config.json with
// model_type deltashard-gpt) or Hugging Face's GPT-2 or LLaMA layout (core/hf_layout.h), with one
// model.safetensors or shards listed in model.safetensors.index.json.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "core/model_config.h"
#include "core/safetensors.h"
#include "core/transformer.h"

namespace ds {

ModelConfig read_model_config(const std::string& dir);

// The weight tensors of a model directory in cfg.layout, planned before any is made: `tensors`
// (names in the layout, dtypes, shapes) in file order, and make(i), which builds tensor i when its
// turn comes, so a writer holds one of them at a time (one layer's sources for GPT-2's fused c_attn).
struct ModelFiles {
  std::vector<SafetensorsEntry> tensors;
  std::function<torch::Tensor(size_t)> make;
};
// The files of a model whose DeltaShard base tensors are `ours` (names, types and shapes, in model
// order: meta tensors will do), making each file tensor from the tensors `fetch` returns by
// DeltaShard name: renamed, fused and transposed as cfg.layout says (core/hf_layout.h).
ModelFiles layout_files(const ModelConfig& cfg, const NamedTensors& ours,
                        std::function<torch::Tensor(const std::string&)> fetch);
// Which planned tensors go in which file: one file when `shard_bytes` <= 0 or everything fits,
// else consecutive runs of at most `shard_bytes` (a larger tensor alone), as Hugging Face shards.
std::vector<std::vector<size_t>> plan_shards(const std::vector<SafetensorsEntry>& tensors, int64_t shard_bytes);
// Writes config.json and the weights in cfg.layout into `dir`; `tensors` are full (unsharded) base
// weights with DeltaShard names. Above `shard_bytes` (> 0) the weights are split into HF-style
// shards. The tokenizer files of the model directory `tokenizer_from` (tokenizer.json, vocab.json,
// merges.txt, tokenizer_config.json, special_tokens_map.json), where present, are copied along, so
// a converted, merged or selected model keeps its tokenizer. Returns the names written.
std::vector<std::string> write_model_files(const std::string& dir, const ModelConfig& cfg, const NamedTensors& tensors,
                                           int64_t shard_bytes = 0, const std::string& tokenizer_from = "");
// The same from a plan: each tensor is made, written and dropped in turn (files from plan_shards).
std::vector<std::string> write_model_files(const std::string& dir, const ModelConfig& cfg, const ModelFiles& files,
                                           int64_t shard_bytes = 0, const std::string& tokenizer_from = "");
// A model directory of its own: `dir` is claimed for a model (refused when it exists, is not empty
// and is not a DeltaShard model directory, naming `option`); a model written there before is
// replaced file by file, its marker removed first and the new one written last.
void save_model_dir(const std::string& dir, const ModelConfig& cfg, const NamedTensors& tensors,
                    int64_t shard_bytes = 0, const std::string& tokenizer_from = "", const std::string& option = "--out");
void save_model_dir(const std::string& dir, const ModelConfig& cfg, const ModelFiles& files, int64_t shard_bytes = 0,
                    const std::string& tokenizer_from = "", const std::string& option = "--out");
// The model directory's tokenizer.json, or "" when it has none.
std::string tokenizer_in(const std::string& dir);
// Every weight of a model directory, with DeltaShard names (HF layouts converted), as views into
// the memory-mapped files: nothing is copied until a caller copies it.
std::map<std::string, torch::Tensor> read_model_tensors(const std::string& dir, const ModelConfig& cfg);

// The base-model tensors of an unsharded model (no LoRA factors), by parameter name.
NamedTensors base_tensors(Transformer& model);

struct LoadOptions {
  bool check_finite = false;   // refuse a tensor holding NaN or Inf
  bool release_pages = true;   // drop each source tensor's file pages once copied
};

// Copies every selected parameter of `module` from `full`, each rank only its tensor-parallel
// slice, converting to the parameter's type and device. A missing name, a full shape that
// disagrees, an integer tensor where a float is expected, or (check_finite) NaN/Inf is a
// FileError naming `source` and the tensor. Peak memory: the parameters plus one source tensor's
// pages, when the sources are file mappings.
void load_params(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& full,
                 const std::string& source, const std::function<bool(const std::string&)>& select,
                 const LoadOptions& options = {});

// Loads a model directory's weights into `model` (built with the directory's config).
void load_model_weights(const std::string& dir, Transformer& model, const LoadOptions& options = {});

bool is_delta_param(const std::string& name);  // LoRA factor or adapter parameter

}  // namespace ds
