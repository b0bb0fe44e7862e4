// deltashard bench step: median optimizer-step time, tokens/s, the share of the step spent in
// collectives (from the ledger), optimizer-state bytes and peak resident memory, for several
// methods on the same model, data and grid.
#include <algorithm>
#include <sstream>

#include "dist/mpi_env.h"
#include "trainer/cli.h"
#include "trainer/memory_stats.h"
#include "trainer/metrics.h"
#include "trainer/session.h"

namespace ds {

int cmd_bench_step(int argc, char** argv) {
  CommonArgs args;
  std::string methods = "lora,adapter,full";
  int steps = 10, warmup = 2;
  po::options_description desc("deltashard bench step");
  add_common(desc, args, true);
  desc.add_options()("methods", po::value<std::string>(&methods), "comma-separated peft methods (default lora,adapter,full)")(
      "steps", po::value<int>(&steps), "timed steps per method (default 10)")(
      "warmup", po::value<int>(&warmup), "untimed steps first (default 2)");
  if (!parse_args(argc, argv, desc, args, true,
                  "mpirun -np N deltashard bench step CONFIG [--methods lora,adapter,full] [--steps 10] [--json]")) {
    return 0;
  }
  RunConfig base = load_run_config(args.config, args.overrides);
  base.checkpoint.dir.clear();
  base.train.steps = steps + warmup;
  ProcessGrid grid = make_grid(grid_options(base));
  Json out = Json::object();
  std::stringstream ss(methods);
  std::string m;
  if (!args.json) {
    print0("# bench step: %s, world %d (dp %d x tp %d), micro_batch %lld x seq %lld x grad_accum %lld\n",
           args.config.c_str(), grid.world_size, grid.dp, grid.tp, static_cast<long long>(base.train.micro_batch),
           static_cast<long long>(base.train.seq_len), static_cast<long long>(base.train.grad_accum));
    print0("%-10s %14s %12s %12s %12s %14s %12s\n", "method", "trainable", "step_ms", "tokens/s", "comm_frac",
           "optim_state", "peak_rss_MB");
  }
  while (std::getline(ss, m, ',')) {
    if (m != "lora" && m != "adapter" && m != "full" && m != "none") {
      throw UsageError("--methods: unknown method '" + m + "' (lora, adapter, full)");
    }
    RunConfig cfg = base;
    cfg.peft.method = m;
    reset_peak_rss();
    TrainSession s(cfg, grid);
    std::vector<double> ms, frac;
    int64_t tokens = 0;
    for (int i = 0; i < steps + warmup; ++i) {
      const StepResult r = s.step();
      if (i < warmup) continue;
      ms.push_back(r.ms);
      frac.push_back(sum_records(r.comm, "", "", "").ms / r.ms);
      tokens = r.tokens;
    }
    Json j = Json::object();
    j["median_step_ms"] = median(ms);
    j["tokens_per_s"] = tokens / (median(ms) / 1000.0);
    j["comm_fraction"] = median(frac);
    j["trainable_params"] = s.report().trainable_params;
    j["optimizer_state_bytes"] = s.optimizer().state_bytes();
    j["peak_rss_mb"] = peak_rss_mb();
    j["steps"] = steps;
    out[m] = j;
    if (!args.json) {
      print0("%-10s %14lld %12.1f %12.0f %12.3f %14s %12.1f\n", m.c_str(),
             static_cast<long long>(s.report().trainable_params), median(ms),
             tokens / (median(ms) / 1000.0), median(frac),
             human_bytes(static_cast<double>(s.optimizer().state_bytes())).c_str(), peak_rss_mb());
    }
  }
  if (args.json) print0("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace ds
