#include "core/multi_lora.h"

#include <stdexcept>

namespace ds {

MultiLoraImpl::MultiLoraImpl(LinearOptions layer, torch::Device device, std::shared_ptr<JobRows> rows)
    : layer_(std::move(layer)), device_(device), rows_(std::move(rows)) {}

void MultiLoraImpl::add_job(size_t job, const LoraOptions& lora) {
  if (has_job(job)) throw std::logic_error(layer_.spec.name + ": job " + std::to_string(job) + " already has LoRA");
  if (lora.r <= 0) throw std::invalid_argument(layer_.spec.name + ": LoRA rank must be positive");
  if (pairs_.size() <= job) pairs_.resize(job + 1);
  auto [A, B] = draw_lora_factors(layer_, lora, device_);
  // A module per job keeps the parameter names of a run alone after its "jobN." prefix.
  auto holder = register_module("job" + std::to_string(job), std::make_shared<torch::nn::Module>());
  Pair& p = pairs_[job];
  p.A = holder->register_parameter("lora_A", A);
  p.B = holder->register_parameter("lora_B", B);
  p.scale = lora_scale(lora);
  p.dropout = lora.dropout;
}

torch::Tensor dropout_from(const torch::Tensor& x, double p, const at::Generator& gen) {
  torch::Tensor noise = at::empty_like(x, at::MemoryFormat::Contiguous);
  noise.bernoulli_(1 - p, gen);
  noise.div_(1 - p);
  return x * noise;
}

namespace {
// Job j's own sequence length in a batch of length T (T when none is recorded).
int64_t own_length(const JobRows& r, size_t j, int64_t T) {
  return j < r.length.size() && r.length[j] > 0 ? r.length[j] : T;
}

// x [n, T, in] cut to its first `len` positions, as contiguous as x: the run alone's input, so torch
// takes the same path (addmm, or matmul + add).
torch::Tensor cut_to(const torch::Tensor& x, int64_t len) {
  torch::Tensor c = len < x.size(1) ? x.narrow(1, 0, len) : x;
  return x.is_contiguous() ? c.contiguous() : c;
}

// y [n, len, out] with zeros appended to T positions (padding no real token reads).
torch::Tensor pad_to(const torch::Tensor& y, int64_t T) {
  if (y.size(1) == T) return y;
  return torch::cat({y, torch::zeros({y.size(0), T - y.size(1), y.size(2)}, y.options())}, 1);
}
}  // namespace

torch::Tensor MultiLoraImpl::delta(size_t job, const torch::Tensor& x_rows) {
  const Pair& p = pairs_[job];
  const int64_t T = x_rows.size(1);
  const int64_t len = own_length(*rows_, job, T);
  // With per-job products the LoRA branch gets its run alone's shape too (the job's own length),
  // for the same reason as base().
  const bool cut = rows_->per_job_products && rows_->only < 0 && len < T;
  const torch::Tensor x = cut ? cut_to(x_rows, len) : x_rows;
  torch::Tensor xa = x;
  if (p.dropout > 0 && is_training()) {
    const auto& gens = rows_->dropout;
    if (job < gens.size() && gens[job].defined()) {
      // Positions past the job's own length are padding: no real token sees them, so they need no
      // mask, and the masks keep the shape of the run alone's.
      xa = len < x.size(1) ? torch::cat({dropout_from(x.narrow(1, 0, len), p.dropout, gens[job]),
                                         x.narrow(1, len, x.size(1) - len)}, 1)
                           : dropout_from(x, p.dropout, gens[job]);
    } else {
      xa = torch::dropout(x, p.dropout, true);
    }
  }
  // The same operations, in the same order, as LinearImpl's own LoRA branch.
  xa = torch::nn::functional::linear(xa, p.A.to(x.dtype()));
  return pad_to(p.scale * torch::nn::functional::linear(xa, p.B.to(x.dtype())), T);
}

torch::Tensor MultiLoraImpl::forward(const torch::Tensor& x) {
  const JobRows& r = *rows_;
  if (r.only >= 0) {
    const auto j = static_cast<size_t>(r.only);
    return has_job(j) ? delta(j, x) : torch::Tensor();
  }
  // A layer no job of this batch targets (under per-job products every layer has a MultiLora)
  // adds nothing: no zero rows are made for it.
  bool any = false;
  for (size_t j = 0; j < r.rows.size(); ++j) any = any || (r.rows[j] > 0 && has_job(j));
  if (!any) return {};
  const int64_t out_l = layer_.spec.out / (layer_.shard.split == Split::Rows ? layer_.shard.size : 1);
  std::vector<torch::Tensor> parts;
  int64_t off = 0;
  for (size_t j = 0; j < r.rows.size(); ++j) {
    const int64_t n = r.rows[j];
    if (n == 0) continue;
    const torch::Tensor xj = x.narrow(0, off, n);
    if (has_job(j)) {
      parts.push_back(delta(j, xj));
    } else {
      std::vector<int64_t> shape = xj.sizes().vec();
      shape.back() = out_l;
      parts.push_back(torch::zeros(shape, x.options()));
    }
    off += n;
  }
  if (off != x.size(0)) {
    throw std::logic_error(layer_.spec.name + ": the jobs' rows (" + std::to_string(off) + ") are not the batch's " +
                           std::to_string(x.size(0)));
  }
  return parts.size() == 1 ? parts[0] : torch::cat(parts, 0);
}

torch::Tensor MultiLoraImpl::base(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  const JobRows& r = *rows_;
  if (!r.per_job_products || r.only >= 0) return torch::nn::functional::linear(x, w, b);
  if (x.dim() != 3) throw std::logic_error(layer_.spec.name + ": per-job products need [batch, time, features]");
  // One split, so the backward assembles x's gradient once rather than summing a full-size one per job.
  const std::vector<torch::Tensor> xs = x.split_with_sizes(r.rows, 0);
  std::vector<torch::Tensor> parts;
  for (size_t j = 0; j < xs.size(); ++j) {
    if (r.rows[j] == 0) continue;
    const int64_t T = x.size(1);
    parts.push_back(pad_to(torch::nn::functional::linear(cut_to(xs[j], own_length(r, j, T)), w, b), T));
  }
  return parts.size() == 1 ? parts[0] : torch::cat(parts, 0);
}

std::map<std::string, ParamShard> MultiLoraImpl::param_shards() const {
  std::map<std::string, ParamShard> out;
  const auto [a, b] = lora_shards(layer_.shard);
  for (size_t j = 0; j < pairs_.size(); ++j) {
    if (!has_job(j)) continue;
    out["job" + std::to_string(j) + ".lora_A"] = a;
    out["job" + std::to_string(j) + ".lora_B"] = b;
  }
  return out;
}

MultiLoraImpl& multi_lora_of(LinearImpl& layer, const std::shared_ptr<JobRows>& rows) {
  if (!layer.multi_lora) {
    layer.multi_lora = layer.register_module(
        "multi_lora", std::make_shared<MultiLoraImpl>(layer.options(), layer.weight.device(), rows));
  }
  return *layer.multi_lora;
}

std::optional<std::pair<size_t, std::string>> job_param(const std::string& name) {
  static const std::string mark = ".multi_lora.job";
  const auto at = name.find(mark);
  if (at == std::string::npos) return std::nullopt;
  const auto dot = name.find('.', at + mark.size());
  if (dot == std::string::npos) return std::nullopt;
  const std::string digits = name.substr(at + mark.size(), dot - at - mark.size());
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  return std::make_pair(static_cast<size_t>(std::stoul(digits)), name.substr(0, at) + name.substr(dot));
}

}  // namespace ds
