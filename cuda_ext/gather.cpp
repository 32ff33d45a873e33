// CPU kernels that build training batches from the time-major stream storage:
// frame stacks (and the (stack+n)-frame window), n-step returns, transformer sequences, the
// fused per-batch gather the replay buffer calls, and uniform index picking.
// Storage convention: a per-slot field is (E, L, ...) contiguous; a transition is addressed by
// (env, slot) or by its global slot id env * L + slot.
#include <torch/library.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/randint.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common.h"
#include "cpu_trees.h"

namespace rlsuite {
namespace {

// The batch gathers copy each row in chunks of this many bytes and, after each chunk, prefetch
// the same bytes of the next row: two DRAM streams in flight instead of one, which lets a
// single core read random rows faster (rows are tens of KB from anywhere in a GB-sized ring).
constexpr int64_t kPrefetchChunk = 1024;

// Bytes of one slot's frame in a (E, L, *F) storage tensor.
int64_t frame_bytes(const at::Tensor& frames) {
  TORCH_CHECK(frames.dim() >= 2 && frames.is_contiguous(), "rlsuite: frames must be contiguous (E, L, ...)");
  return frames.numel() == 0 ? 0 : frames.numel() / (frames.size(0) * frames.size(1)) * frames.element_size();
}

void check_flags(const at::Tensor& flags, const at::Tensor& like, const char* name) {
  TORCH_CHECK(flags.scalar_type() == at::kBool && flags.is_contiguous() && flags.dim() == 2 &&
                  flags.size(0) == like.size(0) && flags.size(1) == like.size(1),
              "rlsuite: ", name, " must be contiguous bool (E, L) matching the storage");
}

// Copy slot (env, t - back) of `frames` for each column of one output row, zeroing a column
// whose frame precedes the episode start of slot t (or, with ahead > 0, follows a new start).
// Column c holds frame t - (stack - 1) + c for c in [0, stack + ahead).
// The kept columns are consecutive slots of one stream, so they are found first and copied
// front to back in one memcpy (two at the ring's wrap): one forward stream per row for the
// hardware prefetcher instead of stack + ahead backward-ordered frame copies. `pf_next` (may be
// null) is the next row's source, prefetched chunk by chunk alongside.
void gather_row(const uint8_t* src, const bool* first, int64_t slots, int64_t bytes, int64_t env, int64_t t,
                int64_t stack, int64_t ahead, uint8_t* dst, const uint8_t* pf_next) {
  int64_t pf_off = 0;  // bytes of pf_next prefetched so far
  const bool* row_first = first + env * slots;
  const uint8_t* base = src + env * slots * bytes;
  const int64_t width = stack + ahead;
  int64_t lo = 0;  // columns before lo precede the episode start at or before slot t
  for (int64_t back = 0; back < stack - 1; ++back) {
    if (row_first[wrap(t - back, slots)]) {
      lo = stack - 1 - back;
      break;
    }
  }
  int64_t hi = width;  // columns from hi on belong to a later episode
  for (int64_t a = 1; a <= ahead; ++a) {
    if (row_first[wrap(t + a, slots)]) {
      hi = stack - 1 + a;
      break;
    }
  }
  if (lo > 0) std::memset(dst, 0, lo * bytes);
  for (int64_t c = lo; c < hi;) {
    const int64_t s = wrap(t - (stack - 1) + c, slots);
    const int64_t run = std::min(hi - c, slots - s);
    if (pf_next) {
      const int64_t n = run * bytes;
      for (int64_t o = 0; o < n; o += kPrefetchChunk) {
        const int64_t m = std::min(kPrefetchChunk, n - o);
        for (int64_t q = 0; q < m; q += 64) __builtin_prefetch(pf_next + pf_off + q);
        pf_off += m;
        std::memcpy(dst + c * bytes + o, base + s * bytes + o, m);
      }
    } else std::memcpy(dst + c * bytes, base + s * bytes, run * bytes);
    c += run;
  }
  if (hi < width) std::memset(dst + hi * bytes, 0, (width - hi) * bytes);
}

void gather_frames(const at::Tensor& frames, const at::Tensor& first, const int64_t* t, const int64_t* env,
                   int64_t batch, int64_t stack, int64_t ahead, at::Tensor& out) {
  const int64_t bytes = frame_bytes(frames), width = stack + ahead;
  TORCH_CHECK(out.is_contiguous() && out.scalar_type() == frames.scalar_type() &&
                  out.numel() * out.element_size() == batch * width * bytes,
              "rlsuite: out must be contiguous (B, ", width, ", *frame) of the frames' dtype");
  const auto* src = static_cast<const uint8_t*>(frames.data_ptr());
  auto* dst = static_cast<uint8_t*>(out.data_ptr());
  const bool* f = first.data_ptr<bool>();
  const int64_t slots = frames.size(1);
  // Rows are a few KB to tens of KB: a grain of 16 rows keeps threads busy without overhead.
  at::parallel_for(0, batch, 16, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const uint8_t* next = nullptr;  // the next row's kept frames when contiguous in the ring
      if (b + 1 < b1 && wrap(t[b + 1] - (stack - 1), slots) + width <= slots)
        next = src + (env[b + 1] * slots + wrap(t[b + 1] - (stack - 1), slots)) * bytes;
      gather_row(src, f, slots, bytes, env[b], t[b], stack, ahead, dst + b * width * bytes, next);
    }
  });
}

