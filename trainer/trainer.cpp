#include "trainer/trainer.h"

#include <chrono>
#include <cstdio>
#include <cmath>
#include <functional>
#include <thread>

#include "dist/mpi_env.h"
#include "core/dir_layout.h"
#include "trainer/checkpoint.h"
#include "trainer/device_stats.h"
#include "trainer/manifest.h"
#include "trainer/stop_signals.h"
#include "core/fault.h"
#include "core/files.h"
#include "data/token_cache.h"
#include "trainer/memory_model.h"

namespace ds {

std::string cache_dir_of(const RunConfig& cfg) {
  const std::string& c = cfg.data.cache_dir;
  if (c == "none" || cfg.data.tokenizer == "bytes") return "";  // bytes: the data are the tokens
  if (!c.empty()) return c;
  return cfg.checkpoint.dir.empty() ? "" : cfg.checkpoint.dir + "/.cache";
}

namespace {

// What the tokens depend on besides the files' and the tokenizer's bytes.
std::string token_settings(const RunConfig& cfg) {
  const DataConfig& d = cfg.data;
  char buf[256];
  if (d.format != DataFormat::Jsonl) {
    std::snprintf(buf, sizeof buf, "text val_fraction=%.17g", d.val_fraction);
  } else {
    std::snprintf(buf, sizeof buf, "jsonl schema=%s template=%s train_on_inputs=%d truncate=%s val_fraction=%.17g "
                  "seq_len=%lld vocab=%lld", enum_name(d.schema), enum_name(d.chat_template), d.train_on_inputs ? 1 : 0,
                  enum_name(d.truncate), d.val_fraction, static_cast<long long>(cfg.train.seq_len),
                  static_cast<long long>(cfg.model.vocab_size));
  }
  return buf;
}

// Rank 0 reads the cache or tokenizes and writes it; the others wait at a barrier, then read it.
// A rank that cannot read it (a cache_dir that is not shared between hosts) tokenizes for itself.
template <class T>
T through_cache(const RunConfig& cfg, ProcessGrid* grid, const std::function<T()>& build,
                const std::function<TokenArrays(const T&)>& to,
                const std::function<T(const TokenArrays&, std::vector<std::string>)>& from) {
  const std::string dir = cache_dir_of(cfg);
  if (dir.empty() || !grid) return build();
  const std::vector<std::string> files = expand_paths(cfg.data.paths);
  const uint64_t key = token_cache_key(files, cfg.data.tokenizer, token_settings(cfg));
  const std::string file = token_cache_file(dir, key);
  const bool first = grid->world_rank == 0;
  std::string why;
  std::optional<T> out;
  if (first) {
    if (auto a = read_token_cache(file, key, why)) {
      out = from(*a, files);
    } else {
      if (why != "absent") print0("data.cache_dir: %s: %s; tokenizing again\n", file.c_str(), why.c_str());
      out = build();
      try {
        make_dirs(dir);
        write_token_cache(file, key, to(*out));
      } catch (const std::exception& e) {
        std::fprintf(stderr, "deltashard: warning: data.cache_dir: %s (the run goes on without it)\n", e.what());
      }
    }
  }
  if (grid->world_size > 1) grid->world->barrier("world.data_cache");
  if (first) return std::move(*out);
  if (auto a = read_token_cache(file, key, why)) return from(*a, files);
  return build();
}

}  // namespace

TokenDataset load_dataset(const RunConfig& cfg, const std::optional<BpeTokenizer>& tokenizer, ProcessGrid* grid) {
  return through_cache<TokenDataset>(
      cfg, grid, [&] { return TokenDataset::load(cfg.data, tokenizer ? &*tokenizer : nullptr); },
      [](const TokenDataset& d) { return to_arrays(d); }, &token_dataset_from);
}

Codec codec_for(const RunConfig& cfg, const std::optional<BpeTokenizer>& tokenizer) {
  return Codec{tokenizer ? &*tokenizer : nullptr, cfg.model.vocab_size, tokenizer ? tokenizer->path : "bytes"};
}

SftDataset load_sft_dataset(const RunConfig& cfg, const std::optional<BpeTokenizer>& tokenizer, ProcessGrid* grid) {
  const Codec codec = codec_for(cfg, tokenizer);
  codec.check(cfg.data.chat_template);  // a missing special token is an error even when cached
  SftEncoded e = through_cache<SftEncoded>(
      cfg, grid, [&] { return encode_sft(cfg.data, codec, cfg.train.seq_len); },
      [](const SftEncoded& x) { return to_arrays(x); }, &sft_encoded_from);
  return SftDataset::from_encoded(std::move(e), cfg.train.seq_len, cfg.data.packing);
}

namespace {
// Random tokens for benchmarks: enough for every window of the run to be distinct in practice.
TokenDataset random_dataset(const RunConfig& cfg, int dp) {
  const auto& t = cfg.train;
  const int64_t n = std::max<int64_t>(int64_t{1} << 20, 4 * t.micro_batch * t.grad_accum * dp * (t.seq_len + 1));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(t.seed));
  const torch::Tensor train = torch::randint(cfg.model.vocab_size, {n}, gen, torch::kLong);
  const torch::Tensor val = torch::randint(cfg.model.vocab_size, {64 * (t.seq_len + 1)}, gen, torch::kLong);
  return TokenDataset::from_tokens(train, val);
}
}  // namespace

