#include "trainer/session.h"

#include <chrono>
#include <set>
#include <cmath>
#include <thread>

#include "core/bpe_tokenizer.h"
#include "core/model_io.h"
#include "core/tokenizer.h"
#include "dist/mpi_env.h"
#include "dist/tp_gather.h"
#include "dist/tp_layers.h"
#include "trainer/checkpoint.h"

namespace ds {

ModelConfig resolve_model_config(const RunConfig& cfg) {
  if (cfg.model.path.empty()) return cfg.model;
  ModelConfig m = read_model_config(cfg.model.path);
  m.path = cfg.model.path;
  return m;
}

TrainSession::TrainSession(RunConfig cfg, ProcessGrid& grid, const std::string& resume_dir, bool need_data)
    : cfg_(std::move(cfg)), grid_(grid) {
  const auto& t = cfg_.train;
  if (t.device != "cpu") {
    throw ConfigError(cfg_.file + ": train.device: '" + t.device + "' needs a CUDA build of LibTorch; this build runs on cpu");
  }
  const int threads = t.threads > 0 ? t.threads
                                    : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / local_size());
  torch::set_num_threads(threads);

  // Every rank draws the same initial weights; each TP rank keeps its slice.
  torch::manual_seed(static_cast<uint64_t>(t.seed));
  ModelConfig mcfg = resolve_model_config(cfg_);
  if (mcfg.n_head % grid_.tp != 0) {
    throw ConfigError(cfg_.file + ": parallel.tp " + std::to_string(grid_.tp) + " does not divide model.n_head " +
                      std::to_string(mcfg.n_head));
  }
  if (mcfg.kv_heads() % grid_.tp != 0) {
    throw ConfigError(cfg_.file + ": parallel.tp " + std::to_string(grid_.tp) +
                      " does not divide the model's key/value heads " + std::to_string(mcfg.kv_heads()));
  }
  if (t.seq_len > mcfg.max_seq_len) {
    throw ConfigError(cfg_.file + ": train.seq_len " + std::to_string(t.seq_len) + " exceeds the model's max_seq_len " +
                      std::to_string(mcfg.max_seq_len));
  }
  cfg_.model = mcfg;
  const LinearFactory factory = tp_factory(*grid_.tp_group);
  model_ = Transformer(mcfg, factory);
  if (!mcfg.path.empty()) load_model_weights(mcfg.path, model_);
  const LinearFactory adapter_factory = cfg_.peft.adapter_tp == "replicated" ? dense_factory() : factory;
  report_ = apply_peft(model_, cfg_.peft, adapter_factory);

  std::string ckpt;
  if (!resume_dir.empty()) {
    ckpt = checkpoint_dir_to_read(resume_dir);
    load_trainable(ckpt);
    step_ = read_checkpoint_state(ckpt).step;
  }
  for (auto& item : model_->named_parameters()) {
    if (item.value().requires_grad()) trainable_.emplace_back(item.key(), item.value());
  }
  GradSyncOptions so{cfg_.parallel.bucket_mb, cfg_.parallel.overlap_grad_sync, cfg_.parallel.zero};
  sync_ = std::make_unique<GradSync>(trainable_, collect_param_shards(*model_), grid_, so);
  opt_ = std::make_unique<FlatAdamW>(sync_->optim_shards(),
                                     AdamWOptions{t.beta1, t.beta2, t.eps, t.weight_decay});
  if (!ckpt.empty()) load_optimizer(ckpt);
  if (need_data) load_data();
}

void TrainSession::load_data() {
  const DataConfig& d = cfg_.data;
  const int64_t vocab = model_->cfg.vocab_size;
  std::string path = d.tokenizer;
  if (path == "auto") {
    path = tokenizer_in(cfg_.model.path);
    if (path.empty()) path = "bytes";
  }
  if (path == "bytes") {
    if (vocab < kByteVocab) {
      throw ConfigError(cfg_.file + ": data.tokenizer: bytes need 256 tokens but model.vocab_size is " +
                        std::to_string(vocab));
    }
    data_ = std::make_unique<TokenDataset>(TokenDataset::load(d));
    return;
  }
  const BpeTokenizer tok = read_bpe_tokenizer(path);
  if (tok.vocab_size() > vocab) {
    throw ConfigError(cfg_.file + ": data.tokenizer: " + path + " has " + std::to_string(tok.vocab_size()) +
                      " tokens but model.vocab_size is " + std::to_string(vocab));
  }
  data_ = std::make_unique<TokenDataset>(TokenDataset::load(d, &tok));
}

