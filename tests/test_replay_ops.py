"""Replay operators (rlsuite.replay.ops) against brute-force Python loops.

These references define what the native kernels must compute: priority trees (update with
duplicates, prefix search, rebuild), frame-stack gather with episode-start masking, n-step returns.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlsuite.replay import ops


@settings(max_examples=60, deadline=None)
@given(
    leaves=st.lists(st.integers(0, 9), min_size=1, max_size=300),
    updates=st.lists(st.tuples(st.integers(0, 299), st.integers(0, 9)), max_size=30),
    seed=st.integers(0, 1000),
)
def test_sum_and_min_tree_against_bruteforce(leaves, updates, seed):
    size = ops.tree_size(len(leaves))
    sum_tree, min_tree = torch.zeros(size, dtype=torch.float64), torch.full((size,), math.inf, dtype=torch.float64)
    values = np.array(leaves, np.float64)
    ops.sum_tree_update(sum_tree, torch.arange(len(leaves)), torch.tensor(values))
    ops.min_tree_update(min_tree, torch.arange(len(leaves)), torch.tensor(values))
    updates = [(i % len(leaves), v) for i, v in updates]
    if updates:  # duplicates allowed: the last write wins
        idx, val = map(torch.tensor, zip(*updates))
        ops.sum_tree_update(sum_tree, idx, val.double())
        ops.min_tree_update(min_tree, idx, val.double())
        for i, v in updates:
            values[i] = v
    assert sum_tree[0].item() == values.sum() and min_tree[0].item() == values.min()
    rebuilt = sum_tree.clone()
    inner = size - (size * (ops.TREE_FANOUT - 1) + 1) // ops.TREE_FANOUT
    rebuilt[:inner] = -1  # garble every inner node
    ops.tree_rebuild(rebuilt, "sum")
    assert torch.equal(rebuilt, sum_tree)
    if values.sum() > 0:  # prefixes x + 0.5 never sit on a boundary of integer leaves
        prefix = np.random.default_rng(seed).integers(0, int(values.sum()), 50) + 0.5
        want = np.searchsorted(np.cumsum(values), prefix, side="right")
        assert ops.sum_tree_search(sum_tree, torch.tensor(prefix)).tolist() == want.tolist()
        edge = ops.sum_tree_search(sum_tree, torch.tensor([values.sum(), values.sum() * 2]))  # past the top
        assert (torch.tensor(values)[edge] > 0).all()


@settings(max_examples=40, deadline=None)
@given(stack=st.integers(1, 5), slots=st.integers(5, 12), seed=st.integers(0, 1000))
def test_frame_stack_gather_against_loop(stack, slots, seed):
    rng = np.random.default_rng(seed)
    frames = torch.tensor(rng.integers(1, 255, (3, slots, 2, 2)), dtype=torch.uint8)
    first = torch.tensor(rng.random((3, slots)) < 0.3)
    t, env = torch.tensor(rng.integers(0, slots, 20)), torch.tensor(rng.integers(0, 3, 20))
    got = ops.frame_stack_gather(frames, first, t, env, stack)
    for b in range(20):
        for j in range(stack):
            back = stack - 1 - j
            crossed = any(first[env[b], (t[b] - i) % slots] for i in range(back))
            want = torch.zeros(2, 2, dtype=torch.uint8) if crossed else frames[env[b], (t[b] - back) % slots]
            assert torch.equal(got[b, j], want)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 5), seed=st.integers(0, 1000))
def test_nstep_returns_against_loop(n, seed):
    rng, slots, gamma = np.random.default_rng(seed), 9, 0.9
    rewards = torch.tensor(rng.normal(size=(2, slots)), dtype=torch.float32)
    term, trunc = torch.tensor(rng.random((2, slots)) < 0.2), torch.tensor(rng.random((2, slots)) < 0.2)
    t, env = torch.tensor(rng.integers(0, slots, 16)), torch.tensor(rng.integers(0, 2, 16))
    ret, disc, boot = ops.nstep_returns(rewards, term, trunc, t, env, n, gamma)
    for b in range(16):
        e, g, k, d = env[b].item(), 0.0, 0, None
        while k < n:
            s = (t[b].item() + k) % slots
            g += gamma**k * rewards[e, s].item()
            k += 1
            if term[e, s] or trunc[e, s]:
                d = 0.0 if term[e, s] else gamma**k
                break
        assert ret[b].item() == pytest.approx(g, abs=1e-5)
        assert disc[b].item() == pytest.approx(gamma**k if d is None else d)
        assert boot[b].item() == (t[b].item() + k) % slots