Trainer::Trainer(RunConfig cfg, ProcessGrid& grid, const TrainerOptions& options)
    : cfg_(std::move(cfg)), grid_(grid) {
  cfg_.parallel.tp = grid_.tp;  // the grid it runs on decides (tests build grids of their own)
  resolve_run_config(cfg_);     // idempotent: configs built in code get the same treatment as files
  const auto& t = cfg_.train;
  set_threads(cfg_);
  check_fits_memory(cfg_, grid_.dp);
  built_ = build_model(cfg_, *grid_.tp_group, BuildOptions{true, options.need_data && !options.random_data});

  std::string ckpt;
  std::optional<LossScaler> saved_scaler;
  if (!options.resume.empty()) {
    ckpt = open_checkpoint(options.resume);
    const CheckpointState st = read_checkpoint_state(ckpt);
    saved_scaler = st.scaler;
    check_checkpoint_matches(st, cfg_, ckpt);
    ds::load_trainable(built_.model, cfg_, ckpt, /*verified=*/true);
    step_ = st.step;
  }
  for (auto& item : built_.model->named_parameters()) {
    if (item.value().requires_grad()) trainable_.emplace_back(item.key(), item.value());
  }
  GradSyncOptions so{cfg_.parallel.bucket_mb, cfg_.parallel.overlap_grad_sync, cfg_.parallel.zero};
  sync_ = std::make_unique<GradSync>(trainable_, collect_param_shards(*built_.model), grid_, so);
  // Only an fp16 base on CUDA computes in fp16 (on the CPU fp16 is upcast layer by layer); its
  // small gradients need the loss scaled up so they do not flush to zero.
  scaler_ = LossScaler::make(cfg_.model.dtype == DType::Fp16 && cfg_.train.device == Device::Cuda);
  if (scaler_.enabled && saved_scaler) {
    scaler_.scale = saved_scaler->scale;
    scaler_.good_steps = saved_scaler->good_steps;
    scaler_.skips = saved_scaler->skips;
  }
  opt_ = std::make_unique<FlatAdamW>(sync_->optim_shards(), AdamWOptions{t.beta1, t.beta2, t.eps, t.weight_decay});
  if (!ckpt.empty()) load_optimizer_state(*this, ckpt);
  time_phases_ = options.time_phases;
  if (options.random_data) {
    data_ = std::make_unique<TokenDataset>(random_dataset(cfg_, grid_.dp));
  } else if (options.need_data && cfg_.data.format == DataFormat::Jsonl) {
    sft_ = std::make_unique<SftDataset>(load_sft_dataset(cfg_, built_.tokenizer, options.cache_data ? &grid_ : nullptr));
  } else if (options.need_data) {
    data_ = std::make_unique<TokenDataset>(load_dataset(cfg_, built_.tokenizer, options.cache_data ? &grid_ : nullptr));
  }
  if (options.need_data && !options.random_data) steps_from_epochs(cfg_, sft_.get(), grid_.dp);
}

void steps_from_epochs(RunConfig& cfg, const SftDataset* sft, int dp) {
  const auto& t = cfg.train;
  if (t.epochs <= 0) return;
  if (!sft) throw ConfigError(cfg.file + ": train.epochs: needs data.format jsonl (text is sampled as windows)");
  // From here on the run is a number of steps; its checkpoints' config.yaml says so.
  const int64_t global = t.micro_batch * dp * t.grad_accum;
  cfg.train.steps =
      static_cast<int64_t>(std::ceil(t.epochs * static_cast<double>(sft->num_train_rows()) / static_cast<double>(global)));
  cfg.train.epochs = 0;
}

