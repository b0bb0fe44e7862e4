// The optimizer and the schedule, single process: FlatAdamW (trainer/adamw.h) against LibTorch's
// own torch::optim::AdamW step by step, and lr_at's warm-up, cosine and edge cases.
//
// The mapping checked here, read from LibTorch 1.13's torch/csrc/api/src/optim/adamw.cpp: per
// parameter group, p *= 1 - lr·weight_decay (when weight_decay != 0), m = β1·m + (1-β1)·g,
// v = β2·v + (1-β2)·g², denom = sqrt(v) / sqrt(1-β2^t) + eps, p -= lr / (1-β1^t) · m / denom.
// FlatAdamW does the same with decay only on shards marked decay (LibTorch: a group with
// weight_decay 0). Note LibTorch's AdamWOptions default weight_decay is 1e-2, not 0.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>

#include "trainer/adamw.h"
#include "trainer/loss_scaler.h"

using namespace ds;

namespace {

double rel_diff(const torch::Tensor& a, const torch::Tensor& b) {
  const double scale = b.abs().max().item<double>();
  const double diff = (a - b).abs().max().item<double>();
  return scale > 0 ? diff / scale : diff;
}

struct Case {
  double weight_decay;
  double beta1, beta2, eps;
  double grad_scale;  // small gradients make eps matter, so its placement is checked too
};

// Two tensors (a matrix with decay, a vector without), 20 steps, a new lr every step, seeded
// random gradients; FlatAdamW on flat copies, torch::optim::AdamW on the tensors themselves.
void compare_with_torch(const Case& c) {
  torch::manual_seed(123);
  const torch::Tensor w0 = torch::randn({16, 8}), b0 = torch::randn({8});
  torch::Tensor w = w0.clone().set_requires_grad(true), b = b0.clone().set_requires_grad(true);

  auto decayed = std::make_unique<torch::optim::AdamWOptions>(1e-3);
  decayed->betas(std::make_tuple(c.beta1, c.beta2)).eps(c.eps).weight_decay(c.weight_decay);
  auto plain = std::make_unique<torch::optim::AdamWOptions>(1e-3);
  plain->betas(std::make_tuple(c.beta1, c.beta2)).eps(c.eps).weight_decay(0.0);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<torch::Tensor>{w}, std::move(decayed));
  groups.emplace_back(std::vector<torch::Tensor>{b}, std::move(plain));
  torch::optim::AdamW ref(groups, torch::optim::AdamWOptions(1e-3).weight_decay(0.0));

  std::vector<OptimShard> shards{{w0.flatten().clone(), torch::zeros({w0.numel()}), true},
                                 {b0.flatten().clone(), torch::zeros({b0.numel()}), false}};
  AdamWOptions o;
  o.beta1 = c.beta1;
  o.beta2 = c.beta2;
  o.eps = c.eps;
  o.weight_decay = c.weight_decay;
  FlatAdamW opt(shards, o);

  auto gen = at::detail::createCPUGenerator(2024);
  for (int step = 0; step < 20; ++step) {
    const double lr = 1e-2 * (1.0 + 0.5 * std::sin(0.7 * step)) / (1.0 + 0.1 * step);
    const torch::Tensor gw = torch::randn({16, 8}, gen) * c.grad_scale;
    const torch::Tensor gb = torch::randn({8}, gen) * c.grad_scale;
    w.mutable_grad() = gw.clone();
    b.mutable_grad() = gb.clone();
    for (auto& g : ref.param_groups()) g.options().set_lr(lr);
    ref.step();
    shards[0].grad.copy_(gw.flatten());
    shards[1].grad.copy_(gb.flatten());
    opt.step(shards, lr);
    ASSERT_EQ(opt.steps(), step + 1);

    const double dw = rel_diff(shards[0].param, w.detach().flatten());
    const double db = rel_diff(shards[1].param, b.detach().flatten());
    EXPECT_LE(dw, 1e-6) << "matrix (decay) differs from torch::optim::AdamW at step " << step + 1;
    EXPECT_LE(db, 1e-6) << "vector (no decay) differs from torch::optim::AdamW at step " << step + 1;
  }
  // The moments too, not only their effect.
  const auto& state = ref.state();
  const auto& sw = static_cast<const torch::optim::AdamWParamState&>(*state.at(c10::guts::to_string(w.unsafeGetTensorImpl())));
  const auto& sb = static_cast<const torch::optim::AdamWParamState&>(*state.at(c10::guts::to_string(b.unsafeGetTensorImpl())));
  EXPECT_EQ(sw.step(), 20);
  EXPECT_LE(rel_diff(opt.m[0], sw.exp_avg().flatten()), 1e-6);
  EXPECT_LE(rel_diff(opt.v[0], sw.exp_avg_sq().flatten()), 1e-6);
  EXPECT_LE(rel_diff(opt.m[1], sb.exp_avg().flatten()), 1e-6);
  EXPECT_LE(rel_diff(opt.v[1], sb.exp_avg_sq().flatten()), 1e-6);
  // Something happened: the parameters moved away from their start.
  EXPECT_GT((shards[0].param - w0.flatten()).abs().max().item<double>(), 1e-4);
  EXPECT_GT((shards[1].param - b0.flatten()).abs().max().item<double>(), 1e-4);
}

}  // namespace

