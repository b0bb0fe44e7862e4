// What a run tells its user: a progress line (redrawn on a terminal, plain lines otherwise), a
// JSONL metrics file, and the ledger's per-step communication figures. Rank 0 only.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "core/json_writer.h"
#include "dist/ledger.h"

namespace ds {

// {dp_collectives, dp_bytes, tp_collectives, tp_bytes, world_collectives, world_bytes, comm_ms}
Json comm_json(const std::vector<CommRecord>& records);

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
