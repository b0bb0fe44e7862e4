#include "trainer/campaign_config.h"

#include <algorithm>
#include <map>
#include <set>

namespace ds {

namespace {

const std::vector<std::string>& job_sections() {
  static const std::vector<std::string> v{"peft", "data", "train"};
  return v;
}

// A job's sections as YAML mappings, by section name (absent sections are left out).
using JobNodes = std::map<std::string, YAML::Node>;

bool safe_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-' || c == '+';
}

// A directory name under DIR/jobs/: nothing that climbs, hides or nests.
bool safe_name(const std::string& s) {
  if (s.empty() || s[0] == '.') return false;
  for (char c : s) {
    if (!safe_char(c)) return false;
  }
  return true;
}

std::string value_text(const YAML::Node& n) {
  if (n.IsScalar()) return n.Scalar();
  std::string out;
  if (n.IsSequence()) {
    for (const auto& x : n) out += (out.empty() ? "" : "+") + value_text(x);
  }
  return out;
}

template <class T>
bool has_key(const std::string& key) {
  return field_texts(T{}).count(key) > 0;
}

// The base's sections with the job's keys over them, checked as a campaign needs them.
CampaignJob read_job(const RunConfig& base, const std::string& name, const JobNodes& nodes, const Locator& where) {
  CampaignJob j{name, base.peft, base.data, base.train};
  const std::string p = "campaign." + name + ".";
  auto node = [&](const char* s) {
    auto it = nodes.find(s);
    return it == nodes.end() ? YAML::Node(YAML::NodeType::Undefined) : it->second;
  };
  FieldReader peft(node("peft"), p + "peft", where);
  describe(peft, j.peft);
  peft.finish();
  FieldReader data(node("data"), p + "data", where);
  describe(data, j.data);
  if (j.data.tokenizer.empty()) data.fail("tokenizer", "must be auto, bytes or the path of a tokenizer.json");
  data.finish();
  FieldReader train(node("train"), p + "train", where);
  describe(train, j.train);
  // A job's epochs replace the base's steps and the other way round, as in a config of its own.
  if (train.has("epochs") && j.train.epochs > 0) {
    if (train.has("steps") && j.train.steps != 0) train.fail("epochs", "give train.epochs or train.steps, not both");
    j.train.steps = 0;
  } else if (train.has("steps")) {
    j.train.epochs = 0;
  }
  if (j.peft.method != PeftMethod::Lora) {
    peft.fail("method", std::string(enum_name(j.peft.method)) + ": a campaign trains LoRA only");
  }
  if (j.peft.targets.empty()) peft.fail("targets", "LoRA needs at least one target");
  if (const auto d = shared_key_differs(j.train, base.train)) train.fail(d->first.c_str(), d->second);
  if (base.model.path.empty() && j.train.seed != base.train.seed) {
    train.fail("seed", "without model.path the base is drawn from train.seed, which every job then shares; give "
                       "model.path to vary it");
  }
  train.finish();
  return j;
}

// campaign_sweep: {section.key: [values]} in the order written.
struct SweepAxis {
  std::string section, key;
  YAML::Node key_node;
  std::vector<YAML::Node> values;
};

std::vector<SweepAxis> read_sweep(const YAML::Node& sweep, const Locator& where) {
  if (!sweep.IsMap() || sweep.size() == 0) {
    throw ConfigError(where("campaign_sweep", sweep) +
                      ": campaign_sweep: expected a mapping of section.key to a list of values");
  }
  std::vector<SweepAxis> axes;
  for (const auto& kv : sweep) {
    const std::string dotted = kv.first.Scalar();
    const auto dot = dotted.find('.');
    SweepAxis a{dot == std::string::npos ? dotted : dotted.substr(0, dot),
                dot == std::string::npos ? "" : dotted.substr(dot + 1), kv.first, {}};
    const std::string at = where("campaign_sweep." + dotted, kv.first) + ": campaign_sweep." + dotted + ": ";
    if (std::find(job_sections().begin(), job_sections().end(), a.section) == job_sections().end()) {
      throw ConfigError(at + "expected peft.KEY, data.KEY or train.KEY");
    }
    const bool known = a.section == "peft"   ? has_key<PeftConfig>(a.key)
                       : a.section == "data" ? has_key<DataConfig>(a.key)
                                             : has_key<TrainOptions>(a.key);
    if (!known) throw ConfigError(at + "unknown key");
    if (!kv.second.IsSequence() || kv.second.size() == 0) throw ConfigError(at + "expected a non-empty list of values");
    for (const auto& v : kv.second) a.values.push_back(v);
    axes.push_back(a);
  }
  return axes;
}

}  // namespace

