// Several LoRA jobs on one frozen base in one process grid (deltashard campaign). Each micro step
// concatenates the jobs' micro batches along the batch dimension, runs the base once, and each job
// keeps what a run of it alone has: its loss, gradient, clipping, AdamW state, schedule and dropout
// masks; its final weights are that run's (the exactness tests in tests/test_campaign.cpp).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/multi_lora.h"
#include "trainer/checkpoint.h"
#include "trainer/trainer.h"

namespace ds {

// One job: its own run config (job_config), data, parameters and optimizer.
struct CampaignJobState {
  std::string name;
  RunConfig cfg;
  std::unique_ptr<TokenDataset> data;  // text
  std::unique_ptr<SftDataset> sft;     // data.format jsonl
  // Its trainable parameters in model order: the campaign's names, and those of a run alone.
  std::vector<std::pair<std::string, torch::Tensor>> params;
  std::vector<std::string> alone_names;
  std::unique_ptr<FlatAdamW> opt;
  std::vector<OptimShard> shards;  // one per parameter: its value and its synchronised gradient
  int64_t step = 0;
  int64_t skipped_total = 0, skipped_in_row = 0;
  bool done() const { return step >= cfg.train.steps; }
};

// One job's part of a campaign step (inactive: the job had finished and was not in the batch).
struct JobStepResult {
  bool active = false;
  int64_t step = 0;  // the job's step, counted from 0
  double loss = 0, grad_norm = 0, lr = 0;
  bool skipped = false, fatal = false;
  int64_t tokens = 0, counted = 0;
};

struct CampaignStepResult {
  int64_t step = 0;
  std::vector<JobStepResult> jobs;
  bool stop = false;   // a stop signal reached some rank
  bool fatal = false;  // some job is past train.max_skipped (or train.nonfinite: stop)
  double ms = 0;
  int64_t tokens = 0;  // global, every active job's
  std::vector<CommRecord> comm;
};

class Campaign {
 public:
  // `resume`: a campaign checkpoint root to continue from (empty: fresh).
  Campaign(RunConfig cfg, ProcessGrid& grid, const std::string& resume = "");

  CampaignStepResult step();
  bool done() const;
  int64_t step_index() const { return step_; }
  // Held-out loss of job `j` alone (every row through its adapters).
  EvalResult evaluate(size_t j);

  // All ranks call: every job's checkpoint into DIR/jobs/NAME (the standard layout), then
  // DIR/campaign.json with the campaign's step, written last.
  void save_checkpoint(const std::string& root);
  // Job j's trainable state under the names of a run alone (this rank's shards).
  TrainableState job_state(size_t j);

  const RunConfig& config() const { return cfg_; }
  size_t num_jobs() const { return jobs_.size(); }
  const CampaignJobState& job(size_t j) const { return *jobs_.at(j); }
  Transformer& model() { return built_.model; }
  ProcessGrid& grid() { return grid_; }
  GradSync& grad_sync() { return *sync_; }
  JobRows& rows() { return *rows_; }

 private:
  RunConfig cfg_;
  ProcessGrid& grid_;
  BuiltModel built_;
  std::shared_ptr<JobRows> rows_;
  std::vector<std::unique_ptr<CampaignJobState>> jobs_;
  std::unique_ptr<GradSync> sync_;
  int64_t step_ = 0;
};

// A campaign checkpoint root's committed step (DIR/campaign.json); nullopt when there is none yet.
std::optional<int64_t> campaign_checkpoint_step(const std::string& root, const RunConfig& cfg);

// Attaches job j's LoRA pairs to the layers its targets name, drawn as build_model draws a run
// alone's (the same seed, the same order).
void add_job_lora(Transformer& model, const PeftConfig& peft, int64_t seed, size_t j,
                  const std::shared_ptr<JobRows>& rows);

}  // namespace ds
