#include "dist/grad_sync.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>

namespace ds {

namespace {
struct ReadyHook : torch::autograd::FunctionPostHook {
  explicit ReadyHook(std::function<void()> fn) : fn_(std::move(fn)) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list&) override {
    fn_();
    return outputs;
  }
  std::function<void()> fn_;
};
}  // namespace

GradSync::GradSync(const std::vector<std::pair<std::string, torch::Tensor>>& trainable,
                   const std::map<std::string, ParamShard>& shards, ProcessGrid& grid, GradSyncOptions options)
    : grid_(grid), options_(options) {
  const int64_t cap = std::max<int64_t>(1, static_cast<int64_t>(options_.bucket_mb * 1024 * 1024 / 4));
  // Reverse model order: backward produces the last layers' gradients first.
  std::map<std::tuple<BucketGroup, bool, bool>, size_t> open;
  std::vector<std::vector<std::pair<std::string, torch::Tensor>>> members;
  for (auto it = trainable.rbegin(); it != trainable.rend(); ++it) {
    const auto& [name, p] = *it;
    auto sh = shards.find(name);
    const bool partial = sh != shards.end() && sh->second.partial_grad;
    const bool unique = sh != shards.end() && sh->second.dim >= 0;
    const auto key = std::make_tuple(partial ? BucketGroup::World : BucketGroup::Dp, p.dim() >= 2, unique || partial);
    auto o = open.find(key);
    if (o == open.end() || buckets_[o->second].numel + p.numel() > cap) {
      GradBucket b;
      b.group = std::get<0>(key);
      b.decay = std::get<1>(key);
      b.tp_unique = std::get<2>(key);
      buckets_.push_back(std::move(b));
      members.emplace_back();
      open[key] = buckets_.size() - 1;
      o = open.find(key);
    }
    buckets_[o->second].numel += p.numel();
    members[o->second].emplace_back(name, p);
  }
  for (size_t i = 0; i < buckets_.size(); ++i) {
    GradBucket& b = buckets_[i];
    const int64_t g = comm_of(b).size();
    b.padded = (b.numel + g - 1) / g * g;
    const auto opts = members[i].front().second.options().requires_grad(false);
    b.flat_param = torch::zeros({b.padded}, opts);
    b.flat_grad = torch::zeros({b.padded}, opts);
    if (options_.zero) b.shard_grad = torch::zeros({b.padded / g}, opts);
    int64_t off = 0;
    for (auto& [name, p] : members[i]) {
      torch::NoGradGuard no_grad;
      b.flat_param.narrow(0, off, p.numel()).copy_(p.detach().reshape({-1}));
      p.set_data(b.flat_param.narrow(0, off, p.numel()).view(p.sizes()));
      p.mutable_grad() = b.flat_grad.narrow(0, off, p.numel()).view(p.sizes());
      b.names.push_back(name);
      b.params.push_back(p);
      b.offsets.push_back(off);
      off += p.numel();
      auto acc = torch::autograd::impl::grad_accumulator(p);
      acc->add_post_hook(std::make_unique<ReadyHook>([this, i] { on_ready(i); }));
      accumulators_.push_back(acc);
    }
  }
}

GradSync::~GradSync() = default;

Communicator& GradSync::comm_of(const GradBucket& b) const {
  return b.group == BucketGroup::World ? *grid_.world : *grid_.dp_group;
}

int64_t GradSync::shard_size(const GradBucket& b) const {
  return options_.zero ? b.padded / comm_of(b).size() : b.padded;
}

int64_t GradSync::shard_begin(const GradBucket& b) const {
  return options_.zero ? comm_of(b).rank() * shard_size(b) : 0;
}

int64_t GradSync::trainable_numel() const {
  int64_t n = 0;
  for (const auto& b : buckets_) n += b.numel;
  return n;
}

void GradSync::zero_grad() {
  for (auto& b : buckets_) {
    b.flat_grad.zero_();
    b.ready = 0;
    b.launched = false;
  }
  armed_ = false;
  next_launch_ = 0;
}

void GradSync::arm_overlap() {
  armed_ = options_.overlap;
  for (auto& b : buckets_) b.ready = 0;
}

void GradSync::on_ready(size_t i) {
  if (!armed_) return;
  GradBucket& b = buckets_[i];
  if (++b.ready < static_cast<int>(b.params.size())) {
    for (auto& bb : buckets_) {
      if (bb.launched) comm_of(bb).progress();
    }
    return;
  }
  // Launch in bucket order so every rank issues the same sequence of collectives.
  while (next_launch_ < buckets_.size() &&
         buckets_[next_launch_].ready >= static_cast<int>(buckets_[next_launch_].params.size())) {
    launch(next_launch_++);
  }
}

