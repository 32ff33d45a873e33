// Torch glue of the CUDA kernels (trees_cuda.cu, gather_cuda.cu, storage_cuda.cu): checks, allocation, the
// current stream, and registration for the CUDA dispatch key. Compiled only in a CUDA build
// (setup.py defines RLSUITE_WITH_CUDA); a CPU build compiles this file to nothing.
#ifdef RLSUITE_WITH_CUDA
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common.h"
#include "cuda_launch.h"

namespace rlsuite {
namespace {

cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

void check_cuda(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda() && t.is_contiguous(), "rlsuite: ", name, " must be a contiguous CUDA tensor");
}

at::Tensor on(const at::Tensor& x, const at::Tensor& like, at::ScalarType dtype) {
  return x.to(like.device(), dtype).contiguous();
}

void tree_update(at::Tensor tree, const at::Tensor& idx, const at::Tensor& values, bool is_min) {
  check_cuda(tree, "tree");
  const c10::cuda::CUDAGuard guard(tree.device());
  auto sorted = at::sort(on(idx, tree, at::kLong), /*stable=*/true, 0, false);  // ties keep call order
  auto value = on(values, tree, at::kDouble);
  TORCH_CHECK(value.numel() == idx.numel(), "tree_update_: ", idx.numel(), " indices but ", value.numel(), " values");
  if (idx.numel() > 0) {  // sorted, so the ends bound every index (one small copy back, as the CPU op checks too)
    const auto& keys = std::get<0>(sorted);
    const auto ends = at::stack({keys[0], keys[-1]}).cpu();
    const int64_t leaves = tree_leaves(tree.numel());
    TORCH_CHECK(ends[0].item<int64_t>() >= 0 && ends[1].item<int64_t>() < leaves,
                "tree_update_: index out of range [0, ", leaves, ")");
  }
  C10_CUDA_CHECK(cuda::tree_update(tree.data_ptr<double>(), tree.numel(), std::get<0>(sorted).data_ptr<int64_t>(),
                                   std::get<1>(sorted).data_ptr<int64_t>(), value.data_ptr<double>(), idx.numel(),
                                   is_min, stream()));
}

void tree_rebuild(at::Tensor tree, bool is_min) {
  check_cuda(tree, "tree");
  const c10::cuda::CUDAGuard guard(tree.device());
  C10_CUDA_CHECK(cuda::tree_rebuild(tree.data_ptr<double>(), tree.numel(), is_min, stream()));
}

at::Tensor tree_search(const at::Tensor& tree, const at::Tensor& prefix) {
  check_cuda(tree, "tree");
  const c10::cuda::CUDAGuard guard(tree.device());
  auto value = on(prefix, tree, at::kDouble);
  auto out = at::empty({value.numel()}, value.options().dtype(at::kLong));
  C10_CUDA_CHECK(cuda::tree_search(tree.data_ptr<double>(), tree.numel(), value.data_ptr<double>(),
                                   out.data_ptr<int64_t>(), value.numel(), stream()));
  return out;
}

std::tuple<at::Tensor, at::Tensor> per_sample(const at::Tensor& sum_tree, const at::Tensor& min_tree,
                                              const at::Tensor& u, double beta) {
  check_cuda(sum_tree, "sum_tree");
  check_cuda(min_tree, "min_tree");
  const c10::cuda::CUDAGuard guard(sum_tree.device());
  auto draws = on(u, sum_tree, at::kDouble);
  auto idx = at::empty({draws.numel()}, draws.options().dtype(at::kLong));
  auto weights = at::empty({draws.numel()}, draws.options().dtype(at::kFloat));
  C10_CUDA_CHECK(cuda::per_sample(sum_tree.data_ptr<double>(), min_tree.data_ptr<double>(), sum_tree.numel(),
                                  draws.data_ptr<double>(), draws.numel(), beta, idx.data_ptr<int64_t>(),
                                  weights.data_ptr<float>(), stream()));
  return {idx, weights};
}

// PER priority update (contract in ops.per_update): duplicates resolved by a stable sort (the
// last call to a slot wins), then leaves and ancestors on the device. The float result costs
// one device-to-host copy, which also carries the range check, so a bad slot raises with
// both trees untouched.
double per_update(at::Tensor sum_tree, at::Tensor min_tree, const at::Tensor& idx, const at::Tensor& td,
                  const at::Tensor& valid, double alpha, double eps) {
  check_cuda(sum_tree, "sum_tree");
  check_cuda(min_tree, "min_tree");
  check_cuda(valid, "valid");
  TORCH_CHECK(sum_tree.scalar_type() == at::kDouble && min_tree.scalar_type() == at::kDouble &&
                  sum_tree.numel() == min_tree.numel(), "rlsuite.per_update_: trees must be float64 of one size");
  TORCH_CHECK(valid.scalar_type() == at::kBool, "rlsuite.per_update_: valid must be bool");
  TORCH_CHECK(valid.numel() <= tree_leaves(sum_tree.numel()), "rlsuite.per_update_: more slots than tree leaves");
  TORCH_CHECK(idx.numel() == td.numel(), "rlsuite.per_update_: idx and td differ in length");
  const c10::cuda::CUDAGuard guard(sum_tree.device());
  const int64_t n = idx.numel();
  if (n == 0) return -std::numeric_limits<double>::infinity();
  auto index = on(idx, sum_tree, at::kLong), error = on(td, sum_tree, at::kDouble);
  auto sorted = at::sort(index, /*stable=*/true, 0, false);  // ties keep call order
  auto priority = at::empty({n}, error.options());
  auto touched = at::empty({n}, index.options());
  auto bad = at::zeros({1}, index.options().dtype(at::kInt));
  C10_CUDA_CHECK(cuda::per_update(sum_tree.data_ptr<double>(), min_tree.data_ptr<double>(), sum_tree.numel(),
                                  index.data_ptr<int64_t>(), std::get<0>(sorted).data_ptr<int64_t>(),
                                  std::get<1>(sorted).data_ptr<int64_t>(), error.data_ptr<double>(), n,
                                  valid.data_ptr<bool>(), valid.numel(), alpha, eps, priority.data_ptr<double>(),
                                  bad.data_ptr<int>(), touched.data_ptr<int64_t>(), stream()));
  const auto summary = at::stack({bad.to(at::kDouble).reshape({}), priority.max()}).cpu();
  const double* host = summary.data_ptr<double>();
  TORCH_CHECK(host[0] == 0.0, "rlsuite.per_update_: a slot is out of range [0, ", valid.numel(), ")");
  return host[1];
}

void gather(const at::Tensor& frames, const at::Tensor& first, const at::Tensor& t_idx, const at::Tensor& env_idx,
            int64_t stack, int64_t ahead, at::Tensor& out) {
  check_cuda(frames, "frames");
  check_cuda(first, "first");
  check_cuda(out, "out");
  const c10::cuda::CUDAGuard guard(frames.device());
  const int64_t bytes = frames.numel() / (frames.size(0) * frames.size(1)) * frames.element_size();
  auto t = on(t_idx, frames, at::kLong), e = on(env_idx, frames, at::kLong);
  TORCH_CHECK(out.numel() * out.element_size() == t.numel() * (stack + ahead) * bytes, "rlsuite: out has the wrong size");
  C10_CUDA_CHECK(cuda::frame_gather(static_cast<const uint8_t*>(frames.data_ptr()), first.data_ptr<bool>(),
                                    frames.size(1), bytes, t.data_ptr<int64_t>(), e.data_ptr<int64_t>(), t.numel(),
                                    stack, ahead, static_cast<uint8_t*>(out.data_ptr()), stream()));
}

void frame_stack_gather(const at::Tensor& frames, const at::Tensor& first, const at::Tensor& t, const at::Tensor& env,
                        int64_t stack, at::Tensor out) {
  gather(frames, first, t, env, stack, 0, out);
}

void frame_window_gather(const at::Tensor& frames, const at::Tensor& first, const at::Tensor& t, const at::Tensor& env,
                         int64_t stack, int64_t n, at::Tensor out) {
  gather(frames, first, t, env, stack, n, out);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> nstep_returns(const at::Tensor& rewards, const at::Tensor& terminated,
                                                             const at::Tensor& truncated, const at::Tensor& t_idx,
                                                             const at::Tensor& env_idx, int64_t n, double gamma) {
  check_cuda(rewards, "rewards");
  const c10::cuda::CUDAGuard guard(rewards.device());
  auto t = on(t_idx, rewards, at::kLong), e = on(env_idx, rewards, at::kLong);
  auto ret = at::empty({t.numel()}, rewards.options()), disc = at::empty({t.numel()}, rewards.options());
  auto boot = at::empty({t.numel()}, t.options());
  C10_CUDA_CHECK(cuda::nstep_returns(rewards.data_ptr<float>(), terminated.data_ptr<bool>(), truncated.data_ptr<bool>(),
                                     rewards.size(1), t.data_ptr<int64_t>(), e.data_ptr<int64_t>(), t.numel(), n, gamma,
                                     ret.data_ptr<float>(), disc.data_ptr<float>(), boot.data_ptr<int64_t>(), stream()));
  return {ret, disc, boot};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> sequence_gather(
    const at::Tensor& frames, const at::Tensor& action, const at::Tensor& rtg, const at::Tensor& timestep,
    const at::Tensor& ended, const at::Tensor& final_flag, const at::Tensor& t_idx, const at::Tensor& env_idx,
    int64_t length, at::Tensor obs_out) {
  check_cuda(frames, "frames");
  check_cuda(obs_out, "obs_out");
  const c10::cuda::CUDAGuard guard(frames.device());
  auto t = on(t_idx, frames, at::kLong), e = on(env_idx, frames, at::kLong);
  const int64_t batch = t.numel(), bytes = frames.numel() / (frames.size(0) * frames.size(1)) * frames.element_size();
  auto act = at::empty({batch, length}, action.options()), ret = at::empty({batch, length}, rtg.options());
  auto step = at::empty({batch, length}, timestep.options()), mask = at::empty({batch, length}, ended.options());
  C10_CUDA_CHECK(cuda::sequence_gather(static_cast<const uint8_t*>(frames.data_ptr()), bytes, action.data_ptr<int64_t>(),
                                       rtg.data_ptr<float>(), timestep.data_ptr<int64_t>(), ended.data_ptr<bool>(),
                                       final_flag.data_ptr<bool>(), frames.size(1), t.data_ptr<int64_t>(),
                                       e.data_ptr<int64_t>(), batch, length, static_cast<uint8_t*>(obs_out.data_ptr()),
                                       act.data_ptr<int64_t>(), ret.data_ptr<float>(), step.data_ptr<int64_t>(),
                                       mask.data_ptr<bool>(), stream()));
  return {act, ret, step, mask};
}

// The buffer's fused batch gather on the GPU (same contract as gather_transitions_cpu): n-step
// returns straight into ret_out/disc_out, actions by index_select, then one frame_gather launch
// per frame key (and per next obs unless window).
void gather_on_device(at::TensorList frames, const at::Tensor& first, const at::Tensor& action, const at::Tensor& reward,
                      const at::Tensor& terminated, const at::Tensor& truncated, const at::Tensor& gidx, int64_t stack,
                      int64_t n, double gamma, bool window, at::TensorList obs_out, at::TensorList next_out,
                      const at::Tensor& action_out, const at::Tensor& ret_out, const at::Tensor& disc_out) {
  check_cuda(reward, "reward");
  check_cuda(first, "first");
  check_cuda(terminated, "terminated");
  check_cuda(truncated, "truncated");
  check_cuda(ret_out, "ret_out");
  check_cuda(disc_out, "disc_out");
  TORCH_CHECK(frames.size() == obs_out.size() && (window || next_out.size() == frames.size()),
              "rlsuite.gather_transitions: one output per frame key");
  const c10::cuda::CUDAGuard guard(reward.device());
  const int64_t slots = reward.size(1), batch = gidx.numel();
  TORCH_CHECK(ret_out.numel() == batch && disc_out.numel() == batch && action_out.numel() == batch,
              "rlsuite.gather_transitions: outputs must have one entry per index");
  auto g = on(gidx, reward, at::kLong);
  auto env = g.div(slots, "floor"), t = g.remainder(slots);
  auto boot = at::empty({batch}, g.options());
  C10_CUDA_CHECK(cuda::nstep_returns(reward.data_ptr<float>(), terminated.data_ptr<bool>(), truncated.data_ptr<bool>(),
                                     slots, t.data_ptr<int64_t>(), env.data_ptr<int64_t>(), batch, n, gamma,
                                     ret_out.data_ptr<float>(), disc_out.data_ptr<float>(), boot.data_ptr<int64_t>(),
                                     stream()));
  action_out.copy_(action.reshape(-1).index_select(0, g));
  for (size_t k = 0; k < frames.size(); ++k) {
    at::Tensor obs = obs_out[k];
    gather(frames[k], first, t, env, stack, window ? n : 0, obs);
    if (window) continue;
    at::Tensor next = next_out[k];
    gather(frames[k], first, boot, env, stack, 0, next);
  }
}

void gather_transitions(at::TensorList frames, const at::Tensor& first, const at::Tensor& action, const at::Tensor& reward,
                        const at::Tensor& terminated, const at::Tensor& truncated, const at::Tensor& gidx, int64_t stack,
                        int64_t n, double gamma, bool window, at::TensorList obs_out, at::TensorList next_out,
                        at::Tensor action_out, at::Tensor ret_out, at::Tensor disc_out) {
  gather_on_device(frames, first, action, reward, terminated, truncated, gidx, stack, n, gamma, window, obs_out,
                   next_out, action_out, ret_out, disc_out);
}

// Fused sampling on the GPU (contracts in ops.sample_uniform / ops.sample_per). The storage and
// trees are CUDA tensors; cursor and num_valid may live on either device (read once per call).
void gather_outs(at::TensorList frames, at::TensorList state, at::TensorList out, int64_t stack, int64_t n, double gamma,
                 bool window) {
  const size_t keys = frames.size();
  TORCH_CHECK(out.size() == 5 + keys * (window ? 1 : 2),
              "rlsuite.sample: out must hold action, reward, discount, indices, weights and the frame outputs");
  std::vector<at::Tensor> obs(out.begin() + 5, out.begin() + 5 + keys), next;
  if (!window) next.assign(out.begin() + 5 + keys, out.begin() + 5 + 2 * keys);
  gather_on_device(frames, state[0], state[1], state[2], state[3], state[4], out[3], stack, n, gamma, window, obs, next,
                   out[0], out[1], out[2]);
}

void sample_uniform(at::TensorList frames, at::TensorList state, at::TensorList out, std::optional<at::Generator> generator,
                    int64_t stack, int64_t n, double gamma, bool window) {
  TORCH_CHECK(state.size() == 8, "rlsuite.sample_uniform: state must hold 8 tensors");
  check_cuda(state[5], "valid");
  check_cuda(out[3], "indices");
  const c10::cuda::CUDAGuard guard(state[5].device());
  const int64_t envs = state[0].size(0), slots = state[0].size(1), batch = out[3].numel();
  const int64_t num_valid = state[7].reshape(-1)[0].item<int64_t>();
  TORCH_CHECK(num_valid > 0, "rlsuite.sample_uniform: no sampleable transition");
  const int64_t width = std::min(state[6].max().item<int64_t>(), slots), area = envs * width;
  const auto valid = state[5].reshape(-1);
  std::vector<at::Tensor> picked;
  int64_t need = batch;
  while (need > 0) {  // same rounds as the reference: draws, map, keep the first `need` valid
    const double expect = static_cast<double>(need * area) / static_cast<double>(num_valid) * 1.1;
    const int64_t draws = std::min<int64_t>(int64_t{1} << 20, static_cast<int64_t>(std::ceil(expect)) + 8);
    auto r = at::randint(area, {draws}, generator, out[3].options());
    auto g = r.div(width, "floor") * slots + r.remainder(width);
    auto kept = g.masked_select(valid.index_select(0, g));
    kept = kept.narrow(0, 0, std::min<int64_t>(need, kept.numel()));
    picked.push_back(kept);
    need -= kept.numel();
  }
  out[3].copy_(picked.size() == 1 ? picked[0] : at::cat(picked));
  gather_outs(frames, state, out, stack, n, gamma, window);
}

void sample_per(at::TensorList frames, at::TensorList state, at::TensorList out, std::optional<at::Generator> generator,
                double beta, int64_t stack, int64_t n, double gamma, bool window) {
  TORCH_CHECK(state.size() == 10, "rlsuite.sample_per: state must hold 10 tensors");
  const at::Tensor &sum_tree = state[8], &min_tree = state[9];
  check_cuda(sum_tree, "sum_tree");
  check_cuda(min_tree, "min_tree");
  check_cuda(out[3], "indices");
  check_cuda(out[4], "weights");
  TORCH_CHECK(out[3].scalar_type() == at::kLong && out[4].scalar_type() == at::kFloat && out[3].numel() == out[4].numel(),
              "rlsuite.sample_per: indices int64 and weights float32 (B,)");
  const c10::cuda::CUDAGuard guard(sum_tree.device());
  const int64_t batch = out[3].numel();
  auto u = at::rand({batch}, generator, sum_tree.options());
  C10_CUDA_CHECK(cuda::per_sample(sum_tree.data_ptr<double>(), min_tree.data_ptr<double>(), sum_tree.numel(),
                                  u.data_ptr<double>(), batch, beta, out[3].data_ptr<int64_t>(),
                                  out[4].data_ptr<float>(), stream()));
  gather_outs(frames, state, out, stack, n, gamma, window);
}

// The buffer's add on the GPU (contract in storage.cpp): the storage fields, the per-env state
// (cursor, new_episode, num_valid) and the trees are CUDA tensors; the step's inputs may come
// from the host (they are copied over here).
void check_field(const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t envs, int64_t slots) {
  check_cuda(t, name);
  TORCH_CHECK(t.scalar_type() == dtype && t.dim() == 2 && t.size(0) == envs && t.size(1) == slots,
              "rlsuite.stream_add: ", name, " must be ", dtype, " (E, L)");
}

// A step's (E, *F) frames as contiguous rows of the storage's dtype on its device.
at::Tensor frame_rows(const at::Tensor& x, const at::Tensor& storage) {
  const int64_t envs = storage.size(0), per_env = storage.numel() / (envs * storage.size(1));
  TORCH_CHECK(x.dim() >= 1 && x.size(0) == envs && x.numel() == envs * per_env,
              "rlsuite.stream_add: an observation does not have one frame per env of the stored shape");
  return x.to(storage.device(), storage.scalar_type()).contiguous();
}

void stream_add(at::TensorList frames, at::TensorList obs, at::TensorList final_obs, at::Tensor action, at::Tensor reward,
                at::Tensor first, at::Tensor terminated, at::Tensor truncated, at::Tensor final_flag, at::Tensor valid,
                at::Tensor cursor, at::Tensor new_episode, at::Tensor num_valid, const at::Tensor& act_in,
                const at::Tensor& rew_in, const at::Tensor& term_in, const at::Tensor& trunc_in, int64_t frame_stack,
                int64_t n_step, const std::optional<at::Tensor>& sum_tree, const std::optional<at::Tensor>& min_tree,
                double max_priority) {
  check_cuda(reward, "reward");
  const int64_t envs = reward.size(0), slots = reward.size(1);
  check_field(action, "action", at::kLong, envs, slots);
  check_field(reward, "reward", at::kFloat, envs, slots);
  check_field(first, "first", at::kBool, envs, slots);
  check_field(terminated, "terminated", at::kBool, envs, slots);
  check_field(truncated, "truncated", at::kBool, envs, slots);
  check_field(final_flag, "final", at::kBool, envs, slots);
  check_field(valid, "valid", at::kBool, envs, slots);
  check_cuda(cursor, "cursor");
  check_cuda(new_episode, "new_episode");
  check_cuda(num_valid, "num_valid");
  TORCH_CHECK(cursor.scalar_type() == at::kLong && cursor.numel() == envs && new_episode.scalar_type() == at::kBool &&
                  new_episode.numel() == envs && num_valid.scalar_type() == at::kLong && num_valid.numel() == 1,
              "rlsuite.stream_add: cursor int64 (E,), new_episode bool (E,), num_valid int64 (1,)");
  TORCH_CHECK(frames.size() == obs.size() && (final_obs.empty() || final_obs.size() == frames.size()),
              "rlsuite.stream_add: one observation per frame key");
  TORCH_CHECK(sum_tree.has_value() == min_tree.has_value(), "rlsuite.stream_add: both trees or none");
  TORCH_CHECK(act_in.numel() == envs && rew_in.numel() == envs && term_in.numel() == envs && trunc_in.numel() == envs,
              "rlsuite.stream_add: action, reward and flags must have one entry per env");
  if (final_obs.empty() && !frames.empty())  // checked on the inputs: no sync for host flags
    TORCH_CHECK(!at::logical_or(term_in, trunc_in).any().item<bool>(),
                "rlsuite.stream_add: an episode ended but final_obs is empty");
  const c10::cuda::CUDAGuard guard(reward.device());
  auto act = on(act_in, reward, at::kLong), rew = on(rew_in, reward, at::kFloat);
  auto term = on(term_in, reward, at::kBool), trunc = on(trunc_in, reward, at::kBool);
  // The device copies of the frames live until the end of this call; freeing them then is safe
  // because the caching allocator reuses memory in stream order, after these launches.
  std::vector<at::Tensor> keep;
  std::vector<cuda::FrameWrite> keys;
  for (size_t k = 0; k < frames.size(); ++k) {
    check_cuda(frames[k], "frames");
    TORCH_CHECK(frames[k].dim() >= 2 && frames[k].size(0) == envs && frames[k].size(1) == slots,
                "rlsuite.stream_add: frames must be contiguous (E, L, ...)");
    const at::Tensor rows = frame_rows(obs[k], frames[k]);
    const at::Tensor fin = final_obs.empty() ? at::Tensor() : frame_rows(final_obs[k], frames[k]);
    const int64_t bytes = frames[k].numel() / (envs * slots) * frames[k].element_size();
    keys.push_back({static_cast<uint8_t*>(frames[k].data_ptr()), static_cast<const uint8_t*>(rows.data_ptr()),
                    fin.defined() ? static_cast<const uint8_t*>(fin.data_ptr()) : nullptr, bytes});
    keep.push_back(rows);
    if (fin.defined()) keep.push_back(fin);
  }
  double *st = nullptr, *mt = nullptr;
  if (sum_tree.has_value()) {
    check_cuda(*sum_tree, "sum_tree");
    check_cuda(*min_tree, "min_tree");
    TORCH_CHECK(sum_tree->scalar_type() == at::kDouble && min_tree->scalar_type() == at::kDouble &&
                    sum_tree->numel() == min_tree->numel() && tree_leaves(sum_tree->numel()) >= envs * slots,
                "rlsuite.stream_add: trees must be float64 of one size with a leaf per slot");
    st = sum_tree->data_ptr<double>();
    mt = min_tree->data_ptr<double>();
  }
  const int64_t count = envs * refresh_count(n_step, frame_stack);
  auto changed = at::empty({count}, act.options()), became = at::empty({count}, term.options());
  StreamFields s{slots, frame_stack, n_step, action.data_ptr<int64_t>(), reward.data_ptr<float>(),
                 first.data_ptr<bool>(), terminated.data_ptr<bool>(), truncated.data_ptr<bool>(),
                 final_flag.data_ptr<bool>(), valid.data_ptr<bool>()};
  const cuda::StepInput in{act.data_ptr<int64_t>(), rew.data_ptr<float>(), term.data_ptr<bool>(),
                           trunc.data_ptr<bool>()};
  C10_CUDA_CHECK(cuda::stream_add(s, envs, keys.data(), static_cast<int64_t>(keys.size()), cursor.data_ptr<int64_t>(),
                                  new_episode.data_ptr<bool>(), num_valid.data_ptr<int64_t>(), in,
                                  changed.data_ptr<int64_t>(), became.data_ptr<bool>(), st, mt,
                                  sum_tree.has_value() ? sum_tree->numel() : 0, max_priority, stream()));
}

}  // namespace

TORCH_LIBRARY_IMPL(rlsuite, CUDA, m) {
  m.impl("tree_update_", &tree_update);
  m.impl("tree_rebuild_", &tree_rebuild);
  m.impl("tree_search", &tree_search);
  m.impl("per_sample", &per_sample);
  m.impl("per_update_", &per_update);
  m.impl("frame_stack_gather", &frame_stack_gather);
  m.impl("frame_window_gather", &frame_window_gather);
  m.impl("nstep_returns", &nstep_returns);
  m.impl("sequence_gather", &sequence_gather);
  m.impl("gather_transitions", &gather_transitions);
  m.impl("sample_uniform", &sample_uniform);
  m.impl("sample_per", &sample_per);
  m.impl("stream_add", &stream_add);
}

}  // namespace rlsuite
#endif  // RLSUITE_WITH_CUDA
