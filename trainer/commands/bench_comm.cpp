// deltashard bench comm: collective latency and bandwidth over message sizes (nccl-tests
// definitions: algbw = size / time; busbw = algbw × 2(n-1)/n for all_reduce, (n-1)/n for
// all_gather and reduce_scatter, 1 for broadcast), and the same loop over the raw MPI call on the
// same communicator, interleaved iteration by iteration, so the Communicator's overhead is a
// measured ratio. Times are the per-rank medians, then the maximum over ranks. The Communicator's
// cost per call: checks, a ledger record, and with a timeout the watchdog and one zero-byte arrival
// message to every other rank (dist/arrivals.h); --timeout 0 measures it without the last two.
#include <mpi.h>

#include <algorithm>
#include <chrono>

#include "dist/check.h"
#include "dist/mpi_communicator.h"
#include "dist/mpi_env.h"
#include "trainer/commands/cli.h"
#include "trainer/metrics.h"

namespace ds {

int cmd_bench_comm(int argc, char** argv) {
  CommonArgs args;
  std::string op = "all_reduce";
  int64_t min_bytes = 8, max_bytes = 64ll << 20;
  int max_iters = 100;
  double timeout_s = 300;
  po::options_description desc("deltashard bench comm");
  add_common(desc, args, false, false);
  desc.add_options()("op", po::value<std::string>(&op), "all_reduce | all_gather | reduce_scatter | broadcast")(
      "min-bytes", po::value<int64_t>(&min_bytes), "smallest message (default 8)")(
      "max-bytes", po::value<int64_t>(&max_bytes), "largest message (default 64 MiB)")(
      "iters", po::value<int>(&max_iters), "timed iterations at small sizes (default 100)")(
      "timeout", po::value<double>(&timeout_s),
      "watchdog timeout of the measured communicator, seconds (default 300, as parallel.timeout_s; 0: no "
      "watchdog and no arrival messages)");
  if (!parse_args(argc, argv, desc, args, false,
                  "mpirun -np N deltashard bench comm [--op all_reduce] [--min-bytes 8] [--max-bytes 67108864] [--timeout 300] "
                  "[--json]")) {
    return 0;
  }
  if (op != "all_reduce" && op != "all_gather" && op != "reduce_scatter" && op != "broadcast") {
    throw UsageError("--op: expected all_reduce, all_gather, reduce_scatter or broadcast, got '" + op + "'");
  }
  if (min_bytes < 4 || max_bytes < min_bytes) throw UsageError("--min-bytes must be >= 4 and <= --max-bytes");
  if (!(timeout_s >= 0)) throw UsageError("--timeout must be >= 0 (0: no watchdog)");
  MPI_Comm dup;
  MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &dup));
  MpiCommunicator comm(dup, CommOptions{"world", timeout_s, std::make_shared<Ledger>()});
  const int n = comm.size();
  const MPI_Comm raw = comm.comm();
  Json rows = Json::array();
  if (!args.json) {
    print0("# deltashard bench comm: op %s, %d ranks, float32, median over iterations, max over ranks, timeout %g s\n",
           op.c_str(), n, timeout_s);
    print0("# %12s %12s %6s %12s %12s %10s %10s %9s\n", "bytes", "count", "iters", "median_us", "raw_us", "algbw_GB/s",
           "busbw_GB/s", "overhead");
  }
  for (int64_t bytes = min_bytes; bytes <= max_bytes; bytes *= 2) {
    // Per-rank element count, rounded so every rank's piece is whole.
    int64_t count = bytes / 4;
    if (op == "all_gather" || op == "reduce_scatter") count = std::max<int64_t>(n, count / n * n);
    const int64_t size_bytes = count * 4;
    torch::Tensor whole = torch::full({count}, 1e-30, torch::kFloat);
    torch::Tensor piece = torch::full({count / n}, 1e-30, torch::kFloat);
    torch::Tensor raw_whole = whole.clone(), raw_piece = piece.clone();
    const int iters = static_cast<int>(std::clamp<int64_t>((256ll << 20) / std::max<int64_t>(size_bytes, 1), 5, max_iters));
    std::vector<double> ours, theirs;
    auto timed = [](auto&& fn) {
      const auto t0 = std::chrono::steady_clock::now();
      fn();
      return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    };
    for (int i = 0; i < iters + 3; ++i) {
      double a = 0, b = 0;
      if (op == "all_reduce") {
        a = timed([&] { comm.all_reduce(whole, ReduceOp::Sum, "bench"); });
        b = timed([&] {
          MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, raw_whole.data_ptr(), static_cast<int>(count), MPI_FLOAT, MPI_SUM, raw));
        });
      } else if (op == "all_gather") {
        a = timed([&] { comm.all_gather(piece, whole, "bench"); });
        b = timed([&] {
          MPI_CHECK(MPI_Allgather(raw_piece.data_ptr(), static_cast<int>(count / n), MPI_FLOAT, raw_whole.data_ptr(),
                                  static_cast<int>(count / n), MPI_FLOAT, raw));
        });
      } else if (op == "reduce_scatter") {
        a = timed([&] { comm.reduce_scatter(whole, piece, ReduceOp::Sum, "bench"); });
        b = timed([&] {
          MPI_CHECK(MPI_Reduce_scatter_block(raw_whole.data_ptr(), raw_piece.data_ptr(), static_cast<int>(count / n),
                                             MPI_FLOAT, MPI_SUM, raw));
        });
      } else {
        a = timed([&] { comm.broadcast(whole, 0, "bench"); });
        b = timed([&] { MPI_CHECK(MPI_Bcast(raw_whole.data_ptr(), static_cast<int>(count), MPI_FLOAT, 0, raw)); });
      }
      if (i >= 3) {
        ours.push_back(a);
        theirs.push_back(b);
      }
    }
    // Bus bandwidth (nccl-tests' busbw): what one rank sends per call over the time, as the ledger
    // counts it for this op, size and group.
    const std::vector<CommRecord> recs = comm.ledger().since(0);
    const double wire_bytes = recs.empty() ? 0.0 : recs.back().wire_bytes;
    comm.ledger().clear();
    // Sums grow by a factor n per all_reduce; tiny starting values keep them finite and normal.
    whole.fill_(1e-30);
    raw_whole.fill_(1e-30);
    const double us = all_ranks_max(median(ours));
    const double raw_us = all_ranks_max(median(theirs));
    const double algbw = static_cast<double>(size_bytes) / (us * 1e-6) / 1e9;
    Json row = Json::object();
    row["op"] = op;
    row["bytes"] = size_bytes;
    row["count"] = count;
    row["ranks"] = n;
    row["timeout_s"] = timeout_s;
    row["iters"] = iters;
    row["median_us"] = us;
    row["raw_median_us"] = raw_us;
    row["algbw_gbps"] = algbw;
    const double busbw = wire_bytes / (us * 1e-6) / 1e9;
    row["busbw_gbps"] = busbw;
    row["overhead_pct"] = 100.0 * (us / raw_us - 1.0);
    rows.push_back(row);
    if (!args.json) {
      print0("  %12lld %12lld %6d %12.2f %12.2f %10.3f %10.3f %8.1f%%\n", static_cast<long long>(size_bytes),
             static_cast<long long>(count), iters, us, raw_us, algbw, busbw,
             100.0 * (us / raw_us - 1.0));
    }
  }
  if (args.json) print0("%s\n", json_line(rows).c_str());
  return 0;
}

}  // namespace ds
