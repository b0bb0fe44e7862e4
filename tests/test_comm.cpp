// The Communicator under real MPI processes (ctest runs this with -np 2 and -np 4): every
// collective and dtype against a closed-form expectation, on each backend and device (MPI on CPU,
// MPI on CUDA through host copies, NCCL on CUDA), async against blocking, grid groups, the ledger's
// counts for a known sequence of calls, and the arrival messages that name a stalled rank.
// Small integers are exact in every dtype used, and so are their sums: results compare exactly.
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include "dist/arrivals.h"
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
  MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &c));
  return std::make_unique<MpiCommunicator>(c, CommOptions{"world", 60, std::make_shared<Ledger>()});
}
// Rank r holds (r + 1) · (i + 1) at element i.
torch::Tensor ramp(int rank, int64_t n, torch::ScalarType t) {
  return (torch::arange(1, n + 1, torch::kDouble) * (rank + 1)).to(t);
}

// Why NCCL cannot run here, or "" when it can. The same answer on every rank (decided together),
// so that no rank builds an NCCL communicator the others will never join.
std::string nccl_unusable() {
  std::string why;
  if (!nccl_compiled()) {
    why = "built without NCCL";
  } else if (!torch::cuda::is_available()) {
    why = "NCCL compiled, but no CUDA device (or a CPU-only LibTorch)";
  } else if (local_size() > static_cast<int>(torch::cuda::device_count())) {
    // NCCL refuses two ranks on one GPU ("invalid usage").
    why = "NCCL needs one GPU per rank: " + std::to_string(local_size()) + " ranks share " +
          std::to_string(torch::cuda::device_count()) + " GPU" + (torch::cuda::device_count() == 1 ? "" : "s");
  }
  int ok = why.empty() ? 1 : 0, all_ok = 0;
  MPI_CHECK(MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
  if (ok && !all_ok) why = "NCCL cannot run on another rank";
  return why;
}

struct Case {
  Backend backend;
  torch::DeviceType device;
  const char* name;
};

// One communicator over the whole world on a backend, and tensors on that backend's device.
class Collectives : public testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    const Case s = GetParam();
    if (s.device == torch::kCUDA && !torch::cuda::is_available()) {
      GTEST_SKIP() << "no CUDA device (torch::cuda::is_available() is false)";
    }
    if (s.backend == Backend::Nccl) {
      const std::string why = nccl_unusable();
      if (!why.empty()) GTEST_SKIP() << why;
    }
    if (s.device == torch::kCUDA) {
      // With the MPI backend several ranks share a GPU; with NCCL each has its own.
      device_ = torch::Device(torch::kCUDA, static_cast<int8_t>(local_rank() % torch::cuda::device_count()));
    }
    if (s.backend == Backend::Mpi) {
      comm_ = world_comm();
    } else {
#ifdef DELTASHARD_HAVE_NCCL
      MPI_Comm c;
      MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &c));
      comm_ = std::make_unique<NcclCommunicator>(c, device_.index(), CommOptions{"world", 60, std::make_shared<Ledger>()});
      MPI_CHECK(MPI_Comm_free(&c));
#endif
    }
  }
  torch::TensorOptions on(torch::ScalarType t = torch::kFloat) const { return torch::TensorOptions(t).device(device_); }
  bool mpi() const { return GetParam().backend == Backend::Mpi; }

  std::unique_ptr<Communicator> comm_;
  torch::Device device_ = torch::kCPU;
};

// Exact equality, on the CPU, with a message naming the two tensors.
void expect_equal(const torch::Tensor& got, const torch::Tensor& want, const std::string& what) {
  const torch::Tensor g = got.cpu(), w = want.cpu().to(g.scalar_type());
  EXPECT_TRUE(torch::equal(g, w)) << what << ": got " << g << ", expected " << w;
}
}  // namespace

