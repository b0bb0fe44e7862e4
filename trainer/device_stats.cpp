#include "trainer/device_stats.h"

#include <torch/cuda.h>

#ifdef DELTASHARD_HAVE_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#endif

namespace ds {

#ifdef DELTASHARD_HAVE_CUDA
// Plain CUDA events on the current stream (the runtime API has not moved between CUDA versions).
struct PhaseTimer::Events {
  cudaEvent_t start = nullptr, stop = nullptr;
  Events() {
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
  }
  ~Events() {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
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
    cudaEventRecord(events_->start, c10::cuda::getCurrentCUDAStream(device_.index()).stream());
    return;
  }
#endif
  if (device_.is_cuda()) torch::cuda::synchronize(device_.index());
  t0_ = std::chrono::steady_clock::now();
}

void PhaseTimer::stop() {
#ifdef DELTASHARD_HAVE_CUDA
  if (events_) {
    cudaEventRecord(events_->stop, c10::cuda::getCurrentCUDAStream(device_.index()).stream());
    return;
  }
#endif
  if (device_.is_cuda()) torch::cuda::synchronize(device_.index());
  t1_ = std::chrono::steady_clock::now();
}

double PhaseTimer::ms() {
#ifdef DELTASHARD_HAVE_CUDA
  if (events_) {
    float ms = 0;
    cudaEventSynchronize(events_->stop);
    cudaEventElapsedTime(&ms, events_->start, events_->stop);
    return static_cast<double>(ms);
  }
#endif
  return std::chrono::duration<double, std::milli>(t1_ - t0_).count();
}

}  // namespace ds
