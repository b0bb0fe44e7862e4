// The alpha-beta cost of a collective: time = steps·alpha + wire_bytes / bandwidth, with the
// ring schedule's steps and wire bytes (all_reduce: 2(n-1) steps, 2(n-1)/n·S; all_gather:
// n-1 steps, (n-1)·S_piece; reduce_scatter: n-1, (n-1)/n·S; broadcast: n-1, S), and for
// all_reduce the cheaper of the ring and a double binary tree (2⌈log2 n⌉ steps, 2·S), as NCCL
// chooses between them. `bandwidth` is a bus bandwidth in the nccl-tests sense.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dist/ledger.h"

namespace ds {

struct LinkModel {
  double alpha_us = 0;    // per step of the schedule
  double busbw_gbps = 0;  // GB/s (1e9 bytes) each rank moves
  std::string source;     // where the two numbers came from, printed with every result
};

// A link per group kind. The world group spans nodes whenever the DP group does, so it is
// priced with the DP link.
struct Fabric {
  LinkModel tp, dp;
  const LinkModel& link_for(const std::string& group) const { return group == "tp" ? tp : dp; }
};

// Microseconds for one collective of `bytes` (the ledger's payload definition) over n ranks.
double collective_us(CollectiveOp op, int64_t bytes, int n, const LinkModel& link);

// Modelled microseconds of every record, summed.
double records_us(const std::vector<CommRecord>& records, const Fabric& fabric, const std::string& group = "");

// One measured point: `bench comm` rows.
struct CommSample {
  std::string op;  // as printed: all_reduce, all_gather, ...
  int64_t bytes = 0;
  int ranks = 2;
  double us = 0;
};

// Least squares in relative error over the samples (each size counts alike): fits alpha and
// 1/bandwidth of the ring formula. Throws when fewer than two usable samples are given.
LinkModel fit_link(const std::vector<CommSample>& samples);

}  // namespace ds