void frame_stack_gather_cpu(const at::Tensor& frames, const at::Tensor& first, const at::Tensor& t_idx,
                            const at::Tensor& env_idx, int64_t stack, at::Tensor out) {
  check_flags(first, frames, "first");
  const auto t = t_idx.to(at::kLong).contiguous(), e = env_idx.to(at::kLong).contiguous();
  gather_frames(frames, first, t.data_ptr<int64_t>(), e.data_ptr<int64_t>(), t.numel(), stack, 0, out);
}

// Observation and n-step next observation as one (stack + n)-frame window per row.
void frame_window_gather_cpu(const at::Tensor& frames, const at::Tensor& first, const at::Tensor& t_idx,
                             const at::Tensor& env_idx, int64_t stack, int64_t n, at::Tensor out) {
  check_flags(first, frames, "first");
  const auto t = t_idx.to(at::kLong).contiguous(), e = env_idx.to(at::kLong).contiguous();
  gather_frames(frames, first, t.data_ptr<int64_t>(), e.data_ptr<int64_t>(), t.numel(), stack, n, out);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> nstep_returns_cpu(const at::Tensor& rewards, const at::Tensor& terminated,
                                                                 const at::Tensor& truncated, const at::Tensor& t_idx,
                                                                 const at::Tensor& env_idx, int64_t n, double gamma) {
  TORCH_CHECK(rewards.scalar_type() == at::kFloat && rewards.is_contiguous() && rewards.dim() == 2,
              "rlsuite.nstep_returns: rewards must be contiguous float32 (E, L)");
  check_flags(terminated, rewards, "terminated");
  check_flags(truncated, rewards, "truncated");
  const auto t = t_idx.to(at::kLong).contiguous(), e = env_idx.to(at::kLong).contiguous();
  const int64_t batch = t.numel(), slots = rewards.size(1);
  auto ret = at::empty({batch}, rewards.options());
  auto disc = at::empty({batch}, rewards.options());
  auto boot = at::empty({batch}, t.options());
  const int64_t *tp = t.data_ptr<int64_t>(), *ep = e.data_ptr<int64_t>();
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t row = ep[b] * slots;
    nstep_one(rewards.data_ptr<float>() + row, terminated.data_ptr<bool>() + row, truncated.data_ptr<bool>() + row, slots,
              tp[b], n, gamma, ret.data_ptr<float>() + b, disc.data_ptr<float>() + b, boot.data_ptr<int64_t>() + b);
  }
  return {ret, disc, boot};
}

