// Launch geometry and block-wide helpers shared by the CUDA kernels (gather_cuda.cu, trees_cuda.cu,
// storage_cuda.cu). Device code only; like the .cu files it includes no torch header.
#pragma once
#include <cstdint>

namespace rlsuite {
namespace cuda {

constexpr int kThreads = 256;

inline unsigned blocks_for(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

__device__ __forceinline__ int64_t thread_index() { return blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; }

// Copy (or zero) `bytes` bytes with the whole block, 4 bytes per thread step when aligned.
__device__ __forceinline__ void copy_frame(uint8_t* dst, const uint8_t* src, int64_t bytes, bool zero) {
  const bool words = bytes % 4 == 0 && reinterpret_cast<uintptr_t>(dst) % 4 == 0 && reinterpret_cast<uintptr_t>(src) % 4 == 0;
  if (words) {
    auto* d = reinterpret_cast<uint32_t*>(dst);
    const auto* s = reinterpret_cast<const uint32_t*>(src);
    for (int64_t i = threadIdx.x; i < bytes / 4; i += blockDim.x) d[i] = zero ? 0u : s[i];
  } else {
    for (int64_t i = threadIdx.x; i < bytes; i += blockDim.x) dst[i] = zero ? 0 : src[i];
  }
}

}  // namespace cuda
}  // namespace rlsuite