std::optional<std::pair<std::string, std::string>> shared_key_differs(const TrainOptions& job, const TrainOptions& base) {
  static const std::vector<std::string> keys{"seq_len",   "grad_accum",   "device",     "threads",
                                             "recompute", "stop_signals", "stop_after", "eval_every",
                                             "campaign_products"};
  const auto mine = field_texts(job), theirs = field_texts(base);
  for (const auto& k : keys) {
    if (mine.at(k) != theirs.at(k)) {
      return std::make_pair(k, mine.at(k) + " differs from the base's train." + k + " " + theirs.at(k) +
                                   "; every job of a campaign shares it");
    }
  }
  return std::nullopt;
}

std::string sweep_name(const std::vector<std::pair<std::string, std::string>>& key_values) {
  std::string out;
  for (const auto& [k, v] : key_values) {
    std::string part = k + "-" + v;
    for (char& c : part) {
      if (!safe_char(c) || c == '_') c = '-';
    }
    out += (out.empty() ? "" : "_") + part;
  }
  return out;
}

void parse_campaign(const YAML::Node& root, const Locator& where, RunConfig& cfg) {
  const YAML::Node list = root["campaign"], sweep = root["campaign_sweep"];
  if (!list && !sweep) return;
  if (cfg.peft.method != PeftMethod::Lora) {
    const YAML::Node peft = root["peft"];
    throw ConfigError(where("peft.method", peft && peft["method"] ? peft["method"] : peft) + ": peft.method: " +
                      enum_name(cfg.peft.method) + ": a campaign trains LoRA only");
  }
  // The listed jobs, each read and checked on its own first, so errors point at its lines.
  std::vector<std::pair<CampaignJob, JobNodes>> listed;
  if (list) {
    if (!list.IsSequence() || list.size() == 0) {
      throw ConfigError(where("campaign", list) + ": campaign: expected a list of jobs {name, peft, data, train}");
    }
    for (size_t i = 0; i < list.size(); ++i) {
      const YAML::Node job = list[i];
      const std::string at = "campaign[" + std::to_string(i) + "]";
      if (!job.IsMap()) throw ConfigError(where(at, job) + ": " + at + ": expected a mapping {name, peft, data, train}");
      if (!job["name"]) throw ConfigError(where(at, job) + ": " + at + ".name: is required");
      const std::string name = job["name"].IsScalar() ? job["name"].Scalar() : "";
      if (!safe_name(name)) {
        throw ConfigError(where(at + ".name", job["name"]) + ": " + at + ".name: '" + name +
                          "' is not safe as a directory name (letters, digits and . _ + -, not starting with .)");
      }
      JobNodes nodes;
      for (const auto& kv : job) {
        const std::string k = kv.first.Scalar();
        if (k == "name") continue;
        if (std::find(job_sections().begin(), job_sections().end(), k) == job_sections().end()) {
          throw ConfigError(where(at + "." + k, kv.first) + ": campaign." + name + "." + k +
                            ": unknown key (a job sets name, peft, data, train)");
        }
        nodes[k] = kv.second;
      }
      listed.emplace_back(read_job(cfg, name, nodes, where), nodes);
    }
  }
  std::vector<std::pair<CampaignJob, YAML::Node>> jobs;  // with the node that names each
  if (!sweep) {
    for (size_t i = 0; i < listed.size(); ++i) jobs.emplace_back(listed[i].first, list[i]["name"]);
  } else {
    const std::vector<SweepAxis> axes = read_sweep(sweep, where);
    // Without a list the sweep crosses the base alone; with one, every listed job.
    if (listed.empty()) listed.push_back({CampaignJob{"", cfg.peft, cfg.data, cfg.train}, {}});
    for (size_t li = 0; li < listed.size(); ++li) {
      const auto& [job, nodes] = listed[li];
      std::vector<size_t> at(axes.size(), 0);
      while (true) {
        JobNodes point;
        for (const auto& [s, n] : nodes) {
          point[s] = YAML::Node(YAML::NodeType::Map);
          for (const auto& kv : n) point[s][kv.first.Scalar()] = kv.second;
        }
        std::vector<std::pair<std::string, std::string>> named;
        for (size_t a = 0; a < axes.size(); ++a) {
          const SweepAxis& ax = axes[a];
          const JobNodes& given = point;
          if (given.count(ax.section) && given.at(ax.section)[ax.key]) {
            throw ConfigError(where("campaign_sweep", ax.key_node) + ": campaign_sweep." + ax.section + "." + ax.key +
                              ": job " + job.name + " sets it too");
          }
          if (!point.count(ax.section)) point[ax.section] = YAML::Node(YAML::NodeType::Map);
          point[ax.section][ax.key] = ax.values[at[a]];
          named.emplace_back(ax.key, value_text(ax.values[at[a]]));
        }
        const std::string name = (job.name.empty() ? "" : job.name + "_") + sweep_name(named);
        jobs.emplace_back(read_job(cfg, name, point, where), sweep);
        size_t a = axes.size();
        while (a > 0 && ++at[a - 1] == axes[a - 1].values.size()) at[--a] = 0;
        if (a == 0) break;
      }
    }
  }
  std::set<std::string> names;
  for (const auto& [job, node] : jobs) {
    if (!names.insert(job.name).second) {
      throw ConfigError(where("campaign", node) + ": campaign." + job.name + ": two jobs have this name");
    }
    cfg.campaign.push_back(job);
  }
}

