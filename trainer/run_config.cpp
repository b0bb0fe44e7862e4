#include "trainer/run_config.h"

#include <fstream>
#include <map>
#include <set>

namespace ds {

namespace {

// Overridden keys are reported as "--set key" instead of a file line.
Locator locator_for(const std::string& file, const std::set<std::string>& overridden) {
  Locator by_line = file_locator(file);
  return [by_line, overridden](const std::string& key, const YAML::Node& node) {
    if (overridden.count(key)) return std::string("--set");
    return by_line(key, node);
  };
}

void apply_override(YAML::Node& root, const std::string& text, std::set<std::string>& overridden) {
  const auto eq = text.find('=');
  const auto dot = text.find('.');
  if (eq == std::string::npos || dot == std::string::npos || dot > eq) {
    throw ConfigError("--set " + text + ": expected section.key=value");
  }
  const std::string section = text.substr(0, dot);
  const std::string key = text.substr(dot + 1, eq - dot - 1);
  YAML::Node value;
  try {
    value = YAML::Load(text.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    throw ConfigError("--set " + text + ": value is not valid YAML: " + e.msg);
  }
  if (!root[section]) root[section] = YAML::Node(YAML::NodeType::Map);
  if (!root[section].IsMap()) throw ConfigError("--set " + text + ": section '" + section + "' is not a mapping");
  root[section][key] = value;
  overridden.insert(section + "." + key);
}

}  // namespace

RunConfig load_run_config(const std::string& file, const std::vector<std::string>& overrides) {
  RunConfig cfg;
  cfg.file = file;
  YAML::Node root;
  std::ifstream in(file);
  if (!in) throw ConfigError(file + ": cannot open the configuration file");
  try {
    root = YAML::Load(in);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(file + ":" + std::to_string(e.mark.line + 1) + ": not valid YAML: " + e.msg);
  }
  if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap()) throw ConfigError(file + ": the top level must be a mapping of sections");
  std::set<std::string> overridden;
  for (const auto& o : overrides) apply_override(root, o, overridden);
  const Locator where = locator_for(file, overridden);

