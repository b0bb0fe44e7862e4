// deltashard init: randomly initialised model directories written tensor by tensor. The files
// load, their index lists every tensor once, the values follow the model's own initialisation
// rules and depend only on (seed, tensor name) (not on the layout or the shard size), the planned
// parameter counts of the LLaMA configs are the published ones, and writing holds about one tensor
// at a time. Also the streaming safetensors writer underneath.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <set>

#include "core/dir_layout.h"
#include "core/hf_layout.h"
#include "core/model_init.h"
#include "core/model_io.h"
#include "test_helpers.h"
#include "trainer/memory_stats.h"

using namespace ds;
namespace fs = std::filesystem;

namespace {
std::string temp_dir(const std::string& name) {
  const std::string d = (fs::temp_directory_path() / ("deltashard_init_" + name)).string();
  fs::remove_all(d);
  return d;
}

ModelConfig gpt2_config() {
  ModelConfig c;
  c.vocab_size = 300;
  c.n_layer = 3;
  c.n_head = 4;
  c.d_model = 32;
  c.d_ff = 96;
  c.max_seq_len = 64;
  c.layout = Layout::Gpt2;
  return c;
}

ModelConfig llama_config() {
  ModelConfig c = gpt2_config();
  c.layout = Layout::Llama;
  fixtures::make_llama(c);
  return c;
}

// Writes an initialised model directory as deltashard init does.
void init_dir(const std::string& dir, const ModelConfig& c, DType dtype, uint64_t seed, int64_t shard_bytes) {
  InitOptions o;
  o.dtype = dtype;
  o.seed = seed;
  save_model_dir(dir, c, init_model_files(c, o), shard_bytes, "", "--out");
}

int64_t planned_params(const ModelConfig& c) {
  int64_t n = 0;
  for (const auto& e : init_model_files(c, {}).tensors) {
    int64_t k = 1;
    for (int64_t d : e.shape) k *= d;
    n += k;
  }
  return n;
}

std::map<std::string, torch::Tensor> loaded_params(const std::string& dir) {
  Transformer m(read_model_config(dir), dense_factory());
  load_model_weights(dir, m);
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : m->named_parameters()) out[p.key()] = p.value().detach().clone();
  return out;
}

double std_of(const torch::Tensor& t) { return t.to(torch::kDouble).std().item<double>(); }
}  // namespace

// The counts of configs/models/*.yaml from the plan alone: nothing is drawn or written, so the 7B
// costs no memory.
TEST(InitPlan, ParameterCountsOfTheModelConfigs) {
  const std::string dir = std::string(DS_SOURCE_DIR) + "/configs/models/";
  const std::map<std::string, int64_t> want{
      {"llama-1b.yaml", 1100048384}, {"llama-7b.yaml", 6738415616}, {"gpt2-medium.yaml", 354823168}};
  for (const auto& [file, count] : want) {
    ModelConfig c = read_model_section(dir + file);
    c.layout = auto_layout(c);
    EXPECT_EQ(planned_params(c), count) << file;
    // The meta model counts the same.
    Transformer m = meta_model(c, torch::kBFloat16);
    int64_t n = 0;
    for (const auto& p : m->parameters()) n += p.numel();
    EXPECT_EQ(n, count) << file;
  }
  ModelConfig c = read_model_section(dir + "llama-7b.yaml");
  EXPECT_EQ(auto_layout(c), Layout::Llama);
  c.layout = Layout::Llama;
  InitOptions bf16;
  bf16.dtype = DType::Bf16;
  const ModelFiles f = init_model_files(c, bf16);
  int64_t bytes = 0;
  std::set<std::string> names;
  for (const auto& e : f.tensors) {
    bytes += e.nbytes();
    EXPECT_TRUE(names.insert(e.name).second) << e.name;
    EXPECT_EQ(e.dtype, torch::kBFloat16);
  }
  EXPECT_EQ(bytes, int64_t{6738415616} * 2);
  EXPECT_EQ(f.tensors.size(), size_t{32 * 9 + 3});
  // Three files of at most 5000 MiB, as init --shard-mb 5000 writes them.
  EXPECT_EQ(plan_shards(f.tensors, int64_t{5000} << 20).size(), size_t{3});
}

