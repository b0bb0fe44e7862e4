#include "trainer/memory_model.h"

#include <algorithm>
#include <cstdio>
#include <set>

#include <torch/version.h>

#include "core/errors.h"
#include "dist/dry_run.h"
#include "dist/mpi_env.h"
#include "trainer/campaign_config.h"
#include "trainer/memory_stats.h"
#include "trainer/model_builder.h"

namespace ds {

namespace {

// LibTorch 1.x's mean.dim backward keeps its input (it divides by the size it reads off it); 2.x
// keeps only the sizes.
constexpr bool kMeanKeepsInput = TORCH_VERSION_MAJOR < 2;

// A tensor as the walk sees it: an identity (so a tensor kept by two operations counts once), its
// size, and whether autograd tracks it. Parameters have no identity: their storage is counted as
// weights, not activations.
struct Sym {
  int64_t id = -1;
  int64_t numel = 0;
  int64_t elt = 0;  // bytes per element
  bool rg = false;  // requires grad
  int64_t bytes() const { return numel * elt; }
};

// What autograd keeps for backward, walked through the model's forward in order. Each rule below
// is the one LibTorch's derivatives apply to the operation the model code runs; an operation keeps
// an input only when the gradient of another input needs it (mm keeps x for W's gradient and W for
// x's), and creates no graph at all when no input requires grad.
class Walk {
 public:
  Walk(int64_t batch, int64_t seq, torch::ScalarType compute, bool cuda)
      : B_(batch), T_(seq), N_(batch * seq), ct_(compute), c_(static_cast<int64_t>(c10::elementSize(compute))),
        cuda_(cuda) {}

  int64_t saved() const { return saved_; }
  int64_t transient() const { return transient_; }
  int64_t loss_transient() const { return loss_transient_; }
  int64_t logprobs() const { return logprobs_; }

  Sym make(int64_t numel, int64_t elt, bool rg) { return Sym{next_id_++, numel, elt, rg}; }
  void save(const Sym& t) {
    if (t.id >= 0 && kept_.insert(t.id).second) saved_ += t.bytes();
  }
  void transient(int64_t bytes) { transient_ = std::max(transient_, bytes); }

  static Sym param(const torch::Tensor& p) {
    return Sym{-1, p.numel(), static_cast<int64_t>(p.element_size()), p.requires_grad()};
  }
  // p.to(type): the parameter itself when it already has that type, else a new tensor.
  Sym cast(const torch::Tensor& p, torch::ScalarType type) {
    if (p.scalar_type() == type) return param(p);
    return make(p.numel(), static_cast<int64_t>(c10::elementSize(type)), p.requires_grad());
  }
  // mm(a, b) and friends: a kept for b's gradient, b for a's.
  void matmul(const Sym& a, const Sym& b) {
    if (b.rg) save(a);
    if (a.rg) save(b);
  }

  // core/linear.cpp: y = x·W.to(t)ᵀ (+ b), LoRA: + s·(drop(x)·A.to(t)ᵀ)·B.to(t)ᵀ, then the
  // row-parallel reduction (a new tensor) and bias.
  Sym linear(LinearImpl& l, const Sym& x) {
    const int64_t in = l.weight.size(1), out = l.weight.size(0);
    const Sym w = cast(l.weight, ct_);
    matmul(x, w);
    if (w.rg) {
      // Its gradient is made in the compute type, then (a cast weight) in float32, then added.
      transient(l.weight.numel() * (c_ + (l.weight.scalar_type() != ct_ ? l.weight.element_size() : 0)));
    }
    const bool bias_rg = l.bias.defined() && l.bias.requires_grad();
    Sym y = make(N_ * out, c_, x.rg || w.rg || bias_rg);
    if (l.has_lora() && !l.merged()) {
      Sym xa = x;
      if (l.lora_options().dropout > 0) {
        // CUDA: native_dropout keeps a bool mask; CPU: input * noise keeps the noise (input's type).
        const Sym keep = cuda_ ? make(N_ * in, 1, false) : make(N_ * in, c_, false);
        if (x.rg) save(keep);
        xa = make(N_ * in, c_, x.rg);
      }
      const Sym a = cast(l.lora_A, ct_);
      matmul(xa, a);
      const Sym xA = make(N_ * l.lora_A.size(0), c_, xa.rg || a.rg);
      const Sym b = cast(l.lora_B, ct_);
      matmul(xA, b);
      y = make(N_ * out, c_, true);
    }
    if (l.options().reduce_partial) y = make(N_ * out, c_, y.rg);
    return y;
  }

