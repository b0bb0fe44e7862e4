// Collectives over one process group, on contiguous tensors, blocking or non-blocking. Every call
// is checked (dtype, device, sizes), numbered, announced to the group's other ranks, watched by the
// watchdog and recorded in the ledger here, once; the MPI and NCCL backends only move bytes.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dist/ledger.h"

namespace ds {

class Arrivals;

enum class ReduceOp { Sum, Avg, Max };

// A collective in flight. wait() completes it (once), records it and returns.
class Work {
 public:
  Work() = default;
  Work(std::function<void()> wait, std::function<void()> done) : wait_(std::move(wait)), done_(std::move(done)) {}
  void wait();
  bool pending() const { return static_cast<bool>(wait_) || static_cast<bool>(done_); }

 private:
  std::function<void()> wait_;  // blocks until the backend finished
  std::function<void()> done_;  // post-processing and ledger record
};

struct CommOptions {
  std::string group = "world";  // ledger name of the group: world | tp | dp
  double timeout_s = 300;       // watchdog limit per collective; <= 0 disables
  std::shared_ptr<Ledger> ledger;
};

// A group of one rank moves nothing: its collectives are local copies and are not recorded.
class Communicator {
 public:
  using Wait = std::function<void()>;
  explicit Communicator(CommOptions options);
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;
  const std::string& group() const { return options_.group; }
  Ledger& ledger() const { return *options_.ledger; }
  double timeout_s() const { return options_.timeout_s; }

  void all_reduce(torch::Tensor& t, ReduceOp op, const std::string& tag);
  // Flattens `ts` into one buffer, reduces once, and copies back: one collective for many tensors.
  void all_reduce(std::vector<torch::Tensor>& ts, ReduceOp op, const std::string& tag);
  // out has size() × in.numel() elements, rank i's piece at [i·n, (i+1)·n).
  void all_gather(const torch::Tensor& in, torch::Tensor& out, const std::string& tag);
  // in has size() × out.numel() elements; rank i receives the reduction of piece i.
  void reduce_scatter(const torch::Tensor& in, torch::Tensor& out, ReduceOp op, const std::string& tag);
  void broadcast(torch::Tensor& t, int root, const std::string& tag);
  void barrier(const std::string& tag);

  Work all_reduce_async(torch::Tensor& t, ReduceOp op, const std::string& tag);
  Work all_gather_async(const torch::Tensor& in, torch::Tensor& out, const std::string& tag);
  Work reduce_scatter_async(const torch::Tensor& in, torch::Tensor& out, ReduceOp op, const std::string& tag);

  // Lets a backend advance non-blocking operations (MPI progresses only inside MPI calls).
  virtual void progress() {}

  // Collectives entered on this communicator so far (the number the watchdog's messages use).
  uint64_t entered() const { return entered_; }

 protected:
  // The backend's arrival channel (see dist/arrivals.h); without one a timeout names no rank.
  void set_arrivals(std::shared_ptr<Arrivals> arrivals);

  // Backend hooks. With async == false they complete before returning and return an empty
  // function; with async == true they return the function that waits for completion.
  virtual Wait do_all_reduce(torch::Tensor& t, ReduceOp op, bool async) = 0;
  virtual Wait do_all_gather(const torch::Tensor& in, torch::Tensor& out, bool async) = 0;
  virtual Wait do_reduce_scatter(const torch::Tensor& in, torch::Tensor& out, ReduceOp op, bool async) = 0;
  virtual void do_broadcast(torch::Tensor& t, int root) = 0;
  virtual void do_barrier() = 0;
  virtual void check_device(const torch::Tensor& t, const std::string& what) const = 0;

 private:
  void check(const torch::Tensor& t, const std::string& op, const std::string& tag) const;
  void check_pieces(const std::string& op, const torch::Tensor& whole, const torch::Tensor& piece,
                    const std::string& tag) const;
  Work run(CollectiveOp op, const std::string& tag, int64_t elements, int64_t bytes, bool async,
           const std::function<Wait(bool)>& start, std::function<void()> after = {});

  CommOptions options_;
  std::shared_ptr<Arrivals> arrivals_;
  uint64_t entered_ = 0;
};

const char* reduce_op_name(ReduceOp op);

}  // namespace ds
