// CPU kernels of the prioritized-replay trees: batched leaf update (sum- and min-tree),
// rebuild, prefix-sum search, stratified PER sampling and the fused priority update.
// Layout: a complete 16-ary tree in one flat float64 tensor, node 0 the root, children of
// node i at 16i+1 .. 16i+16, leaves last (see rlsuite/replay/ops.py).
#include <torch/library.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "common.h"
#include "cpu_trees.h"

namespace rlsuite {

// Recompute the ancestors of the given leaf nodes, level by level. Parents are recomputed from
// their children (never patched by deltas), so rounding never accumulates; sorting makes each
// parent computed once per level.
void refresh_parents(double* tree, std::vector<int64_t>& nodes, bool is_min) {
  std::sort(nodes.begin(), nodes.end());
  nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
  while (!nodes.empty() && nodes.front() > 0) {
    size_t out = 0;
    for (size_t i = 0; i < nodes.size(); ++i) {
      const int64_t parent = (nodes[i] - 1) / kFanout;
      if (out > 0 && nodes[out - 1] == parent) continue;  // sorted children: parents sorted too
      nodes[out++] = parent;
    }
    nodes.resize(out);
    for (int64_t p : nodes) tree[p] = reduce_children(tree, p, is_min);
  }
}

void per_sample_into(const double* t, int64_t nodes, double p_min, const double* d, int64_t batch, double beta,
                     int64_t* ix, float* w) {
  const double total = t[0];
  const int64_t leaves = tree_leaves(nodes), offset = nodes - leaves;
  const double segment = total / static_cast<double>(batch);
  // All draws descend together, level by level (same steps as tree_descend): the children of
  // every draw are prefetched first, so the cache misses of one level overlap instead of
  // forming one dependent chain per draw.
  std::vector<int64_t> node(batch, 0);
  std::vector<double> value(batch);
  for (int64_t i = 0; i < batch; ++i) value[i] = std::min((static_cast<double>(i) + d[i]) * segment, total);
  for (int64_t width = leaves; width > 1; width /= kFanout) {
    for (int64_t i = 0; i < batch; ++i) {
      const double* kids = t + node[i] * kFanout + 1;
      __builtin_prefetch(kids);
      __builtin_prefetch(kids + kFanout - 1);
    }
    for (int64_t i = 0; i < batch; ++i) node[i] = node[i] * kFanout + 1 + descend_child(t + node[i] * kFanout + 1, value[i]);
  }
  for (int64_t i = 0; i < batch; ++i) {
    ix[i] = node[i] - offset;
    w[i] = static_cast<float>(pow_like_torch(p_min / t[node[i]], beta));
  }
}

namespace {

void check_tree(const at::Tensor& tree) {
  TORCH_CHECK(tree.dim() == 1 && tree.is_contiguous(), "rlsuite: a tree must be a contiguous 1-d tensor");
  TORCH_CHECK(tree.scalar_type() == at::kDouble, "rlsuite: trees are float64, got ", tree.scalar_type());
}

// Set leaves idx[i] := values[i] in order (so a duplicate index keeps its last value), then
// refresh their ancestors.
void tree_update_cpu(at::Tensor tree, const at::Tensor& idx, const at::Tensor& values, bool is_min) {
  check_tree(tree);
  TORCH_CHECK(idx.numel() == values.numel(), "rlsuite.tree_update_: idx and values differ in length");
  const auto index = idx.to(at::kLong).contiguous();
  const auto value = values.to(at::kDouble).contiguous();
  double* t = tree.data_ptr<double>();
  const int64_t nodes = tree.numel(), leaves = tree_leaves(nodes), offset = nodes - leaves;
  const int64_t* ix = index.data_ptr<int64_t>();
  const double* v = value.data_ptr<double>();
  std::vector<int64_t> touched(index.numel());
  for (int64_t i = 0; i < index.numel(); ++i) {
    TORCH_CHECK(ix[i] >= 0 && ix[i] < leaves, "rlsuite.tree_update_: leaf ", ix[i], " out of range [0, ", leaves, ")");
    t[offset + ix[i]] = v[i];
    touched[i] = offset + ix[i];
  }
  refresh_parents(t, touched, is_min);
}

// Recompute every inner node from the leaves, deepest level first.
void tree_rebuild_cpu(at::Tensor tree, bool is_min) {
  check_tree(tree);
  double* t = tree.data_ptr<double>();
  int64_t width = tree_leaves(tree.numel()), start = tree.numel() - width;
  while (width > 1) {
    width /= kFanout;
    start -= width;
    at::parallel_for(start, start + width, 4096, [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p) t[p] = reduce_children(t, p, is_min);
    });
  }
}

// Leaf ids whose cumulative interval holds each prefix value (one descent per value).
at::Tensor tree_search_cpu(const at::Tensor& tree, const at::Tensor& prefix) {
  check_tree(tree);
  const auto value = prefix.to(at::kDouble).contiguous();
  auto out = at::empty({value.numel()}, prefix.options().dtype(at::kLong));
  const double* t = tree.data_ptr<double>();
  const double* v = value.data_ptr<double>();
  int64_t* o = out.data_ptr<int64_t>();
  at::parallel_for(0, value.numel(), 2048, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) o[i] = tree_descend(t, tree.numel(), v[i]);
  });
  return out;
}

