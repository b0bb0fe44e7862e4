#include "dist/tp_gather.h"

namespace ds {

NamedTensors gather_tp(const NamedTensors& local, const std::map<std::string, ParamShard>& shards,
                       Communicator& tp, const std::string& tag) {
  NamedTensors out;
  for (const auto& [name, t] : local) {
    auto it = shards.find(name);
    if (tp.size() == 1 || it == shards.end() || it->second.dim < 0) {
      out.emplace_back(name, t);
      continue;
    }
    const torch::Tensor piece = t.detach().contiguous();
    torch::Tensor all = torch::empty({tp.size() * piece.numel()}, piece.options());
    tp.all_gather(piece, all, tag);
    std::vector<int64_t> stacked{tp.size()};
    for (int64_t d : piece.sizes()) stacked.push_back(d);
    out.emplace_back(name, torch::cat(all.view(stacked).unbind(0), it->second.dim));
  }
  return out;
}

}  // namespace ds
