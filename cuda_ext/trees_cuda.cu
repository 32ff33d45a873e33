// CUDA kernels of the priority trees (same operators and layout as trees.cpp; per-node
// arithmetic shared through common.h so both devices compute identical values).
//
// Batched updates are deterministic although many threads run at once: of duplicate leaf ids
// (sorted stably, so in call order) only the last writes, and parents are then recomputed from
// their children one level per launch, so every thread that shares an ancestor computes the
// same value from the same finished children.
#include <cuda_runtime.h>

#include "common.h"
#include "cuda_common.cuh"
#include "cuda_launch.h"

namespace rlsuite {
namespace cuda {
namespace {

// Write leaf values; of equal ids (sorted stably, so in call order) only the last one writes.
__global__ void write_leaves(double* tree, int64_t offset, const int64_t* sorted_idx, const int64_t* order,
                             const double* values, int64_t n) {
  const int64_t i = thread_index();
  if (i >= n || (i + 1 < n && sorted_idx[i + 1] == sorted_idx[i])) return;
  tree[offset + sorted_idx[i]] = values[order[i]];
}

// Recompute the ancestor `level + 1` steps above each updated leaf from its children (leaf
// ids < 0 mark entries with nothing to refresh). Threads sharing an ancestor write the same
// value: a benign race with a deterministic result.
__global__ void refresh_level(double* tree, int64_t offset, const int64_t* idx, int64_t n, int level, bool is_min) {
  const int64_t i = thread_index();
  if (i >= n || idx[i] < 0) return;
  int64_t node = offset + idx[i];
  for (int l = 0; l <= level; ++l) node = (node - 1) / kFanout;
  tree[node] = reduce_children(tree, node, is_min);
}

// Recompute the inner nodes [start, start + width) of one level from their children.
__global__ void rebuild_level(double* tree, int64_t start, int64_t width, bool is_min) {
  const int64_t i = thread_index();
  if (i < width) tree[start + i] = reduce_children(tree, start + i, is_min);
}

// One tree descent per prefix value.
__global__ void search_kernel(const double* tree, int64_t nodes, const double* prefix, int64_t* out, int64_t n) {
  const int64_t i = thread_index();
  if (i < n) out[i] = tree_descend(tree, nodes, prefix[i]);
}

// Stratified PER draw i: search (i + u_i) * total / B; weight (p_min / p_i)^beta.
__global__ void per_sample_kernel(const double* sum_tree, const double* min_tree, int64_t nodes, const double* u,
                                  int64_t n, double beta, int64_t* idx, float* weights) {
  const int64_t i = thread_index();
  if (i >= n) return;
  const double total = sum_tree[0];
  double prefix = (static_cast<double>(i) + u[i]) * (total / static_cast<double>(n));
  prefix = prefix < total ? prefix : total;
  const int64_t leaf = tree_descend(sum_tree, nodes, prefix);
  idx[i] = leaf;
  weights[i] = static_cast<float>(pow_like_torch(min_tree[0] / sum_tree[nodes - tree_leaves(nodes) + leaf], beta));
}

// Priority (|td_i| + eps)^alpha of call i, or -inf where its slot is no longer sampleable. An
// out-of-range slot sets *bad, and then write_priorities changes nothing (the glue raises).
__global__ void priority_kernel(const int64_t* idx, const double* td, int64_t n, const bool* valid, int64_t slots,
                                double alpha, double eps, double* priority, int* bad) {
  const int64_t i = thread_index();
  if (i >= n) return;
  const int64_t slot = idx[i];
  if (slot < 0 || slot >= slots) {
    *bad = 1;  // every writer stores the same value
    priority[i] = -INFINITY;
    return;
  }
  priority[i] = valid[slot] ? pow_like_torch(fabs(td[i]) + eps, alpha) : -INFINITY;
}

// Of equal slots (sorted stably: in call order) the last call writes both trees' leaves. Its
// validity is that of the slot, shared by every call to it, so no earlier duplicate could have
// won instead. touched[j]: the leaf to refresh, or -1.
__global__ void write_priorities(double* sum_tree, double* min_tree, int64_t offset, const int64_t* sorted_idx,
                                 const int64_t* order, const double* priority, int64_t n, const int* bad,
                                 int64_t* touched) {
  const int64_t j = thread_index();
  if (j >= n) return;
  touched[j] = -1;
  if (*bad || (j + 1 < n && sorted_idx[j + 1] == sorted_idx[j])) return;
  const double p = priority[order[j]];
  if (p == -INFINITY) return;
  sum_tree[offset + sorted_idx[j]] = min_tree[offset + sorted_idx[j]] = p;
  touched[j] = sorted_idx[j];
}

}  // namespace

cudaError_t tree_update(double* tree, int64_t nodes, const int64_t* sorted_idx, const int64_t* order,
                        const double* values, int64_t n, bool is_min, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const int64_t offset = nodes - tree_leaves(nodes);
  write_leaves<<<blocks_for(n), kThreads, 0, stream>>>(tree, offset, sorted_idx, order, values, n);
  return tree_refresh(tree, nodes, sorted_idx, n, is_min, stream);
}

cudaError_t tree_refresh(double* tree, int64_t nodes, const int64_t* leaves, int64_t n, bool is_min,
                         cudaStream_t stream) {
  if (n == 0) return cudaGetLastError();
  const int64_t offset = nodes - tree_leaves(nodes);
  int level = 0;
  for (int64_t w = tree_leaves(nodes); w > 1; w /= kFanout, ++level)
    refresh_level<<<blocks_for(n), kThreads, 0, stream>>>(tree, offset, leaves, n, level, is_min);
  return cudaGetLastError();
}

cudaError_t per_update(double* sum_tree, double* min_tree, int64_t nodes, const int64_t* idx, const int64_t* sorted_idx,
                       const int64_t* order, const double* td, int64_t n, const bool* valid, int64_t slots, double alpha,
                       double eps, double* priority, int* bad, int64_t* touched, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  priority_kernel<<<blocks_for(n), kThreads, 0, stream>>>(idx, td, n, valid, slots, alpha, eps, priority, bad);
  write_priorities<<<blocks_for(n), kThreads, 0, stream>>>(sum_tree, min_tree, nodes - tree_leaves(nodes), sorted_idx,
                                                          order, priority, n, bad, touched);
  const cudaError_t err = tree_refresh(sum_tree, nodes, touched, n, false, stream);
  return err != cudaSuccess ? err : tree_refresh(min_tree, nodes, touched, n, true, stream);
}

cudaError_t tree_rebuild(double* tree, int64_t nodes, bool is_min, cudaStream_t stream) {
  int64_t width = tree_leaves(nodes), start = nodes - width;
  while (width > 1) {
    width /= kFanout;
    start -= width;
    rebuild_level<<<blocks_for(width), kThreads, 0, stream>>>(tree, start, width, is_min);
  }
  return cudaGetLastError();
}

cudaError_t tree_search(const double* tree, int64_t nodes, const double* prefix, int64_t* out, int64_t n,
                        cudaStream_t stream) {
  if (n > 0) search_kernel<<<blocks_for(n), kThreads, 0, stream>>>(tree, nodes, prefix, out, n);
  return cudaGetLastError();
}

cudaError_t per_sample(const double* sum_tree, const double* min_tree, int64_t nodes, const double* u, int64_t n,
                       double beta, int64_t* idx, float* weights, cudaStream_t stream) {
  if (n > 0) per_sample_kernel<<<blocks_for(n), kThreads, 0, stream>>>(sum_tree, min_tree, nodes, u, n, beta, idx, weights);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace rlsuite
