// Torch glue of the CUDA kernels (trees.cu, gather.cu): checks, allocation, the current
// stream, and registration for the CUDA dispatch key. Compiled only in a CUDA build
// (setup.py defines RLSUITE_WITH_CUDA); a CPU build compiles this file to nothing.
#ifdef RLSUITE_WITH_CUDA
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

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

}  // namespace

TORCH_LIBRARY_IMPL(rlsuite, CUDA, m) {
  m.impl("tree_update_", &tree_update);
  m.impl("tree_rebuild_", &tree_rebuild);
  m.impl("tree_search", &tree_search);
  m.impl("per_sample", &per_sample);
  m.impl("frame_stack_gather", &frame_stack_gather);
  m.impl("frame_window_gather", &frame_window_gather);
  m.impl("nstep_returns", &nstep_returns);
  m.impl("sequence_gather", &sequence_gather);
}

}  // namespace rlsuite
#endif  // RLSUITE_WITH_CUDA