// Windows of `length` slots starting at slot t: frames, actions, returns-to-go and timesteps,
// with mask False (and zeros) from the first slot after the episode's last step on.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> sequence_gather_cpu(
    const at::Tensor& frames, const at::Tensor& action, const at::Tensor& rtg, const at::Tensor& timestep,
    const at::Tensor& ended, const at::Tensor& final_flag, const at::Tensor& t_idx, const at::Tensor& env_idx,
    int64_t length, at::Tensor obs_out) {
  check_flags(ended, frames, "ended");
  check_flags(final_flag, frames, "final");
  TORCH_CHECK(action.scalar_type() == at::kLong && rtg.scalar_type() == at::kFloat && timestep.scalar_type() == at::kLong &&
                  action.is_contiguous() && rtg.is_contiguous() && timestep.is_contiguous(),
              "rlsuite.sequence_gather: action/timestep int64, rtg float32, all contiguous (E, L)");
  const auto t = t_idx.to(at::kLong).contiguous(), e = env_idx.to(at::kLong).contiguous();
  const int64_t batch = t.numel(), slots = frames.size(1), bytes = frame_bytes(frames);
  TORCH_CHECK(obs_out.is_contiguous() && obs_out.numel() * obs_out.element_size() == batch * length * bytes,
              "rlsuite.sequence_gather: obs_out must be contiguous (B, length, *frame)");
  auto act = at::zeros({batch, length}, action.options());
  auto ret = at::zeros({batch, length}, rtg.options());
  auto step = at::zeros({batch, length}, timestep.options());
  auto mask = at::zeros({batch, length}, ended.options());
  const auto* src = static_cast<const uint8_t*>(frames.data_ptr());
  auto* dst = static_cast<uint8_t*>(obs_out.data_ptr());
  const int64_t *tp = t.data_ptr<int64_t>(), *ep = e.data_ptr<int64_t>();
  const int64_t *act_in = action.data_ptr<int64_t>(), *step_in = timestep.data_ptr<int64_t>();
  const float* rtg_in = rtg.data_ptr<float>();
  const bool *end_in = ended.data_ptr<bool>(), *final_in = final_flag.data_ptr<bool>();
  int64_t *act_o = act.data_ptr<int64_t>(), *step_o = step.data_ptr<int64_t>();
  float* rtg_o = ret.data_ptr<float>();
  bool* mask_o = mask.data_ptr<bool>();
  at::parallel_for(0, batch, 4, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      bool alive = true;
      for (int64_t i = 0; i < length; ++i) {
        const int64_t g = ep[b] * slots + wrap(tp[b] + i, slots), o = b * length + i;
        alive = alive && !final_in[g];
        uint8_t* out = dst + o * bytes;
        if (alive) {
          std::memcpy(out, src + g * bytes, bytes);
          act_o[o] = act_in[g];
          rtg_o[o] = rtg_in[g];
          step_o[o] = step_in[g];
          mask_o[o] = true;
        } else {
          std::memset(out, 0, bytes);
        }
        alive = alive && !end_in[g];
      }
    }
  });
  return {act, ret, step, mask};
}

// The replay buffer's whole per-batch gather in one call, into preallocated outputs: n-step
// returns, actions, and per frame key either obs and next obs stacks, or (window=True, valid
// when every bootstrap is n slots ahead, e.g. n = 1) one (stack + n)-frame window.
// The per-batch gather on raw global slot ids (shared by gather_transitions and the fused
// sample_* operators).
void gather_batch(at::TensorList frames, const at::Tensor& first, const at::Tensor& action, const at::Tensor& reward,
                  const at::Tensor& terminated, const at::Tensor& truncated, const int64_t* gp, int64_t batch,
                  int64_t stack, int64_t n, double gamma, bool window, at::TensorList obs_out, at::TensorList next_out,
                  const at::Tensor& action_out, const at::Tensor& ret_out, const at::Tensor& disc_out) {
  check_flags(first, reward, "first");
  check_flags(terminated, reward, "terminated");
  check_flags(truncated, reward, "truncated");
  TORCH_CHECK(frames.size() == obs_out.size() && (window || next_out.size() == frames.size()),
              "rlsuite.gather_transitions: one output per frame key");
  TORCH_CHECK(action.scalar_type() == at::kLong && action.is_contiguous() && reward.scalar_type() == at::kFloat &&
                  reward.is_contiguous(), "rlsuite.gather_transitions: action int64 and reward float32, contiguous");
  TORCH_CHECK(action_out.scalar_type() == at::kLong && ret_out.scalar_type() == at::kFloat &&
                  disc_out.scalar_type() == at::kFloat && action_out.is_contiguous() && ret_out.is_contiguous() &&
                  disc_out.is_contiguous() && action_out.numel() >= batch && ret_out.numel() >= batch &&
                  disc_out.numel() >= batch,
              "rlsuite.gather_transitions: action_out int64, ret_out/disc_out float32, contiguous (B,)");
  const int64_t slots = reward.size(1), cells = reward.numel();
  std::vector<int64_t> t(batch), env(batch), boot(batch);
  const float* rew = reward.data_ptr<float>();
  const bool *term = terminated.data_ptr<bool>(), *trunc = truncated.data_ptr<bool>();
  const int64_t* act = action.data_ptr<int64_t>();
  int64_t* act_o = action_out.data_ptr<int64_t>();
  float *ret_o = ret_out.data_ptr<float>(), *disc_o = disc_out.data_ptr<float>();
  for (int64_t b = 0; b < batch; ++b) {
    TORCH_CHECK(gp[b] >= 0 && gp[b] < cells, "rlsuite.gather_transitions: slot id ", gp[b], " out of range");
    env[b] = gp[b] / slots;
    t[b] = gp[b] % slots;
    const int64_t row = env[b] * slots;
    nstep_one(rew + row, term + row, trunc + row, slots, t[b], n, gamma, ret_o + b, disc_o + b, &boot[b]);
    act_o[b] = act[gp[b]];
  }
  for (size_t k = 0; k < frames.size(); ++k) {
    at::Tensor obs = obs_out[k];
    gather_frames(frames[k], first, t.data(), env.data(), batch, stack, window ? n : 0, obs);
    if (window) continue;
    at::Tensor next = next_out[k];
    gather_frames(frames[k], first, boot.data(), env.data(), batch, stack, 0, next);
  }
}

