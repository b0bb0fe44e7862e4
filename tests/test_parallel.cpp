// Data and tensor parallelism under real MPI processes (ctest: -np 2 and -np 4). Every sharded or
// data-parallel run is compared with an unsharded, single-rank reference computed on the same rank
// (a grid over MPI_COMM_SELF) on the same data.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/linear.h"
#include "dist/dry_run.h"
#include "dist/mpi_env.h"
#include "dist/tp_gather.h"
#include "test_helpers.h"
#include "trainer/trainer.h"

using namespace ds;

namespace {
ProcessGrid self_grid() { return make_grid(GridOptions{1, Backend::Mpi, 60, MPI_COMM_SELF}); }

// Trainable parameters as whole tensors (TP shards gathered), by name.
std::map<std::string, torch::Tensor> trainable_full(Trainer& s) {
  NamedTensors local;
  for (auto& item : s.model()->named_parameters()) {
    if (item.value().requires_grad()) local.emplace_back(item.key(), item.value().detach().clone());
  }
  std::map<std::string, torch::Tensor> out;
  for (auto& [n, t] : gather_tp(local, collect_param_shards(*s.model()), *s.grid().tp_group, "test.gather")) out[n] = t;
  return out;
}

void run(Trainer& s) {
  while (!s.done()) s.step();
}

void expect_same_weights(Trainer& a, Trainer& ref, double tol, const std::string& what) {
  auto wa = trainable_full(a), wr = trainable_full(ref);
  ASSERT_EQ(wa.size(), wr.size()) << what;
  for (auto& [n, t] : wr) {
    ASSERT_TRUE(wa.count(n)) << what << ": " << n;
    // softmax(q·(k+b)) does not depend on the key bias b: its gradient is zero in exact arithmetic,
    // so Adam turns rounding noise into full-size steps and the values cannot be compared.
    if (n.find("attn.k.bias") != std::string::npos) continue;
    const double rel = (wa[n] - t).norm().item<double>() / std::max(1e-12, t.norm().item<double>());
    EXPECT_LT(rel, tol) << what << ": " << n;
  }
}
}  // namespace

class DataParallel : public ::testing::TestWithParam<std::tuple<std::string, bool, int>> {};

TEST_P(DataParallel, EqualsOneRankWithGradientAccumulation) {
  const auto [method, overlap, zero] = GetParam();
  const int n = world_size();
  RunConfig c = fixtures::tiny_config(method);
  c.parallel.overlap_grad_sync = overlap;
  c.parallel.zero = zero;
  c.parallel.bucket_mb = 0.002;  // several buckets even for this tiny model
  ProcessGrid grid = make_grid(GridOptions{1, Backend::Mpi, 60});
  Trainer dp(c, grid);
  run(dp);
  RunConfig rc = c;
  rc.train.grad_accum = n;
  rc.parallel = ParallelConfig{};
  ProcessGrid self = self_grid();
  Trainer ref(rc, self);
  run(ref);
  expect_same_weights(dp, ref, 1e-5, method);
  // Only trainable parameters are in buckets, and the ledger's gradient bytes are 4 × their count.
  int64_t trainable = 0;
  for (auto& item : dp.model()->named_parameters()) trainable += item.value().requires_grad() ? item.value().numel() : 0;
  EXPECT_EQ(dp.grad_sync().trainable_numel(), trainable);
  if (n > 1 && zero == 0) {
    const StepResult r = dp.step();
    const CommTotals g = sum_records(r.comm, "dp", "", "dp.grads");
    int64_t padded = 0;
    for (const auto& b : dp.grad_sync().buckets()) padded += b.padded;
    EXPECT_EQ(g.bytes, 4 * padded);
    EXPECT_LE(padded - trainable, static_cast<int64_t>(dp.grad_sync().buckets().size()) * (n - 1));
    EXPECT_EQ(g.calls, static_cast<int64_t>(dp.grad_sync().buckets().size()));
  }
}

