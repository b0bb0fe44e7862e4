#include "core/hf_layout.h"

#include <regex>

namespace ds {

namespace {

const torch::Tensor& take(const std::map<std::string, torch::Tensor>& m, const std::string& name,
                          const std::string& source) {
  auto it = m.find(name);
  if (it == m.end()) throw FileError(source + ": missing tensor '" + name + "'");
  return it->second;
}

// GPT-2 checkpoints name tensors with or without the "transformer." prefix.
std::map<std::string, torch::Tensor> strip_gpt2_prefix(const std::map<std::string, torch::Tensor>& hf) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [n, t] : hf) out[n.rfind("transformer.", 0) == 0 ? n.substr(12) : n] = t;
  return out;
}

const std::vector<std::pair<std::string, std::string>>& llama_layer_names() {
  static const std::vector<std::pair<std::string, std::string>> names{
      {"ln1.weight", "input_layernorm.weight"},       {"attn.q.weight", "self_attn.q_proj.weight"},
      {"attn.k.weight", "self_attn.k_proj.weight"},   {"attn.v.weight", "self_attn.v_proj.weight"},
      {"attn.o.weight", "self_attn.o_proj.weight"},   {"ln2.weight", "post_attention_layernorm.weight"},
      {"mlp.gate.weight", "mlp.gate_proj.weight"},    {"mlp.up.weight", "mlp.up_proj.weight"},
      {"mlp.down.weight", "mlp.down_proj.weight"}};
  return names;
}

}  // namespace

