"""Pure-torch reference operators of the replay buffer.

Each function here is the definition of one native kernel of ``rlsuite._C`` (registered with
``torch.library`` as ``torch.ops.rlsuite.<name>``, C++ on CPU and CUDA on GPU): a plain function
on tensors, vectorised over the batch, with the kernel's signature. :mod:`.kernels` dispatches
to the native kernel when it is loaded and to the function here otherwise; the tests hold every
kernel to its reference. The buffer's add bookkeeping (``stream_add``) has its reference in
:class:`rlsuite.replay.storage.StreamStorage`.

Conventions shared by all operators:

* Streams are stored time-major per environment: a per-slot field has shape ``(E, L, ...)``
  (``E`` env streams of ``L`` ring slots). A transition is addressed by ``env_idx`` and its slot
  ``t_idx`` in that stream (both int64, shape ``(B,)``); slot arithmetic wraps modulo ``L``.
* Priority trees are complete ``TREE_FANOUT``-ary trees in one flat float tensor of
  ``tree_size(n)`` nodes: node 0 is the root, the children of node ``i`` are
  ``TREE_FANOUT * i + 1 .. TREE_FANOUT * i + TREE_FANOUT`` (contiguous), and the ``P`` leaves
  (``P`` a power of ``TREE_FANOUT``) are the last ``P`` nodes. A wide tree has few levels: 5
  for a million leaves instead of 20, so a batched update or search is 4x fewer steps, and
  a node's children share one or two cache lines.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

TREE_FANOUT = 16

__all__ = [
    "TREE_FANOUT",
    "tree_size",
    "sum_tree_update",
    "min_tree_update",
    "sum_tree_search",
    "tree_rebuild",
    "frame_stack_gather",
    "frame_window_gather",
    "nstep_returns",
    "sequence_gather",
    "gather_transitions",
    "per_sample",
    "per_update",
    "uniform_pick",
    "sample_uniform",
    "sample_per",
]


# --------------------------------------------------------------------------- priority trees


def tree_size(num_leaves: int) -> int:
    """Nodes of the smallest complete TREE_FANOUT-ary tree with at least ``num_leaves`` leaves."""
    leaves = 1
    while leaves < num_leaves:
        leaves *= TREE_FANOUT
    return (leaves * TREE_FANOUT - 1) // (TREE_FANOUT - 1)


def leaf_offset(nodes: int) -> int:
    """Index of leaf 0 in a complete TREE_FANOUT-ary tree of ``nodes`` nodes (leaves last)."""
    return nodes - (nodes * (TREE_FANOUT - 1) + 1) // TREE_FANOUT


def _shape(tree: Tensor) -> tuple[int, int]:
    """(number of leaves, offset of leaf 0) of a complete tree stored in ``tree``."""
    offset = leaf_offset(tree.numel())
    return tree.numel() - offset, offset


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
    leaves, offset = _shape(tree)
    idx, values = _last_write_wins(idx.to(torch.int64), values)
    node = idx + offset
    tree[node] = values.to(tree.dtype)
    families = tree[1:].view(-1, TREE_FANOUT)  # row i: the children of node i
    # Parents are recomputed from their children, not patched by deltas, so float error
    # never accumulates over millions of updates.
    while leaves > 1:
        node = torch.div(node - 1, TREE_FANOUT, rounding_mode="floor")
        kids = families[node]
        tree[node] = kids.sum(1) if reduce == "sum" else kids.amin(1)
        leaves //= TREE_FANOUT


def sum_tree_update(tree: Tensor, idx: Tensor, values: Tensor) -> None:
    """Set leaves ``idx`` of a sum-tree to ``values`` and refresh their ancestors, in place.

    ``tree``: float (tree_size(n),); ``idx``: int64 (B,) leaf ids; ``values``: (B,) >= 0.
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
    """Recompute every inner node from the leaves (``reduce``: "sum" or "min")."""
    width, start = _shape(tree)
    while width > 1:
        kids = tree[start : start + width].view(-1, TREE_FANOUT)
        width //= TREE_FANOUT
        start -= width
        tree[start : start + width] = kids.sum(1) if reduce == "sum" else kids.amin(1)


