#include "core/adapter.h"

namespace ds {

AdapterImpl::AdapterImpl(const AdapterOptions& opts, const LinearFactory& factory,
                         const std::string& name)
    : options(opts), fanout(factory.fanout(name)) {
  LinearSpec d{name + ".down", opts.d_model, opts.size, true, Split::Rows, opts.init_std};
  LinearSpec u{name + ".up", opts.size, opts.d_model, true, Split::Cols, 0.0};
  down = register_module("down", factory.linear(d));
  up = register_module("up", factory.linear(u));
}

torch::Tensor AdapterImpl::forward(const torch::Tensor& h) {
  torch::Tensor z = down->forward(fanout(h));
  z = options.nonlinearity == Nonlinearity::Gelu ? torch::gelu(z) : torch::relu(z);
  return h + up->forward(z);
}

}  // namespace ds
