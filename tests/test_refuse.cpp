// Bad input is refused with one line naming the file, tensor, key or field, before it can do harm:
// model configs that would divide by zero or build no model, checkpoints holding NaN or relabelled
// tensors, state files that would resume backwards, PEFT setups the model cannot hold, and paths of
// the wrong kind. Each case here once passed silently or crashed.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "core/errors.h"
#include "core/dir_layout.h"
#include "core/files.h"
#include "core/hf_layout.h"
#include "core/safetensors.h"
#include "data/token_dataset.h"
#include "dist/process_grid.h"
#include "test_helpers.h"
#include "trainer/checkpoint.h"
#include "trainer/manifest.h"
#include "trainer/model_builder.h"
#include "trainer/run_config.h"
#include "trainer/trainer.h"

using namespace ds;
namespace fs = std::filesystem;

namespace {

// Runs `f` and checks it throws E whose message holds every fragment.
template <typename E>
void expect_refused(const std::function<void()>& f, std::initializer_list<std::string> fragments) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing: " << *fragments.begin();
  } catch (const E& e) {
    const std::string msg = e.what();
    for (const auto& frag : fragments) EXPECT_NE(msg.find(frag), std::string::npos) << msg << "\nwanted: " << frag;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
  }
}

std::string scratch(const std::string& name) {
  const std::string d = "/tmp/deltashard_refuse_" + std::to_string(::getpid()) + "_" + name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}


}  // namespace

// Every field of config.json is range-checked before any arithmetic: a zero head count used to
// divide by zero (SIGFPE), a negative layer count built a model with no blocks.
TEST(HfConfig, OutOfRangeFieldsAndUnknownTypesAreNamedBeforeAnyArithmetic) {
  ModelConfig g = fixtures::tiny_config("lora").model;
  g.layout = Layout::Gpt2;
  const Json gpt2 = hf_config_json(g);
  const Json llama = hf_config_json(fixtures::as_llama(fixtures::tiny_config("lora").model));
  const struct {
    const Json* base;
    const char* key;
    Json value;
    const char* fragment;
  } cases[] = {
      {&gpt2, "n_head", 0, "n_head: value 0 is out of range"},
      {&llama, "num_attention_heads", 0, "num_attention_heads: value 0 is out of range"},
      {&gpt2, "n_layer", -3, "n_layer: value -3 is out of range"},
      {&gpt2, "n_embd", -128, "n_embd: value -128 is out of range"},
      {&llama, "num_key_value_heads", 3, "n_kv_head: 3 does not divide n_head 4"},
      {&gpt2, "model_type", "bert", "model_type: 'bert' is not supported"},
  };
  for (const auto& c : cases) {
    Json j = *c.base;
    j[c.key] = c.value;
    expect_refused<FileError>([&] { config_from_hf(j, "dir/config.json"); }, {"dir/config.json: ", c.fragment});
  }
}

class CheckpointRefusal : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = scratch("ckpt");
    cfg_ = fixtures::tiny_config("lora");
    cfg_.train.steps = 2;
    trainer_ = std::make_unique<Trainer>(cfg_, grid_);
    trainer_->step();
    trainer_->save_checkpoint(root_);
    step_ = resolve_checkpoint(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  // Rewrites one file of the checkpoint with `edit` applied to its first tensor.
  std::string poison(const std::string& file, const std::function<void(torch::Tensor&)>& edit) {
    const std::string path = step_ + "/" + file;
    const SafetensorsFile f = read_safetensors(path);
    NamedTensors out;
    for (const auto& [n, t] : f.tensors) out.emplace_back(n, t.clone());
    edit(out.front().second);
    write_safetensors(path, out, f.metadata);
    reseal();
    return out.front().first;
  }

  // The manifest would name any edited file as altered first; record the edit in it so the checks
  // behind it (the content's own) are what is tested.
  void reseal() {
    Marker m = *read_marker(step_);
    add_manifest(step_, m);
    write_marker(step_, m);
  }

  ProcessGrid grid_ = make_grid(GridOptions{1, Backend::Mpi, 60, MPI_COMM_SELF});
  std::string root_, step_;
  RunConfig cfg_;
  std::unique_ptr<Trainer> trainer_;
};

TEST_F(CheckpointRefusal, NanOrInfInTrainableParametersIsNamed) {
  for (const double bad : {std::nan(""), static_cast<double>(INFINITY)}) {
    const std::string name = poison("trainable.safetensors", [&](torch::Tensor& t) { t.view(-1)[0] = bad; });
    expect_refused<FileError>([&] { load_trainable(trainer_->model(), cfg_, root_); },
                              {"trainable.safetensors", "'" + name + "' holds NaN or Inf"});
  }
}

TEST_F(CheckpointRefusal, NanInOptimizerStateIsNamed) {
  const std::string name = poison("optimizer.safetensors", [](torch::Tensor& t) { t.view(-1)[1] = std::nan(""); });
  expect_refused<FileError>([&] { load_optimizer_state(*trainer_, step_); },
                            {"optimizer.safetensors", "'" + name + "'", "NaN or Inf"});
}

// A float tensor relabelled as an integer type in the header (same byte size) is not reinterpreted.
TEST_F(CheckpointRefusal, FloatTensorsRelabelledAsIntegersAreRefused) {
  const std::string path = step_ + "/trainable.safetensors";
  std::string bytes = read_file(path);
  const auto at = bytes.find("\"F32\"");
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at, 5, "\"I32\"");
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  reseal();
  expect_refused<FileError>([&] { load_trainable(trainer_->model(), cfg_, root_); },
                            {"trainable.safetensors", "not a floating-point type"});
}

