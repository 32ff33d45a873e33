// Launchers of the CUDA kernels (trees.cu, gather.cu): raw pointers and a stream in, a CUDA
// error code out. The .cu files include no torch header, so their device code compiles with
// the CUDA toolkit alone (also where torch is a CPU build); cuda_glue.cpp adapts them to
// torch tensors and registers them for the CUDA dispatch key.
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

namespace rlsuite {
namespace cuda {

// Trees (float64, 16-ary). sorted_idx/order: the leaf ids sorted stably and their call positions.
cudaError_t tree_update(double* tree, int64_t nodes, const int64_t* sorted_idx, const int64_t* order,
                        const double* values, int64_t n, bool is_min, cudaStream_t stream);
cudaError_t tree_rebuild(double* tree, int64_t nodes, bool is_min, cudaStream_t stream);
cudaError_t tree_search(const double* tree, int64_t nodes, const double* prefix, int64_t* out, int64_t n,
                        cudaStream_t stream);
cudaError_t per_sample(const double* sum_tree, const double* min_tree, int64_t nodes, const double* u, int64_t n,
                       double beta, int64_t* idx, float* weights, cudaStream_t stream);

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

}  // namespace cuda
}  // namespace rlsuite
