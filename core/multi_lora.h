// A campaign's LoRA on one frozen linear layer: one (A, B) pair per job, each applied only to its
// job's rows of the batch, so all jobs train on one forward of the shared base; and, with per-job
// products, the frozen product split by job. The model does not know: it hangs off the layers
// (LinearImpl::multi_lora) the jobs' targets name, or off every block layer for per-job products.
#pragma once

#include <torch/torch.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/linear.h"

namespace ds {

// Which rows of the current batch belong to which job: one object shared by every MultiLora layer
// of a model, set by the campaign before each forward.
struct JobRows {
  std::vector<int64_t> rows;  // per job, in batch order (0: the job is not in this batch)
  // Per job: its own sequence length before the batch was padded to the longest (0 or absent: the
  // batch's), so its dropout masks, and with per-job products its products, have the shapes they
  // have in a run alone.
  std::vector<int64_t> length;
  int64_t only = -1;          // >= 0: every row is this job's (evaluation, generation)
  // The frozen products once per job on its own rows and length (MultiLoraImpl::base), instead of
  // once on the whole batch.
  bool per_job_products = false;
  // Per job: the stream its dropout masks come from (empty or undefined: the global generator).
  std::vector<at::Generator> dropout;
};

// Layout per job j (local shapes, as LinearImpl's lora_A/lora_B): A_j [r_j, in_l], B_j [out_l, r_j];
// on a column-parallel layer A_j is whole and B_j split by rows like W, on a row-parallel one A_j is
// split by columns and B_j whole. Math, for the rows R_j of job j (consecutive, in job order):
//   delta[R_j] = s_j·(drop_j(x[R_j])·A_jᵀ)·B_jᵀ,  s_j = alpha_j/r_j (alpha_j/√r_j with rsLoRA),
// and 0 on the rows of a job with no pair here. The layer adds delta to x·Wᵀ before its reduction:
// y = x·Wᵀ + Σ_j rows_j[...], with x·Wᵀ one product for the whole batch or one per job (base()).
// Every row depends only on its own job's pair, so one backward of the blocks, from the sum of the
// jobs' loss gradients, gives each job its own gradient.
struct MultiLoraImpl : torch::nn::Module {
  MultiLoraImpl(LinearOptions layer, torch::Device device, std::shared_ptr<JobRows> rows);

  // Job `job`'s pair, drawn from the global generator exactly as LinearImpl::add_lora draws it.
  void add_job(size_t job, const LoraOptions& lora);
  bool has_job(size_t job) const { return job < pairs_.size() && pairs_[job].A.defined(); }
  const torch::Tensor& lora_A(size_t job) const { return pairs_.at(job).A; }
  const torch::Tensor& lora_B(size_t job) const { return pairs_.at(job).B; }

  // [..., out_l], or undefined when no job of the batch has a pair here.
  torch::Tensor forward(const torch::Tensor& x);

  // The layer's frozen product x·Wᵀ + b (w and b in x's type): one product on the whole batch, or,
  // with rows.per_job_products, one per job on x[R_j] cut to the job's own length, the shape of its
  // run alone, with zeros at the padding past that length (no real token reads a later position).
  torch::Tensor base(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b);

  // Parameter name as registered here ("job3.lora_A") -> its place in the full tensor.
  std::map<std::string, ParamShard> param_shards() const;

 private:
  struct Pair {
    torch::Tensor A, B;
    double scale = 0;
    double dropout = 0;
  };
  // s·(drop(x)·Aᵀ)·Bᵀ of job `job` on its rows x_rows [n, T, in_l].
  torch::Tensor delta(size_t job, const torch::Tensor& x_rows);

  LinearOptions layer_;
  torch::Device device_;
  std::shared_ptr<JobRows> rows_;
  std::vector<Pair> pairs_;
};
TORCH_MODULE(MultiLora);

// The layer's MultiLora, made and registered (as "multi_lora") on first use; a layer no job targets
// has one only for per-job products (it holds no pair).
MultiLoraImpl& multi_lora_of(LinearImpl& layer, const std::shared_ptr<JobRows>& rows);

// "blocks.0.attn.q.multi_lora.job3.lora_A" -> {3, "blocks.0.attn.q.lora_A"}: the job and the name
// the parameter has in a run of that job alone; nullopt for any other name.
std::optional<std::pair<size_t, std::string>> job_param(const std::string& name);

// at::dropout's own arithmetic on the CPU (a mask drawn as bernoulli(1 - p), divided by 1 - p, times
// x), from `gen`: with the generator seeded as a run's global one, the run's masks.
torch::Tensor dropout_from(const torch::Tensor& x, double p, const at::Generator& gen);

}  // namespace ds
