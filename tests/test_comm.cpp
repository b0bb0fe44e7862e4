// The Communicator under real MPI processes (ctest runs this with -np 2 and -np 4): every
// collective and dtype against a closed-form expectation, async against blocking, grid groups,
// and the ledger's counts for a known sequence of calls. NCCL cases skip without a GPU.
#include <gtest/gtest.h>

#include "dist/check.h"
#include "dist/cost_model.h"
#include "dist/mpi_communicator.h"
#include "dist/mpi_env.h"
#include "dist/nccl_communicator.h"
#include "dist/process_grid.h"

using namespace ds;

namespace {
std::unique_ptr<MpiCommunicator> world_comm() {
  MPI_Comm c;
  MPI_Comm_dup(MPI_COMM_WORLD, &c);
  return std::make_unique<MpiCommunicator>(c, CommOptions{"world", 60, std::make_shared<Ledger>()});
}
// Rank r holds (r + 1) · (i + 1) at element i.
torch::Tensor ramp(int rank, int64_t n, torch::ScalarType t) {
  return (torch::arange(1, n + 1, torch::kDouble) * (rank + 1)).to(t);
}
}  // namespace

TEST(Comm, AllReduceEveryDtypeAndOp) {
  auto c = world_comm();
  const int n = c->size(), r = c->rank();
  const double sum_ranks = n * (n + 1) / 2.0;  // Σ (r+1)
  for (auto dt : {torch::kFloat, torch::kDouble, torch::kBFloat16, torch::kHalf, torch::kLong}) {
    const auto expect = [&](double f) { return torch::arange(1, 9, torch::kDouble) * f; };
    torch::Tensor s = ramp(r, 8, dt);
    c->all_reduce(s, ReduceOp::Sum, "test");
    EXPECT_TRUE(torch::allclose(s.to(torch::kDouble), expect(sum_ranks), 1e-2, 0)) << dt;
    torch::Tensor m = ramp(r, 8, dt);
    c->all_reduce(m, ReduceOp::Max, "test");
    EXPECT_TRUE(torch::allclose(m.to(torch::kDouble), expect(n), 1e-2, 0)) << dt;
    torch::Tensor a = ramp(r, 8, dt) * 2;
    c->all_reduce(a, ReduceOp::Avg, "test");
    EXPECT_TRUE(torch::allclose(a.to(torch::kDouble), expect(2 * sum_ranks / n), 1e-2, 0)) << dt;
  }
}

TEST(Comm, AllGatherReduceScatterBroadcastAndFlatList) {
  auto c = world_comm();
  const int n = c->size(), r = c->rank();
  torch::Tensor piece = torch::full({3}, static_cast<float>(r));
  torch::Tensor all = torch::empty({3 * n});
  c->all_gather(piece, all, "test");
  for (int i = 0; i < n; ++i) EXPECT_TRUE(torch::equal(all.narrow(0, 3 * i, 3), torch::full({3}, float(i))));
  torch::Tensor in = torch::arange(2 * n, torch::kFloat) + r;  // element j: j + r
  torch::Tensor out = torch::empty({2});
  c->reduce_scatter(in, out, ReduceOp::Sum, "test");
  const float base = n * (n - 1) / 2.0f;
  EXPECT_FLOAT_EQ(out[0].item<float>(), n * (2 * r) + base);
  EXPECT_FLOAT_EQ(out[1].item<float>(), n * (2 * r + 1) + base);
  torch::Tensor b = torch::full({4}, r == n - 1 ? 42.0 : -1.0, torch::kDouble);
  c->broadcast(b, n - 1, "test");
  EXPECT_TRUE(torch::equal(b, torch::full({4}, 42.0, torch::kDouble)));
  std::vector<torch::Tensor> list{torch::full({2, 2}, float(r)), torch::full({3}, 1.0f)};
  c->all_reduce(list, ReduceOp::Sum, "test");
  EXPECT_TRUE(torch::equal(list[0], torch::full({2, 2}, base)));
  EXPECT_TRUE(torch::equal(list[1], torch::full({3}, float(n))));
}

TEST(Comm, AsyncAgreesWithBlocking) {
  auto c = world_comm();
  const int r = c->rank();
  torch::Tensor x = torch::randn({1000}) + r, y = x.clone();
  torch::Tensor piece = torch::empty({1000 / c->size() + 0});
  Work w = c->all_reduce_async(x, ReduceOp::Avg, "async");
  c->progress();
  w.wait();
  c->all_reduce(y, ReduceOp::Avg, "blocking");
  EXPECT_TRUE(torch::equal(x, y));
  const int64_t k = 10;
  torch::Tensor big = torch::arange(k * c->size(), torch::kFloat) * (r + 1), out1 = torch::empty({k}), out2 = torch::empty({k});
  Work w2 = c->reduce_scatter_async(big, out1, ReduceOp::Sum, "async");
  w2.wait();
  c->reduce_scatter(big, out2, ReduceOp::Sum, "blocking");
  EXPECT_TRUE(torch::equal(out1, out2));
}