ModelConfig config_from_hf(const Json& j, const std::string& path) {
  const JsonFields f(j, path);
  // What the model is comes first: another family's file is named as such, not as a missing key.
  if (!f.has("model_type")) f.fail("model_type", "is missing (is this a model's config.json?)");
  const std::string type = f.need_string("model_type");
  ModelConfig c;
  std::map<std::string, std::string> names;  // our key -> the file's key
  if (type == "gpt2") {
    c.layout = Layout::Gpt2;
    names = {{"vocab_size", "vocab_size"}, {"d_model", "n_embd"},          {"n_layer", "n_layer"},
             {"n_head", "n_head"},         {"max_seq_len", "n_positions"}, {"norm_eps", "layer_norm_epsilon"},
             {"tie_embeddings", "tie_word_embeddings"}, {"init_std", "initializer_range"}, {"d_ff", "n_inner"}};
    for (const char* k : {"vocab_size", "n_embd", "n_layer", "n_head", "n_positions"}) {
      if (!f.has(k)) f.fail(k, "is missing");
    }
    const std::string act = f.string_or("activation_function", "gelu_new");
    if (act != "gelu_new" && act != "gelu_pytorch_tanh") {
      f.fail("activation_function", "'" + act + "' is not supported (gelu_new, gelu_pytorch_tanh)");
    }
  } else if (type == "llama") {
    c.layout = Layout::Llama;
    c.norm = NormKind::RmsNorm;
    c.activation = Activation::SwiGlu;
    c.positions = Positions::Rope;
    c.bias = false;
    c.tie_embeddings = false;
    c.max_seq_len = 2048;
    c.norm_eps = 1e-6;
    names = {{"vocab_size", "vocab_size"},
             {"d_model", "hidden_size"},
             {"n_layer", "num_hidden_layers"},
             {"n_head", "num_attention_heads"},
             {"n_kv_head", "num_key_value_heads"},
             {"d_ff", "intermediate_size"},
             {"max_seq_len", "max_position_embeddings"},
             {"norm_eps", "rms_norm_eps"},
             {"rope_theta", "rope_theta"},
             {"tie_embeddings", "tie_word_embeddings"},
             {"init_std", "initializer_range"}};
    for (const char* k : {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"}) {
      if (!f.has(k)) f.fail(k, "is missing");
    }
    const std::string act = f.string_or("hidden_act", "silu");
    if (act != "silu") f.fail("hidden_act", "'" + act + "' is not supported (silu)");
    if (f.has("rope_scaling")) f.fail("rope_scaling", "is not supported");
    if (f.bool_or("attention_bias", false)) f.fail("attention_bias", "is not supported");
    if (f.bool_or("mlp_bias", false)) f.fail("mlp_bias", "is not supported");
  } else {
    f.fail("model_type", "'" + type + "' is not supported (deltashard-gpt, gpt2, llama)");
  }
  // Every value through the same table, ranges and messages as the YAML model section, before
  // any arithmetic on them.
  JsonFieldReader r(j, path, names);
  describe_architecture(r, c);
  if (c.layout == Layout::Gpt2 && !f.has("n_inner")) c.d_ff = 4 * c.d_model;
  try {
    validate_model_config(c, path);
  } catch (const ConfigError& e) {
    throw FileError(e.what());
  }
  if (c.n_kv_head == c.n_head) c.n_kv_head = 0;  // one spelling of "as many as n_head"
  if (c.layout == Layout::Llama && f.has("head_dim") && f.need_int("head_dim") != c.d_model / c.n_head) {
    f.fail("head_dim", "other than hidden_size / num_attention_heads is not supported");
  }
  return c;
}

void check_layout(const ModelConfig& c, Layout layout) {
  auto need = [&](const char* key, const std::string& have, const std::string& want) {
    if (have != want) {
      throw ConfigError(std::string("model.") + key + " is " + have + "; the " + enum_name(layout) +
                        " layout needs " + want);
    }
  };
  const auto text = field_texts(c);
  if (layout == Layout::Gpt2) {
    need("norm", text.at("norm"), "layernorm");
    need("activation", text.at("activation"), "gelu");
    need("positions", text.at("positions"), "learned");
    need("bias", text.at("bias"), "true");
    need("tie_embeddings", text.at("tie_embeddings"), "true");
    need("n_kv_head", std::to_string(c.kv_heads()), std::to_string(c.n_head));
  } else if (layout == Layout::Llama) {
    need("norm", text.at("norm"), "rmsnorm");
    need("activation", text.at("activation"), "swiglu");
    need("positions", text.at("positions"), "rope");
    need("bias", text.at("bias"), "false");
  }
}

Json hf_config_json(const ModelConfig& c) {
  Json j = Json::object();
  if (c.layout == Layout::Gpt2) {
    Json arch = Json::array();
    arch.push_back("GPT2LMHeadModel");
    j["architectures"] = arch;
    j["model_type"] = "gpt2";
    j["vocab_size"] = c.vocab_size;
    j["n_positions"] = c.max_seq_len;
    j["n_ctx"] = c.max_seq_len;
    j["n_embd"] = c.d_model;
    j["n_layer"] = c.n_layer;
    j["n_head"] = c.n_head;
    j["n_inner"] = c.d_ff;
    j["activation_function"] = "gelu_new";
    j["layer_norm_epsilon"] = c.norm_eps;
    j["initializer_range"] = c.init_std;
    j["tie_word_embeddings"] = c.tie_embeddings;
  } else {
    Json arch = Json::array();
    arch.push_back("LlamaForCausalLM");
    j["architectures"] = arch;
    j["model_type"] = "llama";
    j["vocab_size"] = c.vocab_size;
    j["hidden_size"] = c.d_model;
    j["intermediate_size"] = c.d_ff;
    j["num_hidden_layers"] = c.n_layer;
    j["num_attention_heads"] = c.n_head;
    j["num_key_value_heads"] = c.kv_heads();
    j["max_position_embeddings"] = c.max_seq_len;
    j["rms_norm_eps"] = c.norm_eps;
    j["rope_theta"] = c.rope_theta;
    j["hidden_act"] = "silu";
    j["attention_bias"] = false;
    j["mlp_bias"] = false;
    j["initializer_range"] = c.init_std;
    j["tie_word_embeddings"] = c.tie_embeddings;
  }
  j["torch_dtype"] = "float32";
  return j;
}

std::map<std::string, torch::Tensor> from_hf(const std::map<std::string, torch::Tensor>& in, const ModelConfig& c,
                                             const std::string& source) {
  std::map<std::string, torch::Tensor> out;
  if (c.layout == Layout::Gpt2) {
    const auto hf = strip_gpt2_prefix(in);
    auto t = [&](const std::string& n) { return take(hf, n, source); };
    out["wte.weight"] = t("wte.weight");
    out["wpe.weight"] = t("wpe.weight");
    out["ln_f.weight"] = t("ln_f.weight");
    out["ln_f.bias"] = t("ln_f.bias");
    const int64_t d = c.d_model;
    for (int64_t i = 0; i < c.n_layer; ++i) {
      const std::string h = "h." + std::to_string(i) + ".", b = "blocks." + std::to_string(i) + ".";
      for (const char* ln : {"1", "2"}) {
        out[b + "ln" + ln + ".weight"] = t(h + "ln_" + ln + ".weight");
        out[b + "ln" + ln + ".bias"] = t(h + "ln_" + ln + ".bias");
      }
      // Conv1D: y = x·W + b with W [in, out]; ours: y = x·Wᵀ + b with W [out, in].
      const torch::Tensor qkv_w = t(h + "attn.c_attn.weight"), qkv_b = t(h + "attn.c_attn.bias");
      if (qkv_w.dim() != 2 || qkv_w.size(1) != 3 * d || qkv_b.numel() != 3 * d) {
        throw FileError(source + ": tensor '" + h + "attn.c_attn.weight' must be [" + std::to_string(d) + ", " +
                        std::to_string(3 * d) + "] with a bias of " + std::to_string(3 * d));
      }
      const char* qkv[] = {"q", "k", "v"};
      for (int k = 0; k < 3; ++k) {
        out[b + "attn." + qkv[k] + ".weight"] = qkv_w.narrow(1, k * d, d).t();
        out[b + "attn." + qkv[k] + ".bias"] = qkv_b.narrow(0, k * d, d);
      }
      out[b + "attn.o.weight"] = t(h + "attn.c_proj.weight").t();
      out[b + "attn.o.bias"] = t(h + "attn.c_proj.bias");
      out[b + "mlp.up.weight"] = t(h + "mlp.c_fc.weight").t();
      out[b + "mlp.up.bias"] = t(h + "mlp.c_fc.bias");
      out[b + "mlp.down.weight"] = t(h + "mlp.c_proj.weight").t();
      out[b + "mlp.down.bias"] = t(h + "mlp.c_proj.bias");
    }
    if (!c.tie_embeddings) out["lm_head.weight"] = take(in, "lm_head.weight", source);
    return out;
  }
  auto t = [&](const std::string& n) { return take(in, n, source); };
  out["wte.weight"] = t("model.embed_tokens.weight");
  out["ln_f.weight"] = t("model.norm.weight");
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const std::string h = "model.layers." + std::to_string(i) + ".", b = "blocks." + std::to_string(i) + ".";
    for (const auto& [ours, theirs] : llama_layer_names()) out[b + ours] = t(h + theirs);
  }
  if (!c.tie_embeddings) out["lm_head.weight"] = t("lm_head.weight");
  return out;
}

