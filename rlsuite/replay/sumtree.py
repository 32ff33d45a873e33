"""Proportional prioritized sampling (Schaul et al. 2016) over the buffer's global slot ids.

A sum-tree holds each sampleable slot's priority ``(|delta| + eps)^alpha`` (zero for slots that
cannot start a transition, so sampling never needs rejection); a min-tree holds the same
priorities (+inf elsewhere) so the importance-weight normaliser ``max_w`` comes from the minimum
priority in O(1). Tree arithmetic lives in :mod:`rlsuite.replay.kernels` (native kernels, or the
reference in :mod:`rlsuite.replay.ops`).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from rlsuite.replay import kernels, ops


class PrioritySampler:
    """Sum/min-trees over ``num_slots`` leaves, plus the running maximum priority."""

    def __init__(self, num_slots: int, alpha: float, eps: float) -> None:
        self.num_slots, self.alpha, self.eps = num_slots, alpha, eps
        size = ops.tree_size(num_slots)
        # float64: a float32 root over 1M leaves loses the small priorities to rounding.
        self.sum_tree = torch.zeros(size, dtype=torch.float64)
        self.min_tree = torch.full((size,), math.inf, dtype=torch.float64)
        self._offset = ops.leaf_offset(size)
        self.max_priority = 1.0  # new transitions get the largest priority seen so far

    @property
    def total(self) -> float:
        return float(self.sum_tree[0])

    def leaves(self) -> Tensor:
        """Stored priorities of all slots (a view; 0 where no transition starts)."""
        return self.sum_tree[self._offset : self._offset + self.num_slots]

    def set_sampleable(self, idx: Tensor, sampleable: Tensor) -> None:
        """Follow the storage: slots that became sampleable get the max priority, slots that
        stopped being sampleable (overwritten, or stack frames gone) get none."""
        if idx.numel() == 0:
            return
        value = sampleable.to(torch.float64) * self.max_priority  # not via float32 scalars
        kernels.sum_tree_update(self.sum_tree, idx, value)
        kernels.min_tree_update(self.min_tree, idx, torch.where(sampleable, value, math.inf))

    def update(self, idx: Tensor, td_error: Tensor, still_sampleable: Tensor) -> None:
        """Store ``(|td| + eps)^alpha`` for the slots that can still be sampled
        (``still_sampleable``: flat bool per slot; a slot overwritten since it was sampled
        must not be resurrected)."""
        best = kernels.per_update(self.sum_tree, self.min_tree, idx, td_error.detach(), still_sampleable,
                                  self.alpha, self.eps)
        self.max_priority = max(self.max_priority, best)

    def sample(self, batch_size: int, beta: float, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """Stratified proportional sampling (see :func:`rlsuite.replay.ops.per_sample`).
        Returns (slot ids, float32 IS weights)."""
        u = torch.rand(batch_size, generator=gen, dtype=torch.float64)
        return kernels.per_sample(self.sum_tree, self.min_tree, u, beta)

    def load_leaves(self, leaves: Tensor) -> None:
        """Rebuild both trees from saved leaf priorities."""
        start = self._offset
        self.sum_tree[start : start + self.num_slots] = leaves
        self.min_tree[start : start + self.num_slots] = torch.where(leaves > 0, leaves, math.inf)
        kernels.tree_rebuild(self.sum_tree, "sum")
        kernels.tree_rebuild(self.min_tree, "min")