TEST_P(Collectives, AllReduceEveryDtypeAndOp) {
  Communicator& c = *comm_;
  const int n = c.size(), r = c.rank();
  const int64_t sum_ranks = n * (n + 1) / 2;  // Σ (r+1)
  const torch::Tensor idx = torch::arange(1, 9, torch::kDouble);
  for (auto dt : {torch::kFloat, torch::kDouble, torch::kBFloat16, torch::kHalf, torch::kLong}) {
    const std::string name = c10::toString(dt);
    // The largest value, 8 · Σ(r+1) = 80 at 4 ranks, and every partial sum are integers that
    // bfloat16's 8-bit significand holds exactly.
    torch::Tensor s = ramp(r, 8, dt).to(device_);
    c.all_reduce(s, ReduceOp::Sum, "test");
    expect_equal(s, idx * sum_ranks, "sum " + name);
    torch::Tensor m = ramp(r, 8, dt).to(device_);
    c.all_reduce(m, ReduceOp::Max, "test");
    expect_equal(m, idx * n, "max " + name);
    // 2 · (i+1) · Σ(r+1) / n = (i+1)(n+1): an integer. MPI sums, then divides once (exact);
    // NCCL averages floats by multiplying each input by 1/n, exact only for n a power of two.
    torch::Tensor a = (ramp(r, 8, dt) * 2).to(device_);
    c.all_reduce(a, ReduceOp::Avg, "test");
    const torch::Tensor want = idx * (n + 1);
    if (mpi() || (n & (n - 1)) == 0 || dt == torch::kLong) {
      expect_equal(a, want, "avg " + name);
    } else {
      EXPECT_TRUE(torch::allclose(a.cpu().to(torch::kDouble), want, 1e-2, 0)) << "avg " << name;
    }
  }
}

TEST_P(Collectives, AllGatherReduceScatterBroadcastAndFlatList) {
  Communicator& c = *comm_;
  const int n = c.size(), r = c.rank();
  torch::Tensor piece = torch::full({3}, static_cast<float>(r), on());
  torch::Tensor all = torch::empty({3 * n}, on());
  c.all_gather(piece, all, "test");
  for (int i = 0; i < n; ++i) expect_equal(all.narrow(0, 3 * i, 3), torch::full({3}, float(i)), "all_gather");
  torch::Tensor in = torch::arange(2 * n, on()) + r;  // element j: j + r
  torch::Tensor out = torch::empty({2}, on());
  c.reduce_scatter(in, out, ReduceOp::Sum, "test");
  // Element j summed over ranks: n·j + Σr, with j = 2r and 2r + 1 for this rank's piece.
  const int64_t base = n * (n - 1) / 2;
  const torch::Tensor got = out.cpu().to(torch::kLong);
  EXPECT_EQ(got[0].item<int64_t>(), n * (2 * r) + base);
  EXPECT_EQ(got[1].item<int64_t>(), n * (2 * r + 1) + base);
  torch::Tensor b = torch::full({4}, r == n - 1 ? 42.0 : -1.0, on(torch::kDouble));
  c.broadcast(b, n - 1, "test");
  expect_equal(b, torch::full({4}, 42.0, torch::kDouble), "broadcast");
  std::vector<torch::Tensor> list{torch::full({2, 2}, float(r), on()), torch::full({3}, 1.0f, on())};
  c.all_reduce(list, ReduceOp::Sum, "test");
  expect_equal(list[0], torch::full({2, 2}, float(base)), "flat list [0]");
  expect_equal(list[1], torch::full({3}, float(n)), "flat list [1]");
}

