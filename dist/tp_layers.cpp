#include "dist/tp_layers.h"

#include <memory>

namespace ds {

namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The communicator a backward pass needs. Forward receives it as a typed argument (apply() hands
// non-tensor arguments through as they are); ctx->saved_data holds only IValues, and a capsule
// around a CustomClassHolder is the IValue that carries a C++ object without registering a
// TorchScript class. The communicator outlives the graph: the model holds it too.
struct CommRef : torch::CustomClassHolder {
  explicit CommRef(Communicator& c) : comm(c) {}
  Communicator& comm;
};

Communicator& comm_of(AutogradContext* ctx) {
  return c10::static_intrusive_pointer_cast<CommRef>(ctx->saved_data.at("comm").toCapsule())->comm;
}

torch::Tensor summed(const torch::Tensor& t, Communicator& tp, const std::string& tag) {
  torch::Tensor out = t.contiguous().clone();
  tp.all_reduce(out, ReduceOp::Sum, tag);
  return out;
}

// backward returns one entry per forward argument: the tensor's gradient, nothing for the
// communicator and the tag.
struct CopyToTp : torch::autograd::Function<CopyToTp> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, Communicator& tp,
                               const std::string& tag) {
    ctx->saved_data["comm"] = c10::IValue::make_capsule(c10::make_intrusive<CommRef>(tp));
    ctx->saved_data["tag"] = tag;
    return x.view_as(x);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {summed(grads[0], comm_of(ctx), ctx->saved_data.at("tag").toStringRef()), torch::Tensor(),
            torch::Tensor()};
  }
};

struct ReduceFromTp : torch::autograd::Function<ReduceFromTp> {
  static torch::Tensor forward(AutogradContext*, const torch::Tensor& x, Communicator& tp, const std::string& tag) {
    return summed(x, tp, tag);
  }
  static variable_list backward(AutogradContext*, variable_list grads) {
    return {grads[0], torch::Tensor(), torch::Tensor()};
  }
};
}  // namespace

torch::Tensor copy_to_tp(const torch::Tensor& x, Communicator& tp, const std::string& tag) {
  if (tp.size() == 1) return x;
  return CopyToTp::apply(x, tp, tag);
}

torch::Tensor reduce_from_tp(const torch::Tensor& x, Communicator& tp, const std::string& tag) {
  if (tp.size() == 1) return x;
  return ReduceFromTp::apply(x, tp, tag);
}

LinearFactory tp_factory(Communicator& tp, const ParamOptions& params) {
  if (tp.size() == 1) return dense_factory(params);
  LinearFactory f;
  Communicator* comm = &tp;
  f.tp_size = tp.size();
  f.params = params;
  f.linear = [comm, params](const LinearSpec& spec) {
    LinearOptions o;
    o.spec = spec;
    o.params = params;
    if (spec.split != Split::None) o.shard = ShardSpec{spec.split, comm->rank(), comm->size()};
    if (spec.split == Split::Cols) {
      const std::string tag = "tp." + spec.name;
      o.reduce_partial = [comm, tag](const torch::Tensor& y) { return reduce_from_tp(y, *comm, tag); };
    }
    return Linear(o);
  };
  auto before = std::make_shared<std::string>();
  f.recompute_phase = [comm, before](bool on) {
    if (on) {
      *before = comm->ledger().phase();
      comm->ledger().set_phase("recompute");
    } else {
      comm->ledger().set_phase(*before);
    }
  };
  f.fanout = [comm](const std::string& name) -> TensorMap {
    const std::string tag = "tp." + name + ".in";
    return [comm, tag](const torch::Tensor& x) { return copy_to_tp(x, *comm, tag); };
  };
  return f;
}

}  // namespace ds