// The replay buffer's whole per-batch gather in one call, into preallocated outputs: n-step
// returns, actions, and per frame key either obs and next obs stacks, or (window=True, valid
// when every bootstrap is n slots ahead, e.g. n = 1) one (stack + n)-frame window.
void gather_transitions_cpu(at::TensorList frames, const at::Tensor& first, const at::Tensor& action,
                            const at::Tensor& reward, const at::Tensor& terminated, const at::Tensor& truncated,
                            const at::Tensor& gidx, int64_t stack, int64_t n, double gamma, bool window,
                            at::TensorList obs_out, at::TensorList next_out, at::Tensor action_out,
                            at::Tensor ret_out, at::Tensor disc_out) {
  const auto g = gidx.to(at::kLong).contiguous();
  gather_batch(frames, first, action, reward, terminated, truncated, g.data_ptr<int64_t>(), g.numel(), stack, n, gamma,
               window, obs_out, next_out, action_out, ret_out, disc_out);
}

// ---------------------------------------------------------------- fused sampling (one call per batch)
// state = [first, action, reward, terminated, truncated, valid, cursor, num_valid(, sum_tree, min_tree)]
// out   = [action, reward, discount, indices, weights, obs per frame key..., next obs per key (unless window)...]
// Draws come from `generator` exactly as the reference (ops.sample_uniform / ops.sample_per) draws
// them, so both backends give identical batches for one seed.

struct Outs {
  std::vector<at::Tensor> obs, next;
};

Outs split_outs(at::TensorList frames, at::TensorList out, bool window, int64_t batch, int64_t first_frame_out) {
  const size_t keys = frames.size();
  TORCH_CHECK(out.size() == first_frame_out + keys * (window ? 1 : 2),
              "rlsuite.sample: out must hold action, reward, discount, indices, weights and the frame outputs");
  Outs o;
  for (size_t k = 0; k < keys; ++k) o.obs.push_back(out[first_frame_out + k]);
  if (!window)
    for (size_t k = 0; k < keys; ++k) o.next.push_back(out[first_frame_out + keys + k]);
  return o;
}

void check_state(at::TensorList state, size_t want) {
  TORCH_CHECK(state.size() == want, "rlsuite.sample: state must hold ", want, " tensors, got ", state.size());
  TORCH_CHECK(state[5].scalar_type() == at::kBool && state[5].is_contiguous() && state[5].numel() == state[0].numel(),
              "rlsuite.sample: valid must be contiguous bool (E, L)");
  TORCH_CHECK(state[6].scalar_type() == at::kLong && state[6].is_contiguous() && state[6].numel() == state[0].size(0) &&
                  state[7].scalar_type() == at::kLong && state[7].numel() == 1,
              "rlsuite.sample: cursor int64 (E,) and num_valid int64 (1,)");
}

