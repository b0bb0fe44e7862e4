// A job in which rank 1 never joins an all_reduce: the watchdog must end it with a message
// naming the operation, tag and rank (ctest matches the message) instead of hanging.
#include <mpi.h>
#include <unistd.h>

#include "dist/mpi_communicator.h"
#include "dist/mpi_env.h"

int main(int argc, char** argv) {
  ds::MpiEnv env(&argc, &argv);
  MPI_Comm c;
  MPI_Comm_dup(MPI_COMM_WORLD, &c);
  ds::MpiCommunicator comm(c, ds::CommOptions{"dp", 1.0, std::make_shared<ds::Ledger>()});
  torch::Tensor x = torch::ones({4});
  if (comm.rank() == 1) {
    sleep(30);  // a stalled peer
  } else {
    comm.all_reduce(x, ds::ReduceOp::Sum, "dp.grads");
  }
  return 0;
}