StepResult TrainSession::step() {
  const auto& t = cfg_.train;
  Ledger& ledger = *grid_.ledger;
  LedgerScope scope(ledger);
  const auto t0 = std::chrono::steady_clock::now();
  model_->train();
  // Dropout masks: the same on the ranks of a TP group (they hold the same activations),
  // different across DP ranks, and a function of the step alone, so resuming is exact.
  torch::manual_seed(static_cast<uint64_t>(t.seed) * 1000003ull + static_cast<uint64_t>(grid_.dp_rank) * 7919ull +
                     static_cast<uint64_t>(step_) * 104729ull);
  sync_->zero_grad();
  double loss_sum = 0;
  for (int64_t a = 0; a < t.grad_accum; ++a) {
    // Global batch `step_` holds micro_batch × dp × grad_accum windows; this rank takes its block.
    const int64_t first = (a * grid_.dp + grid_.dp_rank) * t.micro_batch;
    const torch::Tensor batch = data_->train_windows(static_cast<uint64_t>(t.seed), step_, first, t.micro_batch, t.seq_len);
    const torch::Tensor x = batch.narrow(1, 0, t.seq_len);
    const torch::Tensor y = batch.narrow(1, 1, t.seq_len);
    if (a == t.grad_accum - 1) sync_->arm_overlap();
    ledger.set_phase("fwd");
    torch::Tensor loss = lm_loss(model_->forward(x), y) / static_cast<double>(t.grad_accum);
    ledger.set_phase("bwd");
    loss.backward();
    loss_sum += loss.item<double>();
  }
  ledger.set_phase("step");
  sync_->sync();
  StepResult r;
  r.step = step_;
  if (t.grad_clip > 0) {
    r.grad_norm = std::sqrt(sync_->grad_norm_sq());
    if (r.grad_norm > t.grad_clip) {
      const double scale = t.grad_clip / (r.grad_norm + 1e-6);
      for (auto& s : sync_->optim_shards()) s.grad.mul_(scale);
    }
  }
  r.lr = lr_at(step_, t.steps, t.warmup_steps, t.lr, t.min_lr_ratio);
  auto shards = sync_->optim_shards();
  opt_->step(shards, r.lr);
  sync_->after_step();
  torch::Tensor l = torch::full({1}, loss_sum, torch::kDouble);
  grid_.dp_group->all_reduce(l, ReduceOp::Avg, "dp.loss");
  ledger.set_phase("other");
  r.loss = l.item<double>();
  r.tokens = t.micro_batch * t.grad_accum * grid_.dp * t.seq_len;
  r.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  r.comm = scope.records();
  ++step_;
  return r;
}

EvalResult TrainSession::evaluate() {
  const auto& t = cfg_.train;
  torch::NoGradGuard no_grad;
  model_->eval();
  grid_.ledger->set_phase("eval");
  int64_t windows = data_->num_eval_windows(t.seq_len);
  if (t.eval_windows > 0) windows = std::min(windows, t.eval_windows);
  double loss_tokens = 0, tokens = 0;
  std::vector<int64_t> mine;
  for (int64_t i = grid_.dp_rank; i < windows; i += grid_.dp) mine.push_back(i);
  for (size_t b = 0; b < mine.size(); b += static_cast<size_t>(t.micro_batch)) {
    const int64_t n = std::min<int64_t>(t.micro_batch, static_cast<int64_t>(mine.size() - b));
    std::vector<torch::Tensor> rows;
    for (int64_t j = 0; j < n; ++j) rows.push_back(data_->eval_windows(mine[b + static_cast<size_t>(j)], 1, t.seq_len));
    const torch::Tensor batch = torch::cat(rows);
    const torch::Tensor x = batch.narrow(1, 0, t.seq_len), y = batch.narrow(1, 1, t.seq_len);
    const double k = static_cast<double>(y.numel());
    loss_tokens += lm_loss(model_->forward(x), y).item<double>() * k;
    tokens += k;
  }
  torch::Tensor acc = torch::tensor({loss_tokens, tokens}, torch::kDouble);
  grid_.dp_group->all_reduce(acc, ReduceOp::Sum, "dp.eval");
  grid_.ledger->set_phase("other");
  EvalResult r;
  r.tokens = static_cast<int64_t>(acc[1].item<double>());
  if (r.tokens == 0) throw std::runtime_error("evaluation: the held-out split has no window of train.seq_len + 1 tokens");
  r.loss = acc[0].item<double>() / acc[1].item<double>();
  r.perplexity = std::exp(r.loss);
  return r;
}