TEST(InitPlan, AutoLayoutAndRules) {
  EXPECT_EQ(auto_layout(llama_config()), Layout::Llama);
  EXPECT_EQ(auto_layout(gpt2_config()), Layout::Gpt2);
  ModelConfig mixed = gpt2_config();
  mixed.activation = Activation::SwiGlu;  // fits neither Hugging Face layout
  EXPECT_EQ(auto_layout(mixed), Layout::DeltaShard);

  const ModelConfig c = gpt2_config();
  Transformer m = meta_model(c);
  const auto rules = init_rules(*m);
  EXPECT_EQ(rules.size(), m->named_parameters().size());
  using K = InitRule::Kind;
  const double resid = c.init_std / std::sqrt(2.0 * static_cast<double>(c.n_layer));
  EXPECT_EQ(rules.at("blocks.0.attn.q.weight").kind, K::Normal);
  EXPECT_DOUBLE_EQ(rules.at("blocks.0.attn.q.weight").stddev, c.init_std);
  EXPECT_DOUBLE_EQ(rules.at("blocks.2.attn.o.weight").stddev, resid);
  EXPECT_DOUBLE_EQ(rules.at("blocks.1.mlp.down.weight").stddev, resid);
  EXPECT_DOUBLE_EQ(rules.at("wte.weight").stddev, c.init_std);
  EXPECT_DOUBLE_EQ(rules.at("wpe.weight").stddev, c.init_std / 2);
  EXPECT_EQ(rules.at("blocks.0.ln1.weight").kind, K::Ones);
  EXPECT_EQ(rules.at("blocks.0.ln1.bias").kind, K::Zeros);
  EXPECT_EQ(rules.at("blocks.0.attn.q.bias").kind, K::Zeros);
  EXPECT_EQ(rules.at("ln_f.weight").kind, K::Ones);
}

// Each tensor depends on (seed, name) alone.
TEST(InitPlan, TensorsDependOnSeedAndNameOnly) {
  const InitRule r{InitRule::Kind::Normal, 0.02};
  const torch::Tensor a = init_tensor("blocks.0.attn.q.weight", {16, 8}, r, 5);
  EXPECT_TRUE(torch::equal(a, init_tensor("blocks.0.attn.q.weight", {16, 8}, r, 5)));
  EXPECT_FALSE(torch::equal(a, init_tensor("blocks.0.attn.k.weight", {16, 8}, r, 5)));
  EXPECT_FALSE(torch::equal(a, init_tensor("blocks.0.attn.q.weight", {16, 8}, r, 6)));
  EXPECT_NE(tensor_seed(5, "blocks.0.attn.q.weight"), tensor_seed(5, "blocks.0.attn.k.weight"));
}

// Sharded: the index maps every tensor of the plan exactly once, to the file that holds it; the
// marker, written last, lists every file.
TEST(InitFiles, IndexListsEveryTensorOnce) {
  for (const ModelConfig& c : {gpt2_config(), llama_config()}) {
    const std::string dir = temp_dir("index");
    init_dir(dir, c, DType::Fp32, 1, 20000);
    const ModelFiles plan = init_model_files(c, {});
    const Json index = read_json_file(dir + "/model.safetensors.index.json");
    const Json& map = index.at("weight_map");
    EXPECT_EQ(map.size(), plan.tensors.size());
    std::map<std::string, std::set<std::string>> by_file;
    for (const auto& kv : map.items()) by_file[kv.value().get<std::string>()].insert(kv.key());
    EXPECT_GT(by_file.size(), size_t{2});
    size_t held = 0;
    int64_t total = 0;
    for (const auto& [file, names] : by_file) {
      std::set<std::string> in_file;
      for (const auto& kv : read_safetensors(dir + "/" + file).tensors) {
        in_file.insert(kv.first);
        total += kv.second.numel() * kv.second.element_size();
      }
      EXPECT_EQ(in_file, names) << file;
      held += in_file.size();
    }
    EXPECT_EQ(held, plan.tensors.size());
    EXPECT_EQ(index.at("metadata").at("total_size").get<int64_t>(), total);
    for (const auto& e : plan.tensors) EXPECT_TRUE(map.contains(e.name)) << e.name;
    const auto marker = read_marker(dir);
    ASSERT_TRUE(marker);
    EXPECT_EQ(marker->files.size(), by_file.size() + 2);  // + the index and config.json
    fs::remove_all(dir);
  }
}

