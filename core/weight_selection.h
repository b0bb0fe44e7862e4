// Weight selection (Xu et al., "Initializing Models with Larger Ones", ICLR 2024): a smaller
// student starts from a subset of a pretrained teacher's weights. Layers: the first N or N evenly
// spaced ones; each student tensor takes the same-named tensor of its teacher layer; along every
// dimension d of D elements are kept (uniform, consecutive or random; random draws one index set
// per (D, d) and reuses it in every tensor, keeping features aligned across layers). No rescaling.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/model_config.h"
#include "core/safetensors.h"

namespace ds {

enum class LayerSelection { First, Uniform };
enum class ElementSelection { Uniform, Consecutive, Random, RandomInconsistent };

struct SelectionOptions {
  LayerSelection layers = LayerSelection::Uniform;
  ElementSelection elements = ElementSelection::Uniform;
  uint64_t seed = 0;
};

LayerSelection parse_layer_selection(const std::string& s);      // first | uniform
ElementSelection parse_element_selection(const std::string& s);  // uniform | consecutive | random | random-inconsistent

// Teacher layer for each student layer: first: 0..n-1; uniform: round(linspace(0, N-1, n)).
std::vector<int64_t> select_layers(int64_t teacher_layers, int64_t student_layers, LayerSelection how);
// d of D indices: i·(D/d) when d divides D, else round(linspace(0, D-1, d)).
std::vector<int64_t> uniform_indices(int64_t D, int64_t d);

// Draws and remembers index sets; with Random one per (D, d) for the whole model.
class ElementSelector {
 public:
  explicit ElementSelector(SelectionOptions options);
  // Indices of `d` out of `D` for one dimension of one tensor.
  std::vector<int64_t> indices(int64_t D, int64_t d);
  // The teacher tensor cut down to `shape` along every dimension.
  torch::Tensor select(const torch::Tensor& teacher, const std::vector<int64_t>& shape);

 private:
  SelectionOptions options_;
  std::map<std::pair<int64_t, int64_t>, std::vector<int64_t>> drawn_;
  uint64_t state_;
};

// Throws std::invalid_argument naming the key when the student is larger than the teacher in any
// size, or of another family (norm, activation, embedding tying).
void check_student(const ModelConfig& teacher, const ModelConfig& student);

// Student tensors for every name in `student_shapes` (in that order), from `teacher` tensors named
// alike ("blocks.<i>." is renamed to the chosen teacher layer).
NamedTensors select_weights(const ModelConfig& teacher_cfg, const std::map<std::string, torch::Tensor>& teacher,
                            const ModelConfig& student_cfg,
                            const std::vector<std::pair<std::string, std::vector<int64_t>>>& student_shapes,
                            const SelectionOptions& options, const std::string& teacher_source);

}  // namespace ds
