// Whole tensors from tensor-parallel shards, for checkpoints and merged models that do not depend
// on the TP size: every shard is all-gathered over the TP group along its split dimension.
#pragma once

#include <map>
#include <string>

#include "core/linear.h"
#include "core/safetensors.h"
#include "dist/communicator.h"

namespace ds {

// `local` holds this rank's tensors by name; names absent from `shards` are replicated and
// returned as they are. Every TP rank must call it with the same names in the same order.
NamedTensors gather_tp(const NamedTensors& local, const std::map<std::string, ParamShard>& shards,
                       Communicator& tp, const std::string& tag);

}  // namespace ds
