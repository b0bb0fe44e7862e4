#include "dist/communicator.h"

#include <chrono>

#include "dist/arrivals.h"
#include "dist/watchdog.h"

namespace ds {

namespace {
double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Avg: return "avg";
    case ReduceOp::Max: return "max";
  }
  return "?";
}

void Work::wait() {
  if (wait_) {
    auto w = std::move(wait_);
    wait_ = nullptr;
    w();
  }
  if (done_) {
    auto d = std::move(done_);
    done_ = nullptr;
    d();
  }
}

Communicator::Communicator(CommOptions options) : options_(std::move(options)) {
  if (!options_.ledger) options_.ledger = std::make_shared<Ledger>();
}

void Communicator::set_arrivals(std::shared_ptr<Arrivals> arrivals) { arrivals_ = std::move(arrivals); }

void Communicator::check(const torch::Tensor& t, const std::string& op, const std::string& tag) const {
  const std::string what = op + " (tag " + tag + ", group " + group() + ")";
  if (!t.defined()) throw std::invalid_argument(what + ": undefined tensor");
  if (!t.is_contiguous()) throw std::invalid_argument(what + ": tensor is not contiguous");
  check_device(t, what);
}

void Communicator::check_pieces(const std::string& op, const torch::Tensor& whole, const torch::Tensor& piece,
                                const std::string& tag) const {
  check(whole, op, tag);
  check(piece, op, tag);
  if (whole.numel() != piece.numel() * size() || whole.scalar_type() != piece.scalar_type()) {
    throw std::invalid_argument(op + " (tag " + tag + ", group " + group() + "): the whole buffer must hold " +
                                std::to_string(size()) + " x " + std::to_string(piece.numel()) +
                                " elements of the piece's dtype, it holds " + std::to_string(whole.numel()));
  }
}

Work Communicator::run(CollectiveOp op, const std::string& tag, int64_t elements, int64_t bytes, bool async,
                       const std::function<Wait(bool)>& start, std::function<void()> after) {
  if (size() == 1) return Work();  // nothing crosses processes: callers handle the local copy
  const auto t0 = std::chrono::steady_clock::now();
  // Every rank enters the collectives of one communicator in the same order, so the count is the
  // same collective everywhere.
  const uint64_t seq = ++entered_;
  const char* name = enum_name(op);
  // What the watchdog prints if this collective never completes: "all_reduce #42 (tag dp.grads,
  // group dp of 3, phase bwd)". Without a timeout nothing watches, and nothing is formatted.
  std::string what;
  if (options_.timeout_s > 0) {
    what = std::string(name) + " #" + std::to_string(seq) + " (tag " + tag + ", group " + group() + " of " +
           std::to_string(size()) + ", phase " + options_.ledger->phase() + ")";
  }
  CommRecord rec{name, group(), tag, "", size(), elements, bytes, wire_bytes_for(op, bytes, size()), 0, async};
  auto finish = [this, t0, rec, after = std::move(after)]() mutable {
    if (after) after();
    rec.ms = ms_since(t0);
    options_.ledger->record(rec);
  };
  if (!async) {
    {
      WatchdogGuard guard(what, options_.timeout_s, arrivals_, seq);
      if (arrivals_) arrivals_->announce();
      start(false);
    }
    finish();
    return Work();
  }
  if (arrivals_) arrivals_->announce();
  Wait w = start(true);
  const double timeout = options_.timeout_s;
  return Work(
      [w, what, timeout, arrivals = arrivals_, seq] {
        WatchdogGuard guard(what, timeout, arrivals, seq);
        if (w) w();
      },
      finish);
}

void Communicator::all_reduce(torch::Tensor& t, ReduceOp op, const std::string& tag) {
  check(t, "all_reduce", tag);
  run(CollectiveOp::AllReduce, tag, t.numel(), t.numel() * t.element_size(), false,
      [&](bool async) { return do_all_reduce(t, op, async); });
}

Work Communicator::all_reduce_async(torch::Tensor& t, ReduceOp op, const std::string& tag) {
  check(t, "all_reduce", tag);
  return run(CollectiveOp::AllReduce, tag, t.numel(), t.numel() * t.element_size(), true,
             [this, t, op](bool async) mutable { return do_all_reduce(t, op, async); });
}

void Communicator::all_reduce(std::vector<torch::Tensor>& ts, ReduceOp op, const std::string& tag) {
  if (ts.empty()) return;
  std::vector<torch::Tensor> flat_parts;
  for (const auto& t : ts) flat_parts.push_back(t.reshape({-1}));
  torch::Tensor flat = torch::cat(flat_parts);
  all_reduce(flat, op, tag);
  int64_t off = 0;
  for (auto& t : ts) {
    t.view({-1}).copy_(flat.narrow(0, off, t.numel()));
    off += t.numel();
  }
}

void Communicator::all_gather(const torch::Tensor& in, torch::Tensor& out, const std::string& tag) {
  check_pieces("all_gather", out, in, tag);
  if (size() == 1) {
    out.copy_(in.view_as(out));
    return;
  }
  run(CollectiveOp::AllGather, tag, in.numel(), in.numel() * in.element_size(), false,
      [&](bool async) { return do_all_gather(in, out, async); });
}

Work Communicator::all_gather_async(const torch::Tensor& in, torch::Tensor& out, const std::string& tag) {
  check_pieces("all_gather", out, in, tag);
  if (size() == 1) {
    out.copy_(in.view_as(out));
    return Work();
  }
  return run(CollectiveOp::AllGather, tag, in.numel(), in.numel() * in.element_size(), true,
             [this, in, out](bool async) mutable { return do_all_gather(in, out, async); });
}

void Communicator::reduce_scatter(const torch::Tensor& in, torch::Tensor& out, ReduceOp op, const std::string& tag) {
  check_pieces("reduce_scatter", in, out, tag);
  if (size() == 1) {
    out.copy_(in.view_as(out));
    return;
  }
  run(CollectiveOp::ReduceScatter, tag, in.numel(), in.numel() * in.element_size(), false,
      [&](bool async) { return do_reduce_scatter(in, out, op, async); });
}

Work Communicator::reduce_scatter_async(const torch::Tensor& in, torch::Tensor& out, ReduceOp op,
                                        const std::string& tag) {
  check_pieces("reduce_scatter", in, out, tag);
  if (size() == 1) {
    out.copy_(in.view_as(out));
    return Work();
  }
  return run(CollectiveOp::ReduceScatter, tag, in.numel(), in.numel() * in.element_size(), true,
             [this, in, out, op](bool async) mutable { return do_reduce_scatter(in, out, op, async); });
}

void Communicator::broadcast(torch::Tensor& t, int root, const std::string& tag) {
  check(t, "broadcast", tag);
  if (root < 0 || root >= size()) {
    throw std::invalid_argument("broadcast (tag " + tag + "): root " + std::to_string(root) + " outside group of " +
                                std::to_string(size()));
  }
  run(CollectiveOp::Broadcast, tag, t.numel(), t.numel() * t.element_size(), false, [&](bool) {
    do_broadcast(t, root);
    return Wait();
  });
}

void Communicator::barrier(const std::string& tag) {
  run(CollectiveOp::Barrier, tag, 0, 0, false, [&](bool) {
    do_barrier();
    return Wait();
  });
}

}  // namespace ds
