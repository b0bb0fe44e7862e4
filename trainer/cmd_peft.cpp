// deltashard export-peft / import-peft: a LoRA checkpoint to and from Hugging Face PEFT's adapter
// directory (adapter_config.json + adapter_model.safetensors), in the base model's module names
// (core/peft_io.h).
#include <sys/stat.h>

#include <cstdio>

#include "core/model_io.h"
#include "core/peft_io.h"
#include "dist/mpi_env.h"
#include "trainer/checkpoint.h"
#include "trainer/cli.h"
#include "trainer/session.h"

namespace ds {

int cmd_export_peft(int argc, char** argv) {
  CommonArgs args;
  std::string checkpoint, out;
  po::options_description desc("deltashard export-peft");
  add_common(desc, args, false);
  desc.add_options()("checkpoint", po::value<std::string>(&checkpoint), "a LoRA checkpoint directory")(
      "out", po::value<std::string>(&out), "adapter directory to write");
  const std::string usage = "deltashard export-peft --checkpoint DIR --out DIR [--json]";
  if (!parse_args(argc, argv, desc, args, false, usage)) return 0;
  if (checkpoint.empty() || out.empty()) throw UsageError("--checkpoint and --out are required (usage: " + usage + ")");
  const std::string ck = checkpoint_dir_to_read(checkpoint);
  const RunConfig cfg = load_run_config(ck + "/config.yaml", {});
  if (cfg.peft.method != "lora") {
    throw UsageError(ck + ": peft.method is " + cfg.peft.method + "; export-peft writes LoRA checkpoints");
  }
  const ModelConfig mc = resolve_model_config(cfg);
  std::map<std::string, torch::Tensor> lora;
  for (const auto& [n, t] : read_safetensors(ck + "/trainable.safetensors").tensors) {
    if (n.find(".lora_") != std::string::npos) lora[n] = t;
  }
  const PeftFiles f = export_peft(mc, cfg.peft, lora, cfg.model.path);
  if (world_rank() == 0) {
    ::mkdir(out.c_str(), 0755);
    write_safetensors(out + "/adapter_model.safetensors", f.tensors, f.metadata);
    write_file_atomic(out + "/adapter_config.json", f.config.dump(2) + "\n");
  }
  int64_t params = 0;
  for (const auto& [n, t] : f.tensors) params += t.numel();
  Json j = Json::object();
  j["out"] = out;
  j["layout"] = mc.layout;
  j["tensors"] = static_cast<int64_t>(f.tensors.size());
  j["params"] = params;
  if (args.json) {
    print0("%s\n", j.dump().c_str());
  } else {
    print0("export-peft: %s -> %s (%s layout, %zu tensors, %lld parameters)\n", ck.c_str(), out.c_str(),
           mc.layout.c_str(), f.tensors.size(), static_cast<long long>(params));
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
  const ModelConfig mc = resolve_model_config(cfg);
  const std::string cfg_path = adapter + "/adapter_config.json";
  YAML::Node acfg;
  try {
    acfg = YAML::LoadFile(cfg_path);
  } catch (const YAML::BadFile&) {
    throw FileError(cfg_path + ": cannot open (is '" + adapter + "' a PEFT adapter directory?)");
  } catch (const YAML::Exception& e) {
    throw FileError(cfg_path + ": not valid JSON: " + e.msg);
  }
  const SafetensorsFile st = read_safetensors(adapter + "/adapter_model.safetensors");
  PeftImport imp;
  try {
    imp = import_peft(mc, acfg, st.tensors, st.metadata, adapter);
  } catch (const YAML::Exception& e) {  // a value of the wrong JSON type
    throw FileError(cfg_path + ": " + e.what());
  }
  cfg.peft.method = "lora";
  cfg.peft.r = imp.peft.r;
  cfg.peft.alpha = imp.peft.alpha;
  cfg.peft.use_rslora = imp.peft.use_rslora;
  cfg.peft.dropout = imp.peft.dropout;
  cfg.peft.targets = imp.peft.targets;
  cfg.parallel = ParallelConfig{};
  cfg.train.seq_len = std::min(cfg.train.seq_len, mc.max_seq_len);
  ProcessGrid grid = make_grid(GridOptions{1, "mpi", 0, MPI_COMM_SELF});
  TrainSession s(cfg, grid, "", false);
  load_params(*s.model(), imp.lora, adapter, [](const std::string& n) { return n.find(".lora_") != std::string::npos; });
  if (world_rank() == 0) s.save_checkpoint(out);
  Json j = Json::object();
  j["out"] = out;
  j["r"] = imp.peft.r;
  j["alpha"] = imp.peft.alpha;
  Json t = Json::array();
  for (const auto& x : imp.peft.targets) t.push(x);
  j["targets"] = t;
  if (args.json) {
    print0("%s\n", j.dump().c_str());
  } else {
    std::string ts;
    for (const auto& x : imp.peft.targets) ts += (ts.empty() ? "" : ",") + x;
    print0("import-peft: %s -> %s (r %lld, alpha %g, targets %s)\n", adapter.c_str(), out.c_str(),
           static_cast<long long>(imp.peft.r), imp.peft.alpha, ts.c_str());
  }
  return 0;
}

}  // namespace ds
