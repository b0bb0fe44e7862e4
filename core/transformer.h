// A GPT-2 style pre-norm decoder written once: learned positions, LayerNorm, causal attention
// with separate q, k, v, o projections, a GELU MLP, optional tied LM head. Every projection comes
// from a LinearFactory, so the same code runs unsharded and tensor-parallel: the number of local
// heads is read off the local q width, never from a TP size.
#pragma once

#include <torch/torch.h>

#include "core/adapter.h"
#include "core/linear.h"
#include "core/model_config.h"

namespace ds {

struct AttentionImpl : torch::nn::Module {
  AttentionImpl(const ModelConfig& cfg, const LinearFactory& factory);
  // x [B, T, d] replicated -> [B, T, d] replicated.
  torch::Tensor forward(const torch::Tensor& x);

  int64_t head_dim;
  TensorMap fanout;
  Linear q{nullptr}, k{nullptr}, v{nullptr}, o{nullptr};
};
TORCH_MODULE(Attention);

struct MlpImpl : torch::nn::Module {
  MlpImpl(const ModelConfig& cfg, const LinearFactory& factory);
  torch::Tensor forward(const torch::Tensor& x);

  TensorMap fanout;
  Linear up{nullptr}, down{nullptr};
};
TORCH_MODULE(Mlp);

// x -> x + A_attn(attn(ln1(x))) -> h + A_mlp(mlp(ln2(h))); the adapters A are absent unless
// injected (Houlsby: both; Pfeiffer: the MLP one).
struct BlockImpl : torch::nn::Module {
  BlockImpl(const ModelConfig& cfg, const LinearFactory& factory);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::LayerNorm ln1{nullptr}, ln2{nullptr};
  Attention attn{nullptr};
  Mlp mlp{nullptr};
  Adapter attn_adapter{nullptr}, mlp_adapter{nullptr};
};
TORCH_MODULE(Block);

struct TransformerImpl : torch::nn::Module {
  TransformerImpl(const ModelConfig& cfg, LinearFactory factory);
  // idx [B, T] int64 -> logits [B, T, vocab].
  torch::Tensor forward(const torch::Tensor& idx);

  ModelConfig cfg;
  LinearFactory factory;
  torch::nn::Embedding wte{nullptr}, wpe{nullptr};
  std::vector<Block> blocks;
  torch::nn::LayerNorm ln_f{nullptr};
  Linear lm_head{nullptr};  // absent when tied to wte
};
TORCH_MODULE(Transformer);

// Mean next-token cross entropy of logits [B, T, V] against targets [B, T].
torch::Tensor lm_loss(const torch::Tensor& logits, const torch::Tensor& targets);

}  // namespace ds