uint64_t dropout_seed(int64_t seed, int dp_rank, int64_t step) {
  return static_cast<uint64_t>(seed) * 1000003ull + static_cast<uint64_t>(dp_rank) * 7919ull +
         static_cast<uint64_t>(step) * 104729ull;
}

std::vector<Batch> Trainer::batches_for(int64_t step) const {
  return micro_batches(cfg_, data_.get(), sft_.get(), grid_, step, built_.device);
}

std::vector<Batch> micro_batches(const RunConfig& cfg, const TokenDataset* data, const SftDataset* sft,
                                 const ProcessGrid& grid, int64_t step, torch::Device device) {
  const auto& t = cfg.train;
  std::vector<Batch> out;
  const bool cuda = device.is_cuda();
  auto to_device = [&](const torch::Tensor& x) {
    return cuda && x.defined() ? x.pin_memory().to(device, /*non_blocking=*/true) : x;
  };
  for (int64_t a = 0; a < t.grad_accum; ++a) {
    // Global batch `step` holds micro_batch × dp × grad_accum sequences; this rank takes its block.
    const int64_t first = (a * grid.dp + grid.dp_rank) * t.micro_batch;
    Batch b;
    if (sft) {
      const int64_t global = t.micro_batch * grid.dp * t.grad_accum;
      b = sft->train_batch(static_cast<uint64_t>(t.seed), step * global + first, t.micro_batch);
      for (auto* x : {&b.x, &b.y, &b.positions, &b.segments}) *x = to_device(*x);
    } else {
      const torch::Tensor w =
          to_device(data->train_windows(static_cast<uint64_t>(t.seed), step, first, t.micro_batch, t.seq_len));
      b.x = w.narrow(1, 0, t.seq_len);
      b.y = w.narrow(1, 1, t.seq_len);
      b.counted = b.y.numel();
    }
    out.push_back(b);
  }
  return out;
}

