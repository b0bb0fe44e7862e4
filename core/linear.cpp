#include "core/linear.h"

#include <cmath>
#include <stdexcept>

#include "core/multi_lora.h"

namespace ds {

namespace {
void check_divides(int64_t n, int64_t parts, const std::string& what, const std::string& name) {
  if (n % parts != 0) {
    throw std::invalid_argument(name + ": " + what + " " + std::to_string(n) +
                                " is not divisible by the tensor-parallel size " +
                                std::to_string(parts));
  }
}
}  // namespace

LinearImpl::LinearImpl(LinearOptions options) : options_(std::move(options)) {
  const auto& s = options_.spec;
  const auto& sh = options_.shard;
  if (sh.split == Split::Rows) check_divides(s.out, sh.size, "output width", s.name);
  if (sh.split == Split::Cols) check_divides(s.in, sh.size, "input width", s.name);

  // Initialise the full weight and keep this rank's slice, so that every TP size draws the same
  // numbers from the same seed and sharded runs can be compared with unsharded ones.
  const int64_t wdim = sh.split == Split::Rows ? 0 : 1;
  weight = register_parameter(
      "weight", make_param({s.out, s.in}, s.init_std, options_.params, [&](const torch::Tensor& t) { return local_slice(t, wdim); }));
  if (s.bias) {
    bias = register_parameter("bias", make_param({s.out}, 0.0, options_.params, [&](const torch::Tensor& t) {
                                return sh.split == Split::Rows ? local_slice(t, 0) : t;
                              }));
  }
}

torch::Tensor make_param(const std::vector<int64_t>& shape, double std, const ParamOptions& p,
                         const std::function<torch::Tensor(const torch::Tensor&)>& slice) {
  torch::NoGradGuard no_grad;
  if (!p.random_init) {
    const torch::Tensor probe = torch::empty(shape, torch::TensorOptions().device(torch::kMeta));
    return torch::empty((slice ? slice(probe) : probe).sizes(), p.options);
  }
  torch::Tensor full = torch::empty(shape, p.options.dtype(torch::kFloat));
  if (std > 0) {
    full.normal_(0.0, std);
  } else {
    full.zero_();
  }
  return (slice ? slice(full) : full).to(p.options.dtype().toScalarType()).clone();
}

torch::Tensor LinearImpl::local_slice(const torch::Tensor& full, int64_t dim) const {
  const auto& sh = options_.shard;
  if (sh.split == Split::None || sh.size == 1) return full;
  const int64_t n = full.size(dim) / sh.size;
  return full.narrow(dim, sh.rank * n, n);
}

std::pair<torch::Tensor, torch::Tensor> draw_lora_factors(const LinearOptions& layer, const LoraOptions& lora,
                                                          torch::Device device) {
  const auto& s = layer.spec;
  const auto& sh = layer.shard;
  torch::NoGradGuard no_grad;
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat).device(device);
  torch::Tensor A = torch::empty({lora.r, s.in}, f32);
  if (lora.init == LoraInit::Gaussian) {
    A.normal_(0.0, 1.0 / static_cast<double>(lora.r));
  } else {
    // kaiming_uniform(a=sqrt(5)) as nn.Linear and PEFT use: bound = 1/sqrt(fan_in).
    const double bound = 1.0 / std::sqrt(static_cast<double>(s.in));
    A.uniform_(-bound, bound);
  }
  torch::Tensor B = torch::zeros({s.out, lora.r}, f32);
  const auto [a, b] = lora_shards(sh);
  return {a.dim >= 0 ? local_shard(A, a).clone() : A, b.dim >= 0 ? local_shard(B, b).clone() : B};
}

double lora_scale(const LoraOptions& lora) {
  return lora.use_rslora ? lora.alpha / std::sqrt(static_cast<double>(lora.r)) : lora.alpha / static_cast<double>(lora.r);
}

std::pair<ParamShard, ParamShard> lora_shards(const ShardSpec& sh) {
  if (sh.split == Split::None || sh.size == 1) return {ParamShard{}, ParamShard{}};
  if (sh.split == Split::Rows) return {ParamShard{-1, sh.rank, sh.size, true}, ParamShard{0, sh.rank, sh.size, false}};
  return {ParamShard{1, sh.rank, sh.size, false}, ParamShard{-1, sh.rank, sh.size, true}};
}