void sample_uniform_cpu(at::TensorList frames, at::TensorList state, at::TensorList out,
                        std::optional<at::Generator> generator, int64_t stack, int64_t n, double gamma, bool window) {
  check_state(state, 8);
  const at::Tensor& indices = out[3];
  TORCH_CHECK(indices.scalar_type() == at::kLong && indices.is_contiguous(), "rlsuite.sample_uniform: indices int64");
  const int64_t batch = indices.numel(), envs = state[0].size(0), slots = state[0].size(1);
  const int64_t num_valid = state[7].data_ptr<int64_t>()[0];
  TORCH_CHECK(num_valid > 0, "rlsuite.sample_uniform: no sampleable transition");
  const int64_t* cursor = state[6].data_ptr<int64_t>();
  const int64_t width = std::min(*std::max_element(cursor, cursor + envs), slots), area = envs * width;
  const bool* ok = state[5].data_ptr<bool>();
  int64_t* picked = indices.data_ptr<int64_t>();
  int64_t kept = 0;
  while (kept < batch) {
    const int64_t need = batch - kept;
    const double expect = static_cast<double>(need * area) / static_cast<double>(num_valid) * 1.1;
    const int64_t draws = std::min<int64_t>(int64_t{1} << 20, static_cast<int64_t>(std::ceil(expect)) + 8);
    const auto r = at::randint(area, {draws}, generator, indices.options());
    const int64_t* rp = r.data_ptr<int64_t>();
    for (int64_t i = 0; i < draws && kept < batch; ++i) {
      const int64_t gid = (rp[i] / width) * slots + rp[i] % width;
      if (ok[gid]) picked[kept++] = gid;
    }
  }
  Outs o = split_outs(frames, out, window, batch, 5);
  gather_batch(frames, state[0], state[1], state[2], state[3], state[4], picked, batch, stack, n, gamma, window, o.obs,
               o.next, out[0], out[1], out[2]);
}

void sample_per_cpu(at::TensorList frames, at::TensorList state, at::TensorList out,
                    std::optional<at::Generator> generator, double beta, int64_t stack, int64_t n, double gamma,
                    bool window) {
  check_state(state, 10);
  const at::Tensor &sum_tree = state[8], &min_tree = state[9], &indices = out[3], &weights = out[4];
  TORCH_CHECK(sum_tree.scalar_type() == at::kDouble && min_tree.scalar_type() == at::kDouble &&
                  sum_tree.is_contiguous() && min_tree.is_contiguous() && sum_tree.numel() == min_tree.numel(),
              "rlsuite.sample_per: trees must be contiguous float64 of one size");
  TORCH_CHECK(indices.scalar_type() == at::kLong && indices.is_contiguous() && weights.scalar_type() == at::kFloat &&
                  weights.is_contiguous() && weights.numel() == indices.numel(),
              "rlsuite.sample_per: indices int64 and weights float32 (B,)");
  const int64_t batch = indices.numel();
  const auto u = at::rand({batch}, generator, sum_tree.options());
  per_sample_into(sum_tree.data_ptr<double>(), sum_tree.numel(), min_tree.data_ptr<double>()[0], u.data_ptr<double>(),
                  batch, beta, indices.data_ptr<int64_t>(), weights.data_ptr<float>());
  Outs o = split_outs(frames, out, window, batch, 5);
  gather_batch(frames, state[0], state[1], state[2], state[3], state[4], indices.data_ptr<int64_t>(), batch, stack, n,
               gamma, window, o.obs, o.next, out[0], out[1], out[2]);
}

// Map uniform draws r in [0, E * width) to global slots (r / width) * L + r % width and keep the
// first `need` that may start a transition (rejection sampling from the written rectangle).
at::Tensor uniform_pick_cpu(const at::Tensor& valid, const at::Tensor& draws, int64_t width, int64_t slots, int64_t need) {
  TORCH_CHECK(valid.scalar_type() == at::kBool && valid.is_contiguous(), "rlsuite.uniform_pick: valid must be contiguous bool");
  const auto r = draws.to(at::kLong).contiguous();
  auto out = at::empty({std::min<int64_t>(need, r.numel())}, r.options());
  const bool* ok = valid.data_ptr<bool>();
  const int64_t* rp = r.data_ptr<int64_t>();
  int64_t* op = out.data_ptr<int64_t>();
  int64_t kept = 0;
  for (int64_t i = 0; i < r.numel() && kept < out.numel(); ++i) {
    const int64_t gid = (rp[i] / width) * slots + rp[i] % width;
    TORCH_CHECK(gid >= 0 && gid < valid.numel(), "rlsuite.uniform_pick: draw out of range");
    if (ok[gid]) op[kept++] = gid;
  }
  return out.narrow(0, 0, kept);
}

}  // namespace

TORCH_LIBRARY_IMPL(rlsuite, CPU, m) {
  m.impl("frame_stack_gather", &frame_stack_gather_cpu);
  m.impl("frame_window_gather", &frame_window_gather_cpu);
  m.impl("nstep_returns", &nstep_returns_cpu);
  m.impl("sequence_gather", &sequence_gather_cpu);
  m.impl("gather_transitions", &gather_transitions_cpu);
  m.impl("uniform_pick", &uniform_pick_cpu);
  m.impl("sample_uniform", &sample_uniform_cpu);
  m.impl("sample_per", &sample_per_cpu);
}

}  // namespace rlsuite
