// The one way every command gets a model: run config + tensor-parallel group -> the transformer
// (architecture, base weights loaded slice by slice in model.dtype on train.device, PEFT injected
// with float32 trainable parameters, sharded over the group) and, when asked, the tokenizer the
// data uses. No optimizer and no data: the trainer adds those.
#pragma once

#include <optional>

#include "core/bpe_tokenizer.h"
#include "core/peft.h"
#include "core/transformer.h"
#include "dist/communicator.h"
#include "trainer/run_config.h"

namespace ds {

struct BuildOptions {
  bool load_weights = true;  // false: model.path's shapes only, uninitialised (counting, memory plans)
  bool tokenizer = false;    // read data.tokenizer (a tokenizer.json; none for bytes)
  bool meta = false;         // on the meta device: shapes and counts only, nothing allocated
};

struct BuiltModel {
  Transformer model{nullptr};
  ParamReport report;
  std::optional<BpeTokenizer> tokenizer;
  torch::Device device{torch::kCPU};
};

// `cfg` must be resolved (load_run_config does it). Seeds: the base's random initialisation (only
// when there is no model.path) draws from train.seed, the PEFT parameters from a stream of their
// own, so LoRA's A is the same whether the base was drawn or loaded.
BuiltModel build_model(const RunConfig& cfg, Communicator& tp, const BuildOptions& options = {});

// The seed of the stream PEFT parameters are drawn from (train.seed mixed with a constant).
uint64_t peft_seed(int64_t train_seed);

// The parameter options build_model uses for cfg on `device` (storage type, device, compute type).
ParamOptions param_options(const RunConfig& cfg, torch::Device device, bool random_init);

// The tokenizer data.tokenizer names (nullopt for bytes), checked against the model's vocabulary:
// ConfigError naming the file when it has more tokens than model.vocab_size.
std::optional<BpeTokenizer> load_tokenizer(const RunConfig& cfg);

// LibTorch's intra-op threads for this rank: train.threads, or the node's cores / its ranks.
void set_threads(const RunConfig& cfg);

// Makes every trainable parameter float32 (frozen ones keep the base's type).
void trainable_to_float32(torch::nn::Module& model);

}  // namespace ds