TEST_P(Collectives, AsyncAgreesWithBlocking) {
  Communicator& c = *comm_;
  const int r = c.rank();
  // Integer-valued floats: every order of summation is exact, so the non-blocking algorithm (its
  // own schedule) must agree bit for bit with the blocking one.
  torch::manual_seed(r);
  torch::Tensor x = torch::randint(-1000, 1000, {1000}, on()) + r, y = x.clone();
  Work w = c.all_reduce_async(x, ReduceOp::Sum, "async");
  c.progress();
  w.wait();
  c.all_reduce(y, ReduceOp::Sum, "blocking");
  expect_equal(x, y, "all_reduce");
  const int64_t k = 10;
  torch::Tensor big = torch::arange(k * c.size(), on()) * (r + 1), out1 = torch::empty({k}, on()),
                out2 = torch::empty({k}, on());
  Work w2 = c.reduce_scatter_async(big, out1, ReduceOp::Sum, "async");
  w2.wait();
  c.reduce_scatter(big, out2, ReduceOp::Sum, "blocking");
  expect_equal(out1, out2, "reduce_scatter");
  torch::Tensor piece = torch::full({5}, float(r), on()), all = torch::empty({5 * c.size()}, on());
  Work w3 = c.all_gather_async(piece, all, "async");
  w3.wait();
  for (int i = 0; i < c.size(); ++i) expect_equal(all.narrow(0, 5 * i, 5), torch::full({5}, float(i)), "all_gather");
}

TEST_P(Collectives, LedgerCountsAndBytesOfAKnownSequence) {
  Communicator& c = *comm_;
  const int n = c.size();
  LedgerScope scope(c.ledger());
  const uint64_t before = c.entered();
  torch::Tensor a = torch::ones({100}, on());
  c.all_reduce(a, ReduceOp::Sum, "x.one");
  c.all_reduce(a, ReduceOp::Sum, "x.two");
  torch::Tensor piece = torch::ones({10}, on(torch::kDouble)), all = torch::empty({10 * n}, on(torch::kDouble));
  c.all_gather(piece, all, "y.gather");
  const CommTotals t = scope.total("world", "", "x.");
  EXPECT_EQ(t.calls, 2);
  EXPECT_EQ(t.bytes, 2 * 400);
  // 2(n-1)/n·400 and (n-1)·80 in double: the same expression on both sides, so exact.
  EXPECT_DOUBLE_EQ(t.wire_bytes, 2 * 2.0 * (n - 1) / n * 400);
  const CommTotals g = scope.total("", "", "y.");
  EXPECT_EQ(g.calls, 1);
  EXPECT_EQ(g.bytes, 80);
  EXPECT_DOUBLE_EQ(g.wire_bytes, (n - 1) * 80.0);
  EXPECT_EQ(scope.records().size(), 3u);
  EXPECT_EQ(scope.by_tag().at("x.one").calls, 1);
  EXPECT_EQ(scope.records()[0].op, "all_reduce");
  EXPECT_EQ(scope.records()[2].op, "all_gather");
  // A group of one rank enters nothing.
  EXPECT_EQ(c.entered() - before, n > 1 ? 3u : 0u);
}

INSTANTIATE_TEST_SUITE_P(Backends, Collectives,
                         testing::Values(Case{Backend::Mpi, torch::kCPU, "MpiCpu"},
                                         Case{Backend::Mpi, torch::kCUDA, "MpiCuda"},
                                         Case{Backend::Nccl, torch::kCUDA, "NcclCuda"}),
                         [](const testing::TestParamInfo<Case>& i) { return std::string(i.param.name); });

TEST(Grid, GroupsTalkOnlyInsideThemselves) {
  const int n = world_size();
  for (int tp : {1, 2, n}) {
    if (n % tp != 0) continue;
    ProcessGrid g = make_grid(GridOptions{tp, Backend::Mpi, 60});
    EXPECT_EQ(g.dp * g.tp, n);
    // TP group of dp index d holds world ranks d·tp .. d·tp+tp-1: the sum of ranks is closed form.
    torch::Tensor x = torch::full({1}, static_cast<int64_t>(g.world_rank), torch::kLong);
    g.tp_group->all_reduce(x, ReduceOp::Sum, "t");
    const int64_t d = g.dp_rank;
    EXPECT_EQ(x.item<int64_t>(), tp * d * tp + tp * (tp - 1) / 2);
    torch::Tensor y = torch::full({1}, static_cast<int64_t>(g.world_rank), torch::kLong);
    g.dp_group->all_reduce(y, ReduceOp::Sum, "d");
    // DP group of tp index t holds t, t+tp, t+2tp, ...
    EXPECT_EQ(y.item<int64_t>(), g.dp * g.tp_rank + tp * g.dp * (g.dp - 1) / 2);
    char name[MPI_MAX_OBJECT_NAME];
    int len = 0;
    MPI_CHECK(MPI_Comm_get_name(dynamic_cast<MpiCommunicator&>(*g.tp_group).comm(), name, &len));
    EXPECT_STREQ(name, "deltashard.tp");
  }
  if (n > 1) EXPECT_THROW(make_grid(GridOptions{n + 1, Backend::Mpi, 60}), ConfigError);
}