  // core/transformer.cpp NormImpl: in float32 inside.
  Sym norm(NormImpl& n, const Sym& x) {
    const Sym xf = x.elt == 4 && ct_ == torch::kFloat ? x : make(x.numel, 4, x.rg);
    const int64_t rows = x.numel / n.weight.size(0);
    const Sym w = cast(n.weight, torch::kFloat);
    Sym out;
    if (!n.rms) {
      // native_layer_norm keeps its input, mean and rstd when any gradient is needed.
      const bool any = xf.rg || w.rg || (n.bias.defined() && n.bias.requires_grad());
      if (any) {
        save(xf);
        save(make(rows, 4, false));
        save(make(rows, 4, false));
      }
      out = make(x.numel, 4, any);
    } else {
      // xf * rsqrt(xf.pow(2).mean(-1) + eps) * w: pow keeps xf, mean (LibTorch 1.13) its input
      // xf², rsqrt its result, the product by w keeps w (a parameter) or, when w trains, the
      // normalised x.
      if (xf.rg) {
        save(xf);
        if (kMeanKeepsInput) save(make(x.numel, 4, true));
        save(make(rows, 4, true));
      }
      const Sym normed = make(x.numel, 4, xf.rg);
      matmul(normed, w);  // elementwise mul: the same keep rule
      out = make(x.numel, 4, normed.rg || w.rg);
    }
    return ct_ == torch::kFloat ? out : make(x.numel, c_, out.rg);
  }

  // core/transformer.cpp AttentionImpl + causal_attention.
  Sym attention(AttentionImpl& a, const Sym& x) {
    const int64_t hd = a.head_dim;
    Sym q = linear(*a.q, x), k = linear(*a.k, x), v = linear(*a.v, x);
    const int64_t hq = a.q->weight.size(0) / hd, hk = a.k->weight.size(0) / hd;
    if (a.rope) {
      // x·cos + rotate_half(x)·sin keeps cos and sin [T, hd] (made per call), a new tensor out.
      for (Sym* t : {&q, &k}) {
        if (t->rg) {
          save(make(T_ * hd, c_, false));
          save(make(T_ * hd, c_, false));
        }
        *t = make(t->numel, c_, t->rg);
      }
    }
    const AttentionKernel kernel = attention_kernel();
    bool expanded = false;
    if (hk != hq && kernel != AttentionKernel::FusedGqa) {
      // repeat_interleave (index_select) to n_head heads: new contiguous tensors.
      k = make(N_ * hq * hd, c_, k.rg);
      v = make(N_ * hq * hd, c_, v.rg);
      expanded = true;
    }
    const bool any = q.rg || k.rg || v.rg;
    Sym out;
    if (kernel == AttentionKernel::Explicit) {
      // q·kᵀ: matmul copies the transposed q and kᵀ into [B·h, T, hd] for bmm (kᵀ is a view of the
      // expanded k), and bmm keeps each for the other's gradient.
      const Sym qo = make(N_ * hq * hd, c_, q.rg), ko = expanded ? k : make(N_ * hq * hd, c_, k.rg);
      matmul(qo, ko);
      const bool s_rg = q.rg || k.rg;
      const int64_t scores = N_ * hq * T_;  // B·h·T·T
      if (s_rg) save(make(T_ * T_, 1, false));  // masked_fill keeps the causal mask
      const Sym p = make(scores, 4, s_rg);     // softmax in float32 keeps its result
      if (s_rg) save(p);
      const Sym pc = ct_ == torch::kFloat ? p : make(scores, c_, s_rg);  // .to(v's type)
      const Sym vo = expanded ? v : make(N_ * hq * hd, c_, v.rg);
      matmul(pc, vo);
      // Softmax's backward holds its output gradient and its input gradient, in float32, at once.
      if (s_rg) transient(2 * scores * 4);
      out = make(N_ * hq * hd, c_, any);
    } else {
      // Fused kernel (flash or memory-efficient): keeps q, k, v, its output and the log-sum-exp.
      out = make(N_ * hq * hd, c_, any);
      if (any) {
        for (const Sym& t : {q, k, v, out}) save(t);
        save(make(B_ * hq * T_, 4, false));
      }
    }
    const Sym y = make(N_ * hq * hd, c_, out.rg);  // transpose(1, 2).contiguous()
    return linear(*a.o, y);
  }