// The same seed gives the same bytes whether written as one file or as shards.
TEST(InitFiles, SameSeedSameBytesAtTwoShardSizes) {
  for (const ModelConfig& c : {gpt2_config(), llama_config()}) {
    const std::string one = temp_dir("one"), many = temp_dir("many");
    init_dir(one, c, DType::Bf16, 42, 0);
    init_dir(many, c, DType::Bf16, 42, 30000);
    EXPECT_TRUE(fs::exists(one + "/model.safetensors"));
    EXPECT_TRUE(fs::exists(many + "/model.safetensors.index.json"));
    const auto a = read_safetensors(one + "/model.safetensors").tensors;
    std::map<std::string, torch::Tensor> b;
    for (const auto& p : fs::directory_iterator(many)) {
      if (p.path().extension() != ".safetensors") continue;
      for (const auto& kv : read_safetensors(p.path().string()).tensors) b[kv.first] = kv.second;
    }
    ASSERT_EQ(a.size(), b.size());
    for (const auto& [name, t] : a) {
      ASSERT_TRUE(b.count(name)) << name;
      EXPECT_EQ(t.scalar_type(), torch::kBFloat16);
      EXPECT_TRUE(torch::equal(t, b.at(name))) << name;
    }
    fs::remove_all(one);
    fs::remove_all(many);
  }
}

// The directory loads into the model, with the values its own rules give; a layout that the model
// cannot take is not written by auto, and the deltashard layout holds the same values as gpt2's.
TEST(InitFiles, LoadsWithTheModelsInitialisation) {
  ModelConfig c = gpt2_config();
  c.d_model = 64;
  c.d_ff = 256;
  const std::string dir = temp_dir("gpt2");
  init_dir(dir, c, DType::Fp32, 3, 0);
  const ModelConfig back = read_model_config(dir);
  EXPECT_EQ(back.layout, Layout::Gpt2);
  EXPECT_EQ(back.d_model, 64);
  const auto p = loaded_params(dir);
  const double resid = c.init_std / std::sqrt(2.0 * static_cast<double>(c.n_layer));
  EXPECT_NEAR(std_of(p.at("blocks.0.attn.q.weight")), c.init_std, 0.1 * c.init_std);
  EXPECT_NEAR(std_of(p.at("blocks.0.mlp.up.weight")), c.init_std, 0.1 * c.init_std);
  EXPECT_NEAR(std_of(p.at("blocks.1.attn.o.weight")), resid, 0.1 * resid);
  EXPECT_NEAR(std_of(p.at("blocks.2.mlp.down.weight")), resid, 0.1 * resid);
  EXPECT_NEAR(std_of(p.at("wte.weight")), c.init_std, 0.1 * c.init_std);
  EXPECT_NEAR(std_of(p.at("wpe.weight")), c.init_std / 2, 0.05 * c.init_std);
  EXPECT_TRUE(torch::equal(p.at("blocks.1.ln2.weight"), torch::ones({64})));
  EXPECT_TRUE(torch::equal(p.at("blocks.1.ln2.bias"), torch::zeros({64})));
  EXPECT_TRUE(torch::equal(p.at("blocks.0.attn.k.bias"), torch::zeros({64})));
  EXPECT_TRUE(torch::equal(p.at("ln_f.weight"), torch::ones({64})));
  // q, k and v were fused into c_attn and come back apart, each its own draw.
  EXPECT_FALSE(torch::equal(p.at("blocks.0.attn.q.weight"), p.at("blocks.0.attn.k.weight")));

  ModelConfig ours = c;
  ours.layout = Layout::DeltaShard;
  const std::string dir2 = temp_dir("ours");
  init_dir(dir2, ours, DType::Fp32, 3, 0);
  EXPECT_EQ(read_model_config(dir2).layout, Layout::DeltaShard);
  const auto q = loaded_params(dir2);
  ASSERT_EQ(p.size(), q.size());
  for (const auto& [name, t] : p) EXPECT_TRUE(torch::equal(t, q.at(name))) << name;

  // bf16 files hold the float32 draws rounded.
  const std::string dir3 = temp_dir("bf16");
  init_dir(dir3, c, DType::Bf16, 3, 0);
  const auto r = loaded_params(dir3);
  for (const auto& [name, t] : p) EXPECT_TRUE(torch::equal(t.to(torch::kBFloat16).to(torch::kFloat), r.at(name))) << name;
  for (const auto& d : {dir, dir2, dir3}) fs::remove_all(d);
}

