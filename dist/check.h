// Check macros for every MPI, NCCL and CUDA call: a failure becomes an exception (or, where
// nothing can recover, an abort) that names the call's file and line and the library's message.
#pragma once

#include <mpi.h>

#include <stdexcept>
#include <string>

#include "core/errors.h"

namespace ds {

inline std::string mpi_error_string(int code) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, buf, &len);
  return std::string(buf, static_cast<size_t>(len));
}

[[noreturn]] inline void throw_comm_error(const char* lib, const std::string& msg, const char* file, int line) {
  throw CommError(std::string(lib) + " error at " + file + ":" + std::to_string(line) + ": " + msg);
}

}  // namespace ds

#define MPI_CHECK(call)                                                              \
  do {                                                                               \
    const int ds_mpi_rc_ = (call);                                                   \
    if (ds_mpi_rc_ != MPI_SUCCESS) {                                                 \
      ::ds::throw_comm_error("MPI", ::ds::mpi_error_string(ds_mpi_rc_), __FILE__, __LINE__); \
    }                                                                                \
  } while (0)
