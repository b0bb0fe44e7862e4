// The run configuration: the YAML file's sections as plain structs, each with its one table of
// fields (describe), `--set section.key=value` overrides applied before validation (values parsed
// as YAML), and resolution: model.path's sizes read in, paths made absolute, `auto` choices made.
// The resolved config printed by dump_run_config reads back to the same run, byte for byte.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/model_config.h"
#include "core/peft.h"
#include "data/token_dataset.h"
#include "dist/process_grid.h"

namespace ds {

// none: autograd keeps every block's activations; layer: each block keeps its input and runs its
// forward again in backward (core/recompute.h).
enum class Recompute { None, Layer };
DS_ENUM_NAMES(Recompute, {Recompute::None, "none"}, {Recompute::Layer, "layer"});

// How a campaign runs the frozen base's products (trainer/campaign.h). joint: once on the jobs'
// concatenated batch, the fewest and tallest products. per_job: once per job on its own rows and
// length, the shapes of its run alone: a BLAS may round a row differently in a taller matrix, so
// only this keeps every job bit for bit equal to its run alone on any BLAS, for more and smaller
// products (docs/results.md measures the cost). A single run is one job: the same either way.
enum class CampaignProducts { Joint, PerJob };
DS_ENUM_NAMES(CampaignProducts, {CampaignProducts::Joint, "joint"}, {CampaignProducts::PerJob, "per_job"});

// What a NaN or Inf loss or gradient norm does: skip that optimizer step on every rank (up to
// train.max_skipped in a row), or stop at once; either way past the limit the last good state is
// saved and the run ends with an error.
enum class NonFinite { Skip, Stop };
DS_ENUM_NAMES(NonFinite, {NonFinite::Skip, "skip"}, {NonFinite::Stop, "stop"});

// The signals that stop a run cleanly (trainer/stop_signals.h).
inline const std::vector<std::string>& stop_signal_names() {
  static const std::vector<std::string> v{"TERM", "INT", "USR1", "USR2", "HUP"};
  return v;
}

struct TrainOptions {
  int64_t steps = 200;
  double epochs = 0;  // > 0: steps from the data (data.format jsonl): passes over the training sequences
  int64_t micro_batch = 8;
  int64_t grad_accum = 1;
  int64_t seq_len = 128;
  double lr = 3e-4;
  double min_lr_ratio = 0.1;  // cosine decays to lr × this
  int64_t warmup_steps = 20;
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double grad_clip = 1.0;  // 0 disables
  int64_t seed = 1234;
  int64_t eval_every = 50;    // 0: only at the start and the end
  int64_t eval_windows = 64;  // held-out windows per evaluation (0: all)
  int threads = 0;            // intra-op threads per rank; 0: cores / ranks on this node
  Device device = Device::Cpu;
  Recompute recompute = Recompute::None;
  std::vector<std::string> stop_signals{"TERM", "INT", "USR1"};
  int64_t stop_after = 0;  // stop and checkpoint after this step (0: run all train.steps)
  NonFinite nonfinite = NonFinite::Skip;
  int64_t max_skipped = 10;  // non-finite steps skipped in a row before the run stops
  CampaignProducts campaign_products = CampaignProducts::Joint;
};

template <class V>
void describe(V& v, TrainOptions& t) {
  const int64_t big = int64_t{1} << 40;
  v("steps", t.steps, 0, big);
  v("epochs", t.epochs, 0.0, 1e6);
  v("micro_batch", t.micro_batch, 1, 1 << 20);
  v("grad_accum", t.grad_accum, 1, 1 << 20);
  v("seq_len", t.seq_len, 1, 1 << 24);
  v("lr", t.lr, 0.0, 10.0);
  v("min_lr_ratio", t.min_lr_ratio, 0.0, 1.0);
  v("warmup_steps", t.warmup_steps, 0, big);
  v("weight_decay", t.weight_decay, 0.0, 10.0);
  v("beta1", t.beta1, 0.0, 0.999999);
  v("beta2", t.beta2, 0.0, 0.999999999);
  v("eps", t.eps, 0.0, 1.0);
  v("grad_clip", t.grad_clip, 0.0, 1e9);
  v("seed", t.seed, 0, std::numeric_limits<int64_t>::max());
  v("eval_every", t.eval_every, 0, big);
  v("eval_windows", t.eval_windows, 0, big);
  v("threads", t.threads, 0, 4096);
  v("device", t.device);
  v("recompute", t.recompute);
  v("stop_signals", t.stop_signals, stop_signal_names());
  v("stop_after", t.stop_after, 0, big);
  v("nonfinite", t.nonfinite);
  v("max_skipped", t.max_skipped, 0, big);
  v("campaign_products", t.campaign_products);
}

struct CheckpointConfig {
  std::string dir;  // where the final (and periodic) checkpoints go; empty: none
  int64_t every = 0;
  int64_t keep = 2;  // newest complete step directories kept
};

template <class V>
void describe(V& v, CheckpointConfig& c) {
  v("dir", c.dir);
  v("every", c.every, 0, int64_t{1} << 40);
  v("keep", c.keep, 1, int64_t{1} << 20);
}

struct LogConfig {
  int64_t every = 10;
  std::string jsonl;  // metrics file; empty: none
};

template <class V>
void describe(V& v, LogConfig& c) {
  v("every", c.every, 1, int64_t{1} << 40);
  v("jsonl", c.jsonl);
}

struct ParallelConfig {
  int tp = 1;
  double bucket_mb = 25;
  bool overlap_grad_sync = false;
  int zero = 0;
  Backend backend = Backend::Auto;
  double timeout_s = 300;
};

template <class V>
void describe(V& v, ParallelConfig& p) {
  v("tp", p.tp, 1, 1 << 16);
  v("bucket_mb", p.bucket_mb, 1e-6, 1e6);
  v("overlap_grad_sync", p.overlap_grad_sync);
  v("zero", p.zero, 0, 1);
  v("backend", p.backend);
  v("timeout_s", p.timeout_s, 0.0, 1e7);
}

// One job of a campaign (trainer/campaign_config.h): its name and the three sections it may set,
// the base config's with the job's own keys over them.
struct CampaignJob {
  std::string name;
  PeftConfig peft;
  DataConfig data;
  TrainOptions train;
};

struct RunConfig {
  std::string file;  // where it was read from, for messages
  ModelConfig model;
  PeftConfig peft;
  DataConfig data;
  TrainOptions train;
  CheckpointConfig checkpoint;
  LogConfig log;
  ParallelConfig parallel;
  std::vector<CampaignJob> campaign;  // `campaign:` and `campaign_sweep:`, expanded; empty: one run
  // Where each architecture key of the model section was given ("file:12" or "--set model.x"),
  // to check it against model.path's config.json. Not part of the configuration.
  std::map<std::string, std::string> model_keys_given;
};

// Reads `file`, applies overrides ("section.key=value"), validates every value (ConfigError
// naming the file, line and key), and resolves it (resolve_run_config).
RunConfig load_run_config(const std::string& file, const std::vector<std::string>& overrides);
// The same without resolving: for callers that change model.path first (generate).
RunConfig parse_run_config(const std::string& file, const std::vector<std::string>& overrides);

// Reads model.path's config.json (a checkpoint directory resolves to its newest complete step):
// sizes given in the YAML must agree with it. Makes every path absolute, turns data.tokenizer auto
// into bytes or a tokenizer.json path, and parallel.backend auto into mpi (cpu) or nccl (cuda).
// Then the checks that need the model's sizes.
void resolve_run_config(RunConfig& cfg);

// The complete resolved configuration as YAML: every key of every section, defaults included.
// A checkpoint's config.yaml is this text.
std::string dump_run_config(const RunConfig& cfg);

}  // namespace ds
