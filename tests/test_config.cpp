// The resolved run configuration, single process: every shipped run config resolves to a text
// that reads back to the same text byte for byte; the text holds every key of every section;
// sizes given beside model.path must agree with the directory; duplicate keys are refused; paths
// come out absolute and `auto` choices come out decided.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "core/linear.h"
#include "core/model_io.h"
#include "core/transformer.h"
#include "trainer/run_config.h"

using namespace ds;
namespace fs = std::filesystem;

namespace {

// One scratch directory per process, removed when the suite ends.
struct Scratch {
  fs::path root = fs::temp_directory_path() / ("deltashard_test_config_" + std::to_string(::getpid()));
  Scratch() { fs::create_directories(root); }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(root, ec);
  }
};
const fs::path& scratch() {
  static Scratch s;
  return s.root;
}

std::string write_text(const fs::path& path, const std::string& text) {
  if (!path.parent_path().empty()) fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
  return path.string();
}

// A DeltaShard-layout model directory with these sizes and fresh weights.
std::string write_model(const fs::path& dir, ModelConfig m) {
  m.path.clear();
  torch::manual_seed(1);
  Transformer t(m, dense_factory());
  save_model_dir(dir.string(), m, base_tensors(t));
  return fs::absolute(dir).lexically_normal().string();
}

ModelConfig small_model() {
  ModelConfig m;
  m.vocab_size = 256;
  m.n_layer = 2;
  m.n_head = 4;
  m.d_model = 32;
  m.d_ff = 64;
  m.max_seq_len = 32;
  return m;
}

// Every key of every section of a RunConfig, as describe() lists them.
std::map<std::string, std::map<std::string, std::string>> all_fields(const RunConfig& c) {
  return {{"model", field_texts(c.model)},  {"peft", field_texts(c.peft)},
          {"data", field_texts(c.data)},    {"train", field_texts(c.train)},
          {"checkpoint", field_texts(c.checkpoint)}, {"log", field_texts(c.log)},
          {"parallel", field_texts(c.parallel)}};
}

// dump -> file -> load -> dump gives the same bytes, and the same values field by field.
void expect_round_trip(const RunConfig& cfg, const std::string& name) {
  const std::string text1 = dump_run_config(cfg);
  const std::string copy = write_text(scratch() / "round_trip" / (name + ".resolved.yaml"), text1);
  RunConfig cfg2;
  try {
    cfg2 = load_run_config(copy, {});
  } catch (const std::exception& e) {
    FAIL() << name << ": the resolved text does not load back: " << e.what() << "\n" << text1;
  }
  const std::string text2 = dump_run_config(cfg2);
  EXPECT_EQ(text1, text2) << name << ": the resolved config does not read back to the same text";
  EXPECT_EQ(all_fields(cfg), all_fields(cfg2)) << name;
}

std::string error_of(const std::string& file, const std::vector<std::string>& overrides = {}) {
  try {
    load_run_config(file, overrides);
  } catch (const ConfigError& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("not a ConfigError: ") + e.what();
  }
  return "no error";
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

// Changes the working directory for one test.
struct InDir {
  fs::path before = fs::current_path();
  explicit InDir(const fs::path& dir) {
    fs::create_directories(dir);
    fs::current_path(dir);
  }
  ~InDir() { fs::current_path(before); }
};

}  // namespace

