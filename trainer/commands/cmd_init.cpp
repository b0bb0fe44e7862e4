// deltashard init: a randomly initialised model directory from a model section (core/model_init.h),
// in a Hugging Face layout, written tensor by tensor.
#include <chrono>
#include <cstdio>

#include "core/dir_layout.h"
#include "core/hf_layout.h"
#include "core/model_init.h"
#include "dist/mpi_env.h"
#include "trainer/commands/cli.h"
#include "trainer/memory_stats.h"
#include "trainer/metrics.h"

namespace ds {

int cmd_init(int argc, char** argv) {
  CommonArgs args;
  std::string out, dtype, layout = "auto";
  uint64_t seed = 0;
  int64_t shard_mb = 5000;
  po::options_description desc("deltashard init");
  add_common(desc, args, true, false);
  desc.add_options()("out", po::value<std::string>(&out), "model directory to write (new, empty, or a model written before)")(
      "dtype", po::value<std::string>(&dtype), "storage type of the files: fp32 | bf16 | fp16 (default: model.dtype)")(
      "seed", po::value<uint64_t>(&seed), "every tensor is drawn from a generator seeded by (seed, its name) (default 0)")(
      "shard-mb", po::value<int64_t>(&shard_mb),
      "files of at most this many MiB, with model.safetensors.index.json (default 5000; 0: one file)")(
      "layout", po::value<std::string>(&layout),
      "auto | llama | gpt2 | deltashard (default auto: llama or gpt2 when the model fits, else deltashard)");
  const std::string usage =
      "deltashard init MODEL.yaml --out DIR [--dtype fp32|bf16|fp16] [--seed N] [--shard-mb 5000] "
      "[--layout auto|gpt2|llama|deltashard] [--json]";
  if (!parse_args(argc, argv, desc, args, true, usage)) return 0;
  if (out.empty()) throw UsageError("--out is required (usage: " + usage + ")");
  if (shard_mb < 0) throw UsageError("--shard-mb must be >= 0");
  ModelConfig cfg = read_model_section(args.config);
  InitOptions opt;
  opt.seed = seed;
  opt.dtype = cfg.dtype;
  if (!dtype.empty()) {
    const auto d = enum_from<DType>(dtype);
    if (!d) throw UsageError("--dtype: '" + dtype + "' is not one of " + join_choices(enum_choices<DType>()));
    opt.dtype = *d;
  }
  if (layout == "auto") {
    cfg.layout = auto_layout(cfg);
  } else {
    const auto l = enum_from<Layout>(layout);
    if (!l) throw UsageError("--layout: '" + layout + "' is not one of auto|" + join_choices(enum_choices<Layout>()));
    try {
      check_layout(cfg, *l);
    } catch (const ConfigError& e) {
      throw UsageError(args.config + ": " + e.what());
    }
    cfg.layout = *l;
  }
  const auto t0 = std::chrono::steady_clock::now();
  const ModelFiles files = init_model_files(cfg, opt);
  int64_t params = 0, bytes = 0;
  for (const auto& e : files.tensors) {
    int64_t n = 1;
    for (int64_t d : e.shape) n *= d;
    params += n;
    bytes += e.nbytes();
  }
  std::vector<std::string> written;
  if (world_rank() == 0) {
    save_model_dir(out, cfg, files, shard_mb << 20, "", "--out");
    written = read_marker(out)->files;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  Json j = Json::object();
  j["model_dir"] = out;
  j["layout"] = enum_name(cfg.layout);
  j["dtype"] = enum_name(opt.dtype);
  j["seed"] = seed;
  j["total_params"] = params;
  j["weight_bytes"] = bytes;
  j["tensors"] = files.tensors.size();
  j["files"] = written;
  j["wall_s"] = seconds;
  j["peak_rss_mib"] = peak_rss_mib();
  if (args.json) {
    print0("%s\n", json_line(j).c_str());
  } else {
    print0("init: %s: %s layout, %s, %lld parameters, %s in %zu files, %.1f s\n", out.c_str(), enum_name(cfg.layout),
           enum_name(opt.dtype), static_cast<long long>(params), human_bytes(static_cast<double>(bytes)).c_str(),
           written.size(), seconds);
  }
  return 0;
}

}  // namespace ds