// state.json is checked field by field: a negative step would resume with negative learning rates.
TEST_F(CheckpointRefusal, StateFileFieldsAreValidated) {
  const std::string path = step_ + "/state.json";
  const Json good = read_json_file(path);
  const auto with = [&](const std::function<void(Json&)>& edit) {
    Json j = good;
    edit(j);
    std::ofstream(path, std::ios::trunc) << j.dump();
  };
  with([](Json& j) { j["step"] = -5; });
  expect_refused<FileError>([&] { read_checkpoint_state(step_); }, {"state.json", "step", "negative"});
  with([](Json& j) { j.erase("optimizer_steps"); });
  expect_refused<FileError>([&] { read_checkpoint_state(step_); }, {"state.json", "optimizer_steps"});
  with([](Json& j) { j["optimizer_steps"] = 9; });
  expect_refused<FileError>([&] { read_checkpoint_state(step_); }, {"state.json", "optimizer_steps", "[0, step]"});
  with([](Json& j) { j["method"] = "prefix"; });
  expect_refused<FileError>([&] { read_checkpoint_state(step_); }, {"state.json", "method", "'prefix'"});
  with([](Json& j) { j["tp"] = 0; });
  expect_refused<FileError>([&] { read_checkpoint_state(step_); }, {"state.json", "tp", "at least 1"});
  with([](Json& j) { j.erase("model"); });
  expect_refused<FileError>([&] { read_checkpoint_state(step_); }, {"state.json", "model", "missing"});
  // The fp16 loss scaler's state: read back as written, its values checked.
  with([](Json& j) { j["loss_scale"] = {{"scale", 8192.0}, {"good_steps", 7}, {"skips", 2}}; });
  const CheckpointState scaled = read_checkpoint_state(step_);
  ASSERT_TRUE(scaled.scaler);
  EXPECT_EQ(scaled.scaler->scale, 8192.0);
  EXPECT_EQ(scaled.scaler->good_steps, 7);
  EXPECT_EQ(scaled.scaler->skips, 2);
  with([](Json& j) { j["loss_scale"] = {{"scale", -1.0}, {"good_steps", 7}, {"skips", 2}}; });
  expect_refused<FileError>([&] { read_checkpoint_state(step_); }, {"state.json", "loss_scale.scale", "positive"});
  with([](Json& j) { j["loss_scale"] = {{"scale", 2.0}, {"skips", 2}}; });
  expect_refused<FileError>([&] { read_checkpoint_state(step_); }, {"state.json", "loss_scale.good_steps"});
  // A valid file of another run: the method and the model sizes must match.
  with([](Json&) {});
  const CheckpointState s = read_checkpoint_state(step_);
  EXPECT_FALSE(s.scaler);  // an fp32 run writes none
  RunConfig adapter = cfg_;
  adapter.peft.method = PeftMethod::Adapter;
  expect_refused<FileError>([&] { check_checkpoint_matches(s, adapter, step_); },
                            {"state.json", "method lora does not match this run's peft.method adapter"});
  RunConfig wider = cfg_;
  wider.model.d_model = 64;
  expect_refused<FileError>([&] { check_checkpoint_matches(s, wider, step_); },
                            {"state.json", "model.d_model is 32 in the checkpoint, 64 in this run"});
}

// A LoRA rank above the smaller side of a target and an adapter bottleneck of 0 are refused while
// the configuration is resolved, before any tensor exists.
TEST(PeftRefusal, RankAboveTheSmallerSideAndAZeroBottleneckAreNamed) {
  RunConfig c = fixtures::tiny_config("lora");
  c.model.n_kv_head = 2;  // k and v are 32 x 16
  c.peft.r = 20;
  expect_refused<ConfigError>([&] { resolve_run_config(c); }, {"peft.r: 20 exceeds the smaller side of target k (16 x 32)"});
  c.peft.r = 16;
  EXPECT_NO_THROW(resolve_run_config(c));

  RunConfig a = fixtures::tiny_config("adapter");
  a.peft.adapter_size = 0;
  a.peft.adapter_reduction = 64;
  expect_refused<ConfigError>([&] { resolve_run_config(a); },
                              {"peft.adapter_reduction: 64 leaves a bottleneck of 0 for model.d_model 32"});
  a.peft.adapter_reduction = 32;
  EXPECT_NO_THROW(resolve_run_config(a));
}

// Paths of the wrong kind are named as such, not as missing files or a C++ library message.
TEST(PathRefusal, DirectoriesAndFifosWhereFilesBelong) {
  const std::string d = scratch("paths");
  RunConfig c = fixtures::tiny_config("lora");
  c.data.tokenizer = d;
  expect_refused<ConfigError>([&] { load_tokenizer(c); }, {"data.tokenizer: " + d + " is a directory"});

  const std::string fifo = d + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  expect_refused<FileError>([&] { expand_paths({fifo}); }, {fifo + ": not a regular file (a FIFO"});
  expect_refused<FileError>([&] { expand_paths({d + "/absent.txt"}); }, {"absent.txt: no such file or directory"});
  expect_refused<FileError>([&] { read_file(d); }, {d + ": is a directory"});
  fs::remove_all(d);
}