TEST(FlatAdamW, MatchesTorchAdamWWithWeightDecay) { compare_with_torch({0.1, 0.9, 0.999, 1e-8, 1.0}); }

TEST(FlatAdamW, MatchesTorchAdamWWithoutWeightDecay) { compare_with_torch({0.0, 0.9, 0.999, 1e-8, 1.0}); }

// Other betas, and an eps as large as the gradients: eps added after the bias-corrected root
// (torch's placement) and eps added before the correction differ by far more than 1e-6 here.
TEST(FlatAdamW, MatchesTorchAdamWWithOtherBetasAndLargeEps) {
  compare_with_torch({0.1, 0.8, 0.95, 1e-3, 1e-3});
}

// Weight decay only on shards marked decay, and decoupled: with zero gradients a decayed shard
// shrinks by exactly (1 - lr·wd) per step, an undecayed one stays.
TEST(FlatAdamW, DecayIsDecoupledAndOnlyOnMarkedShards) {
  std::vector<OptimShard> shards{{torch::full({4}, 2.0), torch::zeros({4}), true},
                                 {torch::full({4}, 2.0), torch::zeros({4}), false}};
  AdamWOptions o;
  o.weight_decay = 0.5;
  FlatAdamW opt(shards, o);
  opt.step(shards, 0.1);
  opt.step(shards, 0.2);
  const double want = 2.0 * (1 - 0.1 * 0.5) * (1 - 0.2 * 0.5);
  EXPECT_NEAR(shards[0].param[0].item<double>(), want, 1e-6);
  EXPECT_EQ(shards[1].param[0].item<double>(), 2.0);
  EXPECT_EQ(opt.state_bytes(), 4 * 4 * 4);
}

// ---------------------------------------------------------------- lr_at: warm-up, then cosine

TEST(LrSchedule, WarmupIsLinearFromLrOverWarmupToLr) {
  const double lr = 3e-3;
  const int64_t warmup = 10, total = 100;
  EXPECT_DOUBLE_EQ(lr_at(0, total, warmup, lr, 0.1), lr / warmup);
  EXPECT_DOUBLE_EQ(lr_at(warmup - 1, total, warmup, lr, 0.1), lr);
  for (int64_t s = 0; s < warmup; ++s) {
    EXPECT_DOUBLE_EQ(lr_at(s, total, warmup, lr, 0.1), lr * (s + 1) / warmup) << "step " << s;
  }
  // The first step after warm-up is the top of the cosine: lr again.
  EXPECT_DOUBLE_EQ(lr_at(warmup, total, warmup, lr, 0.1), lr);
}

TEST(LrSchedule, CosineHasItsExactValues) {
  // total 100, warmup 10: the cosine spans 90 steps; steps 40, 55 and 70 are at 1/3, 1/2 and 2/3
  // of it, where cos(pi·p) is 1/2, 0 and -1/2. lr·(r + (1-r)·(1+cos)/2) with r = 0.1:
  const double lr = 2.0, r = 0.1;
  EXPECT_NEAR(lr_at(40, 100, 10, lr, r), lr * (0.1 + 0.9 * 0.75), 1e-12);
  EXPECT_NEAR(lr_at(55, 100, 10, lr, r), lr * (0.1 + 0.9 * 0.5), 1e-12);
  EXPECT_NEAR(lr_at(70, 100, 10, lr, r), lr * (0.1 + 0.9 * 0.25), 1e-12);
  // total 4, no warm-up, r = 0: steps 0..3 at p = 0, 1/4, 1/2, 3/4; cos(pi/4) = sqrt(1/2).
  EXPECT_NEAR(lr_at(0, 4, 0, 1.0, 0.0), 1.0, 1e-15);
  EXPECT_NEAR(lr_at(1, 4, 0, 1.0, 0.0), 0.5 * (1 + M_SQRT1_2), 1e-15);
  EXPECT_NEAR(lr_at(2, 4, 0, 1.0, 0.0), 0.5, 1e-15);
  EXPECT_NEAR(lr_at(3, 4, 0, 1.0, 0.0), 0.5 * (1 - M_SQRT1_2), 1e-15);
}

