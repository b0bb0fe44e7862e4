// The Open MPI backend: float32/64 and int32/64 with MPI's own types and reductions, bfloat16 and
// float16 as 16-bit words with user reductions that compute in float and round back. Blocking calls
// use MPI's blocking collectives (its tuned algorithms); async ones the MPI_I* calls. CPU tensors
// go to MPI as they are; CUDA tensors through pinned host copies (this Open MPI is not CUDA-aware),
// so several ranks can share one GPU, which NCCL refuses.
#pragma once

#include <mpi.h>

#include <memory>
#include <vector>

#include "dist/communicator.h"

namespace ds {

class MpiCommunicator : public Communicator {
 public:
  // Takes ownership of `comm` (freed on destruction unless it is MPI_COMM_WORLD).
  MpiCommunicator(MPI_Comm comm, CommOptions options);
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }
  MPI_Comm comm() const { return comm_; }
  void progress() override;

 protected:
  Wait do_all_reduce(torch::Tensor& t, ReduceOp op, bool async) override;
  Wait do_all_gather(const torch::Tensor& in, torch::Tensor& out, bool async) override;
  Wait do_reduce_scatter(const torch::Tensor& in, torch::Tensor& out, ReduceOp op, bool async) override;
  void do_broadcast(torch::Tensor& t, int root) override;
  void do_barrier() override;
  void check_device(const torch::Tensor& t, const std::string& what) const override;

 private:
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
  std::vector<std::weak_ptr<MPI_Request>> open_;  // async requests in flight, for progress()
};

// MPI datatype and reduction for a tensor dtype and op (user ops for 16-bit floats).
MPI_Datatype mpi_datatype(torch::ScalarType t);
MPI_Op mpi_op(torch::ScalarType t, ReduceOp op);

}  // namespace ds
