// Host-side tree helper shared by the CPU kernels (trees.cpp, storage.cpp).
#pragma once
#include <cstdint>
#include <vector>

namespace rlsuite {
// Recompute the ancestors of the given tree nodes (sum, or min for a min-tree); `nodes` is
// sorted and deduplicated in place and consumed.
void refresh_parents(double* tree, std::vector<int64_t>& nodes, bool is_min);
}  // namespace rlsuite
