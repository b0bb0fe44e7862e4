// deltashard eval, merge, convert and inspect: commands that look at a model and a checkpoint
// without training it. Each builds its model through the model builder; none has an optimizer.
#include <cstdio>

#include "core/dir_layout.h"
#include "core/hf_layout.h"
#include "core/model_io.h"
#include "dist/mpi_env.h"
#include "dist/tp_gather.h"
#include "trainer/checkpoint.h"
#include "trainer/commands/cli.h"
#include "trainer/metrics.h"
#include "trainer/trainer.h"

namespace ds {

int cmd_eval(int argc, char** argv) {
  CommonArgs args;
  std::string checkpoint;
  bool merged = false;
  po::options_description desc("deltashard eval");
  add_common(desc, args, true);
  desc.add_options()("checkpoint", po::value<std::string>(&checkpoint), "load trainable parameters from this checkpoint")(
      "merged", po::bool_switch(&merged), "merge LoRA into the base weights before evaluating");
  if (!parse_args(argc, argv, desc, args, true, "deltashard eval CONFIG [--checkpoint DIR] [--merged] [--json]")) return 0;
  const RunConfig cfg = load_run_config(args.config, args.overrides);
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

int cmd_inspect(int argc, char** argv) {
  CommonArgs args;
  bool resolved = false;
  po::options_description desc("deltashard inspect");
  add_common(desc, args, true);
  desc.add_options()("resolved", po::bool_switch(&resolved),
                     "print the complete resolved run configuration (every key, defaults included, paths absolute)");
  if (!parse_args(argc, argv, desc, args, true, "deltashard inspect CONFIG [--set k=v] [--resolved] [--json]")) return 0;
  RunConfig cfg = load_run_config(args.config, args.overrides);
  if (resolved) {
    write0(dump_run_config(cfg));
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
