// What a run tells its user: a progress line (redrawn on a terminal, plain lines otherwise), a
// JSONL metrics file, and the ledger's per-step communication figures. Rank 0 only.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "core/json.h"
#include "dist/ledger.h"

namespace ds {

// One step's collectives in the vocabulary of docs/metrics.md: {dp_collectives, dp_bytes,
// tp_collectives, tp_bytes, world_collectives, world_bytes, comm_ms}; dp_* counts every
// collective outside the TP group (the dp and world groups).
Json comm_json(const std::vector<CommRecord>& records);

// What every timing figure means (docs/metrics.md): the median over the timed steps of each
// rank's wall time, then the largest over ranks (collective: every rank calls it).
struct StepTimes {
  double step_ms = 0;
  double comm_ms = 0;
  double comm_fraction = 0;  // comm_ms / step_ms
};
StepTimes step_times(const std::vector<double>& step_ms, const std::vector<double>& comm_ms);

class MetricsLog {
 public:
  MetricsLog(const std::string& path, bool enabled);
  ~MetricsLog();
  void write(const Json& record);

 private:
  std::FILE* f_ = nullptr;
};

class Progress {
 public:
  explicit Progress(bool enabled);
  void update(const std::string& line, bool force_newline);
  void finish();

 private:
  bool enabled_, tty_;
  bool dirty_ = false;
};

std::string human_bytes(double bytes);
// The upper median (0 for none): what every "median" figure the tools print means.
double median(std::vector<double> v);
std::string human_count(double n);

}  // namespace ds