  static const std::set<std::string> sections{"model", "peft", "data", "train", "checkpoint", "log", "parallel"};
  for (const auto& kv : root) {
    if (!sections.count(kv.first.Scalar())) {
      throw ConfigError(where(kv.first.Scalar(), kv.first) + ": " + kv.first.Scalar() +
                        ": unknown section (known: model peft data train checkpoint log parallel)");
    }
  }
  parse_model_config(root["model"], where, cfg.model);
  parse_peft_config(root["peft"], where, cfg.peft);
  parse_data_config(root["data"], where, cfg.data);
  {
    Fields f(root["train"], "train", where);
    auto& t = cfg.train;
    const int64_t big = int64_t{1} << 40;
    f.get("steps", t.steps, 0, big);
    f.get("micro_batch", t.micro_batch, 1, 1 << 20);
    f.get("grad_accum", t.grad_accum, 1, 1 << 20);
    f.get("seq_len", t.seq_len, 1, 1 << 24);
    f.get("lr", t.lr, 0.0, 10.0);
    f.get("min_lr_ratio", t.min_lr_ratio, 0.0, 1.0);
    f.get("warmup_steps", t.warmup_steps, 0, big);
    f.get("weight_decay", t.weight_decay, 0.0, 10.0);
    f.get("beta1", t.beta1, 0.0, 0.999999);
    f.get("beta2", t.beta2, 0.0, 0.999999999);
    f.get("eps", t.eps, 0.0, 1.0);
    f.get("grad_clip", t.grad_clip, 0.0, 1e9);
    f.get("seed", t.seed, 0, std::numeric_limits<int64_t>::max());
    f.get("eval_every", t.eval_every, 0, big);
    f.get("eval_windows", t.eval_windows, 0, big);
    f.get("threads", t.threads, 0, 4096);
    f.get_choice("device", t.device, {"cpu", "cuda"});
    if (t.seq_len > cfg.model.max_seq_len && cfg.model.path.empty()) {
      f.fail("seq_len", "value " + std::to_string(t.seq_len) + " exceeds model.max_seq_len " +
                            std::to_string(cfg.model.max_seq_len));
    }
    f.finish();
  }
  {
    Fields f(root["checkpoint"], "checkpoint", where);
    f.get("dir", cfg.checkpoint.dir);
    f.get("every", cfg.checkpoint.every, 0, int64_t{1} << 40);
    f.finish();
  }
  {
    Fields f(root["log"], "log", where);
    f.get("every", cfg.log.every, 1, int64_t{1} << 40);
    f.get("jsonl", cfg.log.jsonl);
    f.finish();
  }
  {
    Fields f(root["parallel"], "parallel", where);
    auto& p = cfg.parallel;
    f.get("tp", p.tp, 1, 1 << 16);
    f.get("bucket_mb", p.bucket_mb, 1e-6, 1e6);
    f.get("overlap_grad_sync", p.overlap_grad_sync);
    f.get("zero", p.zero, 0, 1);
    f.get_choice("backend", p.backend, {"mpi", "nccl"});
    f.get("timeout_s", p.timeout_s, 0.0, 1e7);
    if (cfg.model.path.empty() && cfg.model.n_head % p.tp != 0) {
      f.fail("tp", "model.n_head " + std::to_string(cfg.model.n_head) + " is not divisible by parallel.tp " +
                       std::to_string(p.tp));
    }
    f.finish();
  }
  if (cfg.data.paths.empty()) {
    throw ConfigError(file + ": data.path: is required (a text file, a directory or a glob)");
  }
  return cfg;
}

std::string dump_run_config(const RunConfig& c) {
  YAML::Emitter e;
  e << YAML::BeginMap;
  e << YAML::Key << "model" << YAML::Value << YAML::BeginMap;
  if (!c.model.path.empty()) e << YAML::Key << "path" << YAML::Value << c.model.path;
  e << YAML::Key << "vocab_size" << YAML::Value << c.model.vocab_size << YAML::Key << "n_layer" << YAML::Value
    << c.model.n_layer << YAML::Key << "n_head" << YAML::Value << c.model.n_head << YAML::Key << "d_model"
    << YAML::Value << c.model.d_model << YAML::Key << "d_ff" << YAML::Value << c.model.d_ff << YAML::Key
    << "max_seq_len" << YAML::Value << c.model.max_seq_len << YAML::Key << "tie_embeddings" << YAML::Value
    << c.model.tie_embeddings << YAML::EndMap;
  const auto& p = c.peft;
  e << YAML::Key << "peft" << YAML::Value << YAML::BeginMap << YAML::Key << "method" << YAML::Value << p.method
    << YAML::Key << "r" << YAML::Value << p.r << YAML::Key << "alpha" << YAML::Value << p.alpha << YAML::Key
    << "dropout" << YAML::Value << p.dropout << YAML::Key << "targets" << YAML::Value << YAML::Flow << p.targets
    << YAML::Key << "use_rslora" << YAML::Value << p.use_rslora << YAML::Key << "lora_init" << YAML::Value
    << p.lora_init << YAML::Key << "adapter_size" << YAML::Value << p.adapter_size << YAML::Key
    << "adapter_reduction" << YAML::Value << p.adapter_reduction << YAML::Key << "adapter_placement"
    << YAML::Value << p.adapter_placement << YAML::Key << "adapter_nonlinearity" << YAML::Value
    << p.adapter_nonlinearity << YAML::Key << "adapter_tp" << YAML::Value << p.adapter_tp << YAML::EndMap;
  e << YAML::Key << "data" << YAML::Value << YAML::BeginMap << YAML::Key << "path" << YAML::Value << YAML::Flow
    << c.data.paths << YAML::Key << "val_fraction" << YAML::Value << c.data.val_fraction << YAML::Key << "tokenizer"
    << YAML::Value << c.data.tokenizer << YAML::EndMap;
  const auto& t = c.train;
  e << YAML::Key << "train" << YAML::Value << YAML::BeginMap << YAML::Key << "steps" << YAML::Value << t.steps
    << YAML::Key << "micro_batch" << YAML::Value << t.micro_batch << YAML::Key << "grad_accum" << YAML::Value
    << t.grad_accum << YAML::Key << "seq_len" << YAML::Value << t.seq_len << YAML::Key << "lr" << YAML::Value
    << t.lr << YAML::Key << "seed" << YAML::Value << t.seed << YAML::EndMap;
  e << YAML::Key << "parallel" << YAML::Value << YAML::BeginMap << YAML::Key << "tp" << YAML::Value
    << c.parallel.tp << YAML::Key << "zero" << YAML::Value << c.parallel.zero << YAML::EndMap;
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

}  // namespace ds
