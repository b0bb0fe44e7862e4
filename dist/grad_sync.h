// Data-parallel gradient synchronisation of the trainable parameters only. Trainable parameters
// are laid out in flat buckets (their data and .grad become views into two flat buffers), in a
// fixed order on every rank; one averaged collective per bucket per optimizer step:
//   zero 0: all_reduce(avg) of each bucket over its group; every rank updates the whole bucket.
//   zero 1: reduce_scatter(avg) into this rank's shard, the optimizer updates only the shard with
//           its shard of the state, then all_gather of the parameters (same wire bytes).
// Buckets are homogeneous: a replicated LoRA factor whose gradient is a partial sum over TP goes
// in a "world" bucket (sum over every rank, divided by dp: the TP sum and the DP average in one
// collective); everything else in a "dp" bucket. With overlap, a bucket's collective starts from
// the gradient-accumulator hooks as soon as its last gradient is ready, in bucket order.
#pragma once

#include <torch/torch.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/linear.h"
#include "dist/communicator.h"
#include "dist/process_grid.h"

namespace ds {

struct GradSyncOptions {
  double bucket_mb = 25;
  bool overlap = false;
  int zero = 0;
};

// Which communicator a bucket is averaged over: its DP group, or every rank (replicated LoRA factors
// whose gradients are partial sums over TP: the TP sum and the DP average in one collective).
enum class BucketGroup { Dp, World };

struct GradBucket {
  BucketGroup group = BucketGroup::Dp;
  bool decay = false;
  bool tp_unique = true;  // elements differ across TP ranks (a shard) rather than being copies
  std::vector<std::string> names;
  std::vector<torch::Tensor> params;
  std::vector<int64_t> offsets;
  int64_t numel = 0;    // payload
  int64_t padded = 0;   // multiple of the group size (ZeRO shards)
  torch::Tensor flat_param, flat_grad;
  torch::Tensor shard_grad;  // zero 1: this rank's reduced shard
  int ready = 0;
  bool launched = false;
  Work work;
};

// What the optimizer updates: this rank's piece of one bucket.
struct OptimShard {
  torch::Tensor param, grad;
  bool decay;
};

class GradSync {
 public:
  // `trainable` in model order; `shards` from collect_param_shards().
  GradSync(const std::vector<std::pair<std::string, torch::Tensor>>& trainable,
           const std::map<std::string, ParamShard>& shards, ProcessGrid& grid, GradSyncOptions options);
  ~GradSync();

  void zero_grad();
  // Call before the backward pass of the last micro-batch of a step: with overlap, buckets launch
  // from hooks during that backward pass; earlier micro-batches only accumulate.
  void arm_overlap();
  // After the last backward: launches what has not been launched and waits for all of it.
  void sync();
  std::vector<OptimShard> optim_shards();
  // Global squared norm of the synchronised gradient, each distinct element counted once.
  double grad_norm_sq();
  // This rank's share of grad_norm_sq: summed over the world ranks it gives the whole.
  double local_grad_norm_sq() const;
  // The same for the named parameters only (zero 0: every rank holds whole buckets): one part of
  // the trainable set, such as one job of a campaign.
  double local_grad_norm_sq(const std::set<std::string>& names) const;
  // zero 1: all-gathers the updated parameter shards. No-op for zero 0.
  void after_step();

  // Optimizer state (one tensor per bucket shard) to and from per-parameter tensors of this TP
  // rank's (unsharded over DP) shape, so a checkpoint does not depend on the DP size.
  std::map<std::string, torch::Tensor> unflatten(const std::vector<torch::Tensor>& shard_state);
  std::vector<torch::Tensor> flatten(const std::map<std::string, torch::Tensor>& per_param);

  const std::vector<GradBucket>& buckets() const { return buckets_; }
  int64_t trainable_numel() const;
  int zero() const { return options_.zero; }

 private:
  Communicator& comm_of(const GradBucket& b) const;
  void launch(size_t i);
  void on_ready(size_t i);
  int64_t shard_begin(const GradBucket& b) const;
  int64_t shard_size(const GradBucket& b) const;

  ProcessGrid& grid_;
  GradSyncOptions options_;
  std::vector<GradBucket> buckets_;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;
  bool armed_ = false;
  size_t next_launch_ = 0;
};

}  // namespace ds
