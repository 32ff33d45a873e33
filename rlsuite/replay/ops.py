"""Pure-torch reference operators of the replay buffer.

These functions are the seam where native kernels (``rlsuite._C``, registered with
``torch.library`` for CPU and CUDA) plug in later: each one is a plain function on tensors,
vectorised over the batch, with a signature a C++/CUDA kernel can implement one-to-one. The
reference defines the expected answer in the tests.

Conventions shared by all operators:

* Streams are stored time-major per environment: a per-slot field has shape ``(E, L, ...)``
  (``E`` env streams of ``L`` ring slots). A transition is addressed by ``env_idx`` and its slot
  ``t_idx`` in that stream (both int64, shape ``(B,)``); slot arithmetic wraps modulo ``L``.
* Trees are flat tensors of size ``2 * P`` (``P`` a power of two): node 1 is the root, node ``i``
  has children ``2i`` and ``2i + 1``, leaf ``j`` lives at ``P + j``; node 0 is unused.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "sum_tree_update",
    "min_tree_update",
    "sum_tree_search",
    "tree_rebuild",
    "frame_stack_gather",
    "nstep_returns",
]


# --------------------------------------------------------------------------- priority trees


def _last_write_wins(idx: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
    """Drop duplicate indices, keeping the value of each index's last occurrence.

    A sequential C++ loop gives "last write wins" for free; torch's index_put with duplicates
    does not define the winner, so the reference makes the rule explicit.
    """
    if idx.numel() <= 1:
        return idx, values
    uniq, inverse = torch.unique(idx, return_inverse=True)
    order = torch.arange(idx.numel(), device=idx.device)
    last = torch.full((uniq.numel(),), -1, dtype=torch.int64, device=idx.device)
    last.scatter_reduce_(0, inverse, order, reduce="amax")
    return uniq, values[last]


def _tree_update(tree: Tensor, idx: Tensor, values: Tensor, reduce: str) -> None:
    leaves = tree.numel() // 2
    idx, values = _last_write_wins(idx.to(torch.int64), values)
    node = idx + leaves
    tree[node] = values.to(tree.dtype)
    pairs = tree.view(-1, 2)  # row i holds the children (2i, 2i+1) of node i
    # Parents are recomputed from their children, not patched by deltas, so float error
    # never accumulates over millions of updates.
    for _ in range(leaves.bit_length() - 1):
        node = node >> 1
        kids = pairs[node]
        tree[node] = kids.sum(1) if reduce == "sum" else kids.amin(1)


def sum_tree_update(tree: Tensor, idx: Tensor, values: Tensor) -> None:
    """Set leaves ``idx`` of a sum-tree to ``values`` and refresh their ancestors, in place.

    ``tree``: float (2P,); ``idx``: int64 (B,) leaf ids in [0, P); ``values``: (B,) >= 0.
    Duplicate ids: the last occurrence wins.
    """
    _tree_update(tree, idx, values, "sum")


def min_tree_update(tree: Tensor, idx: Tensor, values: Tensor) -> None:
    """Same as :func:`sum_tree_update` for a min-tree (empty leaves hold +inf).

    The root of the min-tree is the smallest priority, which normalises the PER importance
    weights (Schaul et al. 2016: divide by the largest weight).
    """
    _tree_update(tree, idx, values, "min")


def tree_rebuild(tree: Tensor, reduce: str) -> None:
    """Recompute every inner node from the leaves ``tree[P:]`` (``reduce``: "sum" or "min")."""
    lo = tree.numel() // 2
    while lo > 1:
        kids = tree[lo : 2 * lo].view(-1, 2)
        tree[lo // 2 : lo] = kids.sum(1) if reduce == "sum" else kids.amin(1)
        lo //= 2


def sum_tree_search(tree: Tensor, prefix_values: Tensor) -> Tensor:
    """Leaf ids whose cumulative-sum interval contains each prefix value.

    ``prefix_values``: (B,) in [0, tree[1]). Returns int64 (B,) leaf ids ``j`` with
    ``sum(leaves[:j]) <= v < sum(leaves[:j+1])``. A zero-priority leaf is never returned (the
    descent only goes right into a subtree with positive mass), so rounding at the top end of
    the range cannot pick an empty or invalid slot.
    """
    leaves = tree.numel() // 2
    value = prefix_values.to(tree.dtype)
    node = torch.ones(value.shape, dtype=torch.int64, device=tree.device)
    for _ in range(leaves.bit_length() - 1):
        left = tree[2 * node]
        go_right = (value >= left) & (tree[2 * node + 1] > 0)
        value = torch.where(go_right, value - left, value)
        node = 2 * node + go_right
    return node - leaves


# --------------------------------------------------------------------------- frame stacks


def frame_stack_gather(
    frames: Tensor,
    first_flags: Tensor,
    t_idx: Tensor,
    env_idx: Tensor,
    stack: int,
    out: Tensor | None = None,
) -> Tensor:
    """Rebuild frame stacks ending at slot ``t_idx`` of stream ``env_idx``.

    ``frames``: (E, L, *F) any dtype; ``first_flags``: bool (E, L), True on an episode's first
    slot. Returns (B, stack, *F), oldest frame first, newest (slot t) last. Frames from before
    the episode start of slot t are zeros, which is exactly what the env layer shows the agent
    at the start of an episode. ``out`` (contiguous, same shape) avoids a fresh allocation.
    """
    num_envs, slots = first_flags.shape
    batch = t_idx.numel()
    back = torch.arange(stack - 1, -1, -1, device=t_idx.device)  # column j holds t - back[j]
    rows = env_idx[:, None] * slots + (t_idx[:, None] - back) % slots
    if out is None:
        out = torch.empty((batch, stack, *frames.shape[2:]), dtype=frames.dtype, device=frames.device)
    flat_frames = frames.reshape(num_envs * slots, -1)
    torch.index_select(flat_frames, 0, rows.reshape(-1), out=out.view(batch * stack, -1))
    if stack > 1:
        # Frame t-k belongs to another episode iff some slot in t-k+1 .. t starts an episode.
        firsts = first_flags.reshape(-1)[rows[:, 1:].flip(1)]  # column k-1: first flag of t-k+1
        crossed = torch.cumsum(firsts, dim=1) > 0  # column k-1: frame t-k is from before
        keep_old = ~crossed.flip(1)  # aligned with columns 0 .. stack-2 of the output
        drop = torch.cat([~keep_old, torch.zeros_like(keep_old[:, :1])], dim=1)
        out.masked_fill_(drop.view(batch, stack, *([1] * (frames.dim() - 2))), 0)
    return out


# --------------------------------------------------------------------------- n-step returns


def nstep_returns(
    rewards: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    t_idx: Tensor,
    env_idx: Tensor,
    n: int,
    gamma: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """n-step discounted returns of transitions starting at slot ``t_idx`` of stream ``env_idx``.

    ``rewards``: float32 (E, L); ``terminated``/``truncated``: bool (E, L), set on the slot of
    an episode's last step. Returns ``(ret, discount, bootstrap_t)``, each (B,):

    * ``ret = sum_{i<k} gamma^i r_{t+i}`` where ``k = min(n, steps until the episode ends)``;
    * ``discount = 0`` if the episode terminated within those ``k`` steps, else ``gamma^k``
      (a truncated episode bootstraps from its true final observation);
    * ``bootstrap_t = (t + k) % L``: the slot of the next observation (the "final" slot when
      the episode ended inside the window).

    The caller guarantees the window is written (see the buffer's validity rule).
    """
    slots = rewards.shape[1]
    offsets = torch.arange(n, device=t_idx.device)
    rows = env_idx[:, None] * slots + (t_idx[:, None] + offsets) % slots  # (B, n)
    term = terminated.reshape(-1)[rows]
    ended = term | truncated.reshape(-1)[rows]
    # Step i counts iff no episode end happened at any step before it.
    alive = (torch.cumsum(ended, dim=1) - ended.to(torch.int64)) == 0
    powers = gamma ** offsets.to(torch.float64)
    ret = (rewards.reshape(-1)[rows].to(torch.float64) * powers * alive).sum(1)
    k = alive.sum(1)
    discount = torch.where((term & alive).any(1), 0.0, gamma ** k.to(torch.float64))
    return ret.to(torch.float32), discount.to(torch.float32), (t_idx + k) % slots
