// Measurements that depend on the device: the GPU allocator's peak (max allocated, what
// peak_gpu_mem_gib reports) and phase timers that use CUDA events on a GPU and the wall clock on
// the CPU. CUDA code is compiled only with DELTASHARD_HAVE_CUDA (a CUDA LibTorch), so the Debian
// build has the CPU side alone.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <memory>

namespace ds {

// Bytes / 2^30 of the caching allocator's peak allocated memory on `device` since the last reset;
// 0 on the CPU.
double gpu_peak_gib(torch::Device device);
void reset_gpu_peak(torch::Device device);

// Times a stretch of work queued on `device`: start() and stop() mark it (CUDA events recorded on
// the current stream), ms() waits for the stop mark and returns the elapsed time.
class PhaseTimer {
 public:
  explicit PhaseTimer(torch::Device device);
  ~PhaseTimer();
  void start();
  void stop();
  double ms();

 private:
  struct Events;
  torch::Device device_;
  std::unique_ptr<Events> events_;
  std::chrono::steady_clock::time_point t0_, t1_;
};

}  // namespace ds