RunConfig job_config(const RunConfig& cfg, size_t i) {
  const CampaignJob& j = cfg.campaign.at(i);
  RunConfig out = cfg;
  out.campaign.clear();
  out.peft = j.peft;
  out.data = j.data;
  out.train = j.train;
  out.checkpoint.dir = cfg.checkpoint.dir.empty() ? "" : cfg.checkpoint.dir + "/jobs/" + j.name;
  out.log.jsonl.clear();
  return out;
}

void resolve_campaign(RunConfig& cfg) {
  for (size_t i = 0; i < cfg.campaign.size(); ++i) {
    RunConfig jc = job_config(cfg, i);
    jc.file = cfg.file + " (campaign job " + cfg.campaign[i].name + ")";
    resolve_run_config(jc);
    cfg.campaign[i].peft = jc.peft;
    cfg.campaign[i].data = jc.data;
    cfg.campaign[i].train = jc.train;
  }
}

namespace {
// Writes only the keys in `keys`, in describe() order.
struct ChangedFieldWriter {
  FieldWriter w;
  const std::set<std::string>& keys;
  template <class T, class... Rest>
  void operator()(const char* key, T& v, Rest&&... rest) {
    if (keys.count(key)) w(key, v, std::forward<Rest>(rest)...);
  }
  // describe() gives some lists their choices as `{}`, which a template cannot take.
  void operator()(const char* key, std::vector<std::string>& v, const std::vector<std::string>& choices) {
    if (keys.count(key)) w(key, v, choices);
  }
};

template <class T>
void write_changed(YAML::Emitter& e, const char* name, const T& job, const T& base) {
  const auto mine = field_texts(job), theirs = field_texts(base);
  std::set<std::string> keys;
  for (const auto& [k, v] : mine) {
    if (theirs.at(k) != v) keys.insert(k);
  }
  if (keys.empty()) return;
  e << YAML::Key << name << YAML::Value << YAML::BeginMap;
  ChangedFieldWriter w{FieldWriter(e), keys};
  describe(w, const_cast<T&>(job));
  e << YAML::EndMap;
}
}  // namespace

void dump_campaign(YAML::Emitter& e, const RunConfig& c) {
  if (c.campaign.empty()) return;
  e << YAML::Key << "campaign" << YAML::Value << YAML::BeginSeq;
  for (const auto& j : c.campaign) {
    e << YAML::BeginMap << YAML::Key << "name" << YAML::Value << YAML::DoubleQuoted << j.name;
    write_changed(e, "peft", j.peft, c.peft);
    write_changed(e, "data", j.data, c.data);
    write_changed(e, "train", j.train, c.train);
    e << YAML::EndMap;
  }
  e << YAML::EndSeq;
}

}  // namespace ds
