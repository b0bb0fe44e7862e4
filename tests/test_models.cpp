// Model families and Hugging Face layouts: GPT-2's Conv1D semantics, LLaMA's rotary and
// grouped-query attention, round trips through HF directories (single file and sharded), the KV
// cache, and the errors of malformed directories.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/generate.h"
#include "core/hf_layout.h"
#include "core/model_io.h"
#include "core/peft_io.h"
#include "test_helpers.h"

using namespace ds;
namespace fs = std::filesystem;

namespace {
ModelConfig gpt2_config() {
  ModelConfig c;
  c.vocab_size = 50;
  c.n_layer = 2;
  c.n_head = 4;
  c.d_model = 16;
  c.d_ff = 40;
  c.max_seq_len = 24;
  c.layout = Layout::Gpt2;
  return c;
}

ModelConfig llama_config() { return fixtures::as_llama(gpt2_config()); }

std::string temp_dir(const std::string& name) {
  const std::string d = (fs::temp_directory_path() / ("deltashard_models_" + name)).string();
  fs::remove_all(d);
  return d;
}

// Random non-trivial values everywhere (norm weights included), so a wrong mapping shows.
Transformer random_model(const ModelConfig& c) {
  Transformer m(c, dense_factory());
  torch::NoGradGuard g;
  for (auto& p : m->parameters()) p.normal_(0.0, 0.2);
  return m;
}

torch::Tensor tokens(int64_t B, int64_t T, int64_t V) { return torch::randint(V, {B, T}, torch::kLong); }
}  // namespace

