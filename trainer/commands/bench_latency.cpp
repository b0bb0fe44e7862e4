// deltashard bench latency: forward latency of the base model, LoRA unmerged, LoRA merged and
// adapters, at batch 1 and a larger batch; medians of repeated timed runs after warm-up.
#include <algorithm>
#include <chrono>
#include <map>

#include "core/model_io.h"
#include "dist/mpi_env.h"
#include "trainer/commands/cli.h"
#include "trainer/metrics.h"
#include "trainer/model_builder.h"

namespace ds {


int cmd_bench_latency(int argc, char** argv) {
  CommonArgs args;
  std::string batches = "1,8";
  int runs = 30, warmup = 5;
  po::options_description desc("deltashard bench latency");
  add_common(desc, args, true);
  desc.add_options()("batches", po::value<std::string>(&batches), "batch sizes, comma separated (default 1,8)")(
      "runs", po::value<int>(&runs), "timed runs per point (default 30)")(
      "warmup", po::value<int>(&warmup), "untimed runs first (default 5)");
  if (!parse_args(argc, argv, desc, args, true, "deltashard bench latency CONFIG [--batches 1,8] [--runs N] [--json]")) return 0;
  const RunConfig cfg = load_run_config(args.config, args.overrides);
  const std::vector<int64_t> bs = parse_int_list(batches, "--batches", 1);
  const int64_t T = cfg.train.seq_len;
  if (cfg.train.threads > 0) torch::set_num_threads(cfg.train.threads);
  torch::NoGradGuard no_grad;

  struct Variant {
    const char* key;
    PeftMethod method;
    bool merge;
  };
  const Variant variants[] = {{"base", PeftMethod::None, false},
                              {"lora_unmerged", PeftMethod::Lora, false},
                              {"lora_merged", PeftMethod::Lora, true},
                              {"adapter", PeftMethod::Adapter, false}};
  Json out = Json::object();
  std::map<std::string, std::vector<double>> table;
  ProcessGrid self = make_grid(GridOptions{1, Backend::Mpi, 0, MPI_COMM_SELF});
  for (const auto& v : variants) {
    RunConfig c = cfg;
    c.parallel.tp = 1;
    c.peft.method = v.method;
    c.peft.dropout = 0;
    BuiltModel b = build_model(c, *self.tp_group);
    Transformer& model = b.model;
    const ModelConfig& mc = c.model;
    if (v.merge) {
      for (auto& [n, l] : lora_layers(model)) l->merge();
    }
    model->eval();
    Json rows = Json::array();
    for (int64_t bs_i : bs) {
      const torch::Tensor x = torch::randint(0, mc.vocab_size, {bs_i, T}, torch::TensorOptions().dtype(torch::kLong).device(b.device));
      for (int i = 0; i < warmup; ++i) model->forward(x);
      std::vector<double> ms;
      for (int i = 0; i < runs; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        model->forward(x);
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
      Json row = Json::object();
      row["batch"] = bs_i;
      row["seq_len"] = T;
      row["forward_ms"] = median(ms);
      table[v.key].push_back(median(ms));
      row["runs"] = runs;
      rows.push_back(row);
    }
    out[v.key] = rows;
  }
  out["threads"] = static_cast<int64_t>(torch::get_num_threads());
  if (args.json) {
    print0("%s\n", json_line(out).c_str());
    return 0;
  }
  print0("forward latency, median of %d runs, seq_len %lld, %d threads\n", runs, static_cast<long long>(T),
         torch::get_num_threads());
  print0("%-14s", "variant");
  for (int64_t b : bs) print0("  batch %-6lld", static_cast<long long>(b));
  print0("\n");
  for (const auto& v : variants) {
    print0("%-14s", v.key);
    for (double ms : table[v.key]) print0("  %9.3f ms ", ms);
    print0("\n");
  }
  return 0;
}

int cmd_bench(int argc, char** argv) {
  const std::string what = argc > 1 ? argv[1] : "";
  if (what == "latency") return cmd_bench_latency(argc - 1, argv + 1);
  if (what == "comm") return cmd_bench_comm(argc - 1, argv + 1);
  if (what == "step") return cmd_bench_step(argc - 1, argv + 1);
  if (what == "--help" || what == "-h") {
    print0("usage: deltashard bench latency|comm|step [options]   (deltashard bench KIND --help)\n");
    return 0;
  }
  throw UsageError("bench needs one of latency, comm, step (got '" + what + "')");
}

}  // namespace ds
