// deltashard eval, merge, convert and inspect: commands that look at a model and a checkpoint
// without training it. Each builds its model through the model builder; none has an optimizer.
#include <cstdio>

#include "core/dir_layout.h"
#include "core/hf_layout.h"
#include "core/model_io.h"
#include "dist/mpi_env.h"
#include "dist/tp_gather.h"
#include "trainer/checkpoint.h"
#include "trainer/campaign.h"
#include "trainer/commands/cli.h"
#include "trainer/memory_model.h"
#include "trainer/memory_stats.h"
#include "trainer/metrics.h"
#include "trainer/trainer.h"

namespace ds {

namespace {
// Every asked job of a campaign checkpoint on one base, loaded once: its held-out loss by job.
int eval_campaign(const RunConfig& cfg, const std::string& checkpoint, const std::string& jobs, bool json) {
  std::vector<std::string> names;
  for (size_t b = 0; b < jobs.size();) {
    size_t e = jobs.find(',', b);
    if (e == std::string::npos) e = jobs.size();
    names.push_back(jobs.substr(b, e - b));
    b = e + 1;
  }
  if (names.empty()) {
    for (const auto& j : cfg.campaign) names.push_back(j.name);
  }
  ProcessGrid grid = make_grid(grid_options(cfg));
  Campaign c(cfg, grid, checkpoint);
  Json out = Json::object();
  for (const auto& n : names) {
    size_t j = 0;
    while (j < c.num_jobs() && c.job(j).name != n) ++j;
    if (j == c.num_jobs()) throw UsageError("--job: '" + n + "' is not a job of " + cfg.file);
    const EvalResult e = c.evaluate(j);
    Json r = Json::object();
    r["eval_loss"] = e.loss;
    r["perplexity"] = e.perplexity;
    r["eval_tokens"] = e.tokens;
    r["step"] = c.job(j).step;
    out[n] = r;
    if (!json) print0("%-24s eval loss %.4f  perplexity %.2f  (%lld tokens, step %lld)\n", n.c_str(), e.loss,
                      e.perplexity, static_cast<long long>(e.tokens), static_cast<long long>(c.job(j).step));
  }
  if (json) print0("%s\n", json_line(out).c_str());
  return 0;
}
}  // namespace

int cmd_eval(int argc, char** argv) {
  CommonArgs args;
  std::string checkpoint, jobs;
  bool merged = false;
  po::options_description desc("deltashard eval");
  add_common(desc, args, true);
  desc.add_options()("checkpoint", po::value<std::string>(&checkpoint), "load trainable parameters from this checkpoint")(
      "merged", po::bool_switch(&merged), "merge LoRA into the base weights before evaluating")(
      "job", po::value<std::string>(&jobs), "a campaign config: these jobs (a,b; default all), keyed by job");
  if (!parse_args(argc, argv, desc, args, true, "deltashard eval CONFIG [--checkpoint DIR] [--merged] [--job a,b] [--json]")) {
    return 0;
  }
  const RunConfig cfg = load_run_config(args.config, args.overrides);
  if (!cfg.campaign.empty()) {
    if (merged) throw UsageError("--merged: a campaign's jobs share one base and are not merged into it");
    return eval_campaign(cfg, checkpoint, jobs, args.json);
  }
  if (!jobs.empty()) throw UsageError("--job: " + cfg.file + " is not a campaign config");
  if (merged && cfg.peft.method != PeftMethod::Lora) {
    throw UsageError(std::string("--merged needs peft.method lora (got ") + enum_name(cfg.peft.method) + ")");
  }
  ProcessGrid grid = make_grid(grid_options(cfg));
  set_threads(cfg);
  BuiltModel b = build_model(cfg, *grid.tp_group, BuildOptions{true, true});
  if (!checkpoint.empty()) load_trainable(b.model, cfg, checkpoint);
  if (merged) {
    for (auto& [name, layer] : lora_layers(b.model)) layer->merge();
  }
  const EvalResult e = cfg.data.format == DataFormat::Jsonl
                           ? evaluate_model(b.model, load_sft_dataset(cfg, b.tokenizer), cfg.train, grid, b.device)
                           : evaluate_model(b.model, load_dataset(cfg, b.tokenizer), cfg.train, grid, b.device);
  Json j = Json::object();
  j["eval_loss"] = e.loss;
  j["perplexity"] = e.perplexity;
  j["eval_tokens"] = e.tokens;
  if (cfg.data.format == DataFormat::Jsonl) j["counted_tokens"] = e.tokens;
  j["merged"] = merged;
  j["dtype"] = enum_name(cfg.model.dtype);
  j["device"] = enum_name(cfg.train.device);
  if (args.json) {
    print0("%s\n", json_line(j).c_str());
  } else {
    print0("eval loss %.4f  perplexity %.2f  (%lld tokens%s)\n", e.loss, e.perplexity, static_cast<long long>(e.tokens),
           merged ? ", LoRA merged" : "");
  }
  return 0;
}

int cmd_merge(int argc, char** argv) {
  CommonArgs args;
  std::string checkpoint, out;
  po::options_description desc("deltashard merge");
  add_common(desc, args, true);
  desc.add_options()("checkpoint", po::value<std::string>(&checkpoint), "checkpoint directory (required)")(
      "out", po::value<std::string>(&out), "model directory to write (required)");
  if (!parse_args(argc, argv, desc, args, true, "deltashard merge CONFIG --checkpoint DIR --out DIR")) return 0;
  if (checkpoint.empty() || out.empty()) throw UsageError("merge needs --checkpoint DIR and --out DIR");
  const RunConfig cfg = load_run_config(args.config, args.overrides);
  if (cfg.peft.method == PeftMethod::Adapter) {
    throw UsageError("merge: bottleneck adapters cannot be merged into the base weights (they add a non-linear "
                     "layer); use the checkpoint with peft.method adapter instead");
  }
  ProcessGrid grid = make_grid(grid_options(cfg));
  set_threads(cfg);
  BuiltModel b = build_model(cfg, *grid.tp_group);
  load_trainable(b.model, cfg, checkpoint);
  // W + s·B·A in the base's type: a bf16 base gives a bf16 merged model (rounded once, here).
  for (auto& [name, layer] : lora_layers(b.model)) layer->merge();
  const NamedTensors full =
      gather_tp(base_tensors(b.model), collect_param_shards(*b.model), *grid.tp_group, "merge.gather_base");
  if (grid.world_rank == 0) save_model_dir(out, cfg.model, full, 0, cfg.model.path, "--out");
  grid.world->barrier("merge.done");
  Json j = Json::object();
  j["model_dir"] = out;
  j["method"] = enum_name(cfg.peft.method);
  j["dtype"] = enum_name(cfg.model.dtype);
  j["params"] = b.report.total_params - b.report.delta_params;
  if (args.json) {
    print0("%s\n", json_line(j).c_str());
  } else {
    print0("merged %s into %s (%s); load it with model.path: %s\n", checkpoint.c_str(), out.c_str(),
           enum_name(cfg.model.dtype), out.c_str());
  }
  return 0;
}

int cmd_convert(int argc, char** argv) {
  CommonArgs args;
  std::string model, out, layout;
  int64_t shard_mb = 0;
  po::options_description desc("deltashard convert");
  add_common(desc, args, false, false);
  desc.add_options()("model", po::value<std::string>(&model), "model directory (any supported layout)")(
      "out", po::value<std::string>(&out), "directory to write")(
      "layout", po::value<std::string>(&layout), "deltashard | gpt2 | llama")(
      "shard-mb", po::value<int64_t>(&shard_mb), "split the weights into shards of this size (Hugging Face index)");
  const std::string usage = "deltashard convert --model DIR --out DIR --layout deltashard|gpt2|llama [--shard-mb N]";
  if (!parse_args(argc, argv, desc, args, false, usage)) return 0;
  if (model.empty() || out.empty() || layout.empty()) throw UsageError("--model, --out and --layout are required");
  if (shard_mb < 0) throw UsageError("--shard-mb must be >= 0");
  const auto to = enum_from<Layout>(layout);
  if (!to) throw UsageError("--layout: '" + layout + "' is not one of " + join_choices(enum_choices<Layout>()));
  model = resolve_model_dir(model);
  ModelConfig c = read_model_config(model);
  try {
    check_layout(c, *to);
  } catch (const ConfigError& e) {
    throw UsageError(model + ": " + e.what());
  }
  const auto tensors = read_model_tensors(model, c);
  c.layout = *to;
  if (world_rank() == 0) {
    save_model_dir(out, c, NamedTensors(tensors.begin(), tensors.end()), shard_mb << 20, model, "--out");
  }
  print0("convert: %s -> %s (%s layout)\n", model.c_str(), out.c_str(), layout.c_str());
  return 0;
}

namespace {
// inspect --memory: the per-rank estimate of trainer/memory_model.h as a table or JSON.
void print_memory(const RunConfig& cfg, int dp, bool json) {
  // This process's resident memory before any model exists: what LibTorch, MPI and the program
  // take by themselves (host memory; a CPU run's peak RSS includes it).
  const double baseline = rss_mib();
  // A campaign config: the whole campaign (trainer/memory_model.h), each job's own by its job config.
  const MemoryEstimate e = cfg.campaign.empty() ? estimate_memory(cfg, dp) : estimate_campaign_memory(cfg, dp);
  if (json) {
    Json j = e.to_json();
    j["process_baseline_bytes"] = static_cast<int64_t>(baseline * 1024 * 1024);
    print0("%s\n", json_line(j).c_str());
    return;
  }
  const auto mib = [](int64_t b) { return static_cast<double>(b) / (1024.0 * 1024.0); };
  if (!cfg.campaign.empty()) {
    print0("# a campaign of %zu jobs: one frozen base, every job's LoRA and optimizer, the joint batch's block "
           "activations, one job's head and loss at a time (micro_batch below: job 0's)\n",
           cfg.campaign.size());
  }
  print0("# memory per rank: %s, tp %d, dp %d, zero %d, %s base computing in %s on %s, micro_batch %lld x seq %lld, "
         "attention %s, recompute %s\n",
         cfg.file.c_str(), e.tp, e.dp, cfg.parallel.zero, e.dtype.c_str(), e.compute.c_str(),
         enum_name(cfg.train.device), static_cast<long long>(e.micro_batch), static_cast<long long>(e.seq_len),
         e.attention.c_str(), e.recompute ? "layer" : "none");
  print0("%-34s %14s %12s\n", "term", "bytes", "MiB");
  const std::pair<const char*, int64_t> rows[] = {
      {"frozen weights", e.frozen_bytes},        {"trainable parameters (fp32)", e.trainable_bytes},
      {"gradients (fp32)", e.grad_bytes},        {"optimizer state (AdamW, fp32)", e.optimizer_bytes},
      {"activations (peak, one micro-batch)", e.activation_bytes}, {"total", e.total_bytes}};
  for (const auto& [name, b] : rows) print0("%-34s %14lld %12.1f\n", name, static_cast<long long>(b), mib(b));
  const auto& a = e.activations;
  print0("\nactivations: kept per block %.1f MiB (all blocks %.1f MiB), head and loss %.1f MiB, loss backward +%.1f MiB, "
         "block backward +%.1f MiB\n",
         mib(a.block_saved), mib(a.blocks_saved), mib(a.head_saved), mib(a.loss_transient), mib(a.block_transient));
  print0("activations by train.recompute: none %.1f MiB, layer %.1f MiB\n", mib(e.activation_bytes_keep),
         mib(e.activation_bytes_recompute));
  print0("process baseline (this process before any model: LibTorch, MPI): %.1f MiB of host memory, not in the total\n",
         baseline);
}
}  // namespace

int cmd_inspect(int argc, char** argv) {
  CommonArgs args;
  bool resolved = false, memory = false;
  int dp = 1;
  po::options_description desc("deltashard inspect");
  add_common(desc, args, true);
  desc.add_options()("resolved", po::bool_switch(&resolved),
                     "print the complete resolved run configuration (every key, defaults included, paths absolute)")(
      "memory", po::bool_switch(&memory),
      "estimate memory per rank: frozen weights, trainable parameters, gradients, optimizer state, activations")(
      "dp", po::value<int>(&dp), "data-parallel size for --memory (ZeRO-1 divides optimizer state by it; default 1)");
  if (!parse_args(argc, argv, desc, args, true,
                  "deltashard inspect CONFIG [--set k=v] [--resolved | --memory [--dp N]] [--json]")) {
    return 0;
  }
  if (dp < 1) throw UsageError("--dp must be >= 1");
  RunConfig cfg = load_run_config(args.config, args.overrides);
  if (resolved) {
    write0(dump_run_config(cfg));
    return 0;
  }
  if (memory) {
    print_memory(cfg, dp, args.json);
    return 0;
  }
  // Counts are of the whole model: an unsharded build on the meta device, which allocates nothing.
  cfg.parallel.tp = 1;
  ProcessGrid self = make_grid(GridOptions{1, Backend::Mpi, 0, MPI_COMM_SELF});
  BuildOptions bo;
  bo.load_weights = false;
  bo.meta = true;
  const ParamReport r = build_model(cfg, *self.tp_group, bo).report;
  Json j = r.to_json();
  j["method"] = enum_name(cfg.peft.method);
  if (args.json) {
    print0("%s\n", json_line(j).c_str());
    return 0;
  }
  print0("%-40s %-10s %14s %14s\n", "module", "kind", "params", "trainable");
  for (const auto& m : r.modules) {
    print0("%-40s %-10s %14lld %14lld\n", m.name.c_str(), enum_name(m.kind), static_cast<long long>(m.params),
           static_cast<long long>(m.trainable));
  }
  print0("\nmethod %s: %lld trainable of %lld parameters (%.4f%%), %s trainable\n", enum_name(cfg.peft.method),
         static_cast<long long>(r.trainable_params), static_cast<long long>(r.total_params),
         100.0 * r.trainable_params / std::max<int64_t>(1, r.total_params),
         human_bytes(static_cast<double>(r.trainable_bytes)).c_str());
  return 0;
}

}  // namespace ds
