#include "core/transformer.h"

#include "core/recompute.h"

#include <torch/version.h>

#include <cmath>

// at::scaled_dot_product_attention exists from LibTorch 2.0 and reads grouped key/value heads
// itself (enable_gqa) from 2.5; Debian's 1.13 takes the plain path.
#if TORCH_VERSION_MAJOR >= 2
#define DS_HAVE_SDPA 1
#else
#define DS_HAVE_SDPA 0
#endif
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 5)
#define DS_HAVE_SDPA_GQA 1
#else
#define DS_HAVE_SDPA_GQA 0
#endif

namespace ds {

namespace F = torch::nn::functional;

NormImpl::NormImpl(const ModelConfig& cfg, const ParamOptions& params)
    : rms(cfg.norm == NormKind::RmsNorm), eps(cfg.norm_eps) {
  weight = register_parameter("weight", torch::ones({cfg.d_model}, params.options));
  if (!rms) bias = register_parameter("bias", torch::zeros({cfg.d_model}, params.options));
}

torch::Tensor NormImpl::forward(const torch::Tensor& x) {
  const torch::Tensor xf = x.to(torch::kFloat);
  const torch::Tensor w = weight.to(torch::kFloat);
  if (!rms) {
    return F::layer_norm(xf, F::LayerNormFuncOptions({x.size(-1)}).weight(w).bias(bias.to(torch::kFloat)).eps(eps))
        .to(x.scalar_type());
  }
  return (xf * torch::rsqrt(xf.pow(2).mean(-1, true) + eps) * w).to(x.scalar_type());
}

EmbeddingImpl::EmbeddingImpl(int64_t rows, int64_t dim, double init_std, const ParamOptions& params)
    : init_std(init_std) {
  weight = register_parameter("weight", make_param({rows, dim}, init_std, params));
}

torch::Tensor EmbeddingImpl::forward(const torch::Tensor& ids) { return F::embedding(ids, weight); }

torch::Tensor apply_rope(const torch::Tensor& x, int64_t first, double theta) {
  const int64_t T = x.size(2), hd = x.size(3), half = hd / 2;
  const auto opts = torch::TensorOptions().dtype(torch::kFloat).device(x.device());
  const torch::Tensor inv_freq = torch::pow(theta, -torch::arange(0, hd, 2, opts) / static_cast<double>(hd));
  const torch::Tensor angles = torch::outer(torch::arange(first, first + T, opts), inv_freq);  // [T, hd/2]
  const torch::Tensor emb = torch::cat({angles, angles}, -1);                                    // [T, hd]
  const torch::Tensor cos = emb.cos().to(x.scalar_type()), sin = emb.sin().to(x.scalar_type());
  const torch::Tensor rotated = torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos + rotated * sin;
}

torch::Tensor apply_rope_at(const torch::Tensor& x, const torch::Tensor& positions, double theta) {
  const int64_t hd = x.size(3), half = hd / 2;
  const auto opts = torch::TensorOptions().dtype(torch::kFloat).device(x.device());
  const torch::Tensor inv_freq = torch::pow(theta, -torch::arange(0, hd, 2, opts) / static_cast<double>(hd));
  const torch::Tensor angles = positions.to(torch::kFloat).unsqueeze(-1) * inv_freq;  // [B, T, hd/2]
  const torch::Tensor emb = torch::cat({angles, angles}, -1).unsqueeze(1);              // [B, 1, T, hd]
  const torch::Tensor cos = emb.cos().to(x.scalar_type()), sin = emb.sin().to(x.scalar_type());
  const torch::Tensor rotated = torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos + rotated * sin;
}

Packing make_packing(const torch::Tensor& positions, const torch::Tensor& segments) {
  const int64_t T = segments.size(1);
  const torch::Tensor same = segments.unsqueeze(2) == segments.unsqueeze(1);  // [B, T, T]
  const torch::Tensor causal = torch::ones({T, T}, torch::TensorOptions().dtype(torch::kBool).device(segments.device())).tril();
  return Packing{positions, (same & causal).logical_not().unsqueeze(1)};
}

AttentionImpl::AttentionImpl(const ModelConfig& cfg, const LinearFactory& factory)
    : head_dim(cfg.head_dim()),
      rope(cfg.positions == Positions::Rope),
      rope_theta(cfg.rope_theta),
      fanout(factory.fanout("attn")) {
  const int64_t d = cfg.d_model, kv = cfg.kv_heads() * cfg.head_dim();
  // GPT-2 scales the residual projections' init by 1/sqrt(2·n_layer).
  const double resid_std = cfg.init_std / std::sqrt(2.0 * static_cast<double>(cfg.n_layer));
  q = register_module("q", factory.linear({"attn.q", d, d, cfg.bias, Split::Rows, cfg.init_std}));
  k = register_module("k", factory.linear({"attn.k", d, kv, cfg.bias, Split::Rows, cfg.init_std}));
  v = register_module("v", factory.linear({"attn.v", d, kv, cfg.bias, Split::Rows, cfg.init_std}));
  o = register_module("o", factory.linear({"attn.o", d, d, cfg.bias, Split::Cols, resid_std}));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, torch::Tensor* cache_k, torch::Tensor* cache_v,
                                     const Packing* packing) {
  const int64_t B = x.size(0), T = x.size(1);
  const torch::Tensor xin = fanout(x);
  auto heads = [&](const torch::Tensor& t) {  // [B, T, h·hd] -> [B, h, T, hd]
    return t.view({B, T, t.size(2) / head_dim, head_dim}).transpose(1, 2);
  };
  const int64_t past = cache_k && cache_k->defined() ? cache_k->size(2) : 0;
  torch::Tensor qh = heads(q->forward(xin));
  torch::Tensor kh = heads(k->forward(xin));
  torch::Tensor vh = heads(v->forward(xin));
  if (rope && packing) {
    qh = apply_rope_at(qh, packing->positions, rope_theta);
    kh = apply_rope_at(kh, packing->positions, rope_theta);
  } else if (rope) {
    qh = apply_rope(qh, past, rope_theta);
    kh = apply_rope(kh, past, rope_theta);
  }
  if (cache_k) {
    if (past > 0) {
      kh = torch::cat({*cache_k, kh}, 2);
      vh = torch::cat({*cache_v, vh}, 2);
    }
    *cache_k = kh;
    *cache_v = vh;
  }
  torch::Tensor y =
      causal_attention(qh, kh, vh, past, packing ? packing->hidden : torch::Tensor()).transpose(1, 2).contiguous();
  return o->forward(y.view({B, T, y.size(2) * y.size(3)}));
}

torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& key, const torch::Tensor& value,
                               int64_t past, const torch::Tensor& hidden) {
  const int64_t T = q.size(2), S = key.size(2);  // query i sits at position past + i
  // Grouped-query attention: each key/value head serves n_head / n_kv_head query heads.
  const int64_t group = q.size(1) / key.size(1);
#if DS_HAVE_SDPA_GQA
  if (hidden.defined()) {
    return at::scaled_dot_product_attention(q, key, value, hidden.logical_not(), 0.0, false, std::nullopt, group > 1);
  }
  // The fused kernels (flash or memory-efficient attention on CUDA), which read the shared key and
  // value heads in place. is_causal aligns the mask top-left, which is right without a cache and
  // for a single new query (it sees every key).
  if (past == 0 || T == 1) {
    return at::scaled_dot_product_attention(q, key, value, {}, 0.0, /*is_causal=*/past == 0, std::nullopt,
                                            /*enable_gqa=*/group > 1);
  }
#endif
  const torch::Tensor k = group > 1 ? key.repeat_interleave(group, 1) : key;
  const torch::Tensor v = group > 1 ? value.repeat_interleave(group, 1) : value;
#if DS_HAVE_SDPA && !DS_HAVE_SDPA_GQA
  if (hidden.defined()) return at::scaled_dot_product_attention(q, k, v, hidden.logical_not(), 0.0, false);
  if (past == 0 || T == 1) return at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/past == 0);
