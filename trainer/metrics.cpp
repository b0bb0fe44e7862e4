#include "trainer/metrics.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "dist/mpi_env.h"

namespace ds {

Json comm_json(const std::vector<CommRecord>& records) {
  Json j = Json::object();
  const CommTotals dp = sum_records(records, "dp", "", ""), tp = sum_records(records, "tp", "", ""),
                   world = sum_records(records, "world", "", "");
  j["dp_collectives"] = dp.calls + world.calls;
  j["dp_bytes"] = dp.bytes + world.bytes;
  j["tp_collectives"] = tp.calls;
  j["tp_bytes"] = tp.bytes;
  j["world_collectives"] = world.calls;
  j["world_bytes"] = world.bytes;
  j["comm_ms"] = sum_records(records, "", "", "").ms;
  return j;
}

StepTimes step_times(const std::vector<double>& step_ms, const std::vector<double>& comm_ms) {
  StepTimes t;
  t.step_ms = all_ranks_max(median(step_ms));
  t.comm_ms = all_ranks_max(median(comm_ms));
  t.comm_fraction = t.step_ms > 0 ? t.comm_ms / t.step_ms : 0.0;
  return t;
}

MetricsLog::MetricsLog(const std::string& path, bool enabled) {
  if (!enabled || path.empty()) return;
  f_ = std::fopen(path.c_str(), "a");
  if (!f_) throw std::runtime_error(path + ": cannot open the metrics file (log.jsonl): " + std::strerror(errno));
}

MetricsLog::~MetricsLog() {
  if (f_) std::fclose(f_);
}

void MetricsLog::write(const Json& record) {
  if (!f_) return;
  std::fprintf(f_, "%s\n", json_line(record).c_str());
  std::fflush(f_);
}

namespace {
// Under mpirun a rank's stdout is a pseudo-terminal even when the user redirected mpirun's output
// to a file, so redrawing is only used for a plain (non-MPI-launched) process on a terminal.
bool redraw_ok() {
  if (!isatty(STDOUT_FILENO)) return false;
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "SLURM_STEP_ID"}) {
    if (std::getenv(v)) return false;
  }
  return true;
}
}  // namespace

Progress::Progress(bool enabled) : enabled_(enabled), tty_(enabled && redraw_ok()) {}

void Progress::update(const std::string& line, bool force_newline) {
  if (!enabled_) return;
  if (tty_) {
    std::printf("\r\033[K%s", line.c_str());
    dirty_ = true;
    if (force_newline) {
      std::printf("\n");
      dirty_ = false;
    }
  } else if (force_newline) {
    std::printf("%s\n", line.c_str());
  }
  std::fflush(stdout);
}

void Progress::finish() {
  if (enabled_ && tty_ && dirty_) std::printf("\n");
  dirty_ = false;
  std::fflush(stdout);
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int i = 0;
  while (b >= 1024 && i < 4) {
    b /= 1024;
    ++i;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, i == 0 ? "%.0f %s" : "%.2f %s", b, units[i]);
  return buf;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::string human_count(double n) {
  char buf[32];
  if (n >= 1e9) std::snprintf(buf, sizeof buf, "%.2fB", n / 1e9);
  else if (n >= 1e6) std::snprintf(buf, sizeof buf, "%.2fM", n / 1e6);
  else if (n >= 1e3) std::snprintf(buf, sizeof buf, "%.1fK", n / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f", n);
  return buf;
}

}  // namespace ds
