// The MPI process environment: initialisation with errors returned (not fatal), rank and size of
// the world, the local rank used to pick a GPU, and printing from rank 0 only.
#pragma once

#include <string>

namespace ds {

// RAII: MPI_Init_thread on construction (unless already initialised), MPI_Finalize on destruction.
class MpiEnv {
 public:
  MpiEnv(int* argc, char*** argv);
  ~MpiEnv();
  MpiEnv(const MpiEnv&) = delete;
  MpiEnv& operator=(const MpiEnv&) = delete;

 private:
  bool owns_ = false;
};

int world_rank();
int world_size();
// Rank within this node: from the launcher (Open MPI, Slurm) or a shared-memory split.
int local_rank();
// Number of ranks on this node (for dividing the cores among them).
int local_size();
// The largest value of `x` over the world (collective; used for per-rank times and memory).
double all_ranks_max(double x);

// printf from world rank 0 only, flushed: the one way the trainer talks to the terminal.
void print0(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// Rank 0 writes `bytes` as they are (decoded text may hold NUL bytes, which %s would cut).
void write0(const std::string& bytes);

// Ends every rank of the job with `message` on stderr; used where a rank cannot continue.
[[noreturn]] void abort_job(const std::string& message, int code = 1);

}  // namespace ds
