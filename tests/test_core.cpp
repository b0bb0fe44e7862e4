// Single-process behaviour of core/ and the trainer: LoRA, adapters, counts, config errors,
// checkpoints, safetensors validation, and that training lowers the loss.
#include <gtest/gtest.h>

#include <sys/resource.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "core/heap.h"
#include "core/model_io.h"
#include "core/peft.h"
#include "core/safetensors.h"
#include "dist/process_grid.h"
#include "test_helpers.h"
#include "trainer/run_config.h"
#include "trainer/trainer.h"

using namespace ds;

namespace {
ModelConfig small(int64_t d = 32, int64_t layers = 2, int64_t heads = 4, int64_t ff = 64) {
  ModelConfig m;
  m.n_layer = layers;
  m.n_head = heads;
  m.d_model = d;
  m.d_ff = ff;
  m.max_seq_len = 32;
  return m;
}

Transformer build(const ModelConfig& m, const PeftConfig& p, uint64_t seed = 3) {
  torch::manual_seed(seed);
  Transformer t(m, dense_factory());
  apply_peft(t, p, dense_factory());
  return t;
}

torch::Tensor tokens(int64_t b = 2, int64_t T = 16) {
  torch::manual_seed(11);
  return torch::randint(0, 256, {b, T}, torch::kLong);
}

void randomize_lora_B(Transformer& t) {
  torch::NoGradGuard g;
  for (auto& [n, l] : lora_layers(t)) l->lora_B.normal_(0, 0.5);
}

std::string write_yaml(const std::string& text) {
  const std::string path = "/tmp/deltashard_test_" + std::to_string(::getpid()) + ".yaml";
  std::ofstream(path) << text;
  return path;
}
}  // namespace

TEST(Lora, InitialisationGivesExactlyTheBaseOutput) {
  PeftConfig none;
  none.method = PeftMethod::None;
  PeftConfig lora;
  lora.targets = {"q", "k", "v", "o", "up", "down"};
  Transformer a = build(small(), none), b = build(small(), lora);
  torch::NoGradGuard g;
  EXPECT_TRUE(torch::equal(a->forward(tokens()), b->forward(tokens())));
}

TEST(Lora, MergeThenUnmergeRoundTripsAndMergedMatchesUnmerged) {
  PeftConfig lora;
  lora.targets = {"q", "v", "down"};
  Transformer t = build(small(), lora);
  randomize_lora_B(t);
  torch::NoGradGuard g;
  const torch::Tensor unmerged = t->forward(tokens());
  std::vector<torch::Tensor> w0;
  for (auto& [n, l] : lora_layers(t)) w0.push_back(l->weight.clone());
  for (auto& [n, l] : lora_layers(t)) l->merge();
  const torch::Tensor merged = t->forward(tokens());
  EXPECT_TRUE(torch::allclose(merged, unmerged, 1e-4, 1e-5)) << (merged - unmerged).abs().max();
  EXPECT_FALSE(torch::equal(lora_layers(t)[0].second->weight, w0[0]));
  // A merged layer computes no LoRA branch: changing B no longer changes the output.
  for (auto& [n, l] : lora_layers(t)) l->lora_B.mul_(3.0);
  EXPECT_TRUE(torch::equal(t->forward(tokens()), merged));
  for (auto& [n, l] : lora_layers(t)) l->lora_B.div_(3.0);
  size_t i = 0;
  for (auto& [n, l] : lora_layers(t)) {
    l->unmerge();
    EXPECT_TRUE(torch::allclose(l->weight, w0[i++], 0, 1e-6)) << n;
  }
}

TEST(Lora, ScalingIsAlphaOverRAndRsLoraUsesSqrtR) {
  LinearOptions o;
  o.spec = {"x", 8, 8, false, Split::None, 0.02};
  Linear a(o), b(o);
  a->add_lora({4, 16, 0.0, false, LoraInit::Kaiming});
  b->add_lora({4, 16, 0.0, true, LoraInit::Gaussian});
  EXPECT_DOUBLE_EQ(a->lora_scale(), 4.0);
  EXPECT_DOUBLE_EQ(b->lora_scale(), 8.0);
  EXPECT_EQ(torch::count_nonzero(a->lora_B).item<int64_t>(), 0);
}

