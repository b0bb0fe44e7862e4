// deltashard comm-model: what a step's communication would cost on a grid larger than this
// machine. For each method and each DP size it replays one real training step of CONFIG on a
// dry-run grid of dp × tp groups (dist/dry_run.h: collectives recorded with their exact sizes,
// nothing moved), so the schedule is the trainer's own, then prices every collective with the
// alpha-beta model of dist/cost_model.h, using a link per group that is either given for a
// target fabric (--fabric FILE.yaml) or fitted to `bench comm --json` output measured here (--fit).
#include <yaml-cpp/yaml.h>

#include <cstdio>

#include "core/yaml_fields.h"
#include "dist/cost_model.h"
#include "dist/dry_run.h"
#include "dist/mpi_env.h"
#include "trainer/commands/cli.h"
#include "trainer/comm_report.h"
#include "trainer/metrics.h"
#include "trainer/trainer.h"

namespace ds {

namespace {

LinkModel read_link(const YAML::Node& root, const char* group, const std::string& file) {
  Fields f(root[group], group, file_locator(file));
  f.require("alpha_us");
  f.require("busbw_gbps");
  LinkModel m;
  f.get("alpha_us", m.alpha_us, 0.0, 1e7);
  f.get("busbw_gbps", m.busbw_gbps, 1e-6, 1e6);
  f.get("source", m.source);
  f.finish();
  if (m.source.empty()) m.source = file;
  return m;
}

Fabric read_fabric(const std::string& file) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(file);
  } catch (const YAML::BadFile&) {
    throw ConfigError(file + ": cannot open the fabric file");
  } catch (const YAML::ParserException& e) {
    throw ConfigError(file + ":" + std::to_string(e.mark.line + 1) + ": not valid YAML: " + e.msg);
  }
  if (!root.IsMap()) throw ConfigError(file + ": expected a mapping with sections tp and dp");
  for (const auto& kv : root) {
    const std::string k = kv.first.Scalar();
    if (k != "tp" && k != "dp") throw ConfigError(file + ": unknown section '" + k + "' (expected tp, dp)");
  }
  for (const char* g : {"tp", "dp"}) {
    if (!root[g]) throw ConfigError(file + ": section '" + std::string(g) + "' is required");
  }
  return Fabric{read_link(root, "tp", file), read_link(root, "dp", file)};
}

// `bench comm --json` output: an array of rows with op, bytes, ranks, median_us.
Fabric fit_fabric(const std::string& file) {
  const Json rows = read_json_file(file);
  if (!rows.is_array()) throw FileError(file + ": expected the JSON array that `bench comm --json` prints");
  std::vector<CommSample> samples;
  for (size_t i = 0; i < rows.size(); ++i) {
    const JsonFields r(rows[i], file, "[" + std::to_string(i) + "].");
    samples.push_back(CommSample{r.need_string("op"), r.need_int("bytes"), static_cast<int>(r.need_int("ranks")),
                                 r.need_number("median_us")});
  }
  LinkModel m;
  try {
    m = fit_link(samples);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(file + ": " + e.what());
  }
  m.source += " of " + file;
  return Fabric{m, m};  // one machine here: both groups share its link
}

std::vector<int64_t> parse_grid(const std::string& text) {
  return parse_int_list(text.rfind("dp=", 0) == 0 ? text.substr(3) : text, "--grid", 1);
}

Json link_json(const LinkModel& l) {
  Json j = Json::object();
  j["alpha_us"] = l.alpha_us;
  j["busbw_gbps"] = l.busbw_gbps;
  j["source"] = l.source;
  return j;
}

}  // namespace

