#include "core/model_config.h"

namespace ds {

void parse_model_config(const YAML::Node& node, const Locator& where, ModelConfig& cfg) {
  FieldReader r(node, "model", where);
  describe(r, cfg);
  try {
    validate_model_config(cfg, "");
  } catch (const ConfigError& e) {
    // Name the YAML line of the key the message starts with.
    const std::string msg = e.what();
    const std::string key = msg.substr(0, msg.find(':'));
    r.fail(key.c_str(), msg.substr(msg.find(':') + 2));
  }
  r.finish();
}

void validate_model_config(const ModelConfig& c, const std::string& where) {
  const std::string p = where.empty() ? "" : where + ": ";
  if (c.d_model % c.n_head != 0) {
    throw ConfigError(p + "n_head: d_model " + std::to_string(c.d_model) + " is not divisible by n_head " +
                      std::to_string(c.n_head));
  }
  if (c.n_head % c.kv_heads() != 0) {
    throw ConfigError(p + "n_kv_head: " + std::to_string(c.kv_heads()) + " does not divide n_head " +
                      std::to_string(c.n_head));
  }
  if (c.positions == Positions::Rope && c.head_dim() % 2 != 0) {
    throw ConfigError(p + "positions: rope needs an even head dimension, d_model / n_head is " +
                      std::to_string(c.head_dim()));
  }
}

}  // namespace ds
