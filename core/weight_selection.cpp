#include "core/weight_selection.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace ds {

namespace {
// splitmix64: a small, portable stream so that a seed gives the same student everywhere.
uint64_t next_random(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::vector<int64_t> linspace_round(int64_t D, int64_t d) {
  std::vector<int64_t> out(d);
  for (int64_t i = 0; i < d; ++i) {
    out[i] = d == 1 ? 0 : static_cast<int64_t>(std::llround(static_cast<double>(i) * (D - 1) / (d - 1)));
  }
  return out;
}
}  // namespace

LayerSelection parse_layer_selection(const std::string& s) {
  if (s == "first") return LayerSelection::First;
  if (s == "uniform") return LayerSelection::Uniform;
  throw std::invalid_argument("--layers: expected first or uniform, got '" + s + "'");
}

ElementSelection parse_element_selection(const std::string& s) {
  if (s == "uniform") return ElementSelection::Uniform;
  if (s == "consecutive") return ElementSelection::Consecutive;
  if (s == "random") return ElementSelection::Random;
  if (s == "random-inconsistent") return ElementSelection::RandomInconsistent;
  throw std::invalid_argument("--elements: expected uniform, consecutive, random or random-inconsistent, got '" +
                              s + "'");
}

std::vector<int64_t> select_layers(int64_t N, int64_t n, LayerSelection how) {
  if (n > N || n < 1) {
    throw std::invalid_argument("n_layer: student " + std::to_string(n) + " must be between 1 and teacher " +
                                std::to_string(N));
  }
  if (how == LayerSelection::First) {
    std::vector<int64_t> out(n);
    std::iota(out.begin(), out.end(), 0);
    return out;
  }
  return linspace_round(N, n);
}

std::vector<int64_t> uniform_indices(int64_t D, int64_t d) {
  if (D % d == 0) {
    std::vector<int64_t> out(d);
    for (int64_t i = 0; i < d; ++i) out[i] = i * (D / d);
    return out;
  }
  return linspace_round(D, d);
}

ElementSelector::ElementSelector(SelectionOptions options) : options_(options), state_(options.seed) {}

std::vector<int64_t> ElementSelector::indices(int64_t D, int64_t d) {
  if (d > D) throw std::invalid_argument("cannot select " + std::to_string(d) + " of " + std::to_string(D));
  if (d == D) {
    std::vector<int64_t> all(D);
    std::iota(all.begin(), all.end(), 0);
    return all;
  }
  switch (options_.elements) {
    case ElementSelection::Uniform: return uniform_indices(D, d);
    case ElementSelection::Consecutive: {
      std::vector<int64_t> out(d);
      std::iota(out.begin(), out.end(), 0);
      return out;
    }
    case ElementSelection::Random:
    case ElementSelection::RandomInconsistent: {
      const auto key = std::make_pair(D, d);
      if (options_.elements == ElementSelection::Random) {
        auto it = drawn_.find(key);
        if (it != drawn_.end()) return it->second;
      }
      // Partial Fisher-Yates, then sorted so the kept features stay in the teacher's order.
      std::vector<int64_t> pool(D);
      std::iota(pool.begin(), pool.end(), 0);
      for (int64_t i = 0; i < d; ++i) {
        const int64_t j = i + static_cast<int64_t>(next_random(state_) % static_cast<uint64_t>(D - i));
        std::swap(pool[i], pool[j]);
      }
      std::vector<int64_t> out(pool.begin(), pool.begin() + d);
      std::sort(out.begin(), out.end());
      if (options_.elements == ElementSelection::Random) drawn_[key] = out;
      return out;
    }
  }
  return {};
}

torch::Tensor ElementSelector::select(const torch::Tensor& teacher, const std::vector<int64_t>& shape) {
  torch::Tensor t = teacher;
  for (size_t dim = 0; dim < shape.size(); ++dim) {
    const auto idx = indices(t.size(static_cast<int64_t>(dim)), shape[dim]);
    t = t.index_select(static_cast<int64_t>(dim), torch::tensor(idx, torch::kLong));
  }
  return t.contiguous();
}

void check_student(const ModelConfig& t, const ModelConfig& s) {
  const auto tt = field_texts(t), st = field_texts(s);
  for (const char* key : {"norm", "activation", "positions", "bias", "tie_embeddings"}) {
    if (tt.at(key) != st.at(key)) {
      throw std::invalid_argument(std::string("model.") + key + ": student '" + st.at(key) + "' differs from teacher '" +
                                  tt.at(key) + "'; weight selection needs the same model family");
    }
  }
  auto no_larger = [&](const char* key, int64_t teacher, int64_t student) {
    if (student > teacher) {
      throw std::invalid_argument(std::string("model.") + key + ": student " + std::to_string(student) +
                                  " is larger than teacher " + std::to_string(teacher));
    }
  };
  no_larger("vocab_size", t.vocab_size, s.vocab_size);
  no_larger("n_layer", t.n_layer, s.n_layer);
  no_larger("n_head", t.n_head, s.n_head);
  no_larger("n_kv_head", t.kv_heads(), s.kv_heads());
  no_larger("d_model", t.d_model, s.d_model);
  no_larger("d_ff", t.d_ff, s.d_ff);
  no_larger("max_seq_len", t.max_seq_len, s.max_seq_len);
  if (s.n_head < 1 || s.d_model % s.n_head != 0) {
    throw std::invalid_argument("model.n_head: " + std::to_string(s.n_head) + " does not divide the student's d_model " +
                                std::to_string(s.d_model));
  }
  if (s.n_head % s.kv_heads() != 0) {
    throw std::invalid_argument("model.n_kv_head: " + std::to_string(s.kv_heads()) +
                                " does not divide the student's n_head " + std::to_string(s.n_head));
  }
}

NamedTensors select_weights(const ModelConfig& teacher_cfg, const std::map<std::string, torch::Tensor>& teacher,
                            const ModelConfig& student_cfg,
                            const std::vector<std::pair<std::string, std::vector<int64_t>>>& student_shapes,
                            const SelectionOptions& options, const std::string& teacher_source) {
  check_student(teacher_cfg, student_cfg);
  const std::vector<int64_t> layers = select_layers(teacher_cfg.n_layer, student_cfg.n_layer, options.layers);
  ElementSelector selector(options);
  NamedTensors out;
  for (const auto& [name, shape] : student_shapes) {
    std::string source = name;
    if (name.rfind("blocks.", 0) == 0) {
      const size_t dot = name.find('.', 7);
      const int64_t i = std::stoll(name.substr(7, dot - 7));
      source = "blocks." + std::to_string(layers.at(static_cast<size_t>(i))) + name.substr(dot);
    }
    auto it = teacher.find(source);
    if (it == teacher.end()) throw FileError(teacher_source + ": tensor '" + source + "' is missing");
    if (it->second.dim() != static_cast<int64_t>(shape.size())) {
      throw FileError(teacher_source + ": tensor '" + source + "' has " + std::to_string(it->second.dim()) +
                      " dimensions, the student's '" + name + "' " + std::to_string(shape.size()));
    }
    for (size_t d = 0; d < shape.size(); ++d) {
      if (shape[d] > it->second.size(static_cast<int64_t>(d))) {
        throw FileError(teacher_source + ": tensor '" + source + "' is smaller than the student's '" + name +
                        "' along dimension " + std::to_string(d));
      }
    }
    out.emplace_back(name, selector.select(it->second.to(torch::kFloat), shape));
  }
  return out;
}

}  // namespace ds