TEST(Peft, ParameterCountsMatchTheFormulas) {
  for (auto [d, ff, layers, r] : std::vector<std::tuple<int64_t, int64_t, int64_t, int64_t>>{
           {32, 64, 2, 4}, {48, 96, 3, 8}, {64, 256, 1, 2}}) {
    const ModelConfig m = small(d, layers, 4, ff);
    PeftConfig none;
    none.method = PeftMethod::None;
    Transformer plain = build(m, none);
    const int64_t base = count_params(plain).total_params;
    PeftConfig lora;
    lora.r = r;
    lora.targets = {"q", "v", "up", "down"};
    Transformer t = build(m, lora);
    const ParamReport rep = count_params(t);
    // q, v: r(d+d); up: r(d+ff); down: r(ff+d) per layer.
    const int64_t per_layer = r * (2 * d) * 2 + r * (d + ff) * 2;
    EXPECT_EQ(rep.trainable_params, layers * per_layer);
    EXPECT_EQ(rep.total_params, base + layers * per_layer);
    PeftConfig ad;
    ad.method = PeftMethod::Adapter;
    ad.adapter_size = 8;
    Transformer ta = build(m, ad);
    const ParamReport ra = count_params(ta);
    const int64_t adapter = 2 * 8 * d + d + 8;
    EXPECT_EQ(ra.delta_params, layers * 2 * adapter);  // Houlsby: two per layer
    // Trainable: adapters plus every layer norm (2 per layer + final), weight and bias each.
    EXPECT_EQ(ra.trainable_params, layers * 2 * adapter + (2 * layers + 1) * 2 * d);
  }
}

TEST(Adapter, IsTheIdentityAtInitialisation) {
  AdapterOptions o;
  o.d_model = 32;
  o.size = 8;
  Adapter a(o, dense_factory(), "adapter");
  const torch::Tensor h = torch::randn({2, 5, 32});
  EXPECT_TRUE(torch::equal(a->forward(h), h));
  PeftConfig none, ad;
  none.method = PeftMethod::None;
  ad.method = PeftMethod::Adapter;
  ad.adapter_size = 8;
  torch::NoGradGuard g;
  EXPECT_TRUE(torch::equal(build(small(), none)->forward(tokens()), build(small(), ad)->forward(tokens())));
}

TEST(Training, FrozenParametersGetNoGradientAndNoOptimizerState) {
  ProcessGrid grid = make_grid(GridOptions{1, Backend::Mpi, 60, MPI_COMM_SELF});
  Trainer s(fixtures::tiny_config("lora"), grid);
  s.step();
  int64_t trainable = 0;
  for (auto& item : s.model()->named_parameters()) {
    if (item.value().requires_grad()) {
      trainable += item.value().numel();
      EXPECT_NE(item.key().find("lora_"), std::string::npos) << item.key();
    } else {
      EXPECT_FALSE(item.value().grad().defined()) << item.key();
    }
  }
  EXPECT_EQ(s.grad_sync().trainable_numel(), trainable);
  EXPECT_EQ(s.optimizer().state_bytes(), 2 * 4 * trainable);
}

TEST(Training, AShortRunLowersTheLoss) {
  ProcessGrid grid = make_grid(GridOptions{1, Backend::Mpi, 60, MPI_COMM_SELF});
  RunConfig c = fixtures::tiny_config("full");
  c.train.steps = 40;
  c.train.micro_batch = 4;
  Trainer s(c, grid);
  const double before = s.evaluate().loss;
  while (!s.done()) s.step();
  const double after = s.evaluate().loss;
  EXPECT_LT(after, before - 1.0) << before << " -> " << after;
}

TEST(Checkpoint, SaveAndLoadRoundTripTrainableParameters) {
  ProcessGrid grid = make_grid(GridOptions{1, Backend::Mpi, 60, MPI_COMM_SELF});
  const std::string dir = "/tmp/deltashard_ckpt_" + std::to_string(::getpid());
  RunConfig c = fixtures::tiny_config("lora");
  Trainer a(c, grid);
  a.step();
  a.step();
  a.save_checkpoint(dir);
  Trainer b(c, grid, TrainerOptions{dir});
  EXPECT_EQ(b.step_index(), 2);
  auto pb = b.model()->named_parameters();
  for (auto& item : a.model()->named_parameters()) {
    EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << item.key();
  }
  std::filesystem::remove_all(dir);
}

TEST(ModelDir, AWrittenModelLoadsBackExactly) {
  const std::string dir = "/tmp/deltashard_model_" + std::to_string(::getpid());
  PeftConfig none;
  none.method = PeftMethod::None;
  Transformer a = build(small(), none, 5);
  save_model_dir(dir, a->cfg, base_tensors(a));
  const ModelConfig m = read_model_config(dir);
  Transformer b = build(m, none, 99);
  load_model_weights(dir, b);
  torch::NoGradGuard g;
  EXPECT_TRUE(torch::equal(a->forward(tokens()), b->forward(tokens())));
  std::filesystem::remove_all(dir);
}

TEST(Config, UnknownKeyNamesFileLineAndKey) {
  const std::string path = write_yaml("model:\n  d_model: 32\n  n_heads: 4\ndata:\n  path: x\n");
  try {
    load_run_config(path, {});
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), path + ":3: model.n_heads: unknown key");
  }
}

