#include "trainer/model_builder.h"

#include <thread>

#include "core/model_io.h"
#include "core/tokenizer.h"
#include "dist/mpi_env.h"
#include "dist/tp_layers.h"

namespace ds {

ParamOptions param_options(const RunConfig& cfg, torch::Device device, bool random_init) {
  ParamOptions p;
  p.options = torch::TensorOptions().dtype(scalar_type(cfg.model.dtype)).device(device);
  p.random_init = random_init;
  p.compute = compute_type(cfg.model.dtype, cfg.train.device);
  return p;
}

uint64_t peft_seed(int64_t train_seed) { return static_cast<uint64_t>(train_seed) ^ 0x5eed0f9e7full; }

void set_threads(const RunConfig& cfg) {
  const int t = cfg.train.threads;
  torch::set_num_threads(t > 0 ? t : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / local_size()));
}

void trainable_to_float32(torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  for (auto& p : model.parameters()) {
    if (p.requires_grad() && p.scalar_type() != torch::kFloat) p.set_data(p.detach().to(torch::kFloat));
  }
}

std::optional<BpeTokenizer> load_tokenizer(const RunConfig& cfg) {
  const int64_t vocab = cfg.model.vocab_size;
  const std::string& path = cfg.data.tokenizer;
  if (path == "bytes" || path == "auto") {
    if (vocab < kByteVocab) {
      throw ConfigError(cfg.file + ": data.tokenizer: bytes need 256 tokens but model.vocab_size is " +
                        std::to_string(vocab));
    }
    return std::nullopt;
  }
  if (is_directory(path)) {
    throw ConfigError(cfg.file + ": data.tokenizer: " + path + " is a directory; give the tokenizer.json file in it");
  }
  BpeTokenizer tok = read_bpe_tokenizer(path);
  if (tok.vocab_size() > vocab) {
    throw ConfigError(cfg.file + ": data.tokenizer: " + path + " has " + std::to_string(tok.vocab_size()) +
                      " tokens but model.vocab_size is " + std::to_string(vocab));
  }
  return tok;
}

BuiltModel build_model(const RunConfig& cfg, Communicator& tp, const BuildOptions& options) {
  BuiltModel out;
  out.device = options.meta ? torch::Device(torch::kMeta) : torch_device(cfg.train.device, local_rank());
  const ModelConfig& m = cfg.model;
  const bool load = options.load_weights && !options.meta && !m.path.empty();
  const ParamOptions params = param_options(cfg, out.device, m.path.empty() && !options.meta);
  const LinearFactory factory = tp_factory(tp, params);

  // Every rank draws the same initial weights; each TP rank keeps its slice.
  torch::manual_seed(static_cast<uint64_t>(cfg.train.seed));
  out.model = Transformer(m, factory);
  if (load) {
    LoadOptions lo;
    lo.check_finite = m.check_finite;
    load_model_weights(m.path, out.model, lo);
  }
  const int64_t tp_width_check = cfg.peft.method == PeftMethod::Adapter && cfg.peft.adapter_tp == AdapterTp::Sharded
                                     ? adapter_bottleneck(cfg.peft, m.d_model)
                                     : 0;
  if (tp_width_check % tp.size() != 0) {
    throw ConfigError(cfg.file + ": parallel.tp: " + std::to_string(tp.size()) + " does not divide the adapter " +
                      "bottleneck " + std::to_string(tp_width_check) + " (peft.adapter_size; or adapter_tp: replicated)");
  }
  torch::manual_seed(peft_seed(cfg.train.seed));
  ParamOptions fresh = params;  // adapters are new: always drawn, never loaded
  fresh.random_init = !options.meta;
  const LinearFactory adapter_factory =
      cfg.peft.adapter_tp == AdapterTp::Replicated ? dense_factory(fresh) : tp_factory(tp, fresh);
  out.report = apply_peft(out.model, cfg.peft, adapter_factory);
  trainable_to_float32(*out.model);
  out.model->recompute = cfg.train.recompute == Recompute::Layer;
  if (options.tokenizer) out.tokenizer = load_tokenizer(cfg);
  return out;
}

}  // namespace ds
