// deltashard eval, merge and inspect: commands that look at a model and a checkpoint without
// training it.
#include <cstdio>

#include "core/hf_layout.h"
#include "core/model_io.h"
#include "dist/mpi_env.h"
#include "trainer/cli.h"
#include "trainer/metrics.h"
#include "trainer/session.h"

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
  ProcessGrid grid = make_grid(grid_options(cfg));
  TrainSession s(cfg, grid);
  if (!checkpoint.empty()) s.load_trainable(checkpoint);
  if (merged) {
    if (cfg.peft.method != "lora") throw UsageError("--merged needs peft.method lora (got " + cfg.peft.method + ")");
    s.merge_lora(true);
  }
  const EvalResult e = s.evaluate();
  Json j = Json::object();
  j["eval_loss"] = e.loss;
  j["perplexity"] = e.perplexity;
  j["tokens"] = e.tokens;
  j["merged"] = merged;
  if (args.json) {
    print0("%s\n", j.dump().c_str());
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
  ProcessGrid grid = make_grid(grid_options(cfg));
  TrainSession s(cfg, grid, "", false);
  s.load_trainable(checkpoint);
  s.save_merged_model(out);
  Json j = Json::object();
  j["model_dir"] = out;
  j["method"] = cfg.peft.method;
  j["params"] = count_params(s.model()).total_params - count_params(s.model()).delta_params;
  if (args.json) {
    print0("%s\n", j.dump().c_str());
  } else {
    print0("merged %s into %s (config.json + model.safetensors); load it with model.path: %s\n", checkpoint.c_str(),
           out.c_str(), out.c_str());
  }
  return 0;
}

int cmd_convert(int argc, char** argv) {
  CommonArgs args;
  std::string model, out, layout;
  int64_t shard_mb = 0;
  po::options_description desc("deltashard convert");
  add_common(desc, args, false);
  desc.add_options()("model", po::value<std::string>(&model), "model directory (any supported layout)")(
      "out", po::value<std::string>(&out), "directory to write")(
      "layout", po::value<std::string>(&layout), "deltashard | gpt2 | llama")(
      "shard-mb", po::value<int64_t>(&shard_mb), "split the weights into shards of this size (Hugging Face index)");
  const std::string usage = "deltashard convert --model DIR --out DIR --layout deltashard|gpt2|llama [--shard-mb N]";
  if (!parse_args(argc, argv, desc, args, false, usage)) return 0;
  if (model.empty() || out.empty() || layout.empty()) throw UsageError("--model, --out and --layout are required");
  ModelConfig c = read_model_config(model);
  try {
    check_layout(c, layout);
  } catch (const std::invalid_argument& e) {
    throw UsageError(model + ": " + e.what());
  }
  const auto tensors = read_model_tensors(model, c);
  c.layout = layout;
  if (world_rank() == 0) {
    save_model_dir(out, c, NamedTensors(tensors.begin(), tensors.end()), shard_mb << 20, model);
  }
  print0("convert: %s -> %s (%s layout)\n", model.c_str(), out.c_str(), layout.c_str());
  return 0;
}

int cmd_inspect(int argc, char** argv) {
  CommonArgs args;
  po::options_description desc("deltashard inspect");
  add_common(desc, args, true);
  if (!parse_args(argc, argv, desc, args, true, "deltashard inspect CONFIG [--set k=v] [--json]")) return 0;
  RunConfig cfg = load_run_config(args.config, args.overrides);
  cfg.parallel.tp = 1;  // counts are of the whole model
  torch::manual_seed(0);
  const ModelConfig mc = resolve_model_config(cfg);
  Transformer model(mc, dense_factory());
  const LinearFactory f = dense_factory();
  const ParamReport r = apply_peft(model, cfg.peft, f);
  Json j = r.to_json();
  j["method"] = cfg.peft.method;
  if (args.json) {
    print0("%s\n", j.dump().c_str());
    return 0;
  }
  print0("%-40s %-10s %14s %14s\n", "module", "kind", "params", "trainable");
  for (const auto& m : r.modules) {
    print0("%-40s %-10s %14lld %14lld\n", m.name.c_str(), m.kind.c_str(), static_cast<long long>(m.params),
           static_cast<long long>(m.trainable));
  }
  print0("\nmethod %s: %lld trainable of %lld parameters (%.4f%%), %s trainable\n", cfg.peft.method.c_str(),
         static_cast<long long>(r.trainable_params), static_cast<long long>(r.total_params),
         100.0 * r.trainable_params / std::max<int64_t>(1, r.total_params),
         human_bytes(static_cast<double>(r.trainable_bytes)).c_str());
  return 0;
}

}  // namespace ds
