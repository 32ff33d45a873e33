// CUDA kernel of the replay buffer's add (same contract as storage.cpp): write one vector step
// into the (E, L) stream storage held in GPU memory, refresh the per-slot sampleability flags
// and let the priority trees follow them. The per-env bookkeeping is stream_step of common.h,
// the very code the CPU kernel runs, so both devices agree slot for slot.
#include <cuda_runtime.h>

#include "common.h"
#include "cuda_common.cuh"
#include "cuda_launch.h"

namespace rlsuite {
namespace cuda {
namespace {

// Block (e, 0) copies env e's frame into the slot of cursor[e]; block (e, 1) copies its true
// final frame into the next slot when its episode ended on this step. Runs before step_kernel
// moves the cursors.
__global__ void write_frames_kernel(FrameWrite key, int64_t slots, const int64_t* cursor, const bool* term,
                                    const bool* trunc) {
  const int64_t e = blockIdx.x;
  const bool final_frame = blockIdx.y == 1;
  if (final_frame && !(key.final_obs != nullptr && (term[e] || trunc[e]))) return;
  const int64_t slot = wrap(cursor[e] + (final_frame ? 1 : 0), slots);
  const uint8_t* src = (final_frame ? key.final_obs : key.obs) + e * key.bytes;
  copy_frame(key.frames + (e * slots + slot) * key.bytes, src, key.bytes, false);
}

// One thread per env: fields, cursor and flags (stream_step). Envs touch disjoint rows, so
// only the count of sampleable slots is shared (an integer atomic: order-independent).
__global__ void step_kernel(StreamFields s, int64_t envs, int64_t* cursor, bool* new_episode, StepInput in,
                            int64_t* changed, bool* became, unsigned long long* num_valid) {
  const int64_t e = thread_index();
  if (e >= envs) return;
  const int64_t count = refresh_count(s.n, s.stack);
  const int64_t delta = stream_step(s, e, cursor[e], new_episode[e], in.action[e], in.reward[e], in.term[e],
                                    in.trunc[e], changed + e * count, became + e * count);
  if (delta != 0) atomicAdd(num_valid, static_cast<unsigned long long>(delta));  // two's complement: adds a negative too
}

// The trees follow the changed flags. Changed slots are distinct (one env's candidates never
// repeat, envs own disjoint rows), so these leaf writes never collide.
__global__ void follow_kernel(double* sum_tree, double* min_tree, int64_t offset, const int64_t* changed,
                              const bool* became, int64_t count, double max_priority) {
  const int64_t i = thread_index();
  if (i < count && changed[i] >= 0) follow_flag(sum_tree, min_tree, offset + changed[i], became[i], max_priority);
}

}  // namespace

cudaError_t stream_add(const StreamFields& s, int64_t envs, const FrameWrite* keys, int64_t num_keys, int64_t* cursor,
                       bool* new_episode, int64_t* num_valid, const StepInput& in, int64_t* changed, bool* became,
                       double* sum_tree, double* min_tree, int64_t nodes, double max_priority, cudaStream_t stream) {
  if (envs == 0) return cudaSuccess;
  for (int64_t k = 0; k < num_keys; ++k)
    if (keys[k].bytes > 0)
      write_frames_kernel<<<dim3(static_cast<unsigned>(envs), 2), kThreads, 0, stream>>>(keys[k], s.slots, cursor,
                                                                                        in.term, in.trunc);
  step_kernel<<<blocks_for(envs), kThreads, 0, stream>>>(s, envs, cursor, new_episode, in, changed, became,
                                                         reinterpret_cast<unsigned long long*>(num_valid));
  if (sum_tree == nullptr) return cudaGetLastError();
  const int64_t count = envs * refresh_count(s.n, s.stack);
  follow_kernel<<<blocks_for(count), kThreads, 0, stream>>>(sum_tree, min_tree, nodes - tree_leaves(nodes), changed,
                                                            became, count, max_priority);
  const cudaError_t err = tree_refresh(sum_tree, nodes, changed, count, false, stream);
  return err != cudaSuccess ? err : tree_refresh(min_tree, nodes, changed, count, true, stream);
}

}  // namespace cuda
}  // namespace rlsuite
