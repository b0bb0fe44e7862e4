// AdamW over flat shards of the trainable parameters (the pieces GradSync hands out), so the
// optimizer state exists only for what this rank updates: trainable parameters, and under ZeRO-1
// only this rank's slice of them. Plus the warmup + cosine learning-rate schedule.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "dist/grad_sync.h"

namespace ds {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

class FlatAdamW {
 public:
  FlatAdamW(const std::vector<OptimShard>& shards, AdamWOptions options);
  // Decoupled weight decay on shards marked decay (matrices; not biases or norms).
  void step(std::vector<OptimShard>& shards, double lr);
  int64_t steps() const { return t_; }
  void set_steps(int64_t t) { t_ = t; }
  int64_t state_bytes() const;

  std::vector<torch::Tensor> m, v;  // one per shard

 private:
  AdamWOptions o_;
  int64_t t_ = 0;
};

// Linear warmup to `lr` over `warmup` steps, then cosine down to lr·min_ratio at `total`.
double lr_at(int64_t step, int64_t total, int64_t warmup, double lr, double min_ratio);

}  // namespace ds
