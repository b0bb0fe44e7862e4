// deltashard compare: trains each method a few steps on the same model, data and grid, and reads
// one table off the ledger: collectives and bytes per step on the TP group (forward, backward)
// and outside it (DP), blocking TP collectives per layer, communication and step time, trainable
// parameters, optimizer-state bytes per rank and peak memory. Times are medians over the timed
// steps; counts and bytes are the same every step (the last one is reported).
#include <algorithm>
#include <cstdio>

#include "dist/mpi_env.h"
#include "trainer/commands/cli.h"
#include "trainer/comm_report.h"
#include "trainer/memory_stats.h"
#include "trainer/metrics.h"
#include "trainer/trainer.h"

namespace ds {

int cmd_compare(int argc, char** argv) {
  CommonArgs args;
  std::string methods = "lora,adapter_sharded,adapter_replicated,full";
  int steps = 3, warmup = 1;
  po::options_description desc("deltashard compare");
  add_common(desc, args, true);
  desc.add_options()("methods", po::value<std::string>(&methods),
                     "comma-separated: lora, adapter_sharded, adapter_replicated, full, none "
                     "(default lora,adapter_sharded,adapter_replicated,full)")(
      "steps", po::value<int>(&steps), "timed steps per method (default 3)")(
      "warmup", po::value<int>(&warmup), "untimed steps first (default 1)");
  if (!parse_args(argc, argv, desc, args, true,
                  "mpirun -np N deltashard compare CONFIG [--methods lora,adapter_sharded,...] [--steps 3] [--json]")) {
    return 0;
  }
  if (steps < 1 || warmup < 0) throw UsageError("--steps must be >= 1 and --warmup >= 0");
  RunConfig base = load_run_config(args.config, args.overrides);
  base.checkpoint.dir.clear();
  base.log.jsonl.clear();
  base.train.steps = steps + warmup;
  const std::vector<std::string> names = split_methods(methods);
  std::vector<RunConfig> cfgs;
  for (const auto& m : names) cfgs.push_back(config_for_method(base, m));  // all names checked first

  ProcessGrid grid = make_grid(grid_options(base));
  if (!args.json) {
    print0("# deltashard compare %s: world %d = dp %d x tp %d, micro_batch %lld x seq %lld x grad_accum %lld, "
           "%d timed steps (median), backend %s\n",
           args.config.c_str(), grid.world_size, grid.dp, grid.tp, static_cast<long long>(base.train.micro_batch),
           static_cast<long long>(base.train.seq_len), static_cast<long long>(base.train.grad_accum), steps,
           enum_name(base.parallel.backend));
    print0("# per step and rank; tp/layer: blocking TP collectives per layer (fwd + bwd); dp: every collective "
           "outside the TP group\n");
    print0("%-19s %6s %6s %8s %11s %6s %11s %9s %9s %11s %11s %9s\n", "method", "tp_fwd", "tp_bwd", "tp/layer",
           "tp_bytes", "dp", "dp_bytes", "comm_ms", "step_ms", "trainable", "optim_state", "peak_MB");
  }
  Json out = Json::object();
  for (size_t i = 0; i < names.size(); ++i) {
    reset_peak_rss();
    Trainer s(cfgs[i], grid);
    std::vector<double> step_ms, comm_ms;
    StepComm last;
    for (int k = 0; k < steps + warmup; ++k) {
      const StepResult r = s.step();
      last = step_comm(r.comm, s.config().model.n_layer);
      if (k < warmup) continue;
      step_ms.push_back(r.ms);
      comm_ms.push_back(last.comm_ms);
    }
    // Peak memory and times are per rank: report the largest over ranks.
    const double rss = all_ranks_max(peak_rss_mib());
    const StepTimes times = step_times(step_ms, comm_ms);
    const double step_med = times.step_ms, comm_med = times.comm_ms;
    Json j = Json::object();
    put_step_comm(j, last);
    j["comm_ms"] = comm_med;
    j["step_ms"] = step_med;
    j["comm_fraction"] = times.comm_fraction;
    j["trainable_params"] = s.report().trainable_params;
    j["optimizer_state_bytes"] = s.optimizer().state_bytes();
    j["peak_rss_mib"] = rss;
    out[names[i]] = j;
    if (!args.json) {
      print0("%-19s %6lld %6lld %8.2f %11s %6lld %11s %9.2f %9.1f %11s %11s %9.1f\n", names[i].c_str(),
             static_cast<long long>(last.tp_fwd), static_cast<long long>(last.tp_bwd), last.tp_per_layer,
             human_bytes(static_cast<double>(last.tp_bytes)).c_str(), static_cast<long long>(last.dp_collectives),
             human_bytes(static_cast<double>(last.dp_bytes)).c_str(), comm_med, step_med,
             human_count(static_cast<double>(s.report().trainable_params)).c_str(),
             human_bytes(static_cast<double>(s.optimizer().state_bytes())).c_str(), rss);
    }
  }
  if (args.json) print0("%s\n", json_line(out).c_str());
  return 0;
}

}  // namespace ds
