#include "trainer/device_stats.h"

#ifdef DELTASHARD_HAVE_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace ds {

#ifdef DELTASHARD_HAVE_CUDA
struct PhaseTimer::Events {
  at::cuda::CUDAEvent start{cudaEventDefault}, stop{cudaEventDefault};
};

double gpu_peak_gib(torch::Device device) {
  if (!device.is_cuda()) return 0.0;
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
  return static_cast<double>(stats.allocated_bytes[0].peak) / (1024.0 * 1024.0 * 1024.0);
}

void reset_gpu_peak(torch::Device device) {
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device.index());
}
#else
struct PhaseTimer::Events {};
double gpu_peak_gib(torch::Device) { return 0.0; }
void reset_gpu_peak(torch::Device) {}
#endif

PhaseTimer::PhaseTimer(torch::Device device) : device_(device) {
#ifdef DELTASHARD_HAVE_CUDA
  if (device_.is_cuda()) events_ = std::make_unique<Events>();
#endif
}

PhaseTimer::~PhaseTimer() = default;

void PhaseTimer::start() {
#ifdef DELTASHARD_HAVE_CUDA
  if (events_) {
    events_->start.record();
    return;
  }
#endif
  t0_ = std::chrono::steady_clock::now();
}

void PhaseTimer::stop() {
#ifdef DELTASHARD_HAVE_CUDA
  if (events_) {
    events_->stop.record();
    return;
  }
#endif
  t1_ = std::chrono::steady_clock::now();
}

double PhaseTimer::ms() {
#ifdef DELTASHARD_HAVE_CUDA
  if (events_) {
    events_->stop.synchronize();
    return static_cast<double>(events_->start.elapsed_time(events_->stop));
  }
#endif
  return std::chrono::duration<double, std::milli>(t1_ - t0_).count();
}

}  // namespace ds
