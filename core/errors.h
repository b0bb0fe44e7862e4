// The error kinds every command reports, one class each, and the exit code each maps to (the table
// in the README). A message names the file, key or rank it is about, in one line.
#pragma once

#include <stdexcept>

namespace ds {

// A command line that cannot be run: unknown option, missing argument, conflicting flags.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// A run configuration that is wrong: unknown key, wrong type or range, sizes that disagree.
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// A file that is missing, unreadable, malformed or holds values that cannot be used.
struct FileError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// Communication failed: a peer rank was lost or stalled, or the MPI/NCCL library reported an error.
struct CommError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum ExitCode : int {
  kExitOk = 0,
  kExitOther = 1,
  kExitUsage = 2,  // usage and configuration
  kExitFile = 3,   // file or data format
  kExitComm = 4,   // communication: a peer lost or stalled
  kExitStopped = 75,  // stopped by a signal after checkpointing (EX_TEMPFAIL: requeue me)
};

}  // namespace ds
