// Activation recompute of one transformer block (train.recompute: layer): forward keeps only the
// block's input; backward runs the block's forward again, with the same dropout masks (the RNG
// state is replayed) and, under TP, the same collectives (the ledger records them in phase
// "recompute"), then backpropagates through it. LibTorch's C++ API has no checkpoint helper, so
// this is an autograd Function of its own.
#pragma once

#include <torch/torch.h>

#include <functional>

namespace ds {

struct BlockImpl;
struct Packing;

// y = block(x) without keeping the block's activations. `phase(true/false)` brackets the
// recomputed forward (the factory's ledger hook; may be empty). `packing` (may be null) is kept
// for the recomputed forward. `streams` (may be empty) names the generators the block draws from
// besides the global one; their states at the forward are replayed with its own.
torch::Tensor recompute_block(BlockImpl& block, const torch::Tensor& x, const std::function<void(bool)>& phase,
                              const Packing* packing = nullptr,
                              const std::function<std::vector<at::Generator>()>& streams = {});

}  // namespace ds
