// Weight selection (core/weight_selection.h): index sets in closed form, consistency across
// tensors, identity when shapes agree, and the errors a user can hit.
#include <gtest/gtest.h>

#include "core/model_io.h"
#include "core/weight_selection.h"

using namespace ds;

namespace {
ModelConfig teacher_config() {
  ModelConfig c;
  c.vocab_size = 64;
  c.n_layer = 4;
  c.n_head = 4;
  c.d_model = 32;
  c.d_ff = 64;
  c.max_seq_len = 16;
  return c;
}

std::map<std::string, torch::Tensor> tensors_of(const ModelConfig& c) {
  Transformer m(c, dense_factory());
  std::map<std::string, torch::Tensor> out;
  for (auto& [n, t] : base_tensors(m)) out[n] = t.clone();
  return out;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> shapes_of(const ModelConfig& c) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  for (auto& [n, t] : tensors_of(c)) out.emplace_back(n, t.sizes().vec());
  return out;
}
}  // namespace

TEST(Selection, UniformIndicesAndLayersInClosedForm) {
  EXPECT_EQ(uniform_indices(12, 4), (std::vector<int64_t>{0, 3, 6, 9}));   // d divides D: i·(D/d)
  EXPECT_EQ(uniform_indices(9, 4), (std::vector<int64_t>{0, 3, 5, 8}));    // round(linspace(0, 8, 4))
  EXPECT_EQ(uniform_indices(7, 3), (std::vector<int64_t>{0, 3, 6}));
  EXPECT_EQ(select_layers(12, 4, LayerSelection::Uniform), (std::vector<int64_t>{0, 4, 7, 11}));
  EXPECT_EQ(select_layers(12, 4, LayerSelection::First), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_THROW(select_layers(2, 3, LayerSelection::First), std::invalid_argument);
}

TEST(Selection, ATensorOfItsOwnIndicesKeepsExactlyTheChosenOnes) {
  const torch::Tensor t = torch::arange(12 * 9, torch::kFloat).view({12, 9});
  ElementSelector uniform(SelectionOptions{LayerSelection::Uniform, ElementSelection::Uniform, 0});
  const torch::Tensor s = uniform.select(t, {4, 4});
  const std::vector<int64_t> rows{0, 3, 6, 9}, cols{0, 3, 5, 8};
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) EXPECT_EQ(s[i][j].item<float>(), static_cast<float>(rows[i] * 9 + cols[j]));
  }
  ElementSelector consecutive(SelectionOptions{LayerSelection::Uniform, ElementSelection::Consecutive, 0});
  EXPECT_TRUE(torch::equal(consecutive.select(t, {2, 3}), t.slice(0, 0, 2).slice(1, 0, 3)));
}

TEST(Selection, RandomIsConsistentAcrossTensorsInconsistentIsNot) {
  ElementSelector random(SelectionOptions{LayerSelection::Uniform, ElementSelection::Random, 5});
  const auto first = random.indices(64, 16);
  for (int k = 0; k < 5; ++k) EXPECT_EQ(random.indices(64, 16), first);
  EXPECT_TRUE(std::is_sorted(first.begin(), first.end()));
  EXPECT_EQ(std::set<int64_t>(first.begin(), first.end()).size(), 16u);
  ElementSelector again(SelectionOptions{LayerSelection::Uniform, ElementSelection::Random, 5});
  EXPECT_EQ(again.indices(64, 16), first);  // the seed fixes the student
  ElementSelector loose(SelectionOptions{LayerSelection::Uniform, ElementSelection::RandomInconsistent, 5});
  const auto a = loose.indices(64, 16), b = loose.indices(64, 16);
  EXPECT_NE(a, b);
}

TEST(Selection, SameShapeIsTheIdentityAndHalfSizeSelectsFromTheRightLayers) {
  const ModelConfig tc = teacher_config();
  const auto teacher = tensors_of(tc);
  for (auto elements : {ElementSelection::Uniform, ElementSelection::Random}) {
    const NamedTensors same = select_weights(tc, teacher, tc, shapes_of(tc), {LayerSelection::Uniform, elements, 1}, "t");
    for (const auto& [n, t] : same) EXPECT_TRUE(torch::equal(t, teacher.at(n))) << n;
  }
  ModelConfig sc = tc;
  sc.n_layer = 2;
  sc.d_model = 16;
  sc.n_head = 2;
  sc.d_ff = 32;
  const NamedTensors half =
      select_weights(tc, teacher, sc, shapes_of(sc), {LayerSelection::Uniform, ElementSelection::Uniform, 0}, "t");
  std::map<std::string, torch::Tensor> got(half.begin(), half.end());
  // Student layer 1 is teacher layer 3 (round(linspace(0, 3, 2))); d_ff 64 -> 32: every other row.
  const torch::Tensor w = teacher.at("blocks.3.mlp.up.weight");
  EXPECT_TRUE(torch::equal(got.at("blocks.1.mlp.up.weight"), w.slice(0, 0, 64, 2).slice(1, 0, 32, 2)));
  EXPECT_TRUE(torch::equal(got.at("wte.weight"), teacher.at("wte.weight").slice(1, 0, 32, 2)));
  // The student is a working model of its own config.
  Transformer student(sc, dense_factory());
  std::map<std::string, torch::Tensor> named(half.begin(), half.end());
  load_params(*student, named, "selected", [](const std::string&) { return true; });
  EXPECT_EQ(student->forward(torch::zeros({1, 4}, torch::kLong)).sizes(), (std::vector<int64_t>{1, 4, 64}));
}

TEST(Selection, LargerStudentOrOtherFamilyIsNamed) {
  const ModelConfig tc = teacher_config();
  ModelConfig big = tc;
  big.d_ff = 128;
  try {
    check_student(tc, big);
    FAIL() << "a larger d_ff must be rejected";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("model.d_ff: student 128 is larger than teacher 64"), std::string::npos);
  }
  ModelConfig untied = tc;
  untied.tie_embeddings = false;
  EXPECT_THROW(check_student(tc, untied), std::invalid_argument);
  ModelConfig heads = tc;
  heads.d_model = 16;
  heads.n_head = 3;
  EXPECT_THROW(check_student(tc, heads), std::invalid_argument);
}
