"""Device-resident replay storage: frames, per-slot fields and priority trees as tensors on
the learner's device (a GPU), so sampling never copies a batch from the host.

The per-step bookkeeping (cursors, episode flags, the sampleability rule) stays on the host in
:class:`~rlsuite.replay.storage.StreamStorage` (a few bytes per slot, updated by the native
``stream_add`` kernel or its numpy reference) but with no frames there; each ``add`` then
copies the env step's frames to the device and mirrors only the slots a write can change
(the newest ``n + 3`` and oldest ``stack + 1`` of each stream) into device copies of the
small fields. Sampling runs the fused ``sample_uniform`` / ``sample_per`` operators on the
device tensors (CUDA kernels; the pure-torch reference where the extension has none).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from rlsuite.replay import kernels, ops
from rlsuite.replay.storage import StreamStorage

MIRRORED = ("first", "action", "reward", "terminated", "truncated", "valid")


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
        # Per env, the slots a write at cursor c can change: c+1 down to c-n-1 (the written slot,
        # an ended episode's final slot, windows completed) and c-L+1 .. c-L+stack+2 (the ring's
        # oldest edge, whose stack frames are being overwritten); as StreamStorage refreshes them.
        self._recent = np.arange(host.n_step + 3)
        self._edge = np.arange(1, host.frame_stack + 3)
        self._rows = np.arange(e)[:, None] * slots
        self.state = [self.fields[n] for n in MIRRORED] + [host._t_state[0], host._t_state[2]]
        if prioritized:
            self.state += [self.sum_tree, self.min_tree]

    def _touched(self, cursor: np.ndarray) -> np.ndarray:
        """Global slot ids whose fields or flag a write at `cursor` (absolute, per env) may change."""
        c = cursor[:, None]
        t = np.concatenate([c + 1 - self._recent, c - self.host.slots + self._edge], axis=1)
        return np.unique((self._rows + t % self.host.slots).reshape(-1))

    def write(self, frames: dict[str, np.ndarray], final: dict[str, np.ndarray] | None, action, reward,
              terminated, truncated) -> None:
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

    def nbytes(self) -> int:
        tensors = [*self.frames.values(), *self.fields.values()]
        if self.sum_tree is not None:
            tensors += [self.sum_tree, self.min_tree]
        return sum(t.numel() * t.element_size() for t in tensors)
