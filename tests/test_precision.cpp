// The base's storage type: a bf16 or fp16 base computes what the float32 model computes, within
// the rounding of its type; trainable parameters, their gradients and the LoRA factors stay
// float32; merging into a bf16 base writes bf16. Each case runs on the CPU and, where LibTorch
// sees a GPU, on CUDA too (skipped here otherwise).
#include <gtest/gtest.h>

#include "core/model_io.h"
#include "core/peft.h"
#include "core/transformer.h"
#include "test_helpers.h"

using namespace ds;

namespace {

ModelConfig llama_like() {
  ModelConfig c;
  c.vocab_size = 97;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_kv_head = 2;
  c.d_model = 64;
  c.d_ff = 128;
  c.max_seq_len = 32;
  c.norm = NormKind::RmsNorm;
  c.activation = Activation::SwiGlu;
  c.positions = Positions::Rope;
  c.bias = false;
  c.tie_embeddings = false;
  return c;
}

ModelConfig gpt2_like() {
  ModelConfig c;
  c.vocab_size = 97;
  c.n_layer = 2;
  c.n_head = 4;
  c.d_model = 64;
  c.d_ff = 128;
  c.max_seq_len = 32;
  return c;
}

ParamOptions options(DType d, torch::Device dev, bool init) {
  ParamOptions p;
  p.options = torch::TensorOptions().dtype(scalar_type(d)).device(dev);
  p.random_init = init;
  p.compute = compute_type(d, dev.is_cuda() ? Device::Cuda : Device::Cpu);
  return p;
}

// The float32 reference and a copy of it stored in `d`, with LoRA on q and v whose B is not zero
// (so the factors get gradients and change the output), identical in both.
struct Pair {
  Transformer ref{nullptr}, low{nullptr};
};

Pair make_pair(const ModelConfig& c, DType d, torch::Device dev) {
  torch::manual_seed(11);
  Pair p;
  p.ref = Transformer(c, dense_factory(options(DType::Fp32, dev, true)));
  p.low = Transformer(c, dense_factory(options(d, dev, false)));
  PeftConfig peft;
  peft.r = 4;
  peft.alpha = 8;
  peft.targets = {"q", "v"};
  torch::manual_seed(12);
  apply_peft(p.ref, peft, dense_factory(options(DType::Fp32, dev, true)));
  apply_peft(p.low, peft, dense_factory(options(d, dev, true)));
  for (auto* m : {&p.ref, &p.low}) {
    for (auto& item : (*m)->named_parameters()) {
      if (item.value().requires_grad() && item.value().scalar_type() != torch::kFloat) {
        item.value().set_data(item.value().detach().to(torch::kFloat));
      }
    }
  }
  {
    torch::NoGradGuard g;
    for (auto& [name, layer] : lora_layers(p.ref)) layer->lora_B.normal_(0.0, 0.05);
  }
  std::map<std::string, torch::Tensor> all;
  for (auto& item : p.ref->named_parameters()) all[item.key()] = item.value().detach();
  load_params(*p.low, all, "reference", [](const std::string&) { return true; });
  return p;
}

torch::Tensor tokens(int64_t vocab, torch::Device dev) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  return torch::randint(vocab, {3, 16}, gen, torch::kLong).to(dev);
}

double rel(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>() /
         b.to(torch::kDouble).abs().max().item<double>();
}

class Precision : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {
 protected:
  void SetUp() override {
    if (cuda() && !torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device visible to LibTorch";
  }
  bool cuda() const { return std::get<1>(GetParam()) == "cuda"; }
  torch::Device device() const { return cuda() ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU); }
  DType dtype() const { return *enum_from<DType>(std::get<0>(GetParam())); }
  // bf16 keeps 8 bits of mantissa, fp16 11: the logits of a 2-layer model keep about that much.
  double tolerance() const { return dtype() == DType::Bf16 ? 3e-2 : cuda() ? 1e-2 : 4e-3; }
};

}  // namespace

TEST_P(Precision, ForwardMatchesFloat32WithinTheTypesRounding) {
  const torch::Device dev = device();
  for (const ModelConfig& c : {gpt2_like(), llama_like()}) {
    Pair p = make_pair(c, dtype(), dev);
    torch::NoGradGuard g;
    const torch::Tensor x = tokens(c.vocab_size, dev);
    const torch::Tensor want = p.ref->forward(x), got = p.low->forward(x);
    EXPECT_EQ(got.scalar_type(), compute_type(dtype(), dev.is_cuda() ? Device::Cuda : Device::Cpu));
    EXPECT_LT(rel(got, want), tolerance()) << enum_name(c.norm);
    EXPECT_GT(rel(got, want), 0.0) << "the base was not rounded: is it really stored in " << enum_name(dtype()) << "?";
  }
}

TEST_P(Precision, TrainableParametersAndTheirGradientsStayFloat32AndAgree) {
  const torch::Device dev = device();
  const ModelConfig c = llama_like();
  Pair p = make_pair(c, dtype(), dev);
  const torch::Tensor x = tokens(c.vocab_size, dev);
  const torch::Tensor y = x.roll(-1, 1);
  lm_loss(p.ref->forward(x), y).backward();
  lm_loss(p.low->forward(x), y).backward();
  auto ref = p.ref->named_parameters();
  int checked = 0;
  for (auto& item : p.low->named_parameters()) {
    const torch::Tensor& t = item.value();
    if (!t.requires_grad()) {
      EXPECT_EQ(t.scalar_type(), scalar_type(dtype())) << item.key();
      EXPECT_FALSE(t.grad().defined()) << item.key();
      continue;
    }
    EXPECT_EQ(t.scalar_type(), torch::kFloat) << item.key();
    ASSERT_TRUE(t.grad().defined()) << item.key();
    EXPECT_EQ(t.grad().scalar_type(), torch::kFloat) << item.key();
    // Gradients go through every rounded layer above: looser than the forward.
    EXPECT_LT(rel(t.grad(), ref[item.key()].grad()), 10 * tolerance()) << item.key();
    ++checked;
  }
  EXPECT_EQ(checked, 2 * 2 * 2);  // 2 layers x {q, v} x {A, B}
}

TEST_P(Precision, MergingIntoTheBaseKeepsItsTypeAndRoundsOnce) {
  const torch::Device dev = device();
  const ModelConfig c = gpt2_like();
  Pair p = make_pair(c, dtype(), dev);
  torch::NoGradGuard g;
  const torch::Tensor x = tokens(c.vocab_size, dev);
  const torch::Tensor unmerged = p.low->forward(x);
  for (auto& [name, layer] : lora_layers(p.low)) layer->merge();
  for (auto& [name, layer] : lora_layers(p.low)) EXPECT_EQ(layer->weight.scalar_type(), scalar_type(dtype())) << name;
  // W + s·B·A rounded to the base's type once: the merged model differs from the unmerged one by
  // about one rounding of the weights (docs/models.md).
  EXPECT_LT(rel(p.low->forward(x), unmerged), tolerance());
}

INSTANTIATE_TEST_SUITE_P(Types, Precision,
                         ::testing::Combine(::testing::Values("bf16", "fp16"), ::testing::Values("cpu", "cuda")),
                         [](const auto& info) { return std::get<0>(info.param) + "_" + std::get<1>(info.param); });