#endif
  torch::Tensor att = q.matmul(k.transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(q.size(-1))));
  const torch::Tensor mask = hidden.defined()
                                 ? hidden
                                 : torch::ones({T, S}, torch::TensorOptions().dtype(torch::kBool).device(q.device()))
                                       .triu(past + 1);
  att = torch::softmax(att.to(torch::kFloat).masked_fill(mask, -std::numeric_limits<float>::infinity()), -1)
            .to(v.scalar_type());
  return att.matmul(v);
}

AttentionKernel attention_kernel() {
  return DS_HAVE_SDPA_GQA ? AttentionKernel::FusedGqa : DS_HAVE_SDPA ? AttentionKernel::Fused : AttentionKernel::Explicit;
}

MlpImpl::MlpImpl(const ModelConfig& cfg, const LinearFactory& factory) : fanout(factory.fanout("mlp")) {
  const double resid_std = cfg.init_std / std::sqrt(2.0 * static_cast<double>(cfg.n_layer));
  if (cfg.activation == Activation::SwiGlu) {
    gate = register_module("gate",
                           factory.linear({"mlp.gate", cfg.d_model, cfg.d_ff, cfg.bias, Split::Rows, cfg.init_std}));
  }
  up = register_module("up", factory.linear({"mlp.up", cfg.d_model, cfg.d_ff, cfg.bias, Split::Rows, cfg.init_std}));
  down = register_module("down", factory.linear({"mlp.down", cfg.d_ff, cfg.d_model, cfg.bias, Split::Cols, resid_std}));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  const torch::Tensor xin = fanout(x);
  if (gate) return down->forward(F::silu(gate->forward(xin)) * up->forward(xin));
  return down->forward(F::gelu(up->forward(xin), F::GELUFuncOptions().approximate("tanh")));
}