// Instruction data: the step's loss divides by the global count of counted targets, which differs
// from rank to rank; DP = world equals one rank accumulating the same micro batches, packed or not.
TEST(DataParallelInstructions, EqualsOneRankWithTheGlobalCountOfCountedTokens) {
  for (bool packing : {false, true}) {
    const int n = world_size();
    RunConfig c = fixtures::tiny_config("lora");
    c.model.vocab_size = 257;
    c.data.paths = {fixtures::jsonl_file()};
    c.data.format = DataFormat::Jsonl;
    c.data.packing = packing;
    c.train.seq_len = 24;
    ProcessGrid grid = make_grid(GridOptions{1, Backend::Mpi, 60});
    Trainer dp(c, grid);
    RunConfig rc = c;
    rc.train.grad_accum = n;
    rc.parallel = ParallelConfig{};
    ProcessGrid self = self_grid();
    Trainer ref(rc, self);
    while (!dp.done()) {
      const StepResult a = dp.step(), b = ref.step();
      EXPECT_NEAR(a.loss, b.loss, 1e-5 * std::abs(b.loss)) << "packing " << packing;
      EXPECT_EQ(a.counted, b.counted);
      EXPECT_EQ(a.tokens, b.tokens);
      const CommTotals k = sum_records(a.comm, "dp", "", "dp.counted_tokens");
      EXPECT_EQ(k.calls, 1);
      EXPECT_EQ(k.bytes, 16);
    }
    expect_same_weights(dp, ref, 1e-5, packing ? "packed" : "unpacked");
    const EvalResult ea = dp.evaluate(), eb = ref.evaluate();
    EXPECT_NEAR(ea.loss, eb.loss, 1e-6 * eb.loss);
    EXPECT_EQ(ea.tokens, eb.tokens);
  }
}

// train.epochs: steps from the number of training sequences and the global batch.
TEST(DataParallelInstructions, EpochsGiveStepsFromTheData) {
  RunConfig c = fixtures::tiny_config("lora");
  c.model.vocab_size = 257;
  c.data.paths = {fixtures::jsonl_file()};
  c.data.format = DataFormat::Jsonl;
  c.train.seq_len = 24;
  c.train.epochs = 2;
  ProcessGrid grid = make_grid(GridOptions{1, Backend::Mpi, 60});
  Trainer s(c, grid);
  const int64_t global = c.train.micro_batch * grid.dp;
  EXPECT_EQ(s.config().train.steps, (2 * s.sft()->num_train_rows() + global - 1) / global);
  EXPECT_EQ(s.config().train.epochs, 0);
}

INSTANTIATE_TEST_SUITE_P(Methods, DataParallel,
                         ::testing::Values(std::make_tuple("lora", false, 0), std::make_tuple("adapter", false, 0),
                                           std::make_tuple("full", false, 0), std::make_tuple("lora", true, 0),
                                           std::make_tuple("full", true, 0), std::make_tuple("lora", false, 1),
                                           std::make_tuple("full", true, 1)));

TEST(Resume, HalfThenResumeEqualsStraightEvenAtAnotherDpSize) {
  const int n = world_size();
  const std::string dir = "/tmp/deltashard_resume_" + std::to_string(static_cast<long>(getppid()));
  for (int zero : {0, 1}) {
    RunConfig c = fixtures::tiny_config("lora");
    c.train.steps = 4;
    c.parallel.zero = zero;
    ProcessGrid grid = make_grid(GridOptions{1, Backend::Mpi, 60});
    Trainer straight(c, grid);
    run(straight);
    RunConfig half = c;
    Trainer first(half, grid);
    first.step();
    first.step();
    first.save_checkpoint(dir);
    // Resume on one rank with grad_accum = n: the same global batches.
    RunConfig rc = c;
    rc.train.grad_accum = n;
    rc.parallel = ParallelConfig{};
    ProcessGrid self = self_grid();
    Trainer resumed(rc, self, TrainerOptions{dir});
    EXPECT_EQ(resumed.step_index(), 2);
    run(resumed);
    expect_same_weights(resumed, straight, 1e-5, "zero " + std::to_string(zero));
    MPI_Barrier(MPI_COMM_WORLD);
    if (world_rank() == 0) std::filesystem::remove_all(dir);
  }
}

class TensorParallel : public ::testing::TestWithParam<std::string> {};

TEST_P(TensorParallel, ShardedTrainingMatchesUnsharded) {
  const std::string variant = GetParam();
  const int n = world_size();
  const bool bf16 = variant.size() > 5 && variant.substr(variant.size() - 5) == "_bf16";
  const std::string method = variant.substr(0, variant.find('_'));
  RunConfig c = fixtures::tiny_config(method);
  if (variant == "adapter_replicated") c.peft.adapter_tp = AdapterTp::Replicated;
  // A bf16 base: the partial sums of row-parallel layers are added in another order than the
  // unsharded product's, so results agree to bf16's rounding, not float32's.
  if (bf16) c.model.dtype = DType::Bf16;
  // Adam divides by the gradient's own scale, so a rounding-level difference in a small gradient
  // moves its weight by up to a whole step: weights agree loosely (a wrong shard is off by ~1).
  const double loss_tol = bf16 ? 1e-2 : 1e-5, weight_tol = bf16 ? 0.25 : 1e-4;
  ProcessGrid tp = make_grid(GridOptions{n, Backend::Mpi, 60});
  Trainer sharded(c, tp);
  ProcessGrid self = self_grid();
  Trainer ref(c, self);
  // Step by step: the same loss (forward), then the same weights after the optimizer.
  while (!ref.done()) {
    const double a = sharded.step().loss, b = ref.step().loss;
    EXPECT_NEAR(a, b, loss_tol * std::abs(b)) << variant;
  }
  expect_same_weights(sharded, ref, weight_tol, variant);
  // Checkpoints hold whole tensors: one saved at TP = n loads and evaluates the same at TP = 1.
  const std::string dir = "/tmp/deltashard_tp_ckpt_" + std::to_string(static_cast<long>(getppid()));
  sharded.save_checkpoint(dir);
  Trainer again(c, self);
  again.load_trainable(dir);
  EXPECT_NEAR(again.evaluate().loss, sharded.evaluate().loss, bf16 ? 1e-2 : 1e-4);
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Variants, TensorParallel,
                         ::testing::Values("lora", "adapter_sharded", "adapter_replicated", "full", "lora_bf16",
                                           "full_bf16"));

