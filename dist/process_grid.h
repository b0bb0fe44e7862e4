// The DP×TP process grid: world = dp × tp; TP groups are consecutive world ranks (so a TP group
// stays inside a node), DP groups stride across them. Each group is its own communicator, named
// deltashard.world / .tp / .dp in MPI, all recording into one ledger.
#pragma once

#include <mpi.h>

#include <memory>
#include <string>

#include "core/config_fields.h"
#include "dist/communicator.h"

namespace ds {

// auto: NCCL when the model is on CUDA, MPI on the CPU.
enum class Backend { Auto, Mpi, Nccl };
DS_ENUM_NAMES(Backend, {Backend::Auto, "auto"}, {Backend::Mpi, "mpi"}, {Backend::Nccl, "nccl"});

struct GridOptions {
  int tp = 1;
  Backend backend = Backend::Mpi;  // Auto is resolved by the caller, which knows the device
  double timeout_s = 300;
  MPI_Comm base = MPI_COMM_WORLD;  // tests build reference grids on MPI_COMM_SELF
};

struct ProcessGrid {
  int world_rank = 0, world_size = 1;
  int tp = 1, dp = 1;
  int tp_rank = 0, dp_rank = 0;
  std::shared_ptr<Ledger> ledger;
  std::unique_ptr<Communicator> world, tp_group, dp_group;
};

// Collective over options.base: every rank must call it. Throws when tp does not divide the
// world size, naming both numbers.
ProcessGrid make_grid(const GridOptions& options);

// The (tp_rank, dp_rank) of a world rank, for tests and messages.
inline int grid_tp_rank(int world_rank, int tp) { return world_rank % tp; }
inline int grid_dp_rank(int world_rank, int tp) { return world_rank / tp; }

}  // namespace ds
