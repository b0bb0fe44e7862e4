// deltashard export-peft / import-peft: a LoRA checkpoint to and from Hugging Face PEFT's adapter
// directory (adapter_config.json + adapter_model.safetensors), in the base model's module names
// (core/peft_io.h).
#include <cstdio>

#include "core/model_io.h"
#include "core/peft_io.h"
#include "dist/mpi_env.h"
#include "trainer/checkpoint.h"
#include "trainer/commands/cli.h"
#include "trainer/manifest.h"
#include "core/dir_layout.h"
#include "core/files.h"
#include "trainer/trainer.h"

namespace ds {

PeftFiles write_peft_export(const std::string& ck, const std::string& out) {
  RunConfig cfg = parse_run_config(ck + "/config.yaml", {});
  cfg.data.tokenizer = "bytes";  // the adapter needs the model's shape and names, not its data
  if (cfg.peft.method != PeftMethod::Lora) {
    throw UsageError(ck + ": peft.method is " + enum_name(cfg.peft.method) + "; export-peft writes LoRA checkpoints");
  }
  resolve_run_config(cfg);
  std::map<std::string, torch::Tensor> lora;
  for (const auto& [n, t] : read_safetensors(ck + "/trainable.safetensors").tensors) {
    if (n.find(".lora_") != std::string::npos) lora[n] = t;
  }
  PeftFiles f = export_peft(cfg.model, cfg.peft, lora, cfg.model.path);
  if (world_rank() == 0) {
    if (const auto old = claim_output_dir(out, DirKind::PeftAdapter, "--out")) clear_marked_dir(out, *old);
    write_safetensors(out + "/adapter_model.safetensors", f.tensors, f.metadata);
    write_file_atomic(out + "/adapter_config.json", json_pretty(f.config));
    write_marker(out, DirKind::PeftAdapter, {"adapter_model.safetensors", "adapter_config.json"});
  }
  return f;
}

int cmd_export_peft(int argc, char** argv) {
  CommonArgs args;
  std::string checkpoint, out;
  po::options_description desc("deltashard export-peft");
  add_common(desc, args, false, false);
  desc.add_options()("checkpoint", po::value<std::string>(&checkpoint), "a LoRA checkpoint directory")(
      "out", po::value<std::string>(&out), "adapter directory to write");
  const std::string usage = "deltashard export-peft --checkpoint DIR --out DIR [--json]";
  if (!parse_args(argc, argv, desc, args, false, usage)) return 0;
  if (checkpoint.empty() || out.empty()) throw UsageError("--checkpoint and --out are required (usage: " + usage + ")");
  const std::string ck = open_checkpoint(checkpoint);
  const PeftFiles f = write_peft_export(ck, out);
  const ModelConfig mc = parse_run_config(ck + "/config.yaml", {}).model;
  int64_t params = 0;
  for (const auto& [n, t] : f.tensors) params += t.numel();
  Json j = Json::object();
  j["out"] = out;
  j["layout"] = enum_name(mc.layout);
  j["tensors"] = static_cast<int64_t>(f.tensors.size());
  j["params"] = params;
  if (args.json) {
    print0("%s\n", json_line(j).c_str());
  } else {
    print0("export-peft: %s -> %s (%s layout, %zu tensors, %lld parameters)\n", ck.c_str(), out.c_str(),
           enum_name(mc.layout), f.tensors.size(), static_cast<long long>(params));
  }
  return 0;
}

int cmd_import_peft(int argc, char** argv) {
  CommonArgs args;
  std::string adapter, out;
  po::options_description desc("deltashard import-peft");
  add_common(desc, args, true);
  desc.add_options()("adapter", po::value<std::string>(&adapter), "PEFT adapter directory")(
      "out", po::value<std::string>(&out), "checkpoint directory to write");
  const std::string usage = "deltashard import-peft CONFIG --adapter DIR --out DIR   (CONFIG: model.path is the base)";
  if (!parse_args(argc, argv, desc, args, true, usage)) return 0;
  if (adapter.empty() || out.empty()) throw UsageError("--adapter and --out are required (usage: " + usage + ")");
  RunConfig cfg = load_run_config(args.config, args.overrides);
  const ModelConfig mc = cfg.model;
  const std::string cfg_path = adapter + "/adapter_config.json";
  if (!is_regular_file(cfg_path)) throw FileError(cfg_path + ": cannot open (is '" + adapter + "' a PEFT adapter directory?)");
  const Json acfg = read_json_file(cfg_path);
  const SafetensorsFile st = read_safetensors(adapter + "/adapter_model.safetensors");
  const PeftImport imp = import_peft(mc, acfg, st.tensors, st.metadata, adapter);
  cfg.peft.method = PeftMethod::Lora;
  cfg.peft.r = imp.peft.r;
  cfg.peft.alpha = imp.peft.alpha;
  cfg.peft.use_rslora = imp.peft.use_rslora;
  cfg.peft.dropout = imp.peft.dropout;
  cfg.peft.targets = imp.peft.targets;
  cfg.parallel = ParallelConfig{};
  cfg.train.seq_len = std::min(cfg.train.seq_len, mc.max_seq_len);
  cfg.checkpoint.dir = absolute_path(out);
  ProcessGrid grid = make_grid(GridOptions{1, Backend::Mpi, 0, MPI_COMM_SELF});
  Trainer s(cfg, grid, TrainerOptions{"", false});
  load_params(*s.model(), imp.lora, adapter, [](const std::string& n) { return n.find(".lora_") != std::string::npos; });
  if (world_rank() == 0) s.save_checkpoint(out);
  Json j = Json::object();
  j["out"] = out;
  j["r"] = imp.peft.r;
  j["alpha"] = imp.peft.alpha;
  Json t = Json::array();
  for (const auto& x : imp.peft.targets) t.push_back(x);
  j["targets"] = t;
  if (args.json) {
    print0("%s\n", json_line(j).c_str());
  } else {
    std::string ts;
    for (const auto& x : imp.peft.targets) ts += (ts.empty() ? "" : ",") + x;
    print0("import-peft: %s -> %s (r %lld, alpha %g, targets %s)\n", adapter.c_str(), out.c_str(),
           static_cast<long long>(imp.peft.r), imp.peft.alpha, ts.c_str());
  }
  return 0;
}

}  // namespace ds