void GradSync::launch(size_t i) {
  GradBucket& b = buckets_[i];
  if (b.launched) return;
  b.launched = true;
  Communicator& c = comm_of(b);
  // world buckets: the TP partial sums and the DP average in one collective (sum, then / dp).
  const bool world = b.group == BucketGroup::World;
  const ReduceOp op = world ? ReduceOp::Sum : ReduceOp::Avg;
  const std::string tag = world ? "world.lora_partial_grads" : "dp.grads";
  if (options_.zero) {
    b.work = c.reduce_scatter_async(b.flat_grad, b.shard_grad, op, tag);
  } else {
    b.work = c.all_reduce_async(b.flat_grad, op, tag);
  }
}

void GradSync::sync() {
  while (next_launch_ < buckets_.size()) launch(next_launch_++);
  for (auto& b : buckets_) {
    b.work.wait();
    if (b.group == BucketGroup::World && grid_.dp > 1) (options_.zero ? b.shard_grad : b.flat_grad).div_(grid_.dp);
  }
  armed_ = false;
}

std::vector<OptimShard> GradSync::optim_shards() {
  std::vector<OptimShard> out;
  for (auto& b : buckets_) {
    torch::Tensor p = b.flat_param.narrow(0, shard_begin(b), shard_size(b));
    torch::Tensor g = options_.zero ? b.shard_grad : b.flat_grad;
    out.push_back({p, g, b.decay});
  }
  return out;
}

double GradSync::grad_norm_sq() {
  const double local = local_grad_norm_sq();
  if (grid_.world_size == 1) return local;
  torch::Tensor t = torch::full({1}, local, torch::kDouble);
  grid_.world->all_reduce(t, ReduceOp::Sum, "world.grad_norm");
  return t.item<double>();
}

double GradSync::local_grad_norm_sq() const {
  // Weight each bucket by 1 / (number of ranks holding the same elements after sync).
  double local = 0;
  for (auto& b : buckets_) {
    const torch::Tensor g = options_.zero ? b.shard_grad : b.flat_grad;
    double replicas = options_.zero ? 1 : comm_of(b).size();
    if (b.group == BucketGroup::Dp && !b.tp_unique) replicas *= grid_.tp;
    local += g.to(torch::kDouble).pow(2).sum().item<double>() / replicas;
  }
  return local;
}

double GradSync::local_grad_norm_sq(const std::set<std::string>& names) const {
  if (options_.zero) throw std::logic_error("GradSync: a part's gradient norm needs whole buckets (zero 0)");
  double local = 0;
  for (auto& b : buckets_) {
    double replicas = comm_of(b).size();
    if (b.group == BucketGroup::Dp && !b.tp_unique) replicas *= grid_.tp;
    for (size_t i = 0; i < b.names.size(); ++i) {
      if (!names.count(b.names[i])) continue;
      const torch::Tensor g = b.flat_grad.narrow(0, b.offsets[i], b.params[i].numel());
      local += g.to(torch::kDouble).pow(2).sum().item<double>() / replicas;
    }
  }
  return local;
}

void GradSync::after_step() {
  if (!options_.zero) return;
  for (auto& b : buckets_) {
    torch::Tensor piece = b.flat_param.narrow(0, shard_begin(b), shard_size(b)).clone();
    comm_of(b).all_gather(piece, b.flat_param, b.group == BucketGroup::World ? "world.lora_partial_params" : "dp.params");
  }
}

std::map<std::string, torch::Tensor> GradSync::unflatten(const std::vector<torch::Tensor>& shard_state) {
  std::map<std::string, torch::Tensor> out;
  for (size_t i = 0; i < buckets_.size(); ++i) {
    GradBucket& b = buckets_[i];
    torch::Tensor full = shard_state[i];
    if (options_.zero) {
      full = torch::empty({b.padded}, shard_state[i].options());
      comm_of(b).all_gather(shard_state[i].contiguous(), full, "checkpoint.gather_state");
    }
    for (size_t j = 0; j < b.params.size(); ++j) {
      out[b.names[j]] = full.narrow(0, b.offsets[j], b.params[j].numel()).view(b.params[j].sizes()).clone();
    }
  }
  return out;
}

std::vector<torch::Tensor> GradSync::flatten(const std::map<std::string, torch::Tensor>& per_param) {
  std::vector<torch::Tensor> out;
  for (auto& b : buckets_) {
    torch::Tensor full = torch::zeros({b.padded}, b.flat_param.options());
    for (size_t j = 0; j < b.params.size(); ++j) {
      auto it = per_param.find(b.names[j]);
      if (it == per_param.end()) throw std::runtime_error("optimizer state has no entry for '" + b.names[j] + "'");
      if (it->second.numel() != b.params[j].numel()) {
        throw std::runtime_error("optimizer state for '" + b.names[j] + "' has " + std::to_string(it->second.numel()) +
                                 " elements, the parameter " + std::to_string(b.params[j].numel()));
      }
      full.narrow(0, b.offsets[j], b.params[j].numel()).copy_(it->second.reshape({-1}));
    }
    out.push_back(full.narrow(0, shard_begin(b), shard_size(b)).clone());
  }
  return out;
}

}  // namespace ds