TEST(TensorParallelLedger, LoraAddsNoCollectiveShardedAdaptersAddTwoPerLayerEachWay) {
  const int n = world_size();
  if (n == 1) GTEST_SKIP() << "needs more than one rank";
  ProcessGrid tp = make_grid(GridOptions{n, Backend::Mpi, 60});
  auto one_step = [&](const std::string& method, const std::string& adapter_tp) {
    RunConfig c = fixtures::tiny_config(method);
    c.peft.adapter_tp = *enum_from<AdapterTp>(adapter_tp);
    Trainer s(c, tp);
    const StepResult r = s.step();
    return std::make_pair(sum_records(r.comm, "tp", "fwd", "").calls, sum_records(r.comm, "tp", "bwd", "").calls);
  };
  const int64_t L = fixtures::tiny_config("lora").model.n_layer;
  const auto full = one_step("full", "sharded");
  const auto lora = one_step("lora", "sharded");
  const auto sharded = one_step("adapter", "sharded");
  const auto replicated = one_step("adapter", "replicated");
  EXPECT_EQ(full, std::make_pair(2 * L, 2 * L));  // Megatron: 2 forward, 2 backward per layer
  EXPECT_EQ(lora.first, 2 * L);                   // no collective added to forward...
  // ...nor to backward; the first layer's input gradient is not needed when nothing below trains.
  EXPECT_EQ(lora.second, 2 * L - 1);
  EXPECT_EQ(sharded, std::make_pair(4 * L, 4 * L));  // Houlsby: +2 adapters × 1 each way per layer
  EXPECT_EQ(replicated, full);
}

// comm-model's premise: one step on a dry-run grid records exactly the collectives (operation,
// group, group size, tag, phase, payload) that the same step records on real processes.
TEST(DryRunGrid, RecordsTheSameScheduleAsRealProcesses) {
  const int n = world_size();
  if (n == 1) GTEST_SKIP() << "needs more than one rank";
  for (const int tp : {1, 2}) {
    if (n % tp != 0) continue;
    for (const std::string method : {"lora", "adapter", "full"}) {
      for (const int zero : {0, 1}) {
        RunConfig c = fixtures::tiny_config(method);
        c.parallel.tp = tp;
        c.parallel.zero = zero;
        c.parallel.bucket_mb = 0.002;
        ProcessGrid real = make_grid(GridOptions{tp, Backend::Mpi, 60});
        ProcessGrid dry = make_dry_run_grid(n / tp, tp);
        Trainer a(c, real), b(c, dry);
        auto key = [](const std::vector<CommRecord>& rs) {
          std::vector<std::string> out;
          for (const auto& r : rs) {
            out.push_back(r.op + " " + r.group + "/" + std::to_string(r.group_size) + " " + r.tag + " " + r.phase +
                          " " + std::to_string(r.bytes));
          }
          return out;
        };
        const std::string what = method + " tp " + std::to_string(tp) + " zero " + std::to_string(zero);
        const auto want = key(a.step().comm);
        EXPECT_EQ(key(b.step().comm), want) << what;
        EXPECT_FALSE(want.empty()) << what;
      }
    }
  }
}

