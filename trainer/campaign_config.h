// Campaigns in the run config: `campaign:` lists LoRA jobs that set peft, data and train keys over
// the base config's sections, and `campaign_sweep:` crosses lists of values into jobs named from
// them. Read, checked, resolved and printed here; trainer/campaign.h trains them.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "trainer/run_config.h"

namespace ds {

// Reads root["campaign"] and root["campaign_sweep"] into cfg.campaign, over the base sections
// already read into cfg. ConfigError naming the file, line, job and key.
void parse_campaign(const YAML::Node& root, const Locator& where, RunConfig& cfg);

// Resolves every job as a run of its own (paths, tokenizer, the checks against the model).
void resolve_campaign(RunConfig& cfg);

// `campaign:` with every job (a sweep comes out expanded): its name and the keys whose resolved
// value differs from the base's, so the printed config reads back to the same jobs.
void dump_campaign(YAML::Emitter& e, const RunConfig& cfg);

// Job `i` as a run config of its own: exactly what a separate `deltashard train` of that job
// runs, with checkpoint.dir DIR/jobs/NAME (empty when the campaign has none) and no metrics file.
RunConfig job_config(const RunConfig& cfg, size_t i);

// A sweep point's name from its (key, value) pairs as written: "lr-1e-4_r-4" for train.lr 1e-4 and
// peft.r 4; characters other than letters, digits and . + - become '-', so it is safe as a path.
std::string sweep_name(const std::vector<std::pair<std::string, std::string>>& key_values);

// The first train key every job of a campaign must share (one step runs all jobs' concatenated
// batches) on which `job` differs from `base`, and what to say about it; nullopt when none does.
std::optional<std::pair<std::string, std::string>> shared_key_differs(const TrainOptions& job, const TrainOptions& base);

}  // namespace ds
