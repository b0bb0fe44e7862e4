// deltashard bench step: the optimizer step of each method and base type on the same model, data
// and grid: step time and tokens/s, the share of the step spent in collectives (from the ledger),
// where the device time goes (forward, backward, update), optimizer-state bytes, peak memory, and
// model FLOP utilisation. Keys and statistics as docs/metrics.md defines them.
#include <torch/csrc/autograd/profiler_legacy.h>

#include <algorithm>
#include <memory>
#include <sstream>

#include "dist/mpi_env.h"
#include "trainer/comm_report.h"
#include "trainer/commands/cli.h"
#include "trainer/device_stats.h"
#include "trainer/memory_model.h"
#include "trainer/memory_stats.h"
#include "trainer/metrics.h"
#include "trainer/trainer.h"

namespace ds {

namespace {
// Parameters of the frozen base outside the embeddings and the LM head: the N of 6N (training
// every weight) and 4N (a frozen base: forward, and backward through activations only).
int64_t non_embedding_params(const ParamReport& r) {
  int64_t n = 0;
  for (const auto& m : r.modules) {
    if (m.kind == ModuleKind::Lora || m.kind == ModuleKind::Adapter || m.kind == ModuleKind::Embedding) continue;
    if (m.name.rfind("lm_head", 0) == 0) continue;
    n += m.params;
  }
  return n;
}
}  // namespace

int cmd_bench_step(int argc, char** argv) {
  CommonArgs args;
  std::string methods = "lora,adapter,full", dtypes;
  int steps = 10, warmup = 2;
  bool random_data = false;
  double peak_tflops = 989.0;
  std::string profile;
  po::options_description desc("deltashard bench step");
  add_common(desc, args, true);
  desc.add_options()("methods", po::value<std::string>(&methods), "comma-separated peft methods (default lora,adapter,full)")(
      "dtypes", po::value<std::string>(&dtypes), "comma-separated base types, e.g. fp32,bf16 (default: model.dtype)")(
      "steps", po::value<int>(&steps), "timed steps per case (default 10)")(
      "warmup", po::value<int>(&warmup), "untimed steps first (default 2)")(
      "random-data", po::bool_switch(&random_data), "uniformly random tokens instead of data.path")(
      "peak-tflops", po::value<double>(&peak_tflops),
      "the device's dense peak for mfu_6n and mfu_4n (default 989: H100/H200 SXM bf16)")(
      "profile", po::value<std::string>(&profile),
      "rank 0's timed steps through LibTorch's autograd profiler: a Chrome trace per case, "
      "PREFIX.DTYPE.METHOD.json (summarised by launch/profile_summary.py)");
  if (!parse_args(argc, argv, desc, args, true,
                  "mpirun -np N deltashard bench step CONFIG [--methods lora,adapter,full] [--dtypes fp32,bf16] "
                  "[--steps 10] [--random-data] [--json]")) {
    return 0;
  }
  if (steps < 1 || warmup < 0) throw UsageError("--steps must be >= 1 and --warmup >= 0");
  if (!(peak_tflops > 0)) throw UsageError("--peak-tflops must be > 0");
  RunConfig base = load_run_config(args.config, args.overrides);
  base.checkpoint.dir.clear();
  base.log.jsonl.clear();
  base.train.steps = steps + warmup;
  std::vector<PeftMethod> ms;
  for (const auto& m : split_names(methods)) {
    const auto method = enum_from<PeftMethod>(m);
    if (!method) throw UsageError("--methods: unknown method '" + m + "' (lora, adapter, full, none)");
    ms.push_back(*method);
  }
  std::vector<DType> ds;
  for (const auto& d : split_names(dtypes.empty() ? enum_name(base.model.dtype) : dtypes)) {
    const auto dtype = enum_from<DType>(d);
    if (!dtype) throw UsageError("--dtypes: unknown type '" + d + "' (" + join_choices(enum_choices<DType>(), ", ") + ")");
    ds.push_back(*dtype);
  }
  if (ms.empty() || ds.empty()) throw UsageError("--methods and --dtypes need at least one entry");
  ProcessGrid grid = make_grid(grid_options(base));
  // On the CPU, tensor storage is counted exactly (peak_alloc_mib) beside the process's peak RSS.
  if (base.train.device == Device::Cpu) count_cpu_allocations();
  Json out = Json::object();
  if (!args.json) {
    print0("# bench step: %s, world %d (dp %d x tp %d), micro_batch %lld x seq %lld x grad_accum %lld, %s, "
           "%d timed steps (median; max over ranks)\n",
           args.config.c_str(), grid.world_size, grid.dp, grid.tp, static_cast<long long>(base.train.micro_batch),
           static_cast<long long>(base.train.seq_len), static_cast<long long>(base.train.grad_accum),
           enum_name(base.train.device), steps);
    print0("%-6s %-8s %12s %10s %12s %9s %9s %9s %9s %12s %10s %10s %8s\n", "dtype", "method", "trainable", "step_ms",
           "tokens/s", "comm_frac", "fwd_ms", "bwd_ms", "upd_ms", "optim_state", "peak_MiB", "est_MiB", "mfu_4n");
  }
  for (DType dt : ds) {
    Json per = Json::object();
    for (PeftMethod m : ms) {
      RunConfig cfg = base;
      cfg.peft.method = m;
      cfg.model.dtype = dt;
      // The estimate (trainer/memory_model.h) of this case, before anything is built; on the CPU
      // plus this process's resident memory before the model exists (LibTorch, MPI, the previous
      // case's leftovers), measured here, since peak RSS includes it.
      const MemoryEstimate est = estimate_memory(cfg, grid.dp);
      reset_peak_rss();
      const double baseline_mib = rss_mib();
      const int64_t live0 = cpu_live_bytes();
      reset_cpu_peak();
      TrainerOptions to;
      to.random_data = random_data;
      to.time_phases = true;
      Trainer s(cfg, grid, to);
      reset_gpu_peak(s.device());
      std::vector<double> step_ms, comm_ms, fwd, bwd, upd;
      int64_t tokens = 0;
      std::unique_ptr<torch::autograd::profiler::RecordProfile> prof;
      for (int i = 0; i < steps + warmup; ++i) {
        if (i == warmup && !profile.empty() && grid.world_rank == 0) {
          prof = std::make_unique<torch::autograd::profiler::RecordProfile>(
              profile + "." + enum_name(dt) + "." + enum_name(m) + ".json");
        }
        const StepResult r = s.step();
        if (i < warmup) continue;
        step_ms.push_back(r.ms);
        comm_ms.push_back(sum_records(r.comm, "", "", "").ms);
        fwd.push_back(r.forward_ms);
        bwd.push_back(r.backward_ms);
        upd.push_back(r.update_ms);
        tokens = r.tokens;
      }
      prof.reset();  // writes the trace
      const StepTimes t = step_times(step_ms, comm_ms);
      const double tok_s = tokens / (t.step_ms / 1000.0);
      const double n = static_cast<double>(non_embedding_params(s.report()));
      const double rss = all_ranks_max(peak_rss_mib());
      const double gpu = all_ranks_max(gpu_peak_gib(s.device()));
      Json j = Json::object();
      j["step_ms"] = t.step_ms;
      j["tokens_per_s"] = tok_s;
      j["comm_fraction"] = t.comm_fraction;
      j["forward_ms"] = all_ranks_max(median(fwd));
      j["backward_ms"] = all_ranks_max(median(bwd));
      j["update_ms"] = all_ranks_max(median(upd));
      j["trainable_params"] = s.report().trainable_params;
      j["non_embedding_params"] = static_cast<int64_t>(n);
      j["optimizer_state_bytes"] = s.optimizer().state_bytes();
      j["peak_rss_mib"] = rss;
      j["peak_gpu_mem_gib"] = gpu;
      const double mib = 1024.0 * 1024.0;
      const bool cpu = cfg.train.device == Device::Cpu;
      j["estimate_mib"] = static_cast<double>(est.total_bytes) / mib + (cpu ? baseline_mib : 0.0);
      j["estimate"] = est.to_json();
      if (cpu) {
        j["baseline_rss_mib"] = all_ranks_max(baseline_mib);
        j["peak_alloc_mib"] = all_ranks_max(static_cast<double>(cpu_peak_bytes() - live0) / mib);
        j["estimate_alloc_mib"] = static_cast<double>(est.total_bytes) / mib;
      }
      j["mfu_6n"] = 6.0 * n * tok_s / (peak_tflops * 1e12);
      j["mfu_4n"] = 4.0 * n * tok_s / (peak_tflops * 1e12);
      j["steps"] = steps;
      j["dtype"] = enum_name(dt);
      j["device"] = enum_name(cfg.train.device);
      per[enum_name(m)] = j;
      if (!args.json) {
        print0("%-6s %-8s %12lld %10.1f %12.0f %9.3f %9.1f %9.1f %9.1f %12s %10.1f %10.1f %8.3f\n", enum_name(dt),
               enum_name(m), static_cast<long long>(s.report().trainable_params), t.step_ms, tok_s, t.comm_fraction,
               j["forward_ms"].get<double>(), j["backward_ms"].get<double>(), j["update_ms"].get<double>(),
               human_bytes(static_cast<double>(s.optimizer().state_bytes())).c_str(),
               cfg.train.device == Device::Cuda ? gpu * 1024.0 : rss, j["estimate_mib"].get<double>(),
               j["mfu_4n"].get<double>());
      }
    }
    out[enum_name(dt)] = per;
  }
  if (args.json) print0("%s\n", json_line(out).c_str());
  return 0;
}

}  // namespace ds
