// What `compare` and `comm-model` report per method: the method names they accept, and one
// step's ledger reduced to the comparison's figures (collectives and bytes per group and phase).
#pragma once

#include <string>
#include <vector>

#include "core/json.h"
#include "dist/ledger.h"
#include "trainer/run_config.h"

namespace ds {

// lora | adapter_sharded | adapter_replicated | full | adapter (the config's adapter_tp) | none.
RunConfig config_for_method(RunConfig base, const std::string& method);
std::vector<std::string> split_methods(const std::string& list);
// "a,b,,c" -> {a, b, c}.
std::vector<std::string> split_names(const std::string& list);

// One step's collectives. dp_* counts everything outside the TP group: the DP gradient buckets,
// the world bucket of LoRA's replicated factors (TP sum and DP average in one collective), and
// the loss and gradient-norm reductions.
struct StepComm {
  int64_t tp_fwd = 0, tp_bwd = 0, tp_bytes = 0;
  int64_t tp_recompute = 0;  // forward collectives repeated in backward (train.recompute: layer)
  int64_t dp_collectives = 0, dp_bytes = 0;
  int64_t world_collectives = 0, world_bytes = 0;  // the part of dp_* on the world group
  double comm_ms = 0;
  double tp_per_layer = 0;  // (tp_fwd + tp_bwd + tp_recompute) / n_layer: blocking collectives per layer
};

StepComm step_comm(const std::vector<CommRecord>& records, int64_t n_layer);
void put_step_comm(Json& j, const StepComm& c);

}  // namespace ds