def sum_tree_search(tree: Tensor, prefix_values: Tensor) -> Tensor:
    """Leaf ids whose cumulative-sum interval contains each prefix value.

    ``prefix_values``: (B,) in [0, tree[0]). Returns int64 (B,) leaf ids ``j`` with
    ``sum(leaves[:j]) <= v < sum(leaves[:j+1])``. A zero-priority leaf is never returned:
    when rounding pushes a value past the last child's interval, the descent takes the last
    child with positive mass, so the top end of the range cannot pick an empty slot.
    """
    leaves, offset = _shape(tree)
    value = prefix_values.to(tree.dtype)
    node = torch.zeros(value.shape, dtype=torch.int64, device=tree.device)
    families = tree[1:].view(-1, TREE_FANOUT)
    while leaves > 1:
        kids = families[node]
        ends = torch.cumsum(kids, dim=1)  # right end of each child's interval
        child = (ends <= value[:, None]).sum(1)
        last_positive = (kids > 0).cumsum(1).argmax(1)  # first index reaching the max count
        child = torch.minimum(child, last_positive)
        value = value - (ends.gather(1, child[:, None]) - kids.gather(1, child[:, None])).squeeze(1)
        node = node * TREE_FANOUT + 1 + child
        leaves //= TREE_FANOUT
    return node - offset


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
    out_rows = out.view(batch * stack, -1)
    torch.index_select(frames.reshape(num_envs * slots, -1), 0, rows.reshape(-1), out=out_rows)
    if stack > 1:
        # Frame t-k belongs to another episode iff some slot in t-k+1 .. t starts an episode.
        firsts = first_flags.reshape(-1)[rows[:, 1:].flip(1)]  # column k-1: first flag of t-k+1
        crossed = (torch.cumsum(firsts, dim=1) > 0).flip(1)  # column j: frame of output column j
        drop = torch.cat([crossed, torch.zeros_like(crossed[:, :1])], dim=1)
        # Zero only the dropped rows (a broadcast masked_fill walks the whole batch: 10x slower).
        out_rows.index_fill_(0, drop.view(-1).nonzero().squeeze(1), 0)
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


# --------------------------------------------------------------------------- composites


def frame_window_gather(
    frames: Tensor, first_flags: Tensor, t_idx: Tensor, env_idx: Tensor, stack: int, n: int, out: Tensor | None = None
) -> Tensor:
    """Observation and n-step next observation as one (B, stack + n, *F) window.

    Column ``c`` holds the frame of slot ``t - stack + 1 + c``: the first ``stack`` columns are
    :func:`frame_stack_gather` of ``t``; column ``stack - 1 + a`` (``a >= 1``) is frame ``t + a``,
    zero once a later episode has started (a first flag in ``t+1 .. t+a``). ``window[:, n:]`` is
    the next observation whenever the bootstrap slot is ``t + n`` (always for ``n = 1``), so
    obs and next obs share memory: stack + n frames are copied instead of 2 * stack.
    """
    num_envs, slots = first_flags.shape
    batch, width = t_idx.numel(), stack + n
    if out is None:
        out = torch.empty((batch, width, *frames.shape[2:]), dtype=frames.dtype, device=frames.device)
    out[:, :stack] = frame_stack_gather(frames, first_flags, t_idx, env_idx, stack)
    ahead = torch.arange(1, n + 1, device=t_idx.device)
    rows = env_idx[:, None] * slots + (t_idx[:, None] + ahead) % slots  # (B, n)
    started = torch.cumsum(first_flags.reshape(-1)[rows], dim=1) > 0
    later = frames.reshape(num_envs * slots, *frames.shape[2:])[rows]
    later[started] = 0
    out[:, stack:] = later
    return out


