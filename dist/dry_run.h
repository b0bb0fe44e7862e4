// A process grid that does not exist: every group is "rank 0 of N" in this one process. Its
// collectives are checked and recorded in the ledger with their real sizes and ring wire bytes,
// but move no data, so one step replayed on it yields the exact collective schedule of a
// dp × tp job (what `deltashard comm-model` prices). The numbers it computes are not the job's.
#pragma once

#include <memory>

#include "dist/communicator.h"
#include "dist/process_grid.h"

namespace ds {

class DryRunCommunicator : public Communicator {
 public:
  DryRunCommunicator(int size, CommOptions options) : Communicator(std::move(options)), size_(size) {}

  int rank() const override { return 0; }
  int size() const override { return size_; }
  std::string backend() const override { return "dry-run"; }

 protected:
  // Every result is left as this rank's own input: shapes and schedules are right, values are not.
  Wait do_all_reduce(torch::Tensor&, ReduceOp, bool async) override { return async ? Wait([] {}) : Wait(); }
  Wait do_all_gather(const torch::Tensor&, torch::Tensor&, bool async) override {
    return async ? Wait([] {}) : Wait();
  }
  Wait do_reduce_scatter(const torch::Tensor&, torch::Tensor&, ReduceOp, bool async) override {
    return async ? Wait([] {}) : Wait();
  }
  void do_broadcast(torch::Tensor&, int) override {}
  void do_barrier() override {}
  void check_device(const torch::Tensor&, const std::string&) const override {}

 private:
  int size_;
};

// World rank 0 of a dp × tp grid made of dry-run groups, all recording into one ledger.
ProcessGrid make_dry_run_grid(int dp, int tp);

}  // namespace ds