TEST(LrSchedule, ReachesMinRatioAtTotalAndStaysThere) {
  const double lr = 1e-3, r = 0.05;
  EXPECT_NEAR(lr_at(100, 100, 10, lr, r), lr * r, 1e-18);
  for (int64_t s : {101, 150, 1000, 1 << 30}) EXPECT_NEAR(lr_at(s, 100, 10, lr, r), lr * r, 1e-18) << "step " << s;
  // Non-increasing after warm-up, non-decreasing during it, always within [lr·r, lr].
  double prev = 0;
  for (int64_t s = 0; s <= 120; ++s) {
    const double x = lr_at(s, 100, 10, lr, r);
    EXPECT_GE(x, lr * r * (1 - 1e-12));
    EXPECT_LE(x, lr * (1 + 1e-12));
    if (s > 0 && s < 10) EXPECT_GT(x, prev) << "step " << s;
    if (s > 10) EXPECT_LE(x, prev) << "step " << s;
    prev = x;
  }
  // min_ratio 1: constant after warm-up; 0: down to exactly 0.
  EXPECT_DOUBLE_EQ(lr_at(50, 100, 10, lr, 1.0), lr);
  EXPECT_DOUBLE_EQ(lr_at(100, 100, 10, lr, 0.0), 0.0);
}

TEST(LrSchedule, NoWarmupStartsAtLr) {
  EXPECT_DOUBLE_EQ(lr_at(0, 50, 0, 0.1, 0.1), 0.1);
  EXPECT_NEAR(lr_at(25, 50, 0, 0.1, 0.1), 0.1 * (0.1 + 0.9 * 0.5), 1e-15);
  EXPECT_NEAR(lr_at(50, 50, 0, 0.1, 0.1), 0.01, 1e-15);
}

// Warm-up as long as the run or longer: the whole run warms up linearly, every value finite and
// within (0, lr]; afterwards the schedule drops to lr·min_ratio and stays.
TEST(LrSchedule, WarmupAtLeastTotalIsFiniteAndLinear) {
  const double lr = 1e-2, r = 0.1;
  for (int64_t total : {5, 10}) {
    const int64_t warmup = 10;
    for (int64_t s = 0; s < total; ++s) {
      const double x = lr_at(s, total, warmup, lr, r);
      EXPECT_TRUE(std::isfinite(x));
      EXPECT_DOUBLE_EQ(x, lr * (s + 1) / warmup) << "total " << total << " step " << s;
    }
    for (int64_t s = total; s < 40; ++s) {
      const double x = lr_at(s, total, warmup, lr, r);
      EXPECT_TRUE(std::isfinite(x)) << "total " << total << " step " << s;
      EXPECT_GE(x, lr * r * (1 - 1e-12));
      EXPECT_LE(x, lr * (1 + 1e-12));
    }
    EXPECT_NEAR(lr_at(39, total, warmup, lr, r), lr * r, 1e-15);
  }
}

// total 0 or 1 (a run of no or one step): no division by zero, finite, within [lr·r, lr]; the
// single step of a one-step run without warm-up is at lr.
TEST(LrSchedule, TinyTotalsAreFinite) {
  const double lr = 1e-3, r = 0.1;
  for (int64_t total : {0, 1}) {
    for (int64_t warmup : {0, 1, 3}) {
      for (int64_t s = 0; s < 6; ++s) {
        const double x = lr_at(s, total, warmup, lr, r);
        EXPECT_TRUE(std::isfinite(x)) << "total " << total << " warmup " << warmup << " step " << s;
        EXPECT_GT(x, 0.0);
        EXPECT_LE(x, lr * (1 + 1e-12));
      }
    }
  }
  EXPECT_DOUBLE_EQ(lr_at(0, 1, 0, lr, r), lr);
  EXPECT_DOUBLE_EQ(lr_at(0, 0, 0, lr, r), lr);
  EXPECT_NEAR(lr_at(1, 1, 0, lr, r), lr * r, 1e-18);
  EXPECT_NEAR(lr_at(5, 0, 0, lr, r), lr * r, 1e-18);
}

// The fp16 loss scaler: an overflow skips the step and halves the scale (never below 1); growth
// after growth_interval good steps in a row; disabled, it applies every step at scale 1.
TEST(LossScaler, SkipsOnOverflowBacksOffAndGrows) {
  LossScalerOptions o;
  o.init_scale = 8.0;
  o.growth_interval = 3;
  LossScaler s = LossScaler::make(true, o);
  EXPECT_EQ(s.scale, 8.0);
  EXPECT_FALSE(s.update(false));
  EXPECT_EQ(s.scale, 4.0);
  EXPECT_EQ(s.skips, 1);
  EXPECT_TRUE(s.update(true));
  EXPECT_TRUE(s.update(true));
  EXPECT_EQ(s.scale, 4.0);
  EXPECT_TRUE(s.update(true));  // the third good step in a row
  EXPECT_EQ(s.scale, 8.0);
  EXPECT_EQ(s.good_steps, 0);
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(s.update(false));
  EXPECT_EQ(s.scale, 1.0);
  EXPECT_EQ(s.skips, 11);
  EXPECT_DOUBLE_EQ(s.inverse(), 1.0);
  LossScaler off = LossScaler::make(false, o);
  EXPECT_TRUE(off.update(false));
  EXPECT_EQ(off.scale, 1.0);
  EXPECT_EQ(off.skips, 0);
}
