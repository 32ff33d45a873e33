// Launchers of the CUDA kernels (trees_cuda.cu, gather_cuda.cu, storage_cuda.cu): raw pointers and a stream
// in, a CUDA error code out. The .cu files include no torch header, so their device code
// compiles with the CUDA toolkit alone (also where torch is a CPU build); cuda_glue.cpp adapts
// them to torch tensors and registers them for the CUDA dispatch key.
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

#include "common.h"

namespace rlsuite {
namespace cuda {

// Trees (float64, 16-ary). sorted_idx/order: the leaf ids sorted stably and their call positions.
cudaError_t tree_update(double* tree, int64_t nodes, const int64_t* sorted_idx, const int64_t* order,
                        const double* values, int64_t n, bool is_min, cudaStream_t stream);
// Recompute the ancestors of `leaves` (leaf ids; entries < 0 are skipped), one level per launch.
cudaError_t tree_refresh(double* tree, int64_t nodes, const int64_t* leaves, int64_t n, bool is_min,
                         cudaStream_t stream);
cudaError_t tree_rebuild(double* tree, int64_t nodes, bool is_min, cudaStream_t stream);
cudaError_t tree_search(const double* tree, int64_t nodes, const double* prefix, int64_t* out, int64_t n,
                        cudaStream_t stream);
cudaError_t per_sample(const double* sum_tree, const double* min_tree, int64_t nodes, const double* u, int64_t n,
                       double beta, int64_t* idx, float* weights, cudaStream_t stream);
// Fused PER priority update (contract in ops.per_update). idx/td: the n calls; sorted_idx/order:
// idx sorted stably and the call positions. Scratch of n entries: priority (each call's, -inf
// where not stored: its max is the op's result), touched; *bad (zeroed by the caller) is set
// when a slot is outside [0, slots), and then neither tree changes.
cudaError_t per_update(double* sum_tree, double* min_tree, int64_t nodes, const int64_t* idx, const int64_t* sorted_idx,
                       const int64_t* order, const double* td, int64_t n, const bool* valid, int64_t slots, double alpha,
                       double eps, double* priority, int* bad, int64_t* touched, cudaStream_t stream);

// Batch gathers from (E, L, ...) storage; frames are copied as raw bytes.
cudaError_t frame_gather(const uint8_t* frames, const bool* first, int64_t slots, int64_t bytes, const int64_t* t,
                         const int64_t* env, int64_t batch, int64_t stack, int64_t ahead, uint8_t* out,
                         cudaStream_t stream);
cudaError_t nstep_returns(const float* reward, const bool* term, const bool* trunc, int64_t slots, const int64_t* t,
                          const int64_t* env, int64_t batch, int64_t n, double gamma, float* ret, float* discount,
                          int64_t* boot, cudaStream_t stream);
cudaError_t sequence_gather(const uint8_t* frames, int64_t bytes, const int64_t* action, const float* rtg,
                            const int64_t* timestep, const bool* ended, const bool* final_flag, int64_t slots,
                            const int64_t* t, const int64_t* env, int64_t batch, int64_t length, uint8_t* obs,
                            int64_t* action_out, float* rtg_out, int64_t* step_out, bool* mask, cudaStream_t stream);

// Replay add (contract in storage.cpp): one frame key's (E, L, bytes) storage and the step's
// (E, bytes) rows; final_obs may be null when no episode ended.
struct FrameWrite {
  uint8_t* frames;
  const uint8_t* obs;
  const uint8_t* final_obs;
  int64_t bytes;
};
// The step's (E,) inputs, on the device.
struct StepInput {
  const int64_t* action;
  const float* reward;
  const bool *term, *trunc;
};
// `keys` is a host array. changed/became: scratch of E * refresh_count(n, stack) entries.
// sum_tree/min_tree null for a uniform buffer. Frames are written before the cursors move.
cudaError_t stream_add(const StreamFields& s, int64_t envs, const FrameWrite* keys, int64_t num_keys, int64_t* cursor,
                       bool* new_episode, int64_t* num_valid, const StepInput& in, int64_t* changed, bool* became,
                       double* sum_tree, double* min_tree, int64_t nodes, double max_priority, cudaStream_t stream);

}  // namespace cuda
}  // namespace rlsuite