void LinearImpl::add_lora(const LoraOptions& lora) {
  if (has_lora()) throw std::logic_error(options_.spec.name + ": LoRA already added");
  if (lora.r <= 0) throw std::invalid_argument(options_.spec.name + ": LoRA rank must be positive");
  lora_ = lora;
  auto [A, B] = draw_lora_factors(options_, lora, weight.device());
  lora_A = register_parameter("lora_A", A);
  lora_B = register_parameter("lora_B", B);
  scale_ = ds::lora_scale(lora);
  if (lora.dropout > 0) {
    drop_ = register_module("lora_dropout", torch::nn::Dropout(lora.dropout));
  }
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  const bool row_parallel = options_.shard.split == Split::Cols;
  const auto t = x.scalar_type();
  const torch::Tensor b = row_parallel || !bias.defined() ? torch::Tensor() : bias.to(t);
  torch::Tensor y = multi_lora ? multi_lora->base(x, weight.to(t), b) : torch::nn::functional::linear(x, weight.to(t), b);
  if (has_lora() && !merged_) {
    torch::Tensor xa = drop_ ? drop_->forward(x) : x;
    // (x·Aᵀ)·Bᵀ costs r·(in+out) per token instead of materialising B·A.
    xa = torch::nn::functional::linear(xa, lora_A.to(x.dtype()));
    y = y + scale_ * torch::nn::functional::linear(xa, lora_B.to(x.dtype()));
  }
  if (multi_lora) {
    const torch::Tensor d = multi_lora->forward(x);
    if (d.defined()) y = y + d;
  }
  if (options_.reduce_partial) y = options_.reduce_partial(y);
  if (row_parallel && bias.defined()) y = y + bias.to(t);
  return y;
}

void LinearImpl::merge() {
  if (!has_lora()) throw std::logic_error(options_.spec.name + ": no LoRA to merge");
  if (merged_) return;
  torch::NoGradGuard no_grad;
  weight.add_((lora_B.to(torch::kFloat) .matmul(lora_A.to(torch::kFloat)) * scale_).to(weight.dtype()));
  merged_ = true;
}

void LinearImpl::unmerge() {
  if (!has_lora()) throw std::logic_error(options_.spec.name + ": no LoRA to unmerge");
  if (!merged_) return;
  torch::NoGradGuard no_grad;
  weight.sub_((lora_B.to(torch::kFloat).matmul(lora_A.to(torch::kFloat)) * scale_).to(weight.dtype()));
  merged_ = false;
}

std::map<std::string, ParamShard> LinearImpl::param_shards() const {
  const auto& sh = options_.shard;
  std::map<std::string, ParamShard> out;
  if (sh.split == Split::None || sh.size == 1) return out;
  const bool rows = sh.split == Split::Rows;
  out["weight"] = ParamShard{rows ? 0 : 1, sh.rank, sh.size, false};
  if (bias.defined() && rows) out["bias"] = ParamShard{0, sh.rank, sh.size, false};
  if (has_lora()) std::tie(out["lora_A"], out["lora_B"]) = lora_shards(sh);
  if (multi_lora) {
    for (const auto& [name, shard] : multi_lora->param_shards()) out["multi_lora." + name] = shard;
  }
  return out;
}

LinearFactory dense_factory(const ParamOptions& params) {
  LinearFactory f;
  f.params = params;
  f.linear = [params](const LinearSpec& spec) {
    LinearOptions o;
    o.spec = spec;
    o.params = params;
    return Linear(o);
  };
  f.fanout = [](const std::string&) -> TensorMap { return [](const torch::Tensor& x) { return x; }; };
  f.tp_size = 1;
  return f;
}

torch::Tensor local_shard(const torch::Tensor& full, const ParamShard& shard) {
  if (shard.dim < 0 || shard.size == 1) return full;
  const int64_t n = full.size(shard.dim) / shard.size;
  return full.narrow(shard.dim, shard.rank * n, n);
}

std::vector<int64_t> full_shape(const torch::Tensor& local, const ParamShard& shard) {
  std::vector<int64_t> s = local.sizes().vec();
  if (shard.dim >= 0) s[shard.dim] *= shard.size;
  return s;
}

std::map<std::string, ParamShard> collect_param_shards(torch::nn::Module& module) {
  std::map<std::string, ParamShard> out;
  for (const auto& item : module.named_modules()) {
    auto* lin = dynamic_cast<LinearImpl*>(item.value().get());
    if (!lin) continue;
    for (const auto& kv : lin->param_shards()) {
      out[item.key().empty() ? kv.first : item.key() + "." + kv.first] = kv.second;
    }
  }
  return out;
}

}  // namespace ds