namespace {
NamedTensors detached(const std::vector<std::pair<std::string, torch::Tensor>>& v) {
  NamedTensors out;
  for (const auto& [n, t] : v) out.emplace_back(n, t.detach());
  return out;
}
}  // namespace

void TrainSession::save_checkpoint(const std::string& dir) {
  const auto shards = collect_param_shards(*model_);
  CheckpointFiles f;
  f.trainable = gather_tp(detached(trainable_), shards, *grid_.tp_group, "checkpoint.gather_params");
  const auto m = sync_->unflatten(opt_->m);
  const auto v = sync_->unflatten(opt_->v);
  NamedTensors moments;
  for (const auto& [n, p] : trainable_) {
    moments.emplace_back("exp_avg." + n, m.at(n));
    moments.emplace_back("exp_avg_sq." + n, v.at(n));
  }
  std::map<std::string, ParamShard> moment_shards;
  for (const auto& [n, s] : shards) {
    moment_shards["exp_avg." + n] = s;
    moment_shards["exp_avg_sq." + n] = s;
  }
  f.optimizer = gather_tp(moments, moment_shards, *grid_.tp_group, "checkpoint.gather_state");
  f.state = {step_, opt_->steps(), grid_.dp, grid_.tp, cfg_.peft.method};
  f.config_yaml = dump_run_config(cfg_);
  NamedTensors base;
  if (cfg_.peft.method == "full") {
    // A fully fine-tuned checkpoint is also a model directory that model.path can load.
    base = gather_tp(base_tensors(model_), shards, *grid_.tp_group, "checkpoint.gather_base");
    const ModelConfig mc = cfg_.model;
    f.extra = [base, mc](const std::string& d) { save_model_dir(d, mc, base, 0, mc.path); };
  }
  if (grid_.world_rank == 0) write_checkpoint(dir, f);
  grid_.world->barrier("checkpoint.done");
}

void TrainSession::load_trainable(const std::string& dir) {
  const std::string path = checkpoint_dir_to_read(dir) + "/trainable.safetensors";
  const SafetensorsFile f = read_safetensors(path);
  for (const auto& [name, t] : f.tensors) {
    bool found = false;
    for (const auto& item : model_->named_parameters()) found = found || item.key() == name;
    if (!found) {
      throw FileError(path + ": tensor '" + name + "' is not a parameter of this model with peft.method " +
                      cfg_.peft.method + " (was the checkpoint made with another method or targets?)");
    }
  }
  std::set<std::string> trainable;
  for (const auto& item : model_->named_parameters()) {
    if (item.value().requires_grad()) trainable.insert(item.key());
  }
  load_params(*model_, f.tensors, path, [&](const std::string& n) { return trainable.count(n) > 0; });
}

void TrainSession::load_optimizer(const std::string& dir) {
  const std::string path = dir + "/optimizer.safetensors";
  const SafetensorsFile f = read_safetensors(path);
  const auto shards = collect_param_shards(*model_);
  std::map<std::string, torch::Tensor> m, v;
  for (const auto& [n, p] : trainable_) {
    auto sh = shards.find(n);
    const ParamShard s = sh != shards.end() ? sh->second : ParamShard{};
    m[n] = local_shard(f.at("exp_avg." + n, path), s);
    v[n] = local_shard(f.at("exp_avg_sq." + n, path), s);
  }
  opt_->m = sync_->flatten(m);
  opt_->v = sync_->flatten(v);
  opt_->set_steps(read_checkpoint_state(dir).optimizer_steps);
}

void TrainSession::merge_lora(bool merge) {
  for (auto& [name, layer] : lora_layers(model_)) merge ? layer->merge() : layer->unmerge();
}

void TrainSession::save_merged_model(const std::string& dir) {
  if (cfg_.peft.method == "adapter") {
    throw std::runtime_error("merge: bottleneck adapters cannot be merged into the base weights (they add a "
                             "non-linear layer); use the checkpoint with peft.method adapter instead");
  }
  if (cfg_.peft.method == "lora") merge_lora(true);
  const NamedTensors full = gather_tp(base_tensors(model_), collect_param_shards(*model_), *grid_.tp_group,
                                      "merge.gather_base");
  if (grid_.world_rank == 0) save_model_dir(dir, cfg_.model, full, 0, cfg_.model.path);
  grid_.world->barrier("merge.done");
  if (cfg_.peft.method == "lora") merge_lora(false);
}

}  // namespace ds