std::vector<LayoutTensor> hf_layout_tensors(const ModelConfig& c) {
  using Ts = std::vector<torch::Tensor>;
  const auto same = [](const Ts& t) { return t[0]; };
  // Conv1D stores [in, out]: ours transposed.
  const auto conv1d = [](const Ts& t) { return t[0].t().contiguous(); };
  const auto fuse = [](const Ts& t) { return torch::cat(t, 0); };
  const auto fuse_conv1d = [](const Ts& t) { return torch::cat(t, 0).t().contiguous(); };
  std::vector<LayoutTensor> out;
  auto add = [&](std::string name, std::vector<std::string> sources,
                 std::function<torch::Tensor(const Ts&)> make) {
    out.push_back({std::move(name), std::move(sources), std::move(make)});
  };
  if (c.layout == Layout::Gpt2) {
    const std::string p = "transformer.";
    add(p + "wte.weight", {"wte.weight"}, same);
    add(p + "wpe.weight", {"wpe.weight"}, same);
    for (int64_t i = 0; i < c.n_layer; ++i) {
      const std::string h = p + "h." + std::to_string(i) + ".", b = "blocks." + std::to_string(i) + ".";
      add(h + "ln_1.weight", {b + "ln1.weight"}, same);
      add(h + "ln_1.bias", {b + "ln1.bias"}, same);
      add(h + "attn.c_attn.weight", {b + "attn.q.weight", b + "attn.k.weight", b + "attn.v.weight"}, fuse_conv1d);
      add(h + "attn.c_attn.bias", {b + "attn.q.bias", b + "attn.k.bias", b + "attn.v.bias"}, fuse);
      add(h + "attn.c_proj.weight", {b + "attn.o.weight"}, conv1d);
      add(h + "attn.c_proj.bias", {b + "attn.o.bias"}, same);
      add(h + "ln_2.weight", {b + "ln2.weight"}, same);
      add(h + "ln_2.bias", {b + "ln2.bias"}, same);
      add(h + "mlp.c_fc.weight", {b + "mlp.up.weight"}, conv1d);
      add(h + "mlp.c_fc.bias", {b + "mlp.up.bias"}, same);
      add(h + "mlp.c_proj.weight", {b + "mlp.down.weight"}, conv1d);
      add(h + "mlp.c_proj.bias", {b + "mlp.down.bias"}, same);
    }
    add(p + "ln_f.weight", {"ln_f.weight"}, same);
    add(p + "ln_f.bias", {"ln_f.bias"}, same);
  } else if (c.layout == Layout::Llama) {
    add("model.embed_tokens.weight", {"wte.weight"}, same);
    for (int64_t i = 0; i < c.n_layer; ++i) {
      const std::string h = "model.layers." + std::to_string(i) + ".", b = "blocks." + std::to_string(i) + ".";
      for (const auto& [o, theirs] : llama_layer_names()) add(h + theirs, {b + o}, same);
    }
    add("model.norm.weight", {"ln_f.weight"}, same);
  } else {
    throw std::invalid_argument("hf_layout_tensors: the deltashard layout is not a Hugging Face layout");
  }
  if (!c.tie_embeddings) add("lm_head.weight", {"lm_head.weight"}, same);
  return out;
}

