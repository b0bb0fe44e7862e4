#include "trainer/adamw.h"

#include <cmath>

namespace ds {

FlatAdamW::FlatAdamW(const std::vector<OptimShard>& shards, AdamWOptions options) : o_(options) {
  for (const auto& s : shards) {
    m.push_back(torch::zeros_like(s.param, torch::kFloat));
    v.push_back(torch::zeros_like(s.param, torch::kFloat));
  }
}

int64_t FlatAdamW::state_bytes() const {
  int64_t b = 0;
  for (size_t i = 0; i < m.size(); ++i) b += (m[i].numel() + v[i].numel()) * 4;
  return b;
}

void FlatAdamW::step(std::vector<OptimShard>& shards, double lr) {
  torch::NoGradGuard no_grad;
  ++t_;
  const double bc1 = 1.0 - std::pow(o_.beta1, static_cast<double>(t_));
  const double bc2 = 1.0 - std::pow(o_.beta2, static_cast<double>(t_));
  for (size_t i = 0; i < shards.size(); ++i) {
    torch::Tensor& p = shards[i].param;
    const torch::Tensor g = shards[i].grad.to(torch::kFloat);
    if (shards[i].decay && o_.weight_decay > 0) p.mul_(1.0 - lr * o_.weight_decay);
    m[i].mul_(o_.beta1).add_(g, 1.0 - o_.beta1);
    v[i].mul_(o_.beta2).addcmul_(g, g, 1.0 - o_.beta2);
    const torch::Tensor denom = (v[i].sqrt() / std::sqrt(bc2)).add_(o_.eps);
    p.addcdiv_(m[i], denom, -lr / bc1);
  }
}

double lr_at(int64_t step, int64_t total, int64_t warmup, double lr, double min_ratio) {
  if (warmup > 0 && step < warmup) return lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  const int64_t span = std::max<int64_t>(1, total - warmup);
  const double progress = std::min(1.0, static_cast<double>(step - warmup) / static_cast<double>(span));
  const double cosine = 0.5 * (1.0 + std::cos(M_PI * progress));
  return lr * (min_ratio + (1.0 - min_ratio) * cosine);
}

}  // namespace ds
