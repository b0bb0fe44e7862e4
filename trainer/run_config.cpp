#include "trainer/run_config.h"

#include <fstream>
#include <set>

#include "core/dir_layout.h"
#include "core/files.h"
#include "core/model_io.h"
#include "trainer/campaign_config.h"

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

template <class T>
void read_section(const YAML::Node& root, const char* name, const Locator& where, T& out) {
  FieldReader r(root[name], name, where);
  describe(r, out);
  r.finish();
}

template <class T>
void write_section(YAML::Emitter& e, const char* name, const T& section) {
  e << YAML::Key << name << YAML::Value << YAML::BeginMap;
  FieldWriter w(e);
  describe(w, const_cast<T&>(section));
  e << YAML::EndMap;
}

// Records where each architecture key of the model section was given.
struct GivenKeys {
  const YAML::Node& node;
  const Locator& where;
  std::map<std::string, std::string>& out;
  template <class T, class... Rest>
  void operator()(const char* key, T&, Rest&&...) {
    if (node && node.IsMap() && node[key]) out[key] = where(std::string("model.") + key, node[key]);
  }
};

}  // namespace

RunConfig load_run_config(const std::string& file, const std::vector<std::string>& overrides) {
  RunConfig cfg = parse_run_config(file, overrides);
  resolve_run_config(cfg);
  return cfg;
}

RunConfig parse_run_config(const std::string& file, const std::vector<std::string>& overrides) {
  RunConfig cfg;
  cfg.file = file;
  std::string text;
  try {
    text = read_file(file);
  } catch (const FileError& e) {
    throw ConfigError(std::string(e.what()) + " (the run configuration)");
  }
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(file + ":" + std::to_string(e.mark.line + 1) + ": not valid YAML: " + e.msg);
  }
  if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap()) throw ConfigError(file + ": the top level must be a mapping of sections");
  check_duplicate_keys(root, "", file);
  std::set<std::string> overridden;
  for (const auto& o : overrides) apply_override(root, o, overridden);
  const Locator where = locator_for(file, overridden);

  static const std::vector<std::string> sections{"model", "peft",     "data",     "train",
                                                 "checkpoint", "log", "parallel", "campaign", "campaign_sweep"};
  for (const auto& kv : root) {
    const std::string name = kv.first.Scalar();
    if (std::find(sections.begin(), sections.end(), name) == sections.end()) {
      throw ConfigError(where(name, kv.first) + ": " + name + ": unknown section (known: " +
                        join_choices(sections, " ") + ")");
    }
  }
  parse_model_config(root["model"], where, cfg.model);
  {
    ModelConfig scratch;
    GivenKeys g{root["model"], where, cfg.model_keys_given};
    describe_architecture(g, scratch);
  }
  parse_peft_config(root["peft"], where, cfg.peft);
  parse_data_config(root["data"], where, cfg.data);
  read_section(root, "train", where, cfg.train);
  if (cfg.train.epochs > 0) {
    // Steps then come from the data; a resolved config says steps 0 beside its epochs.
    const YAML::Node t = root["train"];
    if (t["steps"] && cfg.train.steps != 0) {
      throw ConfigError(where("train.epochs", t["epochs"]) + ": train.epochs: give train.epochs or train.steps, not both");
    }
    cfg.train.steps = 0;
  }
  read_section(root, "checkpoint", where, cfg.checkpoint);
  read_section(root, "log", where, cfg.log);
  read_section(root, "parallel", where, cfg.parallel);
  if (cfg.data.paths.empty()) {
    throw ConfigError(file + ": data.path: is required (a text file, a directory or a glob)");
  }
  parse_campaign(root, where, cfg);
  return cfg;
}

