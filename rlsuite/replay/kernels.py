"""Dispatch of the replay operators: ``torch.ops.rlsuite.*`` (native C++/CUDA kernels of
``rlsuite._C``) when loaded, else the pure-torch reference of the same name in :mod:`.ops`.

The buffer calls only these functions. Each has exactly its reference's contract (see the
docstrings in :mod:`.ops`); a native kernel is used for a tensor's device only when the
extension has a kernel for it (CUDA tensors fall back to the reference in a CPU-only build).
``stream_add`` is the exception: its reference is the numpy :class:`~.storage.StreamStorage`,
so its callers ask :func:`has_native` and take their own reference path.
"""
from __future__ import annotations

import torch
from torch import Tensor

from rlsuite import native
from rlsuite.replay import ops


_CUDA_KERNEL: dict[str, bool] = {}  # op name -> the extension registered a CUDA kernel for it


def _native_for(t: Tensor, op: str = "tree_search") -> bool:
    if not native.enabled():
        return False
    if t.device.type == "cpu":
        return True
    if t.device.type != "cuda":
        return False
    if op not in _CUDA_KERNEL:
        _CUDA_KERNEL[op] = torch._C._dispatch_has_kernel_for_dispatch_key(f"rlsuite::{op}", "CUDA")
    return _CUDA_KERNEL[op]


def has_native(t: Tensor, op: str) -> bool:
    """Whether ``torch.ops.rlsuite.<op>`` has a kernel for ``t``'s device and is switched on."""
    return _native_for(t, op)


def sum_tree_update(tree: Tensor, idx: Tensor, values: Tensor) -> None:
    if _native_for(tree):
        torch.ops.rlsuite.tree_update_(tree, idx, values, False)
    else:
        ops.sum_tree_update(tree, idx, values)


def min_tree_update(tree: Tensor, idx: Tensor, values: Tensor) -> None:
    if _native_for(tree):
        torch.ops.rlsuite.tree_update_(tree, idx, values, True)
    else:
        ops.min_tree_update(tree, idx, values)


def tree_rebuild(tree: Tensor, reduce: str) -> None:
    if _native_for(tree):
        torch.ops.rlsuite.tree_rebuild_(tree, reduce == "min")
    else:
        ops.tree_rebuild(tree, reduce)


def sum_tree_search(tree: Tensor, prefix_values: Tensor) -> Tensor:
    if _native_for(tree):
        return torch.ops.rlsuite.tree_search(tree, prefix_values)
    return ops.sum_tree_search(tree, prefix_values)


