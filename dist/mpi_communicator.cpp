#include "dist/mpi_communicator.h"

#include <algorithm>
#include <limits>

#include "dist/arrivals.h"
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

// CUDA tensors are staged through pinned host memory; a CPU tensor is its own host buffer. The
// copies are synchronous (a device-to-host copy waits for the kernels that wrote the tensor), and
// the ledger's time, taken around the whole call, includes them. Compiled only against a CUDA
// LibTorch: in a CPU build no CUDA tensor exists and these are the identity.
#ifdef DELTASHARD_TORCH_CUDA
torch::Tensor host_input(const torch::Tensor& t) {
  if (!t.is_cuda()) return t;
  torch::Tensor h = torch::empty(t.sizes(), t.options().device(torch::kCPU).pinned_memory(true));
  h.copy_(t);
  return h;
}

torch::Tensor host_output(const torch::Tensor& t) {
  if (!t.is_cuda()) return t;
  return torch::empty(t.sizes(), t.options().device(torch::kCPU).pinned_memory(true));
}

void copy_back(torch::Tensor& t, const torch::Tensor& host) {
  if (t.is_cuda()) t.copy_(host);
}
#else
const torch::Tensor& host_input(const torch::Tensor& t) { return t; }
const torch::Tensor& host_output(const torch::Tensor& t) { return t; }
void copy_back(torch::Tensor&, const torch::Tensor&) {}
#endif

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
  // Announcements only matter to the watchdog; without a timeout they would be pure cost.
  if (timeout_s() > 0 && size_ > 1) set_arrivals(Arrivals::open(comm_, name + ".arrivals"));
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_WORLD && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void MpiCommunicator::check_device(const torch::Tensor& t, const std::string& what) const {
#ifdef DELTASHARD_TORCH_CUDA
  if (!t.device().is_cpu() && !t.device().is_cuda()) {
    throw std::invalid_argument(what + ": the MPI backend takes CPU or CUDA tensors (got " + t.device().str() + ")");
  }
#else
  if (!t.device().is_cpu()) {
    throw std::invalid_argument(what + ": the MPI backend takes CPU tensors in this build, without a CUDA LibTorch (got " +
                                t.device().str() + ")");
  }
#endif
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
  torch::Tensor h = host_input(t);
  if (!async) {
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, h.data_ptr(), n, dt, mop, comm_));
    finish_avg(h, op, size_);
    copy_back(t, h);
    return {};
  }
  auto req = std::make_shared<MPI_Request>(MPI_REQUEST_NULL);
  MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, h.data_ptr(), n, dt, mop, comm_, req.get()));
  open_.push_back(req);
  const int size = size_;
  return make_wait(req, [t, h, op, size]() mutable {
    finish_avg(h, op, size);
    copy_back(t, h);
  });
}

Communicator::Wait MpiCommunicator::do_all_gather(const torch::Tensor& in, torch::Tensor& out, bool async) {
  const int n = static_cast<int>(in.numel());
  const MPI_Datatype dt = mpi_datatype(in.scalar_type());
  const torch::Tensor hin = host_input(in);
  torch::Tensor hout = host_output(out);
  if (!async) {
    MPI_CHECK(MPI_Allgather(hin.data_ptr(), n, dt, hout.data_ptr(), n, dt, comm_));
    copy_back(out, hout);
    return {};
  }
  auto req = std::make_shared<MPI_Request>(MPI_REQUEST_NULL);
  MPI_CHECK(MPI_Iallgather(hin.data_ptr(), n, dt, hout.data_ptr(), n, dt, comm_, req.get()));
  open_.push_back(req);
  // Holds every buffer until completion.
  return make_wait(req, [hin, hout, out]() mutable { copy_back(out, hout); });
}

Communicator::Wait MpiCommunicator::do_reduce_scatter(const torch::Tensor& in, torch::Tensor& out, ReduceOp op,
                                                      bool async) {
  const int n = static_cast<int>(out.numel());
  const MPI_Datatype dt = mpi_datatype(in.scalar_type());
  const MPI_Op mop = mpi_op(in.scalar_type(), op);
  const torch::Tensor hin = host_input(in);
  torch::Tensor hout = host_output(out);
  if (!async) {
    MPI_CHECK(MPI_Reduce_scatter_block(hin.data_ptr(), hout.data_ptr(), n, dt, mop, comm_));
    finish_avg(hout, op, size_);
    copy_back(out, hout);
    return {};
  }
  auto req = std::make_shared<MPI_Request>(MPI_REQUEST_NULL);
  MPI_CHECK(MPI_Ireduce_scatter_block(hin.data_ptr(), hout.data_ptr(), n, dt, mop, comm_, req.get()));
  open_.push_back(req);
  const int size = size_;
  return make_wait(req, [hin, hout, out, op, size]() mutable {
    finish_avg(hout, op, size);
    copy_back(out, hout);
  });
}

void MpiCommunicator::do_broadcast(torch::Tensor& t, int root) {
  torch::Tensor h = rank_ == root ? host_input(t) : host_output(t);
  MPI_CHECK(MPI_Bcast(h.data_ptr(), static_cast<int>(h.numel()), mpi_datatype(h.scalar_type()), root, comm_));
  copy_back(t, h);
}

void MpiCommunicator::do_barrier() { MPI_CHECK(MPI_Barrier(comm_)); }

}  // namespace ds
