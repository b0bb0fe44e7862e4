#include "dist/nccl_communicator.h"

#ifdef DELTASHARD_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>
#endif

#include "dist/arrivals.h"
#include "dist/check.h"

#ifdef DELTASHARD_HAVE_NCCL
#define CUDA_CHECK(call)                                                                     \
  do {                                                                                       \
    const cudaError_t ds_cuda_rc_ = (call);                                                  \
    if (ds_cuda_rc_ != cudaSuccess) {                                                        \
      ::ds::throw_comm_error("CUDA", cudaGetErrorString(ds_cuda_rc_), __FILE__, __LINE__);   \
    }                                                                                        \
  } while (0)
#define NCCL_CHECK(call)                                                                     \
  do {                                                                                       \
    const ncclResult_t ds_nccl_rc_ = (call);                                                 \
    if (ds_nccl_rc_ != ncclSuccess) {                                                        \
      ::ds::throw_comm_error("NCCL", ncclGetErrorString(ds_nccl_rc_), __FILE__, __LINE__);   \
    }                                                                                        \
  } while (0)
#endif

namespace ds {

#ifndef DELTASHARD_HAVE_NCCL
bool nccl_compiled() { return false; }
int cuda_device_count() { return 0; }
#else
bool nccl_compiled() { return true; }

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

struct NcclState {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
};

namespace {
ncclDataType_t nccl_type(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat: return ncclFloat32;
    case torch::kDouble: return ncclFloat64;
    case torch::kHalf: return ncclFloat16;
    case torch::kBFloat16: return ncclBfloat16;
    case torch::kLong: return ncclInt64;
    case torch::kInt: return ncclInt32;
    case torch::kByte:
    case torch::kBool: return ncclUint8;
    default: throw std::invalid_argument(std::string("NCCL backend: unsupported dtype ") + c10::toString(t));
  }
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Avg: return ncclAvg;
    case ReduceOp::Max: return ncclMax;
  }
  return ncclSum;
}
}  // namespace

NcclCommunicator::NcclCommunicator(MPI_Comm comm, int device, CommOptions options)
    : Communicator(std::move(options)), state_(std::make_unique<NcclState>()), device_(device) {
  MPI_CHECK(MPI_Comm_rank(comm, &rank_));
  MPI_CHECK(MPI_Comm_size(comm, &size_));
  CUDA_CHECK(cudaSetDevice(device_));
  ncclUniqueId id;
  if (rank_ == 0) NCCL_CHECK(ncclGetUniqueId(&id));
  MPI_CHECK(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, comm));
  NCCL_CHECK(ncclCommInitRank(&state_->comm, size_, id, rank_));
  // Arrivals travel over MPI on a duplicate of `comm`, so an NCCL stall names its rank too.
  if (timeout_s() > 0 && size_ > 1) set_arrivals(Arrivals::open(comm, "deltashard." + group() + ".arrivals"));
  // A blocking stream: ordered after work already queued on the legacy default stream.
  CUDA_CHECK(cudaStreamCreate(&state_->stream));
}

NcclCommunicator::~NcclCommunicator() {
  if (state_->comm) ncclCommDestroy(state_->comm);
  if (state_->stream) cudaStreamDestroy(state_->stream);
}

void NcclCommunicator::check_device(const torch::Tensor& t, const std::string& what) const {
  if (!t.device().is_cuda()) {
    throw std::invalid_argument(what + ": the NCCL backend takes CUDA tensors (got " + t.device().str() + ")");
  }
  nccl_type(t.scalar_type());
}

Communicator::Wait NcclCommunicator::finish(bool async) {
  cudaStream_t s = state_->stream;
  if (!async) {
    CUDA_CHECK(cudaStreamSynchronize(s));
    return {};
  }
  cudaEvent_t ev;
  CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  CUDA_CHECK(cudaEventRecord(ev, s));
  return [ev] {
    CUDA_CHECK(cudaEventSynchronize(ev));
    cudaEventDestroy(ev);
  };
}

Communicator::Wait NcclCommunicator::do_all_reduce(torch::Tensor& t, ReduceOp op, bool async) {
  NCCL_CHECK(ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t.scalar_type()), nccl_op(op),
                           state_->comm, state_->stream));
  return finish(async);
}

Communicator::Wait NcclCommunicator::do_all_gather(const torch::Tensor& in, torch::Tensor& out, bool async) {
  NCCL_CHECK(ncclAllGather(in.data_ptr(), out.data_ptr(), in.numel(), nccl_type(in.scalar_type()), state_->comm,
                           state_->stream));
  return finish(async);
}

Communicator::Wait NcclCommunicator::do_reduce_scatter(const torch::Tensor& in, torch::Tensor& out, ReduceOp op,
                                                       bool async) {
  NCCL_CHECK(ncclReduceScatter(in.data_ptr(), out.data_ptr(), out.numel(), nccl_type(in.scalar_type()),
                               nccl_op(op), state_->comm, state_->stream));
  return finish(async);
}

void NcclCommunicator::do_broadcast(torch::Tensor& t, int root) {
  NCCL_CHECK(ncclBroadcast(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t.scalar_type()), root, state_->comm,
                           state_->stream));
  finish(false);
}

void NcclCommunicator::do_barrier() {
  // NCCL has no barrier: an all-reduce of one element is the customary one.
  float* one = nullptr;
  CUDA_CHECK(cudaMalloc(&one, sizeof(float)));
  NCCL_CHECK(ncclAllReduce(one, one, 1, ncclFloat32, ncclSum, state_->comm, state_->stream));
  finish(false);
  cudaFree(one);
}
#endif

}  // namespace ds