// Every run configuration under configs/ (files with a data section: configs/models/ holds bare
// model sections, configs/fabric/ cost-model fabrics). A config with model.path gets a fixture
// model directory with the sizes its other sections need (and any size it gives itself).
TEST(ResolvedConfig, EveryShippedRunConfigRoundTripsByteForByte) {
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(fs::path(DS_SOURCE_DIR) / "configs")) {
    if (e.path().extension() != ".yaml") continue;
    const YAML::Node root = YAML::LoadFile(e.path().string());
    if (root.IsMap() && root["data"]) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  std::set<std::string> names;
  for (const auto& f : files) names.insert(f.filename().string());
  for (const char* must : {"quickstart.yaml", "pretrain.yaml", "compare.yaml", "scale.yaml", "gpt2_small.yaml",
                           "select_student.yaml"}) {
    EXPECT_TRUE(names.count(must)) << "configs/" << must << " not found among the run configs";
  }

  for (const auto& f : files) {
    SCOPED_TRACE(f.string());
    const std::string name = fs::relative(f, fs::path(DS_SOURCE_DIR) / "configs").string();
    std::vector<std::string> overrides;
    const YAML::Node root = YAML::LoadFile(f.string());
    if (root["model"] && root["model"]["path"]) {
      // The sizes the config gives itself, else small ones; long enough for its train.seq_len.
      const RunConfig parsed = parse_run_config(f.string(), {});
      YAML::Node section(YAML::NodeType::Map);
      section["vocab_size"] = 256;
      section["n_layer"] = 2;
      section["n_head"] = 4;
      section["d_model"] = 32;
      section["d_ff"] = 64;
      section["max_seq_len"] = std::max<int64_t>(32, parsed.train.seq_len);
      for (const auto& kv : root["model"]) {
        const std::string key = kv.first.Scalar();
        if (key != "path" && key != "dtype" && key != "check_finite") section[key] = kv.second;
      }
      ModelConfig fx;
      parse_model_config(section, file_locator("fixture for " + name), fx);
      const std::string dir = write_model(scratch() / "models" / name, fx);
      overrides.push_back("model.path=" + dir);
    }
    RunConfig cfg;
    try {
      cfg = load_run_config(f.string(), overrides);
    } catch (const std::exception& e) {
      ADD_FAILURE() << name << ": does not load: " << e.what();
      continue;
    }
    expect_round_trip(cfg, name);
  }
}

// A LLaMA-style model given entirely in YAML: every non-default architecture choice survives the
// round trip, and the resolved text holds every key of every section, in describe() order.
TEST(ResolvedConfig, LlamaStyleYamlModelRoundTripsWithEveryKey) {
  const std::string file = write_text(scratch() / "llama.yaml",
                                      "model:\n"
                                      "  vocab_size: 256\n"
                                      "  n_layer: 2\n"
                                      "  n_head: 4\n"
                                      "  n_kv_head: 2\n"
                                      "  d_model: 32\n"
                                      "  d_ff: 96\n"
                                      "  max_seq_len: 64\n"
                                      "  tie_embeddings: false\n"
                                      "  norm: rmsnorm\n"
                                      "  activation: swiglu\n"
                                      "  positions: rope\n"
                                      "  bias: false\n"
                                      "  rope_theta: 500000.0\n"
                                      "  norm_eps: 1.0e-6\n"
                                      "  dtype: bf16\n"
                                      "peft:\n"
                                      "  targets: [q, k, v, o, gate, up, down]\n"
                                      "  alpha: 0.3\n"
                                      "data:\n"
                                      "  path: text.txt\n"
                                      "train:\n"
                                      "  lr: 1.0e-4\n"
                                      "  seq_len: 64\n");
  const RunConfig cfg = load_run_config(file, {});
  EXPECT_EQ(cfg.model.norm, NormKind::RmsNorm);
  EXPECT_EQ(cfg.model.activation, Activation::SwiGlu);
  EXPECT_EQ(cfg.model.positions, Positions::Rope);
  EXPECT_FALSE(cfg.model.bias);
  EXPECT_FALSE(cfg.model.tie_embeddings);
  EXPECT_EQ(cfg.model.n_kv_head, 2);
  EXPECT_EQ(cfg.model.rope_theta, 500000.0);
  EXPECT_EQ(cfg.model.norm_eps, 1e-6);
  expect_round_trip(cfg, "llama");

  const std::string text = dump_run_config(cfg);
  const YAML::Node root = YAML::Load(text);
  const auto want = all_fields(cfg);
  std::vector<std::string> sections;
  for (const auto& kv : root) sections.push_back(kv.first.Scalar());
  EXPECT_EQ(sections, (std::vector<std::string>{"model", "peft", "data", "train", "checkpoint", "log", "parallel"}));
  for (const auto& [section, fields] : want) {
    ASSERT_TRUE(root[section] && root[section].IsMap()) << section << " missing from\n" << text;
    std::set<std::string> have, expected;
    for (const auto& kv : root[section]) have.insert(kv.first.Scalar());
    for (const auto& [key, value] : fields) expected.insert(key);
    EXPECT_EQ(have, expected) << "keys of section " << section << " in\n" << text;
  }
  const RunConfig back = load_run_config(write_text(scratch() / "llama_back.yaml", text), {});
  EXPECT_EQ(back.model.n_kv_head, 2);
  EXPECT_EQ(back.model.dtype, DType::Bf16);
  EXPECT_EQ(back.peft.targets, (std::vector<std::string>{"q", "k", "v", "o", "gate", "up", "down"}));
}