void resolve_run_config(RunConfig& cfg) {
  ModelConfig& m = cfg.model;
  if (!m.path.empty()) {
    m.path = absolute_path(resolve_model_dir(absolute_path(m.path)));
    ModelConfig dir = read_model_config(m.path);
    if (dir.n_kv_head == dir.n_head) dir.n_kv_head = 0;
    ModelConfig given = m;
    // n_kv_head equal to the heads is "as many as the heads": the directory's heads when the YAML
    // does not give n_head (a disagreeing n_head is reported on its own).
    if (!cfg.model_keys_given.count("n_head")) given.n_head = dir.n_head;
    if (given.n_kv_head == given.n_head) given.n_kv_head = 0;
    const auto want = field_texts(given), have = field_texts(dir);
    for (const auto& [key, at] : cfg.model_keys_given) {
      if (want.at(key) != have.at(key)) {
        throw ConfigError(at + ": model." + key + ": " + want.at(key) + " disagrees with " + m.path +
                          "/config.json (" + have.at(key) + "); leave it out to use the model's");
      }
    }
    dir.path = m.path;
    dir.dtype = m.dtype;
    dir.check_finite = m.check_finite;
    m = dir;
  } else if (m.n_kv_head == m.n_head) {
    m.n_kv_head = 0;
  }
  for (auto& p : cfg.data.paths) p = absolute_path(p);
  if (cfg.data.format == DataFormat::Auto) {
    const std::string& first = cfg.data.paths.empty() ? std::string() : cfg.data.paths.front();
    const bool jsonl = first.size() >= 6 && first.compare(first.size() - 6, 6, ".jsonl") == 0;
    cfg.data.format = jsonl ? DataFormat::Jsonl : DataFormat::Text;
  }
  if (cfg.data.tokenizer == "auto") {
    const std::string t = tokenizer_in(m.path);
    cfg.data.tokenizer = t.empty() ? "bytes" : t;
  } else if (cfg.data.tokenizer != "bytes") {
    cfg.data.tokenizer = absolute_path(cfg.data.tokenizer);
  }
  cfg.checkpoint.dir = absolute_path(cfg.checkpoint.dir);
  if (cfg.data.cache_dir != "none") cfg.data.cache_dir = absolute_path(cfg.data.cache_dir);
  cfg.log.jsonl = absolute_path(cfg.log.jsonl);
  if (cfg.parallel.backend == Backend::Auto) {
    // A CUDA build without NCCL still runs: the MPI backend stages CUDA tensors through the host.
#ifdef DELTASHARD_HAVE_NCCL
    const bool nccl = true;
#else
    const bool nccl = false;
#endif
    cfg.parallel.backend = cfg.train.device == Device::Cuda && nccl ? Backend::Nccl : Backend::Mpi;
  }

  const std::string& f = cfg.file;
  if (cfg.train.seq_len > m.max_seq_len) {
    throw ConfigError(f + ": train.seq_len: " + std::to_string(cfg.train.seq_len) + " exceeds model.max_seq_len " +
                      std::to_string(m.max_seq_len));
  }
  if (m.n_head % cfg.parallel.tp != 0) {
    throw ConfigError(f + ": parallel.tp: " + std::to_string(cfg.parallel.tp) + " does not divide model.n_head " +
                      std::to_string(m.n_head));
  }
  if (m.kv_heads() % cfg.parallel.tp != 0) {
    throw ConfigError(f + ": parallel.tp: " + std::to_string(cfg.parallel.tp) +
                      " does not divide the model's key/value heads " + std::to_string(m.kv_heads()));
  }
  check_peft_fits(cfg.peft, m, f);
  for (const auto& [what, width] : {std::pair<const char*, int64_t>{"model.d_ff", m.d_ff}}) {
    if (width % cfg.parallel.tp != 0) {
      throw ConfigError(f + ": parallel.tp: " + std::to_string(cfg.parallel.tp) + " does not divide " + what + " " +
                        std::to_string(width));
    }
  }
  resolve_campaign(cfg);
}

std::string dump_run_config(const RunConfig& c) {
  YAML::Emitter e;
  e << YAML::BeginMap;
  write_section(e, "model", c.model);
  write_section(e, "peft", c.peft);
  write_section(e, "data", c.data);
  write_section(e, "train", c.train);
  write_section(e, "checkpoint", c.checkpoint);
  write_section(e, "log", c.log);
  write_section(e, "parallel", c.parallel);
  dump_campaign(e, c);
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

}  // namespace ds