TEST(InitFiles, LlamaLoadsAndComputes) {
  const ModelConfig c = llama_config();
  const std::string dir = temp_dir("llama");
  init_dir(dir, c, DType::Fp16, 9, 0);
  const ModelConfig back = read_model_config(dir);
  EXPECT_EQ(back.layout, Layout::Llama);
  EXPECT_EQ(back.kv_heads(), 2);
  const Json cj = read_json_file(dir + "/config.json");
  EXPECT_EQ(cj.at("torch_dtype").get<std::string>(), "float16");
  Transformer m(back, dense_factory());
  load_model_weights(dir, m);
  EXPECT_TRUE(torch::equal(m->blocks[0]->ln1->weight, torch::ones({c.d_model})));
  torch::NoGradGuard g;
  const torch::Tensor logits = m->forward(torch::randint(c.vocab_size, {2, 7}, torch::kLong));
  EXPECT_TRUE(torch::isfinite(logits).all().item<bool>());
  fs::remove_all(dir);
}

// Tensor by tensor: what is alive while writing stays near the largest tensor's float32 draw
// and its stored copy (GPT-2's c_attn: one layer's q, k, v, fused and transposed), far below the
// model.
TEST(InitFiles, WritesOneTensorAtATime) {
  count_cpu_allocations();
  for (ModelConfig c : {gpt2_config(), llama_config()}) {
    c.vocab_size = 500;
    c.d_model = 128;
    c.d_ff = 384;
    c.n_layer = 12;
    const ModelFiles plan = init_model_files(c, {});
    int64_t model = 0, largest = 0;
    for (const auto& e : plan.tensors) {
      model += e.nbytes();
      largest = std::max(largest, e.nbytes());
    }
    const std::string dir = temp_dir("peak");
    const int64_t before = cpu_live_bytes();
    reset_cpu_peak();
    init_dir(dir, c, DType::Bf16, 1, 0);
    const int64_t peak = cpu_peak_bytes() - before;
    // The largest tensor drawn in float32 and rounded to bf16: 3 x its bf16 bytes, plus headers.
    EXPECT_LE(peak, 3 * largest + (64 << 10)) << enum_name(c.layout) << ": model " << model;
    EXPECT_LT(peak, model / 4) << enum_name(c.layout);
    fs::remove_all(dir);
  }
}

TEST(InitFiles, ReadModelSection) {
  const std::string dir = temp_dir("yaml");
  fs::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& text) {
    write_file_atomic(dir + "/" + name, text);
    return dir + "/" + name;
  };
  // A run config: other sections are ignored.
  const ModelConfig c = read_model_section(
      write("run.yaml", "model:\n  n_layer: 3\n  d_model: 64\n  n_head: 4\n  dtype: bf16\npeft:\n  r: 4\nbogus: 1\n"));
  EXPECT_EQ(c.n_layer, 3);
  EXPECT_EQ(c.dtype, DType::Bf16);
  try {
    read_model_section(write("nomodel.yaml", "peft:\n  r: 4\n"));
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("expected a `model:` section"), std::string::npos) << e.what();
  }
  try {
    read_model_section(write("badkey.yaml", "model:\n  n_layer: 2\n  d_modle: 64\n"));
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("badkey.yaml:3"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("d_modle"), std::string::npos) << e.what();
  }
  try {
    read_model_section(write("path.yaml", "model:\n  path: /somewhere\n"));
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("model.path"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(Safetensors, StreamingWriterChecksThePlanAndLeavesNothingBehind) {
  const std::string dir = temp_dir("writer");
  fs::create_directories(dir);
  const std::string path = dir + "/w.safetensors";
  {
    SafetensorsWriter w(path, {{"a", torch::kFloat, {2, 3}}, {"b", torch::kLong, {4}}}, {{"format", "pt"}});
    w.add(torch::arange(6, torch::kFloat).view({2, 3}).t().t());
    EXPECT_THROW(w.add(torch::ones({5}, torch::kLong)), std::invalid_argument);  // wrong shape
    EXPECT_THROW(w.finish(), std::logic_error);                                  // b missing
  }
  // Destroyed unfinished: no file, no temporary.
  EXPECT_TRUE(fs::is_empty(dir));
  {
    SafetensorsWriter w(path, {{"a", torch::kFloat, {2, 3}}, {"b", torch::kLong, {4}}});
    w.add(torch::arange(6, torch::kFloat).view({3, 2}).t().t().reshape({2, 3}));
    w.add(torch::ones({4}, torch::kLong));
    w.finish();
  }
  const auto f = read_safetensors(path);
  EXPECT_TRUE(torch::equal(f.tensors.at("a"), torch::arange(6, torch::kFloat).view({2, 3})));
  EXPECT_TRUE(torch::equal(f.tensors.at("b"), torch::ones({4}, torch::kLong)));
  EXPECT_THROW(SafetensorsWriter(path, {{"a", torch::kFloat, {1}}, {"a", torch::kFloat, {1}}}), std::invalid_argument);
  fs::remove_all(dir);
}