// The grid as the trainer builds it on GPUs: NCCL groups, the GPU picked as local_rank % devices.
TEST(Nccl, GridOnOneGpuPerRank) {
  const std::string why = nccl_unusable();
  if (!why.empty()) GTEST_SKIP() << why;
  ProcessGrid g = make_grid(GridOptions{1, Backend::Nccl, 60});
  const int dev = local_rank() % static_cast<int>(torch::cuda::device_count());
  torch::Tensor x = torch::ones({16}, torch::TensorOptions().device(torch::Device(torch::kCUDA, dev))) *
                    (g.world_rank + 1);
  g.world->all_reduce(x, ReduceOp::Sum, "nccl");
  EXPECT_EQ(x.cpu()[0].item<float>(), g.world_size * (g.world_size + 1) / 2.0f);
}

TEST(Comm, MpiRefusesTensorsOnADeviceItCannotReach) {
  // CPU and CUDA tensors are taken (CUDA through host copies); a meta tensor has no data at all.
  auto c = world_comm();
  torch::Tensor meta = torch::empty({4}, torch::TensorOptions().device(torch::kMeta));
  EXPECT_THROW(c->all_reduce(meta, ReduceOp::Sum, "meta"), std::invalid_argument);
}

// Every rank r announces r + 1 collectives; rank 0 then asks who has reached collective n.
TEST(Arrivals, CountAnnouncementsPerRank) {
  const int n = world_size(), r = world_rank();
  std::shared_ptr<Arrivals> a = Arrivals::open(MPI_COMM_WORLD, "test.arrivals");
  ASSERT_TRUE(a) << "MPI was not initialised with MPI_THREAD_MULTIPLE";
  for (int i = 0; i <= r; ++i) a->announce();
  MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
  if (r == 0) {
    const std::string got = a->explain(n, 0);
    if (n == 2) {
      EXPECT_EQ(got, "every rank of the group has arrived (the collective is stuck inside the communication library, "
                     "or a rank stopped inside it)");
    } else if (n == 4) {
      EXPECT_EQ(got, "ranks 1, 2 have not arrived (last announced collectives 2, 3 of 4)");
    }
  }
  MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
}

TEST(Arrivals, ExplainNamesTheLateRankAndNeverBlamesAPeerForOwnLateness) {
  const std::vector<int> world{4, 5, 6};  // a group whose world ranks are not its group ranks
  EXPECT_EQ(explain_stall(42, 0, {42, 41, 42}, world, 0),
            "rank 5 has not arrived (last announced collective 41 of 42)");
  EXPECT_EQ(explain_stall(1, 2, {0, 1, 1}, world, 0),
            "rank 4 has not arrived (no collective of this group announced; this is collective 1)");
  EXPECT_EQ(explain_stall(42, 0, {42, 40, 0}, world, 0),
            "ranks 5, 6 have not arrived (last announced collectives 40, none of 42)");
  // The rank that was stopped and resumed finds everybody else arrived before it.
  EXPECT_EQ(explain_stall(42, 1, {42, 42, 42}, world, 12.34),
            "every other rank of the group had arrived; this rank was suspended for 12.3 s, it is the late one");
  EXPECT_EQ(explain_stall(42, 1, {43, 42, 42}, world, 0),
            "this rank is behind (rank 4 announced collective 43, this rank is at 42)");
}

// The alpha-beta model in closed form, and the fit recovering the link it was fed. Tolerances here
// are real rounding: the closed forms divide, and the fit solves normal equations.
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
