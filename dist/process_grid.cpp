#include "dist/process_grid.h"

#include <mpi.h>

#include "dist/check.h"
#include "dist/mpi_communicator.h"
#include "dist/mpi_env.h"
#include "dist/nccl_communicator.h"

namespace ds {

namespace {
std::unique_ptr<Communicator> make_comm(MPI_Comm comm, const std::string& group, const GridOptions& o,
                                        const std::shared_ptr<Ledger>& ledger) {
  CommOptions co{group, o.timeout_s, ledger};
  if (o.backend == Backend::Mpi) return std::make_unique<MpiCommunicator>(comm, co);
#ifdef DELTASHARD_HAVE_NCCL
  if (o.backend == Backend::Nccl) {
    const int devices = cuda_device_count();
    if (devices == 0) throw CommError("parallel.backend nccl: no CUDA device is visible on rank " +
                                      std::to_string(world_rank()));
    auto c = std::make_unique<NcclCommunicator>(comm, local_rank() % devices, co);
    if (comm != MPI_COMM_WORLD) MPI_Comm_free(&comm);
    return c;
  }
#endif
  throw ConfigError(std::string("parallel.backend: ") + enum_name(o.backend) + " is not available in this build" +
                    (o.backend == Backend::Nccl
                         ? " (configure with -DDELTASHARD_WITH_NCCL=ON on a machine with CUDA and NCCL)"
                         : ""));
}
}  // namespace

ProcessGrid make_grid(const GridOptions& o) {
  ProcessGrid g;
  MPI_CHECK(MPI_Comm_rank(o.base, &g.world_rank));
  MPI_CHECK(MPI_Comm_size(o.base, &g.world_size));
  if (o.tp < 1 || g.world_size % o.tp != 0) {
    throw ConfigError("parallel.tp: " + std::to_string(o.tp) + " does not divide the world size " +
                      std::to_string(g.world_size));
  }
  g.tp = o.tp;
  g.dp = g.world_size / o.tp;
  g.tp_rank = grid_tp_rank(g.world_rank, g.tp);
  g.dp_rank = grid_dp_rank(g.world_rank, g.tp);
  g.ledger = std::make_shared<Ledger>();

  MPI_Comm world, tp, dp;
  MPI_CHECK(MPI_Comm_dup(o.base, &world));
  MPI_CHECK(MPI_Comm_split(o.base, g.dp_rank, g.tp_rank, &tp));  // same dp index: one TP group
  MPI_CHECK(MPI_Comm_split(o.base, g.tp_rank, g.dp_rank, &dp));  // same tp index: one DP group
  g.world = make_comm(world, "world", o, g.ledger);
  g.tp_group = make_comm(tp, "tp", o, g.ledger);
  g.dp_group = make_comm(dp, "dp", o, g.ledger);
  return g;
}

}  // namespace ds