TEST(Comm, LedgerCountsAndBytesOfAKnownSequence) {
  auto c = world_comm();
  const int n = c->size();
  LedgerScope scope(c->ledger());
  torch::Tensor a = torch::ones({100});
  c->all_reduce(a, ReduceOp::Sum, "x.one");
  c->all_reduce(a, ReduceOp::Sum, "x.two");
  torch::Tensor piece = torch::ones({10}, torch::kDouble), all = torch::empty({10 * n}, torch::kDouble);
  c->all_gather(piece, all, "y.gather");
  const CommTotals t = scope.total("world", "", "x.");
  EXPECT_EQ(t.calls, 2);
  EXPECT_EQ(t.bytes, 2 * 400);
  EXPECT_DOUBLE_EQ(t.wire_bytes, 2 * 2.0 * (n - 1) / n * 400);
  const CommTotals g = scope.total("", "", "y.");
  EXPECT_EQ(g.calls, 1);
  EXPECT_EQ(g.bytes, 80);
  EXPECT_DOUBLE_EQ(g.wire_bytes, (n - 1) * 80.0);
  EXPECT_EQ(scope.records().size(), 3u);
  EXPECT_EQ(scope.by_tag().at("x.one").calls, 1);
}

TEST(Grid, GroupsTalkOnlyInsideThemselves) {
  const int n = world_size();
  for (int tp : {1, 2, n}) {
    if (n % tp != 0) continue;
    ProcessGrid g = make_grid(GridOptions{tp, Backend::Mpi, 60});
    EXPECT_EQ(g.dp * g.tp, n);
    // TP group of dp index d holds world ranks d·tp .. d·tp+tp-1: the sum of ranks is closed form.
    torch::Tensor x = torch::full({1}, static_cast<double>(g.world_rank), torch::kDouble);
    g.tp_group->all_reduce(x, ReduceOp::Sum, "t");
    const double d = g.dp_rank;
    EXPECT_DOUBLE_EQ(x.item<double>(), tp * d * tp + tp * (tp - 1) / 2.0);
    torch::Tensor y = torch::full({1}, static_cast<double>(g.world_rank), torch::kDouble);
    g.dp_group->all_reduce(y, ReduceOp::Sum, "d");
    // DP group of tp index t holds t, t+tp, t+2tp, ...
    EXPECT_DOUBLE_EQ(y.item<double>(), g.dp * g.tp_rank + tp * g.dp * (g.dp - 1) / 2.0);
    char name[MPI_MAX_OBJECT_NAME];
    int len = 0;
    MPI_Comm_get_name(dynamic_cast<MpiCommunicator&>(*g.tp_group).comm(), name, &len);
    EXPECT_STREQ(name, "deltashard.tp");
  }
  if (n > 1) EXPECT_THROW(make_grid(GridOptions{n + 1, Backend::Mpi, 60}), ConfigError);
}

TEST(Nccl, BackendSharesTheSuiteWhereAGpuExists) {
  if (!nccl_compiled()) GTEST_SKIP() << "built without NCCL";
  if (cuda_device_count() == 0 || !torch::cuda::is_available()) {
    GTEST_SKIP() << "NCCL backend compiled and linked, but no CUDA device (or a CPU-only LibTorch): skipped";
  }
  ProcessGrid g = make_grid(GridOptions{1, Backend::Nccl, 60});
  torch::Tensor x = torch::ones({16}, torch::TensorOptions().device(torch::kCUDA)) * (g.world_rank + 1);
  g.world->all_reduce(x, ReduceOp::Sum, "nccl");
  EXPECT_FLOAT_EQ(x[0].item<float>(), g.world_size * (g.world_size + 1) / 2.0f);
}

// The alpha-beta model in closed form, and the fit recovering the link it was fed.
TEST(CostModel, RingTreeAndFit) {
  const LinkModel link{1.0, 100.0, "test"};  // 1 us per step, 100 GB/s = 1e5 bytes/us
  // all_reduce of 1e8 bytes on 8 ranks: ring 14·1 + 2·7/8·1e8/1e5 = 1764 us; tree 6 + 2000.
  EXPECT_NEAR(collective_us(CollectiveOp::AllReduce, 100000000, 8, link), 1764.0, 1e-9);
  // 1e6 bytes: ring 14 + 17.5 = 31.5; tree 2·3 + 20 = 26: the tree wins.
  EXPECT_NEAR(collective_us(CollectiveOp::AllReduce, 1000000, 8, link), 26.0, 1e-9);
  // all_gather of a 1e6-byte piece on 4 ranks: 3 steps + 3·1e6/1e5.
  EXPECT_NEAR(collective_us(CollectiveOp::AllGather, 1000000, 4, link), 33.0, 1e-9);
  EXPECT_EQ(collective_us(CollectiveOp::AllReduce, 1000000, 1, link), 0.0);

  const LinkModel truth{3.0, 12.5, "truth"};
  std::vector<CommSample> samples;
  for (int64_t b = 8; b <= (1 << 24); b *= 4) {
    samples.push_back({"all_reduce", b, 2, collective_us(CollectiveOp::AllReduce, b, 2, truth)});
  }
  const LinkModel fit = fit_link(samples);
  EXPECT_NEAR(fit.alpha_us, 3.0, 1e-6);
  EXPECT_NEAR(fit.busbw_gbps, 12.5, 1e-6);
  EXPECT_THROW(fit_link({samples[0]}), std::invalid_argument);
  EXPECT_THROW(fit_link({samples[0], {"all_sum", 8, 2, 1.0}}), std::invalid_argument);
  EXPECT_EQ(collective_op("reduce_scatter"), CollectiveOp::ReduceScatter);
  EXPECT_STREQ(enum_name(CollectiveOp::AllGather), "all_gather");
}
