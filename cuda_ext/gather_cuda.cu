// CUDA kernels that build batches from (E, L, ...) stream storage held in GPU memory: frame
// stacks / (stack + n) windows, n-step returns and transformer sequences. Same contracts as
// gather.cpp; row arithmetic shared through common.h.
#include <cuda_runtime.h>

#include "common.h"
#include "cuda_common.cuh"
#include "cuda_launch.h"

namespace rlsuite {
namespace cuda {
namespace {

// One block per output frame (row b, column c): column c holds frame t - (stack - 1) + c, zero
// if it precedes the episode start of slot t, or (c >= stack) follows a later episode's start.
__global__ void frame_gather_kernel(const uint8_t* frames, const bool* first, int64_t slots, int64_t bytes,
                                    const int64_t* t, const int64_t* env, int64_t stack, int64_t ahead, uint8_t* out) {
  const int64_t width = stack + ahead, b = blockIdx.x / width, c = blockIdx.x % width;
  const bool* row_first = first + env[b] * slots;
  const int64_t offset = c - (stack - 1), s = wrap(t[b] + offset, slots);
  bool zero = false;
  if (offset <= 0) {
    zero = crossed_start(row_first, slots, t[b], -offset);
  } else {
    for (int64_t a = 1; a <= offset && !zero; ++a) zero = row_first[wrap(t[b] + a, slots)];
  }
  copy_frame(out + blockIdx.x * bytes, frames + (env[b] * slots + s) * bytes, bytes, zero);
}

__global__ void nstep_kernel(const float* reward, const bool* term, const bool* trunc, int64_t slots, const int64_t* t,
                             const int64_t* env, int64_t batch, int64_t n, double gamma, float* ret, float* discount,
                             int64_t* boot) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b >= batch) return;
  const int64_t row = env[b] * slots;
  nstep_one(reward + row, term + row, trunc + row, slots, t[b], n, gamma, ret + b, discount + b, boot + b);
}

// One block per (row, step): mask is True while step t+i is in the episode of t (no final
// slot at or before it, no episode end strictly before it).
__global__ void sequence_kernel(const uint8_t* frames, int64_t bytes, const int64_t* action, const float* rtg,
                                const int64_t* timestep, const bool* ended, const bool* final_flag, int64_t slots,
                                const int64_t* t, const int64_t* env, int64_t length, uint8_t* obs,
                                int64_t* action_out, float* rtg_out, int64_t* step_out, bool* mask) {
  const int64_t b = blockIdx.x / length, i = blockIdx.x % length, row = env[b] * slots;
  bool alive = true;
  for (int64_t j = 0; j <= i && alive; ++j) {
    const int64_t g = row + wrap(t[b] + j, slots);
    alive = !final_flag[g] && (j == i || !ended[g]);
  }
  const int64_t g = row + wrap(t[b] + i, slots);
  copy_frame(obs + blockIdx.x * bytes, frames + g * bytes, bytes, !alive);
  if (threadIdx.x == 0) {
    action_out[blockIdx.x] = alive ? action[g] : 0;
    rtg_out[blockIdx.x] = alive ? rtg[g] : 0.0f;
    step_out[blockIdx.x] = alive ? timestep[g] : 0;
    mask[blockIdx.x] = alive;
  }
}

}  // namespace

cudaError_t frame_gather(const uint8_t* frames, const bool* first, int64_t slots, int64_t bytes, const int64_t* t,
                         const int64_t* env, int64_t batch, int64_t stack, int64_t ahead, uint8_t* out,
                         cudaStream_t stream) {
  const int64_t blocks = batch * (stack + ahead);
  if (blocks > 0) frame_gather_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      frames, first, slots, bytes, t, env, stack, ahead, out);
  return cudaGetLastError();
}

cudaError_t nstep_returns(const float* reward, const bool* term, const bool* trunc, int64_t slots, const int64_t* t,
                          const int64_t* env, int64_t batch, int64_t n, double gamma, float* ret, float* discount,
                          int64_t* boot, cudaStream_t stream) {
  if (batch > 0) nstep_kernel<<<blocks_for(batch), kThreads, 0, stream>>>(reward, term, trunc, slots, t, env, batch, n,
                                                                         gamma, ret, discount, boot);
  return cudaGetLastError();
}

cudaError_t sequence_gather(const uint8_t* frames, int64_t bytes, const int64_t* action, const float* rtg,
                            const int64_t* timestep, const bool* ended, const bool* final_flag, int64_t slots,
                            const int64_t* t, const int64_t* env, int64_t batch, int64_t length, uint8_t* obs,
                            int64_t* action_out, float* rtg_out, int64_t* step_out, bool* mask, cudaStream_t stream) {
  if (batch * length > 0) sequence_kernel<<<static_cast<unsigned>(batch * length), kThreads, 0, stream>>>(
      frames, bytes, action, rtg, timestep, ended, final_flag, slots, t, env, length, obs, action_out, rtg_out,
      step_out, mask);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace rlsuite