TEST(Config, WrongTypeAndRangeAndOverrideErrors) {
  const std::string path = write_yaml("peft:\n  r: lots\ndata:\n  path: x\n");
  try {
    load_run_config(path, {});
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(":2: peft.r: expected an integer"), std::string::npos) << e.what();
  }
  const std::string ok = write_yaml("data:\n  path: x\n");
  EXPECT_THROW(load_run_config(ok, {"train.lr=-1"}), ConfigError);
  try {
    load_run_config(ok, {"peft.targets=[q, x]"});
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("--set: peft.targets: unknown entry 'x'"), std::string::npos) << e.what();
  }
  const RunConfig c = load_run_config(ok, {"peft.targets=[q, v, up]", "train.steps=5"});
  EXPECT_EQ(c.peft.targets, (std::vector<std::string>{"q", "v", "up"}));
  EXPECT_EQ(c.train.steps, 5);
  EXPECT_THROW(load_run_config("/nonexistent.yaml", {}), ConfigError);
}

TEST(Safetensors, MalformedFilesGiveErrorsNamingFileAndTensor) {
  const std::string path = "/tmp/deltashard_st_" + std::to_string(::getpid()) + ".safetensors";
  write_safetensors(path, {{"a", torch::arange(6, torch::kFloat).view({2, 3})}, {"b", torch::ones({4}, torch::kLong)}});
  const SafetensorsFile f = read_safetensors(path);
  EXPECT_TRUE(torch::equal(f.at("a", path), torch::arange(6, torch::kFloat).view({2, 3})));
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto parse = [&](const std::string& b) {
    return parse_safetensors(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "f.safetensors");
  };
  auto expect_error = [&](const std::string& b, const std::string& needle) {
    try {
      parse(b);
      FAIL() << "no error for " << needle;
    } catch (const FileError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).rfind("f.safetensors:", 0), 0u);
    }
  };
  expect_error(bytes.substr(0, 5), "truncated");
  expect_error(bytes.substr(0, bytes.size() - 8), "tensor 'b'");
  std::string big = bytes;
  big[7] = 0x7f;
  expect_error(big, "100 MB");
  std::string dtype = bytes;
  dtype.replace(dtype.find("\"F32\""), 5, "\"F99\"");
  expect_error(dtype, "unknown dtype");
  EXPECT_THROW(f.at("missing", path), FileError);
  std::filesystem::remove(path);
}

namespace {
// Minor page faults taken while `work` runs.
template <class F>
long minor_faults(F work) {
  rusage before{}, after{};
  getrusage(RUSAGE_SELF, &before);
  work();
  getrusage(RUSAGE_SELF, &after);
  return after.ru_minflt - before.ru_minflt;
}

// One "step" that allocates, writes and frees three large tensors.
long faults_in_a_step() {
  return minor_faults([] {
    std::vector<torch::Tensor> ts;
    for (int64_t mib : {64, 16, 48}) ts.push_back(torch::empty({mib << 18}, torch::kFloat).fill_(1.0f));
  });
}

// Faults over the last three of ten steps: the steady state of a training loop.
long steady_state_faults() {
  long faults = 0;
  for (int i = 0; i < 10; ++i) {
    const long f = faults_in_a_step();
    if (i >= 7) faults += f;
  }
  return faults;
}
}  // namespace

// The memory a step frees is reused by the next step without faulting its pages in again.
TEST(Heap, FreedTensorMemoryIsReusedWithoutPageFaults) {
#if !defined(__GLIBC__)
  GTEST_SKIP() << "the heap policy applies to glibc only";
#endif
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables && std::string(tunables).find("glibc.malloc.") != std::string::npos) {
    GTEST_SKIP() << "GLIBC_TUNABLES sets malloc tunables, which keep_freed_memory() leaves alone";
  }
  const long pages_per_step = (128 << 20) / 4096;
  // glibc's default: blocks this large are mapped on allocation and unmapped on free, faulted in
  // 4 KiB pages again each step (not with transparent huge pages always on: then 2 MiB ones).
  std::ifstream thp("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string thp_mode((std::istreambuf_iterator<char>(thp)), std::istreambuf_iterator<char>());
  const long before = steady_state_faults();
  if (thp_mode.find("[always]") == std::string::npos) EXPECT_GT(before, pages_per_step);
  ASSERT_TRUE(keep_freed_memory());
  EXPECT_LT(steady_state_faults(), pages_per_step / 16);
  // One size allocated and freed in turn (a campaign's per-job head) reuses one block: glibc
  // 2.36's posix_memalign would carve each from fresh memory above the last.
  long same_size = 0;
  for (int i = 0; i < 6; ++i) {
    const long f = minor_faults([] { torch::empty({16 << 20}, torch::kFloat).fill_(1.0f); });
    if (i >= 2) same_size += f;
  }
  EXPECT_LT(same_size, pages_per_step / 16);
}
