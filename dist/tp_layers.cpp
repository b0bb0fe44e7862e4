#include "dist/tp_layers.h"

#include <memory>

namespace ds {

namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

Communicator& comm_of(AutogradContext* ctx) {
  return *reinterpret_cast<Communicator*>(ctx->saved_data["comm"].toInt());
}

void save(AutogradContext* ctx, Communicator& tp, const std::string& tag) {
  ctx->saved_data["comm"] = reinterpret_cast<int64_t>(&tp);
  ctx->saved_data["tag"] = tag;
}

torch::Tensor summed(const torch::Tensor& t, Communicator& tp, const std::string& tag) {
  torch::Tensor out = t.contiguous().clone();
  tp.all_reduce(out, ReduceOp::Sum, tag);
  return out;
}

struct CopyToTp : torch::autograd::Function<CopyToTp> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, int64_t comm, const std::string& tag) {
    save(ctx, *reinterpret_cast<Communicator*>(comm), tag);
    return x.view_as(x);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {summed(grads[0], comm_of(ctx), ctx->saved_data["tag"].toStringRef()), torch::Tensor(), torch::Tensor()};
  }
};

struct ReduceFromTp : torch::autograd::Function<ReduceFromTp> {
  static torch::Tensor forward(AutogradContext*, const torch::Tensor& x, int64_t comm, const std::string& tag) {
    return summed(x, *reinterpret_cast<Communicator*>(comm), tag);
  }
  static variable_list backward(AutogradContext*, variable_list grads) {
    return {grads[0], torch::Tensor(), torch::Tensor()};
  }
};
}  // namespace

torch::Tensor copy_to_tp(const torch::Tensor& x, Communicator& tp, const std::string& tag) {
  if (tp.size() == 1) return x;
  return CopyToTp::apply(x, reinterpret_cast<int64_t>(&tp), tag);
}

torch::Tensor reduce_from_tp(const torch::Tensor& x, Communicator& tp, const std::string& tag) {
  if (tp.size() == 1) return x;
  return ReduceFromTp::apply(x, reinterpret_cast<int64_t>(&tp), tag);
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
