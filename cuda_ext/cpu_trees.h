// Host-side tree helper shared by the CPU kernels (trees.cpp, storage.cpp).
#pragma once
#include <cstdint>
#include <vector>

namespace rlsuite {
// Recompute the ancestors of the given tree nodes (sum, or min for a min-tree); `nodes` is
// sorted and deduplicated in place and consumed.
void refresh_parents(double* tree, std::vector<int64_t>& nodes, bool is_min);
// Stratified proportional sampling from a sum-tree of `nodes` nodes (see per_sample): draw i
// searches (i + u[i]) * total / batch; weights (p_min / p_i)^beta as float32.
void per_sample_into(const double* sum_tree, int64_t nodes, double p_min, const double* u, int64_t batch, double beta,
                     int64_t* idx, float* weights);
}  // namespace rlsuite
