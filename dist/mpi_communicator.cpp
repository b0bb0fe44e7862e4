#include "dist/mpi_communicator.h"

#include <algorithm>
#include <limits>

#include "dist/check.h"

namespace ds {

namespace {

template <typename T, bool Max>
void reduce16(void* in, void* inout, int* len, MPI_Datatype*) {
  const T* a = static_cast<const T*>(in);
  T* b = static_cast<T*>(inout);
  for (int i = 0; i < *len; ++i) {
    const float x = static_cast<float>(a[i]), y = static_cast<float>(b[i]);
    b[i] = static_cast<T>(Max ? std::max(x, y) : x + y);
  }
}

struct UserOps {
  MPI_Op bf16_sum, bf16_max, f16_sum, f16_max;
  UserOps() {
    MPI_Op_create(&reduce16<c10::BFloat16, false>, 1, &bf16_sum);
    MPI_Op_create(&reduce16<c10::BFloat16, true>, 1, &bf16_max);
    MPI_Op_create(&reduce16<c10::Half, false>, 1, &f16_sum);
    MPI_Op_create(&reduce16<c10::Half, true>, 1, &f16_max);
  }
};

const UserOps& user_ops() {
  static const UserOps ops;  // created after MPI_Init, on first use
  return ops;
}

// Average = sum, then divide here (MPI has no average); integers divide with floor.
void finish_avg(torch::Tensor& t, ReduceOp op, int n) {
  if (op != ReduceOp::Avg || n == 1) return;
  if (c10::isIntegralType(t.scalar_type(), false)) {
    t.div_(n, "floor");
  } else {
    t.div_(n);
  }
}

}  // namespace

MPI_Datatype mpi_datatype(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat: return MPI_FLOAT;
    case torch::kDouble: return MPI_DOUBLE;
    case torch::kLong: return MPI_INT64_T;
    case torch::kInt: return MPI_INT32_T;
    case torch::kBFloat16:
    case torch::kHalf: return MPI_UINT16_T;
    case torch::kByte:
    case torch::kBool: return MPI_UINT8_T;
    default: throw std::invalid_argument(std::string("MPI backend: unsupported dtype ") + c10::toString(t));
  }
}

MPI_Op mpi_op(torch::ScalarType t, ReduceOp op) {
  const bool max = op == ReduceOp::Max;
  if (t == torch::kBFloat16) return max ? user_ops().bf16_max : user_ops().bf16_sum;
  if (t == torch::kHalf) return max ? user_ops().f16_max : user_ops().f16_sum;
  if (t == torch::kByte || t == torch::kBool) {
    throw std::invalid_argument("MPI backend: reductions on 8-bit tensors are not supported");
  }
  return max ? MPI_MAX : MPI_SUM;
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm, CommOptions options) : Communicator(std::move(options)), comm_(comm) {
  MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  MPI_CHECK(MPI_Comm_size(comm_, &size_));
  const std::string name = "deltashard." + group();
  MPI_CHECK(MPI_Comm_set_name(comm_, name.c_str()));
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_WORLD && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void MpiCommunicator::check_device(const torch::Tensor& t, const std::string& what) const {
  if (!t.device().is_cpu()) {
    throw std::invalid_argument(what + ": the MPI backend takes CPU tensors (got " + t.device().str() + ")");
  }
  mpi_datatype(t.scalar_type());
  if (t.numel() > std::numeric_limits<int>::max()) {
    throw std::invalid_argument(what + ": more than 2^31-1 elements in one MPI call");
  }
}

void MpiCommunicator::progress() {
  // MPI_Test completes a request in place (setting it to MPI_REQUEST_NULL), so the later
  // MPI_Wait on the same handle returns at once.
  std::vector<std::weak_ptr<MPI_Request>> still;
  for (auto& w : open_) {
    auto r = w.lock();
    if (!r || *r == MPI_REQUEST_NULL) continue;
    int flag = 0;
    MPI_Test(r.get(), &flag, MPI_STATUS_IGNORE);
    if (!flag) still.push_back(w);
  }
  open_.swap(still);
}

namespace {
// The waiting half of an async call: waits on the request (progress() may already have
// completed it) and applies the post-processing.
Communicator::Wait make_wait(std::shared_ptr<MPI_Request> req, std::function<void()> post) {
  return [req, post] {
    MPI_CHECK(MPI_Wait(req.get(), MPI_STATUS_IGNORE));
    if (post) post();
  };
}
}  // namespace

Communicator::Wait MpiCommunicator::do_all_reduce(torch::Tensor& t, ReduceOp op, bool async) {
  const int n = static_cast<int>(t.numel());
  const MPI_Datatype dt = mpi_datatype(t.scalar_type());
  const MPI_Op mop = mpi_op(t.scalar_type(), op);
  if (!async) {
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, t.data_ptr(), n, dt, mop, comm_));
    finish_avg(t, op, size_);
    return {};
  }
  auto req = std::make_shared<MPI_Request>(MPI_REQUEST_NULL);
  MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, t.data_ptr(), n, dt, mop, comm_, req.get()));
  open_.push_back(req);
  const int size = size_;
  return make_wait(req, [t, op, size]() mutable { finish_avg(t, op, size); });
}

Communicator::Wait MpiCommunicator::do_all_gather(const torch::Tensor& in, torch::Tensor& out, bool async) {
  const int n = static_cast<int>(in.numel());
  const MPI_Datatype dt = mpi_datatype(in.scalar_type());
  if (!async) {
    MPI_CHECK(MPI_Allgather(in.data_ptr(), n, dt, out.data_ptr(), n, dt, comm_));
    return {};
  }
  auto req = std::make_shared<MPI_Request>(MPI_REQUEST_NULL);
  MPI_CHECK(MPI_Iallgather(in.data_ptr(), n, dt, out.data_ptr(), n, dt, comm_, req.get()));
  open_.push_back(req);
  return make_wait(req, [in, out] {});  // keeps both buffers alive until completion
}

Communicator::Wait MpiCommunicator::do_reduce_scatter(const torch::Tensor& in, torch::Tensor& out, ReduceOp op,
                                                      bool async) {
  const int n = static_cast<int>(out.numel());
  const MPI_Datatype dt = mpi_datatype(in.scalar_type());
  const MPI_Op mop = mpi_op(in.scalar_type(), op);
  if (!async) {
    MPI_CHECK(MPI_Reduce_scatter_block(in.data_ptr(), out.data_ptr(), n, dt, mop, comm_));
    finish_avg(out, op, size_);
    return {};
  }
  auto req = std::make_shared<MPI_Request>(MPI_REQUEST_NULL);
  MPI_CHECK(MPI_Ireduce_scatter_block(in.data_ptr(), out.data_ptr(), n, dt, mop, comm_, req.get()));
  open_.push_back(req);
  const int size = size_;
  return make_wait(req, [in, out, op, size]() mutable { finish_avg(out, op, size); });
}

void MpiCommunicator::do_broadcast(torch::Tensor& t, int root) {
  MPI_CHECK(MPI_Bcast(t.data_ptr(), static_cast<int>(t.numel()), mpi_datatype(t.scalar_type()), root, comm_));
}

void MpiCommunicator::do_barrier() { MPI_CHECK(MPI_Barrier(comm_)); }

}  // namespace ds