def sequence_gather(
    frames: Tensor, action: Tensor, rtg: Tensor, timestep: Tensor, ended: Tensor, final: Tensor,
    t_idx: Tensor, env_idx: Tensor, length: int, obs_out: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Transformer windows of ``length`` slots starting at slot ``t_idx`` of stream ``env_idx``.

    ``frames`` (E, L, *F); ``action``/``timestep`` int64 (E, L); ``rtg`` float32 (E, L): the
    return-to-go of each step (computed once per finished episode by the dataset); ``ended``
    bool (E, L): the slot is an episode's last step; ``final`` bool (E, L): the slot holds a
    final observation (not a step). Returns ``(obs, action, rtg, timestep, mask)`` of shapes
    (B, K, *F), (B, K), ...: ``mask[b, i]`` is True while step ``t+i`` is in the episode of
    ``t`` (padding after its last step is all zeros, mask False).
    """
    slots = frames.shape[1]
    rows = env_idx[:, None] * slots + (t_idx[:, None] + torch.arange(length, device=t_idx.device)) % slots
    end = ended.reshape(-1)[rows]
    before = torch.cumsum(end, dim=1) - end.to(torch.int64)  # ends strictly before step i
    mask = (before == 0) & (torch.cumsum(final.reshape(-1)[rows], dim=1) == 0)
    flat = frames.reshape(-1, *frames.shape[2:])
    obs = flat[rows] * mask.view(*mask.shape, *([1] * (frames.dim() - 2))).to(frames.dtype)
    if obs_out is not None:
        obs_out.copy_(obs)
        obs = obs_out

    def pick(x: Tensor) -> Tensor:
        return torch.where(mask, x.reshape(-1)[rows], torch.zeros((), dtype=x.dtype, device=x.device))

    return obs, pick(action), pick(rtg), pick(timestep), mask


def gather_transitions(
    frames: list[Tensor], first: Tensor, action: Tensor, reward: Tensor, terminated: Tensor, truncated: Tensor,
    gidx: Tensor, stack: int, n: int, gamma: float, window: bool,
    obs_out: list[Tensor], next_out: list[Tensor], action_out: Tensor, ret_out: Tensor, disc_out: Tensor,
) -> None:
    """The buffer's per-batch gather into preallocated outputs: n-step returns and discounts,
    actions, and per frame key obs and next-obs stacks, or with ``window`` one
    :func:`frame_window_gather` window (valid when every bootstrap is n slots ahead)."""
    slots = reward.shape[1]
    env, t = gidx // slots, gidx % slots
    ret, disc, boot = nstep_returns(reward, terminated, truncated, t, env, n, gamma)
    ret_out.copy_(ret)
    disc_out.copy_(disc)
    torch.index_select(action.reshape(-1), 0, gidx, out=action_out)
    for k, f in enumerate(frames):
        if window:
            frame_window_gather(f, first, t, env, stack, n, out=obs_out[k])
        else:
            frame_stack_gather(f, first, t, env, stack, out=obs_out[k])
            frame_stack_gather(f, first, boot, env, stack, out=next_out[k])


def per_sample(sum_tree: Tensor, min_tree: Tensor, u: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """Stratified proportional sampling (Schaul et al. 2016, App. B.2.1): draw ``i`` searches
    ``(i + u_i) * total / B``. Returns (leaf ids, float32 IS weights).

    ``w_i = (N * P(i))^-beta / max_w`` with ``max_w = (N * p_min / total)^-beta``, which
    simplifies to ``(p_min / p_i)^beta``; computed that way to avoid overflow.
    """
    total, batch = float(sum_tree[0]), u.numel()
    prefix = (torch.arange(batch, dtype=torch.float64, device=u.device) + u.to(torch.float64)) * (total / batch)
    idx = sum_tree_search(sum_tree, prefix.clamp_(max=total))
    return idx, per_weights(sum_tree, min_tree, idx, beta)


def per_weights(sum_tree: Tensor, min_tree: Tensor, idx: Tensor, beta: float) -> Tensor:
    """Importance weights ``(p_min / p_i)^beta`` (float32) of the leaves ``idx``."""
    leaves = sum_tree[leaf_offset(sum_tree.numel()) + idx]
    return ((float(min_tree[0]) / leaves) ** beta).to(torch.float32)


def per_update(sum_tree: Tensor, min_tree: Tensor, idx: Tensor, td: Tensor, valid: Tensor,
               alpha: float, eps: float) -> float:
    """Store priority ``(|td| + eps)^alpha`` at the leaves ``idx`` that are still sampleable
    (``valid[idx]``; a slot overwritten since it was sampled must not be resurrected), in both
    trees, last duplicate winning. Returns the largest stored priority (-inf if none)."""
    keep = valid[idx]
    idx, td = idx[keep], td[keep]
    if idx.numel() == 0:
        return -math.inf
    priority = (td.to(torch.float64).abs() + eps) ** alpha
    sum_tree_update(sum_tree, idx, priority)
    min_tree_update(min_tree, idx, priority)
    return float(priority.max())


def uniform_pick(valid: Tensor, draws: Tensor, width: int, slots: int, need: int) -> Tensor:
    """Map draws ``r`` in ``[0, E * width)`` to global slots ``(r // width) * slots + r % width``
    and keep the first ``need`` that may start a transition (``valid``, flat bool)."""
    gidx = (draws // width) * slots + draws % width
    return gidx[valid[gidx]][:need]


# --------------------------------------------------------------------------- fused sampling
# The buffer's whole sample() in one operator per sampler. ``state`` and ``out`` are lists of
# the buffer's tensors (in this order):
#   state = [first, action, reward, terminated, truncated, valid, cursor, num_valid(, sum_tree, min_tree)]
#           the (E, L) storage fields, cursor int64 (E,) (absolute time of each stream's next
#           write), num_valid int64 (1,) (sampleable slots), and for PER both priority trees;
#   out   = [action, reward, discount, indices, weights, obs per frame key..., next obs per key...]
#           preallocated: int64/float32/float32/int64/float32 (B,), then the frame outputs of
#           gather_transitions (no next obs with ``window``).
# Random draws come from ``generator`` in a fixed order, so native and reference give the same
# batch for the same generator state.


def _gather_into(frames: list[Tensor], state: list[Tensor], out: list[Tensor], stack: int, n: int, gamma: float,
                 window: bool) -> None:
    keys = len(frames)
    obs, nxt = out[5 : 5 + keys], ([] if window else out[5 + keys : 5 + 2 * keys])
    gather_transitions(frames, state[0], state[1], state[2], state[3], state[4], out[3], stack, n, gamma, window,
                       obs, nxt, out[0], out[1], out[2])


def sample_uniform(frames: list[Tensor], state: list[Tensor], out: list[Tensor], generator: torch.Generator | None,
                   stack: int, n: int, gamma: float, window: bool) -> None:
    """Uniform sampling over sampleable slots, by rejection from the written rectangle
    (env x the first ``min(max(cursor), L)`` slots): rounds of ``torch.randint`` draws mapped by
    :func:`uniform_pick`, each round ``min(2^20, ceil(need * area / num_valid * 1.1) + 8)``
    draws, until ``B`` are kept; then the gather. ``weights`` (out[4]) is left untouched."""
    first, valid, cursor = state[0], state[5], state[6]
    num_valid = int(state[7][0])
    if num_valid <= 0:
        raise RuntimeError("rlsuite.sample_uniform: no sampleable transition")
    envs, slots = first.shape
    width = min(int(cursor.max()), slots)
    area, batch, flat = envs * width, out[3].numel(), valid.reshape(-1)
    picked, need = [], batch
    while need > 0:
        draws = min(1 << 20, math.ceil(need * area / num_valid * 1.1) + 8)
        r = torch.randint(area, (draws,), generator=generator, device=flat.device)
        gidx = uniform_pick(flat, r, width, slots, need)
        picked.append(gidx)
        need -= gidx.numel()
    out[3].copy_(picked[0] if len(picked) == 1 else torch.cat(picked))
    _gather_into(frames, state, out, stack, n, gamma, window)


def sample_per(frames: list[Tensor], state: list[Tensor], out: list[Tensor], generator: torch.Generator | None,
               beta: float, stack: int, n: int, gamma: float, window: bool) -> None:
    """Prioritized sampling: ``u = torch.rand(B, float64)`` from ``generator``, then
    :func:`per_sample` on the trees (state[8], state[9]) into indices and weights, then the gather."""
    u = torch.rand(out[3].numel(), generator=generator, dtype=torch.float64, device=state[8].device)
    idx, weights = per_sample(state[8], state[9], u, beta)
    out[3].copy_(idx)
    out[4].copy_(weights)
    _gather_into(frames, state, out, stack, n, gamma, window)