def per_sample(sum_tree: Tensor, min_tree: Tensor, u: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    if _native_for(sum_tree):
        return torch.ops.rlsuite.per_sample(sum_tree, min_tree, u, beta)
    return ops.per_sample(sum_tree, min_tree, u, beta)


def per_update(sum_tree: Tensor, min_tree: Tensor, idx: Tensor, td: Tensor, valid: Tensor,
               alpha: float, eps: float) -> float:
    if _native_for(sum_tree, "per_update_"):
        return torch.ops.rlsuite.per_update_(sum_tree, min_tree, idx, td, valid, alpha, eps)
    return ops.per_update(sum_tree, min_tree, idx, td, valid, alpha, eps)


def frame_stack_gather(frames: Tensor, first: Tensor, t_idx: Tensor, env_idx: Tensor, stack: int,
                       out: Tensor | None = None) -> Tensor:
    if not _native_for(frames):
        return ops.frame_stack_gather(frames, first, t_idx, env_idx, stack, out=out)
    if out is None:
        out = frames.new_empty((t_idx.numel(), stack, *frames.shape[2:]))
    torch.ops.rlsuite.frame_stack_gather(frames, first, t_idx, env_idx, stack, out)
    return out


def frame_window_gather(frames: Tensor, first: Tensor, t_idx: Tensor, env_idx: Tensor, stack: int, n: int,
                        out: Tensor | None = None) -> Tensor:
    if not _native_for(frames):
        return ops.frame_window_gather(frames, first, t_idx, env_idx, stack, n, out=out)
    if out is None:
        out = frames.new_empty((t_idx.numel(), stack + n, *frames.shape[2:]))
    torch.ops.rlsuite.frame_window_gather(frames, first, t_idx, env_idx, stack, n, out)
    return out


def nstep_returns(rewards: Tensor, terminated: Tensor, truncated: Tensor, t_idx: Tensor, env_idx: Tensor,
                  n: int, gamma: float) -> tuple[Tensor, Tensor, Tensor]:
    if _native_for(rewards):
        return torch.ops.rlsuite.nstep_returns(rewards, terminated, truncated, t_idx, env_idx, n, gamma)
    return ops.nstep_returns(rewards, terminated, truncated, t_idx, env_idx, n, gamma)


def sequence_gather(frames: Tensor, action: Tensor, rtg: Tensor, timestep: Tensor, ended: Tensor, final: Tensor,
                    t_idx: Tensor, env_idx: Tensor, length: int, obs_out: Tensor | None = None):
    if not _native_for(frames):
        return ops.sequence_gather(frames, action, rtg, timestep, ended, final, t_idx, env_idx, length, obs_out)
    if obs_out is None:
        obs_out = frames.new_empty((t_idx.numel(), length, *frames.shape[2:]))
    rest = torch.ops.rlsuite.sequence_gather(frames, action, rtg, timestep, ended, final, t_idx, env_idx,
                                             length, obs_out)
    return (obs_out, *rest)


def gather_transitions(frames: list[Tensor], first: Tensor, action: Tensor, reward: Tensor, terminated: Tensor,
                       truncated: Tensor, gidx: Tensor, stack: int, n: int, gamma: float, window: bool,
                       obs_out: list[Tensor], next_out: list[Tensor], action_out: Tensor, ret_out: Tensor,
                       disc_out: Tensor) -> None:
    fn = torch.ops.rlsuite.gather_transitions if _native_for(reward, "gather_transitions") else ops.gather_transitions
    fn(frames, first, action, reward, terminated, truncated, gidx, stack, n, gamma, window,
       obs_out, next_out, action_out, ret_out, disc_out)


def uniform_pick(valid: Tensor, draws: Tensor, width: int, slots: int, need: int) -> Tensor:
    if _native_for(valid, "uniform_pick"):
        return torch.ops.rlsuite.uniform_pick(valid, draws, width, slots, need)
    return ops.uniform_pick(valid, draws, width, slots, need)


def sample_uniform(frames: list[Tensor], state: list[Tensor], out: list[Tensor], generator: torch.Generator | None,
                   stack: int, n: int, gamma: float, window: bool) -> None:
    fn = torch.ops.rlsuite.sample_uniform if _native_for(state[0], "sample_uniform") else ops.sample_uniform
    fn(frames, state, out, generator, stack, n, gamma, window)


def sample_per(frames: list[Tensor], state: list[Tensor], out: list[Tensor], generator: torch.Generator | None,
               beta: float, stack: int, n: int, gamma: float, window: bool) -> None:
    fn = torch.ops.rlsuite.sample_per if _native_for(state[0], "sample_per") else ops.sample_per
    fn(frames, state, out, generator, beta, stack, n, gamma, window)


def stream_add(frames: list[Tensor], obs: list[Tensor], final_obs: list[Tensor], fields: dict[str, Tensor],
               cursor: Tensor, new_episode: Tensor, num_valid: Tensor, action: Tensor, reward: Tensor,
               terminated: Tensor, truncated: Tensor, frame_stack: int, n_step: int,
               trees: tuple[Tensor, Tensor, float] | None) -> None:
    """The buffer's add as one native call on the storage's device (contract in cuda_ext/storage.cpp;
    its reference is :meth:`StreamStorage.write`, which has no tensor form here, so callers check
    :func:`has_native` first). ``fields``: the (E, L) per-slot tensors by StreamStorage name;
    ``trees``: (sum_tree, min_tree, max_priority) of a prioritized buffer."""
    f = fields
    sum_tree, min_tree, max_priority = trees if trees is not None else (None, None, 0.0)
    torch.ops.rlsuite.stream_add(frames, obs, final_obs, f["action"], f["reward"], f["first"], f["terminated"],
                                 f["truncated"], f["final"], f["valid"], cursor, new_episode, num_valid, action,
                                 reward, terminated, truncated, frame_stack, n_step, sum_tree, min_tree, max_priority)
