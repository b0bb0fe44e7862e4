#include "core/model_config.h"

namespace ds {

void parse_model_config(const YAML::Node& node, const Locator& where, ModelConfig& cfg) {
  Fields f(node, "model", where);
  const int64_t big = int64_t{1} << 40;
  f.get("path", cfg.path);
  f.get("vocab_size", cfg.vocab_size, 1, big);
  f.get("n_layer", cfg.n_layer, 1, 4096);
  f.get("n_head", cfg.n_head, 1, 4096);
  f.get("d_model", cfg.d_model, 1, big);
  f.get("d_ff", cfg.d_ff, 1, big);
  f.get("max_seq_len", cfg.max_seq_len, 1, big);
  f.get("tie_embeddings", cfg.tie_embeddings);
  f.get_choice("norm", cfg.norm, {"layernorm", "rmsnorm"});
  f.get_choice("activation", cfg.activation, {"gelu", "swiglu"});
  f.get_choice("positions", cfg.positions, {"learned", "rope"});
  f.get("bias", cfg.bias);
  f.get("n_kv_head", cfg.n_kv_head, 0, 4096);
  f.get("rope_theta", cfg.rope_theta, 1.0, 1e12);
  f.get("norm_eps", cfg.norm_eps, 0.0, 1.0);
  f.get("init_std", cfg.init_std, 0.0, 10.0);
  if (cfg.d_model % cfg.n_head != 0) {
    f.fail("n_head", "d_model " + std::to_string(cfg.d_model) + " is not divisible by n_head " +
                         std::to_string(cfg.n_head));
  }
  if (cfg.n_head % cfg.kv_heads() != 0) {
    f.fail("n_kv_head", std::to_string(cfg.kv_heads()) + " does not divide n_head " + std::to_string(cfg.n_head));
  }
  if (cfg.positions == "rope" && cfg.head_dim() % 2 != 0) {
    f.fail("positions", "rope needs an even head dimension, d_model / n_head is " + std::to_string(cfg.head_dim()));
  }
  f.finish();
}

void validate_model_config(const ModelConfig& cfg, const std::string& where) {
  if (cfg.d_model % cfg.n_head != 0) {
    throw ConfigError(where + ": d_model " + std::to_string(cfg.d_model) +
                      " is not divisible by n_head " + std::to_string(cfg.n_head));
  }
  if (cfg.n_head % cfg.kv_heads() != 0) {
    throw ConfigError(where + ": n_kv_head " + std::to_string(cfg.kv_heads()) + " does not divide n_head " +
                      std::to_string(cfg.n_head));
  }
}

}  // namespace ds
