#include "trainer/comm_report.h"

#include <sstream>

#include "core/errors.h"

namespace ds {

RunConfig config_for_method(RunConfig cfg, const std::string& method) {
  if (const auto m = enum_from<PeftMethod>(method)) {
    cfg.peft.method = *m;
  } else if (method == "adapter_sharded" || method == "adapter_replicated") {
    cfg.peft.method = PeftMethod::Adapter;
    cfg.peft.adapter_tp = *enum_from<AdapterTp>(method.substr(8));
  } else {
    throw UsageError("--methods: unknown method '" + method +
                     "' (lora, adapter_sharded, adapter_replicated, adapter, full, none)");
  }
  return cfg;
}

std::vector<std::string> split_names(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream ss(list);
  std::string m;
  while (std::getline(ss, m, ',')) {
    if (!m.empty()) out.push_back(m);
  }
  return out;
}

std::vector<std::string> split_methods(const std::string& list) {
  std::vector<std::string> out = split_names(list);
  if (out.empty()) throw UsageError("--methods: empty list");
  return out;
}

StepComm step_comm(const std::vector<CommRecord>& records, int64_t n_layer) {
  StepComm c;
  for (const auto& r : records) {
    c.comm_ms += r.ms;
    if (r.group == "tp") {
      if (r.phase == "fwd") ++c.tp_fwd;
      if (r.phase == "bwd") ++c.tp_bwd;
      if (r.phase == "recompute") ++c.tp_recompute;
      c.tp_bytes += r.bytes;
    } else {
      ++c.dp_collectives;
      c.dp_bytes += r.bytes;
      if (r.group == "world") {
        ++c.world_collectives;
        c.world_bytes += r.bytes;
      }
    }
  }
  c.tp_per_layer = n_layer > 0 ? static_cast<double>(c.tp_fwd + c.tp_bwd + c.tp_recompute) / n_layer : 0.0;
  return c;
}

void put_step_comm(Json& j, const StepComm& c) {
  j["tp_collectives_fwd"] = c.tp_fwd;
  j["tp_collectives_bwd"] = c.tp_bwd;
  j["tp_collectives_recompute"] = c.tp_recompute;
  j["tp_collectives_per_layer"] = c.tp_per_layer;
  j["tp_bytes"] = c.tp_bytes;
  j["dp_collectives"] = c.dp_collectives;
  j["dp_bytes"] = c.dp_bytes;
  j["world_collectives"] = c.world_collectives;
  j["world_bytes"] = c.world_bytes;
}

}  // namespace ds