// Checkpoints do not depend on TP: saved at dp 2 × tp 2, resumed at tp 4 and at tp 1 (same global
// batch through grad_accum), both continue exactly like straight training; merged at tp 4 and at
// tp 1 they evaluate like the unmerged model.
TEST(TensorParallelCheckpoint, SavedAtTp2ResumesAndMergesAtTp1AndTp4) {
  if (world_size() != 4) GTEST_SKIP() << "needs 4 ranks";
  const std::string dir = "/tmp/deltashard_tp_resume_" + std::to_string(static_cast<long>(getppid()));
  RunConfig c = fixtures::tiny_config("lora");
  c.train.steps = 4;
  RunConfig one = c;  // dp 1: two micro-batches make the same global batch as dp 2
  one.train.grad_accum = 2;
  ProcessGrid self = self_grid();
  Trainer straight(one, self);
  run(straight);

  RunConfig c22 = c;
  c22.parallel.tp = 2;
  ProcessGrid g22 = make_grid(GridOptions{2, Backend::Mpi, 60});
  Trainer first(c22, g22);
  first.step();
  first.step();
  first.save_checkpoint(dir);

  RunConfig c4 = one;
  c4.parallel.tp = 4;
  ProcessGrid g4 = make_grid(GridOptions{4, Backend::Mpi, 60});
  Trainer at4(c4, g4, TrainerOptions{dir});
  EXPECT_EQ(at4.step_index(), 2);
  run(at4);
  expect_same_weights(at4, straight, 1e-4, "resumed at tp 4");
  Trainer at1(one, self, TrainerOptions{dir});
  run(at1);
  expect_same_weights(at1, straight, 1e-4, "resumed at tp 1");

  for (Trainer* s : {&at4, &at1}) {
    const double unmerged = s->evaluate().loss;
    for (auto& [name, layer] : lora_layers(s->model())) layer->merge();
    EXPECT_NEAR(s->evaluate().loss, unmerged, 1e-5 * unmerged);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) std::filesystem::remove_all(dir);
}

// The LLaMA variant under TP = 2 (grouped-query attention: 2 key/value heads, one per rank;
// SwiGLU's gate column-parallel like up), with LoRA on every projection including the gate:
// the same losses step by step and the same trained factors as one unsharded rank.
TEST(TensorParallelLlama, ShardedGqaSwigluLoraMatchesUnsharded) {
  const int n = world_size();
  if (n % 2 != 0) GTEST_SKIP() << "needs an even number of ranks";
  RunConfig c = fixtures::tiny_config("lora");
  c.model.norm = NormKind::RmsNorm;
  c.model.activation = Activation::SwiGlu;
  c.model.positions = Positions::Rope;
  c.model.bias = false;
  c.model.n_kv_head = 2;
  c.model.tie_embeddings = false;
  c.peft.targets = {"q", "k", "v", "o", "gate", "up", "down"};
  c.parallel.tp = 2;
  ProcessGrid tp = make_grid(GridOptions{2, Backend::Mpi, 60});
  Trainer sharded(c, tp);
  RunConfig rc = c;
  rc.parallel = ParallelConfig{};
  rc.train.grad_accum = n / 2;  // the same global batch on one rank
  ProcessGrid self = self_grid();
  Trainer ref(rc, self);
  while (!ref.done()) {
    const double a = sharded.step().loss, b = ref.step().loss;
    EXPECT_NEAR(a, b, 1e-5 * std::abs(b));
  }
  expect_same_weights(sharded, ref, 1e-4, "llama tp 2");
}

// train.recompute: layer keeps only each block's input and runs its forward again in backward:
// the same numbers bit for bit (dropout masks replayed), unsharded and at TP = world size, and
// under TP the recomputed forward repeats the forward's collectives, which the ledger records.
TEST(Recompute, EqualsKeepingActivationsExactlyAndRepeatsTheForwardCollectives) {
  const int n = world_size();
  for (const char* method : {"lora", "full"}) {
    for (int tp : {1, n}) {
      RunConfig c = fixtures::tiny_config(method);
      c.peft.dropout = 0.1;  // masks must be replayed, not redrawn
      RunConfig r = c;
      r.train.recompute = Recompute::Layer;
      ProcessGrid g1 = tp == 1 ? self_grid() : make_grid(GridOptions{tp, Backend::Mpi, 60});
      ProcessGrid g2 = tp == 1 ? self_grid() : make_grid(GridOptions{tp, Backend::Mpi, 60});
      Trainer keep(c, g1), again(r, g2);
      while (!keep.done()) {
        const StepResult a = keep.step(), b = again.step();
        EXPECT_EQ(a.loss, b.loss) << method << " tp " << tp;
        const auto count = [](const StepResult& s, const char* phase) {
          return sum_records(s.comm, "tp", phase, "").calls;
        };
        EXPECT_EQ(count(b, "fwd"), count(a, "fwd"));
        EXPECT_EQ(count(b, "bwd"), count(a, "bwd"));
        EXPECT_EQ(count(b, "recompute"), count(a, "fwd")) << "the recomputed forward repeats every forward collective";
      }
      auto wa = trainable_full(keep), wb = trainable_full(again);
      for (auto& [name, t] : wa) EXPECT_TRUE(torch::equal(t, wb.at(name))) << method << " tp " << tp << " " << name;
    }
  }
}