StepResult Trainer::step() {
  const auto& t = cfg_.train;
  if (fault_arg("step.wait_signal") == step_ + 1) wait_for_stop_signal();
  Ledger& ledger = *grid_.ledger;
  LedgerScope scope(ledger);
  const auto t0 = std::chrono::steady_clock::now();
  built_.model->train();
  torch::manual_seed(dropout_seed(t.seed, grid_.dp_rank, step_));
  sync_->zero_grad();
  const std::vector<Batch> batches = next_step_ == step_ ? next_ : batches_for(step_);
  // Instruction data: the loss is the sum over counted targets divided by the step's global count
  // of them (every micro batch, every DP rank), so one all-reduce of the counts comes first. Each
  // rank's part is scaled by dp because the gradient sync averages over DP.
  double loss_scale = 0;
  int64_t global_inputs = 0, global_counted = 0;
  if (sft_) {
    int64_t counted = 0, inputs = 0;
    for (const auto& b : batches) {
      counted += b.counted;
      inputs += b.x.numel();
    }
    torch::Tensor n = torch::tensor({static_cast<double>(counted), static_cast<double>(inputs)}, torch::kDouble)
                          .to(built_.device);
    ledger.set_phase("step");
    grid_.dp_group->all_reduce(n, ReduceOp::Sum, "dp.counted_tokens");
    n = n.cpu();
    global_counted = static_cast<int64_t>(n[0].item<double>());
    global_inputs = static_cast<int64_t>(n[1].item<double>());
    loss_scale = static_cast<double>(grid_.dp) / static_cast<double>(std::max<int64_t>(1, global_counted));
  }
  torch::Tensor loss_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(built_.device));
  std::vector<std::unique_ptr<PhaseTimer>> fwd, bwd;
  auto timer = [&](std::vector<std::unique_ptr<PhaseTimer>>& v) -> PhaseTimer* {
    if (!time_phases_) return nullptr;
    v.push_back(std::make_unique<PhaseTimer>(built_.device));
    v.back()->start();
    return v.back().get();
  };
  for (int64_t a = 0; a < t.grad_accum; ++a) {
    const Batch& batch = batches[static_cast<size_t>(a)];
    if (a == t.grad_accum - 1) sync_->arm_overlap();
    ledger.set_phase("fwd");
    PhaseTimer* f = timer(fwd);
    torch::Tensor loss;
    if (sft_) {
      const std::optional<Packing> pk =
          batch.segments.defined() ? std::optional<Packing>(make_packing(batch.positions, batch.segments)) : std::nullopt;
      loss = lm_loss_sum(built_.model->forward(batch.x, nullptr, pk ? &*pk : nullptr), batch.y) * loss_scale;
    } else {
      loss = lm_loss(built_.model->forward(batch.x), batch.y) / static_cast<double>(t.grad_accum);
    }
    if (grid_.world_rank == 0 && fault_arg("step.nan") == step_ + 1) loss = loss * std::nan("");
    if (f) f->stop();
    ledger.set_phase("bwd");
    PhaseTimer* b = timer(bwd);
    (scaler_.enabled ? loss * scaler_.scale : loss).backward();
    if (b) b->stop();
    loss_sum += loss.detach().to(torch::kDouble);
  }
  // The device works through the queued backward while the host prepares the next batches.
  if (step_ + 1 < t.steps) {
    next_ = batches_for(step_ + 1);
    next_step_ = step_ + 1;
  }
  ledger.set_phase("step");
  std::vector<std::unique_ptr<PhaseTimer>> upd;
  PhaseTimer* u = timer(upd);
  sync_->sync();
  StepResult r;
  r.step = step_;
  // One small world all-reduce per step carries what every rank must agree on before the update:
  // a stop signal, a non-finite local loss, and the squared gradient norm (NaN when any is).
  const double local_loss = loss_sum.item<double>();
  // On the training device: NCCL, the backend on cuda, takes only CUDA tensors.
  torch::Tensor control = torch::tensor({stop_signal() != 0 ? 1.0 : 0.0, std::isfinite(local_loss) ? 0.0 : 1.0,
                                         sync_->local_grad_norm_sq()}, torch::kDouble).to(built_.device);
  ledger.set_phase("control");
  grid_.world->all_reduce(control, ReduceOp::Sum, "world.control");
  control = control.cpu();
  ledger.set_phase("step");
  const double norm_sq = control[2].item<double>() * scaler_.inverse() * scaler_.inverse();
  r.stop = control[0].item<double>() > 0;
  r.grad_norm = std::sqrt(norm_sq);
  r.lr = lr_at(step_, t.steps, t.warmup_steps, t.lr, t.min_lr_ratio);
  const bool overflow = scaler_.enabled && control[1].item<double>() == 0 && !std::isfinite(norm_sq);
  if (overflow) {
    scaler_.update(false);  // fp16 gradients overflowed at this scale: skip, lower it, go on
  } else if (control[1].item<double>() > 0 || !std::isfinite(norm_sq)) {
    r.skipped = true;
    ++skipped_total_;
    ++skipped_in_row_;
    r.fatal = t.nonfinite == NonFinite::Stop || skipped_in_row_ > t.max_skipped;
  } else {
    skipped_in_row_ = 0;
    if (scaler_.enabled) {
      for (auto& sh : sync_->optim_shards()) sh.grad.mul_(scaler_.inverse());
      scaler_.update(true);
    }
    if (t.grad_clip > 0 && r.grad_norm > t.grad_clip) {
      const double scale = t.grad_clip / (r.grad_norm + 1e-6);
      for (auto& s : sync_->optim_shards()) s.grad.mul_(scale);
    }
    auto shards = sync_->optim_shards();
    opt_->step(shards, r.lr);
    sync_->after_step();
  }
  r.skipped_steps = skipped_total_;
  r.scaler_skips = scaler_.skips;
  r.loss_scale = scaler_.scale;
  if (u) u->stop();
  for (auto& x : fwd) r.forward_ms += x->ms();
  for (auto& x : bwd) r.backward_ms += x->ms();
  for (auto& x : upd) r.update_ms += x->ms();
  torch::Tensor l = loss_sum.reshape({1});
  grid_.dp_group->all_reduce(l, ReduceOp::Avg, "dp.loss");
  ledger.set_phase("other");
  r.loss = l.item<double>();
  r.tokens = sft_ ? global_inputs : t.micro_batch * t.grad_accum * grid_.dp * t.seq_len;
  r.counted = sft_ ? global_counted : r.tokens;
  r.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  r.comm = scope.records();
  if (!r.fatal) ++step_;  // a fatal step leaves the last good state at step_ for the checkpoint
  return r;
}

EvalResult Trainer::evaluate() {
  if (sft_) return evaluate_model(built_.model, *sft_, cfg_.train, grid_, built_.device);
  return evaluate_model(built_.model, *data_, cfg_.train, grid_, built_.device);
}