NamedTensors to_hf(const NamedTensors& ours, const ModelConfig& c) {
  const std::map<std::string, torch::Tensor> m(ours.begin(), ours.end());
  NamedTensors out;
  for (const auto& lt : hf_layout_tensors(c)) {
    std::vector<torch::Tensor> src;
    for (const auto& s : lt.sources) src.push_back(take(m, s, "model"));
    out.emplace_back(lt.name, lt.make(src));
  }
  return out;
}

std::string hf_module_name(const std::string& ours, const ModelConfig& c) {
  static const std::regex re(R"(blocks\.(\d+)\.(attn|mlp)\.(\w+))");
  std::smatch m;
  if (!std::regex_match(ours, m, re)) throw std::invalid_argument("not a layer name: " + ours);
  const std::string i = m[1], part = m[2], name = m[3];
  if (c.layout == Layout::Gpt2) {
    if (name == "q" || name == "k" || name == "v") return "transformer.h." + i + ".attn.c_attn";
    if (name == "o") return "transformer.h." + i + ".attn.c_proj";
    if (name == "up") return "transformer.h." + i + ".mlp.c_fc";
    return "transformer.h." + i + ".mlp.c_proj";
  }
  if (c.layout == Layout::Llama) {
    if (part == "attn") return "model.layers." + i + ".self_attn." + name + "_proj";
    return "model.layers." + i + ".mlp." + name + "_proj";
  }
  return ours;
}

}  // namespace ds