// Sizes beside model.path: disagreeing ones name the file, line and key (or --set); agreeing ones,
// all of them, are accepted and resolve to the directory's model.
TEST(ResolvedConfig, SizesBesideModelPathMustAgree) {
  const std::string dir = write_model(scratch() / "agree_model", small_model());
  const std::string bad = write_text(scratch() / "disagree.yaml",
                                     "# sizes beside a model directory\n"
                                     "model:\n"
                                     "  path: " + dir + "\n"
                                     "  d_model: 32\n"
                                     "  n_layer: 6\n"
                                     "data:\n"
                                     "  path: text.txt\n"
                                     "train:\n"
                                     "  seq_len: 16\n");
  std::string e = error_of(bad);
  EXPECT_TRUE(starts_with(e, bad + ":5: model.n_layer: 6 disagrees with " + dir)) << e;
  EXPECT_NE(e.find("(2)"), std::string::npos) << "the directory's value is named: " << e;

  const std::string ok = write_text(scratch() / "agree.yaml",
                                    "model:\n"
                                    "  path: " + dir + "\n"
                                    "  vocab_size: 256\n"
                                    "  n_layer: 2\n"
                                    "  n_head: 4\n"
                                    "  n_kv_head: 4\n"  // = n_head: the same as the directory's 0
                                    "  d_model: 32\n"
                                    "  d_ff: 64\n"
                                    "  max_seq_len: 32\n"
                                    "  tie_embeddings: true\n"
                                    "  norm: layernorm\n"
                                    "  activation: gelu\n"
                                    "  positions: learned\n"
                                    "  bias: true\n"
                                    "data:\n"
                                    "  path: text.txt\n"
                                    "train:\n"
                                    "  seq_len: 16\n");
  RunConfig cfg;
  ASSERT_NO_THROW(cfg = load_run_config(ok, {}));
  EXPECT_EQ(cfg.model.path, dir);
  EXPECT_EQ(cfg.model.n_layer, 2);
  EXPECT_EQ(cfg.model.n_kv_head, 0);
  expect_round_trip(cfg, "agree");

  e = error_of(ok, {"model.d_model=64"});
  EXPECT_TRUE(starts_with(e, "--set: model.d_model: 64 disagrees with " + dir)) << e;
  e = error_of(ok, {"model.norm=rmsnorm"});
  EXPECT_NE(e.find("model.norm: rmsnorm disagrees with"), std::string::npos) << e;
}

// n_kv_head equal to the directory's n_head is the same model as the directory's n_kv_head 0,
// whether or not n_head is given beside it (here the directory's n_head 2 differs from the
// default 4 of an absent n_head).
TEST(ResolvedConfig, KvHeadsEqualToTheDirectorysHeadsAgree) {
  ModelConfig m = small_model();
  m.n_head = 2;
  const std::string dir = write_model(scratch() / "two_heads", m);
  const std::string with_heads = write_text(scratch() / "kv_with_heads.yaml",
                                            "model:\n  path: " + dir + "\n  n_head: 2\n  n_kv_head: 2\n"
                                            "data:\n  path: text.txt\ntrain:\n  seq_len: 16\n");
  EXPECT_EQ(error_of(with_heads), "no error");
  const std::string kv_only = write_text(scratch() / "kv_only.yaml",
                                         "model:\n  path: " + dir + "\n  n_kv_head: 2\n"
                                         "data:\n  path: text.txt\ntrain:\n  seq_len: 16\n");
  EXPECT_EQ(error_of(kv_only), "no error")
      << "BUG (trainer/run_config.cpp resolve_run_config): n_kv_head 2 given without n_head is compared after "
         "normalising it against the default n_head 4 instead of the directory's n_head 2";
}

