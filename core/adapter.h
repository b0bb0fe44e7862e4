// Bottleneck adapter (Houlsby et al. 2019): h + W_up·f(W_down·h + b_down) + b_up.
// W_down [m, d], W_up [d, m]; 2·m·d + d + m parameters. W_up and b_up start at zero, so a new
// adapter is exactly the identity. Its projections come from the factory: sharded, the down
// projection is column-parallel and the up projection row-parallel (one all-reduce each way).
#pragma once

#include <torch/torch.h>

#include "core/linear.h"

namespace ds {

enum class Nonlinearity { Relu, Gelu };
DS_ENUM_NAMES(Nonlinearity, {Nonlinearity::Relu, "relu"}, {Nonlinearity::Gelu, "gelu"});

struct AdapterOptions {
  int64_t d_model = 0;
  int64_t size = 0;  // bottleneck m
  Nonlinearity nonlinearity = Nonlinearity::Relu;
  double init_std = 1e-2;  // W_down ~ N(0, init_std²): near zero, as in Houlsby et al.
};

struct AdapterImpl : torch::nn::Module {
  AdapterImpl(const AdapterOptions& options, const LinearFactory& factory, const std::string& name);
  torch::Tensor forward(const torch::Tensor& h);

  AdapterOptions options;
  TensorMap fanout;
  Linear down{nullptr}, up{nullptr};
};
TORCH_MODULE(Adapter);

}  // namespace ds