BlockImpl::BlockImpl(const ModelConfig& cfg, const LinearFactory& factory) {
  ln1 = register_module("ln1", Norm(cfg, factory.params));
  attn = register_module("attn", Attention(cfg, factory));
  ln2 = register_module("ln2", Norm(cfg, factory.params));
  mlp = register_module("mlp", Mlp(cfg, factory));
}

torch::Tensor BlockImpl::forward(const torch::Tensor& x, torch::Tensor* cache_k, torch::Tensor* cache_v,
                                 const Packing* packing) {
  torch::Tensor a = attn->forward(ln1->forward(x), cache_k, cache_v, packing);
  if (attn_adapter) a = attn_adapter->forward(a);
  const torch::Tensor h = x + a;
  torch::Tensor m = mlp->forward(ln2->forward(h));
  if (mlp_adapter) m = mlp_adapter->forward(m);
  return h + m;
}

TransformerImpl::TransformerImpl(const ModelConfig& c, LinearFactory f) : cfg(c), factory(std::move(f)) {
  validate_model_config(cfg, "model");
  wte = register_module("wte", Embedding(cfg.vocab_size, cfg.d_model, cfg.init_std, factory.params));
  if (cfg.positions == Positions::Learned) {
    wpe = register_module("wpe", Embedding(cfg.max_seq_len, cfg.d_model, cfg.init_std / 2, factory.params));
  }
  auto list = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.n_layer; ++i) {
    blocks.push_back(Block(cfg, factory));
    list->push_back(blocks.back());
  }
  ln_f = register_module("ln_f", Norm(cfg, factory.params));
  if (!cfg.tie_embeddings) {
    // The head stays replicated: its output is the full vocabulary on every rank.
    LinearOptions o;
    o.spec = {"lm_head", cfg.d_model, cfg.vocab_size, false, Split::None, cfg.init_std};
    o.params = factory.params;
    lm_head = register_module("lm_head", Linear(o));
  }
}

torch::Tensor TransformerImpl::forward(const torch::Tensor& idx, KVCache* cache, const Packing* packing) {
  return head(hidden(idx, cache, packing));
}

torch::Tensor TransformerImpl::hidden(const torch::Tensor& idx, KVCache* cache, const Packing* packing) {
  const int64_t T = idx.size(1);
  const int64_t past = cache ? cache->length() : 0;
  TORCH_CHECK(past + T <= cfg.max_seq_len, "sequence length ", past + T, " exceeds model.max_seq_len ",
              cfg.max_seq_len);
  const auto compute = factory.params.compute;
  torch::Tensor x = wte->forward(idx).to(compute);
  TORCH_CHECK(!(cache && packing), "packed rows are for training and evaluation, not with a KV cache");
  if (wpe && packing) {
    x = x + wpe->forward(packing->positions).to(compute);
  } else if (wpe) {
    const torch::Tensor pos =
        torch::arange(past, past + T, torch::TensorOptions().dtype(torch::kLong).device(idx.device()));
    x = x + wpe->forward(pos).to(compute).unsqueeze(0);
  }
  if (cache && cache->k.size() != blocks.size()) {
    cache->k.resize(blocks.size());
    cache->v.resize(blocks.size());
  }
  const bool keep_inputs_only = recompute && !cache && torch::GradMode::is_enabled();
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (cache) {
      x = blocks[i]->forward(x, &cache->k[i], &cache->v[i]);
    } else if (keep_inputs_only) {
      x = recompute_block(*blocks[i], x, factory.recompute_phase, packing, factory.dropout_streams);
    } else {
      x = blocks[i]->forward(x, nullptr, nullptr, packing);
    }
  }
  return ln_f->forward(x);
}

torch::Tensor TransformerImpl::head(const torch::Tensor& h) {
  return lm_head ? lm_head->forward(h) : F::linear(h, wte->weight.to(h.scalar_type()));
}

torch::Tensor lm_loss(const torch::Tensor& logits, const torch::Tensor& targets) {
  return F::cross_entropy(logits.reshape({-1, logits.size(-1)}).to(torch::kFloat), targets.reshape({-1}));
}

torch::Tensor lm_loss_sum(const torch::Tensor& logits, const torch::Tensor& targets) {
  return F::cross_entropy(logits.reshape({-1, logits.size(-1)}).to(torch::kFloat), targets.reshape({-1}),
                          F::CrossEntropyFuncOptions().ignore_index(-100).reduction(torch::kSum));
}

}  // namespace ds
