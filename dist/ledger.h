// The communication ledger: one record per collective (operation, group, tag, phase, elements,
// payload bytes, bytes on the wire, wall time), read back per step by the trainer and by
// `deltashard compare`.
//
// bytes: the payload this rank hands to the collective (all_reduce and reduce_scatter: the whole
// buffer; all_gather: this rank's piece; broadcast: the buffer).
// wire_bytes: what a ring algorithm sends per rank: all_reduce 2(n-1)/n·S, all_gather (n-1)·S_piece,
// reduce_scatter (n-1)/n·S, broadcast S (root) — the quantity the alpha-beta cost model prices.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "core/config_fields.h"

namespace ds {

// The collectives a Communicator runs. CommRecord keeps the printed name (the ledger is output
// text: JSON keys, tables); code that branches on the operation uses this enum.
enum class CollectiveOp { AllReduce, AllGather, ReduceScatter, Broadcast, Barrier };
DS_ENUM_NAMES(CollectiveOp, {CollectiveOp::AllReduce, "all_reduce"}, {CollectiveOp::AllGather, "all_gather"},
              {CollectiveOp::ReduceScatter, "reduce_scatter"}, {CollectiveOp::Broadcast, "broadcast"},
              {CollectiveOp::Barrier, "barrier"});
// The enum of a printed name (a ledger record, a `bench comm` row); throws std::invalid_argument.
CollectiveOp collective_op(const std::string& name);

struct CommRecord {
  std::string op;     // all_reduce | all_gather | reduce_scatter | broadcast | barrier
  std::string group;  // world | tp | dp
  std::string tag;    // chosen by the caller: tp.attn.o, dp.grads, ...
  std::string phase;  // fwd | bwd | step | eval | other, set by the trainer
  int group_size = 1;
  int64_t elements = 0;
  int64_t bytes = 0;
  double wire_bytes = 0;
  double ms = 0;
  bool async = false;
};

struct CommTotals {
  int64_t calls = 0;
  int64_t bytes = 0;
  double wire_bytes = 0;
  double ms = 0;
  void add(const CommRecord& r) {
    ++calls;
    bytes += r.bytes;
    wire_bytes += r.wire_bytes;
    ms += r.ms;
  }
};

double wire_bytes_for(CollectiveOp op, int64_t bytes, int group_size);

class Ledger {
 public:
  void record(CommRecord r);
  void set_phase(const std::string& phase);
  std::string phase() const;
  size_t mark() const;
  std::vector<CommRecord> since(size_t mark) const;
  void clear();

 private:
  mutable std::mutex mu_;
  std::vector<CommRecord> records_;
  std::string phase_ = "other";
};

// Reads what was recorded between its construction and now.
class LedgerScope {
 public:
  explicit LedgerScope(const Ledger& ledger) : ledger_(ledger), start_(ledger.mark()) {}
  std::vector<CommRecord> records() const { return ledger_.since(start_); }
  // Totals over records matching group ("" = any), phase ("" = any) and tag prefix.
  CommTotals total(const std::string& group = "", const std::string& phase = "",
                   const std::string& tag_prefix = "") const;
  std::map<std::string, CommTotals> by_tag() const;

 private:
  const Ledger& ledger_;
  size_t start_;
};

CommTotals sum_records(const std::vector<CommRecord>& records, const std::string& group,
                       const std::string& phase, const std::string& tag_prefix);

}  // namespace ds
