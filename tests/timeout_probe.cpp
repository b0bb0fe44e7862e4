// Jobs whose collectives never complete, for the watchdog's tests (ctest matches the messages):
//   timeout_probe              rank 1 never joins an all_reduce (it sleeps); 1 s timeout.
//   timeout_probe stop K DIR   rank K stops itself (SIGSTOP) before collective 42 of the group,
//                              after 41 that completed; 2 s timeout. Every rank first writes its
//                              pid to DIR/pid.RANK, so the test can resume and kill what is left.
#include <mpi.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "dist/mpi_communicator.h"
#include "dist/mpi_env.h"

namespace {
std::unique_ptr<ds::MpiCommunicator> dp_comm(double timeout_s) {
  MPI_Comm c;
  MPI_Comm_dup(MPI_COMM_WORLD, &c);
  return std::make_unique<ds::MpiCommunicator>(c, ds::CommOptions{"dp", timeout_s, std::make_shared<ds::Ledger>()});
}
}  // namespace

int main(int argc, char** argv) {
  ds::MpiEnv env(&argc, &argv);
  torch::Tensor x = torch::zeros({4});
  if (argc == 4 && std::string(argv[1]) == "stop") {
    const int stalled = std::atoi(argv[2]);
    auto comm = dp_comm(2.0);
    std::ofstream(std::string(argv[3]) + "/pid." + std::to_string(comm->rank())) << getpid() << "\n";
    for (int i = 0; i < 41; ++i) comm->all_reduce(x, ds::ReduceOp::Sum, "dp.grads");
    if (comm->rank() == stalled) {
      std::fflush(nullptr);
      raise(SIGSTOP);  // the whole process, watchdog thread included
    }
    comm->all_reduce(x, ds::ReduceOp::Sum, "dp.grads");
    return 0;
  }
  auto comm = dp_comm(1.0);
  if (comm->rank() == 1) {
    sleep(30);  // a stalled peer
  } else {
    comm->all_reduce(x, ds::ReduceOp::Sum, "dp.grads");
  }
  return 0;
}
