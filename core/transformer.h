// A pre-norm decoder written once for two families: GPT-2 (learned positions, LayerNorm, biases,
// GELU MLP) and LLaMA (rotary positions, RMSNorm, no biases, SwiGLU MLP, grouped-query
// attention), chosen by ModelConfig. Every projection comes from a LinearFactory, so the same
// code runs unsharded and tensor-parallel: local head counts are read off the local q and k
// widths, never from a TP size. Optional KV cache for generation.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "core/adapter.h"
#include "core/linear.h"
#include "core/model_config.h"

namespace ds {

// LayerNorm: (x - mean) / sqrt(var + eps) · weight + bias; RMSNorm: x / sqrt(mean(x²) + eps) · weight.
// Over the last dimension, computed in float32.
struct NormImpl : torch::nn::Module {
  NormImpl(const ModelConfig& cfg, const ParamOptions& params);
  torch::Tensor forward(const torch::Tensor& x);

  bool rms;
  double eps;
  torch::Tensor weight, bias;  // bias only for LayerNorm
};
TORCH_MODULE(Norm);

// A lookup table [rows, d] in the base's type (token or learned position embeddings).
struct EmbeddingImpl : torch::nn::Module {
  EmbeddingImpl(int64_t rows, int64_t dim, double init_std, const ParamOptions& params);
  torch::Tensor forward(const torch::Tensor& ids);  // in the table's type
  torch::Tensor weight;
  double init_std;  // weight ~ N(0, init_std²) when drawn
};
TORCH_MODULE(Embedding);

// Keys and values of the positions seen so far, per layer: [B, kv_heads_local, T_past, head_dim].
struct KVCache {
  std::vector<torch::Tensor> k, v;
  int64_t length() const { return k.empty() || !k[0].defined() ? 0 : k[0].size(2); }
};

// Several examples in each row (data.packing): each token's position within its example, and a
// [B, 1, T, T] mask true where a query must not see a key (a later token, or another example).
struct Packing {
  torch::Tensor positions, hidden;
};
// From positions and segment ids [B, T] (the example each token belongs to).
Packing make_packing(const torch::Tensor& positions, const torch::Tensor& segments);

// Rotary embedding (the rotate-half convention of Hugging Face's LLaMA): for positions p and
// frequency i < hd/2, θ_i = theta^(-2i/hd); x·cos(pθ) + rotate_half(x)·sin(pθ) on [B, h, T, hd].
torch::Tensor apply_rope(const torch::Tensor& x, int64_t first_position, double theta);
// The same with a position per token: positions [B, T].
torch::Tensor apply_rope_at(const torch::Tensor& x, const torch::Tensor& positions, double theta);

// softmax(q·kᵀ/√hd + causal mask)·v on [B, h, T, hd] queries against [B, h, past + T, hd] keys and
// values: fused scaled_dot_product_attention where LibTorch has it (2.0+), else explicit, with the
// softmax in float32. With `hidden` ([B, 1, T, S], true = not seen) that mask replaces the causal one.
torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t past,
                               const torch::Tensor& hidden = {});
// Which of those paths this build takes (for memory estimates): Explicit (LibTorch 1.x), Fused
// (2.0 to 2.4, on key/value heads repeated to n_head), FusedGqa (2.5+, grouped heads read in place).
enum class AttentionKernel { Explicit, Fused, FusedGqa };
AttentionKernel attention_kernel();

struct AttentionImpl : torch::nn::Module {
  AttentionImpl(const ModelConfig& cfg, const LinearFactory& factory);
  // x [B, T, d] replicated -> [B, T, d] replicated. With a cache (k, v of this layer), x holds
  // the positions after the cached ones and the cache grows by T.
  torch::Tensor forward(const torch::Tensor& x, torch::Tensor* cache_k = nullptr, torch::Tensor* cache_v = nullptr,
                        const Packing* packing = nullptr);

  int64_t head_dim;
  bool rope;
  double rope_theta;
  TensorMap fanout;
  Linear q{nullptr}, k{nullptr}, v{nullptr}, o{nullptr};
};
TORCH_MODULE(Attention);

// GELU: down(gelu(up(x))); SwiGLU: down(silu(gate(x)) ⊙ up(x)). up and gate column-parallel,
// down row-parallel.
struct MlpImpl : torch::nn::Module {
  MlpImpl(const ModelConfig& cfg, const LinearFactory& factory);
  torch::Tensor forward(const torch::Tensor& x);

  TensorMap fanout;
  Linear gate{nullptr}, up{nullptr}, down{nullptr};  // gate only for SwiGLU
};
TORCH_MODULE(Mlp);

// x -> x + A_attn(attn(ln1(x))) -> h + A_mlp(mlp(ln2(h))); the adapters A are absent unless
// injected (Houlsby: both; Pfeiffer: the MLP one).
struct BlockImpl : torch::nn::Module {
  BlockImpl(const ModelConfig& cfg, const LinearFactory& factory);
  torch::Tensor forward(const torch::Tensor& x, torch::Tensor* cache_k = nullptr, torch::Tensor* cache_v = nullptr,
                        const Packing* packing = nullptr);

  Norm ln1{nullptr}, ln2{nullptr};
  Attention attn{nullptr};
  Mlp mlp{nullptr};
  Adapter attn_adapter{nullptr}, mlp_adapter{nullptr};
};
TORCH_MODULE(Block);

// Activations flow in factory.params.compute (the base's type; float32 for an fp16 base on the
// CPU); norms, softmax and the loss work in float32 inside.
struct TransformerImpl : torch::nn::Module {
  TransformerImpl(const ModelConfig& cfg, LinearFactory factory);
  // idx [B, T] int64 -> logits [B, T, vocab] in the compute type. With a cache, idx continues the
  // cached positions. With packing (no cache), positions and attention follow it.
  torch::Tensor forward(const torch::Tensor& idx, KVCache* cache = nullptr, const Packing* packing = nullptr);
  // forward is head(hidden(...)): the final normed hidden states [B, T, d_model] in the compute
  // type, then the vocabulary head on any rows of them. A campaign takes its jobs' losses from
  // their own rows, so that only one job's vocabulary-wide logits exist at a time.
  torch::Tensor hidden(const torch::Tensor& idx, KVCache* cache = nullptr, const Packing* packing = nullptr);
  torch::Tensor head(const torch::Tensor& h);

  ModelConfig cfg;
  LinearFactory factory;
  bool recompute = false;  // train.recompute: layer, while training with gradients
  Embedding wte{nullptr}, wpe{nullptr};  // wpe only for learned positions
  std::vector<Block> blocks;
  Norm ln_f{nullptr};
  Linear lm_head{nullptr};  // absent when tied to wte
};
TORCH_MODULE(Transformer);

// Mean next-token cross entropy of logits [B, T, V] against targets [B, T].
torch::Tensor lm_loss(const torch::Tensor& logits, const torch::Tensor& targets);
// The sum over targets that are not -100 (instruction data: prompts and padding are -100).
torch::Tensor lm_loss_sum(const torch::Tensor& logits, const torch::Tensor& targets);

}  // namespace ds
