// The one linear layer every projection in the model is: a frozen base y = x·Wᵀ + b, possibly a
// tensor-parallel shard of a larger one, with an optional LoRA delta s·B·A. The factory decides
// how it is split; the model only names the layer and its full shape.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <map>
#include <string>

#include "core/config_fields.h"

namespace ds {

// LoRA's A at the start: kaiming (uniform, PEFT's default) | gaussian (N(0, 1/r²)); B is zero.
enum class LoraInit { Kaiming, Gaussian };
DS_ENUM_NAMES(LoraInit, {LoraInit::Kaiming, "kaiming"}, {LoraInit::Gaussian, "gaussian"});

// How a layer's full weight W [out, in] is split over tensor-parallel ranks.
//   Rows: column-parallel (Megatron): each rank holds out/size rows, input replicated, output sharded.
//   Cols: row-parallel: each rank holds in/size columns, input sharded, partial outputs summed.
enum class Split { None, Rows, Cols };

struct ShardSpec {
  Split split = Split::None;
  int64_t rank = 0;
  int64_t size = 1;
};

using TensorMap = std::function<torch::Tensor(const torch::Tensor&)>;

// What the model asks the factory for.
struct LinearSpec {
  std::string name;  // role in the model, e.g. "attn.o"; used for collective tags
  int64_t in = 0;
  int64_t out = 0;
  bool bias = true;
  Split split = Split::None;  // how it splits when the factory shards
  double init_std = 0.02;     // 0 gives an all-zero weight
};

// How the model's parameters are made: the frozen base's type and device, whether to draw random
// initial values (not when the weights are loaded next: nothing is initialised twice), and the type
// activations are computed in. Trainable parameters become float32 when PEFT marks them.
struct ParamOptions {
  torch::TensorOptions options = torch::TensorOptions().dtype(torch::kFloat);
  bool random_init = true;
  torch::ScalarType compute = torch::kFloat;
};

// A parameter of `shape` drawn whole from N(0, std²) in float32 on `p`'s device (so every TP size
// and storage type sees the same numbers), sliced by `slice`, stored in `p`'s type; with
// random_init off, uninitialised storage of the sliced shape.
torch::Tensor make_param(const std::vector<int64_t>& shape, double std, const ParamOptions& p,
                         const std::function<torch::Tensor(const torch::Tensor&)>& slice = {});

struct LinearOptions {
  LinearSpec spec;
  ShardSpec shard;
  ParamOptions params;
  // Row-parallel layers sum their partial outputs here (an all-reduce); empty when unsharded.
  TensorMap reduce_partial;
};

struct MultiLoraImpl;  // core/multi_lora.h

struct LoraOptions {
  int64_t r = 8;
  double alpha = 16;
  double dropout = 0.0;
  bool use_rslora = false;     // scale alpha/sqrt(r) instead of alpha/r
  LoraInit init = LoraInit::Kaiming;
};

// Where one parameter sits in its full tensor: split along `dim` into `size` pieces (dim < 0:
// replicated). `partial_grad` marks replicated LoRA factors whose gradient is a partial sum
// over the tensor-parallel group.
struct ParamShard {
  int64_t dim = -1;
  int64_t rank = 0;
  int64_t size = 1;
  bool partial_grad = false;
};

// LoRA's factors for a layer as add_lora draws them from the global generator (A by lora.init over
// the full [r, in] tensor, B zero), this rank's slices; and the scale s = alpha/r (or alpha/sqrt(r)).
std::pair<torch::Tensor, torch::Tensor> draw_lora_factors(const LinearOptions& layer, const LoraOptions& lora,
                                                          torch::Device device);
double lora_scale(const LoraOptions& lora);
// Where A and B of a layer split like `shard` sit in their full tensors: on a column-parallel layer
// A is whole (its gradient a partial sum over TP) and B split by rows; on a row-parallel one A is
// split by columns and B whole.
std::pair<ParamShard, ParamShard> lora_shards(const ShardSpec& shard);

// Layout (local shapes): weight [out_l, in_l], bias [out_l] (Rows) or [out] (Cols),
// lora_A [r, in_l], lora_B [out_l, r]; with Rows, A is whole and B split by rows like W;
// with Cols, A is split by columns like W and B is whole.
// Math: y = reduce(x·Wᵀ + s·(drop(x)·Aᵀ)·Bᵀ) + b, s = alpha/r; the row-parallel bias is added
// once, after the reduction. Computed in x's type: W (the base's type) and the float32 LoRA
// factors are cast to it at use, so a bf16 base keeps float32 trainable parameters.
struct LinearImpl : torch::nn::Module {
  explicit LinearImpl(LinearOptions options);

  torch::Tensor forward(const torch::Tensor& x);

  void add_lora(const LoraOptions& lora);
  bool has_lora() const { return lora_A.defined(); }
  // W += s·B·A (exact in the math; rounding in float) and drop the LoRA branch from forward.
  void merge();
  void unmerge();
  bool merged() const { return merged_; }
  double lora_scale() const { return scale_; }
  const LinearOptions& options() const { return options_; }
  const LoraOptions& lora_options() const { return lora_; }

  // Parameter name (as registered here) -> its place in the full tensor.
  std::map<std::string, ParamShard> param_shards() const;

  torch::Tensor weight, bias, lora_A, lora_B;
  // A campaign's LoRA factors, one pair per job, each applied to its own rows of the batch and
  // added where lora_A/B would be (before the reduction); with per-job products it also computes
  // the frozen product, and a layer no job targets has one without pairs. Null outside campaigns.
  std::shared_ptr<MultiLoraImpl> multi_lora;

 private:
  torch::Tensor local_slice(const torch::Tensor& full, int64_t dim) const;

  LinearOptions options_;
  LoraOptions lora_;
  double scale_ = 0.0;
  bool merged_ = false;
  torch::nn::Dropout drop_{nullptr};
};
TORCH_MODULE(Linear);

// The model builds every projection through this, so that sharding is a choice of factory.
struct LinearFactory {
  std::function<Linear(const LinearSpec&)> linear;
  // The point where several column-parallel layers read one input (q,k,v; MLP up; an adapter's
  // down projection): identity unsharded; identity forward / all-reduce backward when sharded.
  std::function<TensorMap(const std::string& name)> fanout;
  int64_t tp_size = 1;
  ParamOptions params;  // for every parameter the model makes, not only the linear layers'
  // Brackets a block's recomputed forward (train.recompute), so the collectives it repeats are
  // recorded as such; empty when unsharded.
  std::function<void(bool)> recompute_phase;
  // Random streams besides the global generator that a block's dropout draws from (a campaign's
  // per-job generators, core/multi_lora.h), replayed with it when a block is recomputed; empty: none.
  std::function<std::vector<at::Generator>()> dropout_streams;
};

LinearFactory dense_factory(const ParamOptions& params = {});

// This rank's slice of a full tensor, and the full shape of a local one.
torch::Tensor local_shard(const torch::Tensor& full, const ParamShard& shard);
std::vector<int64_t> full_shape(const torch::Tensor& local, const ParamShard& shard);

// Full-tensor view of every parameter of `module` that lives in a Linear (others are absent,
// meaning replicated): the key is the dotted parameter name.
std::map<std::string, ParamShard> collect_param_shards(torch::nn::Module& module);

}  // namespace ds