TEST(HfLayout, Gpt2Conv1DIsXTimesWeightPlusBias) {
  torch::manual_seed(1);
  const ModelConfig c = gpt2_config();
  const int64_t d = c.d_model;
  // A GPT-2 directory written by hand, the way transformers stores it: Conv1D weights [in, out].
  Transformer ref = random_model(c);
  NamedTensors hf = to_hf(base_tensors(ref), c);
  std::map<std::string, torch::Tensor> by(hf.begin(), hf.end());
  const torch::Tensor c_attn = by.at("transformer.h.1.attn.c_attn.weight");
  EXPECT_EQ(c_attn.sizes(), (std::vector<int64_t>{d, 3 * d}));
  const torch::Tensor bias = by.at("transformer.h.1.attn.c_attn.bias");
  const torch::Tensor x = torch::randn({3, d});
  // q, k, v = split(x·W + b) along the output, as GPT2Attention does.
  const torch::Tensor fused = x.matmul(c_attn) + bias;
  EXPECT_TRUE(torch::allclose(ref->blocks[1]->attn->q->forward(x), fused.narrow(1, 0, d), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(ref->blocks[1]->attn->v->forward(x), fused.narrow(1, 2 * d, d), 1e-5, 1e-6));
  const torch::Tensor up = x.matmul(by.at("transformer.h.1.mlp.c_fc.weight")) + by.at("transformer.h.1.mlp.c_fc.bias");
  EXPECT_TRUE(torch::allclose(ref->blocks[1]->mlp->up->forward(x), up, 1e-5, 1e-6));
  EXPECT_FALSE(by.count("lm_head.weight"));  // tied: transformers drops the shared tensor
}

TEST(HfLayout, Gpt2AndLlamaDirectoriesLoadWithTheSameLogits) {
  for (const ModelConfig& c : {gpt2_config(), llama_config()}) {
    for (const int64_t shard_bytes : {int64_t{0}, int64_t{4096}}) {
      torch::manual_seed(2);
      Transformer ref = random_model(c);
      const std::string dir = temp_dir(enum_name(c.layout) + std::to_string(shard_bytes));
      save_model_dir(dir, c, base_tensors(ref), shard_bytes);
      EXPECT_EQ(fs::exists(dir + "/model.safetensors.index.json"), shard_bytes > 0) << enum_name(c.layout);
      const ModelConfig back = read_model_config(dir);
      EXPECT_EQ(back.layout, c.layout);
      EXPECT_EQ(back.kv_heads(), c.kv_heads());
      Transformer loaded(back, dense_factory());
      load_model_weights(dir, loaded);
      const torch::Tensor idx = tokens(2, 9, c.vocab_size);
      torch::NoGradGuard g;
      EXPECT_TRUE(torch::allclose(loaded->forward(idx), ref->forward(idx), 1e-5, 1e-6)) << enum_name(c.layout);
      fs::remove_all(dir);
    }
  }
}

// Hugging Face checkpoints are mostly bf16 or fp16: they load into the fp32 model exactly as
// the rounded weights.
TEST(HfLayout, Bf16AndFp16DirectoriesLoadAsTheirRoundedWeights) {
  const ModelConfig c = llama_config();
  for (const auto dtype : {torch::kBFloat16, torch::kHalf}) {
    torch::manual_seed(3);
    Transformer ref = random_model(c);
    NamedTensors low = base_tensors(ref);
    for (auto& [name, t] : low) t = t.to(dtype);
    const std::string dir = temp_dir("lowp");
    save_model_dir(dir, c, low);
    EXPECT_EQ(read_safetensors(dir + "/model.safetensors").tensors.begin()->second.scalar_type(), dtype);
    Transformer loaded(read_model_config(dir), dense_factory());
    load_model_weights(dir, loaded);
    torch::NoGradGuard g;
    for (auto& p : ref->parameters()) p.copy_(p.to(dtype).to(torch::kFloat));
    const torch::Tensor idx = tokens(2, 9, c.vocab_size);
    EXPECT_TRUE(torch::allclose(loaded->forward(idx), ref->forward(idx), 1e-5, 1e-6)) << dtype;
    fs::remove_all(dir);
  }
}

TEST(HfLayout, LlamaNamesShapesAndConfig) {
  const ModelConfig c = llama_config();
  Transformer m = random_model(c);
  const NamedTensors hf = to_hf(base_tensors(m), c);
  std::map<std::string, torch::Tensor> by(hf.begin(), hf.end());
  const int64_t hd = c.head_dim();
  EXPECT_EQ(by.at("model.layers.0.self_attn.k_proj.weight").sizes(), (std::vector<int64_t>{2 * hd, c.d_model}));
  EXPECT_EQ(by.at("model.layers.1.mlp.gate_proj.weight").sizes(), (std::vector<int64_t>{c.d_ff, c.d_model}));
  EXPECT_TRUE(by.count("lm_head.weight"));
  EXPECT_TRUE(by.count("model.norm.weight"));
  EXPECT_EQ(hf_module_name("blocks.3.attn.q", c), "model.layers.3.self_attn.q_proj");
  EXPECT_EQ(hf_module_name("blocks.3.mlp.down", c), "model.layers.3.mlp.down_proj");
  EXPECT_EQ(hf_module_name("blocks.0.attn.k", gpt2_config()), "transformer.h.0.attn.c_attn");
  const std::string j = hf_config_json(c).dump();
  EXPECT_NE(j.find("\"num_key_value_heads\":2"), std::string::npos);
  EXPECT_NE(j.find("\"model_type\":\"llama\""), std::string::npos);
}

TEST(Rope, ScoresDependOnlyOnTheDistance) {
  torch::manual_seed(3);
  const torch::Tensor q = torch::randn({1, 1, 1, 8}), k = torch::randn({1, 1, 1, 8});
  auto score = [&](int64_t m, int64_t n) {
    return (apply_rope(q, m, 10000.0) * apply_rope(k, n, 10000.0)).sum().item<double>();
  };
  EXPECT_NEAR(score(5, 2), score(105, 102), 1e-4);
  EXPECT_NEAR(score(0, 0), (q * k).sum().item<double>(), 1e-5);  // position 0 is the identity
  EXPECT_GT(std::abs(score(5, 2) - score(2, 5)), 1e-4);
}

TEST(KvCache, IncrementalDecodingEqualsTheFullForward) {
  for (const ModelConfig& c : {gpt2_config(), llama_config()}) {
    torch::manual_seed(4);
    Transformer m = random_model(c);
    torch::NoGradGuard g;
    const torch::Tensor idx = tokens(2, 10, c.vocab_size);
    const torch::Tensor full = m->forward(idx);
    KVCache cache;
    const torch::Tensor prefix = m->forward(idx.narrow(1, 0, 6), &cache);
    EXPECT_EQ(cache.length(), 6);
    std::vector<torch::Tensor> steps{prefix};
    for (int64_t t = 6; t < 10; ++t) steps.push_back(m->forward(idx.narrow(1, t, 1), &cache));
    EXPECT_TRUE(torch::allclose(torch::cat(steps, 1), full, 1e-4, 1e-5)) << enum_name(c.layout);
    EXPECT_EQ(cache.length(), 10);
  }
}

TEST(HfLayout, MalformedDirectoriesAreNamed) {
  auto expect_error = [](const std::string& dir, const std::string& fragment) {
    try {
      const ModelConfig c = read_model_config(dir);
      Transformer m(c, dense_factory());
      load_model_weights(dir, m);
      ADD_FAILURE() << "expected an error containing: " << fragment;
    } catch (const FileError& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  const ModelConfig c = llama_config();
  Transformer m = random_model(c);
  const std::string dir = temp_dir("bad");
  save_model_dir(dir, c, base_tensors(m), 4096);
  // rope_scaling cannot be represented: named with the file.
  {
    std::ifstream in(dir + "/config.json");
    std::string text((std::istreambuf_iterator<char>(in)), {});
    std::ofstream(dir + "/config.json") << text.substr(0, text.rfind('}')) << ", \"rope_scaling\": {\"type\": \"linear\"}}";
  }
  expect_error(dir, "config.json: rope_scaling: is not supported");
  save_model_dir(dir, c, base_tensors(m), 4096);
  // An index that maps a tensor to a shard without it.
  {
    std::ifstream in(dir + "/model.safetensors.index.json");
    std::string text((std::istreambuf_iterator<char>(in)), {});
    const std::string key = "\"model.norm.weight\": \"";
    const auto at = text.find(key) + key.size();
    const std::string other = text.find("model-00001") != std::string::npos && text.substr(at, 11) != "model-00001"
                                  ? "model-00001-of-"
                                  : "model-00002-of-";
    text.replace(at, 15, other);
    std::ofstream(dir + "/model.safetensors.index.json") << text;
  }
  expect_error(dir, "tensor 'model.norm.weight' is mapped to");
  // A missing tensor in a GPT-2 directory is named with its Hugging Face name.
  const std::string g = temp_dir("bad_gpt2");
  ModelConfig gc = gpt2_config();
  Transformer gm = random_model(gc);
  NamedTensors hf = to_hf(base_tensors(gm), gc);
  hf.erase(std::remove_if(hf.begin(), hf.end(), [](const auto& nt) { return nt.first == "transformer.h.1.mlp.c_fc.bias"; }),
           hf.end());
  fs::create_directories(g);
  write_safetensors(g + "/model.safetensors", hf);
  std::ofstream(g + "/config.json") << hf_config_json(gc).dump();
  expect_error(g, "missing tensor 'h.1.mlp.c_fc.bias'");
  fs::remove_all(dir);
  fs::remove_all(g);
}

TEST(Generate, GreedyWithTheCacheEqualsArgmaxOverFullForwards) {
  for (const ModelConfig& c : {gpt2_config(), llama_config()}) {
    torch::manual_seed(5);
    Transformer m = random_model(c);
    const std::vector<int64_t> prompt{3, 1, 4, 1, 5};
    SamplingOptions opt;
    opt.max_new_tokens = 8;
    const std::vector<int64_t> got = generate(m, prompt, opt);
    std::vector<int64_t> seq = prompt;
    torch::NoGradGuard g;
    for (int i = 0; i < 8; ++i) {
      const torch::Tensor logits = m->forward(torch::tensor(seq, torch::kLong).unsqueeze(0));
      seq.push_back(logits[0][static_cast<int64_t>(seq.size()) - 1].argmax().item<int64_t>());
    }
    EXPECT_EQ(got, std::vector<int64_t>(seq.begin() + 5, seq.end())) << enum_name(c.layout);
    // Sampling: a seed reproduces; top-k 1 is greedy.
    SamplingOptions s = opt;
    s.greedy = false;
    s.temperature = 0.7;
    s.seed = 11;
    EXPECT_EQ(generate(m, prompt, s), generate(m, prompt, s));
    s.top_k = 1;
    EXPECT_EQ(generate(m, prompt, s), got);
    opt.max_new_tokens = c.max_seq_len;
    EXPECT_THROW(generate(m, prompt, opt), std::invalid_argument);
  }
}

namespace {
std::map<std::string, torch::Tensor> random_lora(const ModelConfig& c, const std::vector<std::string>& targets,
                                                 int64_t r) {
  std::map<std::string, torch::Tensor> out;
  const int64_t kv = c.kv_heads() * c.head_dim();
  for (int64_t i = 0; i < c.n_layer; ++i) {
    for (const auto& t : targets) {
      const bool attn = t == "q" || t == "k" || t == "v" || t == "o";
      const int64_t in = t == "down" ? c.d_ff : c.d_model;
      const int64_t out_dim = (t == "k" || t == "v") ? kv : (t == "up" || t == "gate") ? c.d_ff : c.d_model;
      const std::string l = "blocks." + std::to_string(i) + (attn ? ".attn." : ".mlp.") + t;
      out[l + ".lora_A"] = torch::randn({r, in});
      out[l + ".lora_B"] = torch::randn({out_dim, r});
    }
  }
  return out;
}

}  // namespace

TEST(PeftFiles, Gpt2FusesQkvIntoOneExactBlockLoraAndReadsItBack) {
  torch::manual_seed(6);
  const ModelConfig c = gpt2_config();
  PeftConfig p;
  p.r = 4;
  p.alpha = 8;
  p.targets = {"q", "v", "o", "up"};
  const auto lora = random_lora(c, p.targets, p.r);
  const PeftFiles f = export_peft(c, p, lora, "base");
  std::map<std::string, torch::Tensor> t(f.tensors.begin(), f.tensors.end());
  const std::string key = "base_model.model.transformer.h.1.attn.c_attn";
  const torch::Tensor A = t.at(key + ".lora_A.weight"), B = t.at(key + ".lora_B.weight");
  const int64_t d = c.d_model;
  EXPECT_EQ(A.sizes(), (std::vector<int64_t>{8, d}));
  EXPECT_EQ(B.sizes(), (std::vector<int64_t>{3 * d, 8}));
  // PEFT's scale for c_attn is alpha_pattern / rank_pattern = 16 / 8 = alpha / r.
  const Json& cfg = f.config;
  EXPECT_EQ(cfg["rank_pattern"]["attn.c_attn"].get<int64_t>(), 8);
  const double s_fused = cfg["alpha_pattern"]["attn.c_attn"].get<double>() / 8.0, s = p.alpha / p.r;
  auto delta = [&](const std::string& l) { return lora.at(l + ".lora_B").matmul(lora.at(l + ".lora_A")) * s; };
  const torch::Tensor want =
      torch::cat({delta("blocks.1.attn.q"), torch::zeros({d, d}), delta("blocks.1.attn.v")}, 0);
  EXPECT_TRUE(torch::allclose(B.matmul(A) * s_fused, want, 1e-5, 1e-6));
  EXPECT_TRUE(t.count("base_model.model.transformer.h.0.mlp.c_fc.lora_B.weight"));
  const PeftImport back = import_peft(c, cfg, t, f.metadata, "adapter");
  EXPECT_EQ(back.peft.r, 4);
  EXPECT_DOUBLE_EQ(back.peft.alpha, 8.0);
  EXPECT_EQ(back.peft.targets, (std::vector<std::string>{"q", "v", "o", "up"}));
  ASSERT_EQ(back.lora.size(), lora.size());
  for (const auto& [n, x] : lora) EXPECT_TRUE(torch::equal(back.lora.at(n), x)) << n;
}

TEST(PeftFiles, PeftsOwnSharedAFusedLoraBecomesExactQkvLoras) {
  torch::manual_seed(7);
  const ModelConfig c = gpt2_config();
  const int64_t d = c.d_model, r = 4;
  std::map<std::string, torch::Tensor> t;
  for (int i = 0; i < c.n_layer; ++i) {
    const std::string k = "base_model.model.transformer.h." + std::to_string(i) + ".attn.c_attn";
    t[k + ".lora_A.weight"] = torch::randn({r, d});
    t[k + ".lora_B.weight"] = torch::randn({3 * d, r});
  }
  const Json cfg = Json::parse(R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "bias": "none",
                                   "target_modules": ["c_attn"], "fan_in_fan_out": true})");
  const PeftImport imp = import_peft(c, cfg, t, {}, "adapter");
  EXPECT_EQ(imp.peft.targets, (std::vector<std::string>{"q", "k", "v"}));
  const torch::Tensor BA = t.at("base_model.model.transformer.h.1.attn.c_attn.lora_B.weight")
                               .matmul(t.at("base_model.model.transformer.h.1.attn.c_attn.lora_A.weight"));
  const torch::Tensor k_delta = imp.lora.at("blocks.1.attn.k.lora_B").matmul(imp.lora.at("blocks.1.attn.k.lora_A"));
  EXPECT_TRUE(torch::allclose(k_delta, BA.narrow(0, d, d), 1e-5, 1e-6));
  // Ranks that differ between modules cannot be one DeltaShard LoRA.
  t["base_model.model.transformer.h.0.attn.c_proj.lora_A.weight"] = torch::randn({2, d});
  t["base_model.model.transformer.h.0.attn.c_proj.lora_B.weight"] = torch::randn({d, 2});
  EXPECT_THROW(import_peft(c, cfg, t, {}, "adapter"), FileError);
  const Json other = Json::parse(R"({"peft_type": "IA3", "r": 4, "lora_alpha": 8})");
  EXPECT_THROW(import_peft(c, other, t, {}, "adapter"), FileError);
}

TEST(PeftFiles, LlamaNamesRoundTrip) {
  torch::manual_seed(8);
  const ModelConfig c = llama_config();
  PeftConfig p;
  p.r = 2;
  p.alpha = 4;
  p.use_rslora = true;
  p.targets = {"q", "k", "v", "o", "gate", "up", "down"};
  const auto lora = random_lora(c, p.targets, p.r);
  const PeftFiles f = export_peft(c, p, lora, "base");
  std::map<std::string, torch::Tensor> t(f.tensors.begin(), f.tensors.end());
  EXPECT_EQ(t.at("base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight").sizes(),
            (std::vector<int64_t>{2 * c.head_dim(), 2}));
  EXPECT_TRUE(t.count("base_model.model.model.layers.1.mlp.gate_proj.lora_A.weight"));
  const PeftImport back = import_peft(c, f.config, t, f.metadata, "adapter");
  EXPECT_TRUE(back.peft.use_rslora);
  EXPECT_NEAR(back.peft.alpha, 4.0, 1e-12);
  for (const auto& [n, x] : lora) EXPECT_TRUE(torch::equal(back.lora.at(n), x)) << n;
}
