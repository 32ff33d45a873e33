// CPU kernel of the replay buffer's add: write one vector step into the time-major stream
// storage and refresh the per-slot "a transition may start here" flags, in one call.
// It computes exactly what rlsuite/replay/storage.py (StreamStorage.write and
// _refresh_validity, the reference) computes, without its ~dozens of small numpy calls.
// The per-env bookkeeping (stream_step in common.h) is shared with the CUDA kernel, storage_cuda.cu.
#include <torch/library.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <cstring>
#include <memory>
#include <vector>

#include "common.h"
#include "cpu_trees.h"

namespace rlsuite {
namespace {

// A (E, *F) input whose per-env frames are contiguous (any stride between envs), as bytes.
struct FrameRows {
  at::Tensor keep;  // owns a converted copy when the input needed one
  const uint8_t* data;
  int64_t stride;  // bytes between envs
};

FrameRows frame_rows(const at::Tensor& x, const at::Tensor& storage, int64_t envs) {
  at::Tensor t = x.scalar_type() == storage.scalar_type() ? x : x.to(storage.scalar_type());
  TORCH_CHECK(t.dim() >= 1 && t.size(0) == envs && t.numel() / envs * envs == t.numel() &&
                  t.numel() / envs == storage.numel() / (storage.size(0) * storage.size(1)),
              "rlsuite.stream_add: an observation does not have one frame per env of the stored shape");
  int64_t expected = 1;
  for (int64_t d = t.dim() - 1; d >= 1; --d) {
    if (t.size(d) != 1 && t.stride(d) != expected) {
      t = t.contiguous();
      break;
    }
    expected *= t.size(d);
  }
  return {t, static_cast<const uint8_t*>(t.data_ptr()), t.stride(0) * t.element_size()};
}

void stream_add_cpu(at::TensorList frames, at::TensorList obs, at::TensorList final_obs, at::Tensor action,
                    at::Tensor reward, at::Tensor first, at::Tensor terminated, at::Tensor truncated, at::Tensor final_flag,
                    at::Tensor valid, at::Tensor cursor, at::Tensor new_episode, at::Tensor num_valid,
                    const at::Tensor& act_in, const at::Tensor& rew_in, const at::Tensor& term_in,
                    const at::Tensor& trunc_in, int64_t frame_stack, int64_t n_step,
                    const std::optional<at::Tensor>& sum_tree, const std::optional<at::Tensor>& min_tree,
                    double max_priority) {
  const int64_t envs = reward.size(0), slots = reward.size(1);
  TORCH_CHECK(frames.size() == obs.size() && (final_obs.empty() || final_obs.size() == frames.size()),
              "rlsuite.stream_add: one observation per frame key");
  TORCH_CHECK(act_in.scalar_type() == at::kLong && rew_in.scalar_type() == at::kFloat &&
                  term_in.scalar_type() == at::kBool && trunc_in.scalar_type() == at::kBool &&
                  act_in.is_contiguous() && rew_in.is_contiguous() && term_in.is_contiguous() && trunc_in.is_contiguous(),
              "rlsuite.stream_add: action int64, reward float32, flags bool, all contiguous (E,)");
  TORCH_CHECK(cursor.scalar_type() == at::kLong && new_episode.scalar_type() == at::kBool &&
                  num_valid.scalar_type() == at::kLong, "rlsuite.stream_add: bad cursor/new_episode/num_valid dtype");
  std::vector<FrameRows> in, fin;
  for (size_t k = 0; k < frames.size(); ++k) {
    TORCH_CHECK(frames[k].is_contiguous() && frames[k].size(0) == envs && frames[k].size(1) == slots,
                "rlsuite.stream_add: frames must be contiguous (E, L, ...)");
    in.push_back(frame_rows(obs[k], frames[k], envs));
    if (!final_obs.empty()) fin.push_back(frame_rows(final_obs[k], frames[k], envs));
  }
  StreamFields s{slots, frame_stack, n_step, action.data_ptr<int64_t>(), reward.data_ptr<float>(),
                 first.data_ptr<bool>(), terminated.data_ptr<bool>(), truncated.data_ptr<bool>(),
                 final_flag.data_ptr<bool>(), valid.data_ptr<bool>()};
  int64_t* cur = cursor.data_ptr<int64_t>();
  bool* fresh = new_episode.data_ptr<bool>();
  const int64_t* ai = act_in.data_ptr<int64_t>();
  const float* ri = rew_in.data_ptr<float>();
  const bool *ti = term_in.data_ptr<bool>(), *tr = trunc_in.data_ptr<bool>();
  const int64_t count = refresh_count(n_step, frame_stack);
  std::vector<int64_t> ids(count), changed;
  std::unique_ptr<bool[]> flags(new bool[count]);  // not vector<bool>: stream_step writes a bool*
  std::vector<bool> became;
  int64_t delta = 0;
  for (int64_t e = 0; e < envs; ++e) {
    const int64_t c = cur[e];
    for (size_t k = 0; k < frames.size(); ++k) {
      const int64_t bytes = frames[k].numel() / (envs * slots) * frames[k].element_size();
      auto* dst = static_cast<uint8_t*>(frames[k].data_ptr());
      std::memcpy(dst + (e * slots + c % slots) * bytes, in[k].data + e * in[k].stride, bytes);
      if (ti[e] || tr[e]) {
        TORCH_CHECK(!fin.empty(), "rlsuite.stream_add: an episode ended but final_obs is empty");
        std::memcpy(dst + (e * slots + (c + 1) % slots) * bytes, fin[k].data + e * fin[k].stride, bytes);
      }
    }
    delta += stream_step(s, e, cur[e], fresh[e], ai[e], ri[e], ti[e], tr[e], ids.data(), flags.get());
    for (int64_t j = 0; j < count; ++j) {
      if (ids[j] < 0) continue;
      changed.push_back(ids[j]);
      became.push_back(flags[j]);
    }
  }
  num_valid.data_ptr<int64_t>()[0] += delta;
  if (!sum_tree.has_value() || changed.empty()) return;
  // A prioritized buffer follows: new transitions get the max priority, dropped ones none.
  double* st = sum_tree->data_ptr<double>();
  double* mt = min_tree.value().data_ptr<double>();
  const int64_t nodes = sum_tree->numel(), offset = nodes - tree_leaves(nodes);
  std::vector<int64_t> touched;
  for (size_t i = 0; i < changed.size(); ++i) {
    follow_flag(st, mt, offset + changed[i], became[i], max_priority);
    touched.push_back(offset + changed[i]);
  }
  std::vector<int64_t> again(touched);
  refresh_parents(st, touched, false);
  refresh_parents(mt, again, true);
}

}  // namespace

TORCH_LIBRARY_IMPL(rlsuite, CPU, m) { m.impl("stream_add", &stream_add_cpu); }

}  // namespace rlsuite
