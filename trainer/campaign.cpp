#include "trainer/campaign.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <set>

#include "core/dir_layout.h"
#include "core/files.h"
#include "core/json.h"
#include "trainer/campaign_config.h"
#include "trainer/manifest.h"
#include "trainer/memory_model.h"
#include "trainer/stop_signals.h"

namespace ds {

namespace {

constexpr const char* kCampaignState = "campaign.json";

// What a campaign cannot do yet, refused before anything is built.
void check_campaign_supported(const RunConfig& cfg) {
  const std::string& f = cfg.file;
  if (cfg.campaign.empty()) throw ConfigError(f + ": campaign: no jobs (give campaign: or campaign_sweep:)");
  if (cfg.parallel.zero != 0) {
    throw ConfigError(f + ": parallel.zero: 1 is not supported by campaigns (each job's AdamW updates whole "
                          "parameters); use 0");
  }
  if (cfg.model.dtype == DType::Fp16 && cfg.train.device == Device::Cuda) {
    throw ConfigError(f + ": model.dtype: fp16 on cuda needs loss scaling, which campaigns do not do; use bf16");
  }
  for (const auto& j : cfg.campaign) {
    // Configs built in code skip the parser's checks.
    if (const auto d = shared_key_differs(j.train, cfg.train)) {
      throw ConfigError(f + ": campaign." + j.name + ".train." + d->first + ": " + d->second);
    }
  }
}

// The batch of one micro step: every active job's micro batch, padded to the longest.
struct JointBatch {
  torch::Tensor x, y;  // y: -100 on padding
  std::optional<Packing> packing;
};

JointBatch join(const std::vector<const Batch*>& parts) {
  int64_t T = 0;
  bool packed = false;
  for (const Batch* b : parts) {
    T = std::max<int64_t>(T, b->x.size(1));
    packed = packed || b->segments.defined();
  }
  std::vector<torch::Tensor> xs, ys, pos, seg;
  for (const Batch* b : parts) {
    const int64_t pad = T - b->x.size(1);
    // Padding after a row's last token is never seen by it (causal), and its targets are not counted.
    xs.push_back(pad ? torch::constant_pad_nd(b->x, {0, pad}, 0) : b->x);
    ys.push_back(pad ? torch::constant_pad_nd(b->y, {0, pad}, -100) : b->y);
    if (!packed) continue;
    const auto opts = b->x.options();
    if (b->segments.defined()) {
      pos.push_back(pad ? torch::constant_pad_nd(b->positions, {0, pad}, 0) : b->positions);
      seg.push_back(pad ? torch::constant_pad_nd(b->segments, {0, pad}, -1) : b->segments);
    } else {
      // An unpacked row is one segment at positions 0..T-1: the causal mask it had alone.
      pos.push_back(torch::arange(T, opts).expand({b->x.size(0), T}));
      seg.push_back(torch::zeros({b->x.size(0), T}, opts));
    }
  }
  JointBatch out;
  out.x = torch::cat(xs, 0);
  out.y = torch::cat(ys, 0);
  if (packed) out.packing = make_packing(torch::cat(pos, 0), torch::cat(seg, 0));
  return out;
}

}  // namespace

void add_job_lora(Transformer& model, const PeftConfig& peft, int64_t seed, size_t j,
                  const std::shared_ptr<JobRows>& rows) {
  // apply_peft's order after build_model's reseeding: blocks, then the targets as listed.
  torch::manual_seed(peft_seed(seed));
  const LoraOptions lo{peft.r, peft.alpha, peft.dropout, peft.use_rslora, peft.lora_init};
  for (auto& layer : targeted_layers(model, peft.targets)) multi_lora_of(*layer, rows).add_job(j, lo);
}

Campaign::Campaign(RunConfig cfg, ProcessGrid& grid, const std::string& resume) : cfg_(std::move(cfg)), grid_(grid) {
  cfg_.parallel.tp = grid_.tp;
  resolve_run_config(cfg_);
  check_campaign_supported(cfg_);
  set_threads(cfg_);
  check_fits_memory(cfg_, grid_.dp);
  // The frozen base alone; the jobs' pairs are added beside its layers.
  RunConfig base = cfg_;
  base.campaign.clear();
  base.peft.method = PeftMethod::None;
  built_ = build_model(base, *grid_.tp_group, BuildOptions{true, false});
  rows_ = std::make_shared<JobRows>();
  rows_->rows.assign(cfg_.campaign.size(), 0);
  rows_->per_job_products = cfg_.train.campaign_products == CampaignProducts::PerJob;
  // The jobs' LoRA dropout draws from these streams, not the global generator that recompute
  // replays by itself.
  built_.model->factory.dropout_streams = [rows = rows_] { return rows->dropout; };
  if (rows_->per_job_products) {
    // Untargeted layers too: left on the joint batch, their products would round as a taller
    // matrix's and the jobs would drift from their runs alone.
    for (auto& b : built_.model->blocks) {
      for (auto& [name, layer] : target_layers(b)) multi_lora_of(*layer, rows_);
    }
  }
  for (size_t j = 0; j < cfg_.campaign.size(); ++j) {
    auto job = std::make_unique<CampaignJobState>();
    job->name = cfg_.campaign[j].name;
    job->cfg = job_config(cfg_, j);
    const std::optional<BpeTokenizer> tok = load_tokenizer(job->cfg);
    if (job->cfg.data.format == DataFormat::Jsonl) {
      job->sft = std::make_unique<SftDataset>(load_sft_dataset(job->cfg, tok));
    } else {
      job->data = std::make_unique<TokenDataset>(load_dataset(job->cfg, tok));
    }
    steps_from_epochs(job->cfg, job->sft.get(), grid_.dp);
    add_job_lora(built_.model, job->cfg.peft, job->cfg.train.seed, j, rows_);
    jobs_.push_back(std::move(job));
  }
  std::vector<std::pair<std::string, torch::Tensor>> trainable;
  for (auto& item : built_.model->named_parameters()) {
    if (!item.value().requires_grad()) continue;
    const auto jp = job_param(item.key());
    if (!jp) throw std::logic_error("campaign: trainable parameter " + item.key() + " belongs to no job");
    trainable.emplace_back(item.key(), item.value());
    jobs_[jp->first]->params.emplace_back(item.key(), item.value());
    jobs_[jp->first]->alone_names.push_back(jp->second);
  }
  // One set of buckets for every job: one all-reduce per bucket carries all their gradients.
  GradSyncOptions so{cfg_.parallel.bucket_mb, cfg_.parallel.overlap_grad_sync, 0};
  sync_ = std::make_unique<GradSync>(trainable, collect_param_shards(*built_.model), grid_, so);
  for (auto& job : jobs_) {
    // After GradSync: each parameter's value and gradient are views into its bucket's buffers.
    for (auto& [n, p] : job->params) job->shards.push_back(OptimShard{p.detach(), p.grad(), p.dim() >= 2});
    const auto& t = job->cfg.train;
    job->opt = std::make_unique<FlatAdamW>(job->shards, AdamWOptions{t.beta1, t.beta2, t.eps, t.weight_decay});
  }
  if (!resume.empty()) {
    const auto at = campaign_checkpoint_step(resume, cfg_);
    if (!at) throw FileError(resume + "/" + kCampaignState + ": missing: not a campaign checkpoint");
    step_ = *at;
    for (size_t j = 0; j < jobs_.size(); ++j) {
      CampaignJobState& job = *jobs_[j];
      const std::string root = resume + "/jobs/" + job.name;
      const std::string dir = open_checkpoint(root + "/" + step_dir_name(std::min(step_, job.cfg.train.steps)));
      const CheckpointState st = read_checkpoint_state(dir);
      check_checkpoint_matches(st, job.cfg, dir);
      TrainableState s = job_state(j);
      read_trainable_state(dir, s, true);
      for (size_t i = 0; i < job.params.size(); ++i) {
        job.opt->m[i] = s.exp_avg.at(job.alone_names[i]);
        job.opt->v[i] = s.exp_avg_sq.at(job.alone_names[i]);
      }
      job.opt->set_steps(st.optimizer_steps);
      job.step = st.step;
    }
  }
}

bool Campaign::done() const {
  for (const auto& j : jobs_) {
    if (!j->done()) return false;
  }
  return true;
}

CampaignStepResult Campaign::step() {
  Ledger& ledger = *grid_.ledger;
  LedgerScope scope(ledger);
  const auto t0 = std::chrono::steady_clock::now();
  const size_t J = jobs_.size();
  const int64_t accum = cfg_.train.grad_accum;
  built_.model->train();
  CampaignStepResult r;
  r.step = step_;
  r.jobs.resize(J);
  std::vector<std::vector<Batch>> batches(J);
  rows_->dropout.assign(J, at::Generator());
  for (size_t j = 0; j < J; ++j) {
    CampaignJobState& job = *jobs_[j];
    r.jobs[j].active = !job.done();
    r.jobs[j].step = job.step;
    if (!r.jobs[j].active) continue;
    batches[j] = micro_batches(job.cfg, job.data.get(), job.sft.get(), grid_, job.step, built_.device);
    // The masks of a run alone: its global generator, seeded alike at the same step. (On CUDA that
    // run draws them with a fused kernel of its own; there the streams differ.)
    if (built_.device.is_cpu()) {
      rows_->dropout[j] = at::make_generator<at::CPUGeneratorImpl>(dropout_seed(job.cfg.train.seed, grid_.dp_rank, job.step));
    }
  }
  sync_->zero_grad();
  // Instruction data: each job's loss divides by its own global count of counted targets.
  std::vector<double> loss_scale(J, 0);
  std::vector<int64_t> inputs(J, 0), counted(J, 0);
  bool any_sft = false;
  for (size_t j = 0; j < J; ++j) {
    for (const auto& b : batches[j]) {
      counted[j] += b.counted;
      inputs[j] += b.x.numel();
    }
    any_sft = any_sft || (r.jobs[j].active && jobs_[j]->sft);
  }
  if (any_sft) {
    torch::Tensor n = torch::zeros({2 * static_cast<int64_t>(J)}, torch::kDouble);
    for (size_t j = 0; j < J; ++j) {
      n[static_cast<int64_t>(2 * j)] = static_cast<double>(counted[j]);
      n[static_cast<int64_t>(2 * j + 1)] = static_cast<double>(inputs[j]);
    }
    n = n.to(built_.device);
    ledger.set_phase("step");
    grid_.dp_group->all_reduce(n, ReduceOp::Sum, "dp.counted_tokens");
    n = n.cpu();
    for (size_t j = 0; j < J; ++j) {
      if (!jobs_[j]->sft) continue;
      counted[j] = static_cast<int64_t>(n[static_cast<int64_t>(2 * j)].item<double>());
      inputs[j] = static_cast<int64_t>(n[static_cast<int64_t>(2 * j + 1)].item<double>());
      loss_scale[j] = static_cast<double>(grid_.dp) / static_cast<double>(std::max<int64_t>(1, counted[j]));
    }
  }
  const auto dev = torch::TensorOptions().dtype(torch::kDouble).device(built_.device);
  std::vector<torch::Tensor> loss_sum(J);
  for (auto& l : loss_sum) l = torch::zeros({}, dev);
  for (int64_t a = 0; a < accum; ++a) {
    if (a == accum - 1) sync_->arm_overlap();
    ledger.set_phase("fwd");
    std::vector<const Batch*> parts;
    rows_->length.assign(J, 0);
    for (size_t j = 0; j < J; ++j) {
      rows_->rows[j] = r.jobs[j].active ? batches[j][static_cast<size_t>(a)].x.size(0) : 0;
      rows_->length[j] = r.jobs[j].active ? batches[j][static_cast<size_t>(a)].x.size(1) : 0;
      if (r.jobs[j].active) parts.push_back(&batches[j][static_cast<size_t>(a)]);
    }
    const JointBatch jb = join(parts);
    const torch::Tensor h = built_.model->hidden(jb.x, nullptr, jb.packing ? &*jb.packing : nullptr);
    // Each job's head and loss on its own rows and length, as in its run alone (lm_loss, lm_loss_sum),
    // each taken backward at once to the shared hidden states: only one job's vocabulary-wide
    // logits and their gradient exist at a time, and the head's products have the run alone's
    // shapes. The head is frozen in a campaign (LoRA targets only block layers), so this backward
    // touches no trainable parameter and no collective; the blocks' backward follows, once.
    ledger.set_phase("bwd");
    const torch::Tensor h_jobs = h.detach().requires_grad_(true);
    int64_t off = 0;
    for (size_t j = 0; j < J; ++j) {
      if (!r.jobs[j].active) continue;
      const Batch& b = batches[j][static_cast<size_t>(a)];
      const torch::Tensor logits = built_.model->head(h_jobs.narrow(0, off, b.x.size(0)).narrow(1, 0, b.x.size(1)));
      off += b.x.size(0);
      const torch::Tensor loss = jobs_[j]->sft ? lm_loss_sum(logits, b.y) * loss_scale[j]
                                               : lm_loss(logits, b.y) / static_cast<double>(accum);
      loss_sum[j] += loss.detach().to(torch::kDouble);
      loss.backward();
    }
    h.backward(h_jobs.grad());
  }
  std::fill(rows_->rows.begin(), rows_->rows.end(), 0);
  ledger.set_phase("step");
  sync_->sync();
  // One world all-reduce: a stop signal, then per job a non-finite local loss and its squared norm.
  torch::Tensor control = torch::zeros({1 + 2 * static_cast<int64_t>(J)}, torch::kDouble);
  control[0] = stop_signal() != 0 ? 1.0 : 0.0;
  for (size_t j = 0; j < J; ++j) {
    std::set<std::string> names;
    for (const auto& [n, p] : jobs_[j]->params) names.insert(n);
    control[static_cast<int64_t>(1 + 2 * j)] = std::isfinite(loss_sum[j].item<double>()) ? 0.0 : 1.0;
    control[static_cast<int64_t>(2 + 2 * j)] = sync_->local_grad_norm_sq(names);
  }
  ledger.set_phase("control");
  control = control.to(built_.device);  // NCCL, the backend on cuda, takes only CUDA tensors
  grid_.world->all_reduce(control, ReduceOp::Sum, "world.control");
  control = control.cpu();
  ledger.set_phase("step");
  r.stop = control[0].item<double>() > 0;
  torch::Tensor losses = torch::zeros({static_cast<int64_t>(J)}, dev);
  for (size_t j = 0; j < J; ++j) {
    JobStepResult& jr = r.jobs[j];
    if (!jr.active) continue;
    CampaignJobState& job = *jobs_[j];
    const auto& t = job.cfg.train;
    const double norm_sq = control[static_cast<int64_t>(2 + 2 * j)].item<double>();
    jr.grad_norm = std::sqrt(norm_sq);
    jr.lr = lr_at(job.step, t.steps, t.warmup_steps, t.lr, t.min_lr_ratio);
    if (control[static_cast<int64_t>(1 + 2 * j)].item<double>() > 0 || !std::isfinite(norm_sq)) {
      jr.skipped = true;
      ++job.skipped_total;
      ++job.skipped_in_row;
      jr.fatal = t.nonfinite == NonFinite::Stop || job.skipped_in_row > t.max_skipped;
      r.fatal = r.fatal || jr.fatal;
    } else {
      job.skipped_in_row = 0;
      if (t.grad_clip > 0 && jr.grad_norm > t.grad_clip) {
        const double scale = t.grad_clip / (jr.grad_norm + 1e-6);
        for (auto& s : job.shards) s.grad.mul_(scale);
      }
      job.opt->step(job.shards, jr.lr);
    }
    losses[static_cast<int64_t>(j)] = loss_sum[j];
    const int64_t tokens = job.sft ? inputs[j] : t.micro_batch * accum * grid_.dp * t.seq_len;
    jr.tokens = tokens;
    jr.counted = job.sft ? counted[j] : tokens;
    r.tokens += tokens;
  }
  grid_.dp_group->all_reduce(losses, ReduceOp::Avg, "dp.loss");
  ledger.set_phase("other");
  losses = losses.cpu();
  for (size_t j = 0; j < J; ++j) {
    if (!r.jobs[j].active) continue;
    r.jobs[j].loss = losses[static_cast<int64_t>(j)].item<double>();
    if (!r.jobs[j].fatal) ++jobs_[j]->step;
  }
  r.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  r.comm = scope.records();
  if (!r.fatal) ++step_;
  return r;
}

EvalResult Campaign::evaluate(size_t j) {
  const CampaignJobState& job = *jobs_.at(j);
  rows_->only = static_cast<int64_t>(j);
  struct Reset {
    JobRows& r;
    ~Reset() { r.only = -1; }
  } reset{*rows_};
  if (job.sft) return evaluate_model(built_.model, *job.sft, job.cfg.train, grid_, built_.device);
  return evaluate_model(built_.model, *job.data, job.cfg.train, grid_, built_.device);
}

TrainableState Campaign::job_state(size_t j) {
  const CampaignJobState& job = *jobs_.at(j);
  const auto shards = collect_param_shards(*built_.model);
  TrainableState s;
  for (size_t i = 0; i < job.params.size(); ++i) {
    const std::string& alone = job.alone_names[i];
    s.params.emplace_back(alone, job.params[i].second);
    auto sh = shards.find(job.params[i].first);
    if (sh != shards.end()) s.shards[alone] = sh->second;
    s.exp_avg[alone] = job.opt->m[i];
    s.exp_avg_sq[alone] = job.opt->v[i];
  }
  s.step = job.step;
  s.optimizer_steps = job.opt->steps();
  return s;
}

void Campaign::save_checkpoint(const std::string& root) {
  if (grid_.world_rank == 0 && !claim_output_dir(root, DirKind::Checkpoints, "checkpoint.dir")) {
    write_marker(root, DirKind::Checkpoints);
  }
  for (size_t j = 0; j < jobs_.size(); ++j) {
    RunConfig jc = jobs_[j]->cfg;
    jc.checkpoint.dir = root + "/jobs/" + jobs_[j]->name;
    // A resume reads each job at the campaign's last committed step, which may be one save older.
    jc.checkpoint.keep = std::max<int64_t>(2, jc.checkpoint.keep);
    ds::save_checkpoint(job_state(j), jc, grid_, jc.checkpoint.dir);
  }
  if (grid_.world_rank == 0) {
    Json j = Json::object();
    j["format"] = kFormatVersion;
    j["step"] = step_;
    Json names = Json::array();
    for (const auto& job : jobs_) names.push_back(job->name);
    j["jobs"] = names;
    write_file_atomic(root + "/" + kCampaignState, json_pretty(j));
  }
  grid_.world->barrier("campaign.saved");
}

std::optional<int64_t> campaign_checkpoint_step(const std::string& root, const RunConfig& cfg) {
  const std::string path = root + "/" + kCampaignState;
  if (!is_regular_file(path)) return std::nullopt;
  const Json j = read_json_file(path);
  const JsonFields n(j, path);
  const int64_t step = n.need_int("step");
  if (step < 0) n.fail("step", "is negative");
  std::vector<std::string> want, have;
  for (const auto& job : cfg.campaign) want.push_back(job.name);
  if (!n.has("jobs") || !n.at("jobs").is_array()) n.fail("jobs", "expected a list of job names");
  for (const auto& x : n.at("jobs")) have.push_back(x.is_string() ? x.get<std::string>() : "?");
  if (want != have) {
    n.fail("jobs", "[" + join_choices(have, ", ") + "] are not this campaign's jobs [" + join_choices(want, ", ") + "]");
  }
  return step;
}

}  // namespace ds
