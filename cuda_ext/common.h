// Helpers shared by the CPU (.cpp) and CUDA (.cu) kernels of rlsuite._C.
//
// Everything here is plain arithmetic on raw pointers, marked host+device under nvcc, so the
// CPU and GPU kernels compute a row exactly the same way. The torch glue (argument checks,
// allocation, dispatch) lives in the .cpp/.cu files, never here, so this header needs no
// torch include and the device code compiles against the CUDA toolkit alone.
#pragma once
#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define RL_HD __host__ __device__ __forceinline__
#else
#define RL_HD inline
#endif

namespace rlsuite {

// Children per node of the priority trees (must match rlsuite/replay/ops.py TREE_FANOUT).
constexpr int64_t kFanout = 16;

// Leaves of the complete kFanout-ary tree stored in `nodes` nodes (leaves are the last ones).
RL_HD int64_t tree_leaves(int64_t nodes) { return (nodes * (kFanout - 1) + 1) / kFanout; }

// Python-style modulo: the slot of absolute or relative time `t` in a ring of `slots`.
RL_HD int64_t wrap(int64_t t, int64_t slots) { return ((t % slots) + slots) % slots; }

// Reduce the kFanout children of `node` (sum, or min for a min-tree), in index order.
template <typename T>
RL_HD T reduce_children(const T* tree, int64_t node, bool is_min) {
  const T* kids = tree + node * kFanout + 1;
  T acc = kids[0];
  for (int j = 1; j < kFanout; ++j) acc = is_min ? (kids[j] < acc ? kids[j] : acc) : acc + kids[j];
  return acc;
}

// One level of a sum-tree descent: among the kFanout children `kids`, the first whose running
// sum exceeds `value`, but never past the last child with positive mass (rounding at the top
// end must not pick an empty leaf); subtracts the mass before that child from `value`. Same
// steps as the reference ops.sum_tree_search.
template <typename T>
RL_HD int descend_child(const T* kids, T& value) {
  T end = 0;
  int child = -1, last_positive = 0;
  T ends[kFanout];
  for (int j = 0; j < kFanout; ++j) {
    end += kids[j];
    ends[j] = end;
    if (kids[j] > 0) last_positive = j;
    if (child < 0 && end > value) child = j;
  }
  if (child < 0 || child > last_positive) child = last_positive;
  value = value - (ends[child] - kids[child]);
  return child;
}

// Descend a sum-tree to the leaf whose cumulative interval holds `value`.
template <typename T>
RL_HD int64_t tree_descend(const T* tree, int64_t nodes, T value) {
  const int64_t leaves = tree_leaves(nodes);
  int64_t node = 0;
  for (int64_t width = leaves; width > 1; width /= kFanout)
    node = node * kFanout + 1 + descend_child(tree + node * kFanout + 1, value);
  return node - (nodes - leaves);
}

// True iff frame t-back of stream row `first` (episode-start flags) belongs to an earlier
// episode than slot t: some slot in t-back+1 .. t starts an episode.
RL_HD bool crossed_start(const bool* first, int64_t slots, int64_t t, int64_t back) {
  for (int64_t i = 0; i < back; ++i)
    if (first[wrap(t - i, slots)]) return true;
  return false;
}

// n-step return of the transition at slot t of one stream: sum of gamma^i r_{t+i} up to the
// episode end, discount 0 if it terminated inside the window else gamma^k, bootstrap slot t+k.
RL_HD void nstep_one(const float* reward, const bool* term, const bool* trunc, int64_t slots, int64_t t,
                     int64_t n, double gamma, float* ret, float* discount, int64_t* boot) {
  double acc = 0.0;
  int64_t k = 0;
  bool terminated = false;
  for (; k < n;) {
    const int64_t s = wrap(t + k, slots);
    acc += static_cast<double>(reward[s]) * pow(gamma, static_cast<double>(k));
    ++k;
    if (term[s] || trunc[s]) {
      terminated = term[s];
      break;
    }
  }
  *ret = static_cast<float>(acc);
  *discount = terminated ? 0.0f : static_cast<float>(pow(gamma, static_cast<double>(k)));
  *boot = wrap(t + k, slots);
}

// x^e with torch's special cases for common exponents (sqrt for 0.5, identity for 1), so
// priorities and importance weights round like the reference.
RL_HD double pow_like_torch(double x, double e) {
  if (e == 1.0) return x;
  if (e == 0.5) return sqrt(x);
  if (e == 2.0) return x * x;
  if (e == 0.0) return 1.0;
  return pow(x, e);
}

// ----------------------------------------------------------------------------- stream storage
// The add bookkeeping of storage.py (StreamStorage.write / _refresh_validity, the reference),
// shared by the CPU kernel (storage.cpp) and the CUDA kernel (storage_cuda.cu).

// The (E, L) per-slot fields of the stream storage, row-major, plus its shape.
struct StreamFields {
  int64_t slots, stack, n;
  int64_t* action;
  float* reward;
  bool *first, *term, *trunc, *final_flag, *valid;
};

// Slots per env whose sampleability one write can change: the newest n + 2 (the written slot,
// an ended episode's final slot, windows just completed) and the oldest stack + 1 (their
// stack frames are being overwritten). The buffer keeps L > stack + n + 2, so none repeats.
RL_HD int64_t refresh_count(int64_t n, int64_t stack) { return n + 2 + stack + 1; }

// The sampleability rule of StreamStorage._sampleable for absolute time T of env e (cursor c):
// not a final slot; its n-step window written (T + n < c, or the episode ends inside it and
// that end is written); its stack frames still in the ring.
RL_HD bool sampleable(const StreamFields& s, int64_t e, int64_t T, int64_t c) {
  const int64_t row = e * s.slots;
  if (s.final_flag[row + T % s.slots]) return false;
  bool complete = T + s.n < c;
  for (int64_t i = 0; i < s.n && !complete; ++i) {
    const int64_t w = T + i, g = row + w % s.slots;
    complete = w < c && (s.term[g] || s.trunc[g]);
  }
  const int64_t oldest = T - (s.stack - 1) > 0 ? T - (s.stack - 1) : 0;
  return complete && oldest >= c - s.slots;
}

// One env's share of a stream_add, all but the frames: write the step's fields at the slot of
// `cursor` (and an ended episode's final slot after it), advance cursor and new_episode, and
// refresh the flags of the refresh_count() candidate slots. changed[j] is candidate j's global
// slot id if its flag changed (new flag in became[j]), else -1. Returns the change of num_valid.
RL_HD int64_t stream_step(const StreamFields& s, int64_t e, int64_t& cursor, bool& new_episode, int64_t action,
                          float reward, bool term, bool trunc, int64_t* changed, bool* became) {
  const int64_t c = cursor, row = e * s.slots, g = row + c % s.slots;
  const bool ended = term || trunc;
  s.action[g] = action;
  s.reward[g] = reward;
  s.first[g] = new_episode;
  s.term[g] = term;
  s.trunc[g] = trunc;
  s.final_flag[g] = false;
  if (ended) {  // the true final observation's slot: never the start of a transition
    const int64_t f = row + (c + 1) % s.slots;
    s.action[f] = 0;
    s.reward[f] = 0.0f;
    s.first[f] = s.term[f] = s.trunc[f] = false;
    s.final_flag[f] = true;
  }
  const int64_t now = c + 1 + (ended ? 1 : 0), recent = s.n + 2;
  cursor = now;
  new_episode = ended;
  int64_t delta = 0;
  for (int64_t j = 0; j < refresh_count(s.n, s.stack); ++j) {
    changed[j] = -1;
    const int64_t T = j < recent ? now - 1 - j : now - s.slots + (j - recent);
    if (T < 0 || T < now - s.slots) continue;
    const int64_t gid = row + T % s.slots;
    const bool next = sampleable(s, e, T, now);
    if (next == s.valid[gid]) continue;
    s.valid[gid] = next;
    changed[j] = gid;
    became[j] = next;
    delta += next ? 1 : -1;
  }
  return delta;
}

// A prioritized buffer follows the flags: a slot that became sampleable gets the max
// priority, one that stopped gets none (0 in the sum-tree, +inf in the min-tree).
RL_HD void follow_flag(double* sum_tree, double* min_tree, int64_t node, bool became, double max_priority) {
  sum_tree[node] = became ? max_priority : 0.0;
  min_tree[node] = became ? max_priority : static_cast<double>(INFINITY);
}

}  // namespace rlsuite