int cmd_comm_model(int argc, char** argv) {
  CommonArgs args;
  std::string methods = "lora,adapter_sharded,adapter_replicated,full", grid_text = "dp=8,64,512", fabric_file,
              fit_file;
  int tp = 0;
  po::options_description desc("deltashard comm-model");
  add_common(desc, args, true);
  desc.add_options()("methods", po::value<std::string>(&methods), "as for compare")(
      "grid", po::value<std::string>(&grid_text), "DP sizes to model (default dp=8,64,512)")(
      "tp", po::value<int>(&tp), "tensor-parallel size (default: parallel.tp of CONFIG)")(
      "fabric", po::value<std::string>(&fabric_file), "YAML with tp and dp links: alpha_us, busbw_gbps, source")(
      "fit", po::value<std::string>(&fit_file), "fit one link for both groups to `bench comm --json` output");
  const std::string usage =
      "deltashard comm-model CONFIG (--fabric FILE.yaml | --fit BENCH.json) [--grid dp=8,64,512] [--tp 8] "
      "[--methods ...] [--json]";
  if (!parse_args(argc, argv, desc, args, true, usage)) return 0;
  if (fabric_file.empty() == fit_file.empty()) throw UsageError("give exactly one of --fabric or --fit");
  if (world_size() != 1) throw UsageError("comm-model replays the grid in one process: run it without mpirun");
  RunConfig base = load_run_config(args.config, args.overrides);
  base.checkpoint.dir.clear();
  base.log.jsonl.clear();
  if (tp > 0) base.parallel.tp = tp;
  if (base.parallel.tp < 1) throw UsageError("--tp must be >= 1");
  const std::vector<int64_t> dps = parse_grid(grid_text);
  const std::vector<std::string> names = split_methods(methods);
  std::vector<RunConfig> cfgs;
  for (const auto& m : names) cfgs.push_back(config_for_method(base, m));
  const Fabric fabric = fabric_file.empty() ? fit_fabric(fit_file) : read_fabric(fabric_file);

  Json out = Json::object();
  Json fj = Json::object();
  fj["tp"] = link_json(fabric.tp);
  fj["dp"] = link_json(fabric.dp);
  out["fabric"] = fj;
  out["config"] = args.config;
  out["micro_batch"] = base.train.micro_batch;
  out["seq_len"] = base.train.seq_len;
  out["grad_accum"] = base.train.grad_accum;
  out["zero"] = base.parallel.zero;
  Json grids = Json::array();
  if (!args.json) {
    print0("# deltashard comm-model %s: tp %d, micro_batch %lld x seq %lld x grad_accum %lld, zero %d\n",
           args.config.c_str(), base.parallel.tp, static_cast<long long>(base.train.micro_batch),
           static_cast<long long>(base.train.seq_len), static_cast<long long>(base.train.grad_accum),
           base.parallel.zero);
    print0("# tp link: alpha %.2f us, %.1f GB/s (%s)\n", fabric.tp.alpha_us, fabric.tp.busbw_gbps,
           fabric.tp.source.c_str());
    print0("# dp link: alpha %.2f us, %.1f GB/s (%s)\n", fabric.dp.alpha_us, fabric.dp.busbw_gbps,
           fabric.dp.source.c_str());
    print0("# collectives and bytes: one step replayed on a dry-run grid (exact); ms: the alpha-beta model\n");
    print0("%6s %6s %-19s %6s %6s %11s %5s %11s %10s %10s %10s %11s\n", "dp", "world", "method", "tp_fwd",
           "tp_bwd", "tp_bytes", "dp", "dp_bytes", "tp_ms", "dp_ms", "comm_ms", "optim/rank");
  }
  for (const int64_t dp64 : dps) {
    const int dp = static_cast<int>(dp64);
    Json g = Json::object();
    g["dp"] = dp;
    g["tp"] = base.parallel.tp;
    g["world"] = dp * base.parallel.tp;
    Json per = Json::object();
    for (size_t i = 0; i < names.size(); ++i) {
      ProcessGrid grid = make_dry_run_grid(dp, base.parallel.tp);
      Trainer s(cfgs[i], grid);
      const StepResult r = s.step();
      const StepComm c = step_comm(r.comm, s.config().model.n_layer);
      const double tp_ms = records_us(r.comm, fabric, "tp") / 1e3;
      const double dp_ms = (records_us(r.comm, fabric, "dp") + records_us(r.comm, fabric, "world")) / 1e3;
      Json j = Json::object();
      put_step_comm(j, c);
      j["tp_ms"] = tp_ms;
      j["dp_ms"] = dp_ms;
      j["comm_ms"] = tp_ms + dp_ms;
      j["trainable_params"] = s.report().trainable_params;
      j["optimizer_state_bytes"] = s.optimizer().state_bytes();
      per[names[i]] = j;
      if (!args.json) {
        print0("%6d %6d %-19s %6lld %6lld %11s %5lld %11s %10.3f %10.3f %10.3f %11s\n", dp, dp * base.parallel.tp,
               names[i].c_str(), static_cast<long long>(c.tp_fwd), static_cast<long long>(c.tp_bwd),
               human_bytes(static_cast<double>(c.tp_bytes)).c_str(), static_cast<long long>(c.dp_collectives),
               human_bytes(static_cast<double>(c.dp_bytes)).c_str(), tp_ms, dp_ms, tp_ms + dp_ms,
               human_bytes(static_cast<double>(s.optimizer().state_bytes())).c_str());
      }
    }
    g["methods"] = per;
    grids.push_back(g);
  }
  out["grids"] = grids;
  if (args.json) print0("%s\n", json_line(out).c_str());
  return 0;
}

}  // namespace ds
