"""Device-resident replay storage: frames, per-slot fields and priority trees as tensors on
the learner's device (a GPU), so sampling never copies a batch from the host.

The per-step bookkeeping (cursors, episode flags, the sampleability rule) stays on the host in
:class:`~rlsuite.replay.storage.StreamStorage` (a few bytes per slot, updated by the native
``stream_add`` kernel or its numpy reference) but with no frames there, so ``len()``,
``state_dict`` and ``save`` never wait for the device. Each ``add`` reaches the device one of
two ways, which leave identical device tensors:

* fused (a CUDA device whose extension has the ``stream_add`` kernel): the same add runs on
  the device tensors in one native call, starting from the host's cursors, and updates frames,
  fields, flags and priority trees there;
* mirrored (the CPU "device" of the tests, a build without CUDA kernels, ``RLSUITE_NATIVE=0``):
  the env step's frames are copied over and only the slots a write can change (the newest
  ``n + 3`` and oldest ``stack + 1`` of each stream) are mirrored from the host, the trees
  following the changed flags.

Sampling runs the fused ``sample_uniform`` / ``sample_per`` operators on the device tensors
(CUDA kernels; the pure-torch reference where the extension has none).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from rlsuite.replay import kernels, ops
from rlsuite.replay.storage import StreamStorage

MIRRORED = ("first", "action", "reward", "terminated", "truncated", "final", "valid")
_SAMPLED = ("first", "action", "reward", "terminated", "truncated", "valid")  # state order of the sample ops


class DeviceStorage:
    """Device copies of a frame-less :class:`StreamStorage` plus the frames themselves."""

    def __init__(self, host: StreamStorage, specs: dict, device: torch.device, prioritized: bool,
                 alpha: float, eps: float) -> None:
        self.host, self.device = host, device
        e, slots = host.num_envs, host.slots
        self.frames = {k: torch.zeros((e, slots, *shape), dtype=dtype, device=device) for k, (shape, dtype) in specs.items()}
        self.fields = {name: getattr(host, name).to(device, copy=True) for name in MIRRORED}
        self.sum_tree = self.min_tree = None
        self.alpha, self.eps, self.max_priority = alpha, eps, 1.0
        if prioritized:
            size = ops.tree_size(e * slots)
            self.sum_tree = torch.zeros(size, dtype=torch.float64, device=device)
            self.min_tree = torch.full((size,), math.inf, dtype=torch.float64, device=device)
        # Fused by default only on CUDA: on the CPU "device" it would just run the CPU add twice.
        # Tests switch it on there to run this path (with the CPU kernel) without a GPU.
        self.fused = device.type == "cuda"
        # Per-env state of the fused write, copied from the host before each one (the host stays
        # the one source of truth, whatever load or load_state_dict did to it). num_valid only
        # collects the kernel's count; the host's is the one len() reads.
        self._cursor = torch.zeros(e, dtype=torch.int64, device=device)
        self._new_episode = torch.ones(e, dtype=torch.bool, device=device)
        self._num_valid = torch.zeros(1, dtype=torch.int64, device=device)
        # Per env, the slots a write at cursor c can change: c+1 down to c-n-1 (the written slot,
        # an ended episode's final slot, windows completed) and c-L+1 .. c-L+stack+2 (the ring's
        # oldest edge, whose stack frames are being overwritten); as StreamStorage refreshes them.
        self._recent = np.arange(host.n_step + 3)
        self._edge = np.arange(1, host.frame_stack + 3)
        self._rows = np.arange(e)[:, None] * slots
        self.state = [self.fields[n] for n in _SAMPLED] + [host._t_state[0], host._t_state[2]]
        if prioritized:
            self.state += [self.sum_tree, self.min_tree]

    def write(self, frames: dict[str, np.ndarray], final: dict[str, np.ndarray] | None, action, reward,
              terminated, truncated) -> None:
        if self.fused and kernels.has_native(self.fields["valid"], "stream_add"):
            self._write_fused(frames, final, action, reward, terminated, truncated)
        else:
            self._write_mirrored(frames, final, action, reward, terminated, truncated)

    def _write_fused(self, frames, final, action, reward, terminated, truncated) -> None:
        """One native stream_add on the device tensors, from the host's cursors; then the host's
        own (frame-less) write."""
        host = self.host
        self._cursor.copy_(torch.from_numpy(host.cursor))
        self._new_episode.copy_(torch.from_numpy(host.new_episode))
        obs = [torch.from_numpy(frames[k]) for k in self.frames]
        fin = [] if final is None else [torch.from_numpy(final[k]) for k in self.frames]
        trees = None if self.sum_tree is None else (self.sum_tree, self.min_tree, self.max_priority)
        kernels.stream_add(list(self.frames.values()), obs, fin, self.fields, self._cursor, self._new_episode,
                           self._num_valid, torch.from_numpy(action), torch.from_numpy(reward),
                           torch.from_numpy(terminated), torch.from_numpy(truncated), host.frame_stack, host.n_step,
                           trees)
        host.write({}, action, reward, terminated, truncated, None if final is None else {})

    def _touched(self, cursor: np.ndarray) -> np.ndarray:
        """Global slot ids whose fields or flag a write at `cursor` (absolute, per env) may change."""
        c = cursor[:, None]
        t = np.concatenate([c + 1 - self._recent, c - self.host.slots + self._edge], axis=1)
        return np.unique((self._rows + t % self.host.slots).reshape(-1))

    def _write_mirrored(self, frames, final, action, reward, terminated, truncated) -> None:
        host = self.host
        before = host.cursor.copy()
        ids = self._touched(before)
        flat_valid = host.valid.view(-1)
        old_valid = flat_valid[torch.from_numpy(ids)].clone()
        host.write({}, action, reward, terminated, truncated, None if final is None else {})
        env = torch.arange(host.num_envs)
        slot = torch.from_numpy(before % host.slots)
        ended = torch.from_numpy(terminated | truncated)
        for key, x in frames.items():
            self.frames[key][env.to(self.device), slot.to(self.device)] = torch.from_numpy(x).to(self.device)
            if final is not None and bool(ended.any()):
                e = env[ended]
                self.frames[key][e.to(self.device), ((slot[ended] + 1) % host.slots).to(self.device)] = (
                    torch.from_numpy(final[key])[ended].to(self.device))
        idx = torch.from_numpy(ids)
        idx_d = idx.to(self.device)
        for name in MIRRORED:
            self.fields[name].view(-1)[idx_d] = getattr(host, name).view(-1)[idx].to(self.device)
        if self.sum_tree is not None:
            new_valid = flat_valid[idx]
            changed = new_valid != old_valid
            if bool(changed.any()):
                where, now = idx[changed].to(self.device), new_valid[changed].to(self.device)
                value = now.to(torch.float64) * self.max_priority  # float64 throughout, as stream_add
                kernels.sum_tree_update(self.sum_tree, where, value)
                kernels.min_tree_update(self.min_tree, where, torch.where(now, value, math.inf))

    def update_priorities(self, idx: Tensor, td: Tensor) -> None:
        best = kernels.per_update(self.sum_tree, self.min_tree, idx.to(self.device, torch.int64),
                                  td.detach().to(self.device), self.fields["valid"].view(-1), self.alpha, self.eps)
        self.max_priority = max(self.max_priority, best)

    # ------------------------------------------------------------------ persistence

    def _leaves(self, tree: Tensor) -> Tensor:
        """A tree's leaves of all slots (a view; beyond them, padding leaves no slot uses)."""
        start = ops.leaf_offset(tree.numel())
        return tree[start : start + self.host.num_envs * self.host.slots]

    def persisted(self) -> dict[str, Tensor]:
        """What ReplayBuffer.save writes, under the host buffer's names (one on-disk format for
        both): frames and leaf priorities from the device, the small per-slot fields from the
        host, whose copy is complete (the device mirrors it)."""
        out = {f"frames.{k}": v for k, v in self.frames.items()}
        out.update(self.host.fields())
        if self.sum_tree is not None:
            out["priority"] = self._leaves(self.sum_tree).view(self.host.num_envs, self.host.slots)
        return out

    def reload(self) -> None:
        """After a load filled the tensors of :meth:`persisted`: mirror the host's fields to the
        device and rebuild both trees from the leaf priorities (the min-tree's leaves are the
        positive ones, +inf elsewhere, as the writes keep them)."""
        for name in MIRRORED:
            self.fields[name].copy_(getattr(self.host, name))
        self._num_valid.fill_(self.host.num_valid)
        if self.sum_tree is not None:
            leaves = self._leaves(self.sum_tree)
            self._leaves(self.min_tree).copy_(torch.where(leaves > 0, leaves, math.inf))
            kernels.tree_rebuild(self.sum_tree, "sum")
            kernels.tree_rebuild(self.min_tree, "min")

    def nbytes(self) -> int:
        tensors = [*self.frames.values(), *self.fields.values()]
        if self.sum_tree is not None:
            tensors += [self.sum_tree, self.min_tree]
        return sum(t.numel() * t.element_size() for t in tensors)