// Stratified proportional sampling (Schaul et al. 2016, App. B.2.1): draw i searches
// (i + u_i) * total / B; importance weights (p_min / p_i)^beta, i.e. (N P(i))^-beta / max_w.
std::tuple<at::Tensor, at::Tensor> per_sample_cpu(const at::Tensor& sum_tree, const at::Tensor& min_tree,
                                                  const at::Tensor& u, double beta) {
  check_tree(sum_tree);
  check_tree(min_tree);
  const auto draws = u.to(at::kDouble).contiguous();
  const int64_t batch = draws.numel();
  auto idx = at::empty({batch}, u.options().dtype(at::kLong));
  auto weights = at::empty({batch}, u.options().dtype(at::kFloat));
  per_sample_into(sum_tree.data_ptr<double>(), sum_tree.numel(), min_tree.data_ptr<double>()[0],
                  draws.data_ptr<double>(), batch, beta, idx.data_ptr<int64_t>(), weights.data_ptr<float>());
  return {idx, weights};
}

// PER priority update fused: for each (idx, td) whose slot is still sampleable (valid[idx]),
// store (|td| + eps)^alpha in both trees (last duplicate wins); returns the largest new
// priority (-inf if none), which the sampler keeps as the priority of new transitions.
double per_update_cpu(at::Tensor sum_tree, at::Tensor min_tree, const at::Tensor& idx, const at::Tensor& td,
                      const at::Tensor& valid, double alpha, double eps) {
  check_tree(sum_tree);
  check_tree(min_tree);
  TORCH_CHECK(valid.scalar_type() == at::kBool && valid.is_contiguous(), "rlsuite.per_update_: valid must be contiguous bool");
  const auto index = idx.to(at::kLong).contiguous();
  const auto error = td.to(at::kDouble).contiguous();
  TORCH_CHECK(index.numel() == error.numel(), "rlsuite.per_update_: idx and td differ in length");
  double* s = sum_tree.data_ptr<double>();
  double* m = min_tree.data_ptr<double>();
  const int64_t nodes = sum_tree.numel(), leaves = tree_leaves(nodes), offset = nodes - leaves;
  TORCH_CHECK(valid.numel() <= leaves, "rlsuite.per_update_: more slots than tree leaves");
  const bool* ok = valid.data_ptr<bool>();
  const int64_t* ix = index.data_ptr<int64_t>();
  const double* e = error.data_ptr<double>();
  double best = -std::numeric_limits<double>::infinity();
  std::vector<int64_t> touched;
  touched.reserve(index.numel());
  for (int64_t i = 0; i < index.numel(); ++i) {
    TORCH_CHECK(ix[i] >= 0 && ix[i] < valid.numel(), "rlsuite.per_update_: slot ", ix[i], " out of range");
    if (!ok[ix[i]]) continue;
    const double p = pow_like_torch(std::abs(e[i]) + eps, alpha);
    best = std::max(best, p);
    s[offset + ix[i]] = m[offset + ix[i]] = p;
    touched.push_back(offset + ix[i]);
  }
  std::vector<int64_t> again(touched);
  refresh_parents(s, touched, false);
  refresh_parents(m, again, true);
  return best;
}

}  // namespace

TORCH_LIBRARY_IMPL(rlsuite, CPU, m) {
  m.impl("tree_update_", &tree_update_cpu);
  m.impl("tree_rebuild_", &tree_rebuild_cpu);
  m.impl("tree_search", &tree_search_cpu);
  m.impl("per_sample", &per_sample_cpu);
  m.impl("per_update_", &per_update_cpu);
}

}  // namespace rlsuite