// A key given twice is refused with both lines, at the top level and inside a section.
TEST(ResolvedConfig, DuplicateKeysNameBothLines) {
  const std::string in_section = write_text(scratch() / "dup_key.yaml",
                                            "train:\n"
                                            "  steps: 3\n"
                                            "  lr: 0.1\n"
                                            "  steps: 3\n"
                                            "data:\n"
                                            "  path: text.txt\n");
  EXPECT_EQ(error_of(in_section), in_section + ":4: train.steps: duplicate key (first given at line 2)");
  const std::string section = write_text(scratch() / "dup_section.yaml",
                                         "data:\n"
                                         "  path: text.txt\n"
                                         "train:\n"
                                         "  steps: 3\n"
                                         "data:\n"
                                         "  path: other.txt\n");
  EXPECT_EQ(error_of(section), section + ":5: data: duplicate key (first given at line 1)");
}

// Relative paths resolve against the working directory and come out absolute and normalised;
// data.tokenizer auto is bytes without a tokenizer.json in model.path and that file with one;
// parallel.backend auto is mpi on the CPU and nccl on CUDA (mpi where NCCL is not compiled in).
TEST(ResolvedConfig, PathsAbsoluteAndAutoChoicesResolved) {
  const fs::path cwd = scratch() / "cwd";
  InDir in(cwd);
  const fs::path here = fs::current_path();
  write_model("models/m", small_model());
  const std::string file = write_text("run.yaml",
                                      "model:\n"
                                      "  path: models/./m/\n"
                                      "data:\n"
                                      "  path: [text/a.txt, ./text/../text/b.txt]\n"
                                      "checkpoint:\n"
                                      "  dir: out/ckpt/\n"
                                      "log:\n"
                                      "  jsonl: logs/../logs/run.jsonl\n"
                                      "train:\n"
                                      "  seq_len: 16\n");
  RunConfig cfg = load_run_config(file, {});
  EXPECT_EQ(cfg.model.path, (here / "models/m").string())
      << "BUG (core/files.cpp absolute_path): a trailing '/' survives lexically_normal(), so 'models/m/' and "
         "'models/m' resolve to different texts and the tokenizer path gets a '//'";
  EXPECT_EQ(cfg.data.paths, (std::vector<std::string>{(here / "text/a.txt").string(), (here / "text/b.txt").string()}));
  EXPECT_EQ(cfg.checkpoint.dir, (here / "out/ckpt").string());
  EXPECT_EQ(cfg.log.jsonl, (here / "logs/run.jsonl").string());
  EXPECT_EQ(cfg.data.tokenizer, "bytes");
  EXPECT_EQ(cfg.parallel.backend, Backend::Mpi);
  expect_round_trip(cfg, "paths");

  // A tokenizer file given relatively; an empty checkpoint.dir and log.jsonl stay empty.
  cfg = load_run_config(file, {"data.tokenizer=tok/../tok/tokenizer.json", "checkpoint.dir=''", "log.jsonl=''"});
  EXPECT_EQ(cfg.data.tokenizer, (here / "tok/tokenizer.json").string());
  EXPECT_EQ(cfg.checkpoint.dir, "");
  EXPECT_EQ(cfg.log.jsonl, "");

  // auto with a tokenizer.json in model.path: that file; without model.path: bytes.
  write_text("models/m/tokenizer.json", "{}");
  cfg = load_run_config(file, {});
  EXPECT_EQ(cfg.data.tokenizer, (here / "models/m/tokenizer.json").string());
  cfg = load_run_config(file, {"model.path=''"});
  EXPECT_EQ(cfg.data.tokenizer, "bytes");
  EXPECT_EQ(cfg.model.path, "");

  // parallel.backend.
#ifdef DELTASHARD_HAVE_NCCL
  EXPECT_EQ(load_run_config(file, {"train.device=cuda"}).parallel.backend, Backend::Nccl);
#else
  EXPECT_EQ(load_run_config(file, {"train.device=cuda"}).parallel.backend, Backend::Mpi);  // staged through the host
#endif
  EXPECT_EQ(load_run_config(file, {"parallel.backend=mpi", "train.device=cuda"}).parallel.backend, Backend::Mpi);
  EXPECT_EQ(load_run_config(file, {"parallel.backend=auto"}).parallel.backend, Backend::Mpi);
}
