#include "core/transformer.h"

#include <cmath>

namespace ds {

namespace F = torch::nn::functional;

AttentionImpl::AttentionImpl(const ModelConfig& cfg, const LinearFactory& factory)
    : head_dim(cfg.head_dim()), fanout(factory.fanout("attn")) {
  const int64_t d = cfg.d_model;
  // GPT-2 scales the residual projections' init by 1/sqrt(2·n_layer).
  const double resid_std = cfg.init_std / std::sqrt(2.0 * static_cast<double>(cfg.n_layer));
  q = register_module("q", factory.linear({"attn.q", d, d, true, Split::Rows, cfg.init_std}));
  k = register_module("k", factory.linear({"attn.k", d, d, true, Split::Rows, cfg.init_std}));
  v = register_module("v", factory.linear({"attn.v", d, d, true, Split::Rows, cfg.init_std}));
  o = register_module("o", factory.linear({"attn.o", d, d, true, Split::Cols, resid_std}));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x) {
  const int64_t B = x.size(0), T = x.size(1);
  const torch::Tensor xin = fanout(x);
  auto heads = [&](const torch::Tensor& t) {  // [B, T, h·hd] -> [B, h, T, hd]
    return t.view({B, T, t.size(2) / head_dim, head_dim}).transpose(1, 2);
  };
  torch::Tensor qh = heads(q->forward(xin));
  torch::Tensor kh = heads(k->forward(xin));
  torch::Tensor vh = heads(v->forward(xin));
  torch::Tensor att = qh.matmul(kh.transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(head_dim)));
  torch::Tensor mask = torch::ones({T, T}, torch::TensorOptions().dtype(torch::kBool).device(x.device())).triu(1);
  att = torch::softmax(att.masked_fill(mask, -std::numeric_limits<float>::infinity()), -1);
  torch::Tensor y = att.matmul(vh).transpose(1, 2).contiguous();
  return o->forward(y.view({B, T, y.size(2) * y.size(3)}));
}

MlpImpl::MlpImpl(const ModelConfig& cfg, const LinearFactory& factory) : fanout(factory.fanout("mlp")) {
  const double resid_std = cfg.init_std / std::sqrt(2.0 * static_cast<double>(cfg.n_layer));
  up = register_module("up", factory.linear({"mlp.up", cfg.d_model, cfg.d_ff, true, Split::Rows, cfg.init_std}));
  down = register_module("down", factory.linear({"mlp.down", cfg.d_ff, cfg.d_model, true, Split::Cols, resid_std}));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  return down->forward(F::gelu(up->forward(fanout(x)), F::GELUFuncOptions().approximate("tanh")));
}

BlockImpl::BlockImpl(const ModelConfig& cfg, const LinearFactory& factory) {
  auto ln = [&] { return torch::nn::LayerNorm(torch::nn::LayerNormOptions({cfg.d_model}).eps(cfg.norm_eps)); };
  ln1 = register_module("ln1", ln());
  attn = register_module("attn", Attention(cfg, factory));
  ln2 = register_module("ln2", ln());
  mlp = register_module("mlp", Mlp(cfg, factory));
}

torch::Tensor BlockImpl::forward(const torch::Tensor& x) {
  torch::Tensor a = attn->forward(ln1->forward(x));
  if (attn_adapter) a = attn_adapter->forward(a);
  const torch::Tensor h = x + a;
  torch::Tensor m = mlp->forward(ln2->forward(h));
  if (mlp_adapter) m = mlp_adapter->forward(m);
  return h + m;
}

TransformerImpl::TransformerImpl(const ModelConfig& c, LinearFactory f) : cfg(c), factory(std::move(f)) {
  validate_model_config(cfg, "model");
  wte = register_module("wte", torch::nn::Embedding(cfg.vocab_size, cfg.d_model));
  wpe = register_module("wpe", torch::nn::Embedding(cfg.max_seq_len, cfg.d_model));
  {
    torch::NoGradGuard no_grad;
    wte->weight.normal_(0.0, cfg.init_std);
    wpe->weight.normal_(0.0, cfg.init_std / 2);
  }
  auto list = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.n_layer; ++i) {
    blocks.push_back(Block(cfg, factory));
    list->push_back(blocks.back());
  }
  ln_f = register_module("ln_f", torch::nn::LayerNorm(torch::nn::LayerNormOptions({cfg.d_model}).eps(cfg.norm_eps)));
  if (!cfg.tie_embeddings) {
    // The head stays replicated: its output is the full vocabulary on every rank.
    LinearOptions o;
    o.spec = {"lm_head", cfg.d_model, cfg.vocab_size, false, Split::None, cfg.init_std};
    lm_head = register_module("lm_head", Linear(o));
  }
}

torch::Tensor TransformerImpl::forward(const torch::Tensor& idx) {
  const int64_t T = idx.size(1);
  TORCH_CHECK(T <= cfg.max_seq_len, "sequence length ", T, " exceeds model.max_seq_len ", cfg.max_seq_len);
  torch::Tensor pos = torch::arange(T, torch::TensorOptions().dtype(torch::kLong).device(idx.device()));
  torch::Tensor x = wte->forward(idx) + wpe->forward(pos).unsqueeze(0);
  for (auto& b : blocks) x = b->forward(x);
  x = ln_f->forward(x);
  return lm_head ? lm_head->forward(x) : F::linear(x, wte->weight);
}

torch::Tensor lm_loss(const torch::Tensor& logits, const torch::Tensor& targets) {
  return F::cross_entropy(logits.reshape({-1, logits.size(-1)}).to(torch::kFloat), targets.reshape({-1}));
}

}  // namespace ds
