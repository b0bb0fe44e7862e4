// Tensor parallelism as a choice of LinearFactory: the model asks for q, k, v, o, up, down by
// role and gets Megatron-style shards, plus the two autograd-aware collectives that join them:
//   copy_to_tp:     identity forward, all-reduce (sum) of the input gradient backward
//   reduce_from_tp: all-reduce (sum) of partial outputs forward, identity backward
// Both return their input untouched when the group has one rank.
#pragma once

#include "core/linear.h"
#include "dist/communicator.h"

namespace ds {

torch::Tensor copy_to_tp(const torch::Tensor& x, Communicator& tp, const std::string& tag);
torch::Tensor reduce_from_tp(const torch::Tensor& x, Communicator& tp, const std::string& tag);

// Column-parallel for Split::Rows specs, row-parallel for Split::Cols, replicated for None;
// fanouts are copy_to_tp. With a TP group of one rank it is the dense factory.
// Ledger tags: "tp.<layer>" for a row-parallel layer's forward sum, "tp.<name>.in" for a fanout's
// backward sum (e.g. tp.attn.o, tp.attn.in).
LinearFactory tp_factory(Communicator& tp, const ParamOptions& params = {});

}  // namespace ds
