#include "core/recompute.h"

#include <ATen/core/ivalue.h>
#include <torch/custom_class.h>

#include <algorithm>

#include "core/transformer.h"

namespace ds {

namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// What backward needs besides tensors, carried through the context as an object.
struct BlockRef : torch::CustomClassHolder {
  BlockRef(BlockImpl* b, std::function<void(bool)> p, const Packing* k)
      : block(b), phase(std::move(p)), packed(k != nullptr), packing(k ? *k : Packing{}) {}
  BlockImpl* block;
  std::function<void(bool)> phase;
  bool packed;
  Packing packing;
  // Every generator the block draws from (the global one first) and its state at the forward.
  std::vector<std::pair<at::Generator, torch::Tensor>> streams;
  const Packing* pack() const { return packed ? &packing : nullptr; }
};

// Sets each stream to `states` and returns the states they had.
std::vector<torch::Tensor> swap_states(const std::vector<std::pair<at::Generator, torch::Tensor>>& streams,
                                       const std::vector<torch::Tensor>& states) {
  std::vector<torch::Tensor> before;
  for (size_t i = 0; i < streams.size(); ++i) {
    at::Generator gen = streams[i].first;
    std::lock_guard<std::mutex> lock(gen.mutex());
    before.push_back(gen.get_state());
    gen.set_state(states[i]);
  }
  return before;
}

struct Recompute : torch::autograd::Function<Recompute> {
  // `anchor` requires grad so that backward runs even when x does not (the first block's input
  // comes from a frozen embedding) and the block's own parameters still get their gradients.
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& anchor,
                               c10::intrusive_ptr<BlockRef> ref) {
    ctx->save_for_backward({x});
    ctx->saved_data["x_grad"] = x.requires_grad();
    ctx->saved_data["ref"] = c10::IValue::make_capsule(ref);
    torch::NoGradGuard no_grad;
    return ref->block->forward(x, nullptr, nullptr, ref->pack());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto ref = c10::static_intrusive_pointer_cast<BlockRef>(ctx->saved_data["ref"].toCapsule());
    const torch::Tensor x = ctx->get_saved_variables()[0].detach().requires_grad_(ctx->saved_data["x_grad"].toBool());
    // Replay the forward's random numbers (dropout), then put the streams back where they were.
    std::vector<torch::Tensor> then;
    for (const auto& s : ref->streams) then.push_back(s.second);
    const std::vector<torch::Tensor> now = swap_states(ref->streams, then);
    torch::Tensor y;
    {
      torch::AutoGradMode grad(true);
      if (ref->phase) ref->phase(true);
      y = ref->block->forward(x, nullptr, nullptr, ref->pack());
      if (ref->phase) ref->phase(false);
    }
    swap_states(ref->streams, now);
    torch::autograd::backward({y}, {grads[0]});
    return {x.requires_grad() ? x.grad() : torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

torch::Tensor anchor_on(const torch::Device& device) {
  return torch::zeros({0}, torch::TensorOptions().device(device)).requires_grad_(true);
}
}  // namespace

torch::Tensor recompute_block(BlockImpl& block, const torch::Tensor& x, const std::function<void(bool)>& phase,
                              const Packing* packing, const std::function<std::vector<at::Generator>()>& streams) {
  auto ref = c10::make_intrusive<BlockRef>(&block, phase, packing);
  std::vector<at::Generator> gens{at::globalContext().defaultGenerator(x.device())};
  if (streams) {
    // Each generator once: restoring one listed twice would leave it at its forward-time state.
    for (const auto& g : streams()) {
      if (g.defined() && std::find(gens.begin(), gens.end(), g) == gens.end()) gens.push_back(g);
    }
  }
  for (auto& g : gens) {
    std::lock_guard<std::mutex> lock(g.mutex());
    ref->streams.emplace_back(g, g.get_state());
  }
  return Recompute::apply(x, anchor_on(x.device()), ref);
}

}  // namespace ds