namespace {
EvalResult finish_eval(double loss_sum, double tokens, ProcessGrid& grid, torch::Device device) {
  torch::Tensor acc = torch::tensor({loss_sum, tokens}, torch::kDouble).to(device);
  grid.dp_group->all_reduce(acc, ReduceOp::Sum, "dp.eval");
  acc = acc.cpu();
  grid.ledger->set_phase("other");
  EvalResult r;
  r.tokens = static_cast<int64_t>(acc[1].item<double>());
  r.loss = acc[0].item<double>() / acc[1].item<double>();
  if (!std::isfinite(r.loss)) {
    throw FileError("evaluation: the held-out loss is not finite (" + std::to_string(r.loss) +
                    "): the model's weights or the checkpoint hold NaN or Inf");
  }
  r.perplexity = std::exp(r.loss);
  return r;
}
}  // namespace

EvalResult evaluate_model(Transformer& model, const SftDataset& data, const TrainOptions& t, ProcessGrid& grid,
                          torch::Device device) {
  torch::NoGradGuard no_grad;
  model->eval();
  grid.ledger->set_phase("eval");
  int64_t rows = data.num_eval_rows();
  if (t.eval_windows > 0) rows = std::min(rows, t.eval_windows);
  if (rows == 0) {
    throw FileError("data.path: no held-out example (data.val_fraction of every file's " +
                    std::to_string(data.stats().examples) + " examples rounds down to none; files: " +
                    (data.files().empty() ? "?" : data.files().front()) + (data.files().size() > 1 ? ", ..." : "") + ")");
  }
  double loss_sum = 0, counted = 0;
  for (int64_t i = grid.dp_rank * t.micro_batch; i < rows; i += grid.dp * t.micro_batch) {
    const Batch b = data.eval_batch(i, std::min<int64_t>(t.micro_batch, rows - i));
    const std::optional<Packing> pk = b.segments.defined()
                                          ? std::optional<Packing>(make_packing(b.positions.to(device), b.segments.to(device)))
                                          : std::nullopt;
    loss_sum += lm_loss_sum(model->forward(b.x.to(device), nullptr, pk ? &*pk : nullptr), b.y.to(device)).item<double>();
    counted += static_cast<double>(b.counted);
  }
  return finish_eval(loss_sum, counted, grid, device);
}

EvalResult evaluate_model(Transformer& model, const TokenDataset& data, const TrainOptions& t, ProcessGrid& grid,
                          torch::Device device) {
  torch::NoGradGuard no_grad;
  model->eval();
  grid.ledger->set_phase("eval");
  int64_t windows = data.num_eval_windows(t.seq_len);
  if (t.eval_windows > 0) windows = std::min(windows, t.eval_windows);
  if (windows == 0) {
    throw FileError("data.path: the held-out part (data.val_fraction of every file) has " +
                    std::to_string(data.val_tokens()) + " tokens, fewer than one window of train.seq_len + 1 = " +
                    std::to_string(t.seq_len + 1) + " (files: " + (data.files().empty() ? "?" : data.files().front()) +
                    (data.files().size() > 1 ? ", ..." : "") + ")");
  }
  double loss_tokens = 0, tokens = 0;
  std::vector<int64_t> mine;
  for (int64_t i = grid.dp_rank; i < windows; i += grid.dp) mine.push_back(i);
  for (size_t b = 0; b < mine.size(); b += static_cast<size_t>(t.micro_batch)) {
    const int64_t n = std::min<int64_t>(t.micro_batch, static_cast<int64_t>(mine.size() - b));
    std::vector<torch::Tensor> rows;
    for (int64_t j = 0; j < n; ++j) rows.push_back(data.eval_windows(mine[b + static_cast<size_t>(j)], 1, t.seq_len));
    const torch::Tensor batch = torch::cat(rows).to(device);
    const torch::Tensor x = batch.narrow(1, 0, t.seq_len), y = batch.narrow(1, 1, t.seq_len);
    const double k = static_cast<double>(y.numel());
    loss_tokens += lm_loss(model->forward(x), y).item<double>() * k;
    tokens += k;
  }
  return finish_eval(loss_tokens, tokens, grid, device);
}

void Trainer::save_checkpoint(const std::string& root) { ds::save_checkpoint(*this, root); }

void Trainer::load_trainable(const std::string& checkpoint) {
  ds::load_trainable(built_.model, cfg_, checkpoint);
}

}  // namespace ds