  // core/transformer.cpp MlpImpl.
  Sym mlp(MlpImpl& m, const Sym& x) {
    if (m.gate) {
      const Sym g = linear(*m.gate, x);
      if (g.rg) save(g);  // silu keeps its input
      const Sym s = make(g.numel, c_, g.rg);
      const Sym u = linear(*m.up, x);
      matmul(s, u);  // silu(g) * u
      return linear(*m.down, make(u.numel, c_, s.rg || u.rg));
    }
    const Sym u = linear(*m.up, x);
    if (u.rg) save(u);  // gelu keeps its input
    return linear(*m.down, make(u.numel, c_, u.rg));
  }

  // core/adapter.cpp: h + up(f(down(h))); relu keeps its result, gelu its input.
  Sym adapter(AdapterImpl& ad, const Sym& h) {
    const Sym z = linear(*ad.down, h);
    if (ad.options.nonlinearity == Nonlinearity::Gelu && z.rg) save(z);
    const Sym f = make(z.numel, c_, z.rg);
    if (ad.options.nonlinearity == Nonlinearity::Relu && f.rg) save(f);
    const Sym o = linear(*ad.up, f);
    return make(h.numel, c_, h.rg || o.rg);
  }

  Sym block(BlockImpl& b, const Sym& x) {
    Sym a = attention(*b.attn, norm(*b.ln1, x));
    if (b.attn_adapter) a = adapter(*b.attn_adapter, a);
    const Sym h = make(x.numel, c_, x.rg || a.rg);
    Sym m = mlp(*b.mlp, norm(*b.ln2, h));
    if (b.mlp_adapter) m = adapter(*b.mlp_adapter, m);
    return make(x.numel, c_, h.rg || m.rg);
  }

  // Embeddings in: [B, T, d] in the compute type.
  Sym embed(TransformerImpl& t) {
    const torch::Tensor& w = t.wte->weight;
    Sym x = make(N_ * w.size(1), static_cast<int64_t>(w.element_size()), w.requires_grad());
    if (w.requires_grad()) transient(w.numel() * static_cast<int64_t>(w.element_size()));  // its dense gradient
    if (w.scalar_type() != ct_) x = make(x.numel, c_, x.rg);
    if (t.wpe) x = make(x.numel, c_, x.rg || t.wpe->weight.requires_grad());
    return x;
  }

  // Final norm, LM head (or the tied table), and the loss: logits to float32, log_softmax keeps its
  // result [B·T, V] (nll_loss keeps the same tensor).
  void head(TransformerImpl& t, const Sym& x) {
    const Sym h = norm(*t.ln_f, x);
    Sym logits;
    int64_t vocab = 0;
    if (t.lm_head) {
      logits = linear(*t.lm_head, h);
      vocab = t.lm_head->weight.size(0);
    } else {
      const Sym w = cast(t.wte->weight, ct_);
      matmul(h, w);
      vocab = t.wte->weight.size(0);
      if (w.rg) transient(t.wte->weight.numel() * (c_ + (t.wte->weight.scalar_type() != ct_ ? 4 : 0)));
      logits = make(N_ * vocab, c_, h.rg || w.rg);
    }
    const Sym lp = make(N_ * vocab, 4, logits.rg);
    if (lp.rg) save(lp);
    logprobs_ = lp.rg ? lp.bytes() : 0;
    // Backward: nll_loss's gradient and log_softmax's input gradient, float32, beside the kept result.
    loss_transient_ = lp.rg ? 2 * lp.bytes() : 0;
  }

