"""Proportional prioritized sampling (Schaul et al. 2016) over the buffer's global slot ids.

A sum-tree holds each sampleable slot's priority ``(|delta| + eps)^alpha`` (zero for slots that
cannot start a transition, so sampling never needs rejection); a min-tree holds the same
priorities (+inf elsewhere) so the importance-weight normaliser ``max_w`` comes from the minimum
priority in O(1). Tree arithmetic lives in :mod:`rlsuite.replay.ops`.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from rlsuite.replay import ops


class PrioritySampler:
    """Sum/min-trees over ``num_slots`` leaves, plus the running maximum priority."""

    def __init__(self, num_slots: int, alpha: float, eps: float) -> None:
        self.num_slots, self.alpha, self.eps = num_slots, alpha, eps
        size = ops.tree_size(num_slots)
        # float64: a float32 root over 1M leaves loses the small priorities to rounding.
        self.sum_tree = torch.zeros(size, dtype=torch.float64)
        self.min_tree = torch.full((size,), math.inf, dtype=torch.float64)
        self._offset = size - (size * (ops.TREE_FANOUT - 1) + 1) // ops.TREE_FANOUT
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
        value = torch.where(sampleable, self.max_priority, 0.0).to(torch.float64)
        ops.sum_tree_update(self.sum_tree, idx, value)
        ops.min_tree_update(self.min_tree, idx, torch.where(sampleable, value, math.inf))

    def update(self, idx: Tensor, td_error: Tensor, still_sampleable: Tensor) -> None:
        """Store ``(|td| + eps)^alpha`` for the slots that can still be sampled (a slot
        overwritten since it was sampled must not be resurrected)."""
        idx, td_error = idx[still_sampleable], td_error[still_sampleable]
        if idx.numel() == 0:
            return
        priority = (td_error.detach().to(torch.float64).abs() + self.eps) ** self.alpha
        self.max_priority = max(self.max_priority, float(priority.max()))
        ops.sum_tree_update(self.sum_tree, idx, priority)
        ops.min_tree_update(self.min_tree, idx, priority)

    def sample(self, batch_size: int, beta: float, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """Stratified proportional sampling: one draw per equal-mass segment of the total,
        as in Schaul et al. (2016), Appendix B.2.1. Returns (slot ids, IS weights).

        ``w_i = (N * P(i))^-beta / max_w`` with ``max_w = (N * p_min / total)^-beta``, which
        simplifies to ``(p_min / p_i)^beta``; computed that way to avoid overflow.
        """
        total = self.total
        u = torch.rand(batch_size, generator=gen, dtype=torch.float64)
        prefix = (torch.arange(batch_size, dtype=torch.float64) + u) * (total / batch_size)
        idx = ops.sum_tree_search(self.sum_tree, prefix.clamp_(max=total))
        priority = self.sum_tree[idx + self._offset]
        weights = (float(self.min_tree[0]) / priority) ** beta
        return idx, weights.to(torch.float32)

    def load_leaves(self, leaves: Tensor) -> None:
        """Rebuild both trees from saved leaf priorities."""
        start = self._offset
        self.sum_tree[start : start + self.num_slots] = leaves
        self.min_tree[start : start + self.num_slots] = torch.where(leaves > 0, leaves, math.inf)
        ops.tree_rebuild(self.sum_tree, "sum")
        ops.tree_rebuild(self.min_tree, "min")
