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
// Writes config.json and the weights in cfg.layout; `tensors` are full (unsharded) base weights
// with DeltaShard names. Above `shard_bytes` (> 0) the weights are split into HF-style shards.
// The tokenizer files of the model directory `tokenizer_from` (tokenizer.json, vocab.json,
// merges.txt, tokenizer_config.json, special_tokens_map.json), where present, are copied along, so
// a converted, merged or selected model keeps its tokenizer. config.json is written last: a
// directory that has one is complete.
void save_model_dir(const std::string& dir, const ModelConfig& cfg, const NamedTensors& tensors,
                    int64_t shard_bytes = 0, const std::string& tokenizer_from = "");
// The model directory's tokenizer.json, or "" when it has none.
std::string tokenizer_in(const std::string& dir);
// Every weight of a model directory, with DeltaShard names (HF layouts converted).
std::map<std::string, torch::Tensor> read_model_tensors(const std::string& dir, const ModelConfig& cfg);

// The base-model tensors of an unsharded model (no LoRA factors), by parameter name.
NamedTensors base_tensors(Transformer& model);

// Copies every selected parameter of `module` from `full`, slicing tensor-parallel shards.
// A missing name or a full shape that disagrees is a FileError naming `source` and the tensor.
void load_params(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& full,
                 const std::string& source, const std::function<bool(const std::string&)>& select);

// Loads a model directory's weights into `model` (built with the directory's config).
void load_model_weights(const std::string& dir, Transformer& model);

bool is_delta_param(const std::string& name);  // LoRA factor or adapter parameter

}  // namespace ds
