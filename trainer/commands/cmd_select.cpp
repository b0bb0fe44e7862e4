// deltashard select: writes a student model directory whose weights are selected from a larger
// pretrained teacher (core/weight_selection.h). The student is a YAML file with a `model` section
// (unset keys keep the teacher's values) or key=value pairs such as n_layer=6,d_model=384.
#include <cstdio>
#include <sstream>

#include "core/dir_layout.h"
#include "core/files.h"
#include "core/model_io.h"
#include "core/weight_selection.h"
#include "dist/mpi_env.h"
#include "trainer/commands/cli.h"
#include "trainer/metrics.h"

namespace ds {

namespace {

ModelConfig student_config(const std::string& spec, ModelConfig cfg) {
  cfg.path.clear();
  // Multi-head attention stays multi-head when the student changes n_head alone.
  if (cfg.kv_heads() == cfg.n_head) cfg.n_kv_head = 0;
  if (is_regular_file(spec)) {
    YAML::Node root;
    try {
      root = YAML::LoadFile(spec);
    } catch (const YAML::Exception& e) {
      throw ConfigError(spec + ": not valid YAML: " + e.msg);
    }
    if (!root.IsMap() || !root["model"]) throw ConfigError(spec + ": expected a `model:` section");
    YAML::Node model = YAML::Clone(root["model"]);
    if (model.IsMap()) model.remove("path");  // a training config may name the teacher there
    parse_model_config(model, file_locator(spec), cfg);
    return cfg;
  }
  // key=value,key=value: each value parsed as YAML, checked by the same strict reader.
  YAML::Node model(YAML::NodeType::Map);
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw UsageError("--student: '" + spec + "' is neither a file nor key=value pairs (e.g. n_layer=2,d_model=64)");
    }
    model[item.substr(0, eq)] = YAML::Load(item.substr(eq + 1));
  }
  parse_model_config(model, [](const std::string&, const YAML::Node&) { return std::string("--student"); }, cfg);
  return cfg;
}

}  // namespace

int cmd_select(int argc, char** argv) {
  CommonArgs args;
  std::string teacher_dir, student, out, layers = "uniform", elements = "uniform";
  uint64_t seed = 0;
  po::options_description desc("deltashard select");
  add_common(desc, args, false, false);
  desc.add_options()("teacher", po::value<std::string>(&teacher_dir), "pretrained model directory")(
      "student", po::value<std::string>(&student), "YAML file with a model section, or key=value,... sizes")(
      "out", po::value<std::string>(&out), "student model directory to write")(
      "layers", po::value<std::string>(&layers), "first | uniform (default uniform)")(
      "elements", po::value<std::string>(&elements),
      "uniform | consecutive | random | random-inconsistent (default uniform)")(
      "seed", po::value<uint64_t>(&seed), "for random element selection (default 0)");
  const std::string usage =
      "deltashard select --teacher DIR --student CONFIG_OR_SIZES --out DIR [--layers first|uniform] "
      "[--elements uniform|consecutive|random|random-inconsistent] [--seed N] [--json]";
  if (!parse_args(argc, argv, desc, args, false, usage)) return 0;
  if (teacher_dir.empty() || student.empty() || out.empty()) {
    throw UsageError("--teacher, --student and --out are required (usage: " + usage + ")");
  }
  SelectionOptions opt;
  try {
    opt.layers = parse_layer_selection(layers);
    opt.elements = parse_element_selection(elements);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  opt.seed = seed;

  teacher_dir = resolve_model_dir(teacher_dir);
  const ModelConfig tcfg = read_model_config(teacher_dir);
  const ModelConfig scfg = student_config(student, tcfg);
  try {
    check_student(tcfg, scfg);
  } catch (const std::invalid_argument& e) {
    throw ConfigError("--student: " + std::string(e.what()) + " (teacher " + teacher_dir + ")");
  }
  const std::map<std::string, torch::Tensor> teacher = read_model_tensors(teacher_dir, tcfg);
  // The student's tensor names and shapes, from the model code itself.
  torch::NoGradGuard no_grad;
  Transformer shape_model(scfg, dense_factory());
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  for (const auto& [name, t] : base_tensors(shape_model)) shapes.emplace_back(name, t.sizes().vec());
  const NamedTensors selected = select_weights(tcfg, teacher, scfg, shapes, opt, teacher_dir);
  // The teacher's tokenizer still fits when the vocabulary was not cut.
  if (world_rank() == 0) {
    save_model_dir(out, scfg, selected, 0, scfg.vocab_size == tcfg.vocab_size ? teacher_dir : "", "--out");
  }

  int64_t params = 0;
  for (const auto& [n, t] : selected) params += t.numel();
  const std::vector<int64_t> chosen = select_layers(tcfg.n_layer, scfg.n_layer, opt.layers);
  Json j = Json::object();
  j["out"] = out;
  j["params"] = params;
  Json lj = Json::array();
  for (int64_t l : chosen) lj.push_back(l);
  j["teacher_layers"] = lj;
  j["layers"] = layers;
  j["elements"] = elements;
  if (args.json) {
    print0("%s\n", json_line(j).c_str());
  } else {
    std::string ls;
    for (int64_t l : chosen) ls += (ls.empty() ? "" : ",") + std::to_string(l);
    print0("select: %s (%lld layers, d_model %lld, d_ff %lld) -> %s (%lld layers [teacher %s], d_model %lld, d_ff "
           "%lld): %s parameters, elements %s\n",
           teacher_dir.c_str(), static_cast<long long>(tcfg.n_layer), static_cast<long long>(tcfg.d_model),
           static_cast<long long>(tcfg.d_ff), out.c_str(), static_cast<long long>(scfg.n_layer), ls.c_str(),
           static_cast<long long>(scfg.d_model), static_cast<long long>(scfg.d_ff), human_count(params).c_str(),
           elements.c_str());
  }
  return 0;
}

}  // namespace ds