 private:
  int64_t B_, T_, N_;
  torch::ScalarType ct_;
  int64_t c_;
  bool cuda_;
  int64_t next_id_ = 0;
  std::set<int64_t> kept_;
  int64_t saved_ = 0, transient_ = 0, loss_transient_ = 0, logprobs_ = 0;
};

}  // namespace

ActivationBreakdown estimate_activations(Transformer& model, int64_t batch, int64_t seq_len, torch::ScalarType compute,
                                         bool cuda, bool recompute) {
  ActivationBreakdown r;
  Walk w(batch, seq_len, compute, cuda);
  Sym x = w.embed(*model);
  int64_t block_transient = 0;
  for (auto& b : model->blocks) {
    if (recompute) {
      // Forward without a graph; the block keeps its input. In backward the block runs again with
      // one: its own walk, on an input that requires grad when this one did (or any block trains).
      Walk one(batch, seq_len, compute, cuda);
      Sym in = one.make(x.numel, x.elt, x.rg);
      one.block(*b, in);
      r.block_saved = std::max(r.block_saved, one.saved());
      block_transient = std::max(block_transient, one.transient());
      w.save(x);
      x = w.make(x.numel, x.elt, true);  // the output of the recompute function tracks the anchor
    } else {
      const int64_t before = w.saved();
      x = w.block(*b, x);
      r.block_saved = std::max(r.block_saved, w.saved() - before);
    }
  }
  r.blocks_saved = w.saved();
  w.head(*model, x);
  r.head_saved = w.saved() - r.blocks_saved;
  r.loss_transient = w.loss_transient();
  r.block_transient = std::max(w.transient(), block_transient);
  // At the loss: everything kept plus the loss's gradients. In the last block's backward (the
  // log-probabilities are gone by then): everything kept, plus (recompute) that block's activations
  // made again, plus the block's backward buffers.
  const int64_t at_loss = r.blocks_saved + r.head_saved + r.loss_transient;
  const int64_t in_blocks = r.blocks_saved + r.head_saved - w.logprobs() + (recompute ? r.block_saved : 0) +
                            r.block_transient;
  r.peak = std::max(at_loss, in_blocks);
  return r;
}

MemoryEstimate estimate_memory(const RunConfig& cfg_in, int dp_in) {
  RunConfig cfg = cfg_in;
  const int tp = cfg.parallel.tp, dp = std::max(1, dp_in);
  ProcessGrid grid = make_dry_run_grid(dp, tp);
  BuildOptions bo;
  bo.load_weights = false;
  bo.meta = true;
  BuiltModel b = build_model(cfg, *grid.tp_group, bo);
  MemoryEstimate e;
  const auto shards = collect_param_shards(*b.model);
  const bool zero = cfg.parallel.zero > 0;
  for (const auto& item : b.model->named_parameters()) {
    const torch::Tensor& p = item.value();
    const int64_t bytes = p.numel() * static_cast<int64_t>(p.element_size());
    if (!p.requires_grad()) {
      e.frozen_bytes += bytes;
      continue;
    }
    e.trainable_bytes += bytes;
    e.grad_bytes += bytes;
    // ZeRO-1 shards over the bucket's group: dp, or every rank for the replicated LoRA factors
    // whose TP-partial gradients are summed with the DP average (dist/grad_sync.h).
    auto sh = shards.find(item.key());
    const int64_t group = sh != shards.end() && sh->second.partial_grad ? int64_t{dp} * tp : dp;
    const int64_t state = zero ? (p.numel() + group - 1) / group : p.numel();
    if (zero) e.grad_bytes += state * 4;  // the reduced shard beside the flat gradient
    e.optimizer_bytes += 2 * state * 4;
  }
  const torch::ScalarType compute = compute_type(cfg.model.dtype, cfg.train.device);
  const bool cuda = cfg.train.device == Device::Cuda, recompute = cfg.train.recompute == Recompute::Layer;
  const ActivationBreakdown keep =
      estimate_activations(b.model, cfg.train.micro_batch, cfg.train.seq_len, compute, cuda, false);
  const ActivationBreakdown again =
      estimate_activations(b.model, cfg.train.micro_batch, cfg.train.seq_len, compute, cuda, true);
  e.activations = recompute ? again : keep;
  e.activations_keep = keep;
  e.activations_recompute = again;
  e.activation_bytes = e.activations.peak;
  e.activation_bytes_keep = keep.peak;
  e.activation_bytes_recompute = again.peak;
  e.total_bytes = e.frozen_bytes + e.trainable_bytes + e.grad_bytes + e.optimizer_bytes + e.activation_bytes;
  e.dtype = enum_name(cfg.model.dtype);
  e.compute = c10::toString(compute);
  const AttentionKernel k = attention_kernel();
  e.attention = k == AttentionKernel::Explicit ? "explicit" : k == AttentionKernel::Fused ? "fused" : "fused_gqa";
  e.tp = tp;
  e.dp = dp;
  e.recompute = recompute;
  e.micro_batch = cfg.train.micro_batch;
  e.seq_len = cfg.train.seq_len;
  return e;
}

Json MemoryEstimate::to_json() const {
  Json j = Json::object();
  j["frozen_bytes"] = frozen_bytes;
  j["trainable_bytes"] = trainable_bytes;
  j["grad_bytes"] = grad_bytes;
  j["optimizer_state_bytes"] = optimizer_bytes;
  j["activation_bytes"] = activation_bytes;
  j["activation_bytes_keep"] = activation_bytes_keep;
  j["activation_bytes_recompute"] = activation_bytes_recompute;
  j["total_bytes"] = total_bytes;
  j["dtype"] = dtype;
  j["compute"] = compute;
  j["attention"] = attention;
  j["tp"] = tp;
  j["dp"] = dp;
  j["recompute"] = recompute;
  j["micro_batch"] = micro_batch;
  j["seq_len"] = seq_len;
  Json a = Json::object();
  a["block_saved_bytes"] = activations.block_saved;
  a["blocks_saved_bytes"] = activations.blocks_saved;
  a["head_saved_bytes"] = activations.head_saved;
  a["loss_transient_bytes"] = activations.loss_transient;
  a["block_transient_bytes"] = activations.block_transient;
  j["activations"] = a;
  return j;
}

namespace {
// The joint batch's activation peak from its jobs' breakdowns (each at the same recompute
// setting): every job's kept block tensors, and under recompute its rows of the recomputed block,
// and the blocks' backward transients, all at once; then the head and loss of one job at a time,
// the largest. Slightly above the truth: the largest job's block transients count twice.
ActivationBreakdown joint_activations(const std::vector<ActivationBreakdown>& jobs, bool recompute) {
  ActivationBreakdown out;
  int64_t joint = 0, head_and_loss = 0;
  for (const ActivationBreakdown& a : jobs) {
    out.block_saved += a.block_saved;
    out.blocks_saved += a.blocks_saved;
    out.block_transient += a.block_transient;
    out.head_saved = std::max(out.head_saved, a.head_saved);
    out.loss_transient = std::max(out.loss_transient, a.loss_transient);
    joint += a.blocks_saved + a.block_transient + (recompute ? a.block_saved : 0);
    head_and_loss = std::max(head_and_loss, a.peak - a.blocks_saved);
  }
  out.peak = joint + head_and_loss;
  return out;
}
}  // namespace

MemoryEstimate estimate_campaign_memory(const RunConfig& cfg, int dp) {
  MemoryEstimate total;
  std::vector<ActivationBreakdown> keep, again;
  for (size_t j = 0; j < cfg.campaign.size(); ++j) {
    const MemoryEstimate e = estimate_memory(job_config(cfg, j), dp);
    keep.push_back(e.activations_keep);
    again.push_back(e.activations_recompute);
    if (j == 0) {
      total = e;
      total.trainable_bytes = total.grad_bytes = total.optimizer_bytes = 0;
    }
    total.trainable_bytes += e.trainable_bytes;
    total.grad_bytes += e.grad_bytes;
    total.optimizer_bytes += e.optimizer_bytes;
  }
  const ActivationBreakdown k = joint_activations(keep, false), a = joint_activations(again, true);
  total.recompute = cfg.train.recompute == Recompute::Layer;
  total.activations = total.recompute ? a : k;
  total.activations_keep = k;
  total.activations_recompute = a;
  total.activation_bytes = total.activations.peak;
  total.activation_bytes_keep = k.peak;
  total.activation_bytes_recompute = a.peak;
  total.total_bytes =
      total.frozen_bytes + total.trainable_bytes + total.grad_bytes + total.optimizer_bytes + total.activation_bytes;
  return total;
}

void check_fits_memory(const RunConfig& cfg, int dp) {
  if (cfg.train.device != Device::Cpu) return;
  const int64_t machine = machine_memory_bytes();
  if (machine <= 0) return;
  const MemoryEstimate e = cfg.campaign.empty() ? estimate_memory(cfg, dp) : estimate_campaign_memory(cfg, dp);
  const int64_t ranks = std::max(1, local_size());
  if (e.total_bytes * ranks <= machine) return;
  const auto gib = [](int64_t b) { return static_cast<double>(b) / (1024.0 * 1024.0 * 1024.0); };
  char msg[768];
  const int64_t fixed = e.total_bytes - e.activation_bytes;
  if (fixed * ranks > machine) {
    // The weights and optimizer state alone do not fit: no micro batch would, so name the model.
    const ModelConfig& m = cfg.model;
    std::snprintf(msg, sizeof msg,
                  "model: %lld layers, d_model %lld, d_ff %lld, vocab %lld needs about %.1f GiB per rank before any "
                  "activation (frozen weights %.1f GiB in %s at tp %d, trainable, gradients and optimizer %.1f GiB; "
                  "deltashard inspect --memory) x %lld ranks on this node, above this machine's %.1f GiB; use "
                  "model.dtype: bf16, a larger parallel.tp, or a smaller model",
                  static_cast<long long>(m.n_layer), static_cast<long long>(m.d_model), static_cast<long long>(m.d_ff),
                  static_cast<long long>(m.vocab_size), gib(fixed), gib(e.frozen_bytes), e.dtype.c_str(), e.tp,
                  gib(fixed - e.frozen_bytes), static_cast<long long>(ranks), gib(machine));
    throw ConfigError(msg);
  }
  if (!cfg.campaign.empty()) {
    std::snprintf(msg, sizeof msg,
                  "campaign: %zu jobs need about %.1f GiB per rank (activations of the joint batch %.1f GiB, weights and "
                  "optimizers %.1f GiB; deltashard inspect --memory on a job's config gives one job's) x %lld ranks on "
                  "this node, above this machine's %.1f GiB; run fewer jobs or lower their train.micro_batch",
                  cfg.campaign.size(), gib(e.total_bytes), gib(e.activation_bytes), gib(fixed),
                  static_cast<long long>(ranks), gib(machine));
    throw ConfigError(msg);
  }
  std::snprintf(msg, sizeof msg,
                "train.micro_batch: %lld needs about %.1f GiB per rank (activations %.1f GiB, weights and optimizer "
                "%.1f GiB; deltashard inspect --memory) x %lld ranks on this node, above this machine's %.1f GiB; "
                "lower train.micro_batch%s",
                static_cast<long long>(cfg.train.micro_batch), gib(e.total_bytes), gib(e.activation_bytes),
                gib(fixed), static_cast<long long>(ranks), gib(machine),
                e.recompute ? "" : " or set train.recompute: layer");
  throw ConfigError(msg);
}

}  // namespace ds
