// The NCCL backend: CUDA tensors, one NCCL communicator per process group, its unique id
// broadcast over the group's MPI communicator. Collectives run on a blocking CUDA stream of our own
// (ordered with the legacy default stream, which LibTorch uses unless told otherwise); blocking
// calls synchronise that stream. Compiled only when CMake finds CUDA and NCCL.
#pragma once

#include <mpi.h>

#include "dist/communicator.h"

namespace ds {

// True when this build carries the NCCL backend.
bool nccl_compiled();

#ifdef DELTASHARD_HAVE_NCCL
struct NcclState;

class NcclCommunicator : public Communicator {
 public:
  // `comm` is used to agree on the NCCL unique id and duplicated for arrival messages; it is not kept.
  NcclCommunicator(MPI_Comm comm, int device, CommOptions options);
  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "nccl"; }

 protected:
  Wait do_all_reduce(torch::Tensor& t, ReduceOp op, bool async) override;
  Wait do_all_gather(const torch::Tensor& in, torch::Tensor& out, bool async) override;
  Wait do_reduce_scatter(const torch::Tensor& in, torch::Tensor& out, ReduceOp op, bool async) override;
  void do_broadcast(torch::Tensor& t, int root) override;
  void do_barrier() override;
  void check_device(const torch::Tensor& t, const std::string& what) const override;

 private:
  Wait finish(bool async);
  std::unique_ptr<NcclState> state_;
  int rank_ = 0, size_ = 1, device_ = 0;
};
#endif

// The number of CUDA devices the CUDA runtime sees (0 without NCCL support or without a GPU).
int cuda_device_count();

}  // namespace ds
